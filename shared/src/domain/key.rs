//! A stored key and what became of it.

use serde::{Deserialize, Serialize};

use super::ids::{AssignmentId, JobId, PoolId};
use crate::identity::{OrgId, UserId};
use crate::keys::KeyCode;
use crate::time::{self, Timestamp};

/// Whether a key can still be redeemed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    Available,
    Redeemed,
    /// Written by an all-or-nothing paste that has not committed: it reserves its key, and is
    /// neither listed, counted nor redeemable.
    Pending,
}

impl KeyStatus {
    /// The status's name in the API and in storage keys.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Available => "available",
            KeyStatus::Redeemed => "redeemed",
            KeyStatus::Pending => "pending",
        }
    }

    /// Parses a status filter (pending keys are never listed).
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "available" => Some(Self::Available),
            "redeemed" => Some(Self::Redeemed),
            _ => None,
        }
    }
}

/// Where a key came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum KeySource {
    Custom,
    Generated,
}

/// A key to insert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    pub key: KeyCode,
    pub source: KeySource,
}

impl NewKey {
    /// A key an admin chose.
    pub fn custom(key: KeyCode) -> Self {
        Self {
            key,
            source: KeySource::Custom,
        }
    }

    /// A key KeyPool generated.
    pub fn generated(key: KeyCode) -> Self {
        Self {
            key,
            source: KeySource::Generated,
        }
    }
}

/// A stored key and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub key: KeyCode,
    pub org: OrgId,
    pub pool_id: PoolId,
    pub status: KeyStatus,
    pub source: KeySource,
    #[serde(with = "time::rfc3339")]
    pub created_at: Timestamp,
    #[serde(default)]
    pub redeemed_by: Option<UserId>,
    #[serde(default, with = "time::rfc3339::option")]
    pub redeemed_at: Option<Timestamp>,
    #[serde(default)]
    pub assignment_id: Option<AssignmentId>,
    /// Learners whose assignment from this key an admin cancelled: they may not redeem it again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub barred: Vec<UserId>,
    /// When the assignment it created ends.
    #[serde(
        default,
        with = "time::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub assignment_expires_at: Option<Timestamp>,
    /// The job that wrote it, for keys written by large generations and imports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<JobId>,
    /// When an export first handed it out. Absent until then, which filters test for.
    #[serde(
        default,
        with = "time::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub distributed_at: Option<Timestamp>,
}

/// Which of a pool's keys a listing or an export wants.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct KeyFilter {
    /// Only keys of this status.
    pub status: Option<KeyStatus>,
    /// Only keys that no export has marked as distributed.
    pub undistributed: bool,
}
