//! Events that are not HTTP requests (queue batches, the schedule), which lambda_http's
//! pass-through hands to a function's router as `POST /events`: their JSON goes to the events
//! edge (`crate::events`), which reads it. Refused for real HTTP requests.

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};

use super::{ExportState, KeyGenerationState, MAX_BODY_BYTES};
use crate::error::{Error, Missing, Result};
use crate::events;

/// The export function's events: its job queue's batches and the daily schedule.
pub fn export_event_routes() -> Router<ExportState> {
    Router::new().route("/events", post(export_event))
}

/// The key-generation function's events: its job queue's batches.
pub fn key_generation_event_routes() -> Router<KeyGenerationState> {
    Router::new().route("/events", post(key_generation_event))
}

async fn export_event(State(state): State<ExportState>, request: Request) -> Result<Response> {
    let event = pass_through(request).await?;
    let answer = events::export(
        state.store.as_ref(),
        state.objects.as_ref(),
        state.jobs.as_ref(),
        state.clock.as_ref(),
        event,
    )
    .await?;
    Ok(Json(answer).into_response())
}

async fn key_generation_event(
    State(state): State<KeyGenerationState>,
    request: Request,
) -> Result<Response> {
    let event = pass_through(request).await?;
    let answer = events::key_generation(
        state.store.as_ref(),
        state.jobs.as_ref(),
        state.clock.as_ref(),
        event,
    )
    .await?;
    Ok(Json(answer).into_response())
}

/// The event's JSON, if the request came through the pass-through and not over HTTP.
async fn pass_through(request: Request) -> Result<serde_json::Value> {
    use lambda_http::request::RequestContext;
    if !matches!(
        request.extensions().get::<RequestContext>(),
        Some(RequestContext::PassThrough)
    ) {
        return Err(Error::NotFound(Missing::Route));
    }
    let body = axum::body::to_bytes(request.into_body(), MAX_BODY_BYTES)
        .await
        .map_err(|_| super::error::payload_too_large())?;
    Ok(serde_json::from_slice(&body)
        .map_err(|e| anyhow::anyhow!("an event that is not JSON: {e}"))?)
}
