//! Background jobs: work too long for a request (exports, large generations and imports). In
//! AWS a queue (SQS) delivers them to the function that runs them, with retries; locally a task
//! of the server runs them (`local::jobs`), and picks up unfinished ones after a restart.

use anyhow::Context as _;
use async_trait::async_trait;

use crate::domain::Job;
use crate::error::Result;

/// Hands jobs to whatever runs them.
#[async_trait]
pub trait Jobs: Send + Sync {
    /// Queues a job; it runs at least once after this returns.
    async fn submit(&self, job: &Job) -> Result<()>;

    /// Queues a job to run `after` from now, in case whoever is working on it now dies (an
    /// all-or-nothing paste answered at once). Without a queue (the local server) nothing is
    /// needed: the open-jobs registry resumes unfinished jobs at start.
    async fn submit_recovery(&self, job: &Job, after: std::time::Duration) -> Result<()> {
        let _ = (job, after);
        Ok(())
    }
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

    async fn submit_recovery(&self, job: &Job, after: std::time::Duration) -> Result<()> {
        let body = serde_json::to_string(job).context("serialising a job")?;
        // SQS delays a message by at most 15 minutes.
        let delay = after.as_secs().min(900) as i32;
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .delay_seconds(delay)
            .send()
            .await
            .context("queueing a job's recovery")?;
        Ok(())
    }
}
