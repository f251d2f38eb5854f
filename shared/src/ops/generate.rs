//! Large key generations as jobs: any count up to ten million, written in chunks that survive a
//! crash or restart at any point without creating more keys than asked or losing any.
//!
//! Each atomic write of keys also adds its keys to the job's `done` (condition: never beyond
//! `total`), so `done` always equals the keys the job wrote; a resumed job generates
//! `total - done` more.

use super::add_keys::MAX_SYNC_KEYS;
use super::pools;
use crate::domain::{Job, JobId, JobKind, JobStatus, KeyJob, KeySource, MaxOpenJobs, NewKey};
use crate::error::{Error, ErrorCode, Missing, Result};
use crate::identity::OrgId;
use crate::jobs::Jobs;
use crate::keys::{self, KeyCode};
use crate::store::{JobFull, KeyJobs, Keys, Pools};
use crate::time::{Clock, Timestamp};

/// The largest count one request may ask for.
pub const MAX_JOB_KEYS: u64 = 10_000_000;
/// Keys generated and written per round of a job (progress is saved with every write of 98).
pub const ROUND: usize = 98 * 50;
/// Rounds in which generated keys may keep colliding before the job gives up.
const MAX_COLLIDING_ROUNDS: usize = 5;
/// How long one Lambda invocation works on jobs before it queues the rest (it has 15 minutes).
pub const JOB_BUDGET: std::time::Duration = std::time::Duration::from_secs(10 * 60);
/// How often a synchronous generation retries keys that collided before giving up.
const MAX_REGENERATIONS: usize = 5;

/// Checks a generation count: the synchronous path takes up to `MAX_SYNC_KEYS`, a job up to
/// `MAX_JOB_KEYS`.
pub fn check_count(count: i64) -> Result<u64> {
    if count < 1 {
        return Err(Error::field("count", "count is at least 1"));
    }
    let count = count as u64;
    if count > MAX_JOB_KEYS {
        return Err(Error::Refused {
            code: ErrorCode::CountTooLarge,
            message: format!(
                "at most {MAX_JOB_KEYS} keys per request; split the request into several"
            ),
            details: Some(serde_json::json!({ "max": MAX_JOB_KEYS })),
        });
    }
    Ok(count)
}

/// True when a count goes to a job rather than being answered at once.
pub fn needs_job(count: u64) -> bool {
    count > MAX_SYNC_KEYS as u64
}

/// Starts a generation job for one of the organization's pools, unless the organization has
/// `max_open` open jobs already.
pub async fn start<S: Pools + KeyJobs + ?Sized>(
    store: &S,
    jobs: &dyn Jobs,
    org: &OrgId,
    pool_id: &str,
    count: u64,
    max_open: MaxOpenJobs,
    now: Timestamp,
) -> Result<KeyJob> {
    let pool = pools::get_pool(store, org, pool_id).await?;
    let job = KeyJob {
        job_id: JobId::new(),
        org: org.clone(),
        pool_id: pool.pool_id,
        kind: JobKind::Generate,
        status: JobStatus::Pending,
        total: count,
        done: 0,
        error: None,
        inputs: 0,
        position: 0,
        phase: None,
        rejected: Vec::new(),
        rejected_count: 0,
        created_at: now,
        updated_at: now,
    };
    store.put_key_job(&job, max_open).await?;
    queue(store, jobs, job).await
}

/// Hands a stored job to the runners; marks it failed if they cannot take it.
pub(super) async fn queue<S: KeyJobs + ?Sized>(
    store: &S,
    jobs: &dyn Jobs,
    job: KeyJob,
) -> Result<KeyJob> {
    let message = Job::Generate {
        org: job.org.clone(),
        job_id: job.job_id,
    };
    if let Err(e) = jobs.submit(&message).await {
        tracing::error!(error = %e, job = %job.job_id, "a generation job could not be queued");
        let failed = KeyJob {
            status: JobStatus::Failed,
            error: Some("the job could not be queued; try again".into()),
            ..job
        };
        store.set_key_job_status(&failed).await?;
        return Err(e);
    }
    Ok(job)
}

