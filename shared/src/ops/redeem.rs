//! Redemption: a learner's key becomes a course assignment, exactly once.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::domain::{
    Assignment, AssignmentId, CounterId, KeyRecord, KeyStatus, Limit, Pool, PoolId,
};
use crate::error::{Error, Result};
use crate::identity::OrgId;
use crate::identity::UserId;
use crate::keys::{self, KeyCode, KeyLookup, KeyTag};
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

/// Pools' settings as redemptions last read them, so that the happy path reads nothing before
/// it writes: a generated key's tag names its pool here. Safe to be behind, and to be misled
/// by a tag: the redemption transaction changes the key only while it belongs to the pool
/// read, and counts it only while the pool is still at the version read; a pool that looks
/// closed is read again before the learner is told so.
#[derive(Debug)]
pub struct PoolCache {
    entries: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    pools: HashMap<PoolId, (Pool, Instant)>,
    /// The pool that each tag names; `None` once two pools that drew the tag were seen.
    tags: HashMap<KeyTag, Option<PoolId>>,
    /// Counters lately found not quiet (a learner or an address that failed lately), and
    /// until when the shortcut leaves their redemptions alone: its write would be refused.
    busy: HashMap<CounterId, Instant>,
}

impl PoolCache {
    /// How long a pool's settings are used before they are read again, whatever happens.
    const TTL: Duration = Duration::from_secs(60);
    /// Pools kept; when full, the stale ones go, then all.
    const CAPACITY: usize = 10_000;

    pub fn new() -> Self {
        Self {
            entries: Mutex::new(Entries::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, org: &OrgId, id: &PoolId) -> Option<Pool> {
        self.lock()
            .pools
            .get(id)
            .filter(|(pool, at)| pool.org == *org && at.elapsed() < Self::TTL)
            .map(|(pool, _)| pool.clone())
    }

    /// The pool whose generated keys carry `tag`, when this process read it lately.
    fn tagged(&self, tag: &KeyTag) -> Option<Pool> {
        let entries = self.lock();
        let id = entries.tags.get(tag)?.as_ref()?;
        entries
            .pools
            .get(id)
            .filter(|(pool, at)| pool.key_tag == Some(*tag) && at.elapsed() < Self::TTL)
            .map(|(pool, _)| pool.clone())
    }

    fn put(&self, pool: &Pool) {
        let mut entries = self.lock();
        if entries.pools.len() >= Self::CAPACITY {
            entries.pools.retain(|_, (_, at)| at.elapsed() < Self::TTL);
            if entries.pools.len() >= Self::CAPACITY {
                entries.pools.clear();
            }
            let Entries { pools, tags, .. } = &mut *entries;
            tags.retain(|_, id| id.is_none_or(|id| pools.contains_key(&id)));
        }
        if let Some(tag) = pool.key_tag {
            // Two live pools with one tag: the tag names neither, rather than each in turn.
            let named = match entries.tags.get(&tag) {
                Some(Some(other))
                    if *other != pool.pool_id && entries.pools.contains_key(other) =>
                {
                    None
                }
                Some(None) => None,
                _ => Some(pool.pool_id),
            };
            entries.tags.insert(tag, named);
        }
        entries
            .pools
            .insert(pool.pool_id, (pool.clone(), Instant::now()));
    }

    fn forget(&self, id: &PoolId) {
        let mut entries = self.lock();
        if let Some((pool, _)) = entries.pools.remove(id)
            && let Some(tag) = pool.key_tag
            && entries.tags.get(&tag) == Some(&Some(*id))
        {
            entries.tags.remove(&tag);
        }
    }

    /// Leaves the shortcut alone for redemptions counted against `id` for `window`.
    fn note_busy(&self, id: &CounterId, window: Duration) {
        let mut entries = self.lock();
        if entries.busy.len() >= Self::CAPACITY {
            let now = Instant::now();
            entries.busy.retain(|_, until| *until > now);
            if entries.busy.len() >= Self::CAPACITY {
                entries.busy.clear();
            }
        }
        entries.busy.insert(id.clone(), Instant::now() + window);
    }

    /// True when one of `ids` was lately found not quiet.
    fn any_busy<'a>(&self, mut ids: impl Iterator<Item = &'a CounterId>) -> bool {
        let entries = self.lock();
        let now = Instant::now();
        ids.any(|id| entries.busy.get(id).is_some_and(|until| *until > now))
    }
}

impl Default for PoolCache {
    fn default() -> Self {
        Self::new()
    }
}

/// Redeems a typed key for a learner, exactly once whatever the concurrency.
///
/// Every answer that tells something about the typed key other than success (not a valid key,
/// redeemed by someone else, a pool not open, a key withdrawn from the learner, another key of
/// a pool the learner holds) counts as a failure, per learner and per client address, and is
/// only given once the count is written under its limit; a success commits only while the
/// limits still hold. So however many guesses race, no more are answered than the limits allow.
///
/// The happy path is one transaction and no read: a generated key's tag names its pool in
/// `pools`, and the transaction checks that the learner's and the address's failure counters
/// are quiet (nothing in this window). When any of that is wrong the transaction changes
/// nothing and the redemption goes the long way: one round of reads (the key and the counters), then the
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
    let limits = limits_of(who, settings);
    let candidates = match keys::lookup_candidates(typed) {
        KeyLookup::Candidates(candidates) => candidates,
        KeyLookup::Invalid => Vec::new(),
    };
    if let [key] = candidates.as_slice()
        && let Some(assignment) = redeem_unread(store, pools, who, &limits, key, now).await?
    {
        return Ok(Redeemed::Created(assignment));
    }
    let answer = redeem_read(store, pools, who, limits.clone(), &candidates, now).await;
    // A failure was counted: the learner's and the address's next redemptions would find
    // their counters busy, so they go the long way at once.
    if answer.as_ref().is_err_and(counted) {
        for (id, limit) in &limits {
            pools.note_busy(id, window_of(limit));
        }
    }
    answer
}

