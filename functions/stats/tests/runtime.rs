//! The built binary, run as Lambda runs it: Runtime API, a DynamoDB stream batch, real store.

use keypool::domain::Month;
use keypool::identity::OrgId;
use keypool_runtime_api::{Function, Outcome, RuntimeApi, lambda_env};
use keypool_tests::World;
use serde_json::{Value, json};

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/../../tests/fixtures/dynamodb-stream/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_a_stream_batch_once_and_reports_the_record_it_could_not_read() {
    let w = World::new().await;
    let runtime = RuntimeApi::start().await.unwrap();
    let mut env = lambda_env(&runtime, "stats", w.endpoint());
    env.push(("MAIN_TABLE".into(), w.tables.main.clone()));
    env.push(("ASSIGNMENTS_TABLE".into(), w.tables.assignments.clone()));
    env.push(("AUDIT_TABLE".into(), w.tables.audit.clone()));
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_stats"));
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

    let batch = fixture("mixed-batch.json");
    let none_failed = json!({ "batchItemFailures": [] });
    assert_eq!(invoke(batch.clone()).await, none_failed);
    // Redelivered: still no failure, still one count per redemption.
    assert_eq!(invoke(batch).await, none_failed);
    let acme = OrgId::parse("acme").unwrap();
    let november = Month::parse("2026-11").unwrap();
    let months = w
        .dyn_store()
        .month_counts(&acme, november, november)
        .await
        .unwrap();
    assert_eq!(months.len(), 1);
    assert_eq!((months[0].redeemed, months[0].cancelled), (2, 0));
    // Its one launch, counted once.
    let pool = keypool::domain::PoolId::parse("01938a6e-1111-7c3d-9e8f-0a1b2c3d4e5f").unwrap();
    let totals = w.dyn_store().pool_totals(&pool).await.unwrap();
    assert_eq!((totals.launches, totals.launched_assignments), (1, 1));

    // A record the handler cannot read is reported by its sequence number, so Lambda retries
    // from there (and, after its retries, sends the batch to StatsFailures).
    let mut poison = fixture("insert-assignment.json");
    poison["Records"][0]["dynamodb"]["NewImage"]
        .as_object_mut()
        .unwrap()
        .remove("org");
    assert_eq!(
        invoke(poison).await,
        json!({ "batchItemFailures": [{ "itemIdentifier": "111100000000000000000001" }] })
    );
    function.stop().await;
}
