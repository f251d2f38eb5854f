//! Webhook events from the assignments table's stream: a new assignment is
//! `assignment.created`, one just cancelled `assignment.cancelled`, a launch
//! `assignment.launched`. Each event's id is derived from what happened (the assignment, and
//! the launch's count), so a record delivered again makes the same event, whose deliveries
//! exist already. Nothing is added to the redemption's transaction: the stream carries it.

use aws_lambda_events::event::dynamodb::{Event as StreamEvent, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};

use crate::domain::{
    Assignment, Event, EventId, EventType, ExportStatus, Job, JobStatus, derived_uuid,
};
use crate::error::Result;
use crate::http::views::{AssignmentEventView, ExportView, JobView};
use crate::identity::OrgId;
use crate::ops::bill::AssignmentChange;
use crate::ops::webhooks;
use crate::store::{Exports, KeyJobs, Webhooks};
use crate::time::Timestamp;
use crate::webhooks::DeliveryQueue;

/// The event's data: the assignment as the API shows it, with its learner.
fn data_of(assignment: &Assignment, at: crate::time::Timestamp) -> serde_json::Value {
    serde_json::to_value(AssignmentEventView::new(assignment.clone(), at))
        .unwrap_or_else(|_| serde_json::json!({}))
}

fn event(kind: EventType, at: crate::time::Timestamp, what: &str, a: &Assignment) -> Event {
    derived_event(kind, &a.org, what, at, data_of(a, at))
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

/// A background job's end as an event, once it is done or failed: `job.finished` for a
/// generation or an import, `export.finished` for an export. Nothing for a job still running;
/// the same event however often it is told.
pub async fn job_finished<S: Webhooks + KeyJobs + Exports + ?Sized>(
    store: &S,
    queue: &dyn DeliveryQueue,
    job: &Job,
) -> Result<()> {
    match job {
        Job::Generate { .. } => key_job_finished(store, queue, job).await,
        Job::Export { .. } => export_finished(store, queue, job).await,
    }
}

/// `job.finished` for a generation or an import that has ended: the job as the API shows it,
/// with its counts. Nothing for any other job.
pub async fn key_job_finished<S: Webhooks + KeyJobs + ?Sized>(
    store: &S,
    queue: &dyn DeliveryQueue,
    job: &Job,
) -> Result<()> {
    let Job::Generate { org, job_id } = job else {
        return Ok(());
    };
    let Some(j) = store.get_key_job(org, job_id).await? else {
        return Ok(());
    };
    if !matches!(j.status, JobStatus::Done | JobStatus::Failed) {
        return Ok(());
    }
    let at = j.updated_at;
    let data = serde_json::to_value(JobView::from(j))
        .map_err(|e| anyhow::anyhow!("a job as an event: {e}"))?;
    let event = derived_event(EventType::JobFinished, org, &job_id.to_string(), at, data);
    webhooks::emit(store, queue, &[event]).await.map(|_| ())
}

/// `export.finished` for an export that has ended: the export as the API shows it, with its
/// rows and without a link to its file. Nothing for any other job.
pub async fn export_finished<S: Webhooks + Exports + ?Sized>(
    store: &S,
    queue: &dyn DeliveryQueue,
    job: &Job,
) -> Result<()> {
    let Job::Export { org, export_id } = job else {
        return Ok(());
    };
    let Some(e) = store.get_export(org, export_id).await? else {
        return Ok(());
    };
    let (ExportStatus::Done | ExportStatus::Failed, Some(at)) = (e.status, e.finished_at) else {
        return Ok(());
    };
    let mut data = serde_json::to_value(ExportView::new(e, None))
        .map_err(|e| anyhow::anyhow!("an export as an event: {e}"))?;
    if let Some(view) = data.as_object_mut() {
        view.remove("url");
    }
    let event = derived_event(
        EventType::ExportFinished,
        org,
        &export_id.to_string(),
        at,
        data,
    );
    webhooks::emit(store, queue, &[event]).await.map(|_| ())
}

/// An event whose id is derived from what happened (`what`, and when), so telling it again
/// makes the same event.
fn derived_event(
    kind: EventType,
    org: &OrgId,
    id: &str,
    at: Timestamp,
    data: serde_json::Value,
) -> Event {
    Event {
        id: EventId(derived_uuid(at, &format!("{}/{id}", kind.as_str()))),
        kind,
        created_at: at,
        organization: org.clone(),
        data,
    }
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

/// The webhooks function's events, told apart by their shape: the assignments stream's
/// batches (fanned out), the delivery queue's batches (each delivery attempted, and queued
/// again for its next attempt), and the sweep's schedule (deliveries due whose message is
/// later than SQS's 15 minutes, or lost, queued again). Answers what Lambda expects of each.
pub async fn function(
    store: &dyn Webhooks,
    sender: &crate::webhooks::Sender,
    queue: &crate::webhooks::SqsDeliveries,
    clock: &dyn crate::time::Clock,
    first_retry: chrono::Duration,
    event: serde_json::Value,
) -> Result<serde_json::Value> {
    use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
    let source = event["Records"][0]["eventSource"]
        .as_str()
        .unwrap_or_default();
    if source == "aws:dynamodb" {
        let batch: StreamEvent = serde_json::from_value(event)
            .map_err(|e| anyhow::anyhow!("a stream batch that does not parse: {e}"))?;
        let answer = fan_out(store, queue, &batch).await?;
        return Ok(serde_json::to_value(answer).map_err(anyhow::Error::from)?);
    }
    if source == "aws:sqs" {
        let batch: SqsEvent = serde_json::from_value(event)
            .map_err(|e| anyhow::anyhow!("an SQS batch that does not parse: {e}"))?;
        // Each delivery on its own: one slow endpoint holds up no other message of the batch
        // beyond its own 10 seconds.
        let attempts = batch.records.iter().map(|message| async move {
            let parsed: Option<crate::webhooks::DeliveryRef> = message
                .body
                .as_deref()
                .and_then(|b| serde_json::from_str(b).ok());
            let Some(delivery) = parsed else {
                tracing::error!(message = ?message.message_id, "a delivery message that does not parse is dropped");
                return None;
            };
            let now = clock.now();
            let turn = webhooks::attempt(
                store,
                sender,
                &delivery.webhook_id,
                &delivery.delivery_id,
                now,
                first_retry,
            )
            .await;
            let next = match turn {
                Ok(webhooks::Turn::Attempted(d)) => d.next_attempt_at,
                Ok(webhooks::Turn::NotDue(at)) => Some(at),
                Ok(webhooks::Turn::Done) => None,
                Err(e) => {
                    tracing::error!(error = %e, "a webhook delivery failed to run; SQS retries it");
                    return message.message_id.clone();
                }
            };
            if let Some(at) = next {
                let wait = (at - now).to_std().unwrap_or_default();
                if let Err(e) = queue.submit_after(delivery, wait).await {
                    tracing::error!(error = %e, "queueing a delivery's next attempt failed; the sweep finds it");
                }
            }
            None
        });
        let failed = futures_util::future::join_all(attempts).await;
        let mut answer = SqsBatchResponse::default();
        for id in failed.into_iter().flatten() {
            let mut item = BatchItemFailure::default();
            item.item_identifier = id;
            answer.batch_item_failures.push(item);
        }
        return Ok(serde_json::to_value(answer).map_err(anyhow::Error::from)?);
    }
    if event["detail-type"] == "Scheduled Event" {
        // Due for two minutes and still waiting: its message was lost, or its next attempt
        // was further off than SQS delays a message.
        let overdue = clock.now() - chrono::Duration::minutes(2);
        let due = store.due_deliveries(overdue, 1000).await?;
        crate::webhooks::DeliveryQueue::submit(queue, &due).await?;
        return Ok(serde_json::json!({ "queued": due.len() }));
    }
    Err(anyhow::anyhow!("the webhooks function does not handle this event").into())
}
