//! Learner routes: redeem a key, list assignments, launch one.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiJson, ApiPath, ApiQuery};
use super::openapi::errors;
use super::views::{AssignmentView, LaunchedView, PageView};
use super::{ClientAddress, PageQuery, RedemptionState};
use crate::error::{ErrorCode, Result};
use crate::identity::Principal;
use crate::ops::assignments;
use crate::ops::launch as launching;
use crate::ops::redeem::{self, Redeemed, Redeemer};

pub(super) fn routes() -> OpenApiRouter<RedemptionState> {
    OpenApiRouter::new()
        .routes(routes!(redeem))
        .routes(routes!(list_assignments))
        .routes(routes!(launch))
        .routes(routes!(jwks))
}

/// The key as the learner typed it: any case, dashes and spaces ignored.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RedeemBody {
    key: String,
}

errors!(RedeemErrors, |e| e
    .authenticated()
    .json_body()
    .with(&[ErrorCode::KeyMistyped])
    .with(&[ErrorCode::PoolNotActive])
    .with(&[ErrorCode::InvalidKey])
    .with(&[
        ErrorCode::KeyAlreadyRedeemed,
        ErrorCode::KeyCancelled,
        ErrorCode::RedemptionContended
    ])
    .with(&[ErrorCode::Throttled]));
errors!(ListErrors, |e| e.authenticated().paged());
errors!(JwksErrors, |e| e.with(&[ErrorCode::InternalError]));
errors!(LaunchErrors, |e| e
    .authenticated()
    .path()
    .with(&[ErrorCode::AssignmentExpired, ErrorCode::AssignmentCancelled])
    .with(&[ErrorCode::AssignmentNotFound]));

/// Redeems a key for a course assignment; a repeat by the same learner answers the same one.
#[utoipa::path(post, path = "/v1/redemptions", tag = "learner", security(("bearer" = [])),
    request_body = RedeemBody,
    responses(
        (status = 201, description = "a new assignment", body = AssignmentView),
        (status = 200, description = "the assignment this learner already has from this key or pool", body = AssignmentView),
        RedeemErrors,
    ))]

async fn redeem(
    State(state): State<RedemptionState>,
    principal: Principal,
    ClientAddress(address): ClientAddress,
    ApiJson(body): ApiJson<RedeemBody>,
) -> Result<impl IntoResponse> {
    let who = Redeemer {
        learner: principal.learner()?,
        address,
    };
    let now = state.clock.now();
    let store = state.store.as_ref();
    let (status, assignment) =
        match redeem::redeem(store, &state.settings, &state.pools, &who, &body.key, now).await? {
            Redeemed::Created(a) => (StatusCode::CREATED, a),
            Redeemed::Existing(a) => (StatusCode::OK, a),
        };
    Ok((status, Json(AssignmentView::new(assignment, now))))
}

/// The learner's assignments.
#[utoipa::path(get, path = "/v1/me/assignments", tag = "learner", security(("bearer" = [])),
    params(PageQuery),
    responses((status = 200, description = "a page of assignments", body = PageView<AssignmentView>), ListErrors))]

async fn list_assignments(
    State(state): State<RedemptionState>,
    principal: Principal,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> Result<impl IntoResponse> {
    let learner = principal.learner()?;
    let now = state.clock.now();
    let page =
        assignments::list_assignments(state.store.as_ref(), learner, page.cursor(), page.size()?)
            .await?;
    Ok(Json(PageView::of(page, |a| AssignmentView::new(a, now))))
}

/// Launches the course of a valid assignment (any number of times).
#[utoipa::path(post, path = "/v1/me/assignments/{assignment_id}/launch", tag = "learner", security(("bearer" = [])),
    params(("assignment_id" = String, Path, description = "the assignment")),
    responses((status = 200, description = "the assignment, its launch counted, and the way into its course with a signed token when the course has a launch URL", body = LaunchedView), LaunchErrors))]
async fn launch(
    State(state): State<RedemptionState>,
    principal: Principal,
    ApiPath(assignment_id): ApiPath<String>,
) -> Result<impl IntoResponse> {
    let learner = principal.learner()?;
    let now = state.clock.now();
    let launched = launching::launch(
        state.store.as_ref(),
        state.launch.as_ref(),
        learner,
        &assignment_id,
        now,
    )
    .await?;
    Ok(Json(LaunchedView::new(launched, now)))
}

/// The public keys that check launch tokens (a JWK set; two during a rotation); needs no token.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "learner",
    responses(
        (status = 200, description = "the public keys of launch tokens, as a JWK set", content_type = "application/json", body = Object),
        JwksErrors,
    ))]
async fn jwks(State(state): State<RedemptionState>) -> Result<impl IntoResponse> {
    let keys = state.launch.keys().await?;
    Ok((
        // Keys change only in a rotation, which publishes the new one a day ahead.
        [(axum::http::header::CACHE_CONTROL, "public, max-age=300")],
        Json(keys),
    ))
}
