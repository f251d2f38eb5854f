//! What makes all-or-nothing pastes and imports all or nothing across a crash.
//!
//! An all-or-nothing paste is a job with its keys stored as input chunks. Its keys are first
//! written `pending` (each reserves its key, none is listed, counted or redeemable; every
//! write also checks that the job is still writing), then the job moves to committing and
//! the keys become available, counted in the same atomic writes. Whoever resumes it (the
//! local server at start, from the open-jobs registry; in AWS a delayed message on the job
//! queue) rolls a paste that was still writing back (an import goes on writing), and one
//! that was committing forward. A key taken by someone else before it was written rolls the
//! whole paste back.

use super::job::{self, INPUT_CHUNK, Turn};
use crate::domain::{AuditRecord, Job, JobKind, JobStatus, KeyJob, MaxOpenJobs, PastePhase, Pool};
use crate::error::{Error, ErrorCode, Missing, Result};
use crate::jobs::Jobs;
use crate::keys::KeyCode;
use crate::store::KeyJobs;
use crate::time::{Clock, Timestamp};

/// How long after it starts a paste answered at once is surely over (the request is cut at
/// 29 s), so its recovery may roll it back.
const RECOVERY_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

/// Adds checked keys to a pool all or nothing, across a crash too: `Err(taken)` when keys
/// were taken by another request after the check (nothing was added).
pub async fn paste<S: KeyJobs + ?Sized>(
    store: &S,
    jobs: &dyn Jobs,
    pool: &Pool,
    keys: &[KeyCode],
    now: Timestamp,
    record: &AuditRecord,
) -> Result<std::result::Result<(), Vec<KeyCode>>> {
    let (org, pool_id) = (&pool.org, &pool.pool_id);
    let mut job = KeyJob::new(org, *pool_id, JobKind::Paste, keys.len() as u64, now);
    job.status = JobStatus::Running;
    job.phase = Some(PastePhase::Writing);
    job.inputs = job::store_inputs(store, &job, keys.chunks(INPUT_CHUNK)).await?;
    let job_id = job.job_id;
    // A paste answered in its request is no background job the cap is about.
    store.put_key_job(&job, MaxOpenJobs::UNCAPPED, None).await?;
    let message = Job::Generate {
        org: org.clone(),
        job_id,
    };
    if let Err(e) = jobs.submit_recovery(&message, RECOVERY_AFTER).await {
        // Nothing is written yet: close the job and refuse.
        roll_back(store, job, "its recovery could not be queued", now).await?;
        return Err(e);
    }
    let written = store
        .write_pending_keys(org, pool_id, &job_id, keys, now)
        .await;
    let taken = match written {
        Ok(outcome) => outcome.taken,
        Err(e) => {
            if let Err(undo) = roll_back(store, job, "the paste failed part-way", now).await {
                // The job's resumption rolls it back.
                tracing::error!(error = %undo, "could not roll a failed paste back");
            }
            return Err(e);
        }
    };
    if !taken.is_empty() {
        roll_back(store, job, "keys were taken by another request", now).await?;
        return Ok(Err(taken));
    }
    if !store
        .set_paste_phase(
            org,
            &job_id,
            PastePhase::Writing,
            PastePhase::Committing,
            Some(record),
        )
        .await?
    {
        return Err(Error::Conflict {
            code: ErrorCode::PasteInterrupted,
            message: "the paste was stopped before it committed; nothing was added, send it again"
                .into(),
        });
    }
    store.commit_pending_keys(pool, &job_id, keys, now).await?;
    job.phase = Some(PastePhase::Committing);
    job.status = JobStatus::Done;
    job.done = job.total;
    store.set_key_job_status(&job).await?;
    Ok(Ok(()))
}

/// Takes an all-or-nothing job's pending keys away and marks it failed with `why`, unless it
/// has moved on to committing (then it is left to be rolled forward).
async fn roll_back<S: KeyJobs + ?Sized>(
    store: &S,
    mut job: KeyJob,
    why: &str,
    now: Timestamp,
) -> Result<bool> {
    if job.phase == Some(PastePhase::Committing) {
        return Ok(false);
    }
    if job.phase == Some(PastePhase::Writing)
        && !store
            .set_paste_phase(
                &job.org,
                &job.job_id,
                PastePhase::Writing,
                PastePhase::RollingBack,
                None,
            )
            .await?
    {
        let current = store.get_key_job(&job.org, &job.job_id).await?;
        if current.as_ref().and_then(|j| j.phase) != Some(PastePhase::RollingBack) {
            return Ok(false);
        }
    }
    for index in 0..job.inputs {
        let keys = store.get_job_input(&job.org, &job.job_id, index).await?;
        store.remove_pending_keys(&job.job_id, &keys).await?;
    }
    tracing::warn!(
        reason = why,
        keys = job.total,
        "an all-or-nothing paste was rolled back"
    );
    job.phase = Some(PastePhase::RollingBack);
    job.status = JobStatus::Failed;
    job.error = Some(format!("{why}; nothing was added"));
    job.updated_at = now;
    store.set_key_job_status(&job).await?;
    Ok(true)
}

