//! Pastes of custom keys: rejections stay bounded whatever the body holds, and an
//! all-or-nothing paste or import lands whole or leaves nothing, across a crash at any point.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_sdk_dynamodb::config::interceptors::BeforeSerializationInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept};
use aws_sdk_dynamodb::error::BoxError;
use axum::http::{Method, StatusCode};
use keypool::domain::{AuditAction, AuditFilter, Job, JobStatus, PastePhase};
use keypool::identity::OrgId;
use keypool::ops::add_keys::{self, AddReport, CheckedPaste};
use keypool::ops::key_jobs;
use keypool::settings::Settings;
use keypool::store::{DynamoStore, Store};
use keypool_tests::{Queued, World};
use serde_json::{Value, json};

fn acme() -> OrgId {
    OrgId::parse("acme").unwrap()
}

/// Lets `allowed` DynamoDB calls through, then fails every one: the process died there.
#[derive(Debug)]
struct Crash {
    allowed: usize,
    calls: Arc<AtomicUsize>,
}

impl Intercept for Crash {
    fn name(&self) -> &'static str {
        "Crash"
    }

    fn read_before_execution(
        &self,
        _: &BeforeSerializationInterceptorContextRef<'_>,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if self.calls.fetch_add(1, Ordering::SeqCst) >= self.allowed {
            return Err("the process died".into());
        }
        Ok(())
    }
}

/// The world's real store, over a client that dies after `allowed` calls; and its call count.
fn dying_store(w: &World, allowed: usize) -> (DynamoStore, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let config = w
        .store
        .client()
        .config()
        .to_builder()
        .interceptor(Crash {
            allowed,
            calls: calls.clone(),
        })
        .build();
    let client = aws_sdk_dynamodb::Client::from_conf(config);
    (DynamoStore::new(client, w.tables.clone()), calls)
}

/// The restart: every open job run to its end with the healthy store, as the local server
/// does at start (and the job queue in AWS).
async fn restart(w: &World) {
    for job in w.dyn_store().open_jobs().await.unwrap() {
        key_jobs::run_job(w.dyn_store(), &Queued, &w.clock, &job, None)
            .await
            .unwrap();
    }
    assert!(w.dyn_store().open_jobs().await.unwrap().is_empty());
}

/// Pastes `keys` into a pool of acme all or nothing through `store` (one that may die
/// part-way), as the pool-admin route does; its recovery is queued where nothing runs it.
async fn paste_through<S: Store + ?Sized>(
    w: &World,
    store: &S,
    pool_id: &str,
    keys: &CheckedPaste,
) -> keypool::Result<AddReport> {
    let cx = w.job_context_over(store, &Queued);
    add_keys::add_custom_keys(
        &cx,
        &Settings::default(),
        &keypool_tests::admin_of(&acme()),
        pool_id,
        keys,
        false,
    )
    .await
}

/// How many records of `action` name the pool.
async fn records(w: &World, pool_id: &str, action: AuditAction) -> usize {
    let filter = AuditFilter {
        action: Some(action),
        pool_id: Some(pool_id.to_string()),
        ..AuditFilter::default()
    };
    let page = w
        .dyn_store()
        .list_audit(&acme(), &filter, None, 100)
        .await
        .unwrap();
    assert!(page.next_cursor.is_none());
    page.items.len()
}

fn lines(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}{i:07}")).collect()
}

