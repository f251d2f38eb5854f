//! What the export suites share: exports started and read through the API, their files
//! downloaded and read as CSV, uploads that fail on purpose, the scheduled event.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use axum::http::{Method, StatusCode};
use keypool::domain::{Export, ExportId};
use keypool::identity::OrgId;
use keypool::objects::{ObjectStore, Upload};
use keypool::ops::export;
pub(crate) use keypool_tests::Queued;
use keypool_tests::{Reply, World, send};
use serde_json::{Value, json};

/// Starts an export of an acme pool through `app` and waits for its job; returns the export as
/// the API shows it afterwards.
pub(crate) async fn export_via(w: &World, app: &axum::Router, pool_id: &str, body: Value) -> Value {
    let org = "acme";
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

/// Exports an acme pool through the world's own router (files in its folder).
pub(crate) async fn export(w: &World, pool_id: &str, body: Value) -> Value {
    export_via(w, &w.app, pool_id, body).await
}

/// Downloads a local link through the router.
pub(crate) async fn download_local(w: &World, url: &str) -> (StatusCode, String, String) {
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

/// The rows of a CSV file, after its header.
pub(crate) fn rows(text: &str) -> Vec<csv::StringRecord> {
    csv::Reader::from_reader(text.as_bytes())
        .records()
        .map(Result::unwrap)
        .collect()
}

/// The index of a column of the export CSV.
pub(crate) fn column(name: &str) -> usize {
    export::CSV_HEADER.iter().position(|c| *c == name).unwrap()
}

/// The rows of a done local export, downloaded by its link.
pub(crate) async fn downloaded_rows(w: &World, done: &Value) -> Vec<csv::StringRecord> {
    let (_, text, _) = download_local(w, done["url"].as_str().unwrap()).await;
    rows(&text)
}

pub(crate) async fn redeem(w: &World, learner: &str, key: &str) -> Reply {
    w.call(
        Method::POST,
        "/v1/redemptions",
        Some(&w.learner(learner)),
        Some(json!({ "key": key })),
    )
    .await
}

/// The total number of keys of an acme pool, as the API counts them.
pub(crate) async fn total_keys(w: &World, pool_id: &str) -> u64 {
    w.call(
        Method::GET,
        &format!("/v1/pools/{pool_id}"),
        Some(&w.admin("acme")),
        None,
    )
    .await
    .body["total_keys"]
        .as_u64()
        .unwrap()
}

/// An export as the store holds it.
pub(crate) async fn stored_export(w: &World, org: &OrgId, id: &ExportId) -> Export {
    w.dyn_store().get_export(org, id).await.unwrap().unwrap()
}

/// An object store whose uploads fail right after their `fail_at`-th write went through.
pub(crate) struct FailingUploads {
    pub(crate) inner: Arc<dyn ObjectStore>,
    pub(crate) fail_at: usize,
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
pub(crate) async fn big_pool(w: &World) -> String {
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

pub(crate) fn part_size(w: &World) -> usize {
    if w.is_moto() { 16 * 1024 } else { 64 * 1024 }
}

pub(crate) fn scheduled_event() -> Value {
    let path = format!(
        "{}/fixtures/eventbridge/scheduled-event.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

pub(crate) async fn on_event(w: &World, event: Value) -> Value {
    keypool::events::export(w.dyn_store(), w.objects.as_ref(), &w.jobs, &w.clock, event)
        .await
        .unwrap()
}

/// Waits for the world's open jobs to finish.
pub(crate) async fn drained(w: &World) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !w.dyn_store().open_jobs().await.unwrap().is_empty() {
        assert!(std::time::Instant::now() < deadline, "jobs never finished");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

pub(crate) fn scheduled_files(w: &World, pool_id: &str) -> Vec<String> {
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
