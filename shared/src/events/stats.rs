//! The stats function's events: batches of the assignments table's stream records, read into
//! `Activity`s (a redemption, a launch, a cancellation) for `ops::stats::count`, answered with
//! the first record not counted (ReportBatchItemFailures), so that Lambda retries from there.

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};

use crate::domain::{Activity, Assignment, Happening};
use crate::error::Result;
use crate::ops::bill::AssignmentChange;
use crate::ops::stats;
use crate::store::ActivityCounts;

fn activity(a: &Assignment, happening: Happening, at: crate::time::Timestamp) -> Activity {
    Activity {
        assignment_id: a.assignment_id,
        org: a.org.clone(),
        pool_id: a.pool_id,
        happening,
        at,
    }
}

/// What a stream record counts: a redemption for a new assignment, a launch per launch it
/// records (each by its number, so a launch counts once), a cancellation for one just
/// cancelled; nothing for expiries (TTL removals) or anything else.
pub fn activities_of(record: &EventRecord) -> Result<Vec<Activity>> {
    Ok(match crate::events::billing::change_of(record)? {
        AssignmentChange::Created(a) => vec![activity(&a, Happening::Redeemed, a.redeemed_at)],
        AssignmentChange::Changed { before, after } => {
            let mut activities = Vec::new();
            let launches_before = before.as_ref().map_or(0, |b| b.launch_count);
            if let Some(at) = after.last_launched_at {
                for n in launches_before + 1..=after.launch_count {
                    activities.push(activity(&after, Happening::Launched(n), at));
                }
            }
            if let Some(at) = after.cancelled_at
                && before.as_ref().is_none_or(|b| b.cancelled_at.is_none())
            {
                activities.push(activity(&after, Happening::Cancelled, at));
            }
            activities
        }
        AssignmentChange::Other => Vec::new(),
    })
}

/// Counts a batch of stream records in order: the activities of the records up to the first
/// that cannot be read. Reports the first record not counted (the record of the first activity
/// not counted, or the record that cannot be read) by its sequence number, so the event source
/// mapping retries from there; an error when that record has no sequence number.
pub async fn count(store: &dyn ActivityCounts, event: &Event) -> Result<DynamoDbEventResponse> {
    let mut activities = Vec::with_capacity(event.records.len());
    // The record each activity comes from, by its index in the batch.
    let mut sources = Vec::with_capacity(event.records.len());
    let mut unread = None;
    for (i, record) in event.records.iter().enumerate() {
        match activities_of(record) {
            Ok(found) => {
                sources.extend(std::iter::repeat_n(i, found.len()));
                activities.extend(found);
            }
            Err(e) => {
                unread = Some((i, e));
                break;
            }
        }
    }
    let counted = stats::count(store, &activities).await;
    let failed = counted
        .failed
        .map(|(index, error)| (sources.get(index).copied().unwrap_or(0), error));
    let mut response = DynamoDbEventResponse::default();
    if let Some((index, error)) = failed.or(unread) {
        let sequence = event
            .records
            .get(index)
            .and_then(|r| r.change.sequence_number.clone())
            .ok_or_else(|| {
                anyhow::anyhow!("a stream record without a sequence number failed: {error}")
            })?;
        tracing::error!(error = %error, sequence = %sequence, "counting a stream record failed");
        let mut failure = DynamoDbBatchItemFailure::default();
        failure.item_identifier = Some(sequence);
        response.batch_item_failures.push(failure);
    }
    tracing::info!(
        records = event.records.len(),
        counted = counted.written,
        failed = response.batch_item_failures.len(),
        "stream batch counted"
    );
    Ok(response)
}
