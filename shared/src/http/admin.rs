//! Admin routes: thin handlers that parse, call one operation and shape the answer.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header::CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiBytes, ApiJson, ApiPath, ApiQuery};
use super::openapi::errors;
use super::views::{
    AddReportView, CourseView, FoundKeyView, ImportStartedView, JobView, KeyView, PageView,
    PoolView,
};
use super::{KeyGenerationState, PageQuery, PoolAdminState};
use crate::domain::{Caller, KeyStatus, PoolStatus};
use crate::error::{Error, ErrorCode, Result};
use crate::identity::Principal;
use crate::ops::add_keys::{self, MAX_SYNC_KEYS};
use crate::ops::inventory::{self, KeyListing};
use crate::ops::key_jobs::{self, generate, import};
use crate::ops::open_jobs::JobContext;
use crate::ops::pools::{self, CourseInput, CoursePatch, PoolInput, PoolListing, PoolPatch};
use crate::store::{KeyGenerationStore, PoolAdminStore};

impl PoolAdminState {
    /// What the pool-admin function starts jobs with (imports, pastes' recoveries).
    fn job_context(&self) -> JobContext<'_, dyn PoolAdminStore> {
        JobContext {
            store: self.store.as_ref(),
            jobs: self.jobs.as_ref(),
            clock: self.clock.as_ref(),
            max_open: self.max_open_jobs,
        }
    }
}

impl KeyGenerationState {
    /// What the key-generation function starts jobs with.
    fn job_context(&self) -> JobContext<'_, dyn KeyGenerationStore> {
        JobContext {
            store: self.store.as_ref(),
            jobs: self.jobs.as_ref(),
            clock: self.clock.as_ref(),
            max_open: self.max_open_jobs,
        }
    }
}

pub(super) fn pool_admin_routes() -> OpenApiRouter<PoolAdminState> {
    OpenApiRouter::new()
        .routes(routes!(create_course, list_courses))
        .routes(routes!(update_course))
        .routes(routes!(create_pool, list_pools))
        .routes(routes!(get_pool, update_pool))
        .routes(routes!(add_keys, list_keys))
        .routes(routes!(remove_key))
        .routes(routes!(find_key))
}

pub(super) fn key_generation_routes() -> OpenApiRouter<KeyGenerationState> {
    OpenApiRouter::new()
        .routes(routes!(generate_keys))
        .routes(routes!(read_job))
}

/// A search over course titles, and a page of the results.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct CoursesQuery {
    /// Words that course titles contain, any case.
    search: Option<String>,
    #[serde(flatten)]
    #[param(ignore)]
    page: PageQuery,
}

errors!(CreateErrors, |e| e
    .authenticated()
    .json_body()
    .with(&[ErrorCode::InvalidInput]));
errors!(ListErrors, |e| e.authenticated().paged());
errors!(UpdateCourseErrors, |e| e
    .authenticated()
    .path()
    .json_body()
    .with(&[ErrorCode::InvalidInput, ErrorCode::CourseNotFound]));
errors!(CreatePoolErrors, |e| e
    .authenticated()
    .json_body()
    .with(&[ErrorCode::InvalidInput])
    .with(&[ErrorCode::CourseNotFound]));
errors!(GetPoolErrors, |e| e
    .authenticated()
    .path()
    .with(&[ErrorCode::PoolNotFound]));
errors!(UpdatePoolErrors, |e| e
    .authenticated()
    .path()
    .json_body()
    .with(&[ErrorCode::InvalidInput])
    .with(&[ErrorCode::PoolNotFound])
    .with(&[ErrorCode::ConcurrentUpdate]));
errors!(AddKeysErrors, |e| e
    .authenticated()
    .path()
    .query()
    .with(&[
        ErrorCode::InvalidInput,
        ErrorCode::InvalidBody,
        ErrorCode::KeysRejected,
        ErrorCode::NoKeys
    ])
    .with(&[ErrorCode::PoolNotFound])
    .with(&[ErrorCode::PasteInterrupted, ErrorCode::WriteConflict])
    .with(&[ErrorCode::PayloadTooLarge])
    .with(&[ErrorCode::UnsupportedMediaType])
    .with(&[
        ErrorCode::CollisionBudgetSpent,
        ErrorCode::TooManyJobs
    ]));
errors!(GenerateErrors, |e| e
    .authenticated()
    .path()
    .json_body()
    .with(&[ErrorCode::InvalidInput, ErrorCode::CountTooLarge])
    .with(&[ErrorCode::PoolNotFound])
    .with(&[ErrorCode::WriteConflict])
    .with(&[ErrorCode::TooManyJobs]));
errors!(ReadJobErrors, |e| e
    .authenticated()
    .path()
    .with(&[ErrorCode::JobNotFound]));
