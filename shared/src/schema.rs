//! The table schema, in one place: table names, key attributes, and every PK/SK builder.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType,
};

use chrono::NaiveDate;

use crate::domain::{
    AssignmentId, CounterId, CourseId, DeliveryId, ExportId, Happening, Job, JobId, KeyStatus,
    LineKind, Month, PoolId, WebhookId,
};
use crate::identity::{OrgId, UserId};
use crate::keys::KeyCode;
use crate::time::{self, Timestamp};

/// Partition key attribute of both tables.
pub const PK: &str = "PK";
/// Sort key attribute of both tables.
pub const SK: &str = "SK";
/// The main table's index for listing a pool's keys.
pub const GSI1: &str = "GSI1";
/// GSI1's partition key attribute.
pub const GSI1PK: &str = "GSI1PK";
/// GSI1's sort key attribute.
pub const GSI1SK: &str = "GSI1SK";
/// Every item says what it is.
pub const ENTITY: &str = "entity";
/// The attribute DynamoDB's time-to-live deletes expired items by.
pub const TTL: &str = "expires_at_epoch";
/// Sort key of a key item.
pub const KEY_SK: &str = "KEY";

/// The names of the two tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tables {
    /// Courses, pools, keys, guards and counters; no stream.
    pub main: String,
    /// Assignments; its stream feeds billing.
    pub assignments: String,
    /// The audit log: append-only (IAM grants PutItem and Query only), expired by TTL.
    pub audit: String,
}

impl Default for Tables {
    fn default() -> Self {
        Self {
            main: "keypool-main".into(),
            assignments: "keypool-assignments".into(),
            audit: "keypool-audit".into(),
        }
    }
}

impl Tables {
    /// Reads `MAIN_TABLE`, `ASSIGNMENTS_TABLE` and `AUDIT_TABLE`, naming the missing one.
    pub fn from_env() -> anyhow::Result<Self> {
        let var = |name: &str| {
            std::env::var(name)
                .map_err(|_| anyhow::anyhow!("environment variable {name} is not set"))
        };
        Ok(Self {
            main: var("MAIN_TABLE")?,
            assignments: var("ASSIGNMENTS_TABLE")?,
            audit: var("AUDIT_TABLE")?,
        })
    }
}

/// Partition of everything an organization owns.
pub fn org_pk(org: &OrgId) -> String {
    format!("ORG#{org}")
}
/// Sort key of a pool.
pub fn pool_sk(id: &PoolId) -> String {
    format!("POOL#{id}")
}
/// Sort key prefix of pools.
pub const POOL_SK_PREFIX: &str = "POOL#";
/// Sort key of a course.
pub fn course_sk(id: &CourseId) -> String {
    format!("COURSE#{id}")
}
/// Sort key prefix of courses.
pub const COURSE_SK_PREFIX: &str = "COURSE#";
/// Partition of a key: one item per key makes keys unique across the system.
pub fn key_pk(key: &KeyCode) -> String {
    format!("KEY#{key}")
}
/// Partition key prefix of keys.
pub const KEY_PK_PREFIX: &str = "KEY#";
/// GSI1 partition of a pool's keys.
pub fn pool_keys_pk(pool: &PoolId) -> String {
    format!("POOL#{pool}")
}
/// GSI1 sort key of a key: by status, then key.
pub fn key_by_status_sk(status: KeyStatus, key: &KeyCode) -> String {
    format!("KEY#{}#{key}", status.as_str())
}
/// GSI1 sort key prefix for a status filter, or all keys.
pub fn key_by_status_prefix(status: Option<KeyStatus>) -> String {
    match status {
        Some(s) => format!("KEY#{}#", s.as_str()),
        None => "KEY#".into(),
    }
}
/// Partition of one of a pool's count shards: each its own partition, so that neither an
/// item's nor a partition's write limit caps the pool.
pub fn pool_shard_pk(pool: &PoolId, shard: u16) -> String {
    format!("POOLSHARD#{pool}#{shard}")
}
/// Sort key of a count shard.
pub const POOL_SHARD_SK: &str = "SHARD";
/// Partition of a pool's per-learner guards.
pub fn guard_pk(pool: &PoolId) -> String {
    format!("POOL#{pool}")
}
/// Sort key of the guard that lets a learner hold one assignment per pool.
pub fn guard_sk(learner: &UserId) -> String {
    format!("LEARNER#{learner}")
}
/// Partition of a sliding-window counter (failed redemptions, key collisions).
pub fn counter_pk(id: &CounterId) -> String {
    format!("LIMIT#{}", id.name())
}
/// Sort key of a counter.
pub const COUNTER_SK: &str = "COUNTER";
/// Partition of a learner's assignments (assignments table).
pub fn user_pk(learner: &UserId) -> String {
    format!("USER#{learner}")
}
/// Sort key of an assignment (assignments table).
pub fn assignment_sk(id: &AssignmentId) -> String {
    format!("ASSIGN#{id}")
}
/// Sort key prefix of assignments.
pub const ASSIGNMENT_SK_PREFIX: &str = "ASSIGN#";

