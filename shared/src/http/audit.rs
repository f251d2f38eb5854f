//! The audit log, for those who read an organization's activity: a page as JSON, or a range
//! as CSV. There is no route that writes, edits or removes a record.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ApiQuery;
use super::openapi::errors;
use super::views::{AuditRecordView, PageView};
use super::{MAX_PAGE, PageQuery, PoolAdminState};
use crate::domain::{AuditFilter, AuditRecord};
use crate::error::{Error, ErrorCode, Result};
use crate::identity::{OrgId, Principal};
use crate::ops::audit::{self, AuditQuery};
use crate::store::PoolAdminStore;

pub(super) fn routes() -> OpenApiRouter<PoolAdminState> {
    OpenApiRouter::new()
        .routes(routes!(list_audit))
        .routes(routes!(audit_csv))
}

#[derive(serde::Deserialize)]
struct ListQuery {
    #[serde(flatten)]
    filter: AuditQuery,
    #[serde(flatten)]
    page: PageQuery,
}

errors!(AuditErrors, |e| e
    .authenticated()
    .paged()
    .with(&[ErrorCode::InvalidInput]));

/// The organization's audit records, newest first: every change its people made.
#[utoipa::path(get, path = "/v1/audit", tag = "admin", security(("bearer" = [])),
    params(AuditQuery, PageQuery),
    responses((status = 200, description = "a page of records", body = PageView<AuditRecordView>), AuditErrors))]
async fn list_audit(
    State(state): State<PoolAdminState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<impl IntoResponse> {
    let org = principal.org()?;
    let filter = q.filter.filter()?;
    let page = audit::list(
        state.store.as_ref(),
        org,
        &filter,
        q.page.cursor(),
        q.page.size()?,
    )
    .await?;
    Ok(Json(PageView::of(page, AuditRecordView::from)))
}

/// The organization's audit records that the filters admit, newest first, as CSV (streamed;
/// cells that a spreadsheet would run as formulas are neutralised).
#[utoipa::path(get, path = "/v1/audit.csv", tag = "admin", security(("bearer" = [])),
    params(AuditQuery),
    responses((status = 200, description = "the records as CSV", body = String, content_type = "text/csv"), AuditErrors))]
async fn audit_csv(
    State(state): State<PoolAdminState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Response> {
    let org = principal.org()?.clone();
    let filter = q.filter()?;
    let store = state.store.clone();
    // The first page is read before answering, so a failure is still clean JSON.
    let first = audit::list(store.as_ref(), &org, &filter, None, MAX_PAGE).await?;
    let head = csv_chunk(&first.items, true)?;
    let rest = futures_util::stream::try_unfold(first.next_cursor, move |cursor| {
        let (store, org, filter) = (store.clone(), org.clone(), filter.clone());
        async move {
            let Some(cursor) = cursor else {
                return Ok::<_, Error>(None);
            };
            let page = next_page(store.as_ref(), &org, &filter, &cursor).await?;
            Ok(Some((csv_chunk(&page.items, false)?, page.next_cursor)))
        }
    });
    let body = Body::from_stream(futures_util::StreamExt::chain(
        futures_util::stream::iter([Ok::<_, Error>(head)]),
        rest,
    ));
    Ok((
        [
            (CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                CONTENT_DISPOSITION,
                "attachment; filename=\"keypool-audit.csv\"",
            ),
        ],
        body,
    )
        .into_response())
}

async fn next_page(
    store: &dyn PoolAdminStore,
    org: &OrgId,
    filter: &AuditFilter,
    cursor: &str,
) -> Result<crate::domain::Page<AuditRecord>> {
    audit::list(store, org, filter, Some(cursor), MAX_PAGE)
        .await
        .inspect_err(|e| tracing::error!(error = %e, "audit CSV stopped part-way"))
}

fn csv_chunk(records: &[AuditRecord], header: bool) -> Result<Bytes> {
    let mut out = crate::ops::export::csv_writer();
    if header {
        out.write_record(audit::CSV_HEADER)
            .map_err(|e| anyhow::anyhow!("writing audit CSV: {e}"))?;
    }
    audit::write_csv_rows(&mut out, records)
        .map_err(|e| anyhow::anyhow!("writing audit CSV: {e}"))?;
    let bytes = out
        .into_inner()
        .map_err(|e| anyhow::anyhow!("writing audit CSV: {e}"))?;
    Ok(Bytes::from(bytes))
}