/// A job of the organization.
pub async fn get<S: KeyJobs + ?Sized>(store: &S, org: &OrgId, job_id: &str) -> Result<KeyJob> {
    let id = JobId::parse(job_id).ok_or(Error::NotFound(Missing::Job))?;
    store
        .get_key_job(org, &id)
        .await?
        .ok_or(Error::NotFound(Missing::Job))
}

/// Works on a job until it is finished (true), or until `budget` is spent (false: the caller
/// queues it again). Safe to run twice at once or again after a crash.
#[tracing::instrument(skip(store, clock), fields(org = %org, job = %job_id))]
pub async fn run<S: Pools + KeyJobs + ?Sized>(
    store: &S,
    clock: &dyn Clock,
    org: &OrgId,
    job_id: &JobId,
    budget: Option<std::time::Duration>,
) -> Result<bool> {
    let Some(mut job) = store.get_key_job(org, job_id).await? else {
        return Err(Error::NotFound(Missing::Job));
    };
    if matches!(job.status, JobStatus::Done | JobStatus::Failed) {
        return Ok(true);
    }
    if job.status != JobStatus::Running {
        job.status = JobStatus::Running;
        job.updated_at = clock.now();
        store.set_key_job_status(&job).await?;
    }
    // Pools are never deleted; one that cannot be found is another organization's or damaged.
    let Some(pool) = store.get_pool_settings(&job.org, &job.pool_id).await? else {
        return fail(store, clock, job, "the pool no longer exists").await;
    };
    // The budget counts from here, so that even the shortest one writes a chunk: a job cut
    // into turns always moves on.
    let started = std::time::Instant::now();
    if job.phase.is_some() {
        return super::import::run_all_or_nothing(store, clock, &pool, job, started, budget).await;
    }
    if job.kind == JobKind::Import {
        return super::import::run_import(store, clock, &pool, job, started, budget).await;
    }
    let mut colliding_rounds = 0;
    while job.done < job.total {
        if budget.is_some_and(|b| started.elapsed() >= b) {
            tracing::info!(
                done = job.done,
                total = job.total,
                "job paused; queued to go on"
            );
            return Ok(false);
        }
        let want = (job.total - job.done).min(ROUND as u64) as usize;
        let batch: Vec<NewKey> = keys::generate_tagged(want, pool.key_tag)
            .map_err(|e| anyhow::anyhow!("the OS random source failed: {e}"))?
            .into_iter()
            .map(|key| NewKey {
                key,
                source: KeySource::Generated,
            })
            .collect();
        let written = store
            .insert_job_keys(&pool, &job.job_id, job.total, &batch, clock.now())
            .await;
        match written {
            Ok(Ok(outcome)) => {
                job.done += outcome.inserted.len() as u64;
                // Taken keys (astronomically rare for generated ones) are simply made again
                // by the next round: the count comes from `done`, not from the batch.
                if outcome.taken.is_empty() {
                    colliding_rounds = 0;
                } else {
                    colliding_rounds += 1;
                    tracing::warn!(collisions = outcome.taken.len(), "generated keys collided");
                    if colliding_rounds > MAX_COLLIDING_ROUNDS {
                        return fail(store, clock, job, "generated keys kept colliding").await;
                    }
                }
            }
            // Another runner of the same job got further: read where it is.
            Ok(Err(JobFull)) => {
                job = store
                    .get_key_job(org, job_id)
                    .await?
                    .ok_or(Error::NotFound(Missing::Job))?;
            }
            Err(Error::NotFound(what)) => {
                return fail(store, clock, job, &format!("the {what} no longer exists")).await;
            }
            Err(e) => return Err(e),
        }
    }
    job.status = JobStatus::Done;
    job.updated_at = clock.now();
    store.set_key_job_status(&job).await?;
    tracing::info!(total = job.total, "generation job done");
    Ok(true)
}

pub use super::import::{INPUT_CHUNK, start_import};

