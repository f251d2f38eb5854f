//! Limits on counted events (failed redemptions, key collisions) over a sliding window.
//!
//! A counter keeps the count of its current fixed window and of the one before. The number
//! of events in the sliding window that ends now is estimated as the previous window's count,
//! weighted by how much of it the sliding window still covers, plus the current count (the
//! approximation Cloudflare and nginx use). So a client that spends its allowance at the end of
//! one window finds almost none left at the start of the next.
//!
//! Counting is race-free without a lock: every change is a conditional write computed from the
//! state read, and the condition makes the N+1th concurrent writer fail (then it reads again).

use std::net::{IpAddr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use crate::identity::{OrgId, UserId};
use crate::time::Timestamp;

/// At most `max` events in any window of `window_secs` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub max: u64,
    pub window_secs: i64,
}

/// What is counted, and for whom.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CounterId {
    /// Failed redemptions of one learner.
    Learner(UserId),
    /// Failed redemptions from one client address (an IPv6 client counts by its /64).
    Address(String),
    /// An organization's key additions that met a key of another organization.
    ForeignCollisions(OrgId),
}

impl CounterId {
    /// The counter of a client address. An IPv6 client counts by its /64, the block that one
    /// subscriber usually holds whole; an IPv4-mapped address counts as the IPv4 one.
    pub fn address(ip: IpAddr) -> Self {
        let text = match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => v4.to_string(),
                None => {
                    let s = v6.segments();
                    let prefix = Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
                    format!("{prefix}/64")
                }
            },
        };
        Self::Address(text)
    }

    /// A stable name, unique across kinds, for the store's keys.
    pub fn name(&self) -> String {
        match self {
            Self::Learner(u) => format!("learner#{u}"),
            Self::Address(a) => format!("address#{a}"),
            Self::ForeignCollisions(o) => format!("collisions#{o}"),
        }
    }
}

/// A counter as stored: the index of its current window, that window's count and the count
/// of the window before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counter {
    pub window: i64,
    pub count: u64,
    pub previous: u64,
}

/// What must still hold of a counter for a step computed from it to be right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// There is no counter yet.
    Absent,
    /// The counter is exactly as read.
    Equals(Counter),
    /// The counter is in `window`, with fewer than `count_below` events.
    Below { window: i64, count_below: u64 },
    /// One more event fits, whatever the counter holds: no counter, or one whose window is
    /// before `previous`, or `previous` with fewer than `count_below` events (and so nothing
    /// in the current window). What a write that read nothing can check.
    Quiet { previous: i64, count_below: u64 },
}

/// A conditional change of a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Add `amount` to the current window's count.
    Add {
        window: i64,
        count_below: u64,
        amount: u64,
    },
    /// Replace the counter (its window moved on, or there was none).
    Replace {
        expected: Option<Counter>,
        next: Counter,
    },
}

impl Step {
    /// What must hold for this step to be taken: a write that checks it can only succeed
    /// while `amount` more events are still allowed.
    pub fn condition(&self) -> Condition {
        match *self {
            Self::Add {
                window,
                count_below,
                ..
            } => Condition::Below {
                window,
                count_below,
            },
            Self::Replace { expected: None, .. } => Condition::Absent,
            Self::Replace {
                expected: Some(c), ..
            } => Condition::Equals(c),
        }
    }
}

/// Refused: the limit is reached, and how long to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub retry_after_secs: u64,
}

impl Limit {
    fn window_of(&self, now: Timestamp) -> (i64, f64) {
        let w = self.window_secs.max(1);
        let millis = now.timestamp_millis();
        let index = millis.div_euclid(w * 1000);
        let elapsed = (millis - index * w * 1000) as f64 / (w * 1000) as f64;
        (index, elapsed)
    }

    /// The counts of the current and previous window at `now`, from a stored state.
    fn effective(state: Option<Counter>, index: i64) -> (u64, u64) {
        match state {
            Some(c) if c.window == index => (c.count, c.previous),
            Some(c) if c.window == index - 1 => (0, c.count),
            _ => (0, 0),
        }
    }

    /// Events still allowed in the current window, given the previous window's count.
    fn allowed(&self, previous: u64, elapsed: f64) -> u64 {
        let carried = previous as f64 * (1.0 - elapsed);
        let room = self.max as f64 - carried;
        if room <= 0.0 { 0 } else { room.floor() as u64 }
    }

