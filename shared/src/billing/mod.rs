//! Billing: one invoice line per redemption and one credit per cancellation, each exactly once,
//! read from the assignments table's stream.
//!
//! The stream delivers at least once, in order per item. A line is keyed by its assignment and
//! kind and written with its month's totals in one transaction, so a second delivery finds the
//! line and changes nothing.

#[cfg(feature = "embedded")]
pub mod follower;

use std::fmt;

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use chrono::Datelike;
use serde::{Deserialize, Serialize};
use serde_dynamo::AttributeValue;

use crate::error::{Error, Result};
use crate::identity::{OrgId, UserId};
use crate::keys::KeyCode;
use crate::pools::{AssignmentId, CourseId, PoolId};
use crate::redemption::Assignment;
use crate::store::{Ledger, Page, Store};
use crate::time::{self, Timestamp};

/// A calendar month in UTC, shown as `yyyy-mm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    year: i32,
    month: u32,
}

impl Month {
    /// Parses `yyyy-mm` (four-digit year, two-digit month).
    pub fn parse(text: &str) -> Option<Self> {
        let (year, month) = text.split_once('-')?;
        let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(year, 4) || !digits(month, 2) {
            return None;
        }
        let month: u32 = month.parse().ok()?;
        (1..=12).contains(&month).then_some(Self {
            year: year.parse().ok()?,
            month,
        })
    }

    /// The month `ts` falls in.
    pub fn of(ts: Timestamp) -> Self {
        Self {
            year: ts.year(),
            month: ts.month(),
        }
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl Serialize for Month {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Month {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Month::parse(&text).ok_or_else(|| serde::de::Error::custom("expected a month as yyyy-mm"))
    }
}

/// What a line bills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineKind {
    /// A redemption that created an assignment: one unit.
    Redemption,
    /// A cancelled assignment: one unit back.
    Credit,
}

impl LineKind {
    /// The stable name used in storage and CSV.
    pub fn as_str(self) -> &'static str {
        match self {
            LineKind::Redemption => "redemption",
            LineKind::Credit => "credit",
        }
    }

    /// Units this kind of line adds to its invoice.
    pub fn quantity(self) -> i64 {
        match self {
            LineKind::Redemption => 1,
            LineKind::Credit => -1,
        }
    }
}

/// One line of an organization's invoice for a month.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvoiceLine {
    pub org: OrgId,
    pub month: Month,
    pub kind: LineKind,
    pub quantity: i64,
    pub assignment_id: AssignmentId,
    pub pool_id: PoolId,
    pub course_id: CourseId,
    pub key: KeyCode,
    pub learner: UserId,
    #[serde(with = "time::rfc3339")]
    pub redeemed_at: Timestamp,
    #[serde(default, with = "time::rfc3339::option")]
    pub cancelled_at: Option<Timestamp>,
}

impl InvoiceLine {
    /// The line for a redemption, in the month it happened.
    pub fn redemption(a: &Assignment) -> Self {
        Self::new(a, LineKind::Redemption, Month::of(a.redeemed_at), None)
    }

    /// The credit for a cancellation, in the month of the cancellation.
    pub fn credit(a: &Assignment, cancelled_at: Timestamp) -> Self {
        Self::new(
            a,
            LineKind::Credit,
            Month::of(cancelled_at),
            Some(cancelled_at),
        )
    }

    fn new(a: &Assignment, kind: LineKind, month: Month, cancelled_at: Option<Timestamp>) -> Self {
        Self {
            org: a.org.clone(),
            month,
            kind,
            quantity: kind.quantity(),
            assignment_id: a.assignment_id,
            pool_id: a.pool_id,
            course_id: a.course_id,
            key: a.key.clone(),
            learner: a.learner.clone(),
            redeemed_at: a.redeemed_at,
            cancelled_at,
        }
    }
}

/// A month's totals, kept in the same transactions as its lines.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct InvoiceTotals {
    /// Redemption lines.
    pub redemptions: u64,
    /// Credit lines.
    pub credits: u64,
}

