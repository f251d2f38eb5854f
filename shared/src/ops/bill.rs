//! Billing: one invoice line per redemption and one credit per cancellation, each exactly once,
//! read from the assignments table's stream.
//!
//! The stream delivers at least once, in order per item. A line is keyed by its assignment and
//! kind and written only if absent, in the same transaction as the totals it adds to, so a
//! second delivery finds the line and changes nothing. A batch's lines are written together
//! (the ledger writes them in chunks, one transaction each, with one totals update per month
//! and chunk), in the order of their records.

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use serde_dynamo::AttributeValue;

use crate::domain::{Assignment, InvoiceLine};
use crate::error::{Error, Result};
use crate::store::{Ledger, RecordedLines};

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

/// Bills a batch of stream records in order: the lines of the records up to the first that does
/// not parse, written by the ledger in chunks. Reports the first record not billed (the first of
/// the chunk that failed, or the record that does not parse), so the event source mapping
/// retries from there: records before it are billed, and it and those after are not, or are
/// billed already, which a retry finds and does not count again.
pub async fn bill(ledger: &dyn Ledger, event: &Event) -> Result<DynamoDbEventResponse> {
    let mut lines = Vec::new();
    // The record each line comes from, by its index in the batch.
    let mut sources = Vec::new();
    let mut unparsed = None;
    for (i, record) in event.records.iter().enumerate() {
        match line_of(record) {
            Ok(Some(line)) => {
                lines.push(line);
                sources.push(i);
            }
            Ok(None) => {}
            Err(e) => {
                unparsed = Some((i, e));
                break;
            }
        }
    }
    let recorded = if lines.is_empty() {
        RecordedLines::default()
    } else {
        ledger.record_invoice_lines(&lines).await
    };
    let billed = recorded.settled.iter().filter(|&&new| new).count();
    let failed = match recorded.failure {
        // A ledger that says it failed after settling every line is not believed: the first
        // record is retried, which is safe as billing is idempotent.
        Some(error) => Some((
            sources.get(recorded.settled.len()).copied().unwrap_or(0),
            error,
        )),
        None => unparsed,
    };
    let mut response = DynamoDbEventResponse::default();
    if let Some((index, error)) = failed {
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
        billed,
        failed = response.batch_item_failures.len(),
        "stream batch billed"
    );
    Ok(response)
}
