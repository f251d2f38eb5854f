//! The scheduled export from a real EventBridge event, a job message from the queue, and an
//! unreadable pool that stops neither.

use axum::http::{Method, StatusCode};
use keypool::domain::{ExportStatus, PoolId};
use keypool::identity::OrgId;
use keypool::ops::export;
use keypool_tests::World;
use serde_json::{Value, json};

use super::fixtures::*;

#[tokio::test]
async fn the_schedule_exports_changed_pools_only() {
    let w = World::new().await;
    let (_, quiet) = w.pool("acme", 30).await;
    let (_, busy) = w.pool("acme", 30).await;
    w.generate("acme", &quiet, 2).await;
    w.generate("acme", &busy, 2).await;

    let first = on_event(&w, scheduled_event()).await;
    drained(&w).await;
    assert_eq!(first["started"], 2, "both pools are new");
    assert_eq!(scheduled_files(&w, &quiet).len(), 1);
    let again = on_event(&w, scheduled_event()).await;
    drained(&w).await;
    assert_eq!(again["started"], 0, "nothing changed since");

    // A redemption changes one pool; an hour later the schedule exports only that one.
    w.clock.advance(chrono::Duration::hours(1));
    let keys = w.generate("acme", &busy, 1).await;
    let reply = redeem(&w, "lea", &keys[0]).await;
    assert_eq!(reply.status, StatusCode::CREATED);
    let third = on_event(&w, scheduled_event()).await;
    drained(&w).await;
    assert_eq!(third["started"], 1);
    assert_eq!(scheduled_files(&w, &quiet).len(), 1);
    let files = scheduled_files(&w, &busy);
    assert_eq!(files.len(), 2, "{files:?}");
    // exports/{org}/{pool}/{timestamp}.csv, and the newest has the redemption.
    assert!(
        files
            .iter()
            .all(|f| f.ends_with(".csv") && f.starts_with("20")),
        "{files:?}"
    );
    let newest = w
        .objects
        .path_of(&format!("exports/acme/{busy}/{}", files[1]))
        .unwrap();
    let text = std::fs::read_to_string(newest).unwrap();
    assert!(text.contains("lea"));
    assert_eq!(rows(&text).len(), 3);
}

#[tokio::test]
async fn a_job_message_from_the_queue_runs_the_export_once() {
    let w = World::new().await;
    let (_, pool_id) = w.pool("acme", 30).await;
    w.generate("acme", &pool_id, 4).await;
    // An export stored as the API stores it; its job arrives as an SQS message.
    let org = OrgId::parse("acme").unwrap();
    let pending = export::start(
        &w.job_context(&Queued),
        &keypool_tests::admin_of(&org),
        &pool_id,
        export::ExportInput::default(),
    )
    .await
    .unwrap();
    let job = serde_json::to_string(&keypool::domain::Job::Export {
        org: org.clone(),
        export_id: pending.export_id,
    })
    .unwrap();
    let path = format!(
        "{}/fixtures/sqs/export-job.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let fixture = std::fs::read_to_string(path).unwrap();
    let event: Value = serde_json::from_str(
        &fixture.replace("\"{{job}}\"", &serde_json::to_string(&job).unwrap()),
    )
    .unwrap();
    let answer = on_event(&w, event.clone()).await;
    assert_eq!(answer, json!({ "batchItemFailures": [] }));
    let done = stored_export(&w, &org, &pending.export_id).await;
    assert_eq!(done.status, ExportStatus::Done);
    assert_eq!(done.rows, 4);
    // Delivered again (SQS is at least once): the finished export is left as it is.
    let again = on_event(&w, event).await;
    assert_eq!(again, json!({ "batchItemFailures": [] }));
    let same = stored_export(&w, &org, &pending.export_id).await;
    assert_eq!(same, done);
    // A message that is not a job is reported for retry (and, in AWS, dead-lettered).
    let garbage: Value = serde_json::from_str(&fixture.replace("{{job}}", "not a job")).unwrap();
    let answer = on_event(&w, garbage).await;
    assert_eq!(
        answer["batchItemFailures"][0]["itemIdentifier"],
        "059f36b4-87a3-44ab-83d2-661975830a7d"
    );
}

/// A pool item that cannot be read (a date no reader accepts, written straight into the
/// table) is skipped by its organization's listing and by the schedule, which goes on for
/// every other pool.
#[tokio::test]
async fn one_unreadable_pool_breaks_no_listing_and_no_schedule() {
    let w = World::new().await;
    let (_, good) = w.pool("acme", 30).await;
    let (_, also_good) = w.pool("globex", 30).await;
    let (_, broken) = w.pool("globex", 30).await;
    w.generate("acme", &good, 2).await;
    w.generate("globex", &also_good, 2).await;
    w.generate("globex", &broken, 2).await;
    w.corrupt(
        keypool::schema::org_pk(&OrgId::parse("globex").unwrap()),
        keypool::schema::pool_sk(&PoolId::parse(&broken).unwrap()),
        "starts_at",
        "+10000-01-01T00:00:00Z",
    )
    .await;

    let listed = w
        .call(Method::GET, "/v1/pools", Some(&w.admin("globex")), None)
        .await;
    assert_eq!(listed.status, StatusCode::OK, "{:?}", listed.body);
    let ids: Vec<&str> = listed.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pool_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![also_good.as_str()]);

    let run = on_event(&w, scheduled_event()).await;
    drained(&w).await;
    assert_eq!(run["started"], 2, "both readable pools are exported: {run}");
    assert_eq!(scheduled_files(&w, &good).len(), 1);
}
