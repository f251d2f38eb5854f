//! The records KeyPool keeps and their ids: plain data with the rules that belong to it.
//! Nothing here knows the store, the operations or HTTP; everything else builds on it.

mod assignment;
mod audit;
mod export;
mod ids;
mod invoice;
mod job;
mod key;
mod limit;
mod pool;
mod stats;
mod webhook;

pub use assignment::{Assignment, CANCEL_WINDOW_HOURS};
pub use audit::{Actor, AuditAction, AuditFilter, AuditRecord, Caller, Resource, Summary, key_id};
pub use export::{Export, ExportKind, ExportStatus};
pub use ids::{
    AssignmentId, CourseId, DeliveryId, EventId, ExportId, JobId, PoolId, WebhookId, derived_uuid,
};
pub use invoice::{InvoiceLine, InvoiceTotals, LineKind, Month};
pub use job::{
    Job, JobKind, JobStatus, KeyJob, MaxOpenJobs, PastePhase, TOO_MANY_JOBS_RETRY_AFTER_SECS,
};
pub use key::{KeyFilter, KeyRecord, KeySource, KeyStatus, NewKey};
pub use limit::{Condition, Counter, CounterId, Limit, Limited, Step};
pub use pool::{Course, DEFAULT_SHARDS, FIRST_VERSION, MAX_SHARDS, Pool, PoolFilter, PoolStatus};
pub use stats::{Activity, DayCounts, Happening, MonthCounts, PoolStats, PoolTotals};
pub use webhook::{
    AttemptOutcome, DISABLE_AFTER_HOURS, Delivery, DeliveryStatus, Event, EventType, MAX_WEBHOOKS,
    RETRY_FOR_HOURS, SigningSecret, Webhook, retry_delay,
};

/// One page of a listing, with the opaque cursor of the next page.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}
