//! The DynamoDB store: one struct with a client and the two table names, implementing every
//! aggregate's trait, one file each. This file holds what they share: item mapping, single-item
//! reads and writes; `paging` holds cursors and listings, `transact` transactions with their
//! cancellation reasons and retries, and BatchGetItem.

mod assignments;
mod audit;
mod checkpoints;
mod counters;
mod courses;
mod exports;
mod key_jobs;
mod keys;
mod ledger;
mod open_jobs;
mod paging;
mod pools;
mod stats;
mod transact;
mod webhooks;

use paging::{Listing, OrgListing, decode_cursor, page_of};
use pools::pool_id_value;
use transact::{CONDITION_FAILED, condition_failed, retain_unrefused};

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Delete, KeysAndAttributes, Put, ReturnValue, TransactWriteItem,
    Update,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{
    Assignments, AuditLog, Counters, Courses, Exports, InsertOutcome, Invoices, JobFull, KeyJobs,
    Keys, Ledger, OpenJobs, Pools, RedeemConflict, RemoveConflict, StreamCheckpoints, Webhooks,
};
use crate::domain::{
    Assignment, AssignmentId, Course, CourseId, Export, ExportId, InvoiceLine, InvoiceTotals, Job,
    JobId, JobStatus, KeyFilter, KeyJob, KeyRecord, KeySource, KeyStatus, MaxOpenJobs, Month,
    NewKey, Page, PastePhase, Pool, PoolId, TOO_MANY_JOBS_RETRY_AFTER_SECS,
};
use crate::error::{Error, ErrorCode, Missing, Result};
use crate::identity::{OrgId, UserId};
use crate::keys::KeyCode;
use crate::schema::{self, ENTITY, GSI1PK, GSI1SK, PK, SK, Tables};
use crate::time::{self, Timestamp};

type Item = HashMap<String, AttributeValue>;

/// Keys per transaction: DynamoDB allows 100 actions, one of which counts them in the pool.
const KEYS_PER_TRANSACTION: usize = 99;

/// Keys per BatchGetItem.
const KEYS_PER_BATCH_GET: usize = 100;

/// Attempts at a transaction that DynamoDB cancels for a conflict with another transaction.
const CONFLICT_ATTEMPTS: u32 = 10;

/// Items a filtered listing reads per request.
const FILTERED_PAGE: i32 = 100;

/// Requests a filtered listing makes before it answers with what it found so far.
const MAX_FILTERED_PAGES: usize = 10;

/// The DynamoDB store: one client, the table names, and how long audit records are kept.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    tables: Tables,
    audit_retention_days: u32,
    /// False only in the bench's control arm (`without_audit_records`).
    audit_records: bool,
}

impl DynamoStore {
    /// A store over existing tables, keeping audit records for the default retention.
    pub fn new(client: Client, tables: Tables) -> Self {
        Self {
            client,
            tables,
            audit_retention_days: crate::settings::DEFAULT_AUDIT_RETENTION_DAYS,
            audit_records: true,
        }
    }

    /// The same store, keeping audit records for `days` (`KEYPOOL_AUDIT_RETENTION_DAYS`).
    pub fn with_audit_retention(mut self, days: u32) -> Self {
        self.audit_retention_days = days;
        self
    }

    /// The same store writing every change without its audit record: the bench's control
    /// arm, to measure what a record costs (docs/performance.md). It breaks the audit's
    /// promise, so nothing that serves requests may use it.
    #[doc(hidden)]
    pub fn without_audit_records(mut self) -> Self {
        self.audit_records = false;
        self
    }

