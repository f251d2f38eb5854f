//! Courses, and the pools of keys that hand them out.

use serde::{Deserialize, Serialize};

use super::ids::{CourseId, PoolId};
use crate::error::{Error, Result};
use crate::identity::OrgId;
use crate::keys::KeyTag;
use crate::time::{self, Timestamp};

/// A course that pools hand out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Course {
    pub course_id: CourseId,
    pub org: OrgId,
    pub title: String,
    pub description: Option<String>,
    /// Where the course runs (https): a launch goes there with a signed token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_url: Option<String>,
    #[serde(with = "time::rfc3339")]
    pub created_at: Timestamp,
}

/// A pool of keys for one course, redeemable within a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pool {
    pub pool_id: PoolId,
    pub org: OrgId,
    pub name: String,
    pub course_id: CourseId,
    /// The course's title when the pool was made (titles do not change); `None` for a pool
    /// made before it was kept here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub course_title: Option<String>,
    #[serde(with = "time::rfc3339")]
    pub starts_at: Timestamp,
    #[serde(with = "time::rfc3339")]
    pub expires_at: Timestamp,
    pub content_availability_days: u16,
    pub deactivated: bool,
    /// Keys in the pool; changes only in the same atomic write as the keys.
    pub total_keys: u64,
    /// Keys redeemed; changes only in the redemption transaction.
    pub redeemed_count: u64,
    /// Bumped by every metadata update, for optimistic concurrency.
    pub version: u64,
    /// Bumped by every write that changes the pool's keys (added, removed, redeemed,
    /// cancelled), in the same atomic write.
    #[serde(default)]
    pub change_seq: u64,
    /// How many count shards carry the pool's counts (`total_keys`, `redeemed_count`,
    /// `change_seq`): each counting write adds to one of them, chosen at random, so no single
    /// item takes every redemption. 0 for a pool made before shards, counted on its own item.
    #[serde(default)]
    pub shards: u16,
    /// The tag this pool's generated keys carry, so that a redemption knows a key's pool
    /// before it reads the key (see `keys::KeyTag`); `None` for a pool made before tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_tag: Option<KeyTag>,
    /// The change mark (`version + change_seq`) that the last scheduled export covered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_mark: Option<u64>,
    #[serde(with = "time::rfc3339")]
    pub created_at: Timestamp,
    #[serde(with = "time::rfc3339")]
    pub updated_at: Timestamp,
}

/// Where a pool stands at a moment: derived from its dates and flag, never stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PoolStatus {
    /// Not started yet.
    Scheduled,
    /// Keys can be redeemed.
    Active,
    /// Past its expiry.
    Expired,
    /// Switched off by an admin, whatever its dates.
    Deactivated,
}

impl PoolStatus {
    /// The status's name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Active => "active",
            Self::Expired => "expired",
            Self::Deactivated => "deactivated",
        }
    }

    /// Parses a status filter.
    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::Scheduled,
            Self::Active,
            Self::Expired,
            Self::Deactivated,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// Which of an organization's pools a listing wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolFilter {
    /// Only pools whose lower-cased name contains this.
    pub search: Option<String>,
    /// Only pools in this status at `now`.
    pub status: Option<(PoolStatus, Timestamp)>,
}

impl PoolFilter {
    /// True for a pool the filter's status admits (the search is the store's to apply).
    pub fn admits_status(&self, pool: &Pool) -> bool {
        self.status
            .is_none_or(|(status, now)| pool.status(now) == status)
    }
}

/// Count shards of a new pool unless its admin chooses. On DynamoDB one item admits one
/// transaction at a time; if each holds it about 10 ms, a pool takes `N / 2 / 0.01` redemptions
/// a second with few conflicts: 100 shards take 5,000 (docs/scale.md has the model).
pub const DEFAULT_SHARDS: u16 = 100;
/// The most count shards a pool may have: all of them are read in one BatchGetItem.
pub const MAX_SHARDS: u16 = 100;
/// The version of a pool that was never edited.
pub const FIRST_VERSION: u64 = 1;

impl Pool {
    /// The count shard a counting write goes to, chosen at random; `None` for a pool counted
    /// on its own item.
    pub fn shard_for_write(&self) -> Option<u16> {
        (self.shards > 0).then(|| {
            let mut b = [0u8; 2];
            // Spreading only: without entropy every write goes to shard 0, still exact.
            let _ = getrandom::fill(&mut b);
            u16::from_le_bytes(b) % self.shards
        })
    }

    /// Grows with every change of the pool's settings or keys.
    pub fn change_mark(&self) -> u64 {
        self.version + self.change_seq
    }

    /// True while keys can be redeemed.
    pub fn is_active(&self, now: Timestamp) -> bool {
        self.status(now) == PoolStatus::Active
    }

    /// Where the pool stands at `now`: its flag first, then its dates.
    pub fn status(&self, now: Timestamp) -> PoolStatus {
        if self.deactivated {
            PoolStatus::Deactivated
        } else if now < self.starts_at {
            PoolStatus::Scheduled
        } else if now < self.expires_at {
            PoolStatus::Active
        } else {
            PoolStatus::Expired
        }
    }

    /// Ok while active, otherwise the error that tells the learner the dates.
    pub fn check_active(&self, now: Timestamp) -> Result<()> {
        if self.is_active(now) {
            Ok(())
        } else {
            Err(Error::PoolNotActive {
                starts_at: self.starts_at,
                expires_at: self.expires_at,
                deactivated: self.deactivated,
            })
        }
    }

    /// When an assignment made at `redeemed_at` expires.
    pub fn assignment_expiry(&self, redeemed_at: Timestamp) -> Timestamp {
        redeemed_at + chrono::Duration::days(i64::from(self.content_availability_days))
    }
}
