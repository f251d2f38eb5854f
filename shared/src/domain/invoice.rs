//! Invoices: a month, and the lines billed in it.

use std::fmt;

use chrono::Datelike;
use serde::{Deserialize, Serialize};

use super::assignment::Assignment;
use super::ids::{AssignmentId, CourseId, PoolId};
use crate::identity::{OrgId, UserId};
use crate::keys::KeyCode;
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

    /// The month before this one.
    pub fn previous(self) -> Self {
        if self.month == 1 {
            Self {
                year: self.year - 1,
                month: 12,
            }
        } else {
            Self {
                year: self.year,
                month: self.month - 1,
            }
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
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time;

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

    #[test]
    fn the_month_before_january_is_last_years_december() {
        let previous = |m: &str| Month::parse(m).unwrap().previous().to_string();
        assert_eq!(previous("2027-01"), "2026-12");
        assert_eq!(previous("2026-12"), "2026-11");
    }
}
