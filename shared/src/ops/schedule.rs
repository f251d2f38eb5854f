//! The scheduled export: every pool that changed since its last scheduled export is written
//! again (the schedule's tick reaches it through `events::export`).

use super::export::{file_name, stamp, submit};
use crate::domain::{Export, ExportId, ExportKind, ExportStatus, Job, MaxOpenJobs};
use crate::error::Result;
use crate::jobs::Jobs;
use crate::store::{Exports, OpenJobs, Pools};
use crate::time::Timestamp;

/// The scheduled export: every pool that changed since its last scheduled export gets a new
/// file at `exports/{org}/{pool}/{timestamp}.csv`. Returns how many exports it started.
#[tracing::instrument(skip_all)]
pub async fn schedule<S: Pools + Exports + OpenJobs + ?Sized>(
    store: &S,
    jobs: &dyn Jobs,
    now: Timestamp,
) -> Result<usize> {
    requeue_stale_jobs(store, jobs, now).await?;
    let mut started = 0;
    let mut cursor: Option<String> = None;
    loop {
        let page = store.list_all_pools(cursor.as_deref(), 100).await?;
        for pool in page.items {
            let mark = pool.change_mark();
            if pool.scheduled_mark.is_some_and(|m| m >= mark) {
                continue;
            }
            // Claimed atomically, so two runs of the schedule never export one change twice.
            if !store
                .claim_scheduled_export(&pool.org, &pool.pool_id, mark)
                .await?
            {
                continue;
            }
            let export = Export {
                export_id: ExportId::new(),
                org: pool.org.clone(),
                pool_id: pool.pool_id,
                kind: ExportKind::Scheduled,
                status: ExportStatus::Pending,
                key_status: None,
                undistributed: false,
                mark_distributed: false,
                rows: 0,
                object_key: format!("exports/{}/{}/{}.csv", pool.org, pool.pool_id, stamp(now)),
                file_name: file_name(&pool.name, now),
                error: None,
                pool_mark: Some(mark),
                created_at: now,
                finished_at: None,
                started_by: None,
            };
            // Started by the system, a scheduled export never counts against the cap.
            match submit(store, jobs, export, MaxOpenJobs::DEFAULT).await {
                Ok(_) => started += 1,
                Err(e) => {
                    store
                        .release_scheduled_export(&pool.org, &pool.pool_id, mark)
                        .await?;
                    return Err(e);
                }
            }
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    tracing::info!(started, "scheduled exports started");
    Ok(started)
}

/// Jobs that were never picked up, or whose runner died, are queued again: a queue message
/// lost between storing a job and sending it, or a run that outlived its retries. Running a
/// job again is safe (an export restarts, a generation goes on from its count).
async fn requeue_stale_jobs<S: Exports + OpenJobs + ?Sized>(
    store: &S,
    jobs: &dyn Jobs,
    now: Timestamp,
) -> Result<()> {
    let stale_after = chrono::Duration::minutes(30);
    // Exports only: this runs in the export function, whose queue is for exports. Generation
    // jobs are retried by their own queue.
    for job in store.open_jobs().await? {
        let last_seen = match &job {
            Job::Export { org, export_id } => store
                .get_export(org, export_id)
                .await?
                .map(|e| e.finished_at.unwrap_or(e.created_at)),
            Job::Generate { .. } => None,
        };
        if last_seen.is_some_and(|at| now - at > stale_after) {
            tracing::warn!(job = ?job, "requeueing a job that has not moved for 30 minutes");
            jobs.submit(&job).await?;
        }
    }
    Ok(())
}
