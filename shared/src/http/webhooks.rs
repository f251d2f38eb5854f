//! Webhook routes (the pool-admin function): an organization's endpoints, their secrets, a
//! test event, and the delivery log with redelivery.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiJson, ApiPath, ApiQuery};
use super::openapi::errors;
use super::views::PageView;
use super::{PageQuery, PoolAdminState};
use crate::domain::Caller;
use crate::domain::{Delivery, Webhook};
use crate::error::{ErrorCode, Result};
use crate::identity::Principal;
use crate::ops::webhooks::{self, WebhookInput, WebhookPatch};
use crate::time;

pub(super) fn routes() -> OpenApiRouter<PoolAdminState> {
    OpenApiRouter::new()
        .routes(routes!(create_webhook, list_webhooks))
        .routes(routes!(get_webhook, update_webhook, delete_webhook))
        .routes(routes!(rotate_secret))
        .routes(routes!(send_test))
        .routes(routes!(list_deliveries))
        .routes(routes!(retry_delivery))
}

/// An endpoint, as its admins see it (never its secrets).
#[derive(Serialize, ToSchema)]
pub struct WebhookView {
    #[schema(value_type = String)]
    pub webhook_id: crate::domain::WebhookId,
    pub url: String,
    pub events: Vec<String>,
    pub description: Option<String>,
    pub enabled: bool,
    /// Why KeyPool disabled it (every delivery failing for five days), when it did.
    pub disabled_reason: Option<String>,
    /// Since when every attempt has failed, while they do.
    #[schema(value_type = Option<String>, format = DateTime)]
    #[serde(with = "time::rfc3339::option")]
    pub failing_since: Option<DateTime<Utc>>,
    #[schema(value_type = String, format = DateTime)]
    #[serde(with = "time::rfc3339")]
    pub created_at: DateTime<Utc>,
}

impl From<Webhook> for WebhookView {
    fn from(w: Webhook) -> Self {
        Self {
            webhook_id: w.webhook_id,
            url: w.url,
            events: w.events.iter().map(|e| e.as_str().to_string()).collect(),
            description: w.description,
            enabled: w.enabled,
            disabled_reason: w.disabled_reason,
            failing_since: w.failing_since,
            created_at: w.created_at,
        }
    }
}

/// An endpoint with its new secret (`whsec_…`), shown this once.
#[derive(Serialize, ToSchema)]
pub struct WebhookSecretView {
    #[serde(flatten)]
    pub webhook: WebhookView,
    /// The signing secret, in Standard Webhooks' form; KeyPool never shows it again.
    pub secret: String,
}

/// One event's delivery to an endpoint.
#[derive(Serialize, ToSchema)]
pub struct DeliveryView {
    #[schema(value_type = String)]
    pub delivery_id: crate::domain::DeliveryId,
    /// The `webhook-id` of every attempt.
    #[schema(value_type = String)]
    pub event_id: crate::domain::EventId,
    #[serde(rename = "type")]
    pub kind: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub attempts: u32,
    pub last_status_code: Option<u16>,
    pub last_error: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    #[serde(with = "time::rfc3339::option")]
    pub last_attempt_at: Option<DateTime<Utc>>,
    #[schema(value_type = Option<String>, format = DateTime)]
    #[serde(with = "time::rfc3339::option")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    #[schema(value_type = String, format = DateTime)]
    #[serde(with = "time::rfc3339")]
    pub created_at: DateTime<Utc>,
}

impl From<Delivery> for DeliveryView {
    fn from(d: Delivery) -> Self {
        Self {
            delivery_id: d.delivery_id,
            event_id: d.event_id,
            kind: d.kind.as_str().to_string(),
            status: d.status.as_str().to_string(),
            attempts: d.attempts,
            last_status_code: d.last_status_code,
            last_error: d.last_error,
            last_attempt_at: d.last_attempt_at,
            next_attempt_at: d.next_attempt_at,
            created_at: d.created_at,
        }
    }
}

