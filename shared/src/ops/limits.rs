//! Counting against limits: failed redemptions per learner and client address, and an
//! organization's key collisions with other organizations. Each count is a conditional write
//! computed from the state read, so that no number of concurrent requests counts past a limit:
//! the N+1th finds its condition false, reads again, and is refused.

use crate::domain::{Condition, Counter, CounterId, Limit, Limited};
use crate::error::{Error, ErrorCode, Result};
use crate::identity::OrgId;
use crate::settings::Settings;
use crate::store::Counters;
use crate::time::Timestamp;

/// Rounds of read-and-retry before a count gives up on a counter that keeps changing.
const MAX_ROUNDS: usize = 16;

/// Counters that one request counts against, with the states it read.
pub struct Guard {
    limits: Vec<(CounterId, Limit)>,
    states: Vec<Option<Counter>>,
    now: Timestamp,
}

impl Guard {
    /// A guard over counters read together with whatever else the request reads first.
    pub fn new(
        limits: Vec<(CounterId, Limit)>,
        states: Vec<Option<Counter>>,
        now: Timestamp,
    ) -> Self {
        Self {
            limits,
            states,
            now,
        }
    }

    /// The counters to read.
    pub fn ids(limits: &[(CounterId, Limit)]) -> Vec<CounterId> {
        limits.iter().map(|(id, _)| id.clone()).collect()
    }

    /// What must hold of each counter for `amount` more to be allowed: refused when a limit
    /// is reached already.
    pub fn conditions(&self, amount: u64) -> Result<Vec<(CounterId, Condition)>> {
        let mut conditions = Vec::with_capacity(self.limits.len());
        let mut wait = None;
        for ((id, limit), state) in self.limits.iter().zip(&self.states) {
            match limit.step(*state, amount, self.now) {
                Ok(step) => conditions.push((id.clone(), step.condition())),
                Err(Limited { retry_after_secs }) => {
                    wait = Some(wait.unwrap_or(0).max(retry_after_secs));
                }
            }
        }
        match wait {
            Some(retry_after_secs) => Err(Limited { retry_after_secs }.into()),
            None => Ok(conditions),
        }
    }

    /// Reads every counter again (after a write that checked them found one changed).
    pub async fn reread<S: Counters + ?Sized>(&mut self, store: &S) -> Result<()> {
        self.states = store.counters(&Self::ids(&self.limits)).await?;
        Ok(())
    }

    /// Counts `amount` against every limit, or refuses with how long to wait once one would
    /// pass its limit (the counters before it keep what they counted: refusing is safe).
    pub async fn count<S: Counters + ?Sized>(&mut self, store: &S, amount: u64) -> Result<()> {
        for i in 0..self.limits.len() {
            let (id, limit) = &self.limits[i];
            let mut counted = false;
            for _ in 0..MAX_ROUNDS {
                let step = limit.step(self.states[i], amount, self.now)?;
                let expires_at = expiry(limit, self.now);
                if store.step_counter(id, &step, expires_at).await? {
                    counted = true;
                    break;
                }
                self.states[i] = store
                    .counters(std::slice::from_ref(id))
                    .await?
                    .pop()
                    .flatten();
            }
            if !counted {
                return Err(Error::write_conflict());
            }
        }
        Ok(())
    }

    /// Counts one failure and answers `error`, or refuses when the failure passes a limit.
    pub async fn fail<S: Counters + ?Sized>(&mut self, store: &S, error: Error) -> Error {
        match self.count(store, 1).await {
            Ok(()) => error,
            Err(refused) => refused,
        }
    }
}

impl From<Limited> for Error {
    fn from(Limited { retry_after_secs }: Limited) -> Self {
        Error::Throttled { retry_after_secs }
    }
}

/// When a counter written now stops mattering: after its window and the next one.
fn expiry(limit: &Limit, now: Timestamp) -> Timestamp {
    now + chrono::Duration::seconds(2 * limit.window_secs.max(1) + 60)
}

/// An organization's budget of key collisions with other organizations' keys: the only way
/// an admin learns that a key exists somewhere else, so it is what makes probing useless.
pub struct CollisionBudget {
    org: OrgId,
    guard: Guard,
}

impl CollisionBudget {
    /// Reads the organization's budget; refused (429) while it is spent, for any addition of
    /// custom keys.
    pub async fn read<S: Counters + ?Sized>(
        store: &S,
        settings: &Settings,
        org: &OrgId,
        now: Timestamp,
    ) -> Result<Self> {
        let limits = vec![(
            CounterId::ForeignCollisions(org.clone()),
            settings.foreign_collisions,
        )];
        let states = store.counters(&Guard::ids(&limits)).await?;
        let guard = Guard::new(limits, states, now);
        guard.conditions(1).map_err(|e| spent(org, e))?;
        Ok(Self {
            org: org.clone(),
            guard,
        })
    }

    /// Spends `collisions` of the budget before they are answered; refused (429, nothing
    /// answered about those keys) when the budget cannot cover them.
    pub async fn spend<S: Counters + ?Sized>(&mut self, store: &S, collisions: u64) -> Result<()> {
        if collisions == 0 {
            return Ok(());
        }
        tracing::warn!(
            target: "keypool::security",
            org = %self.org,
            collisions,
            "key additions met keys held by other organizations"
        );
        let org = self.org.clone();
        self.guard
            .count(store, collisions)
            .await
            .map_err(|e| spent(&org, e))
    }
}

fn spent(org: &OrgId, e: Error) -> Error {
    match e {
        Error::Throttled { retry_after_secs } => {
            tracing::warn!(
                target: "keypool::security",
                org = %org,
                retry_after_secs,
                "key additions refused: the organization's collision budget is spent"
            );
            Error::RateLimited {
                code: ErrorCode::CollisionBudgetSpent,
                message: format!(
                    "too many keys of this organization's recent additions exist in other \
                     organizations; adding custom keys is paused for {retry_after_secs} seconds \
                     (generated keys can still be added)"
                ),
                retry_after_secs,
            }
        }
        other => other,
    }
}
