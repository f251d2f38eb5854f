//! The key operations called as the routes call them, with a world's parts: helpers named for
//! what they do, so that a test reads as the behaviour it proves.

use async_trait::async_trait;
use keypool::domain::{Job, KeyJob};
use keypool::identity::OrgId;
use keypool::jobs::Jobs;
use keypool::ops::add_keys::{self, AddReport, CheckedPaste, Rejections};
use keypool::ops::inventory::{self, KeyListing};
use keypool::ops::key_jobs::{generate, import};
use keypool::ops::open_jobs::JobContext;
use keypool::settings::Settings;
use keypool::store::Store;

use crate::{World, admin_of};

/// A job queue that takes jobs and runs nothing: the test runs them by hand, or they arrive
/// later, as SQS messages.
pub struct Queued;

#[async_trait]
impl Jobs for Queued {
    async fn submit(&self, _: &Job) -> keypool::Result<()> {
        Ok(())
    }
}

fn org(name: &str) -> OrgId {
    OrgId::parse(name).expect("an organization id")
}

impl World {
    /// What the world's operations start jobs with: its store, its clock and its cap, with
    /// jobs handed to `jobs`.
    pub fn job_context<'a>(&'a self, jobs: &'a dyn Jobs) -> JobContext<'a, dyn Store> {
        self.job_context_over(self.dyn_store(), jobs)
    }

    /// The same over another store (one that dies part-way, say).
    pub fn job_context_over<'a, S: ?Sized>(
        &'a self,
        store: &'a S,
        jobs: &'a dyn Jobs,
    ) -> JobContext<'a, S> {
        JobContext {
            store,
            jobs,
            clock: &self.clock,
            max_open: self.max_open_jobs,
        }
    }

    /// Adds pasted custom keys to a pool of `org`, as the pool-admin route does with up to
    /// 10,000 lines: all or nothing unless `partial`; a paste's recovery goes to the world's
    /// job runner.
    pub async fn add_custom_keys(
        &self,
        org_name: &str,
        pool_id: &str,
        paste: &CheckedPaste,
        partial: bool,
    ) -> keypool::Result<AddReport> {
        let cx = self.job_context(&self.jobs);
        let settings = Settings::default();
        add_keys::add_custom_keys(
            &cx,
            &settings,
            &crate::admin_of(&org(org_name)),
            pool_id,
            paste,
            partial,
        )
        .await
    }

    /// Starts a generation job of `count` keys into a pool of `org`, queued where nothing runs
    /// it ([`Queued`]).
    pub async fn queued_generation(&self, org_name: &str, pool_id: &str, count: u64) -> KeyJob {
        generate::start(
            &self.job_context(&Queued),
            &admin_of(&org(org_name)),
            pool_id,
            count,
        )
        .await
        .expect("a generation job starts")
    }

    /// Starts an import of `lines` into a pool of `org`, checked whole and queued where nothing
    /// runs it ([`Queued`]): all or nothing unless `partial`.
    pub async fn queued_import(
        &self,
        org_name: &str,
        pool_id: &str,
        lines: &[String],
        partial: bool,
    ) -> (KeyJob, Rejections) {
        let cx = self.job_context(&Queued);
        let paste = CheckedPaste::from_list(lines);
        let settings = Settings::default();
        import::start(
            &cx,
            &settings,
            &admin_of(&org(org_name)),
            pool_id,
            paste,
            partial,
        )
        .await
        .expect("an import starts")
    }

    /// Every key a pool of `org` lists, as shown.
    pub async fn listed_keys(&self, org_name: &str, pool_id: &str) -> Vec<String> {
        let org = org(org_name);
        let mut keys = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let listing = KeyListing::page(cursor.as_deref(), 1000);
            let page = inventory::list_keys(self.dyn_store(), &org, pool_id, listing)
                .await
                .expect("a page of keys");
            keys.extend(page.items.into_iter().map(|k| k.key.to_string()));
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => return keys,
            }
        }
    }

    /// How many keys a pool of `org` counts.
    pub async fn total_keys(&self, org_name: &str, pool_id: &str) -> u64 {
        keypool::ops::pools::get_pool(self.dyn_store(), &org(org_name), pool_id)
            .await
            .expect("the pool")
            .total_keys
    }
}
