//! Timestamps: RFC 3339 in UTC with millisecond precision, and the clock operations read.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, SecondsFormat, Utc};

/// A point in time as KeyPool stores and shows it.
pub type Timestamp = DateTime<Utc>;

/// Formats with a fixed width (`2026-11-28T18:32:57.000Z`), so that stored timestamps compare
/// correctly as strings inside DynamoDB condition expressions.
pub fn format(ts: &Timestamp) -> String {
    ts.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses RFC 3339 with any offset, normalised to UTC and truncated to milliseconds.
pub fn parse(text: &str) -> Option<Timestamp> {
    let parsed = DateTime::parse_from_rfc3339(text).ok()?.with_timezone(&Utc);
    truncate(parsed)
}

/// Drops sub-millisecond precision, which the stored form cannot carry.
pub fn truncate(ts: Timestamp) -> Option<Timestamp> {
    DateTime::from_timestamp_millis(ts.timestamp_millis())
}

/// Serde adapter for `Timestamp` fields in the fixed-width form.
pub mod rfc3339 {
    use super::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    /// Serialises in the fixed-width form.
    pub fn serialize<S: Serializer>(ts: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format(ts))
    }

    /// Deserialises any RFC 3339 timestamp.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let text = String::deserialize(d)?;
        super::parse(&text).ok_or_else(|| D::Error::custom("expected an RFC 3339 timestamp"))
    }

    /// The same for optional fields.
    pub mod option {
        use super::Timestamp;
        use serde::{Deserialize, Deserializer, Serializer, de::Error};

        /// Serialises `Some` in the fixed-width form and `None` as null.
        pub fn serialize<S: Serializer>(ts: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
            match ts {
                Some(ts) => s.serialize_str(&crate::time::format(ts)),
                None => s.serialize_none(),
            }
        }

        /// Deserialises an optional RFC 3339 timestamp.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
            match Option::<String>::deserialize(d)? {
                Some(text) => crate::time::parse(&text)
                    .map(Some)
                    .ok_or_else(|| D::Error::custom("expected an RFC 3339 timestamp")),
                None => Ok(None),
            }
        }
    }
}

/// Where operations read the current time; tests move it to check expiry.
pub trait Clock: Send + Sync {
    /// The current time, truncated to milliseconds.
    fn now(&self) -> Timestamp;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let now = Utc::now();
        truncate(now).unwrap_or(now)
    }
}

/// A clock that stands still until moved, for tests of time windows.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<Timestamp>>);

impl ManualClock {
    /// A clock showing `start`.
    pub fn new(start: Timestamp) -> Self {
        Self(Arc::new(Mutex::new(truncate(start).unwrap_or(start))))
    }

    /// Moves the clock forward (or back, with a negative duration).
    pub fn advance(&self, by: chrono::Duration) {
        let mut now = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
