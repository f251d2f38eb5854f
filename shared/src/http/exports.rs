//! Export routes: start an export of a pool, read it (with its download link); and, locally,
//! the download of a linked file.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::ExportState;
use super::error::{ApiBytes, ApiPath, ApiQuery};
use super::views::ExportView;
use crate::error::{Error, Result};
use crate::identity::Principal;
use crate::objects::LocalObjects;
use crate::ops::export::{self, ExportInput};

pub(super) fn routes() -> Router<ExportState> {
    Router::new()
        .route("/v1/pools/{pool_id}/exports", post(start))
        .route("/v1/exports/{export_id}", get(read))
}

/// The body is optional: no body exports every key.
async fn start(
    State(state): State<ExportState>,
    principal: Principal,
    ApiPath(pool_id): ApiPath<String>,
    ApiBytes(body): ApiBytes,
) -> Result<impl IntoResponse> {
    let org = principal.admin_org()?;
    let input = if body.iter().all(u8::is_ascii_whitespace) {
        ExportInput::default()
    } else {
        serde_json::from_slice::<ExportInput>(&body)
            .map_err(|e| Error::bad_request("invalid_body", super::error::plain(&e.to_string())))?
    };
    let started = export::start(
        state.store.as_ref(),
        state.jobs.as_ref(),
        org,
        &pool_id,
        input,
        state.max_open_jobs,
        state.clock.now(),
    )
    .await?;
    Ok((StatusCode::ACCEPTED, Json(ExportView::new(started, None))))
}

async fn read(
    State(state): State<ExportState>,
    principal: Principal,
    ApiPath(export_id): ApiPath<String>,
) -> Result<impl IntoResponse> {
    let org = principal.admin_org()?;
    let (found, url) = export::get(
        state.store.as_ref(),
        state.objects.as_ref(),
        org,
        &export_id,
    )
    .await?;
    Ok(Json(ExportView::new(found, url)))
}

#[derive(Deserialize)]
struct LinkQuery {
    link: String,
}

/// The local server's downloads: `GET /v1/files?link=…`, a signed link that expires, as S3's
/// presigned URLs do in AWS. The file is streamed from disk.
pub fn local_files(objects: Arc<LocalObjects>) -> Router {
    Router::new()
        .route(
            "/v1/files",
            get(
                |State(objects): State<Arc<LocalObjects>>, ApiQuery(q): ApiQuery<LinkQuery>| async move {
                    download(&objects, &q.link).await
                },
            ),
        )
        .method_not_allowed_fallback(|| async { Error::MethodNotAllowed })
        .with_state(objects)
}

async fn download(objects: &LocalObjects, link: &str) -> Result<Response> {
    let (key, name) = objects
        .verify_link(link)
        .ok_or_else(|| Error::Unauthenticated("the link is not valid or has expired".into()))?;
    let path = objects.path_of(&key).ok_or(Error::NotFound("file"))?;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|_| Error::NotFound("file"))?;
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
