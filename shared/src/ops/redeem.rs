//! Redemption: a learner's key becomes a course assignment, exactly once.

use std::net::IpAddr;

use crate::domain::{Assignment, AssignmentId, CounterId, KeyRecord, KeyStatus, Limit};
use crate::error::{Error, Result};
use crate::identity::UserId;
use crate::keys::{self, KeyLookup};
use crate::ops::limits::Guard;
use crate::settings::Settings;
use crate::store::{Assignments, Counters, Keys, Pools, RedeemConflict};
use crate::time::Timestamp;

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

/// Who is redeeming: the learner, and the client address the request came from when known.
#[derive(Debug, Clone)]
pub struct Redeemer<'a> {
    pub learner: &'a UserId,
    pub address: Option<IpAddr>,
}

/// The limits a redemption counts its failures against.
fn limits_of(who: &Redeemer<'_>, settings: &Settings) -> Vec<(CounterId, Limit)> {
    let mut limits = vec![(
        CounterId::Learner(who.learner.clone()),
        settings.learner_failures,
    )];
    if let Some(ip) = who.address {
        limits.push((CounterId::address(ip), settings.address_failures));
    }
    limits
}

/// Redeems a typed key for a learner, exactly once whatever the concurrency.
///
/// Every answer that tells something about the typed key other than success (not a valid key,
/// redeemed by someone else, a pool not open, a key withdrawn from the learner, another key of
/// a pool the learner holds) counts as a failure, per learner and per client address, and is
/// only given once the count is written under its limit; a success commits only while the
/// limits still hold. So however many guesses race, no more are answered than the limits allow.
#[tracing::instrument(skip_all, fields(learner = %who.learner))]
pub async fn redeem<S: Pools + Keys + Assignments + Counters + ?Sized>(
    store: &S,
    settings: &Settings,
    who: &Redeemer<'_>,
    typed: &str,
    now: Timestamp,
) -> Result<Redeemed> {
    let learner = who.learner;
    let limits = limits_of(who, settings);
    // The key and the counters are read together: on DynamoDB one round.
    let ids = Guard::ids(&limits);
    let (states, found) = tokio::try_join!(store.counters(&ids), find_key(store, typed))?;
    let mut guard = Guard::new(limits, states, now);
    // Over a limit: refused before anything read of the key is used.
    let mut checks = guard.conditions(1)?;
    let Some(mut record) = found else {
        return Err(guard.fail(store, Error::InvalidKey).await);
    };

    for _ in 0..MAX_ROUNDS {
        if record.barred.contains(learner) {
            let cancelled = Error::Conflict {
                code: "key_cancelled",
                message: "your assignment from this key was cancelled by its organization; ask \
                          them for another key"
                    .into(),
            };
            return Err(guard.fail(store, cancelled).await);
        }
        if record.status == KeyStatus::Redeemed {
            match existing_for(store, learner, &record).await {
                // Cancelled since the key was read: read it again.
                Ok(Redeemed::Existing(a)) if a.cancelled_at.is_some() => {
                    record = store.get_key(&record.key).await?.ok_or(Error::InvalidKey)?;
                    continue;
                }
                Ok(answer) => return Ok(answer),
                Err(e @ Error::KeyAlreadyRedeemed) => return Err(guard.fail(store, e).await),
                Err(e) => return Err(e),
            }
        }
        let (pool, held) = tokio::try_join!(
            store.get_pool(&record.org, &record.pool_id),
            store.pool_assignment_of(&record.pool_id, learner)
        )?;
        let Some(pool) = pool else {
            return Err(guard.fail(store, Error::InvalidKey).await);
        };
        if let Err(e) = pool.check_active(now) {
            return Err(guard.fail(store, e).await);
        }
        if let Some(id) = held {
            let existing = load(store, learner, &id).await?;
            // A guard read just before a cancellation removed it: the next round reads anew.
            if existing.cancelled_at.is_none() {
                // Another key of a pool the learner holds tells that this key is valid.
                if existing.key != record.key {
                    guard.count(store, 1).await?;
                }
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
        match store
            .redeem(&assignment, pool.version, now, &checks)
            .await?
        {
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
            // Concurrent failures counted meanwhile: refused if they reached a limit.
            Err(RedeemConflict::LimitChanged) => {
                guard.reread(store).await?;
                checks = guard.conditions(1)?;
            }
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