/// The pool holds nothing of `keys` (none listed, counted or redeemable) or all of them.
async fn whole_or_nothing(w: &World, pool_id: &str, keys: &[String]) -> bool {
    let total = w.total_keys("acme", pool_id).await;
    let shown: HashSet<String> = w.listed_keys("acme", pool_id).await.into_iter().collect();
    if total == 0 {
        assert!(
            shown.is_empty(),
            "nothing counted, yet {} listed",
            shown.len()
        );
        let r = w
            .call(
                Method::POST,
                "/v1/redemptions",
                Some(&w.learner("lea")),
                Some(json!({ "key": keys[keys.len() / 2] })),
            )
            .await;
        assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "invalid_key"));
        return false;
    }
    assert_eq!(total, keys.len() as u64, "a part of the paste is counted");
    assert_eq!(shown.len(), keys.len(), "a part of the paste is listed");
    assert!(keys.iter().all(|k| shown.contains(k)));
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paste_killed_at_any_point_lands_whole_or_leaves_nothing() {
    let w = World::new().await;
    let count = if w.is_moto() { 300 } else { 10_000 };
    // How many calls a whole paste makes, through a store that never dies.
    let (_, pool_id) = w.pool("acme", 30).await;
    let keys = lines("CAL", count);
    let (store, calls) = dying_store(&w, usize::MAX);
    let paste = CheckedPaste::from_list(&keys);
    paste_through(&w, &store, &pool_id, &paste).await.unwrap();
    let whole = calls.load(Ordering::SeqCst);
    eprintln!("a paste of {count} keys makes {whole} calls");

    let (mut landed, mut undone) = (0, 0);
    for (i, share) in [0.2, 0.4, 0.55, 0.7, 0.85, 0.99].into_iter().enumerate() {
        let allowed = (whole as f64 * share) as usize;
        let (_, pool_id) = w.pool("acme", 30).await;
        let keys = lines(&format!("K{i}X"), count);
        let paste = CheckedPaste::from_list(&keys);
        let (store, _) = dying_store(&w, allowed);
        let died = paste_through(&w, &store, &pool_id, &paste).await;
        assert!(
            died.is_err(),
            "the paste died after {allowed} of {whole} calls"
        );
        restart(&w).await;
        // The paste's record is there if and only if the paste landed.
        let recorded = records(&w, &pool_id, AuditAction::KeysPasted).await;
        if whole_or_nothing(&w, &pool_id, &keys).await {
            landed += 1;
            assert_eq!(recorded, 1, "a paste that landed is recorded once");
        } else {
            undone += 1;
            assert_eq!(recorded, 0, "a paste rolled back has no record");
            // Rolled back: the keys are free again, and the same paste goes in whole.
            let report = paste_through(&w, w.dyn_store(), &pool_id, &paste)
                .await
                .unwrap();
            assert_eq!(report.added.len(), count);
            assert!(whole_or_nothing(&w, &pool_id, &keys).await);
            assert_eq!(records(&w, &pool_id, AuditAction::KeysPasted).await, 1);
        }
    }
    eprintln!("{landed} rolled forward, {undone} rolled back");
    assert!(landed > 0 && undone > 0, "both phases were crashed in");
}

/// Stopped while it commits, and again and again while it is rolled forward, a paste lists
/// exactly what its pool counts at every stop: each commit makes keys listed and counted in
/// one atomic write. (A count read before a listing that a roll-forward overtakes shows fewer
/// keys than the listing: that is two reads at two moments, not keys listed before counted.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paste_stopped_while_committing_lists_exactly_what_it_counts() {
    let w = World::new().await;
    let count = if w.is_moto() { 300 } else { 3_000 };
    // How many calls a whole paste of this size makes, through a store that never dies.
    let (_, pool_id) = w.pool("acme", 30).await;
    let (store, calls) = dying_store(&w, usize::MAX);
    let paste = CheckedPaste::from_list(&lines("CNW", count));
    paste_through(&w, &store, &pool_id, &paste).await.unwrap();
    let whole = calls.load(Ordering::SeqCst);

    // Dies half-way through its commits (one transaction per 98 keys, then the job's status).
    let (_, pool_id) = w.pool("acme", 30).await;
    let keys = lines("CNT", count);
    let allowed = whole - count.div_ceil(98) / 2 - 1;
    let (store, _) = dying_store(&w, allowed);
    let died = paste_through(&w, &store, &pool_id, &CheckedPaste::from_list(&keys)).await;
    assert!(died.is_err());
    let open = w.dyn_store().open_jobs().await.unwrap();
    let [Job::Generate { job_id, .. }] = open.as_slice() else {
        panic!("one open paste: {open:?}");
    };
    let job = w.dyn_store().get_key_job(&acme(), job_id).await.unwrap();
    assert_eq!(job.and_then(|j| j.phase), Some(PastePhase::Committing));
    // Committing decides that it lands: its record is written with that move.
    assert_eq!(records(&w, &pool_id, AuditAction::KeysPasted).await, 1);

    // The roll-forward dies part-way too, one transaction further each time: it reads the job,
    // the pool and its first input, goes through the transactions already committed (each
    // refused now) and commits one more.
    let mut seen: Vec<u64> = Vec::new();
    let stops = if w.is_moto() { 1 } else { 3 };
    for _ in 0..=stops {
        if let Some(&committed) = seen.last() {
            let allowed = 3 + committed.div_ceil(98) as usize + 1;
            let (store, _) = dying_store(&w, allowed);
            let died = key_jobs::run(&store, &w.clock, &acme(), job_id, None).await;
            assert!(died.is_err());
        }
        let total = w.total_keys("acme", &pool_id).await;
        let shown = w.listed_keys("acme", &pool_id).await;
        assert_eq!(
            shown.len() as u64,
            total,
            "listed and counted after {seen:?}"
        );
        assert!(
            0 < total && total < count as u64,
            "stopped mid-commit: {total}"
        );
        seen.push(total);
    }
    assert!(
        seen.windows(2).all(|t| t[0] < t[1]),
        "rolled forward: {seen:?}"
    );
    restart(&w).await;
    assert!(whole_or_nothing(&w, &pool_id, &keys).await);
    assert_eq!(records(&w, &pool_id, AuditAction::KeysPasted).await, 1);
}

