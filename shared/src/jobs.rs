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
use crate::pools::ExportId;
use crate::store::Store;
use crate::time::Clock;

/// One unit of background work; a job may be delivered more than once and must be idempotent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Job {
    /// Write an export's file.
    Export { org: OrgId, export_id: ExportId },
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

/// Runs one job to its end.
pub async fn run(
    store: &dyn Store,
    objects: &dyn ObjectStore,
    clock: &dyn Clock,
    job: &Job,
) -> Result<()> {
    match job {
        Job::Export { org, export_id } => {
            crate::export::run(store, objects, clock, org, export_id).await?;
        }
    }
    Ok(())
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
        let worker = tokio::spawn(async move {
            while let Some(job) = receiver.recv().await {
                if let Err(e) = run(store.as_ref(), objects.as_ref(), clock.as_ref(), &job).await {
                    tracing::error!(error = %e, job = ?job, "a job failed");
                }
            }
        });
        (Self { sender }, worker)
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
