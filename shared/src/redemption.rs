//! Redemption: a learner's key becomes a course assignment, exactly once; and what the
//! learner does with assignments afterwards.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::identity::{OrgId, UserId};
use crate::inventory::{KeyRecord, KeyStatus};
use crate::keys::{self, KeyCode, KeyLookup};
use crate::pools::{AssignmentId, CourseId, PoolId};
use crate::store::{Page, RedeemConflict, Store};
use crate::time::{self, Timestamp};

/// Failed attempts a learner may make in one throttling window.
pub const MAX_FAILED_ATTEMPTS: u64 = 10;
/// Length of a throttling window, in seconds.
pub const THROTTLE_WINDOW_SECS: i64 = 15 * 60;
/// Hours after a redemption in which an admin may cancel an unlaunched assignment.
pub const CANCEL_WINDOW_HOURS: i64 = 24;
/// How often a redemption re-reads and retries after losing a race it can settle.
const MAX_ROUNDS: usize = 5;

/// A learner's access to a course, created by redeeming a key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    pub assignment_id: AssignmentId,
    pub learner: UserId,
    pub org: OrgId,
    pub pool_id: PoolId,
    pub course_id: CourseId,
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
    /// True while the learner may launch the course.
    pub fn is_valid(&self, now: Timestamp) -> bool {
        now < self.expires_at && self.cancelled_at.is_none()
    }

    /// Whether an admin may cancel it at `now`: within 24 hours of the redemption, never
    /// launched, not cancelled yet.
    pub fn check_cancellable(&self, now: Timestamp) -> Result<()> {
        if self.cancelled_at.is_some() {
            return Err(Error::Conflict {
                code: "assignment_cancelled",
                message: "this assignment was cancelled already".into(),
            });
        }
        if self.launch_count > 0 {
            return Err(Error::Conflict {
                code: "assignment_launched",
                message:
                    "the learner has launched this assignment, so it can no longer be cancelled"
                        .into(),
            });
        }
        let deadline = self.cancel_deadline();
        if now >= deadline {
            return Err(Error::Conflict {
                code: "cancellation_window_passed",
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

/// The result of a redemption.
#[derive(Debug, Clone, PartialEq)]
pub enum Redeemed {
    /// This call created the assignment.
    Created(Assignment),
    /// The learner already had it (same key retried, or another key of the same pool).
    Existing(Assignment),
}

/// The throttling window that `now` falls in, and when it ends.
fn throttle_window(now: Timestamp) -> (String, Timestamp) {
    let start = now.timestamp() - now.timestamp().rem_euclid(THROTTLE_WINDOW_SECS);
    let end = chrono::DateTime::from_timestamp(start + THROTTLE_WINDOW_SECS, 0).unwrap_or(now);
    (start.to_string(), end)
}

/// Whole seconds until `end`, rounded up so that a client waiting that long is let in.
fn retry_after(now: Timestamp, end: Timestamp) -> u64 {
    let millis = (end - now).num_milliseconds().max(1) as u64;
    millis.div_ceil(1000)
}

/// Redeems a typed key for a learner, exactly once whatever the concurrency.
#[tracing::instrument(skip(store, typed), fields(learner = %learner))]
pub async fn redeem(
    store: &dyn Store,
    learner: &UserId,
    typed: &str,
    now: Timestamp,
) -> Result<Redeemed> {
    let (window, window_end) = throttle_window(now);
    // Independent reads go out together: on DynamoDB this halves the latency.
    let (failed, found) = tokio::try_join!(
        store.failed_attempts(learner, &window),
        find_key(store, typed)
    )?;
    if failed >= MAX_FAILED_ATTEMPTS {
        return Err(Error::Throttled {
            retry_after_secs: retry_after(now, window_end),
        });
    }
    let Some(mut record) = found else {
        let expiry = window_end + chrono::Duration::seconds(THROTTLE_WINDOW_SECS);
        store.add_failed_attempt(learner, &window, expiry).await?;
        return Err(Error::InvalidKey);
    };

    for _ in 0..MAX_ROUNDS {
        if record.barred.contains(learner) {
            return Err(Error::Conflict {
                code: "key_cancelled",
                message: "your assignment from this key was cancelled by its organization; ask \
                          them for another key"
                    .into(),
            });
        }
        if record.status == KeyStatus::Redeemed {
            match existing_for(store, learner, &record).await? {
                // Cancelled since the key was read: read it again.
                Redeemed::Existing(a) if a.cancelled_at.is_some() => {
                    record = store.get_key(&record.key).await?.ok_or(Error::InvalidKey)?;
                    continue;
                }
                answer => return Ok(answer),
            }
        }
        let (pool, held) = tokio::try_join!(
            store.get_pool(&record.org, &record.pool_id),
            store.pool_assignment_of(&record.pool_id, learner)
        )?;
        let pool = pool.ok_or(Error::InvalidKey)?;
        pool.check_active(now)?;
        if let Some(id) = held {
            let existing = load(store, learner, &id).await?;
            // A guard read just before a cancellation removed it: the next round reads anew.
            if existing.cancelled_at.is_none() {
                return Ok(Redeemed::Existing(existing));
            }
            continue;
        }
        let assignment = Assignment {
            assignment_id: AssignmentId::new(),
            learner: learner.clone(),
            org: pool.org.clone(),
            pool_id: pool.pool_id,
            course_id: pool.course_id,
            key: record.key.clone(),
            redeemed_at: now,
            expires_at: pool.assignment_expiry(now),
            launch_count: 0,
            last_launched_at: None,
            cancelled_at: None,
        };
        match store.redeem(&assignment, pool.version, now).await? {
            Ok(()) => {
                tracing::info!(assignment = %assignment.assignment_id, pool = %pool.pool_id, "key redeemed");
                return Ok(Redeemed::Created(assignment));
            }
            Err(RedeemConflict::KeyNotAvailable) => {
                record = store.get_key(&record.key).await?.ok_or(Error::InvalidKey)?;
            }
            // The pool changed under us (deactivated, dates or availability edited): the next
            // round reads it again.
            Err(RedeemConflict::PoolNotActive) => {}
            // A concurrent redemption of another key of this pool won: the next round finds it.
            Err(RedeemConflict::LearnerHoldsAssignment) => {}
        }
    }
    Err(Error::Conflict {
        code: "redemption_contended",
        message: "the key is being changed by other requests; try again".into(),
    })
}

/// The key a learner typed, trying the as-typed form first; `None` when there is no such key.
async fn find_key(store: &dyn Store, typed: &str) -> Result<Option<KeyRecord>> {
    let KeyLookup::Candidates(candidates) = keys::lookup_candidates(typed) else {
        return Ok(None);
    };
    for candidate in &candidates {
        if let Some(record) = store.get_key(candidate).await? {
            return Ok(Some(record));
        }
    }
    Ok(None)
}

/// A redeemed key: the same learner gets their assignment back, anyone else a conflict.
async fn existing_for(store: &dyn Store, learner: &UserId, record: &KeyRecord) -> Result<Redeemed> {
    match (&record.redeemed_by, &record.assignment_id) {
        (Some(by), Some(id)) if by == learner => {
            load(store, learner, id).await.map(Redeemed::Existing)
        }
        _ => Err(Error::KeyAlreadyRedeemed),
    }
}

async fn load(store: &dyn Store, learner: &UserId, id: &AssignmentId) -> Result<Assignment> {
    store
        .get_assignment(learner, id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("assignment {id} is referenced but missing").into())
}

/// One page of a learner's assignments, newest first.
pub async fn list_assignments(
    store: &dyn Store,
    learner: &UserId,
    cursor: Option<&str>,
    limit: usize,
) -> Result<Page<Assignment>> {
    store.list_assignments(learner, cursor, limit).await
}

/// Launches an assignment while it is valid; any number of times.
pub async fn launch(
    store: &dyn Store,
    learner: &UserId,
    assignment_id: &str,
    now: Timestamp,
) -> Result<Assignment> {
    let id = AssignmentId::parse(assignment_id).ok_or(Error::NotFound("assignment"))?;
    let assignment = store
        .get_assignment(learner, &id)
        .await?
        .ok_or(Error::NotFound("assignment"))?;
    check_launchable(&assignment, now)?;
    match store.record_launch(learner, &id, now).await? {
        Some(launched) => Ok(launched),
        // Cancelled between the read and the write: say so.
        None => {
            let current = store
                .get_assignment(learner, &id)
                .await?
                .ok_or(Error::NotFound("assignment"))?;
            check_launchable(&current, now)?;
            Err(anyhow::anyhow!("assignment {id} refused a launch for no known reason").into())
        }
    }
}

fn check_launchable(a: &Assignment, now: Timestamp) -> Result<()> {
    if let Some(cancelled_at) = a.cancelled_at {
        return Err(Error::AssignmentCancelled { cancelled_at });
    }
    if !a.is_valid(now) {
        return Err(Error::AssignmentExpired {
            expires_at: a.expires_at,
        });
    }
    Ok(())
}

/// Cancels an assignment of the admin's organization: the learner loses it, its key becomes
/// available again, and billing credits it. Only within 24 hours and before any launch.
#[tracing::instrument(skip(store), fields(org = %org))]
pub async fn cancel(
    store: &dyn Store,
    org: &OrgId,
    assignment_id: &str,
    now: Timestamp,
) -> Result<Assignment> {
    let id = AssignmentId::parse(assignment_id).ok_or(Error::NotFound("assignment"))?;
    let learner = store
        .assignment_learner(org, &id)
        .await?
        .ok_or(Error::NotFound("assignment"))?;
    for _ in 0..MAX_ROUNDS {
        let assignment = load(store, &learner, &id).await?;
        assignment.check_cancellable(now)?;
        if store.cancel_assignment(&assignment, now).await? {
            tracing::info!(assignment = %id, pool = %assignment.pool_id, "assignment cancelled");
            return Ok(Assignment {
                cancelled_at: Some(now),
                ..assignment
            });
        }
        // A launch or another cancellation got there first: the next round says which.
    }
    Err(Error::Conflict {
        code: "cancellation_contended",
        message: "the assignment is being changed by other requests; try again".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_windows_are_aligned_and_retry_after_is_positive() {
        let now = time::parse("2026-01-01T00:14:59Z").unwrap();
        let (w, end) = throttle_window(now);
        assert_eq!(end, time::parse("2026-01-01T00:15:00Z").unwrap());
        assert_eq!(retry_after(now, end), 1);
        let (w2, _) = throttle_window(end);
        assert_ne!(w, w2);
        // Rounded up: waiting the advertised time always reaches the next window.
        let just_after = now + chrono::Duration::milliseconds(1);
        assert_eq!(retry_after(just_after, end), 1);
        let mid = time::parse("2026-01-01T00:00:00.500Z").unwrap();
        let (w3, end3) = throttle_window(mid);
        assert_eq!(w3, w);
        let wait = retry_after(mid, end3);
        assert_eq!(wait, 900);
        assert_ne!(
            throttle_window(mid + chrono::Duration::seconds(wait as i64)).0,
            w3
        );
    }
}
