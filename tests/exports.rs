//! Exports: the CSV's content, the distribution marks, the S3 path on moto's server (multipart,
//! presigned link, failure mid-upload), and the scheduled export from a real EventBridge event.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use axum::http::{Method, StatusCode};
use keypool::domain::{
    Course, CourseId, Export, ExportId, ExportStatus, KeyFilter, KeyRecord, MaxOpenJobs, NewKey,
    Page, Pool, PoolFilter, PoolId,
};
use keypool::identity::OrgId;
use keypool::keys::KeyCode;
use keypool::objects::{ObjectStore, Upload};
use keypool::ops::export;
use keypool::store::prelude::*;
use keypool::store::{InsertOutcome, RemoveConflict};
use keypool::time::Timestamp;
use keypool_tests::{Queued, World, s3_bucket, send};
use serde_json::{Value, json};

/// Starts an export through the API and waits for its job; returns the export as the API
/// shows it afterwards.
async fn export_via(w: &World, app: &axum::Router, org: &str, pool_id: &str, body: Value) -> Value {
    let admin = w.admin(org);
    let started = send(
        app,
        Method::POST,
        &format!("/v1/pools/{pool_id}/exports"),
        Some(&admin),
        Some("application/json"),
        body.to_string().into_bytes(),
    )
    .await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{:?}", started.body);
    assert_eq!(started.body["status"], "pending");
    let id = started.body["export_id"].as_str().unwrap().to_string();
    w.finished_export(org, &id).await;
    let read = send(
        app,
        Method::GET,
        &format!("/v1/exports/{id}"),
        Some(&admin),
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(read.status, StatusCode::OK);
    read.body
}

/// Downloads a local link through the router.
async fn download_local(w: &World, url: &str) -> (StatusCode, String, String) {
    let path = url
        .strip_prefix("http://keypool.test")
        .expect("a link to the local server");
    let reply = w.raw(Method::GET, path, None, None, Vec::new()).await;
    let disposition = reply
        .headers
        .get("content-disposition")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let text = match reply.body {
        Value::String(s) => s,
        other => other.to_string(),
    };
    (reply.status, text, disposition)
}

fn rows(text: &str) -> Vec<csv::StringRecord> {
    csv::Reader::from_reader(text.as_bytes())
        .records()
        .map(Result::unwrap)
        .collect()
}

fn column(name: &str) -> usize {
    export::CSV_HEADER.iter().position(|c| *c == name).unwrap()
}

#[tokio::test]
async fn the_csv_has_every_column_quoted_and_neutralised() {
    let w = World::new().await;
    let admin = w.admin("acme");
    let course = w
        .call(
            Method::POST,
            "/v1/courses",
            Some(&admin),
            Some(json!({"title": "@SUM(1+1) \"Rust\""})),
        )
        .await;
    let now = w.now();
    let pool = w
        .call(
            Method::POST,
            "/v1/pools",
            Some(&admin),
            Some(json!({
                "name": "Spring, \"Q1\" cohort",
                "course_id": course.body["course_id"],
                "starts_at": keypool::time::format(&(now - chrono::Duration::hours(1))),
                "expires_at": keypool::time::format(&(now + chrono::Duration::days(30))),
                "content_availability_days": 30,
            })),
        )
        .await;
    let pool_id = pool.body["pool_id"].as_str().unwrap().to_string();
    let keys = w.generate("acme", &pool_id, 3).await;
    let redeemed = w
        .call(
            Method::POST,
            "/v1/redemptions",
            Some(&w.learner("=HYPERLINK(\"http://evil\")")),
            Some(json!({ "key": keys[1] })),
        )
        .await;
    assert_eq!(redeemed.status, StatusCode::CREATED, "{:?}", redeemed.body);

    let done = export_via(&w, &w.app, "acme", &pool_id, json!({})).await;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["rows"], 3);
    let file_name = done["file_name"].as_str().unwrap();
    assert!(
        file_name.starts_with("spring-q1-cohort-keys-") && file_name.ends_with(".csv"),
        "{file_name}"
    );
    let (status, text, disposition) = download_local(&w, done["url"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(disposition.contains(file_name), "{disposition}");
    // RFC 4180: the header, then quoted cells where commas, quotes or newlines occur.
    assert!(
        text.starts_with(&(export::CSV_HEADER.join(",") + "\r\n")),
        "{text}"
    );
    assert!(text.contains("\"Spring, \"\"Q1\"\" cohort\""), "{text}");
    let rows = rows(&text);
    assert_eq!(rows.len(), 3);
    let by_key = |k: &str| rows.iter().find(|r| &r[column("key")] == k).unwrap();
    let row = by_key(&keys[1]);
    assert_eq!(&row[column("status")], "redeemed");
    assert_eq!(&row[column("redeemed_by")], "'=HYPERLINK(\"http://evil\")");
    assert_eq!(
        &row[column("redeemed_at")],
        redeemed.body["redeemed_at"].as_str().unwrap()
    );
    assert_eq!(
        &row[column("assignment_id")],
        redeemed.body["assignment_id"].as_str().unwrap()
    );
    assert_eq!(
        &row[column("assignment_expires_at")],
        redeemed.body["expires_at"].as_str().unwrap()
    );
    assert_eq!(&row[column("pool")], "Spring, \"Q1\" cohort");
    assert_eq!(&row[column("course")], "'@SUM(1+1) \"Rust\"");
    assert_eq!(&row[column("pool_id")], pool_id.as_str());
    assert_eq!(&row[column("distributed_at")], "");
    let fresh = by_key(&keys[0]);
    assert_eq!(&fresh[column("status")], "available");
    assert_eq!(&fresh[column("redeemed_by")], "");
    assert!(keypool::time::parse(&fresh[column("created_at")]).is_some());

    // The link is signed and expires; a tampered or missing one opens nothing.
    let url = done["url"].as_str().unwrap();
    let (status, _, _) = download_local(&w, &format!("{url}x")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn filters_and_distribution_marks_hand_out_only_fresh_keys() {
    let w = World::new().await;
    let (_, pool_id) = w.pool("acme", 30).await;
    let first = w.generate("acme", &pool_id, 5).await;
    let redeem = w
        .call(
            Method::POST,
            "/v1/redemptions",
            Some(&w.learner("lea")),
            Some(json!({ "key": first[0] })),
        )
        .await;
    assert_eq!(redeem.status, StatusCode::CREATED);

    let redeemed_only =
        export_via(&w, &w.app, "acme", &pool_id, json!({"status": "redeemed"})).await;
    assert_eq!(redeemed_only["rows"], 1);

    // Hand out the available keys, marking them.
    let batch1 = export_via(
        &w,
        &w.app,
        "acme",
        &pool_id,
        json!({"status": "available", "mark_distributed": true}),
    )
    .await;
    assert_eq!(batch1["rows"], 4);
    let (_, text, _) = download_local(&w, batch1["url"].as_str().unwrap()).await;
    let marked = rows(&text);
    assert!(
        marked
            .iter()
            .all(|r| !r[column("distributed_at")].is_empty())
    );
    let listed = w
        .call(
            Method::GET,
            &format!("/v1/pools/{pool_id}/keys?status=available&undistributed=true"),
            Some(&w.admin("acme")),
            None,
        )
        .await;
    assert_eq!(listed.body["items"], json!([]));

    // More keys later: the next hand-out has only them.
    let second = w.generate("acme", &pool_id, 3).await;
    let batch2 = export_via(
        &w,
        &w.app,
        "acme",
        &pool_id,
        json!({"status": "available", "undistributed": true, "mark_distributed": true}),
    )
    .await;
    assert_eq!(batch2["rows"], 3);
    let (_, text, _) = download_local(&w, batch2["url"].as_str().unwrap()).await;
    let mut got: Vec<String> = rows(&text)
        .iter()
        .map(|r| r[column("key")].to_string())
        .collect();
    let mut want = second.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    // A marking export of every key later keeps the earlier marks: each key is handed out once.
    let all = export_via(
        &w,
        &w.app,
        "acme",
        &pool_id,
        json!({"mark_distributed": true}),
    )
    .await;
    assert_eq!(all["rows"], 8);
    let (_, text, _) = download_local(&w, all["url"].as_str().unwrap()).await;
    let all_rows = rows(&text);
    let row_of = |k: &str| all_rows.iter().find(|r| &r[column("key")] == k).unwrap();
    let earlier = marked
        .iter()
        .find(|r| r[column("key")] == first[1])
        .unwrap();
    assert_eq!(
        &row_of(&first[1])[column("distributed_at")],
        &earlier[column("distributed_at")]
    );
    assert_eq!(
        &row_of(&first[0])[column("distributed_at")],
        "",
        "redeemed keys are not marked"
    );
}

#[tokio::test]
async fn bad_requests_are_refused_and_write_nothing() {
    let w = World::new().await;
    let (_, pool_id) = w.pool("acme", 30).await;
    let admin = w.admin("acme");
    let path = format!("/v1/pools/{pool_id}/exports");
    let bad = [
        json!({"status": "lost"}),
        json!({"status": "redeemed", "mark_distributed": true}),
        json!({"colour": "blue"}),
    ];
    for body in bad {
        let reply = w
            .call(Method::POST, &path, Some(&admin), Some(body.clone()))
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
    }
    let learner = w
        .call(Method::POST, &path, Some(&w.learner("lea")), None)
        .await;
    assert_eq!(learner.status, StatusCode::FORBIDDEN);
    let foreign = w
        .call(Method::POST, &path, Some(&w.admin("globex")), None)
        .await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND);
    // Nothing was queued or stored by any of those.
    assert!(w.dyn_store().open_jobs().await.unwrap().is_empty());

    let done = export_via(&w, &w.app, "acme", &pool_id, json!({})).await;
    let id = done["export_id"].as_str().unwrap();
    let other = w
        .call(
            Method::GET,
            &format!("/v1/exports/{id}"),
            Some(&w.admin("globex")),
            None,
        )
        .await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    let unknown = w
        .call(Method::GET, "/v1/exports/not-an-id", Some(&admin), None)
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert!(
        w.dyn_store().open_jobs().await.unwrap().is_empty(),
        "finished jobs are closed"
    );
}

/// An object store whose uploads fail right after their `fail_at`-th write went through.
struct FailingUploads {
    inner: Arc<dyn ObjectStore>,
    fail_at: usize,
}

struct FailingUpload {
    inner: Box<dyn Upload>,
    writes: AtomicUsize,
    fail_at: usize,
}

#[async_trait]
impl ObjectStore for FailingUploads {
    async fn upload(&self, key: &str, content_type: &str) -> keypool::Result<Box<dyn Upload>> {
        Ok(Box::new(FailingUpload {
            inner: self.inner.upload(key, content_type).await?,
            writes: AtomicUsize::new(0),
            fail_at: self.fail_at,
        }))
    }

    async fn download_url(
        &self,
        key: &str,
        file_name: &str,
        valid_for: std::time::Duration,
    ) -> keypool::Result<String> {
        self.inner.download_url(key, file_name, valid_for).await
    }
}

#[async_trait]
impl Upload for FailingUpload {
    async fn write(&mut self, bytes: &[u8]) -> keypool::Result<()> {
        self.inner.write(bytes).await?;
        if self.writes.fetch_add(1, Ordering::SeqCst) + 1 == self.fail_at {
            return Err(anyhow::anyhow!("injected: the connection dropped").into());
        }
        Ok(())
    }

    async fn finish(self: Box<Self>) -> keypool::Result<()> {
        self.inner.finish().await
    }

    async fn abort(self: Box<Self>) -> keypool::Result<()> {
        self.inner.abort().await
    }
}

/// Enough keys for a CSV of many parts of `part_size(w)`: several pages on the embedded
/// engine, one on moto (where every key written is slow).
async fn big_pool(w: &World) -> String {
    let (_, pool_id) = w.pool("acme", 30).await;
    let count = if w.is_moto() { 400 } else { 6_000 };
    let mut made = 0;
    while made < count {
        let n = (count - made).min(10_000);
        w.generate("acme", &pool_id, n).await;
        made += n;
    }
    pool_id
}

fn part_size(w: &World) -> usize {
    if w.is_moto() { 16 * 1024 } else { 64 * 1024 }
}

#[tokio::test]
async fn a_local_export_that_fails_part_way_leaves_no_file_and_no_marks() {
    let w = World::new().await;
    let pool_id = big_pool(&w).await;
    let failing: Arc<dyn ObjectStore> = Arc::new(FailingUploads {
        inner: w.objects.clone(),
        fail_at: 1,
    });
    let app = w.app_with(failing);
    let failed = export_via(
        &w,
        &app,
        "acme",
        &pool_id,
        json!({"status": "available", "mark_distributed": true}),
    )
    .await;
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["url"], Value::Null);
    assert_eq!(failed["rows"], 0);
    assert!(failed["error"].as_str().unwrap().contains("left no file"));
    // No file, whole or partial, anywhere in the export folder.
    let folder = w
        .objects
        .path_of(&format!("exports/acme/{pool_id}"))
        .unwrap();
    let mut files = Vec::new();
    let mut dirs = vec![folder];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.file_type().unwrap().is_dir() {
                dirs.push(entry.path());
            } else {
                files.push(entry.path());
            }
        }
    }
    assert!(files.is_empty(), "{files:?}");
    // The marks it made before failing are gone: every key is still undistributed.
    let pool = w
        .call(
            Method::GET,
            &format!("/v1/pools/{pool_id}"),
            Some(&w.admin("acme")),
            None,
        )
        .await;
    let again = export_via(
        &w,
        &w.app,
        "acme",
        &pool_id,
        json!({"status": "available", "undistributed": true}),
    )
    .await;
    assert_eq!(again["rows"], pool.body["total_keys"]);
}

