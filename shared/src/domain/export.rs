//! One export of a pool's keys.

use serde::{Deserialize, Serialize};

use super::ids::{ExportId, PoolId};
use super::key::KeyStatus;
use crate::identity::OrgId;
use crate::time::{self, Timestamp};

/// Where an export is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExportStatus {
    /// Waiting for a worker.
    Pending,
    /// Being written.
    Running,
    /// Written; the file can be downloaded.
    Done,
    /// Stopped; no file was left behind.
    Failed,
}

/// Who asked for an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExportKind {
    /// An admin, through the API.
    OnDemand,
    /// The schedule, for a pool that changed since its last scheduled export.
    Scheduled,
}

/// One export of a pool's keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Export {
    pub export_id: ExportId,
    pub org: OrgId,
    pub pool_id: PoolId,
    pub kind: ExportKind,
    pub status: ExportStatus,
    /// Only keys of this status, if set.
    #[serde(default)]
    pub key_status: Option<KeyStatus>,
    /// Only keys never distributed.
    #[serde(default)]
    pub undistributed: bool,
    /// Marks the available keys it writes as distributed.
    #[serde(default)]
    pub mark_distributed: bool,
    /// Rows written (so far, while running).
    #[serde(default)]
    pub rows: u64,
    /// Where the file goes in object storage.
    pub object_key: String,
    /// The name the download is saved as.
    pub file_name: String,
    /// Why it failed, for people.
    #[serde(default)]
    pub error: Option<String>,
    /// For scheduled exports: the pool's change mark it covers.
    #[serde(default)]
    pub pool_mark: Option<u64>,
    #[serde(with = "time::rfc3339")]
    pub created_at: Timestamp,
    #[serde(default, with = "time::rfc3339::option")]
    pub finished_at: Option<Timestamp>,
}

impl Export {
    /// Whether the export counts among its organization's open jobs (and so against their
    /// cap): an admin's export does; a scheduled one, which the system starts, does not.
    pub fn counts_as_open_job(&self) -> bool {
        self.kind == ExportKind::OnDemand
    }
}
