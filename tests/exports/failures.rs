//! What a failed export leaves: no file, no open upload, no marks; and an export that cannot
//! take its marks back still ends failed.

use super::*;

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
