//! Imports: a list of custom keys too long for one request (more than `MAX_SYNC_KEYS` lines),
//! checked whole when it is sent, stored in chunks, and written by a job; and what makes
//! all-or-nothing pastes and imports all or nothing across a crash.
//!
//! An all-or-nothing paste is a job with its keys stored as input chunks. Its keys are first
//! written `pending` (each reserves its key, none is listed, counted or redeemable; every
//! write also checks that the job is still writing), then the job moves to committing and
//! the keys become available, counted in the same atomic writes. Whoever resumes it (the
//! local server at start, from the open-jobs registry; in AWS a delayed message on the job
//! queue) rolls a paste that was still writing back (an import goes on writing), and one
//! that was committing forward. A key taken by someone else before it was written rolls the
//! whole paste back.

use std::collections::HashSet;

use super::add_keys::{
    CHECK_CHUNK, CheckedPaste, MAX_REJECTED_SHOWN, Rejections, reject_existing, rejected_error,
};
use super::generate::{fail, queue};
use super::limits::CollisionBudget;
use super::pools;
use crate::domain::{
    Job, JobId, JobKind, JobStatus, KeyJob, KeySource, MaxOpenJobs, NewKey, PastePhase, Pool,
};
use crate::error::{Error, ErrorCode, Missing, Result};
use crate::identity::OrgId;
use crate::jobs::Jobs;
use crate::keys::KeyCode;
use crate::settings::Settings;
use crate::store::{Counters, JobFull, KeyJobs, Keys, Pools};
use crate::time::{Clock, Timestamp};

/// Keys per stored input chunk of an import (about 40 KB).
pub const INPUT_CHUNK: usize = 2_000;

/// Starts an import of a long list of custom keys: the whole list is checked first (format,
/// duplicates, keys that exist already), with an answer per line (the first thousand, and a
/// count); then a job writes it. All or nothing unless `partial`: without it, any rejected
/// line refuses the whole list.
#[allow(clippy::too_many_arguments)] // the request, its limits, where its job goes, the time
pub async fn start_import<S: Pools + Keys + KeyJobs + Counters + ?Sized>(
    store: &S,
    settings: &Settings,
    jobs: &dyn Jobs,
    org: &OrgId,
    pool_id: &str,
    mut paste: CheckedPaste,
    partial: bool,
    max_open: MaxOpenJobs,
    now: Timestamp,
) -> Result<(KeyJob, Rejections)> {
    let (pool, mut budget) = tokio::try_join!(
        pools::get_pool(store, org, pool_id),
        CollisionBudget::read(store, settings, org, now)
    )?;
    super::open_jobs::ensure_room(store, org, max_open).await?;
    let mut rejections = paste.rejections().clone();
    let mut taken = Vec::new();
    for index in 0..paste.chunk_count(CHECK_CHUNK) {
        let mut chunk = paste.chunk(index, CHECK_CHUNK);
        taken.extend(reject_existing(store, &mut budget, org, &mut chunk, &mut rejections).await?);
    }
    if !rejections.is_empty() && !partial {
        return Err(rejected_error(&rejections));
    }
    paste.drop_lines(&taken);
    drop(taken);
    if paste.valid_count() == 0 {
        return Err(Error::refused(
            ErrorCode::NoKeys,
            "no key of the list can be added",
        ));
    }
    let job_id = JobId::new();
    let mut inputs = 0u32;
    for index in 0..paste.chunk_count(INPUT_CHUNK) {
        let keys: Vec<KeyCode> = paste
            .chunk(index, INPUT_CHUNK)
            .into_iter()
            .map(|(_, k)| k)
            .collect();
        store.put_job_input(org, &job_id, inputs, &keys).await?;
        inputs += 1;
    }
    // A partial import writes available keys as it goes; an all-or-nothing one commits whole.
    let phase = (!partial).then_some(PastePhase::Writing);
    let job = KeyJob {
        job_id,
        org: org.clone(),
        pool_id: pool.pool_id,
        kind: JobKind::Import,
        status: JobStatus::Pending,
        total: paste.valid_count() as u64,
        done: 0,
        error: None,
        inputs,
        position: 0,
        phase,
        rejected: Vec::new(),
        rejected_count: 0,
        created_at: now,
        updated_at: now,
    };
    store.put_key_job(&job, max_open).await?;
    let job = queue(store, jobs, job).await?;
    Ok((job, rejections))
}