/// The organization's endpoints.
#[derive(Serialize, ToSchema)]
pub struct WebhooksView {
    pub items: Vec<WebhookView>,
}

errors!(CreateErrors, |e| e
    .authenticated()
    .json_body()
    .with(&[ErrorCode::InvalidInput, ErrorCode::TooManyWebhooks]));
errors!(ListErrors, |e| e.authenticated());
errors!(OneErrors, |e| e
    .authenticated()
    .path()
    .with(&[ErrorCode::WebhookNotFound]));
errors!(UpdateErrors, |e| e.authenticated().path().json_body().with(
    &[
        ErrorCode::InvalidInput,
        ErrorCode::WebhookNotFound,
        ErrorCode::ConcurrentUpdate
    ]
));
errors!(RotateErrors, |e| e.authenticated().path().with(&[
    ErrorCode::WebhookNotFound,
    ErrorCode::ConcurrentUpdate
]));
errors!(DeliveriesErrors, |e| e
    .authenticated()
    .path()
    .paged()
    .with(&[ErrorCode::WebhookNotFound]));
errors!(RetryErrors, |e| e.authenticated().path().with(&[
    ErrorCode::WebhookNotFound,
    ErrorCode::DeliveryNotFound
]));

/// Adds an endpoint: its URL must be https and resolve to public addresses only. Answers its
/// signing secret, this once.
#[utoipa::path(post, path = "/v1/webhooks", tag = "admin", security(("bearer" = [])),
    request_body = WebhookInput,
    responses((status = 201, description = "the endpoint, with its secret", body = WebhookSecretView), CreateErrors))]
async fn create_webhook(
    State(state): State<PoolAdminState>,
    caller: Caller,
    ApiJson(input): ApiJson<WebhookInput>,
) -> Result<impl IntoResponse> {
    let (webhook, secret) = webhooks::create(
        state.store.as_ref(),
        &state.webhooks.sender,
        &caller,
        input,
        state.clock.now(),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(WebhookSecretView {
            webhook: webhook.into(),
            secret,
        }),
    ))
}

/// The organization's endpoints.
#[utoipa::path(get, path = "/v1/webhooks", tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "the endpoints", body = WebhooksView), ListErrors))]
async fn list_webhooks(
    State(state): State<PoolAdminState>,
    principal: Principal,
) -> Result<impl IntoResponse> {
    let items = webhooks::list(state.store.as_ref(), principal.org()?).await?;
    Ok(Json(WebhooksView {
        items: items.into_iter().map(WebhookView::from).collect(),
    }))
}

/// One endpoint.
#[utoipa::path(get, path = "/v1/webhooks/{webhook_id}", tag = "admin", security(("bearer" = [])),
    params(("webhook_id" = String, Path, description = "the endpoint")),
    responses((status = 200, description = "the endpoint", body = WebhookView), OneErrors))]
async fn get_webhook(
    State(state): State<PoolAdminState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<impl IntoResponse> {
    let webhook = webhooks::get(state.store.as_ref(), principal.org()?, &id).await?;
    Ok(Json(WebhookView::from(webhook)))
}

/// Changes an endpoint's URL, events, description, or turns it off and on; turning it on again
/// forgets why KeyPool disabled it.
#[utoipa::path(patch, path = "/v1/webhooks/{webhook_id}", tag = "admin", security(("bearer" = [])),
    params(("webhook_id" = String, Path, description = "the endpoint")),
    request_body = WebhookPatch,
    responses((status = 200, description = "the endpoint", body = WebhookView), UpdateErrors))]
async fn update_webhook(
    State(state): State<PoolAdminState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(patch): ApiJson<WebhookPatch>,
) -> Result<impl IntoResponse> {
    let webhook = webhooks::update(
        state.store.as_ref(),
        &state.webhooks.sender,
        &caller,
        &id,
        patch,
        state.clock.now(),
    )
    .await?;
    Ok(Json(WebhookView::from(webhook)))
}