/// The local server, restarted after dying in the middle of an all-or-nothing paste, settles
/// the paste before it answers anything: its first listing and its first count both show the
/// paste whole. (It used to queue the roll-forward and answer meanwhile, so for seconds a
/// count read before a listing showed far fewer keys than the listing.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_settles_an_interrupted_paste_before_it_answers() {
    let w = World::new().await;
    let count = if w.is_moto() { 300 } else { 3_000 };
    let (_, pool_id) = w.pool("acme", 30).await;
    let (store, calls) = dying_store(&w, usize::MAX);
    paste_through(
        &w,
        &store,
        &pool_id,
        &CheckedPaste::from_list(&lines("RSW", count)),
    )
    .await
    .unwrap();
    let whole = calls.load(Ordering::SeqCst);
    let (_, pool_id) = w.pool("acme", 30).await;
    let keys = lines("RST", count);
    let (store, _) = dying_store(&w, whole - count.div_ceil(98) / 2 - 1);
    let died = paste_through(&w, &store, &pool_id, &CheckedPaste::from_list(&keys)).await;
    assert!(died.is_err());
    let before = w.total_keys("acme", &pool_id).await;
    assert!(
        0 < before && before < count as u64,
        "died mid-commit: {before}"
    );

    // The server's start: its job runner, then the jobs a previous run left.
    let (jobs, _worker) = keypool::local::jobs::LocalJobs::start(
        w.store.clone(),
        w.objects.clone(),
        Arc::new(w.clock.clone()),
    );
    jobs.resume(w.dyn_store(), &w.clock).await.unwrap();
    let total = w.total_keys("acme", &pool_id).await;
    let shown = w.listed_keys("acme", &pool_id).await;
    assert_eq!((total, shown.len()), (count as u64, count));
    assert!(whole_or_nothing(&w, &pool_id, &keys).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_killed_at_any_point_lands_whole_or_leaves_nothing() {
    let w = World::new().await;
    if w.skip_volume_on_moto() {
        return;
    }
    let count = 12_000;
    let (_, pool_id) = w.pool("acme", 30).await;
    let keys = lines("IMP", count);
    let (job, _) = w.queued_import("acme", &pool_id, &keys, false).await;
    // The job's runner dies part-way, again and again (a whole run makes about 270 calls);
    // at every stop what is visible is counted, and nothing is before the commit.
    for allowed in [30, 45, 25, 60, 35] {
        let (store, _) = dying_store(&w, allowed);
        let died = key_jobs::run(&store, &w.clock, &acme(), &job.job_id, None).await;
        assert!(died.is_err());
        assert_eq!(
            w.total_keys("acme", &pool_id).await,
            w.listed_keys("acme", &pool_id).await.len() as u64
        );
    }
    // Started with its request; not ended however often it died.
    assert_eq!(
        records(&w, &pool_id, AuditAction::KeysImportStarted).await,
        1
    );
    assert_eq!(
        records(&w, &pool_id, AuditAction::KeysImportFinished).await,
        0
    );
    restart(&w).await;
    assert!(
        whole_or_nothing(&w, &pool_id, &keys).await,
        "an import goes on"
    );
    assert_eq!(
        records(&w, &pool_id, AuditAction::KeysImportFinished).await,
        1
    );
    let job = w
        .dyn_store()
        .get_key_job(&acme(), &job.job_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((job.status, job.done), (JobStatus::Done, count as u64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_that_finds_a_key_taken_meanwhile_adds_nothing() {
    let w = World::new().await;
    let count = if w.is_moto() { 300 } else { 12_000 };
    let (_, pool_id) = w.pool("acme", 30).await;
    let (_, other_pool) = w.pool("acme", 30).await;
    let keys = lines("LATE", count);
    let (job, _) = w.queued_import("acme", &pool_id, &keys, false).await;
    // After the check, another request takes a key near the end.
    let stolen = keys[count - 3].clone();
    let taken = w
        .call(
            Method::POST,
            &format!("/v1/pools/{other_pool}/keys"),
            Some(&w.admin("acme")),
            Some(json!({ "keys": [stolen] })),
        )
        .await;
    assert_eq!(taken.status, StatusCode::CREATED);
    restart(&w).await;
    let job = w
        .dyn_store()
        .get_key_job(&acme(), &job.job_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.status, JobStatus::Failed, "{job:?}");
    assert_eq!(job.rejected, vec![stolen.clone()]);
    // Its end is recorded as a failure, and nothing of it as pasted.
    assert_eq!(
        records(&w, &pool_id, AuditAction::KeysImportFinished).await,
        1
    );
    assert_eq!(records(&w, &pool_id, AuditAction::KeysPasted).await, 0);
    assert_eq!(job.rejected_count, 1);
    assert!(!whole_or_nothing(&w, &pool_id, &keys).await);
    // Every other key is free again.
    let rest: Vec<&String> = keys.iter().filter(|k| **k != stolen).collect();
    let existing = w
        .dyn_store()
        .existing_keys(&[
            keypool::keys::KeyCode::parse(rest[0]).unwrap(),
            keypool::keys::KeyCode::parse(rest[rest.len() - 1]).unwrap(),
        ])
        .await
        .unwrap();
    assert!(existing.is_empty());
}

/// `n` lines, every `bad_every`-th of them (counting from 1) not a key.
fn mixed(n: usize, bad_every: usize) -> (String, Vec<u64>) {
    let mut body = String::new();
    let mut bad = Vec::new();
    for line in 1..=n {
        if line % bad_every == 0 {
            body.push_str("no!\n");
            bad.push(line as u64);
        } else {
            body.push_str(&format!("GOOD{line:07}\n"));
        }
    }
    (body, bad)
}

fn shown_lines(body: &Value) -> Vec<u64> {
    body["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["line"].as_u64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejections_are_bounded_on_every_path() {
    let w = World::new().await;
    if w.skip_volume_on_moto() {
        return;
    }
    let admin = w.admin("acme");
    let (_, pool_id) = w.pool("acme", 30).await;
    let path = format!("/v1/pools/{pool_id}/keys");
    let post = |path: String, content_type: &'static str, body: String| {
        let w = &w;
        let admin = admin.clone();
        async move {
            w.raw(
                Method::POST,
                &path,
                Some(&admin),
                Some(content_type),
                body.into_bytes(),
            )
            .await
        }
    };
    for (lines, what) in [(10_000, "a paste"), (15_000, "an import")] {
        // 5,000 bad lines among good ones.
        let bad_every = lines / 5_000;
        let (text, bad) = mixed(lines, bad_every);
        let r = post(path.clone(), "text/plain", text.clone()).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "keys_rejected")
        );
        let details = &r.body["error"]["details"];
        assert_eq!(details["rejected_count"], 5_000, "{what}");
        assert_eq!(
            shown_lines(details),
            bad[..1_000],
            "{what}: the first thousand, in order"
        );
        // The same as a JSON list.
        let list: Vec<&str> = text.lines().collect();
        let r = post(
            path.clone(),
            "application/json",
            json!({ "keys": list }).to_string(),
        )
        .await;
        assert_eq!(r.code(), "keys_rejected", "{what}");
        assert_eq!(r.body["error"]["details"]["rejected_count"], 5_000);
        assert_eq!(shown_lines(&r.body["error"]["details"]), bad[..1_000]);
        assert_eq!(
            w.total_keys("acme", &pool_id).await,
            0,
            "{what}: nothing written"
        );
        assert!(w.dyn_store().open_jobs().await.unwrap().is_empty());
    }
    // Partial: the good lines go in, the answer still shows a thousand and counts all.
    let (text, bad) = mixed(10_000, 2);
    let r = post(format!("{path}?partial=true"), "text/plain", text).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body["error"]);
    assert_eq!(r.body["rejected_count"], 5_000);
    assert_eq!(shown_lines(&r.body), bad[..1_000]);
    assert_eq!(r.body["added"].as_array().unwrap().len(), 5_000);
    let (text, bad) = mixed(15_000, 3);
    let text = text.replace("GOOD", "MORE");
    let r = post(format!("{path}?partial=true"), "text/plain", text).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body["error"]);
    assert_eq!(r.body["rejected_count"], 5_000);
    assert_eq!(shown_lines(&r.body), bad[..1_000]);
    assert_eq!(r.body["total"], 10_000);
}
