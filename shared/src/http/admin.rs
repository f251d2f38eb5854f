//! Admin routes: thin handlers that parse, call one operation and shape the answer.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header::CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::error::{ApiBytes, ApiJson, ApiPath, ApiQuery};
use super::views::{CourseView, JobView, KeyView, PageView, PoolView};
use super::{KeyGenerationState, PoolAdminState, page_size};
use crate::error::{Error, Result};
use crate::identity::Principal;
use crate::ops::add_keys::{self, MAX_SYNC_KEYS};
use crate::ops::pools::{self, CourseInput, PoolInput, PoolPatch};
use crate::ops::{generate, inventory};

pub(super) fn pool_admin_routes() -> Router<PoolAdminState> {
    Router::new()
        .route("/v1/courses", post(create_course).get(list_courses))
        .route("/v1/pools", post(create_pool).get(list_pools))
        .route("/v1/pools/{pool_id}", get(get_pool).patch(update_pool))
        .route("/v1/pools/{pool_id}/keys", post(add_keys).get(list_keys))
        .route("/v1/pools/{pool_id}/keys/{key}", delete(remove_key))
}

pub(super) fn key_generation_routes() -> Router<KeyGenerationState> {
    Router::new()
        .route("/v1/pools/{pool_id}/keys/generate", post(generate_keys))
        .route("/v1/jobs/{job_id}", get(read_job))
}

#[derive(Deserialize)]
struct ListQuery {
    search: Option<String>,
    cursor: Option<String>,
    limit: Option<String>,
}

async fn create_course(
    State(state): State<PoolAdminState>,
    principal: Principal,
    ApiJson(input): ApiJson<CourseInput>,
) -> Result<impl IntoResponse> {
    let org = principal.admin_org()?;
    let course = pools::create_course(state.store.as_ref(), org, input, state.clock.now()).await?;
    Ok((StatusCode::CREATED, Json(CourseView::from(course))))
}