/// Writes an import's stored chunks from where it got to. A chunk written twice (after a
/// stop between writing and recording it) finds its keys present: keys this job wrote count
/// as done, keys someone else took are reported.
pub(super) async fn run_import<S: KeyJobs + ?Sized>(
    store: &S,
    clock: &dyn Clock,
    pool: &Pool,
    mut job: KeyJob,
    started: std::time::Instant,
    budget: Option<std::time::Duration>,
) -> Result<bool> {
    while job.position < job.inputs {
        if budget.is_some_and(|b| started.elapsed() >= b) {
            return Ok(false);
        }
        let keys = store
            .get_job_input(&job.org, &job.job_id, job.position)
            .await?;
        let batch: Vec<NewKey> = keys
            .iter()
            .map(|key| NewKey {
                key: key.clone(),
                source: KeySource::Custom,
            })
            .collect();
        let written = store
            .insert_job_keys(pool, &job.job_id, job.total, &batch, clock.now())
            .await;
        let taken = match written {
            Ok(Ok(outcome)) => outcome.taken,
            Ok(Err(JobFull)) => {
                return Err(anyhow::anyhow!(
                    "the import has all its keys: another runner finished it"
                )
                .into());
            }
            Err(Error::NotFound(what)) => {
                return fail(store, clock, job, &format!("the {what} no longer exists")).await;
            }
            Err(e) => return Err(e),
        };
        let mut rejected = Vec::new();
        if !taken.is_empty() {
            let ours: std::collections::HashSet<KeyCode> = store
                .keys_of_job(&taken, &job.job_id)
                .await?
                .into_iter()
                .collect();
            rejected = taken.into_iter().filter(|k| !ours.contains(k)).collect();
            if !rejected.is_empty() {
                tracing::warn!(
                    taken = rejected.len(),
                    "keys were taken before the import wrote them"
                );
            }
        }
        job.position += 1;
        let room = MAX_REJECTED_SHOWN.saturating_sub(job.rejected.len());
        let shown = &rejected[..rejected.len().min(room)];
        job.rejected.extend(shown.iter().map(KeyCode::display_form));
        store
            .record_job_progress(
                &job.org,
                &job.job_id,
                job.position,
                shown,
                rejected.len() as u64,
            )
            .await?;
    }
    job.status = JobStatus::Done;
    job.updated_at = clock.now();
    store.set_key_job_status(&job).await?;
    Ok(true)
}

/// How long after it starts a paste answered at once is surely over (the request is cut at
/// 29 s), so its recovery may roll it back.
const RECOVERY_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

