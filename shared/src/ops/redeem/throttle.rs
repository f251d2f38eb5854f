//! The redemption throttle: which answers count, and against whom.
//!
//! - Every failure counts against the learner (`KEYPOOL_LEARNER_FAILURES` in any 15 minutes),
//!   and a redemption commits only while the learner is under that limit (the transaction
//!   checks the learner's counter). A learner is one person: strict is right.
//! - Against the client address (`KEYPOOL_ADDRESS_FAILURES`) counts only a *miss*: a lookup of
//!   a guessable key that found nothing. A guessable key is anything but a generated key with
//!   a valid check symbol (2^75 guesses per pool: hopeless at any rate). Hits (a key redeemed
//!   by someone else, a pool not open yet, another key of a pool the learner holds) and typos
//!   the check symbol catches are never counted per address, and the address is neither read
//!   nor checked for a generated key: a classroom behind one NAT is one address, and its
//!   races, typos and early birds must not lock it out, nor its redemptions queue on one item.
//! - An address that has spent its misses is refused (429) every guessable key, hit or miss,
//!   so a refusal tells nothing about the key; its learners still redeem generated keys.

use std::net::IpAddr;
use std::time::Duration;

use super::pool_cache::PoolCache;
use crate::domain::{Condition, Counter, CounterId, Limit};
use crate::error::{Error, Result};
use crate::identity::UserId;
use crate::ops::limits::Guard;
use crate::settings::Settings;
use crate::store::Counters;
use crate::time::Timestamp;

/// The counters one redemption answers to, with the states it read.
pub(super) struct Throttle<'a> {
    learner: Guard,
    learner_id: CounterId,
    window: Duration,
    /// The client address's misses, for a guessable key from a known address.
    address: Option<Guard>,
    pools: &'a PoolCache,
}

/// What one redemption counts against: the learner, and the address for a guessable key.
pub(super) struct Limits {
    learner: (CounterId, Limit),
    address: Option<(CounterId, Limit)>,
}

impl Limits {
    /// A learner's redemption from `address`, of a key that is `guessable` or not.
    pub(super) fn of(
        learner: &UserId,
        address: Option<IpAddr>,
        settings: &Settings,
        guessable: bool,
    ) -> Self {
        Self {
            learner: (
                CounterId::Learner(learner.clone()),
                settings.learner_failures,
            ),
            address: address
                .filter(|_| guessable)
                .map(|ip| (CounterId::address(ip), settings.address_failures)),
        }
    }

    /// The counters to read, learner first.
    pub(super) fn ids(&self) -> Vec<CounterId> {
        std::iter::once(&self.learner)
            .chain(&self.address)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The learner's counter, which the redemption's transaction checks.
    pub(super) fn learner(&self) -> &(CounterId, Limit) {
        &self.learner
    }
}

impl<'a> Throttle<'a> {
    /// A throttle over the counters `limits.ids()` read as `states`; notes a learner found
    /// busy, so that this process's next redemptions of theirs skip the shortcut.
    pub(super) fn new(
        pools: &'a PoolCache,
        limits: Limits,
        states: Vec<Option<Counter>>,
        now: Timestamp,
    ) -> Self {
        let mut states = states.into_iter();
        let (learner_id, learner_limit) = limits.learner;
        let window = window_of(&learner_limit);
        let learner_state = states.next().flatten();
        if !learner_limit.is_quiet(learner_state, now) {
            pools.note_busy(&learner_id, window);
        }
        let address = limits.address.map(|limit| {
            let state = states.next().flatten();
            Guard::new(vec![limit], vec![state], now)
        });
        Self {
            learner: Guard::new(
                vec![(learner_id.clone(), learner_limit)],
                vec![learner_state],
                now,
            ),
            learner_id,
            window,
            address,
            pools,
        }
    }

    /// Reads the learner's counter alone: for an answer known without reading any key.
    pub(super) async fn read_learner<S: Counters + ?Sized>(
        store: &S,
        pools: &'a PoolCache,
        limits: Limits,
        now: Timestamp,
    ) -> Result<Self> {
        let limits = Limits {
            address: None,
            ..limits
        };
        let states = store.counters(&limits.ids()).await?;
        Ok(Self::new(pools, limits, states, now))
    }

    /// Refused when the learner, or the address for a guessable key, is at its limit; else
    /// what the learner's counter must still be for a redemption to commit.
    pub(super) fn admit(&self) -> Result<Vec<(CounterId, Condition)>> {
        if let Some(address) = &self.address {
            address.conditions(1)?;
        }
        self.learner.conditions(1)
    }

    /// Counts a failure against the learner and answers `error` (or 429 past the limit).
    pub(super) async fn fail<S: Counters + ?Sized>(&mut self, store: &S, error: Error) -> Error {
        self.pools.note_busy(&self.learner_id, self.window);
        self.learner.fail(store, error).await
    }

    /// Counts a miss against the address (for a guessable key) and the learner, and answers
    /// `error`, or 429 once either is past its limit.
    pub(super) async fn miss<S: Counters + ?Sized>(&mut self, store: &S, error: Error) -> Error {
        if let Some(address) = &mut self.address
            && let Err(refused) = address.count(store, 1).await
        {
            return refused;
        }
        self.fail(store, error).await
    }

    /// Counts a failure against the learner whose answer is a success (another key of a pool
    /// the learner holds tells that this key is valid).
    pub(super) async fn count<S: Counters + ?Sized>(&mut self, store: &S) -> Result<()> {
        self.pools.note_busy(&self.learner_id, self.window);
        self.learner.count(store, 1).await
    }

    /// Reads the learner's counter again, after a transaction found it changed.
    pub(super) async fn reread<S: Counters + ?Sized>(&mut self, store: &S) -> Result<()> {
        self.learner.reread(store).await
    }
}

/// How long a learner stays busy after a failure: one window.
fn window_of(limit: &Limit) -> Duration {
    Duration::from_secs(limit.window_secs.max(1).unsigned_abs())
}
