//! Reading invoices: a month's lines with its totals, as JSON pages or CSV rows.

use crate::domain::{InvoiceLine, InvoiceTotals, Month, Page};
use crate::error::{Error, ErrorCode, Result};
use crate::identity::OrgId;
use crate::store::Invoices;
use crate::time;

/// A page of an organization's invoice for a month, with the month's totals.
pub async fn invoice<S: Invoices + ?Sized>(
    store: &S,
    org: &OrgId,
    month: Month,
    cursor: Option<&str>,
    limit: usize,
) -> Result<(InvoiceTotals, Page<InvoiceLine>)> {
    tokio::try_join!(
        store.invoice_totals(org, month),
        store.list_invoice_lines(org, month, cursor, limit)
    )
}

/// The columns of an invoice's CSV.
pub const CSV_HEADER: [&str; 10] = [
    "month",
    "kind",
    "quantity",
    "assignment_id",
    "pool_id",
    "course_id",
    "key",
    "learner",
    "redeemed_at",
    "cancelled_at",
];

/// Appends invoice lines as CSV rows (RFC 4180 quoting, formula-looking cells neutralised).
pub fn write_csv_rows<W: std::io::Write>(
    out: &mut csv::Writer<W>,
    lines: &[InvoiceLine],
) -> csv::Result<()> {
    use crate::spreadsheet::cell;
    for line in lines {
        let cancelled_at = line
            .cancelled_at
            .as_ref()
            .map(time::format)
            .unwrap_or_default();
        out.write_record([
            line.month.to_string().as_str(),
            line.kind.as_str(),
            line.quantity.to_string().as_str(),
            line.assignment_id.to_string().as_str(),
            line.pool_id.to_string().as_str(),
            line.course_id.to_string().as_str(),
            &line.key.display_form(),
            &cell(line.learner.as_str()),
            &time::format(&line.redeemed_at),
            &cancelled_at,
        ])?;
    }
    Ok(())
}

/// Parses the month of an invoice route.
pub fn parse_month(text: &str) -> Result<Month> {
    Month::parse(text).ok_or_else(|| {
        Error::refused(
            ErrorCode::InvalidMonth,
            format!("{text:?} is not a month; write it as yyyy-mm, for example 2026-11"),
        )
    })
}