/// Adds checked keys to a pool all or nothing, across a crash too: `Err(taken)` when keys
/// were taken by another request after the check (nothing was added).
pub(super) async fn paste_all_or_nothing<S: KeyJobs + ?Sized>(
    store: &S,
    jobs: &dyn Jobs,
    pool: &Pool,
    keys: &[KeyCode],
    now: Timestamp,
) -> Result<std::result::Result<(), Vec<KeyCode>>> {
    let (org, pool_id) = (&pool.org, &pool.pool_id);
    let job_id = JobId::new();
    let mut inputs = 0u32;
    for chunk in keys.chunks(INPUT_CHUNK) {
        store.put_job_input(org, &job_id, inputs, chunk).await?;
        inputs += 1;
    }
    let mut job = KeyJob {
        job_id,
        org: org.clone(),
        pool_id: *pool_id,
        kind: JobKind::Paste,
        status: JobStatus::Running,
        total: keys.len() as u64,
        done: 0,
        error: None,
        inputs,
        position: 0,
        phase: Some(PastePhase::Writing),
        rejected: Vec::new(),
        rejected_count: 0,
        created_at: now,
        updated_at: now,
    };
    // A paste answered in its request is no background job the cap is about.
    store.put_key_job(&job, MaxOpenJobs::UNCAPPED).await?;
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
        .set_paste_phase(org, &job_id, PastePhase::Writing, PastePhase::Committing)
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
/// when `budget` ran out (the caller queues it again).
pub(super) async fn run_all_or_nothing<S: KeyJobs + ?Sized>(
    store: &S,
    clock: &dyn Clock,
    pool: &Pool,
    mut job: KeyJob,
    started: std::time::Instant,
    budget: Option<std::time::Duration>,
) -> Result<bool> {
    let out_of_time = || budget.is_some_and(|b| started.elapsed() >= b);
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
                while job.position < job.inputs {
                    if out_of_time() {
                        return Ok(false);
                    }
                    let keys = store
                        .get_job_input(&job.org, &job.job_id, job.position)
                        .await?;
                    let outcome = match store
                        .write_pending_keys(&job.org, &job.pool_id, &job.job_id, &keys, clock.now())
                        .await
                    {
                        Ok(outcome) => outcome,
                        Err(Error::Conflict {
                            code: ErrorCode::PasteInterrupted,
                            ..
                        }) => break,
                        Err(e) => return Err(e),
                    };
                    let mut others = Vec::new();
                    if !outcome.taken.is_empty() {
                        // Written by an earlier run of this job, or taken by someone else.
                        let ours: HashSet<KeyCode> = store
                            .keys_of_job(&outcome.taken, &job.job_id)
                            .await?
                            .into_iter()
                            .collect();
                        others = outcome
                            .taken
                            .into_iter()
                            .filter(|k| !ours.contains(k))
                            .collect();
                    }
                    job.position += 1;
                    let shown = &others[..others.len().min(MAX_REJECTED_SHOWN)];
                    store
                        .record_job_progress(
                            &job.org,
                            &job.job_id,
                            job.position,
                            shown,
                            others.len() as u64,
                        )
                        .await?;
                    if !others.is_empty() {
                        let why = format!(
                            "{} key(s) were taken by another request before the import wrote them",
                            others.len()
                        );
                        roll_back(store, job.clone(), &why, clock.now()).await?;
                        break;
                    }
                }
                if job.position >= job.inputs {
                    store
                        .set_paste_phase(
                            &job.org,
                            &job.job_id,
                            PastePhase::Writing,
                            PastePhase::Committing,
                        )
                        .await?;
                }
            }
            Some(PastePhase::Committing) => {
                while job.position < job.inputs {
                    if out_of_time() {
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
                            return fail(store, clock, job, &why).await;
                        }
                        Err(e) => return Err(e),
                    }
                    job.position += 1;
                    store
                        .record_job_progress(&job.org, &job.job_id, job.position, &[], 0)
                        .await?;
                }
                let Some(mut done) = store.get_key_job(&job.org, &job.job_id).await? else {
                    return Err(Error::NotFound(Missing::Job));
                };
                done.status = JobStatus::Done;
                done.updated_at = clock.now();
                store.set_key_job_status(&done).await?;
                tracing::info!(total = done.total, "all-or-nothing paste committed");
                return Ok(true);
            }
            None => return Err(anyhow::anyhow!("a job without a phase").into()),
        }
        // Read where it is now (another runner, or this one, moved it on).
        job = store
            .get_key_job(&job.org, &job.job_id)
            .await?
            .ok_or(Error::NotFound(Missing::Job))?;
        if matches!(job.status, JobStatus::Done | JobStatus::Failed) {
            return Ok(true);
        }
    }
}
