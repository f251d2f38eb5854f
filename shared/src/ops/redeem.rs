//! Redemption: a learner's key becomes a course assignment, exactly once.

use crate::domain::{Assignment, AssignmentId, KeyRecord, KeyStatus};
use crate::error::{Error, Result};
use crate::identity::UserId;
use crate::keys::{self, KeyLookup};
use crate::store::{Assignments, Keys, Pools, RedeemConflict, Throttle};
use crate::time::Timestamp;

/// Failed attempts a learner may make in one throttling window.
pub const MAX_FAILED_ATTEMPTS: u64 = 10;
/// Length of a throttling window, in seconds.
pub const THROTTLE_WINDOW_SECS: i64 = 15 * 60;
/// How often a redemption re-reads and retries after losing a race it can settle.
pub(super) const MAX_ROUNDS: usize = 5;

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
pub async fn redeem<S: Pools + Keys + Assignments + Throttle + ?Sized>(
    store: &S,
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
async fn find_key<S: Keys + ?Sized>(store: &S, typed: &str) -> Result<Option<KeyRecord>> {
    let KeyLookup::Candidates(candidates) = keys::lookup_candidates(typed) else {
        return Ok(None);
    };
    for candidate in &candidates {
        // A pending key (of a paste not committed yet) is no key to a learner.
        if let Some(record) = store.get_key(candidate).await?
            && record.status != KeyStatus::Pending
        {
            return Ok(Some(record));
        }
    }
    Ok(None)
}

/// A redeemed key: the same learner gets their assignment back, anyone else a conflict.
async fn existing_for<S: Assignments + ?Sized>(
    store: &S,
    learner: &UserId,
    record: &KeyRecord,
) -> Result<Redeemed> {
    match (&record.redeemed_by, &record.assignment_id) {
        (Some(by), Some(id)) if by == learner => {
            load(store, learner, id).await.map(Redeemed::Existing)
        }
        _ => Err(Error::KeyAlreadyRedeemed),
    }
}

pub(super) async fn load<S: Assignments + ?Sized>(
    store: &S,
    learner: &UserId,
    id: &AssignmentId,
) -> Result<Assignment> {
    store
        .get_assignment(learner, id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("assignment {id} is referenced but missing").into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time;

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