/// Sort key of the pointer from an organization to an assignment (which learner holds it).
pub fn assignment_ref_sk(id: &AssignmentId) -> String {
    format!("ASSIGNMENT#{id}")
}
/// Partition of an organization's invoice for a month.
pub fn invoice_pk(org: &OrgId, month: Month) -> String {
    format!("ORG#{org}#INVOICE#{month}")
}
/// Sort key of an invoice line: one per assignment and kind, so a replay finds it. Lines sort
/// by assignment (ids are time-ordered), and a redemption before its credit.
pub fn invoice_line_sk(id: &AssignmentId, kind: LineKind) -> String {
    let order = match kind {
        LineKind::Redemption => 1,
        LineKind::Credit => 2,
    };
    format!("LINE#{id}#{order}")
}
/// Sort key prefix of invoice lines.
pub const INVOICE_LINE_SK_PREFIX: &str = "LINE#";
/// Sort key of a month's totals.
pub const INVOICE_TOTALS_SK: &str = "TOTALS";
/// Partition that lists every pool of every organization (for the scheduled export).
pub const POOL_REGISTRY_PK: &str = "POOLS";
/// Sort key of a pool in the registry.
pub fn pool_registry_sk(org: &OrgId, pool: &PoolId) -> String {
    format!("POOL#{org}#{pool}")
}
/// Sort key of an export.
pub fn export_sk(id: &ExportId) -> String {
    format!("EXPORT#{id}")
}
/// GSI1 partition of a pool's exports, sorted by `export_sk` (ids are time-ordered). Not the
/// pool's own GSI1 partition, which holds only its keys.
pub fn pool_exports_pk(pool: &PoolId) -> String {
    format!("POOLEXPORTS#{pool}")
}
/// Sort key prefix of exports.
pub const EXPORT_SK_PREFIX: &str = "EXPORT#";
/// Partition that lists jobs started and not finished.
pub const OPEN_JOBS_PK: &str = "JOBS#open";
/// Sort key of an open job.
pub fn open_job_sk(job: &Job) -> String {
    match job {
        Job::Export { export_id, .. } => format!("EXPORT#{export_id}"),
        Job::Generate { job_id, .. } => format!("GENERATE#{job_id}"),
    }
}

/// Sort key of an organization's count of open jobs (in its `org_pk` partition), which caps
/// how many it may have.
pub const OPEN_JOB_COUNT_SK: &str = "OPEN_JOBS";

/// Sort key of a key job (a large generation).
pub fn key_job_sk(id: &JobId) -> String {
    format!("JOB#{id}")
}
/// Sort key of one chunk of an import job's validated keys.
pub fn job_input_sk(id: &JobId, index: u32) -> String {
    format!("JOB#{id}#INPUT#{index:06}")
}