    /// What a counter must be, for one more event to fit at `now`, to a writer that has not
    /// read it (see [`Condition::Quiet`]).
    pub fn quiet(&self, now: Timestamp) -> Condition {
        let (index, _) = self.window_of(now);
        Condition::Quiet {
            previous: index - 1,
            count_below: self.max,
        }
    }

    /// True when `state` meets [`Limit::quiet`] at `now`.
    pub fn is_quiet(&self, state: Option<Counter>, now: Timestamp) -> bool {
        let (index, _) = self.window_of(now);
        match state {
            None => true,
            Some(c) => c.window < index - 1 || (c.window == index - 1 && c.count < self.max),
        }
    }

    /// Events in the sliding window that ends at `now`, as estimated from a stored state.
    pub fn estimate(&self, state: Option<Counter>, now: Timestamp) -> f64 {
        let (index, elapsed) = self.window_of(now);
        let (count, previous) = Self::effective(state, index);
        previous as f64 * (1.0 - elapsed) + count as f64
    }

    /// The step that counts `amount` more events, or how long to wait when that would pass
    /// the limit.
    pub fn step(
        &self,
        state: Option<Counter>,
        amount: u64,
        now: Timestamp,
    ) -> Result<Step, Limited> {
        let (index, elapsed) = self.window_of(now);
        let (count, previous) = Self::effective(state, index);
        let allowed = self.allowed(previous, elapsed);
        if count + amount > allowed {
            return Err(Limited {
                retry_after_secs: self.wait(count, previous, amount, elapsed),
            });
        }
        Ok(match state {
            Some(c) if c.window == index => Step::Add {
                window: index,
                count_below: allowed - amount + 1,
                amount,
            },
            _ => Step::Replace {
                expected: state,
                next: Counter {
                    window: index,
                    count: amount,
                    previous,
                },
            },
        })
    }

