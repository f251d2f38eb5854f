//! The local server's job runner: every kind of job, in one process.

use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::Job;
use crate::error::Result;
use crate::jobs::Jobs;
use crate::objects::ObjectStore;
use crate::ops::{export, generate};
use crate::store::Store;
use crate::time::Clock;

/// Runs one job of any kind to its end (the local runner has no time budget).
pub async fn run(
    store: &dyn Store,
    objects: &dyn ObjectStore,
    jobs: &dyn Jobs,
    clock: &dyn Clock,
    job: &Job,
) -> Result<()> {
    match job {
        Job::Export { .. } => export::run_job(store, objects, clock, job).await,
        Job::Generate { .. } => generate::run_job(store, jobs, clock, job, None).await,
    }
}

/// The local server's job runner: a queue in memory, worked by one task, that also resumes
/// the jobs a previous run left unfinished (they are found in the store).
#[derive(Clone)]
pub struct LocalJobs {
    sender: tokio::sync::mpsc::UnboundedSender<Job>,
}

impl LocalJobs {
    /// Starts the worker; it stops when every `LocalJobs` handle is dropped.
    pub fn start(
        store: Arc<dyn Store>,
        objects: Arc<dyn ObjectStore>,
        clock: Arc<dyn Clock>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<Job>();
        let handle = Self {
            sender: sender.clone(),
        };
        // The worker resubmits through a weak sender, so dropping every handle stops it.
        let weak = sender.downgrade();
        drop(sender);
        let worker = tokio::spawn(async move {
            while let Some(job) = receiver.recv().await {
                let Some(sender) = weak.upgrade() else {
                    break;
                };
                let resubmit = LocalJobs { sender };
                let ran = run(
                    store.as_ref(),
                    objects.as_ref(),
                    &resubmit,
                    clock.as_ref(),
                    &job,
                )
                .await;
                if let Err(e) = ran {
                    tracing::error!(error = %e, job = ?job, "a job failed");
                }
            }
        });
        (handle, worker)
    }

    /// Queues again the jobs a previous run of the server did not finish.
    pub async fn resume(&self, store: &dyn crate::store::OpenJobs) -> Result<usize> {
        let open = store.open_jobs().await?;
        for job in &open {
            self.submit(job).await?;
        }
        Ok(open.len())
    }
}

#[async_trait]
impl Jobs for LocalJobs {
    async fn submit(&self, job: &Job) -> Result<()> {
        self.sender
            .send(job.clone())
            .map_err(|_| anyhow::anyhow!("the job runner has stopped"))?;
        Ok(())
    }
}