/// How long a limit's counter stays busy after an event: one window.
fn window_of(limit: &Limit) -> Duration {
    Duration::from_secs(limit.window_secs.max(1).unsigned_abs())
}

/// True for the answers that count a failure before they are given.
fn counted(e: &Error) -> bool {
    matches!(
        e,
        Error::InvalidKey
            | Error::KeyAlreadyRedeemed
            | Error::PoolNotActive { .. }
            | Error::Throttled { .. }
            | Error::Conflict {
                code: "key_cancelled",
                ..
            }
    )
}

/// The long way: the key and the counters read in one round, then the transaction.
async fn redeem_read<S: Pools + Keys + Assignments + Counters + ?Sized>(
    store: &S,
    pools: &PoolCache,
    who: &Redeemer<'_>,
    limits: Vec<(CounterId, Limit)>,
    candidates: &[KeyCode],
    now: Timestamp,
) -> Result<Redeemed> {
    let learner = who.learner;
    let ids = Guard::ids(&limits);
    // The key and the counters are read together: one round.
    let (found, states) = store.keys_and_counters(candidates, &ids).await?;
    for ((id, limit), state) in limits.iter().zip(&states) {
        if !limit.is_quiet(*state, now) {
            pools.note_busy(id, window_of(limit));
        }
    }
    let mut guard = Guard::new(limits, states, now);
    // Over a limit: refused before anything read of the key is used.
    let mut checks = guard.conditions(1)?;
    // As typed first; a pending key (of a paste not committed yet) is no key to a learner.
    let Some(mut record) = found
        .into_iter()
        .flatten()
        .find(|r| r.status != KeyStatus::Pending)
    else {
        return Err(guard.fail(store, Error::InvalidKey).await);
    };

    let mut trust_cache = true;
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
                None => return Err(guard.fail(store, Error::InvalidKey).await),
            },
        };
        if let Err(e) = pool.check_active(now) {
            // The learner is told the pool is closed only from a fresh read.
            if from_cache {
                trust_cache = false;
                continue;
            }
            return Err(guard.fail(store, e).await);
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
                            guard.count(store, 1).await?;
                        }
                        return Ok(Redeemed::Existing(existing));
                    }
                }
            }
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

/// The shortcut: the key's pool from its tag, and the transaction sent without reading
/// anything, on the condition that the learner's and the address's counters are quiet (no
/// failure in this window, and room in the last one: [`Limit::quiet`]); skipped for
/// counters this process lately found busy.
/// `None` when the shortcut does not apply or its transaction was refused (it changed
/// nothing, and told nothing to anyone): the caller goes the long way and finds out why.
async fn redeem_unread<S: Assignments + ?Sized>(
    store: &S,
    pools: &PoolCache,
    who: &Redeemer<'_>,
    limits: &[(CounterId, Limit)],
    key: &KeyCode,
    now: Timestamp,
) -> Result<Option<Assignment>> {
    if pools.any_busy(limits.iter().map(|(id, _)| id)) {
        return Ok(None);
    }
    let Some(pool) = key.tag().and_then(|tag| pools.tagged(&tag)) else {
        return Ok(None);
    };
    if pool.check_active(now).is_err() {
        return Ok(None);
    }
    let assignment = Assignment::redeemed(&pool, who.learner, key, now);
    let quiet: Vec<_> = limits
        .iter()
        .map(|(id, limit)| (id.clone(), limit.quiet(now)))
        .collect();
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
