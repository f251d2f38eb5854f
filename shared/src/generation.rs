//! Large key generations as jobs: any count up to ten million, written in chunks that survive a
//! crash or restart at any point without creating more keys than asked or losing any.
//!
//! Each atomic write of keys also adds its keys to the job's `done` (condition: never beyond
//! `total`), so `done` always equals the keys the job wrote; a resumed job generates
//! `total - done` more.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::identity::OrgId;
use crate::inventory::{KeySource, MAX_SYNC_KEYS, NewKey};
use crate::jobs::{Job, Jobs};
use crate::keys;
use crate::pools::{self, JobId, PoolId};
use crate::store::Store;
use crate::time::{self, Clock, Timestamp};

/// The largest count one request may ask for.
pub const MAX_JOB_KEYS: u64 = 10_000_000;
/// Keys generated and written per round of a job (progress is saved with every write of 98).
pub const ROUND: usize = 98 * 50;
/// Rounds in which generated keys may keep colliding before the job gives up.
const MAX_COLLIDING_ROUNDS: usize = 5;

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Pending,
    Running,
    Done,
    Failed,
}

/// A generation of many keys into a pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyJob {
    pub job_id: JobId,
    pub org: OrgId,
    pub pool_id: PoolId,
    pub status: JobStatus,
    /// Keys asked for.
    pub total: u64,
    /// Keys written so far; changes only with the keys themselves.
    #[serde(default)]
    pub done: u64,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(with = "time::rfc3339")]
    pub created_at: Timestamp,
    #[serde(with = "time::rfc3339")]
    pub updated_at: Timestamp,
}

/// Checks a generation count: the synchronous path takes up to `MAX_SYNC_KEYS`, a job up to
/// `MAX_JOB_KEYS`.
pub fn check_count(count: i64) -> Result<u64> {
    if count < 1 {
        return Err(Error::field("count", "count is at least 1"));
    }
    let count = count as u64;
    if count > MAX_JOB_KEYS {
        return Err(Error::BadRequest {
            code: "count_too_large",
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

/// Starts a generation job for one of the organization's pools.
pub async fn start(
    store: &dyn Store,
    jobs: &dyn Jobs,
    org: &OrgId,
    pool_id: &str,
    count: u64,
    now: Timestamp,
) -> Result<KeyJob> {
    let pool = pools::get_pool(store, org, pool_id).await?;
    let job = KeyJob {
        job_id: JobId::new(),
        org: org.clone(),
        pool_id: pool.pool_id,
        status: JobStatus::Pending,
        total: count,
        done: 0,
        error: None,
        created_at: now,
        updated_at: now,
    };
    store.put_key_job(&job).await?;
    let message = Job::Generate {
        org: org.clone(),
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
pub async fn get(store: &dyn Store, org: &OrgId, job_id: &str) -> Result<KeyJob> {
    let id = JobId::parse(job_id).ok_or(Error::NotFound("job"))?;
    store
        .get_key_job(org, &id)
        .await?
        .ok_or(Error::NotFound("job"))
}

/// Works on a job until it is finished (true), or until `budget` is spent (false: the caller
/// queues it again). Safe to run twice at once or again after a crash.
#[tracing::instrument(skip(store, clock), fields(org = %org, job = %job_id))]
pub async fn run(
    store: &dyn Store,
    clock: &dyn Clock,
    org: &OrgId,
    job_id: &JobId,
    budget: Option<std::time::Duration>,
) -> Result<bool> {
    let started = std::time::Instant::now();
    let Some(mut job) = store.get_key_job(org, job_id).await? else {
        return Err(Error::NotFound("job"));
    };
    if matches!(job.status, JobStatus::Done | JobStatus::Failed) {
        return Ok(true);
    }
    if job.status != JobStatus::Running {
        job.status = JobStatus::Running;
        job.updated_at = clock.now();
        store.set_key_job_status(&job).await?;
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
        let batch: Vec<NewKey> = keys::generate(want)
            .map_err(|e| anyhow::anyhow!("the OS random source failed: {e}"))?
            .into_iter()
            .map(|key| NewKey {
                key,
                source: KeySource::Generated,
            })
            .collect();
        let written = store
            .insert_job_keys(
                &job.org,
                &job.pool_id,
                &job.job_id,
                job.total,
                &batch,
                clock.now(),
            )
            .await;
        match written {
            Ok(outcome) => {
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
            Err(Error::Conflict {
                code: "job_overrun",
                ..
            }) => {
                job = store
                    .get_key_job(org, job_id)
                    .await?
                    .ok_or(Error::NotFound("job"))?;
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

async fn fail(store: &dyn Store, clock: &dyn Clock, mut job: KeyJob, why: &str) -> Result<bool> {
    tracing::error!(reason = why, done = job.done, "generation job failed");
    job.status = JobStatus::Failed;
    job.error = Some(why.to_string());
    job.updated_at = clock.now();
    store.set_key_job_status(&job).await?;
    Ok(true)
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
            Err(Error::BadRequest { code, message, .. }) => {
                assert_eq!(code, "count_too_large");
                assert!(message.contains("split"));
            }
            other => panic!("{other:?}"),
        }
    }
}