    /// The client, for setup code that creates tables.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The tables.
    pub fn tables(&self) -> &Tables {
        &self.tables
    }
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn ts(t: &Timestamp) -> AttributeValue {
    s(time::format(t))
}

/// What DynamoDB answers, to any operation, when it throttles a request.
const THROTTLING_CODES: [&str; 3] = [
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
];

/// Wraps an SDK failure with what we were doing, keeping the SDK's detail for the log only.
/// Throttling that outlasted the SDK's retries is no fault of ours: the client is told the
/// service is busy (503 with Retry-After) rather than that something broke.
fn sdk<E, R>(what: &'static str) -> impl FnOnce(SdkError<E, R>) -> Error
where
    E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    move |e| match e.code() {
        Some(code) if THROTTLING_CODES.contains(&code) => {
            tracing::warn!(
                what,
                code,
                "DynamoDB throttled a request through every retry"
            );
            Error::store_busy()
        }
        _ => Error::Internal(anyhow::anyhow!("{what}: {}", DisplayErrorContext(&e))),
    }
}

/// What DynamoDB answers to a single-item write whose condition does not hold.
const CONDITION_FAILED_EXCEPTION: &str = "ConditionalCheckFailedException";

/// The answer of a conditional PutItem, UpdateItem or DeleteItem: `Some` with its output when
/// it was written, `None` when its condition did not hold (an answer, not a failure), and any
/// other failure as `sdk` maps it.
async fn conditional<O, E, R>(
    sent: impl Future<Output = std::result::Result<O, SdkError<E, R>>>,
    what: &'static str,
) -> Result<Option<O>>
where
    E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match sent.await {
        Ok(output) => Ok(Some(output)),
        Err(e) if e.code() == Some(CONDITION_FAILED_EXCEPTION) => Ok(None),
        Err(e) => Err(sdk(what)(e)),
    }
}

/// A domain value as an item, with its table keys and entity name.
fn to_item<T: Serialize>(value: &T, pk: String, sk: String, entity: &str) -> Result<Item> {
    let mut item: Item =
        serde_dynamo::to_item(value).with_context(|| format!("serialising a {entity}"))?;
    item.insert(PK.into(), s(pk));
    item.insert(SK.into(), s(sk));
    item.insert(ENTITY.into(), s(entity));
    Ok(item)
}

/// The items of a listing that can be read; one that cannot (written by hand, by an older
/// version, or damaged) is skipped and logged with its key, so that it never breaks the page
/// or the walk it is part of.
fn readable<T: DeserializeOwned>(items: Vec<Item>, entity: &'static str) -> Vec<T> {
    items
        .into_iter()
        .filter_map(|item| {
            // The key, kept to name the item should it not read (the item itself is consumed).
            let key = (attr_string(&item, PK), attr_string(&item, SK));
            match serde_dynamo::from_item::<_, T>(item) {
                Ok(value) => Some(value),
                Err(e) => {
                    log_skipped(key, entity, &e.to_string());
                    None
                }
            }
        })
        .collect()
}

/// Logs an item a listing passed over.
fn skipped(item: &Item, entity: &str, why: &str) {
    log_skipped((attr_string(item, PK), attr_string(item, SK)), entity, why);
}

fn log_skipped(key: (Option<String>, Option<String>), entity: &str, why: &str) {
    tracing::error!(
        pk = key.0.unwrap_or_default(),
        sk = key.1.unwrap_or_default(),
        entity,
        why,
        "skipped an unreadable item"
    );
}

fn from_item<T: DeserializeOwned>(item: Item, entity: &'static str) -> Result<T> {
    Ok(serde_dynamo::from_item(item).with_context(|| format!("reading a stored {entity}"))?)
}

/// `None` for an empty map, which DynamoDB refuses where it takes an optional one.
fn non_empty<V>(map: HashMap<String, V>) -> Option<HashMap<String, V>> {
    (!map.is_empty()).then_some(map)
}

fn key_of(pk: String, sk: impl Into<String>) -> Item {
    HashMap::from([(PK.to_string(), s(pk)), (SK.to_string(), s(sk))])
}

fn attr_string(item: &Item, name: &str) -> Option<String> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Some(v.clone()),
        _ => None,
    }
}

impl DynamoStore {
    async fn get(&self, table: &str, key: Item, what: &'static str) -> Result<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk(what))?;
        Ok(out.item)
    }

    async fn put_new(&self, table: &str, item: Item, what: &'static str) -> Result<()> {
        self.client
            .put_item()
            .table_name(table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(PK)")
            .send()
            .await
            .map_err(sdk(what))?;
        Ok(())
    }
}
