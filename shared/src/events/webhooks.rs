//! Webhook events from the assignments table's stream: a new assignment is
//! `assignment.created`, one just cancelled `assignment.cancelled`, a launch
//! `assignment.launched`. Each event's id is derived from what happened (the assignment, and
//! the launch's count), so a record delivered again makes the same event, whose deliveries
//! exist already. Nothing is added to the redemption's transaction: the stream carries it.

use aws_lambda_events::event::dynamodb::{Event as StreamEvent, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};

use crate::domain::{Assignment, Event, EventId, EventType, derived_uuid};
use crate::error::Result;
use crate::http::views::AssignmentView;
use crate::ops::bill::AssignmentChange;
use crate::ops::webhooks;
use crate::store::Webhooks;
use crate::webhooks::DeliveryQueue;

/// The event's data: the assignment as the API shows it, with its learner.
fn data_of(assignment: &Assignment, at: crate::time::Timestamp) -> serde_json::Value {
    let mut data = serde_json::to_value(AssignmentView::new(assignment.clone(), at))
        .unwrap_or_else(|_| serde_json::json!({}));
    data["learner"] = serde_json::json!(assignment.learner);
    data["organization"] = serde_json::json!(assignment.org);
    data
}

fn event(kind: EventType, at: crate::time::Timestamp, what: &str, a: &Assignment) -> Event {
    Event {
        id: EventId(derived_uuid(at, &format!("{}/{what}", kind.as_str()))),
        kind,
        created_at: at,
        organization: a.org.clone(),
        data: data_of(a, at),
    }
}

/// The webhook events of one stream record (none for most changes).
pub fn events_of(record: &EventRecord) -> Result<Vec<Event>> {
    Ok(match crate::events::billing::change_of(record)? {
        AssignmentChange::Created(a) => vec![event(
            EventType::AssignmentCreated,
            a.redeemed_at,
            &a.assignment_id.to_string(),
            &a,
        )],
        AssignmentChange::Changed { before, after } => {
            let mut events = Vec::new();
            if let Some(at) = after.cancelled_at
                && before.as_ref().is_none_or(|b| b.cancelled_at.is_none())
            {
                events.push(event(
                    EventType::AssignmentCancelled,
                    at,
                    &after.assignment_id.to_string(),
                    &after,
                ));
            }
            let launched = before.as_ref().map_or(0, |b| b.launch_count) < after.launch_count;
            if launched && let Some(at) = after.last_launched_at {
                events.push(event(
                    EventType::AssignmentLaunched,
                    at,
                    &format!("{}/{}", after.assignment_id, after.launch_count),
                    &after,
                ));
            }
            events
        }
        AssignmentChange::Other => Vec::new(),
    })
}

/// Fans a batch of stream records out to the endpoints that take their events; on failure,
/// reports the batch's first record (every fan-out is repeatable, so the whole batch goes
/// again).
pub async fn fan_out(
    store: &dyn Webhooks,
    queue: &dyn DeliveryQueue,
    batch: &StreamEvent,
) -> Result<DynamoDbEventResponse> {
    let mut events = Vec::new();
    let mut failure = None;
    for record in &batch.records {
        match events_of(record) {
            Ok(more) => events.extend(more),
            Err(e) => {
                failure = Some((record, e));
                break;
            }
        }
    }
    let mut response = DynamoDbEventResponse::default();
    match webhooks::emit(store, queue, &events).await {
        Ok(made) => tracing::debug!(
            records = batch.records.len(),
            deliveries = made,
            "stream batch fanned out"
        ),
        Err(e) => failure = failure.or(batch.records.first().map(|r| (r, e))),
    }
    if let Some((record, error)) = failure {
        tracing::error!(error = %error, "fanning a stream batch out to webhooks failed");
        let mut item = DynamoDbBatchItemFailure::default();
        item.item_identifier = record.change.sequence_number.clone();
        response.batch_item_failures.push(item);
    }
    Ok(response)
}
