//! Large generations as jobs: exact counts whatever interrupts them, and a 100,000-key
//! generation through the API.

use std::collections::HashSet;
use std::sync::Arc;

use axum::http::{Method, StatusCode};
use keypool::domain::{JobId, JobStatus};
use keypool::identity::OrgId;
use keypool::ops::key_jobs;
use keypool_tests::{Queued, World};
use serde_json::json;

fn acme() -> OrgId {
    OrgId::parse("acme").unwrap()
}

/// A small, seeded generator for the interruption points, printed so a failure can be replayed.
struct Dice(u64);

impl Dice {
    fn new() -> Self {
        let seed = std::env::var("KEYPOOL_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        eprintln!("KEYPOOL_TEST_SEED={seed}");
        Self(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

async fn done(w: &World, id: &JobId) -> u64 {
    w.dyn_store()
        .get_key_job(&acme(), id)
        .await
        .unwrap()
        .unwrap()
        .done
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_stopped_after_random_chunks_ends_with_exactly_its_count() {
    let w = Arc::new(World::new().await);
    let total: u64 = if w.is_moto() { 600 } else { 12_000 };
    let (_, pool_id) = w.pool("acme", 30).await;
    w.generate("acme", &pool_id, 7).await;
    let job = w.queued_generation("acme", &pool_id, total).await;
    let mut dice = Dice::new();
    // Three runners, each dropped once the job has gone past a random point.
    for _ in 0..3 {
        let at_least = done(&w, &job.job_id).await + 1 + dice.below(total / 4);
        let runner = {
            let (w, id) = (w.clone(), job.job_id);
            tokio::spawn(
                async move { key_jobs::run(w.dyn_store(), &w.clock, &acme(), &id, None).await },
            )
        };
        while done(&w, &job.job_id).await < at_least.min(total) && !runner.is_finished() {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        runner.abort();
        let _ = runner.await;
        let so_far = done(&w, &job.job_id).await;
        eprintln!("stopped at {so_far} of {total}");
        // At every stop the pool counts exactly the keys there are.
        assert_eq!(w.total_keys("acme", &pool_id).await, 7 + so_far);
    }
    // A last runner resumes and finishes.
    let finished = key_jobs::run(w.dyn_store(), &w.clock, &acme(), &job.job_id, None)
        .await
        .unwrap();
    assert!(finished);
    let job = w
        .dyn_store()
        .get_key_job(&acme(), &job.job_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.status, JobStatus::Done);
    assert_eq!(job.done, total);
    let keys = w.listed_keys("acme", &pool_id).await;
    assert_eq!(keys.len() as u64, total + 7);
    assert_eq!(
        keys.iter().collect::<HashSet<_>>().len(),
        keys.len(),
        "distinct"
    );
    assert_eq!(w.total_keys("acme", &pool_id).await, total + 7);
    assert!(w.dyn_store().open_jobs().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runners_of_one_job_never_exceed_its_count() {
    let w = Arc::new(World::new().await);
    let total: u64 = if w.is_moto() { 400 } else { 6_000 };
    let (_, pool_id) = w.pool("acme", 30).await;
    let job = w.queued_generation("acme", &pool_id, total).await;
    let runners: Vec<_> = (0..2)
        .map(|_| {
            let (w, id) = (w.clone(), job.job_id);
            tokio::spawn(
                async move { key_jobs::run(w.dyn_store(), &w.clock, &acme(), &id, None).await },
            )
        })
        .collect();
    for r in runners {
        assert!(r.await.unwrap().unwrap());
    }
    assert_eq!(done(&w, &job.job_id).await, total);
    assert_eq!(w.total_keys("acme", &pool_id).await, total);
    assert_eq!(w.listed_keys("acme", &pool_id).await.len() as u64, total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_keys_through_the_api() {
    let w = World::new().await;
    if w.skip_volume_on_moto() {
        return;
    }
    let (_, pool_id) = w.pool("acme", 30).await;
    let admin = w.admin("acme");
    let started = w
        .call(
            Method::POST,
            &format!("/v1/pools/{pool_id}/keys/generate"),
            Some(&admin),
            Some(json!({ "count": 100_000 })),
        )
        .await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{:?}", started.body);
    assert_eq!(started.body["total"], 100_000);
    let job_id = started.body["job_id"].as_str().unwrap().to_string();
    // The admin sees progress until it is done.
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let job = w
            .call(
                Method::GET,
                &format!("/v1/jobs/{job_id}"),
                Some(&admin),
                None,
            )
            .await;
        assert_eq!(job.status, StatusCode::OK);
        let done = job.body["done"].as_u64().unwrap();
        seen.push(done);
        if job.body["status"] == "done" {
            assert_eq!(done, 100_000);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{:?}", job.body);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(seen.windows(2).all(|p| p[0] <= p[1]), "progress only grows");
    let keys = w.listed_keys("acme", &pool_id).await;
    assert_eq!(keys.len(), 100_000);
    assert_eq!(
        keys.iter().collect::<HashSet<_>>().len(),
        100_000,
        "distinct"
    );
    for key in &keys {
        // Each is a well-formed generated key: 20 symbols whose check symbol verifies.
        let code = keypool::keys::KeyCode::parse(key).unwrap();
        assert!(code.is_valid_generated(), "{key}");
    }
    assert_eq!(w.total_keys("acme", &pool_id).await, 100_000);
}

#[tokio::test]
async fn counts_beyond_ten_million_and_strangers_are_refused() {
    let w = World::new().await;
    let (_, pool_id) = w.pool("acme", 30).await;
    let path = format!("/v1/pools/{pool_id}/keys/generate");
    let admin = w.admin("acme");
    let too_many = w
        .call(
            Method::POST,
            &path,
            Some(&admin),
            Some(json!({ "count": 10_000_001 })),
        )
        .await;
    assert_eq!(too_many.status, StatusCode::BAD_REQUEST);
    assert_eq!(too_many.code(), "count_too_large");
    for bad in [
        json!({ "count": 0 }),
        json!({ "count": -3 }),
        json!({ "count": "many" }),
    ] {
        let reply = w.call(Method::POST, &path, Some(&admin), Some(bad)).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    }
    let foreign = w
        .call(
            Method::POST,
            &path,
            Some(&w.admin("globex")),
            Some(json!({ "count": 20_000 })),
        )
        .await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND);
    // Nothing was written by any of those.
    assert!(w.dyn_store().open_jobs().await.unwrap().is_empty());
    assert_eq!(w.total_keys("acme", &pool_id).await, 0);

    let job = w.queued_generation("acme", &pool_id, 20_000).await;
    let path = format!("/v1/jobs/{}", job.job_id);
    assert_eq!(
        w.call(Method::GET, &path, Some(&w.admin("globex")), None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        w.call(Method::GET, &path, Some(&w.learner("lea")), None)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let mine = w.call(Method::GET, &path, Some(&admin), None).await;
    assert_eq!(mine.body["status"], "pending");
    assert_eq!(mine.body["done"], 0);
}

/// `count` custom keys, one per line, none like a generated key.
fn custom_lines(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}{i:09}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_line_paste_is_checked_whole_then_written_by_a_job() {
    let w = World::new().await;
    if w.skip_volume_on_moto() {
        return;
    }
    let (_, pool_id) = w.pool("acme", 30).await;
    let admin = w.admin("acme");
    let path = format!("/v1/pools/{pool_id}/keys");
    let mut lines = custom_lines("IMP", 100_000);

    // One bad line refuses the whole list, naming the line; nothing is written.
    lines[49_999] = "not a key!".into();
    let refused = w
        .raw(
            Method::POST,
            &path,
            Some(&admin),
            Some("text/plain"),
            lines.join("\n").into_bytes(),
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(refused.code(), "keys_rejected");
    assert_eq!(
        refused.body["error"]["details"]["rejected"][0]["line"],
        50_000
    );
    assert_eq!(refused.body["error"]["details"]["rejected_count"], 1);
    assert_eq!(w.total_keys("acme", &pool_id).await, 0);
    assert!(w.dyn_store().open_jobs().await.unwrap().is_empty());

    lines[49_999] = "IMPFIXED0001".into();
    let started = w
        .raw(
            Method::POST,
            &path,
            Some(&admin),
            Some("text/plain"),
            lines.join("\n").into_bytes(),
        )
        .await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{:?}", started.body);
    assert_eq!(started.body["kind"], "import");
    assert_eq!(started.body["total"], 100_000);
    let job_id = started.body["job_id"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let job = w
            .call(
                Method::GET,
                &format!("/v1/jobs/{job_id}"),
                Some(&admin),
                None,
            )
            .await;
        if job.body["status"] == "done" {
            assert_eq!(job.body["done"], 100_000);
            assert_eq!(job.body["rejected_keys"], json!([]));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{:?}", job.body);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let keys = w.listed_keys("acme", &pool_id).await;
    assert_eq!(keys.len(), 100_000);
    let sent: HashSet<&str> = lines.iter().map(String::as_str).collect();
    assert!(keys.iter().all(|k| sent.contains(k.as_str())));
    assert_eq!(w.total_keys("acme", &pool_id).await, 100_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_stopped_part_way_resumes_and_reports_keys_taken_meanwhile() {
    let w = Arc::new(World::new().await);
    // On moto, 600 keys (seven transactions, the stolen key in the last): moto copies the
    // whole table once per item of every transaction, so 2,500 took eleven minutes there.
    let count = if w.is_moto() { 600 } else { 25_000 };
    let (_, pool_id) = w.pool("acme", 30).await;
    let (_, other_pool) = w.pool("acme", 30).await;
    let lines = custom_lines("RES", count);
    // Partial: a key taken meanwhile is reported and the rest go in (an all-or-nothing
    // import rolls back instead: tests/pastes.rs).
    let (job, rejected) = w.queued_import("acme", &pool_id, &lines, true).await;
    assert!(rejected.is_empty());
    // Between the check and the job, another request takes one of the keys.
    let stolen = lines[count - 3].clone();
    let taken = w
        .call(
            Method::POST,
            &format!("/v1/pools/{other_pool}/keys"),
            Some(&w.admin("acme")),
            Some(json!({ "keys": [stolen] })),
        )
        .await;
    assert_eq!(taken.status, StatusCode::CREATED);

    let mut dice = Dice::new();
    for _ in 0..2 {
        let at_least = done(&w, &job.job_id).await + 1 + dice.below(count as u64 / 3);
        let runner = {
            let (w, id) = (w.clone(), job.job_id);
            tokio::spawn(
                async move { key_jobs::run(w.dyn_store(), &w.clock, &acme(), &id, None).await },
            )
        };
        while done(&w, &job.job_id).await < at_least && !runner.is_finished() {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        runner.abort();
        let _ = runner.await;
        assert_eq!(
            w.total_keys("acme", &pool_id).await,
            done(&w, &job.job_id).await
        );
    }
    assert!(
        key_jobs::run(w.dyn_store(), &w.clock, &acme(), &job.job_id, None)
            .await
            .unwrap()
    );
    let finished = w
        .dyn_store()
        .get_key_job(&acme(), &job.job_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(finished.status, JobStatus::Done);
    assert_eq!(
        finished.rejected,
        vec![stolen.clone()],
        "reported, not dropped"
    );
    assert_eq!(finished.done, count as u64 - 1);
    let keys = w.listed_keys("acme", &pool_id).await;
    assert_eq!(keys.len(), count - 1);
    assert_eq!(keys.iter().collect::<HashSet<_>>().len(), count - 1);
    assert!(!keys.contains(&stolen));
    assert_eq!(w.total_keys("acme", &pool_id).await, count as u64 - 1);
}

/// Starts a generation job of `count` keys through the API and returns its id.
async fn start_generation(w: &World, org: &str, pool_id: &str, count: u64) -> JobId {
    let started = w
        .call(
            Method::POST,
            &format!("/v1/pools/{pool_id}/keys/generate"),
            Some(&w.admin(org)),
            Some(json!({ "count": count })),
        )
        .await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{:?}", started.body);
    JobId::parse(started.body["job_id"].as_str().unwrap()).unwrap()
}

async fn key_job(w: &World, org: &str, id: &JobId) -> keypool::domain::KeyJob {
    w.dyn_store()
        .get_key_job(&OrgId::parse(org).unwrap(), id)
        .await
        .unwrap()
        .unwrap()
}

/// Waits until a job has written some keys: it is under way, holding the runner.
async fn under_way(w: &World, org: &str, id: &JobId) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while key_job(w, org, id).await.done == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the job never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_does_not_wait_behind_another_organizations_large_generation() {
    let w = World::new().await;
    // On moto only the first few thousand keys get written before the export is done.
    let total: u64 = if w.is_moto() { 20_000 } else { 100_000 };
    let (_, big) = w.pool("acme", 30).await;
    let (_, small) = w.pool("globex", 30).await;
    w.generate("globex", &small, 3).await;
    let generation = start_generation(&w, "acme", &big, total).await;
    under_way(&w, "acme", &generation).await;

    let started = w
        .call(
            Method::POST,
            &format!("/v1/pools/{small}/exports"),
            Some(&w.admin("globex")),
            None,
        )
        .await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{:?}", started.body);
    let export = w
        .finished_export("globex", started.body["export_id"].as_str().unwrap())
        .await;
    assert_eq!(export.status, keypool::domain::ExportStatus::Done);
    assert_eq!(export.rows, 3);
    // The other organization's generation is still going: the export did not wait for it.
    let big_job = key_job(&w, "acme", &generation).await;
    assert_ne!(big_job.status, JobStatus::Done, "{big_job:?}");
    assert!(big_job.done < total, "{big_job:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_generation_does_not_wait_behind_another_organizations_large_one() {
    let w = World::new().await;
    // Generation jobs start above 10,000 keys, which moto takes many minutes to write.
    if w.skip_volume_on_moto() {
        return;
    }
    let total = 100_000;
    let (_, big) = w.pool("acme", 30).await;
    let (_, small) = w.pool("globex", 30).await;
    let large = start_generation(&w, "acme", &big, total).await;
    under_way(&w, "acme", &large).await;
    let little = start_generation(&w, "globex", &small, 10_001).await;

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let job = key_job(&w, "globex", &little).await;
        if job.status == JobStatus::Done {
            assert_eq!(job.done, 10_001);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{job:?}");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // The organizations took turns: the large job had a few of its own meanwhile, no more.
    let large_job = key_job(&w, "acme", &large).await;
    assert_ne!(large_job.status, JobStatus::Done, "{large_job:?}");
    assert!(large_job.done < total / 2, "{large_job:?}");
    // Written in turns, each resumed from the stored progress: exactly the keys asked for.
    assert_eq!(w.total_keys("globex", &small).await, 10_001);
}

/// An SQS batch of job messages, as the key-generation function's queue delivers them.
fn queue_batch(body: &str) -> serde_json::Value {
    let path = format!(
        "{}/fixtures/sqs/export-job.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let fixture = std::fs::read_to_string(path).unwrap();
    let body = serde_json::to_string(body).unwrap();
    serde_json::from_str(&fixture.replace("\"{{job}}\"", &body)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_message_from_the_queue_runs_the_generation_to_its_end() {
    let w = World::new().await;
    let (_, pool_id) = w.pool("acme", 30).await;
    let job = w.queued_generation("acme", &pool_id, 500).await;
    let message = serde_json::to_string(&keypool::domain::Job::Generate {
        org: acme(),
        job_id: job.job_id,
    })
    .unwrap();
    let deliver = |event| keypool::events::key_generation(w.dyn_store(), &Queued, &w.clock, event);
    let answer = deliver(queue_batch(&message)).await.unwrap();
    assert_eq!(answer, json!({ "batchItemFailures": [] }));
    assert_eq!(done(&w, &job.job_id).await, 500);
    // Delivered again (SQS is at least once): the finished job writes nothing more.
    let again = deliver(queue_batch(&message)).await.unwrap();
    assert_eq!(again, json!({ "batchItemFailures": [] }));
    assert_eq!(w.total_keys("acme", &pool_id).await, 500);
    // A message that is not a job is reported for retry; an event that is no batch is refused.
    let garbage = deliver(queue_batch("not a job")).await.unwrap();
    assert_eq!(
        garbage["batchItemFailures"][0]["itemIdentifier"],
        "059f36b4-87a3-44ab-83d2-661975830a7d"
    );
    assert!(
        deliver(json!({ "detail-type": "Scheduled Event" }))
            .await
            .is_err()
    );
}