#[tokio::test]
async fn s3_exports_upload_in_parts_and_download_by_presigned_url() {
    let w = World::new().await;
    let pool_id = big_pool(&w).await;
    let bucket = s3_bucket().await.with_part_size(part_size(&w));
    let (client, name) = (bucket.client().clone(), bucket.bucket().to_string());
    let app = w.app_with(Arc::new(bucket));
    let done = export_via(&w, &app, "acme", &pool_id, json!({})).await;
    assert_eq!(done["status"], "done", "{done}");
    let url = done["url"].as_str().unwrap();
    assert!(
        url.contains("X-Amz-Signature") && url.contains("X-Amz-Expires=900"),
        "{url}"
    );

    // A plain HTTP client downloads it, under the export's file name.
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), 200);
    let disposition = response.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        disposition.contains(done["file_name"].as_str().unwrap()),
        "{disposition}"
    );
    let text = response.text().await.unwrap();
    let total = w
        .call(
            Method::GET,
            &format!("/v1/pools/{pool_id}"),
            Some(&w.admin("acme")),
            None,
        )
        .await
        .body["total_keys"]
        .as_u64()
        .unwrap();
    assert_eq!(rows(&text).len() as u64, total);
    assert_eq!(done["rows"].as_u64(), Some(total));
    // Uploaded as a multipart upload of more than two parts ("etag-N").
    let key = format!("exports/acme/{pool_id}/on-demand/");
    let listed = client
        .list_objects_v2()
        .bucket(&name)
        .prefix(&key)
        .send()
        .await
        .unwrap();
    let object = &listed.contents()[0];
    let etag = object.e_tag().unwrap().trim_matches('"').to_string();
    let parts: usize = etag.rsplit('-').next().unwrap().parse().unwrap();
    assert!(parts > 2, "{etag}");
    assert_eq!(object.size(), Some(text.len() as i64));
}

