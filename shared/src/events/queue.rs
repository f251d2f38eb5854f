//! Job queues (SQS): a batch of messages in, each read into a `Job` and run in turn; the
//! messages whose jobs failed out, for retry (ReportBatchItemFailures), and then the
//! dead-letter queue.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};

use crate::domain::Job;
use crate::error::{Error, Result};

/// Runs each message's job in turn with `run`, and answers with the messages of the jobs that
/// failed (a message that is no job fails too).
pub(super) async fn run_batch<F, Fut>(batch: SqsEvent, mut run: F) -> SqsBatchResponse
where
    F: FnMut(Job) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let mut response = SqsBatchResponse::default();
    for message in batch.records {
        let id = message.message_id.clone().unwrap_or_default();
        let outcome = match serde_json::from_str::<Job>(message.body.as_deref().unwrap_or("")) {
            Ok(job) => run(job).await,
            Err(e) => Err(Error::Internal(anyhow::anyhow!("a job message: {e}"))),
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