errors!(ListKeysErrors, |e| e
    .authenticated()
    .path()
    .paged()
    .with(&[ErrorCode::PoolNotFound]));
errors!(RemoveKeyErrors, |e| e
    .authenticated()
    .path()
    .with(&[ErrorCode::PoolNotFound, ErrorCode::KeyNotFound])
    .with(&[ErrorCode::KeyRedeemed, ErrorCode::WriteConflict]));

errors!(FindKeyErrors, |e| e
    .authenticated()
    .path()
    .with(&[ErrorCode::KeyNotFound]));

/// Creates a course of the admin's organization.
#[utoipa::path(post, path = "/v1/courses", tag = "admin", security(("bearer" = [])),
    request_body = CourseInput,
    responses((status = 201, description = "the course", body = CourseView), CreateErrors))]

async fn create_course(
    State(state): State<PoolAdminState>,
    caller: Caller,
    ApiJson(input): ApiJson<CourseInput>,
) -> Result<impl IntoResponse> {
    let course =
        pools::create_course(state.store.as_ref(), &caller, input, state.clock.now()).await?;
    Ok((StatusCode::CREATED, Json(CourseView::from(course))))
}

/// Changes a course's description or launch URL.
#[utoipa::path(patch, path = "/v1/courses/{course_id}", tag = "admin", security(("bearer" = [])),
    params(("course_id" = String, Path, description = "the course")),
    request_body = CoursePatch,
    responses((status = 200, description = "the course", body = CourseView), UpdateCourseErrors))]
async fn update_course(
    State(state): State<PoolAdminState>,
    caller: Caller,
    ApiPath(course_id): ApiPath<String>,
    ApiJson(patch): ApiJson<CoursePatch>,
) -> Result<impl IntoResponse> {
    let now = state.clock.now();
    let course =
        pools::update_course(state.store.as_ref(), &caller, &course_id, patch, now).await?;
    Ok(Json(CourseView::from(course)))
}

/// The organization's courses, by title.
#[utoipa::path(get, path = "/v1/courses", tag = "admin", security(("bearer" = [])),
    params(CoursesQuery, PageQuery),
    responses((status = 200, description = "a page of courses", body = PageView<CourseView>), ListErrors))]
async fn list_courses(
    State(state): State<PoolAdminState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<CoursesQuery>,
) -> Result<impl IntoResponse> {
    let org = principal.org()?;
    let page = pools::list_courses(
        state.store.as_ref(),
        org,
        q.search.as_deref(),
        q.page.cursor(),
        q.page.size()?,
    )
    .await?;
    Ok(Json(PageView::of(page, CourseView::from)))
}

/// Creates a pool of keys for a course.
#[utoipa::path(post, path = "/v1/pools", tag = "admin", security(("bearer" = [])),
    request_body = PoolInput,
    responses((status = 201, description = "the pool", body = PoolView), CreatePoolErrors))]
async fn create_pool(
    State(state): State<PoolAdminState>,
    caller: Caller,
    ApiJson(input): ApiJson<PoolInput>,
) -> Result<impl IntoResponse> {
    let now = state.clock.now();
    let pool = pools::create_pool(state.store.as_ref(), &caller, input, now).await?;
    Ok((StatusCode::CREATED, Json(PoolView::new(pool, now))))
}

/// A search over pool names and course titles, a status, and a page of the results.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct PoolsQuery {
    /// Words that the pool's name or its course's title contains, any case (pools made
    /// before titles were kept on pools are found by name only).
    search: Option<String>,
    /// Only pools in this status now (derived from their dates and `deactivated`).
    #[param(value_type = Option<PoolStatus>)]
    status: Option<String>,
    #[serde(flatten)]
    #[param(ignore)]
    page: PageQuery,
}

/// The organization's pools, newest first; `search` matches pool names and course titles,
/// `status` filters by
/// where each pool stands now. A filtered page may hold fewer than `limit` pools while
/// `next_cursor` says more may follow.
#[utoipa::path(get, path = "/v1/pools", tag = "admin", security(("bearer" = [])),
    params(PoolsQuery, PageQuery),
    responses((status = 200, description = "a page of pools", body = PageView<PoolView>), ListErrors))]
async fn list_pools(
    State(state): State<PoolAdminState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<PoolsQuery>,
) -> Result<impl IntoResponse> {
    let org = principal.org()?;
    let now = state.clock.now();
    let listing = PoolListing {
        search: q.search.as_deref(),
        status: q.status.as_deref(),
        cursor: q.page.cursor(),
        limit: q.page.size()?,
    };
    let page = pools::list_pools(state.store.as_ref(), org, listing, now).await?;
    Ok(Json(PageView::of(page, |p| PoolView::new(p, now))))
}

