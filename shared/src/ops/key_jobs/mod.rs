//! Key jobs: writing many keys in chunks that survive a crash or restart at any point.
//!
//! This module runs a job: it reads it, finds its pool, and hands it, by its phase and kind,
//! to the module that works it, for one turn or to its end (`run`); a job whose turn ran out
//! goes back on its queue (`run_job`). Beside it, each module owns one thing and none imports
//! a sibling, only `job`, which they share:
//! - `job`: a job's life in the store (made, registered and queued, its progress per chunk,
//!   failed or finished) and the limits between a request and a job;
//! - `checks`: custom keys checked against the keys already stored;
//! - `generate`: generated keys, at once or as a job;
//! - `import`: long lists of custom keys, checked whole and written by a job;
//! - `all_or_nothing`: pastes and imports that land whole or leave nothing.
//!
//! The request path of custom keys is `ops::add_keys`, which uses `checks` and
//! `all_or_nothing`.

pub mod all_or_nothing;
pub mod checks;
pub mod generate;
pub mod import;
mod job;

pub use job::{INPUT_CHUNK, JOB_BUDGET, MAX_SYNC_KEYS};

use crate::domain::{Job, JobId, JobKind, JobStatus, KeyJob};
use crate::error::{Error, Missing, Result};
use crate::identity::OrgId;
use crate::jobs::Jobs;
use crate::store::{KeyJobs, Pools};
use crate::time::Clock;

/// A key job of the organization.
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
        return job::fail(store, clock, job, "the pool no longer exists").await;
    };
    let turn = job::Turn::start(budget);
    match (job.phase, job.kind) {
        (Some(_), _) => all_or_nothing::resume(store, clock, &pool, job, &turn).await,
        (None, JobKind::Import) => import::run(store, clock, &pool, job, &turn).await,
        (None, _) => generate::run(store, clock, &pool, job, &turn).await,
    }
}

/// Runs a key job from a queue; one that runs out of `budget` is queued again to go on. An
/// export job is not the key-generation function's to run.
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