/// Sort key of a webhook endpoint, in its organization's partition.
pub fn webhook_sk(id: &WebhookId) -> String {
    format!("WEBHOOK#{id}")
}
/// Sort key prefix of webhook endpoints.
pub const WEBHOOK_SK_PREFIX: &str = "WEBHOOK#";
/// Partition of an endpoint's deliveries, newest last (their ids are time-ordered).
pub fn deliveries_pk(webhook: &WebhookId) -> String {
    format!("WEBHOOK#{webhook}")
}
/// Sort key of a delivery.
pub fn delivery_sk(id: &DeliveryId) -> String {
    format!("DELIVERY#{id}")
}
/// Sort key prefix of deliveries.
pub const DELIVERY_SK_PREFIX: &str = "DELIVERY#";
/// Partitions of the deliveries waiting for an attempt, spread by delivery so that no one
/// partition takes every delivery's writes.
pub const DUE_SHARDS: u8 = 16;
/// A partition of waiting deliveries.
pub fn due_pk(shard: u8) -> String {
    format!("WEBHOOKDUE#{shard:02}")
}
/// Sort key of a waiting delivery: when it is due, then which.
pub fn due_sk(at: &Timestamp, webhook: &WebhookId, delivery: &DeliveryId) -> String {
    format!("{}#{webhook}#{delivery}", time::format(at))
}
/// The bound below which every waiting delivery due by `now` (its millisecond included)
/// sorts: `~` sorts after every character of an id.
pub fn due_until(now: &Timestamp) -> String {
    format!("{}#~", time::format(now))
}

/// Partition of a pool's activity counts (main table): its days and its totals.
pub fn pool_stats_pk(pool: &PoolId) -> String {
    format!("POOLSTATS#{pool}")
}
/// Sort key of a pool's counts on a UTC day: days sort by date.
pub fn stats_day_sk(day: NaiveDate) -> String {
    format!("DAY#{}", day.format("%Y-%m-%d"))
}
/// Sort key of a pool's activity totals.
pub const POOL_STATS_TOTALS_SK: &str = "TOTALS";
/// Partition of an organization's activity counts per month (main table).
pub fn org_stats_pk(org: &OrgId) -> String {
    format!("ORG#{org}#STATS")
}
/// Sort key of an organization's counts in a month: months sort by date.
pub fn stats_month_sk(month: Month) -> String {
    format!("MONTH#{month}")
}
/// Partition of the markers of what the stats consumer counted of one assignment: one item
/// per happening, put only if absent in the transaction that counts it.
pub fn stats_mark_pk(id: &AssignmentId) -> String {
    format!("STATSMARK#{id}")
}
/// Sort key of the marker of one happening of an assignment.
pub fn stats_mark_sk(happening: Happening) -> String {
    happening.name()
}

/// Partition of a stream consumer's checkpoints.
pub fn checkpoint_pk(stream_arn: &str) -> String {
    format!("STREAM#{stream_arn}")
}
/// Sort key of one shard's checkpoint.
pub fn checkpoint_sk(shard_id: &str) -> String {
    format!("SHARD#{shard_id}")
}

/// The audit table's index of an actor's records.
pub const AUDIT_BY_ACTOR: &str = "ByActor";
/// The audit table's index of a resource's records.
pub const AUDIT_BY_RESOURCE: &str = "ByResource";
/// The audit table's index of an action's records.
pub const AUDIT_BY_ACTION: &str = "ByAction";
/// The audit table's index of the records that concern a pool.
pub const AUDIT_BY_POOL: &str = "ByPool";
/// Partition and sort key attributes of the audit indexes, in the order of the indexes.
pub const AUDIT_INDEX_KEYS: [(&str, &str, &str); 4] = [
    (AUDIT_BY_ACTOR, "ActorPK", "ActorSK"),
    (AUDIT_BY_RESOURCE, "ResourcePK", "ResourceSK"),
    (AUDIT_BY_ACTION, "ActionPK", "ActionSK"),
    (AUDIT_BY_POOL, "PoolPK", "PoolSK"),
];
/// Partition of an organization's audit records (audit table).
pub fn audit_pk(org: &OrgId) -> String {
    format!("ORG#{org}")
}
/// Sort key of an audit record, and of it in each index: newest last, by time then id.
pub fn audit_sk(at: &Timestamp, event: &crate::domain::EventId) -> String {
    format!("AT#{}#{event}", time::format(at))
}
/// Sort key prefix of audit records.
pub const AUDIT_SK_PREFIX: &str = "AT#";
/// The lowest sort key of records at or after `at`.
pub fn audit_from(at: &Timestamp) -> String {
    format!("AT#{}", time::format(at))
}
/// The highest sort key of records at or before `at` (`~` sorts after every id).
pub fn audit_to(at: &Timestamp) -> String {
    format!("AT#{}#~", time::format(at))
}
/// Index partition of an actor's records.
pub fn audit_actor_pk(org: &OrgId, sub: &str) -> String {
    format!("ORG#{org}#ACTOR#{sub}")
}
/// Index partition of a resource's records.
pub fn audit_resource_pk(org: &OrgId, id: &str) -> String {
    format!("ORG#{org}#RESOURCE#{id}")
}
/// Index partition of an action's records.
pub fn audit_action_pk(org: &OrgId, action: &str) -> String {
    format!("ORG#{org}#ACTION#{action}")
}
/// Index partition of the records that concern a pool.
pub fn audit_pool_pk(org: &OrgId, pool_id: &str) -> String {
    format!("ORG#{org}#POOL#{pool_id}")
}

