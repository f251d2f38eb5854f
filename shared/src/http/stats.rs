//! Activity stats routes of the pool-admin function: a pool's picture, and an organization's
//! redemptions per month beside its invoices. The counts come from the assignments stream
//! (the stats function keeps them), never from scanning keys.

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::PoolAdminState;
use super::error::{ApiPath, ApiQuery};
use super::openapi::errors;
use super::views::{MonthlyRedemptionsView, PoolStatsView};
use crate::error::{ErrorCode, Result};
use crate::identity::Principal;
use crate::ops::stats;

pub(super) fn routes() -> OpenApiRouter<PoolAdminState> {
    OpenApiRouter::new()
        .routes(routes!(pool_stats))
        .routes(routes!(monthly_redemptions))
}

errors!(PoolStatsErrors, |e| e
    .authenticated()
    .path()
    .with(&[ErrorCode::PoolNotFound]));
errors!(MonthlyErrors, |e| e
    .authenticated()
    .query()
    .with(&[ErrorCode::InvalidInput]));

/// A pool's progress: the funnel keys, handed out, redeemed, launched, and its redemptions
/// and launches per UTC day since it opened, zero-filled.
#[utoipa::path(get, path = "/v1/pools/{pool_id}/stats", tag = "admin", security(("bearer" = [])),
    params(("pool_id" = String, Path, description = "the pool")),
    responses((status = 200, description = "the pool's funnel and days", body = PoolStatsView), PoolStatsErrors))]
async fn pool_stats(
    State(state): State<PoolAdminState>,
    principal: Principal,
    ApiPath(pool_id): ApiPath<String>,
) -> Result<impl IntoResponse> {
    let org = principal.org()?;
    let picture = stats::pool_stats(state.store.as_ref(), org, &pool_id, state.clock.now()).await?;
    Ok(Json(PoolStatsView::from(picture)))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct MonthsQuery {
    /// How many months, this one included: 1 to 36 (12 when absent).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 36)]
    months: Option<String>,
}

/// The organization's redemptions and cancellations per UTC month, for the last `months`
/// months (this one included), zero-filled.
#[utoipa::path(get, path = "/v1/stats/redemptions", tag = "admin", security(("bearer" = [])),
    params(MonthsQuery),
    responses((status = 200, description = "redemptions per month, oldest first", body = MonthlyRedemptionsView), MonthlyErrors))]
async fn monthly_redemptions(
    State(state): State<PoolAdminState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<MonthsQuery>,
) -> Result<impl IntoResponse> {
    let org = principal.org()?;
    let months = stats::parse_months(q.months.as_deref())?;
    let counts =
        stats::monthly_redemptions(state.store.as_ref(), org, months, state.clock.now()).await?;
    Ok(Json(MonthlyRedemptionsView::new(counts)))
}