async fn list_courses(
    State(state): State<PoolAdminState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<impl IntoResponse> {
    let org = principal.admin_org()?;
    let page = pools::list_courses(
        state.store.as_ref(),
        org,
        q.search.as_deref(),
        q.cursor.as_deref(),
        page_size(q.limit.as_deref())?,
    )
    .await?;
    Ok(Json(PageView::of(page, CourseView::from)))
}

async fn create_pool(
    State(state): State<PoolAdminState>,
    principal: Principal,
    ApiJson(input): ApiJson<PoolInput>,
) -> Result<impl IntoResponse> {
    let org = principal.admin_org()?;
    let now = state.clock.now();
    let pool = pools::create_pool(state.store.as_ref(), org, input, now).await?;
    Ok((StatusCode::CREATED, Json(PoolView::new(pool, now))))
}

async fn list_pools(
    State(state): State<PoolAdminState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<impl IntoResponse> {
    let org = principal.admin_org()?;
    let now = state.clock.now();
    let page = pools::list_pools(
        state.store.as_ref(),
        org,
        q.search.as_deref(),
        q.cursor.as_deref(),
        page_size(q.limit.as_deref())?,
    )
    .await?;
    Ok(Json(PageView::of(page, |p| PoolView::new(p, now))))
}

async fn get_pool(
    State(state): State<PoolAdminState>,
    principal: Principal,
    ApiPath(pool_id): ApiPath<String>,
) -> Result<impl IntoResponse> {
    let org = principal.admin_org()?;
    let pool = pools::get_pool(state.store.as_ref(), org, &pool_id).await?;
    Ok(Json(PoolView::new(pool, state.clock.now())))
}

async fn update_pool(
    State(state): State<PoolAdminState>,
    principal: Principal,
    ApiPath(pool_id): ApiPath<String>,
    ApiJson(patch): ApiJson<PoolPatch>,
) -> Result<impl IntoResponse> {
    let org = principal.admin_org()?;
    let now = state.clock.now();
    let pool = pools::update_pool(state.store.as_ref(), org, &pool_id, patch, now).await?;
    Ok(Json(PoolView::new(pool, now)))
}

#[derive(Deserialize)]
struct AddQuery {
    partial: Option<String>,
}

/// One key, a JSON list, or a text/plain paste with one key per line.
async fn add_keys(
    State(state): State<PoolAdminState>,
    principal: Principal,
    ApiPath(pool_id): ApiPath<String>,
    ApiQuery(q): ApiQuery<AddQuery>,
    headers: HeaderMap,
    ApiBytes(body): ApiBytes,
) -> Result<Response> {
    let org = principal.admin_org()?;
    let partial = match q.partial.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(Error::field("partial", "partial is true or false")),
    };
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    // The body is read line by line into a checked paste; no per-line copies are kept.
    let paste = if content_type.starts_with("application/json") {
        add_keys::CheckedPaste::from_json(&body)
            .map_err(|e| Error::bad_request("invalid_body", super::error::plain(&e.to_string())))?
    } else if content_type.starts_with("text/plain") {
        let text = std::str::from_utf8(&body)
            .map_err(|_| Error::bad_request("invalid_body", "the body is not UTF-8 text"))?;
        add_keys::CheckedPaste::from_text(text)
    } else {
        return Err(Error::UnsupportedMediaType(
            "send keys as application/json {\"keys\": [...]} or text/plain, one per line".into(),
        ));
    };
    drop(body);
    // A long list is checked now and written by a job.
    if paste.len() > MAX_SYNC_KEYS {
        let (job, rejections) = generate::start_import(
            state.store.as_ref(),
            state.jobs.as_ref(),
            org,
            &pool_id,
            paste,
            partial,
            state.clock.now(),
        )
        .await?;
        let mut body = serde_json::to_value(JobView::from(job)).map_err(anyhow::Error::from)?;
        body["rejected"] = serde_json::to_value(rejections.shown()).map_err(anyhow::Error::from)?;
        body["rejected_count"] = rejections.count().into();
        return Ok((StatusCode::ACCEPTED, Json(body)).into_response());
    }
    // Its own task: a client that goes away does not stop a paste half-way.
    let (store, jobs, org, now) = (
        state.store.clone(),
        state.jobs.clone(),
        org.clone(),
        state.clock.now(),
    );
    let report = tokio::spawn(async move {
        add_keys::add_custom_keys(
            store.as_ref(),
            jobs.as_ref(),
            &org,
            &pool_id,
            &paste,
            partial,
            now,
        )
        .await
    })
    .await
    .map_err(anyhow::Error::from)??;
    Ok((StatusCode::CREATED, Json(report)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GenerateBody {
    count: i64,
}

/// Up to 10,000 keys at once (201 with the keys); more, up to ten million, as a job (202).
async fn generate_keys(
    State(state): State<KeyGenerationState>,
    principal: Principal,
    ApiPath(pool_id): ApiPath<String>,
    ApiJson(body): ApiJson<GenerateBody>,
) -> Result<Response> {
    let org = principal.admin_org()?;
    let count = generate::check_count(body.count)?;
    if generate::needs_job(count) {
        let job = generate::start(
            state.store.as_ref(),
            state.jobs.as_ref(),
            org,
            &pool_id,
            count,
            state.clock.now(),
        )
        .await?;
        return Ok((StatusCode::ACCEPTED, Json(JobView::from(job))).into_response());
    }
    let keys = generate::generate_keys(
        state.store.as_ref(),
        org,
        &pool_id,
        body.count,
        state.clock.now(),
    )
    .await?;
    let shown: Vec<String> = keys.iter().map(|k| k.display_form()).collect();
    Ok((StatusCode::CREATED, Json(json!({ "keys": shown }))).into_response())
}

async fn read_job(
    State(state): State<KeyGenerationState>,
    principal: Principal,
    ApiPath(job_id): ApiPath<String>,
) -> Result<impl IntoResponse> {
    let org = principal.admin_org()?;
    let job = generate::get(state.store.as_ref(), org, &job_id).await?;
    Ok(Json(JobView::from(job)))
}

#[derive(Deserialize)]
struct KeysQuery {
    status: Option<String>,
    undistributed: Option<String>,
    cursor: Option<String>,
    limit: Option<String>,
}

async fn list_keys(
    State(state): State<PoolAdminState>,
    principal: Principal,
    ApiPath(pool_id): ApiPath<String>,
    ApiQuery(q): ApiQuery<KeysQuery>,
) -> Result<impl IntoResponse> {
    let org = principal.admin_org()?;
    let page = inventory::list_keys(
        state.store.as_ref(),
        org,
        &pool_id,
        q.status.as_deref(),
        q.undistributed.as_deref(),
        q.cursor.as_deref(),
        page_size(q.limit.as_deref())?,
    )
    .await?;
    Ok(Json(PageView::of(page, KeyView::from)))
}

async fn remove_key(
    State(state): State<PoolAdminState>,
    principal: Principal,
    ApiPath((pool_id, key)): ApiPath<(String, String)>,
) -> Result<StatusCode> {
    let org = principal.admin_org()?;
    inventory::remove_key(state.store.as_ref(), org, &pool_id, &key).await?;
    Ok(StatusCode::NO_CONTENT)
}
