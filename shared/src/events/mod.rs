//! Events that are not HTTP requests, at the edge: every wire format of them is read here and
//! nowhere else. Each function's events (`aws_lambda_events` types) become domain values (jobs
//! to run, a tick of the schedule, changes of assignments to bill), `ops` is called with those
//! alone, and the answer Lambda expects (`SqsBatchResponse`, `DynamoDbEventResponse`, both
//! reporting partial batch failures) is built here again.
//!
//! Events reach a function in one of two ways, by what else the function serves:
//! - a function that also serves HTTP (key-generation, export) gets them through
//!   `lambda_http::run`, which owns the binary's one handler: its pass-through hands any event
//!   that is not an API Gateway request to the router as `POST /events` (`http::events`), whose
//!   JSON body comes here (`key_generation`, `export`);
//! - a function that serves nothing else (billing, stats) gets them from `lambda_runtime::run`
//!   as a typed `LambdaEvent<Event>`, with no router between; the local stream follower calls
//!   the same `billing::bill` and `stats::count`.

pub mod billing;
mod queue;
pub mod stats;
pub mod webhooks;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::SqsEvent;

use crate::error::Result;
use crate::jobs::Jobs;
use crate::objects::ObjectStore;
use crate::ops::{export, key_jobs, schedule};
use crate::store::{Courses, Exports, KeyJobs, Keys, OpenJobs, Pools};
use crate::time::Clock;

/// The key-generation function's events: batches of job messages from its queue, each job
/// worked for at most `key_jobs::JOB_BUDGET` and queued again if unfinished, answered with the
/// messages to retry.
pub async fn key_generation<S: Pools + KeyJobs + crate::store::Webhooks + ?Sized>(
    store: &S,
    jobs: &dyn Jobs,
    clock: &dyn Clock,
    event: serde_json::Value,
) -> Result<serde_json::Value> {
    let batch: SqsEvent = serde_json::from_value(event)
        .map_err(|e| anyhow::anyhow!("a key-generation event that is not an SQS batch: {e}"))?;
    let response = queue::run_batch(batch, |job| async move {
        key_jobs::run_job(store, jobs, clock, &job, Some(key_jobs::JOB_BUDGET)).await?;
        // A finished job's end goes to webhooks; the webhooks function's sweep sends it.
        webhooks::key_job_finished(store, &crate::webhooks::Stored, &job).await
    })
    .await;
    Ok(serde_json::to_value(response).map_err(anyhow::Error::from)?)
}

/// The export function's events: batches of job messages from its queue (answered with the
/// messages to retry), or the schedule's tick (answered with how many exports it started).
pub async fn export<
    S: Courses + Pools + Keys + Exports + OpenJobs + crate::store::Webhooks + ?Sized,
>(
    store: &S,
    objects: &dyn ObjectStore,
    jobs: &dyn Jobs,
    clock: &dyn Clock,
    event: serde_json::Value,
) -> Result<serde_json::Value> {
    const WHAT: &str = "export event that is not an SQS batch or a schedule";
    if event.get("Records").is_some() {
        let batch: SqsEvent =
            serde_json::from_value(event).map_err(|e| anyhow::anyhow!("an {WHAT}: {e}"))?;
        let response = queue::run_batch(batch, |job| async move {
            export::run_job(store, objects, clock, &job).await?;
            webhooks::export_finished(store, &crate::webhooks::Stored, &job).await
        })
        .await;
        return Ok(serde_json::to_value(response).map_err(anyhow::Error::from)?);
    }
    let scheduled: EventBridgeEvent =
        serde_json::from_value(event).map_err(|e| anyhow::anyhow!("an {WHAT}: {e}"))?;
    if scheduled.detail_type != "Scheduled Event" {
        return Err(anyhow::anyhow!(
            "the export function does not handle {:?} events",
            scheduled.detail_type
        )
        .into());
    }
    // The schedule exports what changed up to now, by the function's clock.
    let started = schedule::schedule(store, jobs, clock.now()).await?;
    Ok(serde_json::json!({ "started": started }))
}
