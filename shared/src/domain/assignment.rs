//! A learner's course assignment, created by redeeming a key.

use serde::{Deserialize, Serialize};

use super::ids::{AssignmentId, CourseId, PoolId};
use super::pool::Pool;
use crate::error::{Error, ErrorCode, Result};
use crate::identity::{OrgId, UserId};
use crate::keys::KeyCode;
use crate::time::{self, Timestamp};

/// Hours after a redemption in which an admin may cancel an unlaunched assignment.
pub const CANCEL_WINDOW_HOURS: i64 = 24;

/// A learner's access to a course, created by redeeming a key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    pub assignment_id: AssignmentId,
    pub learner: UserId,
    pub org: OrgId,
    pub pool_id: PoolId,
    pub course_id: CourseId,
    /// The course's title, from its pool; `None` for an assignment made before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub course_title: Option<String>,
    pub key: KeyCode,
    #[serde(with = "time::rfc3339")]
    pub redeemed_at: Timestamp,
    #[serde(with = "time::rfc3339")]
    pub expires_at: Timestamp,
    #[serde(default)]
    pub launch_count: u64,
    #[serde(default, with = "time::rfc3339::option")]
    pub last_launched_at: Option<Timestamp>,
    /// When an admin cancelled it; a cancelled assignment cannot be launched. Absent from the
    /// item until then, which conditions test with `attribute_not_exists`.
    #[serde(
        default,
        with = "time::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub cancelled_at: Option<Timestamp>,
}

impl Assignment {
    /// A new assignment of `pool` for `learner`, from `key` redeemed at `now`: lasts the
    /// pool's content availability.
    pub fn redeemed(pool: &Pool, learner: &UserId, key: &KeyCode, now: Timestamp) -> Self {
        Self {
            assignment_id: AssignmentId::new(),
            learner: learner.clone(),
            org: pool.org.clone(),
            pool_id: pool.pool_id,
            course_id: pool.course_id,
            course_title: pool.course_title.clone(),
            key: key.clone(),
            redeemed_at: now,
            expires_at: pool.assignment_expiry(now),
            launch_count: 0,
            last_launched_at: None,
            cancelled_at: None,
        }
    }

    /// True while the learner may launch the course.
    pub fn is_valid(&self, now: Timestamp) -> bool {
        now < self.expires_at && self.cancelled_at.is_none()
    }

    /// Whether an admin may cancel it at `now`: within 24 hours of the redemption, never
    /// launched, not cancelled yet.
    pub fn check_cancellable(&self, now: Timestamp) -> Result<()> {
        if self.cancelled_at.is_some() {
            return Err(Error::Conflict {
                code: ErrorCode::AssignmentAlreadyCancelled,
                message: "this assignment was cancelled already".into(),
            });
        }
        if self.launch_count > 0 {
            return Err(Error::Conflict {
                code: ErrorCode::AssignmentLaunched,
                message:
                    "the learner has launched this assignment, so it can no longer be cancelled"
                        .into(),
            });
        }
        let deadline = self.cancel_deadline();
        if now >= deadline {
            return Err(Error::Conflict {
                code: ErrorCode::CancellationWindowPassed,
                message: format!(
                    "an assignment can be cancelled for {CANCEL_WINDOW_HOURS} hours after its redemption; this one's window closed at {}",
                    time::format(&deadline)
                ),
            });
        }
        Ok(())
    }

    /// The end of the window in which an admin may cancel it.
    pub fn cancel_deadline(&self) -> Timestamp {
        self.redeemed_at + chrono::Duration::hours(CANCEL_WINDOW_HOURS)
    }
}