/// Resumes an all-or-nothing paste or import from its phase: true when it is finished, false
/// when its turn is over (the caller queues it again).
pub(super) async fn resume<S: KeyJobs + ?Sized>(
    store: &S,
    clock: &dyn Clock,
    pool: &Pool,
    mut job: KeyJob,
    turn: &Turn,
) -> Result<bool> {
    loop {
        match job.phase {
            // A paste answered at once whose request died: nobody was told it landed.
            Some(PastePhase::Writing) if job.kind == JobKind::Paste => {
                let why = "the paste was interrupted before it committed";
                roll_back(store, job.clone(), why, clock.now()).await?;
            }
            Some(PastePhase::RollingBack) => {
                let why = job.error.clone().unwrap_or_else(|| "it was stopped".into());
                roll_back(store, job.clone(), &why, clock.now()).await?;
                return Ok(true);
            }
            Some(PastePhase::Writing) => {
                if !write(store, clock, &mut job, turn).await? {
                    return Ok(false);
                }
            }
            Some(PastePhase::Committing) => return commit(store, clock, pool, job, turn).await,
            None => return Err(anyhow::anyhow!("a job without a phase").into()),
        }
        // Read where it is now (another runner, or this one, moved it on).
        job = job::reread(store, &job).await?;
        if matches!(job.status, JobStatus::Done | JobStatus::Failed) {
            return Ok(true);
        }
    }
}

/// Writes an all-or-nothing import's pending keys from where it got to, then moves it on to
/// committing; or rolls it back at the first key another request took. False when its turn
/// is over first.
async fn write<S: KeyJobs + ?Sized>(
    store: &S,
    clock: &dyn Clock,
    job: &mut KeyJob,
    turn: &Turn,
) -> Result<bool> {
    while job.position < job.inputs {
        if turn.is_over() {
            return Ok(false);
        }
        let keys = store
            .get_job_input(&job.org, &job.job_id, job.position)
            .await?;
        let written = store
            .write_pending_keys(&job.org, &job.pool_id, &job.job_id, &keys, clock.now())
            .await;
        let outcome = match written {
            Ok(outcome) => outcome,
            Err(Error::Conflict {
                code: ErrorCode::PasteInterrupted,
                ..
            }) => return Ok(true),
            Err(e) => return Err(e),
        };
        // Present keys were written by an earlier run of this job, or taken by someone else.
        let others = job::chunk_written(store, job, outcome.taken).await?;
        if !others.is_empty() {
            let why = format!(
                "{} key(s) were taken by another request before the import wrote them",
                others.len()
            );
            roll_back(store, job.clone(), &why, clock.now()).await?;
            return Ok(true);
        }
    }
    store
        .set_paste_phase(
            &job.org,
            &job.job_id,
            PastePhase::Writing,
            PastePhase::Committing,
            None,
        )
        .await?;
    Ok(true)
}

/// Makes a paste's pending keys available from where it got to, and marks it done: true when
/// it is, false when its turn is over first.
async fn commit<S: KeyJobs + ?Sized>(
    store: &S,
    clock: &dyn Clock,
    pool: &Pool,
    mut job: KeyJob,
    turn: &Turn,
) -> Result<bool> {
    while job.position < job.inputs {
        if turn.is_over() {
            return Ok(false);
        }
        let keys = store
            .get_job_input(&job.org, &job.job_id, job.position)
            .await?;
        match store
            .commit_pending_keys(pool, &job.job_id, &keys, clock.now())
            .await
        {
            Ok(_) => {}
            Err(Error::NotFound(what)) => {
                let why = format!("the {what} no longer exists");
                return job::fail(store, clock, job, &why).await;
            }
            Err(e) => return Err(e),
        }
        job::chunk_written(store, &mut job, Vec::new()).await?;
    }
    let Some(done) = store.get_key_job(&job.org, &job.job_id).await? else {
        return Err(Error::NotFound(Missing::Job));
    };
    let total = done.total;
    job::finish(store, clock, done).await?;
    tracing::info!(total, "all-or-nothing paste committed");
    Ok(true)
}
