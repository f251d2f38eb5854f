//! Background jobs: work too long for a request (exports). In AWS a queue (SQS) delivers them
//! to the function that runs them, with retries; locally a task of the server runs them, and
//! picks up unfinished ones after a restart.

use std::sync::Arc;

use anyhow::Context as _;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::identity::OrgId;
use crate::objects::ObjectStore;
use crate::pools::{ExportId, JobId};
use crate::store::Store;
use crate::time::Clock;

/// One unit of background work; a job may be delivered more than once and must be idempotent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Job {
    /// Write an export's file.
    Export { org: OrgId, export_id: ExportId },
    /// Generate a large number of keys into a pool.
    Generate { org: OrgId, job_id: JobId },
}

/// Hands jobs to whatever runs them.
#[async_trait]
pub trait Jobs: Send + Sync {
    /// Queues a job; it runs at least once after this returns.
    async fn submit(&self, job: &Job) -> Result<()>;
}

/// For functions that start no jobs: refuses, so a misconfiguration shows at once.
pub struct NoJobs;

#[async_trait]
impl Jobs for NoJobs {
    async fn submit(&self, job: &Job) -> Result<()> {
        Err(anyhow::anyhow!("this function has no job queue; cannot run {job:?}").into())
    }
}

/// Jobs as messages on an SQS queue, which the running function consumes.
pub struct SqsJobs {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsJobs {
    /// Jobs sent to `queue_url`.
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }
}

#[async_trait]
impl Jobs for SqsJobs {
    async fn submit(&self, job: &Job) -> Result<()> {
        let body = serde_json::to_string(job).context("serialising a job")?;
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
            .await
            .context("queueing a job")?;
        Ok(())
    }
}

/// Runs one job; a job that takes longer than `budget` stops at a safe point and is queued
/// again to go on (a Lambda invocation has 15 minutes; the local runner has no budget).
pub async fn run(
    store: &dyn Store,
    objects: &dyn ObjectStore,
    jobs: &dyn Jobs,
    clock: &dyn Clock,
    job: &Job,
    budget: Option<std::time::Duration>,
) -> Result<()> {
    match job {
        Job::Export { org, export_id } => {
            crate::export::run(store, objects, clock, org, export_id).await?;
        }
        Job::Generate { org, job_id } => {
            let finished = crate::generation::run(store, clock, org, job_id, budget).await?;
            if !finished {
                jobs.submit(job).await?;
            }
        }
    }
    Ok(())
}

/// A batch of job messages from an SQS queue: each job run in turn, and the messages of the
/// jobs that failed reported for retry (then dead-lettered).
pub async fn on_queue_batch(
    store: &dyn Store,
    objects: &dyn ObjectStore,
    jobs: &dyn Jobs,
    clock: &dyn Clock,
    batch: aws_lambda_events::event::sqs::SqsEvent,
    budget: Option<std::time::Duration>,
) -> aws_lambda_events::event::sqs::SqsBatchResponse {
    use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse};
    let mut response = SqsBatchResponse::default();
    for message in batch.records {
        let id = message.message_id.clone().unwrap_or_default();
        let outcome = match serde_json::from_str::<Job>(message.body.as_deref().unwrap_or("")) {
            Ok(job) => run(store, objects, jobs, clock, &job, budget).await,
            Err(e) => Err(crate::Error::Internal(anyhow::anyhow!(
                "a job message: {e}"
            ))),
        };
        if let Err(e) = outcome {
            tracing::error!(error = %e, message = %id, "a job failed");
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            response.batch_item_failures.push(failure);
        }
    }
    response
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
                    None,
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
    pub async fn resume(&self, store: &dyn Store) -> Result<usize> {
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
