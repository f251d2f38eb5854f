//! Background work: the jobs a queue carries, and the record of a key job.

use serde::{Deserialize, Serialize};

use super::audit::{AuditAction, AuditRecord, Caller, Origin, Resource, Summary};
use super::ids::{ExportId, JobId, PoolId};
use crate::identity::OrgId;
use crate::time::{self, Timestamp};

/// One unit of background work; a job may be delivered more than once and must be idempotent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Job {
    /// Write an export's file.
    Export { org: OrgId, export_id: ExportId },
    /// Generate a large number of keys into a pool.
    Generate { org: OrgId, job_id: JobId },
}

impl Job {
    /// The organization the job works for.
    pub fn org(&self) -> &OrgId {
        match self {
            Job::Export { org, .. } | Job::Generate { org, .. } => org,
        }
    }
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Pending,
    Running,
    Done,
    Failed,
}

/// What a key job writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Generated keys.
    #[default]
    Generate,
    /// A long list of custom keys, validated when it was sent.
    Import,
    /// An all-or-nothing paste answered at once (up to 10,000 keys): a job only so that a
    /// crash part-way is rolled back.
    Paste,
}

/// Where an all-or-nothing paste or import is: its keys stay pending (reserved, invisible)
/// until it commits, so a crash at any point is rolled back or forward, never left half.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PastePhase {
    /// Pending keys are being written; nothing is visible yet.
    Writing,
    /// Every key is written; they are being made available, counted as they go.
    Committing,
    /// It will not commit; its pending keys are being removed.
    RollingBack,
}

/// A generation of many keys into a pool, or an import of a long list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyJob {
    pub job_id: JobId,
    pub org: OrgId,
    pub pool_id: PoolId,
    #[serde(default)]
    pub kind: JobKind,
    pub status: JobStatus,
    /// Keys asked for.
    pub total: u64,
    /// Keys written so far; changes only with the keys themselves.
    #[serde(default)]
    pub done: u64,
    #[serde(default)]
    pub error: Option<String>,
    /// Imports: chunks of validated keys stored for the job, and how many it has processed.
    #[serde(default)]
    pub inputs: u32,
    #[serde(default)]
    pub position: u32,
    /// All-or-nothing pastes and imports: where they are; absent for the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<PastePhase>,
    /// Imports: keys another request took between validation and writing.
    #[serde(
        default,
        rename = "rejected_keys",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub rejected: Vec<String>,
    /// Imports: how many keys were taken in all (`rejected` lists at most a thousand).
    #[serde(default)]
    pub rejected_count: u64,
    /// Generations and imports a person started: who, so that the write that ends the job
    /// records its end (an all-or-nothing paste records itself when it commits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_by: Option<Origin>,
    #[serde(with = "time::rfc3339")]
    pub created_at: Timestamp,
    #[serde(with = "time::rfc3339")]
    pub updated_at: Timestamp,
}

impl KeyJob {
    /// The record of the job's end, for the write that ends it: for a job a person started,
    /// once it is done or failed.
    pub fn end_record(&self) -> Option<AuditRecord> {
        let origin = self.started_by.as_ref()?;
        if !matches!(self.status, JobStatus::Done | JobStatus::Failed) {
            return None;
        }
        let action = match self.kind {
            JobKind::Import => AuditAction::KeysImportFinished,
            JobKind::Generate => AuditAction::KeysGenerationFinished,
            JobKind::Paste => return None,
        };
        let mut summary = Summary::new()
            .with(
                "status",
                if self.status == JobStatus::Done {
                    "done"
                } else {
                    "failed"
                },
            )
            .with("total", self.total)
            .with("done", self.done);
        if self.kind == JobKind::Import {
            summary = summary.with("rejected_count", self.rejected_count);
        }
        let record = Caller::resumed(&self.org, origin)
            .record(
                action,
                Resource::new("job", self.job_id),
                summary,
                self.updated_at,
            )
            .in_pool(self.pool_id);
        Some(record)
    }

    /// A new job of `kind` writing `total` keys into a pool: pending, nothing done, no input,
    /// no phase.
    pub fn new(org: &OrgId, pool_id: PoolId, kind: JobKind, total: u64, now: Timestamp) -> Self {
        Self {
            job_id: JobId::new(),
            org: org.clone(),
            pool_id,
            kind,
            status: JobStatus::Pending,
            total,
            done: 0,
            error: None,
            inputs: 0,
            position: 0,
            phase: None,
            rejected: Vec::new(),
            rejected_count: 0,
            started_by: None,
            created_at: now,
            updated_at: now,
        }
    }
}

/// How long a start refused for too many open jobs is told to wait (`Retry-After`): about
/// the time a job of the local runner or a turn of a queued one takes to move on.
pub const TOO_MANY_JOBS_RETRY_AFTER_SECS: u64 = 30;

/// The most open jobs (generations and imports of many keys, on-demand exports) that one
/// organization may have at once; at least one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxOpenJobs(u64);

impl MaxOpenJobs {
    /// The cap unless configured otherwise.
    pub const DEFAULT: Self = Self(10);

    /// No cap in effect (for the short-lived jobs that carry a request's own all-or-nothing
    /// paste: they are counted while they run, never refused).
    pub const UNCAPPED: Self = Self(u64::MAX);

    /// A cap of `n` jobs; none for zero.
    pub fn new(n: u64) -> Option<Self> {
        (n >= 1).then_some(Self(n))
    }

    /// The number of jobs.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl Default for MaxOpenJobs {
    fn default() -> Self {
        Self::DEFAULT
    }
}