    /// Whole seconds until `amount` more events fit, rounded up.
    fn wait(&self, count: u64, previous: u64, amount: u64, elapsed: f64) -> u64 {
        let w = self.window_secs.max(1) as f64;
        if amount > self.max {
            // Never fits; the longest wait any counter needs.
            return 2 * self.window_secs.max(1) as u64;
        }
        let fits = |count: u64, previous: u64, at: f64| {
            previous as f64 * (1.0 - at) + (count + amount) as f64 <= self.max as f64
        };
        // Within this window the previous count fades; solve for the moment it fits.
        let secs = if count + amount <= self.max && previous > 0 {
            let need = 1.0 - (self.max - count - amount) as f64 / previous as f64;
            (need - elapsed) * w
        } else {
            // The current count itself is the previous window's count of the next one.
            let rest = (1.0 - elapsed) * w;
            let need = if count == 0 {
                0.0
            } else {
                (1.0 - (self.max.saturating_sub(amount)) as f64 / count as f64).max(0.0)
            };
            rest + need * w
        };
        let mut wait = secs.max(0.0).ceil() as u64;
        wait = wait.max(1);
        // Guard the rounding: advance until the estimate really fits.
        let mut at_elapsed = elapsed + wait as f64 / w;
        let (mut c, mut p) = (count, previous);
        while at_elapsed >= 1.0 {
            (c, p) = (0, c);
            at_elapsed -= 1.0;
        }
        if !fits(c, p, at_elapsed) {
            wait += 1;
        }
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time;

    const LIMIT: Limit = Limit {
        max: 10,
        window_secs: 900,
    };

    fn at(s: &str) -> Timestamp {
        time::parse(s).unwrap()
    }

    /// Applies a step as the store would.
    fn apply(state: Option<Counter>, step: Step) -> Counter {
        match step {
            Step::Add { window, amount, .. } => {
                let c = state.unwrap();
                assert_eq!(c.window, window);
                Counter {
                    count: c.count + amount,
                    ..c
                }
            }
            Step::Replace { expected, next } => {
                assert_eq!(expected, state);
                next
            }
        }
    }

    fn count(limit: &Limit, state: &mut Option<Counter>, now: Timestamp) -> Result<(), Limited> {
        let step = limit.step(*state, 1, now)?;
        *state = Some(apply(*state, step));
        Ok(())
    }

    proptest::proptest! {
        /// Whatever a counter holds, when it is quiet one more event fits: a write that read
        /// nothing and checked only that is never over the limit.
        #[test]
        fn a_quiet_counter_always_has_room_for_one_more(
            window_back in 0i64..4,
            count in 0u64..15,
            previous in 0u64..15,
            offset_secs in 0i64..900,
        ) {
            let now = at("2026-01-01T00:00:00Z") + chrono::Duration::seconds(offset_secs);
            let index = LIMIT.window_of(now).0;
            let state = Some(Counter { window: index - window_back, count, previous });
            if LIMIT.is_quiet(state, now) {
                proptest::prop_assert!(LIMIT.step(state, 1, now).is_ok());
            }
            proptest::prop_assert!(LIMIT.is_quiet(None, now));
        }
    }

    #[test]
    fn allows_max_then_refuses() {
        let now = at("2026-01-01T00:05:00Z");
        let mut state = None;
        for _ in 0..10 {
            count(&LIMIT, &mut state, now).unwrap();
        }
        let refused = count(&LIMIT, &mut state, now).unwrap_err();
        // The window ends at 00:15; its 10 events fade out over the next window.
        assert!(refused.retry_after_secs > 600, "{refused:?}");
    }

    #[test]
    fn spending_at_a_boundary_does_not_double_the_allowance() {
        let mut state = None;
        let mut allowed = 0;
        // Ten at the very end of one window, then as many as allowed just after it.
        for _ in 0..10 {
            count(&LIMIT, &mut state, at("2026-01-01T00:14:59Z")).unwrap();
            allowed += 1;
        }
        for _ in 0..20 {
            if count(&LIMIT, &mut state, at("2026-01-01T00:15:01Z")).is_ok() {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 10, "a fixed window would allow 20 here");
    }

    #[test]
    fn the_allowance_comes_back_gradually() {
        let mut state = None;
        for _ in 0..10 {
            count(&LIMIT, &mut state, at("2026-01-01T00:00:00Z")).unwrap();
        }
        // Half-way through the next window, half of the previous window still counts.
        let mut allowed = 0;
        for _ in 0..10 {
            if count(&LIMIT, &mut state, at("2026-01-01T00:22:30Z")).is_ok() {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 5);
    }

    #[test]
    fn waiting_as_told_is_enough_and_a_second_less_is_not() {
        let starts = [
            "2026-01-01T00:00:00Z",
            "2026-01-01T00:07:31.250Z",
            "2026-01-01T00:14:59.999Z",
        ];
        for start in starts {
            let mut now = at(start);
            let mut state = None;
            for round in 0..40 {
                match count(&LIMIT, &mut state, now) {
                    Ok(()) => now += chrono::Duration::seconds(7),
                    Err(Limited { retry_after_secs }) => {
                        assert!(retry_after_secs >= 1);
                        if retry_after_secs > 1 {
                            let early =
                                now + chrono::Duration::seconds(retry_after_secs as i64 - 2);
                            assert!(
                                LIMIT.step(state, 1, early).is_err(),
                                "{start} round {round}: early by 2 s was allowed"
                            );
                        }
                        now += chrono::Duration::seconds(retry_after_secs as i64);
                        count(&LIMIT, &mut state, now)
                            .unwrap_or_else(|e| panic!("{start} round {round}: {e:?}"));
                    }
                }
            }
        }
    }

    #[test]
    fn amounts_over_the_limit_never_fit() {
        let step = LIMIT.step(None, 11, at("2026-01-01T00:00:00Z"));
        assert!(step.is_err());
        let step = LIMIT.step(None, 10, at("2026-01-01T00:00:00Z"));
        assert!(step.is_ok());
    }

    #[test]
    fn conditions_refuse_what_would_pass_the_limit() {
        let now = at("2026-01-01T00:05:00Z");
        let mut state = None;
        for _ in 0..9 {
            count(&LIMIT, &mut state, now).unwrap();
        }
        let step = LIMIT.step(state, 1, now).unwrap();
        let Condition::Below {
            window,
            count_below,
        } = step.condition()
        else {
            panic!("{step:?}");
        };
        // The tenth is allowed only while fewer than ten are counted.
        assert_eq!(window, state.unwrap().window);
        assert_eq!(count_below, 10);
    }

    #[test]
    fn ipv6_clients_count_by_their_64() {
        let a = CounterId::address("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = CounterId::address("2001:db8:1:2:bbbb::2".parse().unwrap());
        let c = CounterId::address("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(
            CounterId::address("::ffff:192.0.2.7".parse().unwrap()),
            CounterId::address("192.0.2.7".parse().unwrap())
        );
    }

    #[test]
    fn ids_do_not_collide_across_kinds() {
        let a = CounterId::Learner(UserId::parse("x").unwrap()).name();
        let b = CounterId::Address("x".into()).name();
        assert_ne!(a, b);
    }
}
