//! The ids of the things KeyPool keeps: time-ordered UUIDs, one type each.

use serde::{Deserialize, Serialize};

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub uuid::Uuid);

        impl $name {
            /// A new, time-ordered id.
            pub fn new() -> Self {
                Self(uuid::Uuid::now_v7())
            }
            /// Parses an id from a path or body; `None` for anything that is not one.
            pub fn parse(text: &str) -> Option<Self> {
                uuid::Uuid::try_parse(text).ok().map(Self)
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }
    };
}

/// A time-ordered id (UUIDv7) for something that happened at `at`, whose other bits are the
/// hash of `what`: the same thing gets the same id however often it is derived again (a
/// stream record redelivered, an event fanned out twice), and ids still sort by time.
pub fn derived_uuid(at: chrono::DateTime<chrono::Utc>, what: &str) -> uuid::Uuid {
    use sha2::Digest as _;
    let hash = sha2::Sha256::digest(what.as_bytes());
    let mut random = [0u8; 10];
    random.copy_from_slice(&hash[..10]);
    let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0);
    uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid()
}

uuid_id!(
    /// A course's id.
    CourseId
);
uuid_id!(
    /// A pool's id.
    PoolId
);
uuid_id!(
    /// An assignment's id.
    AssignmentId
);
uuid_id!(
    /// An export's id.
    ExportId
);
uuid_id!(
    /// A background key job's id.
    JobId
);
uuid_id!(
    /// A webhook endpoint's id.
    WebhookId
);
uuid_id!(
    /// An event's id: the `webhook-id` of every delivery of it.
    EventId
);
uuid_id!(
    /// One event's delivery to one endpoint.
    DeliveryId
);