#[tokio::test]
async fn an_s3_upload_that_fails_part_way_leaves_no_object_and_no_open_upload() {
    let w = World::new().await;
    let pool_id = big_pool(&w).await;
    let bucket = s3_bucket().await.with_part_size(part_size(&w));
    let (client, name) = (bucket.client().clone(), bucket.bucket().to_string());
    let failing: Arc<dyn ObjectStore> = Arc::new(FailingUploads {
        inner: Arc::new(bucket),
        // Right after the first page's parts went up.
        fail_at: 1,
    });
    let app = w.app_with(failing);
    let failed = export_via(&w, &app, "acme", &pool_id, json!({})).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    let uploads = client
        .list_multipart_uploads()
        .bucket(&name)
        .send()
        .await
        .unwrap();
    assert!(uploads.uploads().is_empty(), "{:?}", uploads.uploads());
    let objects = client.list_objects_v2().bucket(&name).send().await.unwrap();
    assert!(objects.contents().is_empty());
}

fn scheduled_event() -> Value {
    let path = format!(
        "{}/fixtures/eventbridge/scheduled-event.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

async fn on_event(w: &World, event: Value) -> Value {
    keypool::events::export(w.dyn_store(), w.objects.as_ref(), &w.jobs, &w.clock, event)
        .await
        .unwrap()
}

/// Waits for the world's open jobs to finish.
async fn drained(w: &World) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !w.dyn_store().open_jobs().await.unwrap().is_empty() {
        assert!(std::time::Instant::now() < deadline, "jobs never finished");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

fn scheduled_files(w: &World, pool_id: &str) -> Vec<String> {
    let dir = w
        .objects
        .path_of(&format!("exports/acme/{pool_id}"))
        .unwrap();
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

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
    let reply = w
        .call(
            Method::POST,
            "/v1/redemptions",
            Some(&w.learner("lea")),
            Some(json!({"key": keys[0]})),
        )
        .await;
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
        &org,
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
    let done = w
        .dyn_store()
        .get_export(&org, &pending.export_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.status, ExportStatus::Done);
    assert_eq!(done.rows, 4);
    // Delivered again (SQS is at least once): the finished export is left as it is.
    let again = on_event(&w, event).await;
    assert_eq!(again, json!({ "batchItemFailures": [] }));
    let same = w
        .dyn_store()
        .get_export(&org, &pending.export_id)
        .await
        .unwrap()
        .unwrap();
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

/// The world's store, except that taking back an export's marks always fails, as it does
/// when DynamoDB throttles or goes away at that moment.
struct MarksStuck(Arc<keypool::store::DynamoStore>);

#[async_trait]
impl Courses for MarksStuck {
    async fn put_course(&self, c: &Course) -> keypool::Result<()> {
        self.0.put_course(c).await
    }
    async fn get_course(&self, org: &OrgId, id: &CourseId) -> keypool::Result<Option<Course>> {
        self.0.get_course(org, id).await
    }
    async fn list_courses(
        &self,
        org: &OrgId,
        search: Option<&str>,
        cursor: Option<&str>,
        limit: usize,
    ) -> keypool::Result<Page<Course>> {
        self.0.list_courses(org, search, cursor, limit).await
    }
}

#[async_trait]
impl Pools for MarksStuck {
    async fn put_pool(&self, p: &Pool) -> keypool::Result<()> {
        self.0.put_pool(p).await
    }
    async fn get_pool(&self, org: &OrgId, id: &PoolId) -> keypool::Result<Option<Pool>> {
        self.0.get_pool(org, id).await
    }
    async fn list_pools(
        &self,
        org: &OrgId,
        filter: &PoolFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> keypool::Result<Page<Pool>> {
        self.0.list_pools(org, filter, cursor, limit).await
    }
    async fn update_pool_settings(&self, p: &Pool, version: u64) -> keypool::Result<bool> {
        self.0.update_pool_settings(p, version).await
    }
    async fn list_all_pools(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> keypool::Result<Page<Pool>> {
        self.0.list_all_pools(cursor, limit).await
    }
}

#[async_trait]
impl Keys for MarksStuck {
    async fn insert_keys(
        &self,
        pool: &Pool,
        keys: &[NewKey],
        now: Timestamp,
    ) -> keypool::Result<InsertOutcome> {
        self.0.insert_keys(pool, keys, now).await
    }
    async fn existing_keys(
        &self,
        keys: &[KeyCode],
    ) -> keypool::Result<Vec<(KeyCode, Option<keypool::identity::OrgId>)>> {
        self.0.existing_keys(keys).await
    }
    async fn remove_key(
        &self,
        pool: &Pool,
        key: &KeyCode,
    ) -> keypool::Result<Result<(), RemoveConflict>> {
        self.0.remove_key(pool, key).await
    }
    async fn remove_available_keys(&self, pool: &Pool, keys: &[KeyCode]) -> keypool::Result<()> {
        self.0.remove_available_keys(pool, keys).await
    }
    async fn get_key(&self, key: &KeyCode) -> keypool::Result<Option<KeyRecord>> {
        self.0.get_key(key).await
    }
    async fn list_keys(
        &self,
        pool_id: &PoolId,
        filter: &KeyFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> keypool::Result<Page<KeyRecord>> {
        self.0.list_keys(pool_id, filter, cursor, limit).await
    }
    async fn mark_distributed(
        &self,
        keys: &[KeyCode],
        export_id: &ExportId,
        now: Timestamp,
    ) -> keypool::Result<Vec<KeyCode>> {
        self.0.mark_distributed(keys, export_id, now).await
    }
    async fn unmark_distributed(&self, _: &PoolId, _: &ExportId) -> keypool::Result<u64> {
        Err(anyhow::anyhow!("injected: throttled while taking marks back").into())
    }
}

#[async_trait]
impl Exports for MarksStuck {
    async fn put_export(&self, e: &Export, max_open: MaxOpenJobs) -> keypool::Result<()> {
        self.0.put_export(e, max_open).await
    }
    async fn get_export(&self, org: &OrgId, id: &ExportId) -> keypool::Result<Option<Export>> {
        self.0.get_export(org, id).await
    }
    async fn list_exports(
        &self,
        org: &OrgId,
        pool_id: &PoolId,
        cursor: Option<&str>,
        limit: usize,
    ) -> keypool::Result<Page<Export>> {
        self.0.list_exports(org, pool_id, cursor, limit).await
    }
    async fn update_export(&self, e: &Export) -> keypool::Result<bool> {
        self.0.update_export(e).await
    }
    async fn finish_export(&self, e: &Export) -> keypool::Result<()> {
        self.0.finish_export(e).await
    }
    async fn claim_scheduled_export(
        &self,
        org: &OrgId,
        p: &PoolId,
        mark: u64,
    ) -> keypool::Result<bool> {
        self.0.claim_scheduled_export(org, p, mark).await
    }
    async fn release_scheduled_export(
        &self,
        org: &OrgId,
        p: &PoolId,
        mark: u64,
    ) -> keypool::Result<()> {
        self.0.release_scheduled_export(org, p, mark).await
    }
}

/// An export that fails, and then cannot take its marks back, still ends: `failed`, with an
/// error that says the marks may remain, never `running` with no one to finish it.
#[tokio::test]
async fn a_failed_export_whose_marks_cannot_be_taken_back_still_ends_failed() {
    let w = World::new().await;
    let pool_id = big_pool(&w).await;
    let started = export::start(
        &w.job_context(&Queued),
        &OrgId::parse("acme").unwrap(),
        &pool_id,
        export::ExportInput {
            mark_distributed: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let failing = FailingUploads {
        inner: w.objects.clone(),
        fail_at: 1,
    };
    let store = MarksStuck(w.store.clone());
    let ended = export::run(&store, &failing, &w.clock, &started.org, &started.export_id)
        .await
        .expect("the run ends, even though its marks stay");
    assert_eq!(ended.status, ExportStatus::Failed);
    let stored = w
        .dyn_store()
        .get_export(&started.org, &started.export_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.status, ExportStatus::Failed);
    assert!(
        stored
            .error
            .as_deref()
            .unwrap()
            .contains("marked as distributed"),
        "{:?}",
        stored.error
    );
    assert!(w.dyn_store().open_jobs().await.unwrap().is_empty());

    // And a finished export is never set running again by a late run.
    assert!(!w.dyn_store().update_export(&started).await.unwrap());
    let still = w
        .dyn_store()
        .get_export(&started.org, &started.export_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(still.status, ExportStatus::Failed);
}

#[tokio::test]
async fn a_pools_exports_are_listed_newest_first_a_page_at_a_time() {
    let w = World::new().await;
    let admin = w.admin("acme");
    let (_, pool_id) = w.pool("acme", 30).await;
    let (_, other_pool) = w.pool("acme", 30).await;
    w.generate("acme", &pool_id, 3).await;
    let mut ids = Vec::new();
    for body in [
        json!({}),
        json!({"status": "available"}),
        json!({"status": "redeemed"}),
    ] {
        ids.push(export_via(&w, &w.app, "acme", &pool_id, body).await["export_id"].clone());
    }
    let elsewhere = export_via(&w, &w.app, "acme", &other_pool, json!({})).await;

    let list = |cursor: String| {
        let (w, admin, pool_id) = (&w, &admin, &pool_id);
        async move {
            let r = w
                .call(
                    Method::GET,
                    &format!("/v1/pools/{pool_id}/exports?limit=2&cursor={cursor}"),
                    Some(admin),
                    None,
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
            r.body
        }
    };
    let first = list(String::new()).await;
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a second page")
        .to_string();
    let second = list(cursor).await;
    assert!(second["next_cursor"].is_null(), "{second}");
    let listed: Vec<Value> = [&first, &second]
        .iter()
        .flat_map(|p| p["items"].as_array().unwrap().clone())
        .collect();
    let listed_ids: Vec<_> = listed.iter().map(|e| e["export_id"].clone()).collect();
    let newest_first: Vec<_> = ids.iter().rev().cloned().collect();
    assert_eq!(listed_ids, newest_first);
    assert!(!listed_ids.contains(&elsewhere["export_id"]));
    assert_eq!(listed[0]["key_status"], "redeemed");
    for e in &listed {
        assert_eq!(e["status"], "done", "{e}");
        assert_eq!(e["pool_id"].as_str(), Some(pool_id.as_str()));
        let (status, _, _) = download_local(&w, e["url"].as_str().expect("a link")).await;
        assert_eq!(status, StatusCode::OK);
    }

    // Another organization's admin, an unknown pool, a bad cursor.
    let path = format!("/v1/pools/{pool_id}/exports");
    let theirs = w
        .call(Method::GET, &path, Some(&w.admin("globex")), None)
        .await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND);
    assert_eq!(theirs.code(), "pool_not_found");
    let unknown = w
        .call(
            Method::GET,
            "/v1/pools/not-a-pool/exports",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.code(), "pool_not_found");
    let bad = w
        .call(
            Method::GET,
            &format!("{path}?cursor=garbage"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.code(), "invalid_cursor");
    // A cursor of another listing does not reach into this one.
    let pools_cursor = w
        .call(Method::GET, "/v1/pools?limit=1", Some(&admin), None)
        .await
        .body["next_cursor"]
        .as_str()
        .unwrap()
        .to_string();
    let bad = w
        .call(
            Method::GET,
            &format!("{path}?cursor={pools_cursor}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(bad.code(), "invalid_cursor");
}

/// The columns the documentation lists are the file's, in the file's order (they differed:
/// `distributed_at` was 4th in the README and 10th in the file).
#[test]
fn the_documented_columns_are_the_files() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let documented: Vec<String> = ["README.md", "docs/exports.md"]
        .iter()
        .filter_map(|doc| std::fs::read_to_string(root.join(doc)).ok())
        .filter_map(|text| {
            let (_, rest) = text.split_once("<!-- export:columns -->")?;
            let (list, _) = rest.split_once("<!-- /export:columns -->")?;
            Some(list.trim().to_string())
        })
        .collect();
    let expected = export::CSV_HEADER
        .iter()
        .map(|c| format!("`{c}`"))
        .collect::<Vec<_>>()
        .join(", ");
    assert_eq!(documented, vec![expected]);
}
