//! The store: narrow traits in the language of the domain, one per aggregate, so that each
//! function's state names exactly what it may touch (and its IAM policy in template.yaml says
//! the same). `dynamo` implements them all over DynamoDB, one file per aggregate.

pub mod dynamo;

use async_trait::async_trait;

use crate::domain::{
    Activity, Assignment, AssignmentId, AuditFilter, AuditRecord, Condition, Counter, CounterId,
    Course, CourseId, Delivery, DeliveryId, DeliveryStatus, Export, ExportId, InvoiceLine,
    InvoiceTotals, Job, JobId, KeyFilter, KeyJob, KeyRecord, MaxOpenJobs, Month, NewKey, Page,
    PastePhase, Pool, PoolFilter, PoolId, Step, Webhook, WebhookId,
};
use crate::domain::{DayCounts, MonthCounts, PoolTotals};
use crate::error::{Error, Result};
use crate::identity::{OrgId, UserId};
use crate::keys::KeyCode;
use crate::time::Timestamp;

pub use dynamo::DynamoStore;

/// What a batch insert of keys did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct InsertOutcome {
    /// Keys written, counted in the pool's `total_keys`.
    pub inserted: Vec<KeyCode>,
    /// Keys not written because they exist already, in this pool or any other.
    pub taken: Vec<KeyCode>,
}

/// A key job's write refused because the job has all its keys already: another runner of the
/// same job got there first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobFull;

/// Why the redemption transaction was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedeemConflict {
    /// The key is no longer available (someone redeemed or removed it).
    KeyNotAvailable,
    /// The pool is outside its window, deactivated, gone, or edited since it was read.
    PoolNotActive,
    /// The learner already holds an assignment from this pool.
    LearnerHoldsAssignment,
    /// A counter of `limits` changed since it was read.
    LimitChanged,
}

/// Why a key could not be removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoveConflict {
    /// No such key in this pool.
    NotFound,
    /// The key was redeemed.
    Redeemed,
}

