//! Activity stats: counting what the assignments stream says happened (redemptions, launches,
//! cancellations), each once, and reading a pool's picture and an organization's months.
//!
//! The stream delivers at least once, in order per item; the events edge
//! (`events::stats`) reads its records into `Activity`s. Each activity has a marker keyed by
//! its assignment and happening, written only if absent in the same transaction as the counts
//! it adds to, so a second delivery finds the marker and counts nothing. Nothing here is
//! written by the redemption: the stream carries it.

use chrono::NaiveDate;

use crate::domain::{Activity, DayCounts, Month, MonthCounts, PoolStats};
use crate::error::{Error, Result, Validator};
use crate::identity::OrgId;
use crate::ops::pools;
use crate::store::{ActivityCounts, Pools, Stats};
use crate::time::Timestamp;

/// The most days a pool's picture shows: the last ones, for a pool open longer.
pub const MAX_DAYS: i64 = 1000;
/// Months of redemptions shown when a request names none: the last year.
pub const DEFAULT_MONTHS: u32 = 12;
/// The most months of redemptions one request may ask for.
pub const MAX_MONTHS: u32 = 36;

/// What counting a batch of activities did.
#[derive(Debug)]
pub struct Counted {
    /// Activities this call counted (those counted before, by an earlier delivery, not).
    pub written: usize,
    /// The first activity not counted, by its index in the batch, and why: it and those after
    /// it are to be delivered again.
    pub failed: Option<(usize, Error)>,
}

/// Counts a batch of activities in order. Reports the first one not counted (the first of
/// the chunk that failed), so the batch is retried from there: activities before it are
/// counted, and it and those after are not, or are counted already, which a retry finds.
pub async fn count(store: &dyn ActivityCounts, activities: &[Activity]) -> Counted {
    if activities.is_empty() {
        return Counted {
            written: 0,
            failed: None,
        };
    }
    let settled = store.count_activities(activities).await;
    let written = settled.settled.iter().filter(|&&new| new).count();
    // A store that says it failed after settling everything is not believed: the first
    // activity is retried, which is safe as counting is idempotent.
    let failed = settled.failure.map(|error| {
        let index = if settled.settled.len() < activities.len() {
            settled.settled.len()
        } else {
            0
        };
        (index, error)
    });
    Counted { written, failed }
}

/// The days a pool's picture covers at `now`: from its opening to today, or to the last day an
/// assignment of it can still be launched (its expiry plus the content availability), the
/// earlier; at most the last `MAX_DAYS`. `None` before it opens.
pub fn days_shown(pool: &crate::domain::Pool, now: Timestamp) -> Option<(NaiveDate, NaiveDate)> {
    let last_launch = pool.assignment_expiry(pool.expires_at) - chrono::Duration::milliseconds(1);
    let to = now.min(last_launch).date_naive();
    let from = pool.starts_at.date_naive();
    if from > to {
        return None;
    }
    let earliest = to - chrono::Duration::days(MAX_DAYS - 1);
    Some((from.max(earliest), to))
}

/// A pool's picture: its funnel (keys and redemptions from its own counts, launched
/// assignments from the stream's) and every day it covers, zero-filled.
pub async fn pool_stats<S: Pools + Stats + ?Sized>(
    store: &S,
    org: &OrgId,
    pool_id: &str,
    now: Timestamp,
) -> Result<PoolStats> {
    let pool = pools::get_pool(store, org, pool_id).await?;
    let totals = store.pool_totals(&pool.pool_id).await?;
    let days = match days_shown(&pool, now) {
        None => Vec::new(),
        Some((from, to)) => {
            let counted = store.pool_days(&pool.pool_id, from, to).await?;
            zero_filled(from, to, counted)
        }
    };
    Ok(PoolStats {
        pool_id: pool.pool_id,
        keys: pool.total_keys,
        redeemed: pool.redeemed_count,
        launched: totals.launched_assignments,
        days,
    })
}

/// Every day from `from` to `to`, with the counts of those `counted` (oldest first).
fn zero_filled(from: NaiveDate, to: NaiveDate, counted: Vec<DayCounts>) -> Vec<DayCounts> {
    let mut counted = counted.into_iter().peekable();
    from.iter_days()
        .take_while(|d| *d <= to)
        .map(|date| {
            while counted.peek().is_some_and(|c| c.date < date) {
                counted.next();
            }
            match counted.peek() {
                Some(c) if c.date == date => *c,
                _ => DayCounts::zero(date),
            }
        })
        .collect()
}

/// Reads `months` as a request gives it: 1 to `MAX_MONTHS`, `DEFAULT_MONTHS` when absent.
pub fn parse_months(months: Option<&str>) -> Result<u32> {
    let mut v = Validator::default();
    let months = match months {
        None | Some("") => Some(DEFAULT_MONTHS),
        Some(text) => v.check(
            "months",
            text.parse::<u32>()
                .ok()
                .filter(|m| (1..=MAX_MONTHS).contains(m))
                .ok_or(format!("months is a whole number from 1 to {MAX_MONTHS}")),
        ),
    };
    v.finish()?;
    Ok(months.unwrap_or(DEFAULT_MONTHS))
}

/// The organization's redemptions and cancellations in each of the last `months` UTC months,
/// this one included, zero-filled, oldest first.
pub async fn monthly_redemptions<S: Stats + ?Sized>(
    store: &S,
    org: &OrgId,
    months: u32,
    now: Timestamp,
) -> Result<Vec<MonthCounts>> {
    let to = Month::of(now);
    let mut shown = vec![to];
    for _ in 1..months {
        let earlier = shown.last().copied().unwrap_or(to).previous();
        shown.push(earlier);
    }
    shown.reverse();
    let from = shown.first().copied().unwrap_or(to);
    let counted = store.month_counts(org, from, to).await?;
    Ok(shown
        .into_iter()
        .map(|month| {
            counted
                .iter()
                .find(|c| c.month == month)
                .copied()
                .unwrap_or(MonthCounts::zero(month))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn days_are_zero_filled_between_the_counted_ones() {
        let mut counted = DayCounts::zero(day("2026-03-02"));
        counted.redeemed = 3;
        let days = zero_filled(day("2026-02-27"), day("2026-03-03"), vec![counted]);
        let dates: Vec<String> = days.iter().map(|d| d.date.to_string()).collect();
        assert_eq!(
            dates,
            [
                "2026-02-27",
                "2026-02-28",
                "2026-03-01",
                "2026-03-02",
                "2026-03-03"
            ]
        );
        assert_eq!(
            days.iter().map(|d| d.redeemed).collect::<Vec<_>>(),
            [0, 0, 0, 3, 0]
        );
    }

    #[test]
    fn months_are_checked() {
        assert_eq!(parse_months(None).unwrap(), 12);
        assert_eq!(parse_months(Some("36")).unwrap(), 36);
        for bad in ["0", "37", "-1", "x", "1.5"] {
            assert!(parse_months(Some(bad)).is_err(), "{bad}");
        }
    }
}
