//! One export of a pool's keys.

use serde::{Deserialize, Serialize};

use super::audit::{AuditAction, AuditRecord, Caller, Origin, Resource, Summary};
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
    /// The person who asked for it (none for a scheduled one): its start and its end are
    /// recorded in their name, each with the write that starts or ends it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_by: Option<Origin>,
}

impl Export {
    /// The record of a person's export's start, for the write that stores it.
    pub fn start_record(&self) -> Option<AuditRecord> {
        let origin = self.started_by.as_ref()?;
        let summary = Summary::new()
            .with("key_status", self.key_status.map(|s| s.as_str()))
            .with("undistributed", self.undistributed)
            .with("mark_distributed", self.mark_distributed);
        Some(self.record(origin, AuditAction::ExportStarted, summary, self.created_at))
    }

    /// The record of a person's export's end, for the write that finishes it.
    pub fn end_record(&self) -> Option<AuditRecord> {
        let origin = self.started_by.as_ref()?;
        let status = match self.status {
            ExportStatus::Done => "done",
            ExportStatus::Failed => "failed",
            ExportStatus::Pending | ExportStatus::Running => return None,
        };
        let summary = Summary::new()
            .with("status", status)
            .with("rows", self.rows);
        let at = self.finished_at.unwrap_or(self.created_at);
        Some(self.record(origin, AuditAction::ExportFinished, summary, at))
    }

    fn record(
        &self,
        origin: &Origin,
        action: AuditAction,
        summary: Summary,
        at: Timestamp,
    ) -> AuditRecord {
        Caller::resumed(&self.org, origin)
            .record(action, Resource::new("export", self.export_id), summary, at)
            .in_pool(self.pool_id)
    }

    /// Whether the export counts among its organization's open jobs (and so against their
    /// cap): an admin's export does; a scheduled one, which the system starts, does not.
    pub fn counts_as_open_job(&self) -> bool {
        self.kind == ExportKind::OnDemand
    }
}
