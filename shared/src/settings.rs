//! Settings an operator may change, read once at start-up from the environment.

use anyhow::{Context as _, bail};

use crate::domain::Limit;

/// Seconds in the redemption throttle's sliding window.
pub const FAILURE_WINDOW_SECS: i64 = 15 * 60;
/// Seconds in the window of the key-collision budget.
pub const COLLISION_WINDOW_SECS: i64 = 24 * 60 * 60;

/// Days an audit record is kept when `KEYPOOL_AUDIT_RETENTION_DAYS` does not say.
pub const DEFAULT_AUDIT_RETENTION_DAYS: u32 = 400;

/// Limits that keep guessing and probing useless.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Failed redemptions of one learner in any 15 minutes (`KEYPOOL_LEARNER_FAILURES`, 10).
    pub learner_failures: Limit,
    /// Failed redemptions from one client address in any 15 minutes, whichever learners
    /// send them (`KEYPOOL_ADDRESS_FAILURES`, 30). An IPv6 client counts by its /64.
    pub address_failures: Limit,
    /// Keys an organization may try to add that another organization holds, in any 24 hours
    /// (`KEYPOOL_FOREIGN_COLLISIONS`, 20); after that its custom key additions get 429.
    pub foreign_collisions: Limit,
    /// The wait after a webhook delivery's first failed attempt, doubled after each next one
    /// (`KEYPOOL_WEBHOOK_FIRST_RETRY_MS`, 30,000).
    pub webhook_first_retry: chrono::Duration,
    /// Days an audit record is kept before DynamoDB's TTL removes it
    /// (`KEYPOOL_AUDIT_RETENTION_DAYS`, 400).
    pub audit_retention_days: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            learner_failures: Limit {
                max: 10,
                window_secs: FAILURE_WINDOW_SECS,
            },
            address_failures: Limit {
                max: 30,
                window_secs: FAILURE_WINDOW_SECS,
            },
            foreign_collisions: Limit {
                max: 20,
                window_secs: COLLISION_WINDOW_SECS,
            },
            webhook_first_retry: chrono::Duration::seconds(30),
            audit_retention_days: DEFAULT_AUDIT_RETENTION_DAYS,
        }
    }
}

impl Settings {
    /// The defaults, with what the environment sets; a malformed value stops start-up.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// The defaults, with the values `lookup` finds.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let mut settings = Self::default();
        let fields = [
            ("KEYPOOL_LEARNER_FAILURES", &mut settings.learner_failures),
            ("KEYPOOL_ADDRESS_FAILURES", &mut settings.address_failures),
            (
                "KEYPOOL_FOREIGN_COLLISIONS",
                &mut settings.foreign_collisions,
            ),
        ];
        for (name, limit) in fields {
            if let Some(text) = lookup(name) {
                let max: u64 = text
                    .trim()
                    .parse()
                    .with_context(|| format!("{name} is a whole number, not {text:?}"))?;
                if !(1..=1_000_000).contains(&max) {
                    bail!("{name} is 1 to 1000000, not {max}");
                }
                limit.max = max;
            }
        }
        const FIRST_RETRY: &str = "KEYPOOL_WEBHOOK_FIRST_RETRY_MS";
        if let Some(text) = lookup(FIRST_RETRY) {
            let ms: i64 = text
                .trim()
                .parse()
                .with_context(|| format!("{FIRST_RETRY} is a whole number, not {text:?}"))?;
            if !(1..=3_600_000).contains(&ms) {
                bail!("{FIRST_RETRY} is 1 to 3600000 milliseconds, not {ms}");
            }
            settings.webhook_first_retry = chrono::Duration::milliseconds(ms);
        }
        const RETENTION: &str = "KEYPOOL_AUDIT_RETENTION_DAYS";
        if let Some(text) = lookup(RETENTION) {
            let days: u32 = text
                .trim()
                .parse()
                .with_context(|| format!("{RETENTION} is a whole number, not {text:?}"))?;
            if !(1..=3650).contains(&days) {
                bail!("{RETENTION} is 1 to 3650 days, not {days}");
            }
            settings.audit_retention_days = days;
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_environment_and_refuses_nonsense() {
        let s = Settings::from_lookup(|n| (n == "KEYPOOL_ADDRESS_FAILURES").then(|| "50".into()))
            .unwrap();
        assert_eq!(s.address_failures.max, 50);
        assert_eq!(s.learner_failures, Settings::default().learner_failures);
        for bad in ["", "0", "-1", "ten", "2000000"] {
            let r =
                Settings::from_lookup(|n| (n == "KEYPOOL_LEARNER_FAILURES").then(|| bad.into()));
            assert!(r.is_err(), "{bad:?} accepted");
        }
    }
}
