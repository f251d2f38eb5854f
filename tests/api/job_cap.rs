//! The cap on an organization's open jobs: a start beyond it answers 429 `too_many_jobs`
//! with Retry-After and writes nothing, concurrent starts never open more than the cap, and a
//! job that ends makes room for the next.

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use axum::Router;
use axum::http::{StatusCode, header};
use keypool::domain::{ExportId, Job, JobId, JobStatus};
use keypool::identity::OrgId;
use keypool::jobs::Jobs;
use keypool_tests::{Reply, World, send};
use serde_json::json;

use super::fixtures::*;

/// A queue that takes jobs and runs nothing: the jobs it is given stay open.
struct Queued;

#[async_trait]
impl Jobs for Queued {
    async fn submit(&self, _: &Job) -> keypool::Result<()> {
        Ok(())
    }
}

fn org(name: &str) -> OrgId {
    OrgId::parse(name).unwrap()
}

/// The API with jobs that stay open until a test runs them by hand.
fn held(w: &World) -> Router {
    w.app_with_jobs(Arc::new(Queued), w.objects.clone())
}

/// How many items of an organization's partition have a sort key starting with `prefix`.
async fn items(w: &World, org: &str, prefix: &str) -> usize {
    let out = w
        .store
        .client()
        .query()
        .table_name(&w.tables.main)
        .key_condition_expression("PK = :pk AND begins_with(SK, :prefix)")
        .expression_attribute_values(":pk", AttributeValue::S(format!("ORG#{org}")))
        .expression_attribute_values(":prefix", AttributeValue::S(prefix.into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    out.items().len()
}

async fn start_export(w: &World, app: &Router, org: &str, pool_id: &str) -> Reply {
    send(
        app,
        POST,
        &format!("/v1/pools/{pool_id}/exports"),
        Some(&w.admin(org)),
        None,
        Vec::new(),
    )
    .await
}

async fn start_generation(w: &World, app: &Router, org: &str, pool_id: &str) -> Reply {
    send(
        app,
        POST,
        &format!("/v1/pools/{pool_id}/keys/generate"),
        Some(&w.admin(org)),
        Some("application/json"),
        json!({ "count": 10_001 }).to_string().into_bytes(),
    )
    .await
}

/// A paste long enough to be written by an import job.
async fn start_import(w: &World, app: &Router, org: &str, pool_id: &str) -> Reply {
    let lines: Vec<String> = (0..10_001).map(|i| format!("CAP{i:09}")).collect();
    send(
        app,
        POST,
        &format!("/v1/pools/{pool_id}/keys"),
        Some(&w.admin(org)),
        Some("text/plain"),
        lines.join("\n").into_bytes(),
    )
    .await
}

fn assert_too_many(reply: &Reply, max: u64) {
    assert_eq!(
        reply.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{:?}",
        reply.body
    );
    assert_eq!(reply.code(), "too_many_jobs");
    assert_eq!(reply.body["error"]["details"]["max_open_jobs"], max);
    let message = reply.body["error"]["message"].as_str().unwrap();
    assert!(message.contains(&format!("{max} jobs")), "{message}");
    let retry = reply.headers[header::RETRY_AFTER].to_str().unwrap();
    assert!(retry.parse::<u64>().unwrap() > 0, "{retry}");
    assert_eq!(
        reply.body["error"]["details"]["retry_after_seconds"],
        retry.parse::<u64>().unwrap()
    );
}

#[tokio::test]
async fn starts_beyond_the_cap_answer_429_and_write_nothing() {
    let w = World::with_max_open_jobs(2).await;
    let app = held(&w);
    let (_, pool_id) = w.pool("acme", 30).await;
    let export = start_export(&w, &app, "acme", &pool_id).await;
    assert_eq!(export.status, StatusCode::ACCEPTED, "{:?}", export.body);
    let generation = start_generation(&w, &app, "acme", &pool_id).await;
    assert_eq!(
        generation.status,
        StatusCode::ACCEPTED,
        "{:?}",
        generation.body
    );

    // A third job of any kind is refused.
    assert_too_many(&start_export(&w, &app, "acme", &pool_id).await, 2);
    assert_too_many(&start_generation(&w, &app, "acme", &pool_id).await, 2);
    assert_too_many(&start_import(&w, &app, "acme", &pool_id).await, 2);
    // ... and wrote nothing: no job, no import input, no open-job entry, no key.
    assert_eq!(items(&w, "acme", "EXPORT#").await, 1);
    assert_eq!(
        items(&w, "acme", "JOB#").await,
        1,
        "one job item, no input chunks"
    );
    assert_eq!(w.dyn_store().open_jobs().await.unwrap().len(), 2);
    assert_eq!(w.dyn_store().open_job_count(&org("acme")).await.unwrap(), 2);
    assert_eq!(pool_counts(&w, "acme", &pool_id).await.0, 0);

    // Small requests run no job and are not capped; other organizations have caps of their own.
    w.generate("acme", &pool_id, 5).await;
    let (_, other) = w.pool("globex", 30).await;
    assert_eq!(
        start_export(&w, &app, "globex", &other).await.status,
        StatusCode::ACCEPTED
    );

    // Once the export has ended, there is room for one more job.
    let export_id = ExportId::parse(&id(&export, "export_id")).unwrap();
    let done = keypool::ops::export::run(
        w.dyn_store(),
        w.objects.as_ref(),
        &w.clock,
        &org("acme"),
        &export_id,
    )
    .await
    .unwrap();
    assert_eq!(done.status, keypool::domain::ExportStatus::Done);
    assert_eq!(w.dyn_store().open_job_count(&org("acme")).await.unwrap(), 1);
    let again = start_export(&w, &app, "acme", &pool_id).await;
    assert_eq!(again.status, StatusCode::ACCEPTED, "{:?}", again.body);
    assert_too_many(&start_export(&w, &app, "acme", &pool_id).await, 2);

    // A generation job that ends (failed, here) makes room too.
    let job_id = JobId::parse(&id(&generation, "job_id")).unwrap();
    let mut job = w
        .dyn_store()
        .get_key_job(&org("acme"), &job_id)
        .await
        .unwrap()
        .unwrap();
    job.status = JobStatus::Failed;
    job.error = Some("stopped by the test".into());
    w.dyn_store().set_key_job_status(&job).await.unwrap();
    assert_eq!(w.dyn_store().open_job_count(&org("acme")).await.unwrap(), 1);
    let import = start_import(&w, &app, "acme", &pool_id).await;
    assert_eq!(import.status, StatusCode::ACCEPTED, "{:?}", import.body);
    assert_eq!(w.dyn_store().open_job_count(&org("acme")).await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_starts_with_a_cap_of_three_open_three() {
    let w = Arc::new(World::with_max_open_jobs(3).await);
    let app = held(&w);
    let (_, pool_id) = w.pool("acme", 30).await;
    let starts: Vec<_> = (0..20)
        .map(|i| {
            let (w, app, pool_id) = (w.clone(), app.clone(), pool_id.clone());
            tokio::spawn(async move {
                if i % 2 == 0 {
                    start_export(&w, &app, "acme", &pool_id).await
                } else {
                    start_generation(&w, &app, "acme", &pool_id).await
                }
            })
        })
        .collect();
    let mut accepted = Vec::new();
    for start in starts {
        let reply = start.await.unwrap();
        if reply.status == StatusCode::ACCEPTED {
            accepted.push(reply);
        } else {
            assert_too_many(&reply, 3);
        }
    }
    assert_eq!(accepted.len(), 3, "exactly the cap was opened");
    assert_eq!(w.dyn_store().open_jobs().await.unwrap().len(), 3);
    assert_eq!(w.dyn_store().open_job_count(&org("acme")).await.unwrap(), 3);
    assert_eq!(
        items(&w, "acme", "EXPORT#").await + items(&w, "acme", "JOB#").await,
        3,
        "the refused starts wrote no job"
    );
}

#[tokio::test]
async fn a_job_finished_twice_is_uncounted_once() {
    let w = World::with_max_open_jobs(3).await;
    let app = held(&w);
    let (_, pool_id) = w.pool("acme", 30).await;
    let generation = start_generation(&w, &app, "acme", &pool_id).await;
    let export = start_export(&w, &app, "acme", &pool_id).await;
    assert_eq!(w.dyn_store().open_job_count(&org("acme")).await.unwrap(), 2);

    // Two runners of one job both finish it (a redelivered message, say).
    let job_id = JobId::parse(&id(&generation, "job_id")).unwrap();
    let mut job = w
        .dyn_store()
        .get_key_job(&org("acme"), &job_id)
        .await
        .unwrap()
        .unwrap();
    job.status = JobStatus::Done;
    w.dyn_store().set_key_job_status(&job).await.unwrap();
    w.dyn_store().set_key_job_status(&job).await.unwrap();
    let stored_job = w
        .dyn_store()
        .get_key_job(&org("acme"), &job_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored_job.status, JobStatus::Done);
    assert_eq!(
        w.dyn_store().open_job_count(&org("acme")).await.unwrap(),
        1,
        "the export is still open"
    );
    let export_id = ExportId::parse(&id(&export, "export_id")).unwrap();
    let mut stored = w
        .dyn_store()
        .get_export(&org("acme"), &export_id)
        .await
        .unwrap()
        .unwrap();
    stored.status = keypool::domain::ExportStatus::Failed;
    w.dyn_store().finish_export(&stored).await.unwrap();
    w.dyn_store().finish_export(&stored).await.unwrap();

    assert_eq!(w.dyn_store().open_job_count(&org("acme")).await.unwrap(), 0);
    assert!(w.dyn_store().open_jobs().await.unwrap().is_empty());
    // The cap still holds at three, not more.
    for _ in 0..3 {
        assert_eq!(
            start_export(&w, &app, "acme", &pool_id).await.status,
            StatusCode::ACCEPTED
        );
    }
    assert_too_many(&start_export(&w, &app, "acme", &pool_id).await, 3);
}

#[tokio::test]
async fn an_import_refused_when_it_registers_leaves_none_of_its_input() {
    let w = World::with_max_open_jobs(1).await;
    let app = held(&w);
    let (_, pool_id) = w.pool("acme", 30).await;
    // An import passed the early check and stored its input; meanwhile another request took
    // the organization's last open job.
    let job_id = JobId::new();
    for index in 0..3 {
        let key = keypool::keys::KeyCode::parse(&format!("LATE{index:06}")).unwrap();
        w.dyn_store()
            .put_job_input(&org("acme"), &job_id, index, &[key])
            .await
            .unwrap();
    }
    assert_eq!(items(&w, "acme", "JOB#").await, 3);
    assert_eq!(
        start_export(&w, &app, "acme", &pool_id).await.status,
        StatusCode::ACCEPTED
    );
    let now = w.now();
    let import = keypool::domain::KeyJob {
        job_id,
        org: org("acme"),
        pool_id: keypool::domain::PoolId::parse(&pool_id).unwrap(),
        kind: keypool::domain::JobKind::Import,
        status: JobStatus::Pending,
        total: 3,
        done: 0,
        error: None,
        inputs: 3,
        position: 0,
        phase: None,
        rejected: Vec::new(),
        rejected_count: 0,
        started_by: None,
        created_at: now,
        updated_at: now,
    };
    let refused = w
        .dyn_store()
        .put_key_job(&import, w.max_open_jobs, None)
        .await;
    assert!(
        matches!(
            refused,
            Err(keypool::Error::TooManyJobs { max_open: 1, .. })
        ),
        "{refused:?}"
    );
    assert_eq!(items(&w, "acme", "JOB#").await, 0, "no job, no input");
    assert_eq!(w.dyn_store().open_jobs().await.unwrap().len(), 1);
}