/// An organization's courses.
#[async_trait]
pub trait Courses: Send + Sync {
    /// Stores a new course, with its audit record.
    async fn put_course(&self, course: &Course, record: &AuditRecord) -> Result<()>;
    /// Replaces a course that exists, with its audit record; `false` when there is none
    /// (nothing is written).
    async fn replace_course(&self, course: &Course, record: &AuditRecord) -> Result<bool>;
    /// Reads a course of the organization.
    async fn get_course(&self, org: &OrgId, id: &CourseId) -> Result<Option<Course>>;
    /// A page of the organization's courses whose lower-cased title contains `search`.
    async fn list_courses(
        &self,
        org: &OrgId,
        search: Option<&str>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Course>>;
}

/// Pools and their settings; their counts change only with their keys.
#[async_trait]
pub trait Pools: Send + Sync {
    /// Stores a new pool, with its audit record.
    async fn put_pool(&self, pool: &Pool, record: &AuditRecord) -> Result<()>;
    /// Reads a pool of the organization, with its counts (strongly consistent).
    async fn get_pool(&self, org: &OrgId, id: &PoolId) -> Result<Option<Pool>>;
    /// Reads a pool's settings only, for writers that need no counts (strongly consistent;
    /// its counts are not summed from the shards and may be anything).
    async fn get_pool_settings(&self, org: &OrgId, id: &PoolId) -> Result<Option<Pool>> {
        self.get_pool(org, id).await
    }
    /// A page of the organization's pools that `filter` admits.
    async fn list_pools(
        &self,
        org: &OrgId,
        filter: &PoolFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Pool>>;
    /// Writes a pool's settings (not its counts) with its audit record, if its version is
    /// still `expected_version` (else nothing, and false).
    async fn update_pool_settings(
        &self,
        pool: &Pool,
        expected_version: u64,
        record: &AuditRecord,
    ) -> Result<bool>;
    /// A page of every organization's pools (for the scheduled export).
    async fn list_all_pools(&self, cursor: Option<&str>, limit: usize) -> Result<Page<Pool>>;
}

/// Keys: global uniqueness, a pool's inventory, and distribution marks.
#[async_trait]
pub trait Keys: Send + Sync {
    /// Inserts keys into a pool, each only if it exists nowhere yet, counting them in the pool
    /// in the same atomic writes; the first atomic write that adds keys also writes the audit
    /// record, if one is given (a change that wrote its record already gives none). Fails
    /// with not-found when the pool is gone.
    async fn insert_keys(
        &self,
        pool: &Pool,
        keys: &[NewKey],
        now: Timestamp,
        record: Option<&AuditRecord>,
    ) -> Result<InsertOutcome>;
    /// Which of these keys exist already, anywhere, each with the organization that holds it
    /// (`None` when that cannot be read).
    async fn existing_keys(&self, keys: &[KeyCode]) -> Result<Vec<(KeyCode, Option<OrgId>)>>;
    /// Removes an available key of a pool and uncounts it, with its audit record, atomically.
    async fn remove_key(
        &self,
        pool: &Pool,
        key: &KeyCode,
        record: &AuditRecord,
    ) -> Result<Result<(), RemoveConflict>>;
    /// Removes keys this pool just got (to undo a failed all-or-nothing paste).
    async fn remove_available_keys(&self, pool: &Pool, keys: &[KeyCode]) -> Result<()>;
    /// Reads one key wherever it is (strongly consistent).
    async fn get_key(&self, key: &KeyCode) -> Result<Option<KeyRecord>>;
    /// A page of a pool's keys that pass the filter.
    async fn list_keys(
        &self,
        pool_id: &PoolId,
        filter: &KeyFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<KeyRecord>>;
    /// Marks keys as handed out by an export, each only if it is still available and no other
    /// export marked it first; returns the keys this call marked.
    async fn mark_distributed(
        &self,
        keys: &[KeyCode],
        export_id: &ExportId,
        now: Timestamp,
    ) -> Result<Vec<KeyCode>>;
    /// Removes the marks one export made (it failed); returns how many.
    async fn unmark_distributed(&self, pool_id: &PoolId, export_id: &ExportId) -> Result<u64>;
}

/// Redemption and what follows it: assignments, launches, cancellations.
#[async_trait]
pub trait Assignments: Send + Sync {
    /// The assignment a learner already got from a pool, if any.
    async fn pool_assignment_of(
        &self,
        pool_id: &PoolId,
        learner: &UserId,
    ) -> Result<Option<AssignmentId>>;
    /// The redemption, as one transaction across both tables: the key becomes redeemed, the
    /// pool counts it (only while still at `pool.version`, whose settings the caller checked
    /// and shaped the assignment with), the assignment and the learner's pool guard appear; and every counter in
    /// `limits` still meets its condition (the learner is not throttled by then).
    async fn redeem(
        &self,
        assignment: &Assignment,
        pool: &Pool,
        now: Timestamp,
        limits: &[(CounterId, Condition)],
    ) -> Result<Result<(), RedeemConflict>>;
    /// Reads one of the learner's assignments.
    async fn get_assignment(
        &self,
        learner: &UserId,
        id: &AssignmentId,
    ) -> Result<Option<Assignment>>;
    /// A page of the learner's assignments, newest first.
    async fn list_assignments(
        &self,
        learner: &UserId,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Assignment>>;
    /// Counts a launch of a valid assignment; `None` when it does not exist.
    async fn record_launch(
        &self,
        learner: &UserId,
        id: &AssignmentId,
        now: Timestamp,
    ) -> Result<Option<Assignment>>;
    /// The learner holding an assignment of the organization; `None` for unknown ids and
    /// other organizations' assignments.
    async fn assignment_learner(&self, org: &OrgId, id: &AssignmentId) -> Result<Option<UserId>>;
    /// The cancellation, as one transaction across both tables: the assignment is marked
    /// cancelled (only if never launched, not cancelled and redeemed less than 24 hours before
    /// `now`), its key becomes available, the pool uncounts it and the learner's pool guard
    /// goes. False when the assignment no longer qualifies.
    async fn cancel_assignment(
        &self,
        assignment: &Assignment,
        pool: &Pool,
        now: Timestamp,
        record: &AuditRecord,
    ) -> Result<bool>;
}

/// Large generations and imports, written in chunks that survive a restart.
#[async_trait]
pub trait KeyJobs: Send + Sync {
    /// Inserts keys for a key job: as `insert_keys`, and each atomic write also counts its keys
    /// in the job's `done`, never beyond `total`, so a job stopped at any point resumes without
    /// losing or doubling keys. Nothing is undone on failure. `JobFull` when the job already
    /// has `total` keys (another runner finished it).
    async fn insert_job_keys(
        &self,
        pool: &Pool,
        job_id: &JobId,
        total: u64,
        keys: &[NewKey],
        now: Timestamp,
    ) -> Result<Result<InsertOutcome, JobFull>>;
    /// Which of these keys exist and were written by the job.
    async fn keys_of_job(&self, keys: &[KeyCode], job_id: &JobId) -> Result<Vec<KeyCode>>;
    /// Stores one chunk of an import job's validated keys.
    async fn put_job_input(
        &self,
        org: &OrgId,
        job_id: &JobId,
        index: u32,
        keys: &[KeyCode],
    ) -> Result<()>;
    /// Reads one chunk of an import job's keys.
    async fn get_job_input(&self, org: &OrgId, job_id: &JobId, index: u32) -> Result<Vec<KeyCode>>;
    /// Records how many input chunks an import job has processed (only forwards, so a chunk
    /// recorded twice counts once), and the keys it found taken by others when it wrote them:
    /// `taken` of them in all, of which `shown` are listed (reported, never dropped silently).
    async fn record_job_progress(
        &self,
        org: &OrgId,
        job_id: &JobId,
        position: u32,
        shown: &[KeyCode],
        taken: u64,
    ) -> Result<()>;
    /// Writes keys of an all-or-nothing paste as pending (each only if it exists nowhere yet,
    /// tagged with the job; neither listed nor counted nor redeemable), in atomic writes that
    /// each also check that the job is still writing. Fails with a `paste_interrupted`
    /// conflict once it is not. `taken` holds the keys that exist already, this job's too.
    async fn write_pending_keys(
        &self,
        org: &OrgId,
        pool_id: &PoolId,
        job_id: &JobId,
        keys: &[KeyCode],
        now: Timestamp,
    ) -> Result<InsertOutcome>;
    /// Makes the job's pending keys among `keys` available, counting them in the pool's
    /// `total_keys` and the job's `done` in the same atomic writes; keys already committed
    /// (a resumed commit) are passed over. Returns how many this call committed.
    async fn commit_pending_keys(
        &self,
        pool: &Pool,
        job_id: &JobId,
        keys: &[KeyCode],
        now: Timestamp,
    ) -> Result<u64>;
    /// Removes the job's pending keys among `keys` (a rollback); returns how many.
    async fn remove_pending_keys(&self, job_id: &JobId, keys: &[KeyCode]) -> Result<u64>;
    /// Moves an all-or-nothing job from phase `from` to `to` (resetting its `position` for the
    /// next phase), only if it is still in `from`; false when it was not. A `record` is
    /// written in the same atomic write (the move to committing decides that a paste lands).
    async fn set_paste_phase(
        &self,
        org: &OrgId,
        job_id: &JobId,
        from: PastePhase,
        to: PastePhase,
        record: Option<&AuditRecord>,
    ) -> Result<bool>;
    /// Stores a new key job, lists it among the open jobs and counts it in its organization's
    /// open jobs, in one atomic write; when the organization has `max_open` open jobs
    /// already, fails with `Error::TooManyJobs` having written nothing (an import's stored
    /// input chunks are taken away again). A job a person starts comes with the record of
    /// its start, written in the same atomic write.
    async fn put_key_job(
        &self,
        job: &KeyJob,
        max_open: MaxOpenJobs,
        record: Option<&AuditRecord>,
    ) -> Result<()>;
    /// How many open jobs that count against the cap the organization has (a strongly
    /// consistent read; only `put_key_job` and `put_export` enforce the cap race-free).
    async fn open_job_count(&self, org: &OrgId) -> Result<u64>;
    /// Reads a key job of the organization (strongly consistent).
    async fn get_key_job(&self, org: &OrgId, id: &JobId) -> Result<Option<KeyJob>>;
    /// Writes a key job's status and error (not its progress, which only key writes change);
    /// a finished status also takes it off the open jobs and uncounts it, atomically (once,
    /// however many runs finish it). The write that finishes a job a person started records
    /// its end (`KeyJob::end_record`), once: a job finished already is left as it is.
    async fn set_key_job_status(&self, job: &KeyJob) -> Result<()>;
}

/// Exports of a pool's keys, and the scheduled exports' claims.
#[async_trait]
pub trait Exports: Send + Sync {
    /// Stores a new export and lists it among the open jobs, atomically. One that counts
    /// (`Export::counts_as_open_job`) is counted in its organization's open jobs in the same
    /// write, or refused with `Error::TooManyJobs` (nothing written) when the organization
    /// has `max_open` already; a scheduled export is neither counted nor refused. A person's
    /// export records its start in the same write (`Export::start_record`).
    async fn put_export(&self, export: &Export, max_open: MaxOpenJobs) -> Result<()>;
    /// Reads an export of the organization.
    async fn get_export(&self, org: &OrgId, id: &ExportId) -> Result<Option<Export>>;
    /// A page of a pool's exports, newest first (eventually consistent: a new export may
    /// show a moment later).
    async fn list_exports(
        &self,
        org: &OrgId,
        pool_id: &PoolId,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Export>>;
    /// Writes an export's progress while it is pending or running; false when it has been
    /// finished already (by another run), which is left as it is.
    async fn update_export(&self, export: &Export) -> Result<bool>;
    /// Writes a finished (done or failed) export and takes it off the open jobs (uncounting
    /// it), atomically, with the record of its end when a person started it.
    async fn finish_export(&self, export: &Export) -> Result<()>;
    /// Records that a scheduled export covers the pool up to change mark `mark`, unless one
    /// already does; true when this call claimed it.
    async fn claim_scheduled_export(
        &self,
        org: &OrgId,
        pool_id: &PoolId,
        mark: u64,
    ) -> Result<bool>;
    /// Undoes a claim whose export failed, so the next schedule exports the pool again.
    async fn release_scheduled_export(
        &self,
        org: &OrgId,
        pool_id: &PoolId,
        mark: u64,
    ) -> Result<()>;
}

/// The registry of background jobs started and not finished.
#[async_trait]
pub trait OpenJobs: Send + Sync {
    /// Jobs started and not finished, across organizations.
    async fn open_jobs(&self) -> Result<Vec<Job>>;
}

/// What billing writes: the whole of the billing function's store.
#[async_trait]
pub trait Ledger: Send + Sync {
    /// Writes invoice lines in order, in atomic chunks that each count their lines in their
    /// months' totals, skipping (and not counting) the lines that exist already. Stops at the
    /// first chunk that fails: the lines before it are settled, it and those after are not.
    async fn record_invoice_lines(&self, lines: &[InvoiceLine]) -> RecordedLines;
}

/// How far `Ledger::record_invoice_lines` got.
#[derive(Debug, Default)]
pub struct RecordedLines {
    /// One per line settled, from the first: true when this call wrote it, false when it was
    /// there already.
    pub settled: Vec<bool>,
    /// Why the lines after `settled` were not written (or not known to be), if they were not.
    pub failure: Option<Error>,
}

/// Reading invoices back.
#[async_trait]
pub trait Invoices: Send + Sync {
    /// A month's invoice totals for an organization (strongly consistent).
    async fn invoice_totals(&self, org: &OrgId, month: Month) -> Result<InvoiceTotals>;
    /// A page of a month's invoice lines for an organization, in assignment order.
    async fn list_invoice_lines(
        &self,
        org: &OrgId,
        month: Month,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<InvoiceLine>>;
}

/// What the stats consumer writes: the whole of the stats function's store.
#[async_trait]
pub trait ActivityCounts: Send + Sync {
    /// Counts activities in order, in atomic chunks that each put a marker per activity (only
    /// if absent) and add the activities whose markers are new to their pools' days and totals
    /// and their organizations' months, so that an activity counts once however often it is
    /// given. Stops at the first chunk that fails: the activities before it are settled, it
    /// and those after are not.
    async fn count_activities(&self, activities: &[Activity]) -> Settled;
}

/// How far a write of items that are each settled once got (`ActivityCounts`).
#[derive(Debug, Default)]
pub struct Settled {
    /// One per item settled, from the first: true when this call counted it, false when it
    /// was counted already.
    pub settled: Vec<bool>,
    /// Why the items after `settled` were not written (or not known to be), if they were not.
    pub failure: Option<Error>,
}

/// Reading the activity counts back.
#[async_trait]
pub trait Stats: Send + Sync {
    /// A pool's counted days from `from` to `to` (both included), oldest first; a day with
    /// nothing counted is absent.
    async fn pool_days(
        &self,
        pool_id: &PoolId,
        from: chrono::NaiveDate,
        to: chrono::NaiveDate,
    ) -> Result<Vec<DayCounts>>;
    /// A pool's totals since it opened.
    async fn pool_totals(&self, pool_id: &PoolId) -> Result<PoolTotals>;
    /// An organization's counted months from `from` to `to` (both included), oldest first; a
    /// month with nothing counted is absent.
    async fn month_counts(&self, org: &OrgId, from: Month, to: Month) -> Result<Vec<MonthCounts>>;
}

/// Where a stream consumer got to, per shard.
#[async_trait]
pub trait StreamCheckpoints: Send + Sync {
    /// The last sequence number a stream consumer finished in a shard.
    async fn stream_checkpoint(&self, stream_arn: &str, shard_id: &str) -> Result<Option<String>>;
    /// Records the last sequence number a stream consumer finished in a shard.
    async fn save_stream_checkpoint(
        &self,
        stream_arn: &str,
        shard_id: &str,
        sequence_number: &str,
    ) -> Result<()>;
}

/// Sliding-window counters (failed redemptions, key collisions), changed only by conditional
/// steps so that concurrent writers never count past a limit.
#[async_trait]
pub trait Counters: Send + Sync {
    /// The counters as stored, in the order asked, in one round; `None` for one never
    /// counted or expired.
    async fn counters(&self, ids: &[CounterId]) -> Result<Vec<Option<Counter>>>;
    /// The keys `candidates` (each `None` when there is no such key) and the counters (as
    /// `counters`), read together in one round: what a redemption needs before it writes.
    async fn keys_and_counters(
        &self,
        candidates: &[KeyCode],
        ids: &[CounterId],
    ) -> Result<(Vec<Option<KeyRecord>>, Vec<Option<Counter>>)>;
    /// Takes a step if its condition still holds; `false` when the counter changed since it
    /// was read (read it again and recompute). The counter may vanish after `expires_at`.
    async fn step_counter(
        &self,
        id: &CounterId,
        step: &Step,
        expires_at: Timestamp,
    ) -> Result<bool>;
}

/// An organization's webhook endpoints and their deliveries.
#[async_trait]
pub trait Webhooks: Send + Sync {
    /// Stores a new endpoint, with its audit record.
    async fn put_webhook(&self, webhook: &Webhook, record: &AuditRecord) -> Result<()>;
    /// Reads one of the organization's endpoints.
    async fn get_webhook(&self, org: &OrgId, id: &WebhookId) -> Result<Option<Webhook>>;
    /// The organization's endpoints, oldest first.
    async fn list_webhooks(&self, org: &OrgId) -> Result<Vec<Webhook>>;
    /// Writes a changed endpoint over the version `read` it was read at; `false` when it
    /// changed meanwhile (or is gone). A person's change comes with its audit record, written
    /// in the same atomic write; the sender's own changes (disabling) come with none.
    async fn replace_webhook(
        &self,
        webhook: &Webhook,
        read: u64,
        record: Option<&AuditRecord>,
    ) -> Result<bool>;
    /// Removes an endpoint, with its audit record; `false` when there was none. Its
    /// deliveries stay, and are abandoned when their turn comes.
    async fn delete_webhook(
        &self,
        org: &OrgId,
        id: &WebhookId,
        record: &AuditRecord,
    ) -> Result<bool>;
    /// Stores deliveries that are not stored yet (an event fanned out again makes none), each
    /// waiting for its first attempt; the ones it stored.
    async fn put_deliveries(&self, deliveries: &[Delivery]) -> Result<Vec<Delivery>>;
    /// Reads one delivery of an endpoint.
    async fn get_delivery(&self, webhook: &WebhookId, id: &DeliveryId) -> Result<Option<Delivery>>;
    /// Writes a delivery after an attempt (or a retry asked for), moving its place among the
    /// waiting ones from `was_due` to its `next_attempt_at`; a person's retry or test comes
    /// with its audit record, written in the same atomic write.
    async fn save_delivery(
        &self,
        delivery: &Delivery,
        was_due: Option<Timestamp>,
        record: Option<&AuditRecord>,
    ) -> Result<()>;
    /// A page of an endpoint's deliveries, newest first, of one status if given.
    async fn list_deliveries(
        &self,
        webhook: &WebhookId,
        status: Option<DeliveryStatus>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Delivery>>;
    /// Deliveries whose next attempt is due at `now`, at most `limit` of them.
    async fn due_deliveries(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<(WebhookId, DeliveryId)>>;
}

/// The audit log, append-only: records are written with the changes they record (each
/// change's write takes its record) or, for a change with nothing else to write, alone; never
/// changed or removed (DynamoDB's TTL expires them).
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Writes a record of a change that writes nothing else (a sign-in, a download).
    async fn record_audit(&self, record: &AuditRecord) -> Result<()>;
    /// A page of the organization's records that `filter` admits, newest first.
    async fn list_audit(
        &self,
        org: &OrgId,
        filter: &AuditFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<AuditRecord>>;
}

// What each function may touch: the traits its state holds, which its IAM policy in
// template.yaml mirrors. Each is implemented for everything that implements its parts.

macro_rules! function_store {
    ($(#[$doc:meta])* $name:ident: $first:ident $(+ $rest:ident)*) => {
        $(#[$doc])*
        pub trait $name: $first $(+ $rest)* {}
        impl<T: $first $(+ $rest)* + ?Sized> $name for T {}
    };
}

function_store!(
    /// The pool-admin function: courses, pools, custom keys (long lists as import jobs),
    /// listings, cancellations and invoices.
    PoolAdminStore: Courses + Pools + Keys + KeyJobs + Assignments + Invoices + Counters + Webhooks + AuditLog + Stats
);
function_store!(
    /// The key-generation function: generations at once and as jobs, and the import jobs.
    KeyGenerationStore: Pools + Keys + KeyJobs + Webhooks + AuditLog
);
function_store!(
    /// The redemption function: redeem, a learner's assignments, launches.
    RedemptionStore: Pools + Keys + Assignments + Counters + Courses
);
function_store!(
    /// The export function: exports on demand, their jobs, and the schedule.
    ExportStore: Courses + Pools + Keys + Exports + OpenJobs + Webhooks + AuditLog
);
function_store!(
    /// The local server's stream follower: billing, webhooks' events, activity counts, and
    /// its per-shard checkpoints.
    FollowerStore: Ledger + StreamCheckpoints + Webhooks + ActivityCounts
);
function_store!(
    /// The webhooks function: events fanned out to endpoints, and their deliveries sent.
    WebhooksStore: Webhooks
);

/// Everything KeyPool keeps, for the local server and the tests, which run every function in
/// one process; it converts into each function's narrower store.
pub trait Store:
    PoolAdminStore
    + KeyGenerationStore
    + RedemptionStore
    + ExportStore
    + FollowerStore
    + Courses
    + Pools
    + Keys
    + Assignments
    + KeyJobs
    + Exports
    + OpenJobs
    + Ledger
    + Invoices
    + StreamCheckpoints
    + Counters
    + Webhooks
    + AuditLog
    + ActivityCounts
    + Stats
    + 'static
{
}

impl<T> Store for T where
    T: Courses
        + Pools
        + Keys
        + Assignments
        + KeyJobs
        + Exports
        + OpenJobs
        + Ledger
        + Invoices
        + StreamCheckpoints
        + Counters
        + Webhooks
        + AuditLog
        + ActivityCounts
        + Stats
        + 'static
{
}

/// Every trait of the store, for code that holds all of it (the local server, the tests):
/// `use keypool::store::prelude::*;` brings their methods into scope.
pub mod prelude {
    pub use super::{
        ActivityCounts, Assignments, AuditLog, Counters, Courses, Exports, Invoices, KeyJobs, Keys,
        Ledger, OpenJobs, Pools, Stats, Store, StreamCheckpoints, Webhooks,
    };
}
