//! The billing function's events: batches of the assignments table's stream records
//! (DynamoDB Streams, as Lambda's event source mapping and the local follower deliver them),
//! read into `AssignmentChange`s for `ops::bill`, answered with the first record not billed
//! (ReportBatchItemFailures), so that Lambda retries from there.

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use serde_dynamo::AttributeValue;

use crate::domain::{Assignment, InvoiceLine};
use crate::error::{Error, Result};
use crate::ops::bill::{self, AssignmentChange};
use crate::store::Ledger;

/// Whether a stream image is an assignment's, by its `entity` attribute.
fn is_assignment(image: &serde_dynamo::Item) -> bool {
    matches!(image.get(crate::schema::ENTITY), Some(AttributeValue::S(e)) if e == "assignment")
}

fn assignment_of(image: &serde_dynamo::Item) -> Result<Assignment> {
    serde_dynamo::from_item(image.clone()).map_err(|e| {
        Error::Internal(anyhow::anyhow!(
            "an assignment image in the stream does not parse: {e}"
        ))
    })
}

/// What a stream record says happened; an error for an assignment's image that cannot be
/// read.
pub fn change_of(record: &EventRecord) -> Result<AssignmentChange> {
    let change = &record.change;
    Ok(match record.event_name.as_str() {
        "INSERT" if is_assignment(&change.new_image) => {
            AssignmentChange::Created(assignment_of(&change.new_image)?)
        }
        "MODIFY" if is_assignment(&change.new_image) => {
            let after = assignment_of(&change.new_image)?;
            let before = if is_assignment(&change.old_image) {
                Some(assignment_of(&change.old_image)?)
            } else {
                None
            };
            AssignmentChange::Changed { before, after }
        }
        _ => AssignmentChange::Other,
    })
}

/// What a stream record bills: a line for a new assignment, a credit for one that was just
/// cancelled, nothing for launches, expiries (TTL removals) or anything else.
pub fn line_of(record: &EventRecord) -> Result<Option<InvoiceLine>> {
    change_of(record).map(|change| change.line())
}

/// Bills a batch of stream records in order: the changes of the records up to the first that
/// cannot be read. Reports the first record not billed (the first of the chunk that failed, or
/// the record that cannot be read) by its sequence number, so the event source mapping retries
/// from there; an error when that record has no sequence number.
pub async fn bill(ledger: &dyn Ledger, event: &Event) -> Result<DynamoDbEventResponse> {
    let mut changes = Vec::with_capacity(event.records.len());
    let mut unread = None;
    for (i, record) in event.records.iter().enumerate() {
        match change_of(record) {
            Ok(change) => changes.push(change),
            Err(e) => {
                unread = Some((i, e));
                break;
            }
        }
    }
    let billed = bill::bill(ledger, &changes).await;
    let mut response = DynamoDbEventResponse::default();
    if let Some((index, error)) = billed.failed.or(unread) {
        let sequence = event
            .records
            .get(index)
            .and_then(|r| r.change.sequence_number.clone())
            .ok_or_else(|| {
                anyhow::anyhow!("a stream record without a sequence number failed: {error}")
            })?;
        tracing::error!(error = %error, sequence = %sequence, "billing a stream record failed");
        let mut failure = DynamoDbBatchItemFailure::default();
        failure.item_identifier = Some(sequence);
        response.batch_item_failures.push(failure);
    }
    tracing::info!(
        records = event.records.len(),
        billed = billed.written,
        failed = response.batch_item_failures.len(),
        "stream batch billed"
    );
    Ok(response)
}
