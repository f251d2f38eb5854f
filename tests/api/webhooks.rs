//! Webhooks, end to end: an endpoint registered through the API, a redemption fanned out from
//! the assignments stream, the delivery signed (checked by the Standard Webhooks Python
//! package) and sent to a real receiver; retries on their schedule, redelivery, rotation,
//! disabling, isolation of a dead endpoint, and the refusal of private targets.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use chrono::Duration as Span;
use keypool::identity::OrgId;
use keypool_tests::World;
use keypool_tests::webhooks::{Answer, Receiver};
use serde_json::{Value, json};

use super::fixtures::*;

const WAIT: Duration = Duration::from_secs(20);

/// Registers an endpoint of `acme` for `events`; its id and its secret.
async fn endpoint(w: &World, url: &str, events: &[&str]) -> (String, String) {
    let r = w
        .call(
            POST,
            "/v1/webhooks",
            Some(&w.admin("acme")),
            Some(json!({"url": url, "events": events, "description": "the lab"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let secret = r.body["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"), "{secret}");
    (id(&r, "webhook_id"), secret)
}

async fn deliveries(w: &World, webhook: &str) -> Vec<Value> {
    let r = w
        .call(
            GET,
            &format!("/v1/webhooks/{webhook}/deliveries"),
            Some(&w.admin("acme")),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r.body["items"].as_array().unwrap().clone()
}

/// Waits until the endpoint's newest delivery has `status` and `attempts`.
async fn settled(w: &World, webhook: &str, status: &str, attempts: u64) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let all = deliveries(w, webhook).await;
        if let Some(d) = all.first()
            && d["status"] == status
            && d["attempts"] == attempts
        {
            return d.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never {status} after {attempts}: {all:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A redemption of a fresh key, and the stream followed so that it is fanned out.
async fn redeem_and_follow(w: &World, pool_id: &str, learner: &str) -> Value {
    let keys = w.generate("acme", pool_id, 1).await;
    let r = redeem(w, learner, &keys[0]).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    w.follower().drain().await.expect("the stream followed");
    r.body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redemption_reaches_the_endpoint_signed_once_whatever_the_stream_replays() {
    let w = World::new().await;
    let (_, pool_id) = w.pool("acme", 30).await;
    let receiver = Receiver::start(Answer::Ok).await;
    let (webhook, secret) = endpoint(&w, &receiver.url(), &["assignment.created"]).await;
    // The secret is shown once: not in a read of the endpoint.
    let read = w
        .call(
            GET,
            &format!("/v1/webhooks/{webhook}"),
            Some(&w.admin("acme")),
            None,
        )
        .await;
    assert!(read.body.get("secret").is_none(), "{:?}", read.body);
    assert!(!read.body.to_string().contains(&secret));

    let assignment = redeem_and_follow(&w, &pool_id, "lea").await;
    let got = receiver.wait_for(1, WAIT).await;
    let request = &got[0];
    assert!(
        request.verified_by_python(&secret),
        "the signature verifies"
    );
    assert_eq!(request.header("content-type"), "application/json");
    let event = request.json();
    request
        .conforms_to_document()
        .expect("the payload the document describes");
    assert_eq!(event["type"], "assignment.created");
    assert_eq!(event["organization"], "acme");
    assert_eq!(event["id"], request.header("webhook-id"));
    assert_eq!(event["data"]["assignment_id"], assignment["assignment_id"]);
    assert_eq!(event["data"]["learner"], "lea");
    assert_eq!(event["data"]["course_id"], assignment["course_id"]);
    let logged = settled(&w, &webhook, "delivered", 1).await;
    assert_eq!(logged["last_status_code"], 200);
    assert_eq!(logged["event_id"], event["id"]);

    // The same event fanned out again (a stream record delivered twice): no second delivery.
    let again: keypool::domain::Event = serde_json::from_slice(&request.body).unwrap();
    let made =
        keypool::ops::webhooks::emit(w.dyn_store(), w.webhooks.deliveries.as_ref(), &[again])
            .await
            .unwrap();
    assert_eq!(made, 0);
    assert_eq!(deliveries(&w, &webhook).await.len(), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launch_and_a_cancellation_are_told_as_the_document_describes() {
    let w = World::new().await;
    let (_, pool_id) = w.pool("acme", 30).await;
    let receiver = Receiver::start(Answer::Ok).await;
    let (_, secret) = endpoint(
        &w,
        &receiver.url(),
        &[
            "assignment.created",
            "assignment.launched",
            "assignment.cancelled",
        ],
    )
    .await;
    // Lea launches her assignment twice; Max's is cancelled (a launched one cannot be).
    let lea = redeem_and_follow(&w, &pool_id, "lea").await;
    let lea = lea["assignment_id"].as_str().unwrap().to_string();
    receiver.wait_for(1, WAIT).await;
    for told in 2..=3 {
        let launched = w
            .call(
                POST,
                &format!("/v1/me/assignments/{lea}/launch"),
                Some(&w.learner("lea")),
                None,
            )
            .await;
        assert_eq!(launched.status, StatusCode::OK, "{:?}", launched.body);
        w.follower().drain().await.expect("the stream followed");
        // Awaited one by one, so the receiver hears them in order.
        receiver.wait_for(told, WAIT).await;
    }
    let max = redeem_and_follow(&w, &pool_id, "max").await;
    let max = max["assignment_id"].as_str().unwrap().to_string();
    receiver.wait_for(4, WAIT).await;
    let cancelled = w
        .call(
            POST,
            &format!("/v1/assignments/{max}/cancel"),
            Some(&w.admin("acme")),
            None,
        )
        .await;
    assert_eq!(cancelled.status, StatusCode::OK, "{:?}", cancelled.body);
    w.follower().drain().await.expect("the stream followed");
    let got = receiver.wait_for(5, WAIT).await;

    let told: Vec<(String, String, u64)> = got
        .iter()
        .map(|r| {
            assert!(r.verified_by_python(&secret));
            r.conforms_to_document()
                .expect("the payload the document describes");
            let event = r.json();
            let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
            (
                text(&event["type"]),
                text(&event["data"]["assignment_id"]),
                event["data"]["launch_count"].as_u64().unwrap_or(99),
            )
        })
        .collect();
    // One event per launch, each with its count; the cancellation as the assignment is now.
    let expected = [
        ("assignment.created", &lea, 0),
        ("assignment.launched", &lea, 1),
        ("assignment.launched", &lea, 2),
        ("assignment.created", &max, 0),
        ("assignment.cancelled", &max, 0),
    ]
    .map(|(kind, id, n)| (kind.to_string(), id.clone(), n));
    assert_eq!(told, expected);
    let last = got[4].json();
    assert_eq!(last["data"]["learner"], "max");
    assert_eq!(last["data"]["valid"], false);
    assert!(last["data"]["cancelled_at"].is_string(), "{last}");
    let ids: std::collections::HashSet<&str> = got.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(ids.len(), 5, "each event its own id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_export_and_a_finished_import_are_told_once_each() {
    let w = World::new().await;
    let (_, pool_id) = w.pool("acme", 30).await;
    w.generate("acme", &pool_id, 3).await;
    let receiver = Receiver::start(Answer::Ok).await;
    let (webhook, secret) =
        endpoint(&w, &receiver.url(), &["export.finished", "job.finished"]).await;

    let export = w
        .call(
            POST,
            &format!("/v1/pools/{pool_id}/exports"),
            Some(&w.admin("acme")),
            None,
        )
        .await;
    assert_eq!(export.status, StatusCode::ACCEPTED, "{:?}", export.body);
    let export_id = id(&export, "export_id");
    let done = w.finished_export("acme", &export_id).await;
    let got = receiver.wait_for(1, WAIT).await;
    assert!(got[0].verified_by_python(&secret));
    let event = got[0].json();
    got[0]
        .conforms_to_document()
        .expect("the payload the document describes");
    assert_eq!(event["type"], "export.finished");
    assert_eq!(event["data"]["export_id"], export_id.as_str());
    assert_eq!(event["data"]["pool_id"], pool_id.as_str());
    assert_eq!(event["data"]["status"], "done");
    assert_eq!(event["data"]["rows"], done.rows);
    // The export as the API shows it, but never a link to its file.
    assert_eq!(event["data"]["file_name"], done.file_name, "{event}");
    assert!(event["data"].get("url").is_none(), "{event}");
    assert_eq!(done.rows, 3);
    // The file's link is not in the event: it is fetched, signed, through the API.
    assert!(!got[0].json().to_string().contains("http://keypool.test"));

    // Told again (a job message delivered twice): the same event, no second delivery.
    let job = keypool::domain::Job::Export {
        org: OrgId::parse("acme").unwrap(),
        export_id: keypool::domain::ExportId::parse(&export_id).unwrap(),
    };
    keypool::events::webhooks::job_finished(w.dyn_store(), w.webhooks.deliveries.as_ref(), &job)
        .await
        .unwrap();

    // A paste long enough for an import job ends with its counts.
    if !w.skip_volume_on_moto() {
        let lines: Vec<String> = (0..10_001).map(|i| format!("FIN{i:09}")).collect();
        let import = keypool_tests::send(
            &w.app,
            POST,
            &format!("/v1/pools/{pool_id}/keys"),
            Some(&w.admin("acme")),
            Some("text/plain"),
            lines.join("\n").into_bytes(),
        )
        .await;
        assert_eq!(import.status, StatusCode::ACCEPTED, "{:?}", import.body);
        let got = receiver.wait_for(2, Duration::from_secs(120)).await;
        let event = got[1].json();
        got[1]
            .conforms_to_document()
            .expect("the payload the document describes");
        assert_eq!(event["type"], "job.finished");
        assert_eq!(event["data"]["job_id"], id(&import, "job_id").as_str());
        assert_eq!(event["data"]["kind"], "import");
        assert_eq!(event["data"]["status"], "done", "{event}");
        assert_eq!(event["data"]["done"], 10_001);
        assert_eq!(event["data"]["total"], 10_001);
        assert_eq!(event["data"]["rejected_count"], 0);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let expected = if w.is_moto() { 1 } else { 2 };
    assert_eq!(receiver.received().len(), expected);
    assert_eq!(deliveries(&w, &webhook).await.len(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_retried_on_their_schedule_with_one_id_and_redelivered_on_request() {
    let w = World::new().await;
    let (_, pool_id) = w.pool("acme", 30).await;
    let receiver = Receiver::start(Answer::Status(500)).await;
    let (webhook, secret) = endpoint(&w, &receiver.url(), &["assignment.created"]).await;
    redeem_and_follow(&w, &pool_id, "lea").await;
    receiver.wait_for(1, WAIT).await;
    let first = settled(&w, &webhook, "pending", 1).await;
    assert_eq!(first["last_status_code"], 500);
    // The first retry comes after 15 to 30 s of the world's clock (30 s, with jitter), not before.
    let last = keypool::time::parse(first["last_attempt_at"].as_str().unwrap()).unwrap();
    let next = keypool::time::parse(first["next_attempt_at"].as_str().unwrap()).unwrap();
    assert!(
        next - last >= Span::seconds(15) && next - last <= Span::seconds(30),
        "{first}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received().len(), 1, "nothing before it is due");
    w.clock.advance(Span::seconds(31));
    receiver.wait_for(2, WAIT).await;
    let second = settled(&w, &webhook, "pending", 2).await;
    let gap = keypool::time::parse(second["next_attempt_at"].as_str().unwrap()).unwrap()
        - keypool::time::parse(second["last_attempt_at"].as_str().unwrap()).unwrap();
    assert!(
        gap >= Span::seconds(30) && gap <= Span::seconds(60),
        "doubled: {second}"
    );
    // It answers again: the third attempt delivers.
    receiver.answer(Answer::Ok);
    w.clock.advance(Span::seconds(61));
    let got = receiver.wait_for(3, WAIT).await;
    settled(&w, &webhook, "delivered", 3).await;
    let ids: Vec<&str> = got.iter().map(|r| r.header("webhook-id")).collect();
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "one webhook-id: {ids:?}"
    );
    assert!(got.iter().all(|r| r.verified_by_python(&secret)));

    // An admin sends it again: a fourth request, the same id.
    let delivery = second["delivery_id"].as_str().unwrap();
    let r = w
        .call(
            POST,
            &format!("/v1/webhooks/{webhook}/deliveries/{delivery}/retry"),
            Some(&w.admin("acme")),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let got = receiver.wait_for(4, WAIT).await;
    assert_eq!(got[3].header("webhook-id"), ids[0]);
    settled(&w, &webhook, "delivered", 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_signs_beside_the_new_one_for_a_day() {
    let w = World::new().await;
    let receiver = Receiver::start(Answer::Ok).await;
    let (webhook, old) = endpoint(&w, &receiver.url(), &["assignment.created"]).await;
    let rotated = w
        .call(
            POST,
            &format!("/v1/webhooks/{webhook}/secret"),
            Some(&w.admin("acme")),
            None,
        )
        .await;
    assert_eq!(rotated.status, StatusCode::OK, "{:?}", rotated.body);
    let new = rotated.body["secret"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    let admin = w.admin("acme");
    let test = format!("/v1/webhooks/{webhook}/test");
    let sent = w.call(POST, &test, Some(&admin), None).await;
    assert_eq!(sent.status, StatusCode::ACCEPTED, "{:?}", sent.body);
    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(got[0].json()["type"], "webhook.test");
    got[0]
        .conforms_to_document()
        .expect("the payload the document describes");
    assert_eq!(got[0].header("webhook-signature").split(' ').count(), 2);
    assert!(got[0].verified_by_python(&new) && got[0].verified_by_python(&old));
    // A day later the old one has stopped.
    w.clock.advance(Span::hours(24) + Span::minutes(1));
    w.call(POST, &test, Some(&admin), None).await;
    let got = receiver.wait_for(2, WAIT).await;
    assert_eq!(got[1].header("webhook-signature").split(' ').count(), 1);
    assert!(got[1].verified_by_python(&new) && !got[1].verified_by_python(&old));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_failing_for_five_days_is_disabled_with_its_reason() {
    let w = World::new().await;
    let receiver = Receiver::start(Answer::Status(503)).await;
    let (webhook, _) = endpoint(&w, &receiver.url(), &["assignment.created"]).await;
    let admin = w.admin("acme");
    let test = format!("/v1/webhooks/{webhook}/test");
    w.call(POST, &test, Some(&admin), None).await;
    receiver.wait_for(1, WAIT).await;
    settled(&w, &webhook, "pending", 1).await;
    // Five days on, every attempt still failing: the next failure disables it.
    w.clock.advance(Span::days(5) + Span::minutes(1));
    w.call(POST, &test, Some(&admin), None).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let disabled = loop {
        let r = w
            .call(GET, &format!("/v1/webhooks/{webhook}"), Some(&admin), None)
            .await;
        if r.body["enabled"] == false {
            break r.body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never disabled: {:?}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        disabled["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("every delivery failed")
    );
    // Enabling it again forgets the streak and the reason.
    let r = w
        .call(
            Method::PATCH,
            &format!("/v1/webhooks/{webhook}"),
            Some(&admin),
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(r.body["enabled"], true);
    assert_eq!(r.body["disabled_reason"], Value::Null);
    assert_eq!(r.body["failing_since"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_endpoint_does_not_hold_up_a_live_one() {
    let w = World::new().await;
    let (_, pool_id) = w.pool("acme", 30).await;
    let dead = Receiver::start(Answer::Hang).await;
    let live = Receiver::start(Answer::Ok).await;
    endpoint(&w, &dead.url(), &["assignment.created"]).await;
    endpoint(&w, &live.url(), &["assignment.created"]).await;
    let keys = w.generate("acme", &pool_id, 12).await;
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(
            redeem(&w, &format!("l{i}"), key).await.status,
            StatusCode::CREATED
        );
    }
    w.follower().drain().await.unwrap();
    // The live endpoint gets all twelve (well before any of the dead one's attempts ends at
    // 10 s) while the dead one is sent no more than four at once.
    live.wait_for(12, Duration::from_secs(8)).await;
    assert!(!dead.received().is_empty());
    assert!(dead.received().len() <= keypool::webhooks::SENDS_PER_ENDPOINT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_and_special_targets_are_refused_at_save_and_at_send() {
    let w = World::new().await;
    let strict = w.strict_sender();
    let acme = OrgId::parse("acme").unwrap();
    for url in [
        "https://loopback.test/hook",
        "https://metadata.test/latest/meta-data/",
        "https://169.254.169.254/latest/meta-data/",
        "https://127.0.0.1/hook",
        "https://[::1]/hook",
        "https://private.test/hook",
        "https://mixed.test/hook",
        "http://example.com/hook",
        "ftp://example.com/",
        "https://user:pw@example.com/",
        // A resolver that never answers is given up on (RESOLVE_TIMEOUT), not waited for.
        "https://silent.test/hook",
    ] {
        let input = keypool::ops::webhooks::WebhookInput {
            url: url.into(),
            events: vec!["assignment.created".into()],
            description: None,
        };
        let r = keypool::ops::webhooks::create(
            w.dyn_store(),
            &strict,
            &keypool_tests::admin_of(&acme),
            input,
            w.now(),
        )
        .await;
        match r {
            Err(keypool::Error::InvalidFields(fields)) => {
                assert!(fields.contains_key("url"), "{url}");
                if url.contains("silent") {
                    assert!(
                        fields["url"].contains("did not resolve within"),
                        "{fields:?}"
                    );
                }
            }
            other => panic!("{url}: {other:?}"),
        }
    }
    assert!(
        keypool::ops::webhooks::list(w.dyn_store(), &acme)
            .await
            .unwrap()
            .is_empty()
    );

    // Saved while the name was public, then pointed at this machine (DNS rebinding): the
    // attempt refuses to connect, and the receiver gets nothing.
    let receiver = Receiver::start(Answer::Ok).await;
    w.names.point("rebound.test", &["93.184.216.34"]);
    let input = keypool::ops::webhooks::WebhookInput {
        url: format!("https://rebound.test:{}/hook", receiver.port),
        events: vec!["assignment.created".into()],
        description: None,
    };
    let (webhook, _) = keypool::ops::webhooks::create(
        w.dyn_store(),
        &strict,
        &keypool_tests::admin_of(&acme),
        input,
        w.now(),
    )
    .await
    .unwrap();
    w.names.point("rebound.test", &["127.0.0.1"]);
    let delivery = keypool::ops::webhooks::send_test(
        w.dyn_store(),
        &keypool::webhooks::Stored,
        &keypool_tests::admin_of(&acme),
        &webhook.webhook_id.to_string(),
        w.now(),
    )
    .await
    .unwrap();
    let turn = keypool::ops::webhooks::attempt(
        w.dyn_store(),
        &strict,
        &webhook.webhook_id,
        &delivery.delivery_id,
        w.now(),
        Span::seconds(30),
    )
    .await
    .unwrap();
    let keypool::ops::webhooks::Turn::Attempted(after) = turn else {
        panic!("{turn:?}");
    };
    assert_eq!(after.status, keypool::domain::DeliveryStatus::Pending);
    assert!(
        after
            .last_error
            .as_deref()
            .unwrap()
            .contains("public addresses only"),
        "{after:?}"
    );
    assert!(receiver.received().is_empty());

    // Through the API: a bad URL is a field error and writes nothing.
    let r = w
        .call(
            POST,
            "/v1/webhooks",
            Some(&w.admin("acme")),
            Some(json!({"url": "not a url", "events": ["nope"]})),
        )
        .await;
    assert_eq!(r.code(), "invalid_input");
    assert!(r.body["error"]["details"]["fields"]["url"].is_string());
    assert!(r.body["error"]["details"]["fields"]["events"].is_string());
    let listed = w
        .call(GET, "/v1/webhooks", Some(&w.admin("acme")), None)
        .await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 1);
    // Another organization sees none of it.
    let other = w
        .call(
            GET,
            &format!("/v1/webhooks/{}", webhook.webhook_id),
            Some(&w.admin("globex")),
            None,
        )
        .await;
    assert_eq!(other.code(), "webhook_not_found");
}
