//! The billing Lambda function: consumes the assignments table's stream.
//!
//! Invoice lines are built by their own issue. Until then no record may be acknowledged, or a
//! redemption would never be invoiced: every batch reports its first record as failed, so
//! Lambda keeps the whole batch on the stream for the real handler.

use aws_lambda_events::event::dynamodb::Event;
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use lambda_runtime::{Error, LambdaEvent, service_fn};

async fn handler(event: LambdaEvent<Event>) -> Result<DynamoDbEventResponse, Error> {
    let mut response = DynamoDbEventResponse::default();
    if let Some(first) = event.payload.records.first() {
        let mut failure = DynamoDbBatchItemFailure::default();
        failure.item_identifier = first.change.sequence_number.clone();
        response.batch_item_failures.push(failure);
        lambda_runtime::tracing::warn!(
            records = event.payload.records.len(),
            "billing is not built yet; the batch stays on the stream"
        );
    }
    Ok(response)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    lambda_runtime::run(service_fn(handler)).await
}
