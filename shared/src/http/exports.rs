//! Export routes: start an export of a pool, read it (with its download link); and, locally,
//! the download of a linked file.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiBytes, ApiPath, ApiQuery};
use super::openapi::errors;
use super::views::{ExportView, PageView};
use super::{ExportState, PageQuery};
use crate::domain::Caller;
use crate::error::{Error, ErrorCode, Missing, Result};
use crate::identity::Principal;
use crate::objects::LocalObjects;
use crate::ops::export::{self, ExportInput};
use crate::ops::open_jobs::JobContext;

pub(super) fn routes() -> OpenApiRouter<ExportState> {
    OpenApiRouter::new()
        .routes(routes!(start, list))
        .routes(routes!(read))
}

errors!(StartErrors, |e| e
    .authenticated()
    .path()
    .with(&[ErrorCode::InvalidBody, ErrorCode::InvalidInput])
    .with(&[ErrorCode::PoolNotFound])
    .with(&[ErrorCode::PayloadTooLarge])
    .with(&[ErrorCode::TooManyJobs]));
errors!(ListErrors, |e| e
    .authenticated()
    .path()
    .paged()
    .with(&[ErrorCode::PoolNotFound]));
errors!(ReadErrors, |e| e
    .authenticated()
    .path()
    .with(&[ErrorCode::ExportNotFound]));
errors!(DownloadErrors, |e| e
    .query()
    .with(&[ErrorCode::Unauthenticated])
    .with(&[ErrorCode::FileNotFound])
    .with(&[ErrorCode::InternalError]));

/// Starts an export of a pool's keys to CSV. The body is optional: no body exports every key.
#[utoipa::path(post, path = "/v1/pools/{pool_id}/exports", tag = "admin", security(("bearer" = [])),
    operation_id = "start_export",
    params(("pool_id" = String, Path, description = "the pool")),
    request_body(content = Option<ExportInput>, content_type = "application/json"),
    responses((status = 202, description = "the export, pending", body = ExportView), StartErrors))]
async fn start(
    State(state): State<ExportState>,
    caller: Caller,
    ApiPath(pool_id): ApiPath<String>,
    ApiBytes(body): ApiBytes,
) -> Result<impl IntoResponse> {
    let input = if body.iter().all(u8::is_ascii_whitespace) {
        ExportInput::default()
    } else {
        serde_json::from_slice::<ExportInput>(&body).map_err(|e| {
            Error::refused(ErrorCode::InvalidBody, super::error::plain(&e.to_string()))
        })?
    };
    let cx = JobContext {
        store: state.store.as_ref(),
        jobs: state.jobs.as_ref(),
        clock: state.clock.as_ref(),
        max_open: state.max_open_jobs,
    };
    let started = export::start(&cx, &caller, &pool_id, input).await?;
    Ok((StatusCode::ACCEPTED, Json(ExportView::new(started, None))))
}

/// A pool's exports, newest first, each done one with a download link that works for 15
/// minutes. An export started a moment ago may show a moment later.
#[utoipa::path(get, path = "/v1/pools/{pool_id}/exports", tag = "admin", security(("bearer" = [])),
    operation_id = "list_exports",
    params(("pool_id" = String, Path, description = "the pool"), PageQuery),
    responses((status = 200, description = "a page of exports", body = PageView<ExportView>), ListErrors))]
async fn list(
    State(state): State<ExportState>,
    principal: Principal,
    ApiPath(pool_id): ApiPath<String>,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> Result<impl IntoResponse> {
    let org = principal.org()?;
    let page = export::list(
        state.store.as_ref(),
        state.objects.as_ref(),
        org,
        &pool_id,
        page.cursor(),
        page.size()?,
    )
    .await?;
    Ok(Json(PageView::of(page, |(e, url)| ExportView::new(e, url))))
}

/// An export; once done, with a download link that works for 15 minutes (to a role that may
/// download; handing it out is recorded in the audit as `export.downloaded`).
#[utoipa::path(get, path = "/v1/exports/{export_id}", tag = "admin", security(("bearer" = [])),
    operation_id = "read_export",
    params(("export_id" = String, Path, description = "the export")),
    responses((status = 200, description = "the export", body = ExportView), ReadErrors))]
async fn read(
    State(state): State<ExportState>,
    principal: Principal,
    caller: Caller,
    ApiPath(export_id): ApiPath<String>,
) -> Result<impl IntoResponse> {
    // A viewer sees how an export went, never a way to download its keys.
    let (found, url) = if super::access::may_download(&principal) {
        export::get_link(
            state.store.as_ref(),
            state.objects.as_ref(),
            &caller,
            &export_id,
            state.clock.now(),
        )
        .await?
    } else {
        let (found, _) = export::get(
            state.store.as_ref(),
            state.objects.as_ref(),
            &caller.org,
            &export_id,
        )
        .await?;
        (found, None)
    };
    Ok(Json(ExportView::new(found, url)))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct LinkQuery {
    /// The signed link of an export's `url`.
    link: String,
}

/// Downloads an export's file (local server only; in AWS, `url` is an S3 presigned URL).
#[utoipa::path(get, path = "/v1/files", tag = "local",
    params(LinkQuery),
    responses(
        (status = 200, description = "the CSV file", content_type = "text/csv", body = String),
        DownloadErrors,
    ))]
async fn files(
    State(objects): State<Arc<LocalObjects>>,
    ApiQuery(q): ApiQuery<LinkQuery>,
) -> Result<Response> {
    download(&objects, &q.link).await
}

pub(super) fn local_files_router() -> OpenApiRouter<Arc<LocalObjects>> {
    OpenApiRouter::new().routes(routes!(files))
}

/// The local server's downloads: `GET /v1/files?link=…`, a signed link that expires, as S3's
/// presigned URLs do in AWS. The file is streamed from disk.
pub fn local_files(objects: Arc<LocalObjects>) -> Router {
    local_files_router()
        .split_for_parts()
        .0
        .method_not_allowed_fallback(|| async { super::error::method_not_allowed() })
        .layer(super::no_store())
        .with_state(objects)
}

async fn download(objects: &LocalObjects, link: &str) -> Result<Response> {
    let (key, name) = objects
        .verify_link(link)
        .ok_or_else(|| Error::Unauthenticated("the link is not valid or has expired".into()))?;
    let path = objects
        .path_of(&key)
        .ok_or(Error::NotFound(Missing::File))?;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|_| Error::NotFound(Missing::File))?;
    let stream = file_chunks(file);
    Ok((
        [
            (CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (CONTENT_DISPOSITION, crate::objects::attachment(&name)),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// A file as a stream of chunks, without pulling in tokio-util for one adapter.
fn file_chunks(
    file: tokio::fs::File,
) -> impl futures_util::Stream<Item = std::io::Result<axum::body::Bytes>> {
    futures_util::stream::try_unfold(file, |mut file| async move {
        use tokio::io::AsyncReadExt as _;
        let mut buffer = vec![0u8; 64 * 1024];
        let read = file.read(&mut buffer).await?;
        if read == 0 {
            return Ok(None);
        }
        buffer.truncate(read);
        Ok(Some((axum::body::Bytes::from(buffer), file)))
    })
}
