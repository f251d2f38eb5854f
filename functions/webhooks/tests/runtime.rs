//! The built binary, run as Lambda runs it: a stream batch fanned out to an endpoint, the
//! delivery queue's message attempted (and refused to connect: the function sends to public
//! addresses only, and the test's receiver is on 127.0.0.1), its next attempt queued.

use keypool::domain::DeliveryStatus;
use keypool::identity::OrgId;
use keypool_runtime_api::{Function, Outcome, RuntimeApi, lambda_env};
use keypool_tests::World;
use keypool_tests::webhooks::{Answer, Receiver};
use serde_json::{Value, json};

fn fixture(name: &str) -> Value {
    let path = format!("{}/../../tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fans_the_stream_out_and_sends_from_its_queue_to_public_addresses_only() {
    let w = World::new().await;
    let receiver = Receiver::start(Answer::Ok).await;
    let acme = OrgId::parse("acme").unwrap();
    // Saved through the world's sender, which allows the test's private receiver.
    let input = keypool::ops::webhooks::WebhookInput {
        url: format!("https://127.0.0.1:{}/hook", receiver.port),
        events: vec!["assignment.created".into()],
        description: None,
    };
    let (webhook, _) = keypool::ops::webhooks::create(
        w.dyn_store(),
        &w.webhooks.sender,
        &keypool_tests::admin_of(&acme),
        input,
        w.now(),
    )
    .await
    .unwrap();
    let queue = keypool_tests::moto_queue().await;
    let runtime = RuntimeApi::start().await.unwrap();
    let mut env = lambda_env(&runtime, "webhooks", w.endpoint());
    env.push(("MAIN_TABLE".into(), w.tables.main.clone()));
    env.push(("ASSIGNMENTS_TABLE".into(), w.tables.assignments.clone()));
    env.push(("AUDIT_TABLE".into(), w.tables.audit.clone()));
    env.push(("WEBHOOK_QUEUE_URL".into(), queue.clone()));
    env.push((
        "AWS_ENDPOINT_URL_SQS".into(),
        keypool_tests::moto::endpoint().to_string(),
    ));
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_webhooks"));
    let function = Function::spawn(binary, &env).unwrap();
    let invoke = |event: Value| {
        let runtime = &runtime;
        async move {
            match runtime
                .invoke(event, std::time::Duration::from_secs(30))
                .await
                .unwrap()
            {
                Outcome::Response(r) => r,
                other => panic!("the function failed: {other:?}"),
            }
        }
    };

    // The stream: a new assignment of acme becomes one delivery, however often it comes.
    let mut batch = fixture("dynamodb-stream/insert-assignment.json");
    // Redeemed now: an event is retried for three days from when it happened.
    batch["Records"][0]["dynamodb"]["NewImage"]["redeemed_at"]["S"] =
        json!(keypool::time::format(&chrono::Utc::now()));
    assert_eq!(
        invoke(batch.clone()).await,
        json!({ "batchItemFailures": [] })
    );
    assert_eq!(invoke(batch).await, json!({ "batchItemFailures": [] }));
    let page = w
        .dyn_store()
        .list_deliveries(&webhook.webhook_id, None, None, 10)
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    let delivery = &page.items[0];

    // The queue: its message is attempted; 127.0.0.1 is not a public address, so nothing
    // reaches the receiver, and the delivery waits for its next attempt.
    let message = json!({ "Records": [{
        "messageId": "m-1",
        "body": json!({ "webhook_id": webhook.webhook_id, "delivery_id": delivery.delivery_id }).to_string(),
        "eventSource": "aws:sqs",
    }]});
    assert_eq!(invoke(message).await, json!({ "batchItemFailures": [] }));
    let after = w
        .dyn_store()
        .get_delivery(&webhook.webhook_id, &delivery.delivery_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((after.status, after.attempts), (DeliveryStatus::Pending, 1));
    assert!(
        after
            .last_error
            .as_deref()
            .unwrap()
            .contains("public addresses only"),
        "{after:?}"
    );
    assert!(receiver.received().is_empty());
    function.stop().await;
}
