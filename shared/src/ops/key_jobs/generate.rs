//! Generating keys: up to `MAX_SYNC_KEYS` at once, in the request; any count up to ten million
//! as a job, written in chunks that survive a crash or restart at any point without creating
//! more keys than asked or losing any.
//!
//! Each atomic write of a job's keys also adds its keys to the job's `done` (condition: never
//! beyond `total`), so `done` always equals the keys the job wrote; a resumed job generates
//! `total - done` more.

use super::job::{self, MAX_SYNC_KEYS, Turn};
use crate::domain::{AuditAction, Caller, JobKind, KeyJob, NewKey, Pool, Resource, Summary};
use crate::error::{Error, ErrorCode, Result};
use crate::keys::{self, KeyCode, KeyTag};
use crate::ops::open_jobs::JobContext;
use crate::ops::pools;
use crate::store::{JobFull, KeyJobs, Keys, Pools};
use crate::time::{Clock, Timestamp};

/// The largest count one request may ask for.
pub const MAX_JOB_KEYS: u64 = 10_000_000;
/// Keys generated and written per round of a job (progress is saved with every write of 98).
pub const ROUND: usize = 98 * 50;
/// Rounds in which generated keys may keep colliding before the job gives up.
const MAX_COLLIDING_ROUNDS: usize = 5;
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

/// `count` new keys for a pool, carrying its tag.
fn new_keys(count: usize, tag: Option<KeyTag>) -> Result<Vec<NewKey>> {
    Ok(keys::generate_tagged(count, tag)
        .map_err(|e| anyhow::anyhow!("the OS random source failed: {e}"))?
        .into_iter()
        .map(NewKey::generated)
        .collect())
}

/// Generates up to `MAX_SYNC_KEYS` new keys at once into a pool; keys that collide are
/// regenerated, never dropped.
pub async fn generate_keys<S: Pools + Keys + ?Sized>(
    store: &S,
    caller: &Caller,
    pool_id: &str,
    count: i64,
    now: Timestamp,
) -> Result<Vec<KeyCode>> {
    let org = &caller.org;
    if count < 1 || count > MAX_SYNC_KEYS as i64 {
        return Err(Error::field(
            "count",
            format!("count is 1 to {MAX_SYNC_KEYS} per request"),
        ));
    }
    let pool = pools::get_pool(store, org, pool_id).await?;
    let mut wanted = count as usize;
    let mut created = Vec::with_capacity(wanted);
    // The first write that adds keys takes the record; regenerations of collided keys are
    // the same change.
    let mut record = Some(caller.record(
        AuditAction::KeysGenerated,
        Resource::new("pool", pool.pool_id),
        Summary::new().with("count", count),
        now,
    ));
    for _ in 0..=MAX_REGENERATIONS {
        let batch = new_keys(wanted, pool.key_tag)?;
        let outcome = store
            .insert_keys(&pool, &batch, now, record.as_ref())
            .await?;
        if !outcome.inserted.is_empty() {
            record = None;
        }
        created.extend(outcome.inserted);
        wanted = outcome.taken.len();
        if wanted == 0 {
            return Ok(created);
        }
        tracing::warn!(collisions = wanted, "generated keys collided; regenerating");
    }
    Err(anyhow::anyhow!("generated keys kept colliding after {MAX_REGENERATIONS} rounds").into())
}

/// Starts a generation job for one of the organization's pools, unless the organization has
/// its most open jobs already.
pub async fn start<S: Pools + KeyJobs + ?Sized>(
    cx: &JobContext<'_, S>,
    caller: &Caller,
    pool_id: &str,
    count: u64,
) -> Result<KeyJob> {
    let (org, now) = (&caller.org, cx.clock.now());
    let pool = pools::get_pool(cx.store, org, pool_id).await?;
    let job = KeyJob::new(org, pool.pool_id, JobKind::Generate, count, now);
    let started = job::Started {
        caller,
        action: AuditAction::KeysGenerationStarted,
        summary: Summary::new().with("count", count),
    };
    job::register(cx.store, cx.jobs, job, cx.max_open, started).await
}

/// Works on a generation job until it has all its keys (true) or its turn is over (false).
pub(super) async fn run<S: KeyJobs + ?Sized>(
    store: &S,
    clock: &dyn Clock,
    pool: &Pool,
    mut job: KeyJob,
    turn: &Turn,
) -> Result<bool> {
    let mut colliding_rounds = 0;
    while job.done < job.total {
        if turn.is_over() {
            tracing::info!(
                done = job.done,
                total = job.total,
                "job paused; queued to go on"
            );
            return Ok(false);
        }
        let want = (job.total - job.done).min(ROUND as u64) as usize;
        let batch = new_keys(want, pool.key_tag)?;
        let written = store
            .insert_job_keys(pool, &job.job_id, job.total, &batch, clock.now())
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
                        return job::fail(store, clock, job, "generated keys kept colliding").await;
                    }
                }
            }
            // Another runner of the same job got further: read where it is.
            Ok(Err(JobFull)) => job = job::reread(store, &job).await?,
            Err(Error::NotFound(what)) => {
                let why = format!("the {what} no longer exists");
                return job::fail(store, clock, job, &why).await;
            }
            Err(e) => return Err(e),
        }
    }
    let total = job.total;
    job::finish(store, clock, job).await?;
    tracing::info!(total, "generation job done");
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
            Err(Error::Refused { code, message, .. }) => {
                assert_eq!(code, ErrorCode::CountTooLarge);
                assert!(message.contains("split"));
            }
            other => panic!("{other:?}"),
        }
    }
}
