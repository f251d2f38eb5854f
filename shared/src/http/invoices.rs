//! Admin routes of billing: a month's invoice as JSON or CSV, and cancelling an assignment.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiPath, ApiQuery};
use super::openapi::errors;
use super::views::{CancelledView, InvoiceView};
use super::{MAX_PAGE, PoolAdminState, page_size};
use crate::domain::{InvoiceLine, Month, Page};
use crate::error::{Error, ErrorCode, Result};
use crate::identity::{OrgId, Principal};
use crate::ops::{cancel, invoices};
use crate::store::PoolAdminStore;

pub(super) fn routes() -> OpenApiRouter<PoolAdminState> {
    OpenApiRouter::new()
        .routes(routes!(invoice))
        .routes(routes!(cancel))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct InvoiceQuery {
    /// `next_cursor` of the previous page (JSON only).
    cursor: Option<String>,
    /// Page size, 1 to 1000 (100 when absent; JSON only).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
}

errors!(InvoiceErrors, |e| e
    .authenticated()
    .path()
    .paged()
    .with(&[ErrorCode::InvalidMonth]));
errors!(CancelErrors, |e| e
    .authenticated()
    .path()
    .with(&[ErrorCode::AssignmentNotFound])
    .with(&[
        ErrorCode::AssignmentLaunched,
        ErrorCode::CancellationWindowPassed,
        ErrorCode::AssignmentAlreadyCancelled,
        ErrorCode::CancellationContended
    ]));

/// `GET /v1/invoices/2026-11` answers JSON a page at a time; `.../2026-11.csv` the whole month.
#[utoipa::path(get, path = "/v1/invoices/{month}", tag = "admin", security(("bearer" = [])),
    params(
        ("month" = String, Path, pattern = r"^[0-9]{4}-[0-9]{2}(\.csv)?$",
         description = "`yyyy-mm` for JSON pages, `yyyy-mm.csv` for the whole month as CSV"),
        InvoiceQuery,
    ),
    responses(
        (status = 200, description = "the month's totals and a page of its lines; or, for `.csv`, every line as CSV with `X-Row-Count`",
         content((InvoiceView = "application/json"), (String = "text/csv")),
         headers(("X-Row-Count" = u64, description = "CSV only: how many rows the file has"))),
        InvoiceErrors,
    ))]
async fn invoice(
    State(state): State<PoolAdminState>,
    principal: Principal,
    ApiPath(month): ApiPath<String>,
    ApiQuery(q): ApiQuery<InvoiceQuery>,
) -> Result<Response> {
    let org = principal.org()?;
    if let Some(month) = month.strip_suffix(".csv") {
        let month = invoices::parse_month(month)?;
        return invoice_csv(state.store.clone(), org.clone(), month).await;
    }
    let month = invoices::parse_month(&month)?;
    let (totals, page) = invoices::invoice(
        state.store.as_ref(),
        org,
        month,
        q.cursor.as_deref(),
        page_size(q.limit.as_deref())?,
    )
    .await?;
    Ok(Json(InvoiceView::new(month, totals, page)).into_response())
}

/// The header that says how many rows the CSV has, so that a client can tell a whole file
/// from one cut short.
pub const ROW_COUNT_HEADER: &str = "x-row-count";

/// The month's lines as CSV, streamed page by page so memory stays flat however long the month.
/// The row count comes first, in `X-Row-Count`, from the month's totals (written with every
/// line, so exact); a page that fails part-way, or a count that does not match, aborts the
/// response, so the client sees a broken body rather than a short file that looks whole.
async fn invoice_csv(
    store: std::sync::Arc<dyn PoolAdminStore>,
    org: OrgId,
    month: Month,
) -> Result<Response> {
    // The totals and first page are read before answering, so a failure is still clean JSON.
    let totals = store.invoice_totals(&org, month).await?;
    let expected = totals.redemptions + totals.credits;
    let first = store
        .list_invoice_lines(&org, month, None, MAX_PAGE)
        .await?;
    let header = csv_chunk(&[], true)?;
    let first_rows = first.items.len() as u64;
    let first_chunk = csv_chunk(&first.items, false)?;
    let rest = futures_util::stream::try_unfold(
        (first.next_cursor, first_rows, false),
        move |(cursor, rows, finished)| {
            let store = store.clone();
            let org = org.clone();
            async move {
                if finished {
                    return Ok::<_, Error>(None);
                }
                let Some(cursor) = cursor else {
                    if rows != expected {
                        tracing::error!(rows, expected, "invoice CSV rows do not match the totals");
                        return Err(anyhow::anyhow!(
                            "invoice CSV has {rows} rows, its totals {expected}"
                        )
                        .into());
                    }
                    return Ok(Some((Bytes::new(), (None, rows, true))));
                };
                let page: Page<InvoiceLine> = store
                    .list_invoice_lines(&org, month, Some(&cursor), MAX_PAGE)
                    .await
                    .inspect_err(|e| tracing::error!(error = %e, "invoice CSV stopped part-way"))?;
                let rows = rows + page.items.len() as u64;
                Ok(Some((
                    csv_chunk(&page.items, false)?,
                    (page.next_cursor, rows, false),
                )))
            }
        },
    );
    let head = futures_util::stream::iter([Ok::<_, Error>(header), Ok(first_chunk)]);
    let body = Body::from_stream(futures_util::StreamExt::chain(head, rest));
    Ok((
        [
            (CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                CONTENT_DISPOSITION,
                format!("attachment; filename=\"keypool-invoice-{month}.csv\""),
            ),
            (
                axum::http::HeaderName::from_static(ROW_COUNT_HEADER),
                expected.to_string(),
            ),
        ],
        body,
    )
        .into_response())
}

fn csv_chunk(lines: &[InvoiceLine], header: bool) -> Result<Bytes> {
    let mut out = crate::ops::export::csv_writer();
    let written = if header {
        out.write_record(invoices::CSV_HEADER)
    } else {
        invoices::write_csv_rows(&mut out, lines)
    };
    written.map_err(|e| anyhow::anyhow!("writing invoice CSV: {e}"))?;
    let bytes = out
        .into_inner()
        .map_err(|e| anyhow::anyhow!("writing invoice CSV: {e}"))?;
    Ok(Bytes::from(bytes))
}

/// Cancels a redemption within 24 hours and before any launch: the key is available again and
/// the invoice gets a credit line.
#[utoipa::path(post, path = "/v1/assignments/{assignment_id}/cancel", tag = "admin", security(("bearer" = [])),
    params(("assignment_id" = String, Path, description = "the assignment")),
    responses((status = 200, description = "the cancelled assignment", body = CancelledView), CancelErrors))]
async fn cancel(
    State(state): State<PoolAdminState>,
    caller: crate::domain::Caller,
    ApiPath(assignment_id): ApiPath<String>,
) -> Result<impl IntoResponse> {
    let cancelled = cancel::cancel(
        state.store.as_ref(),
        &caller,
        &assignment_id,
        state.clock.now(),
    )
    .await?;
    Ok(Json(CancelledView::from(cancelled)))
}
