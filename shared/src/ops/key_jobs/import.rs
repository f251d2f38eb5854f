//! Imports: a list of custom keys too long for one request (more than `MAX_SYNC_KEYS` lines),
//! checked whole when it is sent, stored in chunks, and written by a job. A partial import
//! writes available keys chunk by chunk (`run`); an all-or-nothing one is written and
//! committed as `all_or_nothing` says.

use super::checks;
use super::job::{self, INPUT_CHUNK, Turn};
use crate::domain::{AuditAction, Caller, JobKind, KeyJob, NewKey, PastePhase, Pool, Summary};
use crate::error::{Error, ErrorCode, Result};
use crate::keys::KeyCode;
use crate::ops::open_jobs::{self, JobContext};
use crate::ops::paste::{CheckedPaste, Rejections};
use crate::settings::Settings;
use crate::store::{Counters, JobFull, KeyJobs, Keys, Pools};
use crate::time::Clock;

/// Starts an import of a long list of custom keys: the whole list is checked first (format,
/// duplicates, keys that exist already), with an answer per line (the first thousand, and a
/// count); then a job writes it. All or nothing unless `partial`: without it, any rejected
/// line refuses the whole list.
pub async fn start<S: Pools + Keys + KeyJobs + Counters + ?Sized>(
    cx: &JobContext<'_, S>,
    settings: &Settings,
    caller: &Caller,
    pool_id: &str,
    mut paste: CheckedPaste,
    partial: bool,
) -> Result<(KeyJob, Rejections)> {
    let (store, now, org) = (cx.store, cx.clock.now(), &caller.org);
    let (pool, mut budget) = checks::pool_and_budget(store, settings, org, pool_id, now).await?;
    open_jobs::ensure_room(store, org, cx.max_open).await?;
    let mut rejections = paste.rejections().clone();
    let taken = checks::reject_existing(store, &mut budget, org, &paste, &mut rejections).await?;
    if !rejections.is_empty() && !partial {
        return Err(checks::rejected_error(&rejections));
    }
    paste.drop_lines(&taken);
    drop(taken);
    if paste.valid_count() == 0 {
        return Err(Error::refused(
            ErrorCode::NoKeys,
            "no key of the list can be added",
        ));
    }
    let mut job = KeyJob::new(
        org,
        pool.pool_id,
        JobKind::Import,
        paste.valid_count() as u64,
        now,
    );
    let chunks = (0..paste.chunk_count(INPUT_CHUNK)).map(|index| {
        let keys: Vec<KeyCode> = paste
            .chunk(index, INPUT_CHUNK)
            .into_iter()
            .map(|(_, k)| k)
            .collect();
        keys
    });
    job.inputs = job::store_inputs(store, &job, chunks).await?;
    // A partial import writes available keys as it goes; an all-or-nothing one commits whole.
    job.phase = (!partial).then_some(PastePhase::Writing);
    let started = job::Started {
        caller,
        action: AuditAction::KeysImportStarted,
        summary: Summary::new()
            .with("lines", paste.len())
            .with("keys", job.total)
            .with("rejected_count", rejections.count())
            .with("partial", partial),
    };
    let job = job::register(store, cx.jobs, job, cx.max_open, started).await?;
    Ok((job, rejections))
}

/// Writes a partial import's stored chunks from where it got to. A chunk written twice (after
/// a stop between writing and recording it) finds its keys present: keys this job wrote count
/// as done, keys someone else took are reported.
pub(super) async fn run<S: KeyJobs + ?Sized>(
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
        let batch: Vec<NewKey> = keys.into_iter().map(NewKey::custom).collect();
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
                let why = format!("the {what} no longer exists");
                return job::fail(store, clock, job, &why).await;
            }
            Err(e) => return Err(e),
        };
        let rejected = job::chunk_written(store, &mut job, taken).await?;
        if !rejected.is_empty() {
            tracing::warn!(
                taken = rejected.len(),
                "keys were taken before the import wrote them"
            );
        }
    }
    // Its progress as stored (each chunk's keys counted it), for the record of its end.
    let job = job::reread(store, &job).await?;
    job::finish(store, clock, job).await?;
    Ok(true)
}