/// A pool with its counts.
#[utoipa::path(get, path = "/v1/pools/{pool_id}", tag = "admin", security(("bearer" = [])),
    params(("pool_id" = String, Path, description = "the pool")),
    responses((status = 200, description = "pool with `total_keys`, `redeemed_keys`, `available_keys`, `active`", body = PoolView), GetPoolErrors))]
async fn get_pool(
    State(state): State<PoolAdminState>,
    principal: Principal,
    ApiPath(pool_id): ApiPath<String>,
) -> Result<impl IntoResponse> {
    let org = principal.org()?;
    let pool = pools::get_pool(state.store.as_ref(), org, &pool_id).await?;
    Ok(Json(PoolView::new(pool, state.clock.now())))
}

/// Changes a pool's name, dates, availability, or deactivates it.
#[utoipa::path(patch, path = "/v1/pools/{pool_id}", tag = "admin", security(("bearer" = [])),
    params(("pool_id" = String, Path, description = "the pool")),
    request_body = PoolPatch,
    responses((status = 200, description = "the pool", body = PoolView), UpdatePoolErrors))]
async fn update_pool(
    State(state): State<PoolAdminState>,
    caller: Caller,
    ApiPath(pool_id): ApiPath<String>,
    ApiJson(patch): ApiJson<PoolPatch>,
) -> Result<impl IntoResponse> {
    let now = state.clock.now();
    let pool = pools::update_pool(state.store.as_ref(), &caller, &pool_id, patch, now).await?;
    Ok(Json(PoolView::new(pool, now)))
}

/// Keys to add, one per item.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Only described: the handler reads the body as it streams.
struct KeysBody {
    keys: Vec<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct AddQuery {
    /// Add the valid lines even when others are rejected.
    #[param(value_type = Option<bool>)]
    partial: Option<String>,
}

/// Adds custom keys: one key, a JSON list, or a text/plain paste with one key per line. All
/// or nothing, unless `partial=true`.
#[utoipa::path(post, path = "/v1/pools/{pool_id}/keys", tag = "admin", security(("bearer" = [])),
    params(("pool_id" = String, Path, description = "the pool"), AddQuery),
    request_body(description = "`{\"keys\": [...]}`, or text with one key per line", content(
        (KeysBody = "application/json"),
        (String = "text/plain"),
    )),
    responses(
        (status = 201, description = "up to 10,000 lines: the keys added and the lines rejected", body = AddReportView),
        (status = 202, description = "more than 10,000 lines: checked whole, then written by an import job", body = ImportStartedView),
        AddKeysErrors,
    ))]
async fn add_keys(
    State(state): State<PoolAdminState>,
    caller: Caller,
    ApiPath(pool_id): ApiPath<String>,
    ApiQuery(q): ApiQuery<AddQuery>,
    headers: HeaderMap,
    ApiBytes(body): ApiBytes,
) -> Result<Response> {
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
        add_keys::CheckedPaste::from_json(&body).map_err(|e| {
            Error::refused(ErrorCode::InvalidBody, super::error::plain(&e.to_string()))
        })?
    } else if content_type.starts_with("text/plain") {
        let text = std::str::from_utf8(&body)
            .map_err(|_| Error::refused(ErrorCode::InvalidBody, "the body is not UTF-8 text"))?;
        add_keys::CheckedPaste::from_text(text)
    } else {
        return Err(super::error::unsupported_media_type(
            "send keys as application/json {\"keys\": [...]} or text/plain, one per line",
        ));
    };
    drop(body);
    // A long list is checked now and written by a job.
    if paste.len() > MAX_SYNC_KEYS {
        let cx = state.job_context();
        let (job, rejections) =
            import::start(&cx, &state.settings, &caller, &pool_id, paste, partial).await?;
        let mut body = serde_json::to_value(JobView::from(job)).map_err(anyhow::Error::from)?;
        body["rejected"] = serde_json::to_value(rejections.shown()).map_err(anyhow::Error::from)?;
        body["rejected_count"] = rejections.count().into();
        return Ok((StatusCode::ACCEPTED, Json(body)).into_response());
    }
    // Its own task: a client that goes away does not stop a paste half-way.
    let report = tokio::spawn(async move {
        let cx = state.job_context();
        add_keys::add_custom_keys(&cx, &state.settings, &caller, &pool_id, &paste, partial).await
    })
    .await
    .map_err(anyhow::Error::from)??;
    Ok((StatusCode::CREATED, Json(report)).into_response())
}

/// How many keys to generate.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct GenerateBody {
    #[schema(minimum = 1, maximum = 10_000_000)]
    count: i64,
}

/// Generated keys, as learners type them.
#[derive(Serialize, ToSchema)]
struct GeneratedKeys {
    keys: Vec<String>,
}

