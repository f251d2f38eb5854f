//! Billing: one invoice line per redemption and one credit per cancellation, each exactly once,
//! read from the assignments table's stream.
//!
//! The stream delivers at least once, in order per item. A line is keyed by its assignment and
//! kind and written with its month's totals in one transaction, so a second delivery finds the
//! line and changes nothing.

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use serde_dynamo::AttributeValue;

use crate::domain::{Assignment, InvoiceLine};
use crate::error::{Error, Result};
use crate::store::Ledger;

/// Whether a record came from the assignments table's stream as an assignment's image.
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

/// What a stream record bills: a line for a new assignment, a credit for one that was just
/// cancelled, nothing for launches, expiries (TTL removals) or anything else.
pub fn line_of(record: &EventRecord) -> Result<Option<InvoiceLine>> {
    let change = &record.change;
    match record.event_name.as_str() {
        "INSERT" if is_assignment(&change.new_image) => Ok(Some(InvoiceLine::redemption(
            &assignment_of(&change.new_image)?,
        ))),
        "MODIFY" if is_assignment(&change.new_image) => {
            let new = assignment_of(&change.new_image)?;
            let was_cancelled = is_assignment(&change.old_image)
                && assignment_of(&change.old_image)?.cancelled_at.is_some();
            match new.cancelled_at {
                Some(at) if !was_cancelled => Ok(Some(InvoiceLine::credit(&new, at))),
                _ => Ok(None),
            }
        }
        _ => Ok(None),
    }
}

/// Bills a batch of stream records in order, one at a time. At the first record that fails,
/// stops and reports it, so the event source mapping retries from there: records before it are
/// billed, and records after it have not been looked at.
pub async fn bill(ledger: &dyn Ledger, event: &Event) -> Result<DynamoDbEventResponse> {
    let mut response = DynamoDbEventResponse::default();
    let mut billed = 0usize;
    for record in &event.records {
        let outcome = match line_of(record) {
            Ok(Some(line)) => ledger.record_invoice_line(&line).await.map(|new| {
                billed += usize::from(new);
            }),
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(error) = outcome {
            let sequence = record.change.sequence_number.clone().ok_or_else(|| {
                anyhow::anyhow!("a stream record without a sequence number failed: {error}")
            })?;
            tracing::error!(error = %error, sequence = %sequence, "billing a stream record failed");
            let mut failure = DynamoDbBatchItemFailure::default();
            failure.item_identifier = Some(sequence);
            response.batch_item_failures.push(failure);
            break;
        }
    }
    tracing::info!(
        records = event.records.len(),
        billed,
        failed = response.batch_item_failures.len(),
        "stream batch billed"
    );
    Ok(response)
}
