//! Exports that fail part way: no file, no marks left behind, and an export that cannot take
//! its marks back still ends.

use std::sync::Arc;

use async_trait::async_trait;
use keypool::domain::{
    Course, CourseId, Export, ExportId, ExportStatus, KeyFilter, KeyRecord, MaxOpenJobs, NewKey,
    Page, Pool, PoolFilter, PoolId,
};
use keypool::identity::OrgId;
use keypool::keys::KeyCode;
use keypool::objects::ObjectStore;
use keypool::ops::export;
use keypool::store::prelude::*;
use keypool::store::{InsertOutcome, RemoveConflict};
use keypool::time::Timestamp;
use keypool_tests::World;
use serde_json::{Value, json};

use super::fixtures::*;

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
    let total = total_keys(&w, &pool_id).await;
    let again = export(
        &w,
        &pool_id,
        json!({"status": "available", "undistributed": true}),
    )
    .await;
    assert_eq!(again["rows"], total);
}

/// The world's store, except that taking back an export's marks always fails, as it does
/// when DynamoDB throttles or goes away at that moment.
struct MarksStuck(Arc<keypool::store::DynamoStore>);

#[async_trait]
impl Courses for MarksStuck {
    async fn put_course(
        &self,
        c: &Course,
        r: &keypool::domain::AuditRecord,
    ) -> keypool::Result<()> {
        self.0.put_course(c, r).await
    }
    async fn replace_course(
        &self,
        c: &Course,
        r: &keypool::domain::AuditRecord,
    ) -> keypool::Result<bool> {
        self.0.replace_course(c, r).await
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
    async fn put_pool(&self, p: &Pool, r: &keypool::domain::AuditRecord) -> keypool::Result<()> {
        self.0.put_pool(p, r).await
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
    async fn update_pool_settings(
        &self,
        p: &Pool,
        version: u64,
        r: &keypool::domain::AuditRecord,
    ) -> keypool::Result<bool> {
        self.0.update_pool_settings(p, version, r).await
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
        r: Option<&keypool::domain::AuditRecord>,
    ) -> keypool::Result<InsertOutcome> {
        self.0.insert_keys(pool, keys, now, r).await
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
        r: &keypool::domain::AuditRecord,
    ) -> keypool::Result<Result<(), RemoveConflict>> {
        self.0.remove_key(pool, key, r).await
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
        &keypool_tests::admin_of(&OrgId::parse("acme").unwrap()),
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
    let stored = stored_export(&w, &started.org, &started.export_id).await;
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
    let still = stored_export(&w, &started.org, &started.export_id).await;
    assert_eq!(still.status, ExportStatus::Failed);
}
