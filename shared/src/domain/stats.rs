//! Activity counts kept from the assignments stream: what happened to assignments (redeemed,
//! launched, cancelled), counted per pool and UTC day and per organization and month.

use chrono::NaiveDate;

use super::ids::{AssignmentId, PoolId};
use super::invoice::Month;
use crate::identity::OrgId;
use crate::time::Timestamp;

/// What happened to an assignment, once: each is counted exactly once however often the
/// stream delivers its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Happening {
    /// The assignment was made: a key was redeemed.
    Redeemed,
    /// The assignment's `n`th launch (from 1); the first makes it a launched assignment.
    Launched(u64),
    /// An admin cancelled it.
    Cancelled,
}

impl Happening {
    /// The happening's stable name among an assignment's happenings, for its marker.
    pub fn name(self) -> String {
        match self {
            Self::Redeemed => "REDEEMED".into(),
            Self::Launched(n) => format!("LAUNCH#{n:06}"),
            Self::Cancelled => "CANCELLED".into(),
        }
    }
}

/// One happening of one assignment, with where and when it counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    pub assignment_id: AssignmentId,
    pub org: OrgId,
    pub pool_id: PoolId,
    pub happening: Happening,
    /// When it happened; it counts on this UTC day and in this UTC month.
    pub at: Timestamp,
}

impl Activity {
    /// The UTC day it counts on.
    pub fn day(&self) -> NaiveDate {
        self.at.date_naive()
    }

    /// The UTC month it counts in.
    pub fn month(&self) -> Month {
        Month::of(self.at)
    }
}

/// A pool's counts on one UTC day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayCounts {
    pub date: NaiveDate,
    /// Redemptions that day (cancelled ones included; their cancellation counts on its day).
    pub redeemed: u64,
    /// Launches that day (every launch, not only first ones).
    pub launched: u64,
    /// Cancellations that day.
    pub cancelled: u64,
}

impl DayCounts {
    /// A day with nothing counted.
    pub fn zero(date: NaiveDate) -> Self {
        Self {
            date,
            redeemed: 0,
            launched: 0,
            cancelled: 0,
        }
    }
}

/// A pool's counts since it opened.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PoolTotals {
    /// Assignments launched at least once.
    pub launched_assignments: u64,
    /// Launches in all.
    pub launches: u64,
}

/// An organization's counts in one UTC month.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonthCounts {
    pub month: Month,
    /// Redemptions that month (cancelled ones included).
    pub redeemed: u64,
    /// Cancellations that month.
    pub cancelled: u64,
}

impl MonthCounts {
    /// A month with nothing counted.
    pub fn zero(month: Month) -> Self {
        Self {
            month,
            redeemed: 0,
            cancelled: 0,
        }
    }
}

/// A pool's picture: the funnel and its days.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolStats {
    pub pool_id: PoolId,
    /// Keys in the pool now.
    pub keys: u64,
    /// Keys redeemed now (cancelled redemptions not included).
    pub redeemed: u64,
    /// Assignments of the pool launched at least once.
    pub launched: u64,
    /// Every day from the pool's opening to today (or the last day its assignments can be
    /// launched), zero-filled, oldest first.
    pub days: Vec<DayCounts>,
}
