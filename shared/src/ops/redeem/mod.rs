//! Redemption: a learner's key becomes a course assignment, exactly once.

mod pool_cache;
mod throttle;

use std::net::IpAddr;

pub use pool_cache::PoolCache;

use super::assignments::load;
use crate::domain::{Assignment, KeyRecord, KeyStatus};
use crate::error::{Error, ErrorCode, Result};
use crate::identity::UserId;
use crate::keys::{self, KeyCode, KeyLookup};
use crate::settings::Settings;
use crate::store::{Assignments, Counters, Keys, Pools, RedeemConflict};
use crate::time::Timestamp;
use throttle::{Limits, Throttle};

/// How often a redemption re-reads and retries after losing a race it can settle.
const MAX_ROUNDS: usize = 5;

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

/// Redeems a typed key for a learner, exactly once whatever the concurrency.
///
/// Every answer that tells something about the typed key other than success (not a valid key,
/// a typo, redeemed by someone else, a pool not open, a key withdrawn from the learner,
/// another key of a pool the learner holds) counts as a failure of the learner, and is only
/// given once the count is written under the learner's limit; a success commits only while
/// the learner is under it. The client address counts only misses of guessable keys
/// ([`throttle`] says why), so a classroom behind one address is never locked out by its
/// own races, typos and early birds, while any number of accounts behind one address get no
/// more answers about custom keys than its limit.
///
/// The happy path is one transaction and no read: a generated key's tag names its pool in
/// `pools`, and the transaction checks that the learner's failure counter is quiet (nothing
/// in this window). When any of that is wrong the transaction changes nothing and the
/// redemption goes the long way: one round of reads (the key and the counters), then the
/// transaction with the pool's settings from `pools` or the store. The learner's one
/// assignment per pool is a condition of the transaction, read only when it fails.
#[tracing::instrument(skip_all, fields(learner = %who.learner))]
pub async fn redeem<S: Pools + Keys + Assignments + Counters + ?Sized>(
    store: &S,
    settings: &Settings,
    pools: &PoolCache,
    who: &Redeemer<'_>,
    typed: &str,
    now: Timestamp,
) -> Result<Redeemed> {
    let candidates = match keys::lookup_candidates(typed) {
        KeyLookup::Candidates(candidates) => candidates,
        KeyLookup::Mistyped => {
            return Err(
                refuse_unread(store, settings, pools, who, Error::key_mistyped(), now).await,
            );
        }
        KeyLookup::Invalid => {
            return Err(refuse_unread(store, settings, pools, who, Error::InvalidKey, now).await);
        }
    };
    // A generated key with a valid check symbol cannot be guessed: the address is left alone.
    let guessable = !matches!(candidates.as_slice(), [key] if key.is_valid_generated());
    let limits = Limits::of(who.learner, who.address, settings, guessable);
    if !guessable
        && let [key] = candidates.as_slice()
        && let Some(assignment) = redeem_unread(store, pools, who, &limits, key, now).await?
    {
        return Ok(Redeemed::Created(assignment));
    }
    redeem_read(store, pools, who, limits, &candidates, now).await
}

/// An answer known without reading any key (a typo the check symbol caught, or no key at all):
/// counted against the learner alone, or refused once the learner is at the limit.
async fn refuse_unread<S: Counters + ?Sized>(
    store: &S,
    settings: &Settings,
    pools: &PoolCache,
    who: &Redeemer<'_>,
    error: Error,
    now: Timestamp,
) -> Error {
    let limits = Limits::of(who.learner, who.address, settings, false);
    match Throttle::read_learner(store, pools, limits, now).await {
        Ok(mut throttle) => throttle.fail(store, error).await,
        Err(e) => e,
    }
}

