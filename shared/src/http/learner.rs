//! Learner routes: redeem a key, list assignments, launch one.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::error::{ApiJson, ApiPath, ApiQuery};
use super::views::{AssignmentView, PageView};
use super::{ClientAddress, RedemptionState, page_size};
use crate::error::Result;
use crate::identity::Principal;
use crate::ops::assignments;
use crate::ops::redeem::{self, Redeemed, Redeemer};

pub(super) fn routes() -> Router<RedemptionState> {
    Router::new()
        .route("/v1/redemptions", post(redeem))
        .route("/v1/me/assignments", get(list_assignments))
        .route("/v1/me/assignments/{assignment_id}/launch", post(launch))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RedeemBody {
    key: String,
}

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
        match redeem::redeem(store, &state.settings, &who, &body.key, now).await? {
            Redeemed::Created(a) => (StatusCode::CREATED, a),
            Redeemed::Existing(a) => (StatusCode::OK, a),
        };
    Ok((status, Json(AssignmentView::new(assignment, now))))
}

#[derive(Deserialize)]
struct ListQuery {
    cursor: Option<String>,
    limit: Option<String>,
}

async fn list_assignments(
    State(state): State<RedemptionState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<impl IntoResponse> {
    let learner = principal.learner()?;
    let now = state.clock.now();
    let page = assignments::list_assignments(
        state.store.as_ref(),
        learner,
        q.cursor.as_deref(),
        page_size(q.limit.as_deref())?,
    )
    .await?;
    Ok(Json(PageView::of(page, |a| AssignmentView::new(a, now))))
}

async fn launch(
    State(state): State<RedemptionState>,
    principal: Principal,
    ApiPath(assignment_id): ApiPath<String>,
) -> Result<impl IntoResponse> {
    let learner = principal.learner()?;
    let now = state.clock.now();
    let assignment =
        assignments::launch(state.store.as_ref(), learner, &assignment_id, now).await?;
    Ok(Json(AssignmentView::new(assignment, now)))
}