fn attr(name: &str) -> anyhow::Result<AttributeDefinition> {
    Ok(AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()?)
}

fn key(name: &str, kind: KeyType) -> anyhow::Result<KeySchemaElement> {
    Ok(KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()?)
}

fn index(name: &str, pk: &str, sk: &str) -> anyhow::Result<GlobalSecondaryIndex> {
    Ok(GlobalSecondaryIndex::builder()
        .index_name(name)
        .key_schema(key(pk, KeyType::Hash)?)
        .key_schema(key(sk, KeyType::Range)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::All)
                .build(),
        )
        .build()?)
}

/// Creates the tables where they do not exist yet (local server and tests; SAM in AWS).
pub async fn ensure_tables(client: &Client, tables: &Tables) -> anyhow::Result<()> {
    let existing = client.list_tables().send().await?;
    let have = |name: &str| existing.table_names().iter().any(|t| t == name);
    if !have(&tables.main) {
        client
            .create_table()
            .table_name(&tables.main)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr(PK)?)
            .attribute_definitions(attr(SK)?)
            .attribute_definitions(attr(GSI1PK)?)
            .attribute_definitions(attr(GSI1SK)?)
            .key_schema(key(PK, KeyType::Hash)?)
            .key_schema(key(SK, KeyType::Range)?)
            .global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(GSI1)
                    .key_schema(key(GSI1PK, KeyType::Hash)?)
                    .key_schema(key(GSI1SK, KeyType::Range)?)
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::All)
                            .build(),
                    )
                    .build()?,
            )
            .send()
            .await?;
    }
    if !have(&tables.assignments) {
        client
            .create_table()
            .table_name(&tables.assignments)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr(PK)?)
            .attribute_definitions(attr(SK)?)
            .key_schema(key(PK, KeyType::Hash)?)
            .key_schema(key(SK, KeyType::Range)?)
            .stream_specification(
                StreamSpecification::builder()
                    .stream_enabled(true)
                    .stream_view_type(StreamViewType::NewAndOldImages)
                    .build()?,
            )
            .send()
            .await?;
    }
    if !have(&tables.audit) {
        let mut create = client
            .create_table()
            .table_name(&tables.audit)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr(PK)?)
            .attribute_definitions(attr(SK)?)
            .key_schema(key(PK, KeyType::Hash)?)
            .key_schema(key(SK, KeyType::Range)?);
        for (name, pk, sk) in AUDIT_INDEX_KEYS {
            create = create
                .attribute_definitions(attr(pk)?)
                .attribute_definitions(attr(sk)?)
                .global_secondary_indexes(index(name, pk, sk)?);
        }
        create.send().await?;
        // Records expire after the retention; an engine without TTL keeps them (no harm).
        let ttl = aws_sdk_dynamodb::types::TimeToLiveSpecification::builder()
            .attribute_name(TTL)
            .enabled(true)
            .build()?;
        if let Err(e) = client
            .update_time_to_live()
            .table_name(&tables.audit)
            .time_to_live_specification(ttl)
            .send()
            .await
        {
            tracing::warn!(error = %aws_sdk_dynamodb::error::DisplayErrorContext(&e), "the audit table's TTL is not on");
        }
    }
    Ok(())
}