/// Removes an endpoint; its waiting deliveries are abandoned.
#[utoipa::path(delete, path = "/v1/webhooks/{webhook_id}", tag = "admin", security(("bearer" = [])),
    params(("webhook_id" = String, Path, description = "the endpoint")),
    responses((status = 204, description = "removed"), OneErrors))]
async fn delete_webhook(
    State(state): State<PoolAdminState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<impl IntoResponse> {
    webhooks::delete(state.store.as_ref(), &caller, &id, state.clock.now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Makes a new signing secret, answered this once; the one before keeps signing beside it for
/// 24 hours, so receivers can switch without missing a delivery.
#[utoipa::path(post, path = "/v1/webhooks/{webhook_id}/secret", tag = "admin", security(("bearer" = [])),
    params(("webhook_id" = String, Path, description = "the endpoint")),
    responses((status = 200, description = "the endpoint, with its new secret", body = WebhookSecretView), RotateErrors))]
async fn rotate_secret(
    State(state): State<PoolAdminState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<impl IntoResponse> {
    let (webhook, secret) =
        webhooks::rotate_secret(state.store.as_ref(), &caller, &id, state.clock.now()).await?;
    Ok(Json(WebhookSecretView {
        webhook: webhook.into(),
        secret,
    }))
}

/// Sends a `webhook.test` event to the endpoint now.
#[utoipa::path(post, path = "/v1/webhooks/{webhook_id}/test", tag = "admin", security(("bearer" = [])),
    params(("webhook_id" = String, Path, description = "the endpoint")),
    responses((status = 202, description = "the test event's delivery, on its way", body = DeliveryView), OneErrors))]
async fn send_test(
    State(state): State<PoolAdminState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<impl IntoResponse> {
    let delivery = webhooks::send_test(
        state.store.as_ref(),
        state.webhooks.deliveries.as_ref(),
        &caller,
        &id,
        state.clock.now(),
    )
    .await?;
    Ok((StatusCode::ACCEPTED, Json(DeliveryView::from(delivery))))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct DeliveriesQuery {
    /// `pending`, `delivered` or `failed`; all when absent.
    status: Option<String>,
    #[serde(flatten)]
    #[param(ignore)]
    page: PageQuery,
}

/// The endpoint's deliveries, newest first.
#[utoipa::path(get, path = "/v1/webhooks/{webhook_id}/deliveries", tag = "admin", security(("bearer" = [])),
    params(("webhook_id" = String, Path, description = "the endpoint"), DeliveriesQuery, PageQuery),
    responses((status = 200, description = "a page of deliveries", body = PageView<DeliveryView>), DeliveriesErrors))]
async fn list_deliveries(
    State(state): State<PoolAdminState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<DeliveriesQuery>,
) -> Result<impl IntoResponse> {
    let page = webhooks::deliveries(
        state.store.as_ref(),
        principal.org()?,
        &id,
        q.status.as_deref(),
        q.page.cursor(),
        q.page.size()?,
    )
    .await?;
    Ok(Json(PageView::of(page, DeliveryView::from)))
}

/// Sends a delivery again now, whatever became of it.
#[utoipa::path(post, path = "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/retry", tag = "admin", security(("bearer" = [])),
    params(("webhook_id" = String, Path, description = "the endpoint"), ("delivery_id" = String, Path, description = "the delivery")),
    responses((status = 202, description = "the delivery, on its way again", body = DeliveryView), RetryErrors))]
async fn retry_delivery(
    State(state): State<PoolAdminState>,
    caller: Caller,
    ApiPath((id, delivery_id)): ApiPath<(String, String)>,
) -> Result<impl IntoResponse> {
    let delivery = webhooks::retry(
        state.store.as_ref(),
        state.webhooks.deliveries.as_ref(),
        &caller,
        &id,
        &delivery_id,
        state.clock.now(),
    )
    .await?;
    Ok((StatusCode::ACCEPTED, Json(DeliveryView::from(delivery))))
}
