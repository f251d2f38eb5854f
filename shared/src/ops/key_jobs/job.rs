//! One key job's life in the store, whatever its kind: made with its input, registered and
//! queued; worked in turns, chunk by chunk, each chunk's progress recorded; failed or
//! finished. The kinds (`generate`, `import`, `all_or_nothing`) are built from these.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::domain::{AuditAction, Caller, Job, JobStatus, KeyJob, MaxOpenJobs, Resource, Summary};
use crate::error::{Error, Missing, Result};
use crate::jobs::Jobs;
use crate::keys::KeyCode;
use crate::ops::paste::MAX_REJECTED_SHOWN;
use crate::store::KeyJobs;
use crate::time::Clock;

/// Most keys one request may add or generate at once; more go to a job.
pub const MAX_SYNC_KEYS: usize = 10_000;
/// Keys per stored input chunk of an import or a paste (about 40 KB).
pub const INPUT_CHUNK: usize = 2_000;
/// How long one Lambda invocation works on jobs before it queues the rest (it has 15 minutes).
pub const JOB_BUDGET: Duration = Duration::from_secs(10 * 60);

/// How long a run may work before it stops, to be queued again; a run without a budget goes
/// to the end.
pub(super) struct Turn {
    started: Instant,
    budget: Option<Duration>,
}

impl Turn {
    /// A turn that starts now. It starts once the job is read and its pool found, so that even
    /// the shortest turn writes a chunk: a job cut into turns always moves on.
    pub(super) fn start(budget: Option<Duration>) -> Self {
        Self {
            started: Instant::now(),
            budget,
        }
    }

    /// True when the turn has used its budget.
    pub(super) fn is_over(&self) -> bool {
        self.budget.is_some_and(|b| self.started.elapsed() >= b)
    }
}

/// Stores a job's input, validated keys in chunks, under the job's id; returns how many
/// chunks it stored.
pub(super) async fn store_inputs<S, I>(store: &S, job: &KeyJob, chunks: I) -> Result<u32>
where
    S: KeyJobs + ?Sized,
    I: IntoIterator,
    I::Item: AsRef<[KeyCode]>,
{
    let mut inputs = 0u32;
    for chunk in chunks {
        store
            .put_job_input(&job.org, &job.job_id, inputs, chunk.as_ref())
            .await?;
        inputs += 1;
    }
    Ok(inputs)
}

/// Registers a new job that `caller` starts (refused when its organization has `max_open`
/// open jobs), with the record of its start, and hands it to the runners; marks it failed if
/// they cannot take it (which records its end).
pub(super) async fn register<S: KeyJobs + ?Sized>(
    store: &S,
    jobs: &dyn Jobs,
    mut job: KeyJob,
    max_open: MaxOpenJobs,
    start: Started<'_>,
) -> Result<KeyJob> {
    job.started_by = Some(start.caller.origin());
    let record = start
        .caller
        .record(
            start.action,
            Resource::new("job", job.job_id),
            start.summary,
            job.created_at,
        )
        .in_pool(job.pool_id);
    store.put_key_job(&job, max_open, Some(&record)).await?;
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

/// Who starts a job and how its start is recorded.
pub(super) struct Started<'a> {
    pub caller: &'a Caller,
    pub action: AuditAction,
    pub summary: Summary,
}

/// The job as it is stored now (another runner, or this one, moved it on).
pub(super) async fn reread<S: KeyJobs + ?Sized>(store: &S, job: &KeyJob) -> Result<KeyJob> {
    store
        .get_key_job(&job.org, &job.job_id)
        .await?
        .ok_or(Error::NotFound(Missing::Job))
}

/// Records that the job wrote the input chunk at its position: moves the job on, and reports
/// the keys of `taken` (keys of the chunk found present) that another request took, which it
/// returns; those this job wrote in an earlier run are its own. The job lists the first
/// `MAX_REJECTED_SHOWN` of them and counts them all.
pub(super) async fn chunk_written<S: KeyJobs + ?Sized>(
    store: &S,
    job: &mut KeyJob,
    taken: Vec<KeyCode>,
) -> Result<Vec<KeyCode>> {
    let mut others = Vec::new();
    if !taken.is_empty() {
        let ours: HashSet<KeyCode> = store
            .keys_of_job(&taken, &job.job_id)
            .await?
            .into_iter()
            .collect();
        others = taken.into_iter().filter(|k| !ours.contains(k)).collect();
    }
    job.position += 1;
    let room = MAX_REJECTED_SHOWN.saturating_sub(job.rejected.len());
    let shown = &others[..others.len().min(room)];
    job.rejected.extend(shown.iter().map(KeyCode::display_form));
    store
        .record_job_progress(
            &job.org,
            &job.job_id,
            job.position,
            shown,
            others.len() as u64,
        )
        .await?;
    Ok(others)
}

/// Marks the job done.
pub(super) async fn finish<S: KeyJobs + ?Sized>(
    store: &S,
    clock: &dyn Clock,
    mut job: KeyJob,
) -> Result<()> {
    job.status = JobStatus::Done;
    job.updated_at = clock.now();
    store.set_key_job_status(&job).await
}

/// Marks the job failed, saying why; it is finished (true).
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