/// Up to 10,000 keys at once (201 with the keys); more, up to ten million, as a job (202).
#[utoipa::path(post, path = "/v1/pools/{pool_id}/keys/generate", tag = "admin", security(("bearer" = [])),
    params(("pool_id" = String, Path, description = "the pool")),
    request_body = GenerateBody,
    responses(
        (status = 201, description = "up to 10,000: the keys", body = GeneratedKeys),
        (status = 202, description = "up to 10,000,000: a job whose progress `GET /v1/jobs/{job_id}` shows", body = JobView),
        GenerateErrors,
    ))]
async fn generate_keys(
    State(state): State<KeyGenerationState>,
    caller: Caller,
    ApiPath(pool_id): ApiPath<String>,
    ApiJson(body): ApiJson<GenerateBody>,
) -> Result<Response> {
    let count = generate::check_count(body.count)?;
    if generate::needs_job(count) {
        let cx = state.job_context();
        let job = generate::start(&cx, &caller, &pool_id, count).await?;
        return Ok((StatusCode::ACCEPTED, Json(JobView::from(job))).into_response());
    }
    let keys = generate::generate_keys(
        state.store.as_ref(),
        &caller,
        &pool_id,
        body.count,
        state.clock.now(),
    )
    .await?;
    let keys = keys.iter().map(|k| k.display_form()).collect();
    Ok((StatusCode::CREATED, Json(GeneratedKeys { keys })).into_response())
}

/// A key job's progress.
#[utoipa::path(get, path = "/v1/jobs/{job_id}", tag = "admin", security(("bearer" = [])),
    params(("job_id" = String, Path, description = "the job")),
    responses((status = 200, description = "the job", body = JobView), ReadJobErrors))]
async fn read_job(
    State(state): State<KeyGenerationState>,
    principal: Principal,
    ApiPath(job_id): ApiPath<String>,
) -> Result<impl IntoResponse> {
    let org = principal.org()?;
    let job = key_jobs::get(state.store.as_ref(), org, &job_id).await?;
    Ok(Json(JobView::from(job)))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct KeysQuery {
    /// Only keys of this status.
    #[param(value_type = Option<KeyStatus>)]
    status: Option<String>,
    /// Only keys never handed out by an export.
    #[param(value_type = Option<bool>)]
    undistributed: Option<String>,
    #[serde(flatten)]
    #[param(ignore)]
    page: PageQuery,
}

/// A pool's keys, a page at a time.
#[utoipa::path(get, path = "/v1/pools/{pool_id}/keys", tag = "admin", security(("bearer" = [])),
    params(("pool_id" = String, Path, description = "the pool"), KeysQuery, PageQuery),
    responses((status = 200, description = "a page of keys", body = PageView<KeyView>), ListKeysErrors))]

async fn list_keys(
    State(state): State<PoolAdminState>,
    principal: Principal,
    ApiPath(pool_id): ApiPath<String>,
    ApiQuery(q): ApiQuery<KeysQuery>,
) -> Result<impl IntoResponse> {
    let org = principal.org()?;
    let listing = KeyListing {
        status: q.status.as_deref(),
        undistributed: q.undistributed.as_deref(),
        cursor: q.page.cursor(),
        limit: q.page.size()?,
    };
    let page = inventory::list_keys(state.store.as_ref(), org, &pool_id, listing).await?;
    Ok(Json(PageView::of(page, KeyView::from)))
}

/// Removes a key that was never redeemed.
#[utoipa::path(delete, path = "/v1/pools/{pool_id}/keys/{key}", tag = "admin", security(("bearer" = [])),
    params(("pool_id" = String, Path, description = "the pool"), ("key" = String, Path, description = "the key, in any form learners may type it")),
    responses((status = 204, description = "removed"), RemoveKeyErrors))]
async fn remove_key(
    State(state): State<PoolAdminState>,
    caller: Caller,
    ApiPath((pool_id, key)): ApiPath<(String, String)>,
) -> Result<StatusCode> {
    let now = state.clock.now();
    inventory::remove_key(state.store.as_ref(), &caller, &pool_id, &key, now).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Finds which pool holds a key, typed in any form a learner may type it. A key of another
/// organization answers exactly as one that does not exist.
#[utoipa::path(get, path = "/v1/keys/{key}", tag = "admin", security(("bearer" = [])),
    params(("key" = String, Path, description = "the key, in any form learners may type it")),
    responses((status = 200, description = "the key and its pool", body = FoundKeyView), FindKeyErrors))]
async fn find_key(
    State(state): State<PoolAdminState>,
    principal: Principal,
    ApiPath(key): ApiPath<String>,
) -> Result<impl IntoResponse> {
    let org = principal.org()?;
    let (key, pool) = inventory::find_key(state.store.as_ref(), org, &key).await?;
    Ok(Json(FoundKeyView::new(key, &pool, state.clock.now())))
}