pub(super) async fn fail<S: KeyJobs + ?Sized>(
    store: &S,
    clock: &dyn Clock,
    mut job: KeyJob,
    why: &str,
) -> Result<bool> {
    tracing::error!(reason = why, done = job.done, "generation job failed");
    job.status = JobStatus::Failed;
    job.error = Some(why.to_string());
    job.updated_at = clock.now();
    store.set_key_job_status(&job).await?;
    Ok(true)
}

/// Generates up to `MAX_SYNC_KEYS` new keys at once into a pool; keys that collide are regenerated, never dropped.
pub async fn generate_keys<S: Pools + Keys + ?Sized>(
    store: &S,
    org: &OrgId,
    pool_id: &str,
    count: i64,
    now: Timestamp,
) -> Result<Vec<KeyCode>> {
    if count < 1 || count > MAX_SYNC_KEYS as i64 {
        return Err(Error::field(
            "count",
            format!("count is 1 to {MAX_SYNC_KEYS} per request"),
        ));
    }
    let pool = pools::get_pool(store, org, pool_id).await?;
    let mut wanted = count as usize;
    let mut created = Vec::with_capacity(wanted);
    for _ in 0..=MAX_REGENERATIONS {
        let batch: Vec<NewKey> = keys::generate_tagged(wanted, pool.key_tag)
            .map_err(|e| anyhow::anyhow!("the OS random source failed: {e}"))?
            .into_iter()
            .map(|key| NewKey {
                key,
                source: KeySource::Generated,
            })
            .collect();
        let outcome = store.insert_keys(&pool, &batch, now).await?;
        created.extend(outcome.inserted);
        wanted = outcome.taken.len();
        if wanted == 0 {
            return Ok(created);
        }
        tracing::warn!(collisions = wanted, "generated keys collided; regenerating");
    }
    Err(anyhow::anyhow!("generated keys kept colliding after {MAX_REGENERATIONS} rounds").into())
}

/// Runs a generation or import job from a queue; one that runs out of `budget` is queued
/// again to go on. An export job is not the key-generation function's to run.
pub async fn run_job<S: Pools + KeyJobs + ?Sized>(
    store: &S,
    jobs: &dyn Jobs,
    clock: &dyn Clock,
    job: &Job,
    budget: Option<std::time::Duration>,
) -> Result<()> {
    let Job::Generate { org, job_id } = job else {
        return Err(
            anyhow::anyhow!("an export job reached the key-generation function: {job:?}").into(),
        );
    };
    if !run(store, clock, org, job_id, budget).await? {
        jobs.submit(job).await?;
    }
    Ok(())
}

/// What the key-generation function does with an event that is not an HTTP request: a batch
/// of job messages from its queue, answered with the messages to retry.
pub async fn on_event<S: Pools + KeyJobs + ?Sized>(
    store: &S,
    jobs: &dyn Jobs,
    clock: &dyn Clock,
    event: serde_json::Value,
) -> Result<serde_json::Value> {
    let batch: aws_lambda_events::event::sqs::SqsEvent = serde_json::from_value(event)
        .map_err(|e| anyhow::anyhow!("a key-generation event that is not an SQS batch: {e}"))?;
    let response = crate::jobs::on_queue_batch(batch, |job| async move {
        run_job(store, jobs, clock, &job, Some(JOB_BUDGET)).await
    })
    .await;
    Ok(serde_json::to_value(response).map_err(anyhow::Error::from)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_split_between_requests_and_jobs() {
        assert!(check_count(0).is_err());
        assert!(check_count(-5).is_err());
        assert_eq!(check_count(10_000).unwrap(), 10_000);
        assert!(!needs_job(10_000));
        assert!(needs_job(10_001));
        assert_eq!(check_count(10_000_000).unwrap(), 10_000_000);
        match check_count(10_000_001) {
            Err(Error::Refused { code, message, .. }) => {
                assert_eq!(code, ErrorCode::CountTooLarge);
                assert!(message.contains("split"));
            }
            other => panic!("{other:?}"),
        }
    }
}