impl InvoiceTotals {
    /// Units billed: redemptions less credits.
    pub fn count(&self) -> i64 {
        self.redemptions as i64 - self.credits as i64
    }
}

/// Whether a record came from the assignments table's stream as an assignment's image.
fn is_assignment(image: &serde_dynamo::Item) -> bool {
    matches!(image.get(crate::schema::ENTITY), Some(AttributeValue::S(e)) if e == "assignment")
}

fn assignment_of(image: &serde_dynamo::Item) -> Result<Assignment> {
    serde_dynamo::from_item(image.clone()).map_err(|e| {
        Error::Internal(anyhow::anyhow!(
            "an assignment image in the stream does not parse: {e}"
        ))
    })
}

/// What a stream record bills: a line for a new assignment, a credit for one that was just
/// cancelled, nothing for launches, expiries (TTL removals) or anything else.
pub fn line_of(record: &EventRecord) -> Result<Option<InvoiceLine>> {
    let change = &record.change;
    match record.event_name.as_str() {
        "INSERT" if is_assignment(&change.new_image) => Ok(Some(InvoiceLine::redemption(
            &assignment_of(&change.new_image)?,
        ))),
        "MODIFY" if is_assignment(&change.new_image) => {
            let new = assignment_of(&change.new_image)?;
            let was_cancelled = is_assignment(&change.old_image)
                && assignment_of(&change.old_image)?.cancelled_at.is_some();
            match new.cancelled_at {
                Some(at) if !was_cancelled => Ok(Some(InvoiceLine::credit(&new, at))),
                _ => Ok(None),
            }
        }
        _ => Ok(None),
    }
}

/// Bills a batch of stream records in order, one at a time. At the first record that fails,
/// stops and reports it, so the event source mapping retries from there: records before it are
/// billed, and records after it have not been looked at.
pub async fn bill(ledger: &dyn Ledger, event: &Event) -> Result<DynamoDbEventResponse> {
    let mut response = DynamoDbEventResponse::default();
    let mut billed = 0usize;
    for record in &event.records {
        let outcome = match line_of(record) {
            Ok(Some(line)) => ledger.record_invoice_line(&line).await.map(|new| {
                billed += usize::from(new);
            }),
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(error) = outcome {
            let sequence = record.change.sequence_number.clone().ok_or_else(|| {
                anyhow::anyhow!("a stream record without a sequence number failed: {error}")
            })?;
            tracing::error!(error = %error, sequence = %sequence, "billing a stream record failed");
            let mut failure = DynamoDbBatchItemFailure::default();
            failure.item_identifier = Some(sequence);
            response.batch_item_failures.push(failure);
            break;
        }
    }
    tracing::info!(
        records = event.records.len(),
        billed,
        failed = response.batch_item_failures.len(),
        "stream batch billed"
    );
    Ok(response)
}

/// A page of an organization's invoice for a month, with the month's totals.
pub async fn invoice(
    store: &dyn Store,
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
        Error::bad_request(
            "invalid_month",
            format!("{text:?} is not a month; write it as yyyy-mm, for example 2026-11"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_parse_strictly_and_print_back() {
        assert_eq!(Month::parse("2026-11").unwrap().to_string(), "2026-11");
        assert_eq!(Month::parse("0999-01").unwrap().to_string(), "0999-01");
        for bad in [
            "2026-13",
            "2026-00",
            "2026-1",
            "26-11",
            "2026/11",
            "2026-11-01",
            "",
            "abcd-ef",
            "2026-+1",
        ] {
            assert_eq!(Month::parse(bad), None, "{bad}");
        }
        let ts = time::parse("2026-12-31T23:59:59.999Z").unwrap();
        assert_eq!(Month::of(ts).to_string(), "2026-12");
        let next = time::parse("2027-01-01T00:00:00Z").unwrap();
        assert_eq!(Month::of(next).to_string(), "2027-01");
        assert!(Month::of(ts) < Month::of(next));
    }
}