/// The long way: the key and the counters read in one round, then the transaction.
async fn redeem_read<S: Pools + Keys + Assignments + Counters + ?Sized>(
    store: &S,
    pools: &PoolCache,
    who: &Redeemer<'_>,
    limits: Limits,
    candidates: &[KeyCode],
    now: Timestamp,
) -> Result<Redeemed> {
    let learner = who.learner;
    // The key and the counters are read together: one round.
    let (found, states) = store.keys_and_counters(candidates, &limits.ids()).await?;
    let mut throttle = Throttle::new(pools, limits, states, now);
    // Over a limit: refused before anything read of the key is used.
    let mut checks = throttle.admit()?;
    // As typed first; a pending key (of a paste not committed yet) is no key to a learner.
    let Some(mut record) = found
        .into_iter()
        .flatten()
        .find(|r| r.status != KeyStatus::Pending)
    else {
        let error = match candidates {
            [typed] if keys::reads_as_mistyped(typed) => Error::key_mistyped(),
            _ => Error::InvalidKey,
        };
        return Err(throttle.miss(store, error).await);
    };

    let mut trust_cache = true;
    for _ in 0..MAX_ROUNDS {
        if record.barred.contains(learner) {
            let cancelled = Error::Conflict {
                code: ErrorCode::KeyCancelled,
                message: "your assignment from this key was cancelled by its organization; ask \
                          them for another key"
                    .into(),
            };
            return Err(throttle.fail(store, cancelled).await);
        }
        if record.status == KeyStatus::Redeemed {
            match existing_for(store, learner, &record).await {
                // Cancelled since the key was read: read it again.
                Ok(Redeemed::Existing(a)) if a.cancelled_at.is_some() => {
                    record = store.get_key(&record.key).await?.ok_or(Error::InvalidKey)?;
                    continue;
                }
                Ok(answer) => return Ok(answer),
                Err(e @ Error::KeyAlreadyRedeemed) => return Err(throttle.fail(store, e).await),
                Err(e) => return Err(e),
            }
        }
        let cached = trust_cache
            .then(|| pools.get(&record.org, &record.pool_id))
            .flatten();
        let from_cache = cached.is_some();
        let pool = match cached {
            Some(pool) => pool,
            None => match store
                .get_pool_settings(&record.org, &record.pool_id)
                .await?
            {
                Some(pool) => {
                    pools.put(&pool);
                    pool
                }
                None => return Err(throttle.miss(store, Error::InvalidKey).await),
            },
        };
        if let Err(e) = pool.check_active(now) {
            // The learner is told the pool is closed only from a fresh read.
            if from_cache {
                trust_cache = false;
                continue;
            }
            return Err(throttle.fail(store, e).await);
        }
        let assignment = Assignment::redeemed(&pool, learner, &record.key, now);
        match store.redeem(&assignment, &pool, now, &checks).await? {
            Ok(()) => {
                tracing::info!(assignment = %assignment.assignment_id, pool = %pool.pool_id, "key redeemed");
                return Ok(Redeemed::Created(assignment));
            }
            Err(RedeemConflict::KeyNotAvailable) => {
                record = store.get_key(&record.key).await?.ok_or(Error::InvalidKey)?;
            }
            // The pool was edited since it was read (deactivated, dates or availability
            // changed): the next round reads it again.
            Err(RedeemConflict::PoolNotActive) => {
                pools.forget(&pool.pool_id);
                trust_cache = false;
            }
            // The learner holds an assignment of this pool already (the guard says which).
            Err(RedeemConflict::LearnerHoldsAssignment) => {
                if let Some(id) = store.pool_assignment_of(&pool.pool_id, learner).await? {
                    let existing = load(store, learner, &id).await?;
                    // A guard read just before a cancellation removed it: the next round
                    // tries again.
                    if existing.cancelled_at.is_none() {
                        // Another key of a pool the learner holds tells that this key is valid.
                        if existing.key != record.key {
                            throttle.count(store).await?;
                        }
                        return Ok(Redeemed::Existing(existing));
                    }
                }
            }
            // Failures of this learner counted meanwhile: refused if they reached the limit.
            Err(RedeemConflict::LimitChanged) => {
                throttle.reread(store).await?;
                checks = throttle.admit()?;
            }
        }
    }
    Err(Error::Conflict {
        code: ErrorCode::RedemptionContended,
        message: "the key is being changed by other requests; try again".into(),
    })
}

/// The shortcut: the key's pool from its tag, and the transaction sent without reading
/// anything, on the condition that the learner's counter is quiet (no failure in this window,
/// and room in the last one: [`crate::domain::Limit::quiet`]); skipped for a learner this
/// process lately found busy.
/// `None` when the shortcut does not apply or its transaction was refused (it changed
/// nothing, and told nothing to anyone): the caller goes the long way and finds out why.
async fn redeem_unread<S: Assignments + ?Sized>(
    store: &S,
    pools: &PoolCache,
    who: &Redeemer<'_>,
    limits: &Limits,
    key: &KeyCode,
    now: Timestamp,
) -> Result<Option<Assignment>> {
    let (learner_id, learner_limit) = limits.learner();
    if pools.is_busy(learner_id) {
        return Ok(None);
    }
    let Some(pool) = key.tag().and_then(|tag| pools.tagged(&tag)) else {
        return Ok(None);
    };
    if pool.check_active(now).is_err() {
        return Ok(None);
    }
    let assignment = Assignment::redeemed(&pool, who.learner, key, now);
    let quiet = [(learner_id.clone(), learner_limit.quiet(now))];
    match store.redeem(&assignment, &pool, now, &quiet).await? {
        Ok(()) => {
            tracing::info!(assignment = %assignment.assignment_id, pool = %pool.pool_id, "key redeemed");
            Ok(Some(assignment))
        }
        Err(RedeemConflict::PoolNotActive) => {
            pools.forget(&pool.pool_id);
            Ok(None)
        }
        Err(_) => Ok(None),
    }
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
