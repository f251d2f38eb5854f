//! The store over DynamoDB: conditional writes and transactions keep every invariant.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, KeysAndAttributes, Put, ReturnValue, TransactWriteItem, Update,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{InsertOutcome, Ledger, Page, RedeemConflict, RemoveConflict, Store};
use crate::billing::{InvoiceLine, InvoiceTotals, Month};
use crate::error::{Error, Result};
use crate::export::Export;
use crate::generation::{JobStatus, KeyJob};
use crate::identity::{OrgId, UserId};
use crate::inventory::{KeyFilter, KeyRecord, KeySource, KeyStatus, NewKey};
use crate::jobs::Job;
use crate::keys::KeyCode;
use crate::pools::{AssignmentId, Course, CourseId, ExportId, JobId, Pool, PoolId};
use crate::redemption::Assignment;
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

/// The DynamoDB store: one client and the two table names.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    tables: Tables,
}

impl DynamoStore {
    /// A store over existing tables.
    pub fn new(client: Client, tables: Tables) -> Self {
        Self { client, tables }
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

/// Wraps an SDK failure with what we were doing, keeping the SDK's detail for the log only.
fn sdk<E, R>(what: &'static str) -> impl FnOnce(SdkError<E, R>) -> Error
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    move |e| Error::Internal(anyhow::anyhow!("{what}: {}", DisplayErrorContext(&e)))
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

fn from_item<T: DeserializeOwned>(item: Item, entity: &'static str) -> Result<T> {
    Ok(serde_dynamo::from_item(item).with_context(|| format!("reading a stored {entity}"))?)
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

/// Cursors are our own: the sort-key attributes of the last item returned, base64url JSON.
/// Decoding checks every attribute against the prefix the query allows, so a cursor can
/// never reach outside the caller's partition.
fn encode_cursor(item: &Item, attrs: &[&str]) -> Option<String> {
    let mut map = BTreeMap::new();
    for &a in attrs {
        map.insert(a.to_string(), attr_string(item, a)?);
    }
    let json = serde_json::to_vec(&map).ok()?;
    Some(URL_SAFE_NO_PAD.encode(json))
}

fn decode_cursor(cursor: Option<&str>, allowed: &[(&str, &str)]) -> Result<Option<Item>> {
    let Some(cursor) = cursor.filter(|c| !c.is_empty()) else {
        return Ok(None);
    };
    let invalid = || {
        Error::bad_request(
            "invalid_cursor",
            "the cursor is not one this listing gave out",
        )
    };
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let map: BTreeMap<String, String> = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    if map.len() != allowed.len() {
        return Err(invalid());
    }
    let mut item = Item::new();
    for &(name, prefix) in allowed {
        let value = map.get(name).ok_or_else(invalid)?;
        if !value.starts_with(prefix) || value.len() > 400 {
            return Err(invalid());
        }
        item.insert(name.to_string(), s(value.clone()));
    }
    Ok(Some(item))
}

/// Items of a listing as domain values.
fn page_of<T: DeserializeOwned>(
    items: Vec<Item>,
    next_cursor: Option<String>,
    entity: &'static str,
) -> Result<Page<T>> {
    Ok(Page {
        items: items
            .into_iter()
            .map(|i| from_item(i, entity))
            .collect::<Result<_>>()?,
        next_cursor,
    })
}

/// One kind of item in an organization's partition, listed newest first.
struct OrgListing {
    sk_prefix: &'static str,
    /// The lower-cased attribute that a search looks in.
    search_attr: &'static str,
    entity: &'static str,
    what: &'static str,
}

/// How a listing reads its pages.
struct Listing<'a> {
    query: QueryFluentBuilder,
    start: Option<Item>,
    limit: usize,
    filtered: bool,
    cursor_attrs: &'a [&'a str],
    what: &'static str,
}

impl DynamoStore {
    /// Reads pages until `limit` items are collected, and returns a cursor that resumes right
    /// after the last item returned (none when nothing is left).
    async fn collect(&self, listing: Listing<'_>) -> Result<(Vec<Item>, Option<String>)> {
        let limit = listing.limit.max(1);
        let mut out = Vec::with_capacity(limit.min(1000));
        let mut start = listing.start;
        let mut pages = 0;
        loop {
            let want = if listing.filtered {
                FILTERED_PAGE
            } else {
                i32::try_from(limit - out.len()).unwrap_or(i32::MAX)
            };
            let page = listing
                .query
                .clone()
                .set_exclusive_start_key(start.take())
                .limit(want)
                .send()
                .await
                .map_err(sdk(listing.what))?;
            let more_pages = page.last_evaluated_key().is_some();
            let items = page.items.unwrap_or_default();
            let count = items.len();
            for (i, item) in items.into_iter().enumerate() {
                out.push(item);
                if out.len() == limit {
                    let more = i + 1 < count || more_pages;
                    let cursor = if more {
                        out.last()
                            .and_then(|last| encode_cursor(last, listing.cursor_attrs))
                    } else {
                        None
                    };
                    return Ok((out, cursor));
                }
            }
            pages += 1;
            match page.last_evaluated_key {
                // A rare search term must not read a whole organization in one request: after
                // enough pages, hand back what was found with a cursor that resumes the scan.
                Some(lek) if listing.filtered && pages >= MAX_FILTERED_PAGES => {
                    return Ok((out, encode_cursor(&lek, listing.cursor_attrs)));
                }
                Some(lek) => start = Some(lek),
                None => return Ok((out, None)),
            }
        }
    }

    /// A page of one kind of the organization's items, optionally those whose lower-cased
    /// search attribute contains `search`.
    async fn list_org<T: DeserializeOwned>(
        &self,
        org: &OrgId,
        kind: &OrgListing,
        search: Option<&str>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<T>> {
        let start = decode_cursor(cursor, &[(SK, kind.sk_prefix)])?.map(|mut k| {
            k.insert(PK.into(), s(schema::org_pk(org)));
            k
        });
        let mut query = self
            .client
            .query()
            .table_name(&self.tables.main)
            .key_condition_expression("PK = :pk AND begins_with(SK, :prefix)")
            .expression_attribute_values(":pk", s(schema::org_pk(org)))
            .expression_attribute_values(":prefix", s(kind.sk_prefix))
            .scan_index_forward(false);
        if let Some(q) = search {
            query = query
                .filter_expression("contains(#search, :q)")
                .expression_attribute_names("#search", kind.search_attr)
                .expression_attribute_values(":q", s(q));
        }
        let (items, next_cursor) = self
            .collect(Listing {
                query,
                start,
                limit,
                filtered: search.is_some(),
                cursor_attrs: &[SK],
                what: kind.what,
            })
            .await?;
        page_of(items, next_cursor, kind.entity)
    }

    /// Runs a transaction, retrying with backoff while DynamoDB cancels it only for conflicts
    /// with other transactions. Returns the cancellation reason codes, if it was cancelled.
    async fn transact(
        &self,
        items: Vec<TransactWriteItem>,
        what: &'static str,
    ) -> Result<Option<Vec<String>>> {
        let mut delay = Duration::from_millis(5);
        for attempt in 1..=CONFLICT_ATTEMPTS {
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
                .await;
            let err = match result {
                Ok(_) => return Ok(None),
                Err(err) => err,
            };
            let codes = match &err {
                SdkError::ServiceError(service) => match service.err() {
                    TransactWriteItemsError::TransactionCanceledException(c) => Some(
                        c.cancellation_reasons()
                            .iter()
                            .map(|r| r.code().unwrap_or("None").to_string())
                            .collect::<Vec<_>>(),
                    ),
                    TransactWriteItemsError::TransactionInProgressException(_)
                    | TransactWriteItemsError::ProvisionedThroughputExceededException(_)
                    | TransactWriteItemsError::RequestLimitExceeded(_)
                    | TransactWriteItemsError::ThrottlingException(_) => Some(Vec::new()),
                    _ => None,
                },
                _ => None,
            };
            let Some(codes) = codes else {
                return Err(sdk(what)(err));
            };
            let decisive = codes
                .iter()
                .any(|c| c != "None" && c != "TransactionConflict" && c != "ThrottlingError");
            if decisive {
                return Ok(Some(codes));
            }
            if attempt == CONFLICT_ATTEMPTS {
                break;
            }
            // Full jitter keeps racing writers from retrying in lockstep.
            let jitter = u64::from(random_u16()) % (delay.as_millis() as u64 + 1);
            tokio::time::sleep(Duration::from_millis(jitter)).await;
            delay = (delay * 2).min(Duration::from_millis(500));
        }
        Err(Error::Conflict {
            code: "write_conflict",
            message: "too many concurrent changes to the same items; try again".into(),
        })
    }

    /// Reads items of the main table by key (strongly consistent), 100 per request, asking
    /// again with backoff for what DynamoDB leaves unprocessed.
    async fn batch_get(
        &self,
        keys: Vec<Item>,
        projection: Option<&str>,
        what: &'static str,
    ) -> Result<Vec<Item>> {
        let mut found = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(KEYS_PER_BATCH_GET) {
            let request = KeysAndAttributes::builder()
                .set_keys(Some(chunk.to_vec()))
                .set_projection_expression(projection.map(str::to_string))
                .consistent_read(true)
                .build()
                .context("building a batch read")?;
            let mut pending = Some(request);
            let mut delay = Duration::from_millis(10);
            while let Some(request) = pending.take() {
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.tables.main, request)
                    .send()
                    .await
                    .map_err(sdk(what))?;
                found.extend(
                    out.responses
                        .and_then(|mut r| r.remove(&self.tables.main))
                        .unwrap_or_default(),
                );
                pending = out
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.tables.main))
                    .filter(|k| !k.keys().is_empty());
                if pending.is_some() {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_millis(1000));
                }
            }
        }
        Ok(found)
    }

    /// Stores a new job's item together with its entry among the open jobs, atomically.
    async fn put_open(&self, item: Item, job: &Job, what: &'static str) -> Result<()> {
        let mut open = key_of(schema::OPEN_JOBS_PK.into(), schema::open_job_sk(job));
        open.insert(ENTITY.into(), s("open_job"));
        open.insert(
            "job".into(),
            s(serde_json::to_string(job).context("serialising a job")?),
        );
        let put = |item: Item| {
            Put::builder()
                .table_name(&self.tables.main)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(PK)")
                .build()
                .map(|p| TransactWriteItem::builder().put(p).build())
        };
        let items = vec![
            put(item).context("building the job put")?,
            put(open).context("building the open job put")?,
        ];
        match self.transact(items, what).await? {
            None => Ok(()),
            Some(codes) => Err(anyhow::anyhow!("a new job's id is taken: {codes:?}").into()),
        }
    }

    /// The write that takes a finished job off the open jobs.
    fn close_open(&self, job: &Job) -> Result<TransactWriteItem> {
        let delete = Delete::builder()
            .table_name(&self.tables.main)
            .set_key(Some(key_of(
                schema::OPEN_JOBS_PK.into(),
                schema::open_job_sk(job),
            )))
            .build()
            .context("building the open job delete")?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }

    fn pool_key(&self, org: &OrgId, pool_id: &PoolId) -> Item {
        key_of(schema::org_pk(org), schema::pool_sk(pool_id))
    }

    /// The pool-count update that rides along with a batch of key writes.
    fn count_keys(&self, org: &OrgId, pool_id: &PoolId, delta: i64) -> Result<TransactWriteItem> {
        let update = Update::builder()
            .table_name(&self.tables.main)
            .set_key(Some(self.pool_key(org, pool_id)))
            .update_expression("ADD total_keys :d, change_seq :one")
            .condition_expression("attribute_exists(PK)")
            .expression_attribute_values(":d", n(delta))
            .expression_attribute_values(":one", n(1))
            .build()
            .context("building the pool count update")?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    fn key_item(
        &self,
        org: &OrgId,
        pool_id: &PoolId,
        key: &NewKey,
        now: Timestamp,
        job_id: Option<&JobId>,
    ) -> Result<Item> {
        let record = KeyRecord {
            key: key.key.clone(),
            org: org.clone(),
            pool_id: *pool_id,
            status: KeyStatus::Available,
            source: key.source,
            created_at: now,
            redeemed_by: None,
            redeemed_at: None,
            assignment_id: None,
            barred: Vec::new(),
            assignment_expires_at: None,
            // Only custom keys need to know their job: a chunk of an import written twice must
            // tell its own keys from others'. Generated keys are new each time, and leaner.
            job_id: job_id.copied().filter(|_| key.source == KeySource::Custom),
            distributed_at: None,
        };
        let mut item = to_item(
            &record,
            schema::key_pk(&key.key),
            schema::KEY_SK.into(),
            "key",
        )?;
        item.insert(GSI1PK.into(), s(schema::pool_keys_pk(pool_id)));
        item.insert(
            GSI1SK.into(),
            s(schema::key_by_status_sk(KeyStatus::Available, &key.key)),
        );
        Ok(item)
    }

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

    /// Writes keys in transactions of 99 plus the pool's count, recording into `outcome` what
    /// each committed chunk inserted and which keys were taken already.
    async fn insert_chunks(
        &self,
        org: &OrgId,
        pool_id: &PoolId,
        keys: &[NewKey],
        now: Timestamp,
        outcome: &mut InsertOutcome,
        job: Option<(&JobId, u64)>,
    ) -> Result<()> {
        // A job's progress rides along in each transaction, leaving room for one key fewer.
        let per_transaction = KEYS_PER_TRANSACTION - usize::from(job.is_some());
        let chunks: Vec<&[NewKey]> = keys.chunks(per_transaction).collect();
        let puts = |keys: &[&NewKey]| -> Result<Vec<TransactWriteItem>> {
            let mut items = Vec::with_capacity(keys.len() + 2);
            for key in keys {
                let put = Put::builder()
                    .table_name(&self.tables.main)
                    .set_item(Some(self.key_item(
                        org,
                        pool_id,
                        key,
                        now,
                        job.map(|(id, _)| id),
                    )?))
                    .condition_expression("attribute_not_exists(PK)")
                    .build()
                    .context("building a key put")?;
                items.push(TransactWriteItem::builder().put(put).build());
            }
            Ok(items)
        };
        // The next chunk's items are built while the current transaction is in flight.
        let mut next_items: Option<Vec<TransactWriteItem>> = None;
        for (index, chunk) in chunks.iter().enumerate() {
            let mut pending: Vec<&NewKey> = chunk.iter().collect();
            let mut prepared = next_items.take();
            while !pending.is_empty() {
                let mut items = match prepared.take() {
                    Some(items) => items,
                    None => puts(&pending)?,
                };
                items.push(self.count_keys(org, pool_id, pending.len() as i64)?);
                if let Some((job_id, total)) = job {
                    let count = pending.len() as u64;
                    let update = Update::builder()
                        .table_name(&self.tables.main)
                        .set_key(Some(key_of(
                            schema::org_pk(org),
                            schema::key_job_sk(job_id),
                        )))
                        .update_expression("SET updated_at = :now ADD done :n")
                        .condition_expression("attribute_exists(PK) AND done <= :limit")
                        .expression_attribute_values(":now", ts(&now))
                        .expression_attribute_values(":n", n(count))
                        .expression_attribute_values(":limit", n(total.saturating_sub(count)))
                        .build()
                        .context("building the job progress update")?;
                    items.push(TransactWriteItem::builder().update(update).build());
                }
                let following = chunks.get(index + 1);
                let prepare_next = async {
                    match following {
                        Some(next) if next_items.is_none() => {
                            Some(puts(&next.iter().collect::<Vec<_>>()))
                        }
                        _ => None,
                    }
                };
                let (written, built) =
                    tokio::join!(self.transact(items, "adding keys"), prepare_next);
                if let Some(built) = built {
                    next_items = Some(built?);
                }
                match written? {
                    None => {
                        outcome
                            .inserted
                            .extend(pending.iter().map(|k| k.key.clone()));
                        pending.clear();
                    }
                    Some(codes) => {
                        let failed =
                            |i: usize| codes.get(i).is_some_and(|c| c == "ConditionalCheckFailed");
                        let pool_at = pending.len();
                        if job.is_some() && failed(pool_at + 1) {
                            return Err(Error::Conflict {
                                code: "job_overrun",
                                message: "the job has all its keys already".into(),
                            });
                        }
                        if failed(pool_at) {
                            return Err(Error::NotFound("pool"));
                        }
                        let before = pending.len();
                        let mut i = 0;
                        pending.retain(|key| {
                            let taken = codes.get(i).is_some_and(|c| c == "ConditionalCheckFailed");
                            i += 1;
                            if taken {
                                outcome.taken.push(key.key.clone());
                            }
                            !taken
                        });
                        if pending.len() == before {
                            return Err(anyhow::anyhow!(
                                "adding keys was cancelled without a reason: {codes:?}"
                            )
                            .into());
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

fn random_u16() -> u16 {
    let mut b = [0u8; 2];
    // Jitter only; a failing entropy source just means no jitter.
    let _ = getrandom::fill(&mut b);
    u16::from_le_bytes(b)
}

fn pool_id_value(id: &PoolId) -> Result<AttributeValue> {
    Ok(serde_dynamo::to_attribute_value(id).context("serialising a pool id")?)
}

#[async_trait]
impl Ledger for DynamoStore {
    async fn record_invoice_line(&self, line: &InvoiceLine) -> Result<bool> {
        let pk = schema::invoice_pk(&line.org, line.month);
        let line_put = Put::builder()
            .table_name(&self.tables.main)
            .set_item(Some(to_item(
                line,
                pk.clone(),
                schema::invoice_line_sk(&line.assignment_id, line.kind),
                "invoice_line",
            )?))
            .condition_expression("attribute_not_exists(PK)")
            .build()
            .context("building the invoice line put")?;
        let counter = match line.kind {
            crate::billing::LineKind::Redemption => "redemptions",
            crate::billing::LineKind::Credit => "credits",
        };
        let totals_update = Update::builder()
            .table_name(&self.tables.main)
            .set_key(Some(key_of(pk, schema::INVOICE_TOTALS_SK)))
            .update_expression("SET #entity = :entity ADD #counter :one")
            .expression_attribute_names("#entity", ENTITY)
            .expression_attribute_names("#counter", counter)
            .expression_attribute_values(":entity", s("invoice_totals"))
            .expression_attribute_values(":one", n(1))
            .build()
            .context("building the invoice totals update")?;
        let items = vec![
            TransactWriteItem::builder().put(line_put).build(),
            TransactWriteItem::builder().update(totals_update).build(),
        ];
        match self.transact(items, "recording an invoice line").await? {
            None => Ok(true),
            // The line is there: an earlier delivery of the same record billed it.
            Some(codes) if codes.first().is_some_and(|c| c == "ConditionalCheckFailed") => {
                Ok(false)
            }
            Some(codes) => Err(anyhow::anyhow!(
                "invoice line refused for an unexpected reason: {codes:?}"
            )
            .into()),
        }
    }
}

#[async_trait]
impl Store for DynamoStore {
    async fn put_course(&self, course: &Course) -> Result<()> {
        let mut item = to_item(
            course,
            schema::org_pk(&course.org),
            schema::course_sk(&course.course_id),
            "course",
        )?;
        item.insert("title_lower".into(), s(course.title.to_lowercase()));
        self.put_new(&self.tables.main, item, "creating a course")
            .await
    }

    async fn get_course(&self, org: &OrgId, id: &CourseId) -> Result<Option<Course>> {
        let key = key_of(schema::org_pk(org), schema::course_sk(id));
        self.get(&self.tables.main, key, "reading a course")
            .await?
            .map(|item| from_item(item, "course"))
            .transpose()
    }

    async fn list_courses(
        &self,
        org: &OrgId,
        search: Option<&str>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Course>> {
        let kind = OrgListing {
            sk_prefix: schema::COURSE_SK_PREFIX,
            search_attr: "title_lower",
            entity: "course",
            what: "listing courses",
        };
        self.list_org(org, &kind, search, cursor, limit).await
    }

    async fn put_pool(&self, pool: &Pool) -> Result<()> {
        let mut item = to_item(
            pool,
            schema::org_pk(&pool.org),
            schema::pool_sk(&pool.pool_id),
            "pool",
        )?;
        item.insert("name_lower".into(), s(pool.name.to_lowercase()));
        let mut entry = key_of(
            schema::POOL_REGISTRY_PK.into(),
            schema::pool_registry_sk(&pool.org, &pool.pool_id),
        );
        entry.insert(ENTITY.into(), s("pool_ref"));
        entry.insert("org".into(), s(pool.org.as_str()));
        entry.insert("pool_id".into(), pool_id_value(&pool.pool_id)?);
        let put = |item: Item| {
            Put::builder()
                .table_name(&self.tables.main)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(PK)")
                .build()
                .map(|p| TransactWriteItem::builder().put(p).build())
        };
        let items = vec![
            put(item).context("building the pool put")?,
            put(entry).context("building the registry put")?,
        ];
        match self.transact(items, "creating a pool").await? {
            None => Ok(()),
            Some(codes) => Err(anyhow::anyhow!("a new pool's id is taken: {codes:?}").into()),
        }
    }

    async fn get_pool(&self, org: &OrgId, id: &PoolId) -> Result<Option<Pool>> {
        self.get(&self.tables.main, self.pool_key(org, id), "reading a pool")
            .await?
            .map(|item| from_item(item, "pool"))
            .transpose()
    }

    async fn list_pools(
        &self,
        org: &OrgId,
        search: Option<&str>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Pool>> {
        let kind = OrgListing {
            sk_prefix: schema::POOL_SK_PREFIX,
            search_attr: "name_lower",
            entity: "pool",
            what: "listing pools",
        };
        self.list_org(org, &kind, search, cursor, limit).await
    }

    async fn update_pool_settings(&self, pool: &Pool, expected_version: u64) -> Result<bool> {
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.main)
            .set_key(Some(self.pool_key(&pool.org, &pool.pool_id)))
            .update_expression(
                "SET #name = :name, name_lower = :lower, starts_at = :starts, expires_at = :expires, \
                 content_availability_days = :days, deactivated = :deactivated, \
                 version = :version, updated_at = :updated",
            )
            .condition_expression("attribute_exists(PK) AND version = :expected")
            .expression_attribute_names("#name", "name")
            .expression_attribute_values(":name", s(&pool.name))
            .expression_attribute_values(":lower", s(pool.name.to_lowercase()))
            .expression_attribute_values(":starts", ts(&pool.starts_at))
            .expression_attribute_values(":expires", ts(&pool.expires_at))
            .expression_attribute_values(":days", n(pool.content_availability_days))
            .expression_attribute_values(":deactivated", AttributeValue::Bool(pool.deactivated))
            .expression_attribute_values(":version", n(pool.version))
            .expression_attribute_values(":updated", ts(&pool.updated_at))
            .expression_attribute_values(":expected", n(expected_version))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(sdk("updating a pool")(e)),
        }
    }

    async fn insert_keys(
        &self,
        org: &OrgId,
        pool_id: &PoolId,
        keys: &[NewKey],
        now: Timestamp,
    ) -> Result<InsertOutcome> {
        let mut outcome = InsertOutcome::default();
        let result = self
            .insert_chunks(org, pool_id, keys, now, &mut outcome, None)
            .await;
        if let Err(error) = result {
            // A failed request adds nothing: take back the chunks that did commit.
            if !outcome.inserted.is_empty()
                && let Err(undo) = self
                    .remove_available_keys(org, pool_id, &outcome.inserted)
                    .await
            {
                tracing::error!(
                    keys = outcome.inserted.len(),
                    error = format!("{undo:#}"),
                    "could not take back the keys of a failed insert"
                );
            }
            return Err(error);
        }
        Ok(outcome)
    }
    async fn existing_keys(&self, keys: &[KeyCode]) -> Result<Vec<KeyCode>> {
        let lookups = keys
            .iter()
            .map(|k| key_of(schema::key_pk(k), schema::KEY_SK))
            .collect();
        let items = self
            .batch_get(lookups, Some("PK"), "looking keys up")
            .await?;
        Ok(items
            .iter()
            .filter_map(|item| attr_string(item, PK))
            .filter_map(|pk| KeyCode::parse(pk.trim_start_matches(schema::KEY_PK_PREFIX)).ok())
            .collect())
    }

    async fn remove_key(
        &self,
        org: &OrgId,
        pool_id: &PoolId,
        key: &KeyCode,
    ) -> Result<Result<(), RemoveConflict>> {
        let delete = Delete::builder()
            .table_name(&self.tables.main)
            .set_key(Some(key_of(schema::key_pk(key), schema::KEY_SK)))
            .condition_expression(
                "attribute_exists(PK) AND pool_id = :pool AND #status = :available",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":pool", pool_id_value(pool_id)?)
            .expression_attribute_values(":available", s(KeyStatus::Available.as_str()))
            .build()
            .context("building a key delete")?;
        let items = vec![
            TransactWriteItem::builder().delete(delete).build(),
            self.count_keys(org, pool_id, -1)?,
        ];
        match self.transact(items, "removing a key").await? {
            None => Ok(Ok(())),
            Some(_) => match self.get_key(key).await? {
                Some(record) if record.pool_id == *pool_id && record.org == *org => {
                    if record.status == KeyStatus::Redeemed {
                        Ok(Err(RemoveConflict::Redeemed))
                    } else {
                        Err(anyhow::anyhow!("removing an available key was cancelled").into())
                    }
                }
                _ => Ok(Err(RemoveConflict::NotFound)),
            },
        }
    }

    async fn remove_available_keys(
        &self,
        org: &OrgId,
        pool_id: &PoolId,
        keys: &[KeyCode],
    ) -> Result<()> {
        for key in keys {
            // One by one: rare (an undo after a lost race), and each stays exact.
            if let Err(conflict) = self.remove_key(org, pool_id, key).await? {
                tracing::warn!(?conflict, "a key to undo was already changed");
            }
        }
        Ok(())
    }

    async fn get_key(&self, key: &KeyCode) -> Result<Option<KeyRecord>> {
        self.get(
            &self.tables.main,
            key_of(schema::key_pk(key), schema::KEY_SK),
            "reading a key",
        )
        .await?
        .map(|item| from_item(item, "key"))
        .transpose()
    }

    async fn list_keys(
        &self,
        pool_id: &PoolId,
        filter: &KeyFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<KeyRecord>> {
        let prefix = schema::key_by_status_prefix(filter.status);
        let start = decode_cursor(
            cursor,
            &[(GSI1SK, prefix.as_str()), (PK, schema::KEY_PK_PREFIX)],
        )?
        .map(|mut k| {
            k.insert(GSI1PK.into(), s(schema::pool_keys_pk(pool_id)));
            k.insert(SK.into(), s(schema::KEY_SK));
            k
        });
        let query = self
            .client
            .query()
            .table_name(&self.tables.main)
            .index_name(schema::GSI1)
            .expression_attribute_values(":pk", s(schema::pool_keys_pk(pool_id)));
        // A pool's GSI1 partition holds only its keys: without a status there is no range to
        // narrow, and leaving it out keeps later pages an index seek on the embedded engine
        // (a range beside the cursor made it read from the range's start on every page).
        let query = match filter.status {
            Some(_) => query
                .key_condition_expression("GSI1PK = :pk AND begins_with(GSI1SK, :prefix)")
                .expression_attribute_values(":prefix", s(prefix.clone())),
            None => query.key_condition_expression("GSI1PK = :pk"),
        };
        let query = if filter.undistributed {
            query.filter_expression("attribute_not_exists(distributed_at)")
        } else {
            query
        };
        let (items, next_cursor) = self
            .collect(Listing {
                query,
                start,
                limit,
                filtered: filter.undistributed,
                cursor_attrs: &[GSI1SK, PK],
                what: "listing keys",
            })
            .await?;
        page_of(items, next_cursor, "key")
    }

    async fn pool_assignment_of(
        &self,
        pool_id: &PoolId,
        learner: &UserId,
    ) -> Result<Option<AssignmentId>> {
        let item = self
            .get(
                &self.tables.main,
                key_of(schema::guard_pk(pool_id), schema::guard_sk(learner)),
                "reading a learner's pool guard",
            )
            .await?;
        Ok(item
            .and_then(|i| attr_string(&i, "assignment_id"))
            .and_then(|id| AssignmentId::parse(&id)))
    }

    async fn redeem(
        &self,
        assignment: &Assignment,
        pool_version: u64,
        now: Timestamp,
    ) -> Result<Result<(), RedeemConflict>> {
        let a = assignment;
        let key_update = Update::builder()
            .table_name(&self.tables.main)
            .set_key(Some(key_of(schema::key_pk(&a.key), schema::KEY_SK)))
            .update_expression(
                "SET #status = :redeemed, redeemed_by = :learner, redeemed_at = :now, \
                 assignment_id = :assignment, assignment_expires_at = :ends, GSI1SK = :gsk",
            )
            .condition_expression(
                "attribute_exists(PK) AND #status = :available AND pool_id = :pool \
                 AND NOT contains(barred, :learner)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":redeemed", s(KeyStatus::Redeemed.as_str()))
            .expression_attribute_values(":available", s(KeyStatus::Available.as_str()))
            .expression_attribute_values(":learner", s(a.learner.as_str()))
            .expression_attribute_values(":now", ts(&now))
            .expression_attribute_values(":assignment", s(a.assignment_id.to_string()))
            .expression_attribute_values(":ends", ts(&a.expires_at))
            .expression_attribute_values(":pool", pool_id_value(&a.pool_id)?)
            .expression_attribute_values(
                ":gsk",
                s(schema::key_by_status_sk(KeyStatus::Redeemed, &a.key)),
            )
            .build()
            .context("building the key update")?;
        let pool_update = Update::builder()
            .table_name(&self.tables.main)
            .set_key(Some(self.pool_key(&a.org, &a.pool_id)))
            .update_expression("ADD redeemed_count :one, change_seq :one")
            .condition_expression(
                "attribute_exists(PK) AND deactivated = :false AND starts_at <= :now \
                 AND expires_at > :now AND version = :version",
            )
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":version", n(pool_version))
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .expression_attribute_values(":now", ts(&now))
            .build()
            .context("building the pool update")?;
        let assignment_put = Put::builder()
            .table_name(&self.tables.assignments)
            .set_item(Some(to_item(
                a,
                schema::user_pk(&a.learner),
                schema::assignment_sk(&a.assignment_id),
                "assignment",
            )?))
            .condition_expression("attribute_not_exists(PK)")
            .build()
            .context("building the assignment put")?;
        let mut guard = key_of(schema::guard_pk(&a.pool_id), schema::guard_sk(&a.learner));
        guard.insert(ENTITY.into(), s("guard"));
        guard.insert("assignment_id".into(), s(a.assignment_id.to_string()));
        let guard_put = Put::builder()
            .table_name(&self.tables.main)
            .set_item(Some(guard))
            .condition_expression("attribute_not_exists(PK)")
            .build()
            .context("building the guard put")?;
        // The pointer lets an admin of the organization find the assignment by its id.
        let mut pointer = key_of(
            schema::org_pk(&a.org),
            schema::assignment_ref_sk(&a.assignment_id),
        );
        pointer.insert(ENTITY.into(), s("assignment_ref"));
        pointer.insert("learner".into(), s(a.learner.as_str()));
        pointer.insert("pool_id".into(), pool_id_value(&a.pool_id)?);
        // Kept while the assignment lasts; cancelling is over long before.
        pointer.insert(schema::TTL.into(), n(a.expires_at.timestamp()));
        let pointer_put = Put::builder()
            .table_name(&self.tables.main)
            .set_item(Some(pointer))
            .condition_expression("attribute_not_exists(PK)")
            .build()
            .context("building the assignment pointer put")?;
        let items = vec![
            TransactWriteItem::builder().update(key_update).build(),
            TransactWriteItem::builder().update(pool_update).build(),
            TransactWriteItem::builder().put(assignment_put).build(),
            TransactWriteItem::builder().put(guard_put).build(),
            TransactWriteItem::builder().put(pointer_put).build(),
        ];
        let Some(codes) = self.transact(items, "redeeming a key").await? else {
            return Ok(Ok(()));
        };
        let failed = |i: usize| codes.get(i).is_some_and(|c| c == "ConditionalCheckFailed");
        if failed(0) {
            Ok(Err(RedeemConflict::KeyNotAvailable))
        } else if failed(1) {
            Ok(Err(RedeemConflict::PoolNotActive))
        } else if failed(3) {
            Ok(Err(RedeemConflict::LearnerHoldsAssignment))
        } else {
            Err(anyhow::anyhow!("redemption cancelled for an unexpected reason: {codes:?}").into())
        }
    }

    async fn get_assignment(
        &self,
        learner: &UserId,
        id: &AssignmentId,
    ) -> Result<Option<Assignment>> {
        self.get(
            &self.tables.assignments,
            key_of(schema::user_pk(learner), schema::assignment_sk(id)),
            "reading an assignment",
        )
        .await?
        .map(|item| from_item(item, "assignment"))
        .transpose()
    }

    async fn list_assignments(
        &self,
        learner: &UserId,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Assignment>> {
        let start = decode_cursor(cursor, &[(SK, schema::ASSIGNMENT_SK_PREFIX)])?.map(|mut k| {
            k.insert(PK.into(), s(schema::user_pk(learner)));
            k
        });
        let query = self
            .client
            .query()
            .table_name(&self.tables.assignments)
            .key_condition_expression("PK = :pk AND begins_with(SK, :prefix)")
            .expression_attribute_values(":pk", s(schema::user_pk(learner)))
            .expression_attribute_values(":prefix", s(schema::ASSIGNMENT_SK_PREFIX))
            .scan_index_forward(false);
        let (items, next_cursor) = self
            .collect(Listing {
                query,
                start,
                limit,
                filtered: false,
                cursor_attrs: &[SK],
                what: "listing assignments",
            })
            .await?;
        page_of(items, next_cursor, "assignment")
    }

    async fn record_launch(
        &self,
        learner: &UserId,
        id: &AssignmentId,
        now: Timestamp,
    ) -> Result<Option<Assignment>> {
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.assignments)
            .set_key(Some(key_of(
                schema::user_pk(learner),
                schema::assignment_sk(id),
            )))
            .update_expression("SET last_launched_at = :now ADD launch_count :one")
            .condition_expression("attribute_exists(PK) AND attribute_not_exists(cancelled_at)")
            .expression_attribute_values(":now", ts(&now))
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(out) => out
                .attributes
                .map(|item| from_item(item, "assignment"))
                .transpose(),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(sdk("recording a launch")(e)),
        }
    }

    async fn assignment_learner(&self, org: &OrgId, id: &AssignmentId) -> Result<Option<UserId>> {
        let item = self
            .get(
                &self.tables.main,
                key_of(schema::org_pk(org), schema::assignment_ref_sk(id)),
                "reading an assignment pointer",
            )
            .await?;
        Ok(item
            .and_then(|i| attr_string(&i, "learner"))
            .and_then(|l| UserId::parse(&l).ok()))
    }

    async fn cancel_assignment(&self, a: &Assignment, now: Timestamp) -> Result<bool> {
        let cutoff = now - chrono::Duration::hours(crate::redemption::CANCEL_WINDOW_HOURS);
        let assignment_update = Update::builder()
            .table_name(&self.tables.assignments)
            .set_key(Some(key_of(
                schema::user_pk(&a.learner),
                schema::assignment_sk(&a.assignment_id),
            )))
            .update_expression("SET cancelled_at = :now")
            .condition_expression(
                "attribute_exists(PK) AND attribute_not_exists(cancelled_at) \
                 AND launch_count = :zero AND redeemed_at > :cutoff",
            )
            .expression_attribute_values(":now", ts(&now))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":cutoff", ts(&cutoff))
            .build()
            .context("building the assignment cancellation")?;
        let key_update = Update::builder()
            .table_name(&self.tables.main)
            .set_key(Some(key_of(schema::key_pk(&a.key), schema::KEY_SK)))
            .update_expression(
                "SET #status = :available, GSI1SK = :gsk, \
                 barred = list_append(if_not_exists(barred, :nobody), :learner) \
                 REMOVE redeemed_by, redeemed_at, assignment_id, assignment_expires_at",
            )
            .condition_expression("#status = :redeemed AND assignment_id = :assignment")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":available", s(KeyStatus::Available.as_str()))
            .expression_attribute_values(":redeemed", s(KeyStatus::Redeemed.as_str()))
            .expression_attribute_values(":assignment", s(a.assignment_id.to_string()))
            .expression_attribute_values(
                ":gsk",
                s(schema::key_by_status_sk(KeyStatus::Available, &a.key)),
            )
            .expression_attribute_values(":nobody", AttributeValue::L(Vec::new()))
            .expression_attribute_values(":learner", AttributeValue::L(vec![s(a.learner.as_str())]))
            .build()
            .context("building the key release")?;
        let pool_update = Update::builder()
            .table_name(&self.tables.main)
            .set_key(Some(self.pool_key(&a.org, &a.pool_id)))
            .update_expression("ADD redeemed_count :minus_one, change_seq :one")
            .condition_expression("attribute_exists(PK)")
            .expression_attribute_values(":minus_one", n(-1))
            .expression_attribute_values(":one", n(1))
            .build()
            .context("building the pool uncount")?;
        let guard_delete = Delete::builder()
            .table_name(&self.tables.main)
            .set_key(Some(key_of(
                schema::guard_pk(&a.pool_id),
                schema::guard_sk(&a.learner),
            )))
            .condition_expression("assignment_id = :assignment")
            .expression_attribute_values(":assignment", s(a.assignment_id.to_string()))
            .build()
            .context("building the guard delete")?;
        let pointer_update = Update::builder()
            .table_name(&self.tables.main)
            .set_key(Some(key_of(
                schema::org_pk(&a.org),
                schema::assignment_ref_sk(&a.assignment_id),
            )))
            .update_expression("SET cancelled_at = :now")
            .condition_expression("attribute_exists(PK)")
            .expression_attribute_values(":now", ts(&now))
            .build()
            .context("building the pointer update")?;
        let items = vec![
            TransactWriteItem::builder()
                .update(assignment_update)
                .build(),
            TransactWriteItem::builder().update(key_update).build(),
            TransactWriteItem::builder().update(pool_update).build(),
            TransactWriteItem::builder().delete(guard_delete).build(),
            TransactWriteItem::builder().update(pointer_update).build(),
        ];
        match self.transact(items, "cancelling an assignment").await? {
            None => Ok(true),
            Some(codes) if codes.first().is_some_and(|c| c == "ConditionalCheckFailed") => {
                Ok(false)
            }
            Some(codes) => Err(anyhow::anyhow!(
                "cancellation of {} refused by an item it should own: {codes:?}",
                a.assignment_id
            )
            .into()),
        }
    }

    async fn invoice_totals(&self, org: &OrgId, month: Month) -> Result<InvoiceTotals> {
        let item = self
            .get(
                &self.tables.main,
                key_of(schema::invoice_pk(org, month), schema::INVOICE_TOTALS_SK),
                "reading invoice totals",
            )
            .await?;
        let count = |name: &str| {
            item.as_ref()
                .and_then(|i| match i.get(name) {
                    Some(AttributeValue::N(v)) => v.parse().ok(),
                    _ => None,
                })
                .unwrap_or(0)
        };
        Ok(InvoiceTotals {
            redemptions: count("redemptions"),
            credits: count("credits"),
        })
    }

    async fn list_invoice_lines(
        &self,
        org: &OrgId,
        month: Month,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<InvoiceLine>> {
        let pk = schema::invoice_pk(org, month);
        let start = decode_cursor(cursor, &[(SK, schema::INVOICE_LINE_SK_PREFIX)])?.map(|mut k| {
            k.insert(PK.into(), s(pk.clone()));
            k
        });
        let query = self
            .client
            .query()
            .table_name(&self.tables.main)
            .key_condition_expression("PK = :pk AND begins_with(SK, :prefix)")
            .expression_attribute_values(":pk", s(pk.clone()))
            .expression_attribute_values(":prefix", s(schema::INVOICE_LINE_SK_PREFIX))
            .consistent_read(true);
        let (items, next_cursor) = self
            .collect(Listing {
                query,
                start,
                limit,
                filtered: false,
                cursor_attrs: &[SK],
                what: "listing invoice lines",
            })
            .await?;
        page_of(items, next_cursor, "invoice line")
    }

    async fn stream_checkpoint(&self, stream_arn: &str, shard_id: &str) -> Result<Option<String>> {
        let item = self
            .get(
                &self.tables.main,
                key_of(
                    schema::checkpoint_pk(stream_arn),
                    schema::checkpoint_sk(shard_id),
                ),
                "reading a stream checkpoint",
            )
            .await?;
        Ok(item.and_then(|i| attr_string(&i, "sequence_number")))
    }

    async fn save_stream_checkpoint(
        &self,
        stream_arn: &str,
        shard_id: &str,
        sequence_number: &str,
    ) -> Result<()> {
        let mut item = key_of(
            schema::checkpoint_pk(stream_arn),
            schema::checkpoint_sk(shard_id),
        );
        item.insert(ENTITY.into(), s("stream_checkpoint"));
        item.insert("sequence_number".into(), s(sequence_number));
        self.client
            .put_item()
            .table_name(&self.tables.main)
            .set_item(Some(item))
            .send()
            .await
            .map_err(sdk("saving a stream checkpoint"))?;
        Ok(())
    }

    async fn mark_distributed(
        &self,
        keys: &[KeyCode],
        export_id: &ExportId,
        now: Timestamp,
    ) -> Result<Vec<KeyCode>> {
        let update = |key: &KeyCode| {
            Update::builder()
                .table_name(&self.tables.main)
                .set_key(Some(key_of(schema::key_pk(key), schema::KEY_SK)))
                .update_expression("SET distributed_at = :now, distributed_by = :export")
                .condition_expression(
                    "attribute_exists(PK) AND #status = :available \
                     AND attribute_not_exists(distributed_at)",
                )
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":available", s(KeyStatus::Available.as_str()))
                .expression_attribute_values(":now", ts(&now))
                .expression_attribute_values(":export", s(export_id.to_string()))
                .build()
                .context("building a distribution mark")
        };
        let mut marked = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(100) {
            let mut pending: Vec<&KeyCode> = chunk.iter().collect();
            while !pending.is_empty() {
                let items = pending
                    .iter()
                    .map(|k| update(k).map(|u| TransactWriteItem::builder().update(u).build()))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let Some(codes) = self.transact(items, "marking keys distributed").await? else {
                    marked.extend(pending.drain(..).cloned());
                    break;
                };
                // Keys redeemed, removed or marked by another export meanwhile stay unmarked;
                // the rest go again.
                let before = pending.len();
                let mut i = 0;
                pending.retain(|_| {
                    let refused = codes.get(i).is_some_and(|c| c == "ConditionalCheckFailed");
                    i += 1;
                    !refused
                });
                if pending.len() == before {
                    return Err(anyhow::anyhow!(
                        "marking keys was cancelled without a reason: {codes:?}"
                    )
                    .into());
                }
            }
        }
        Ok(marked)
    }

    async fn unmark_distributed(&self, pool_id: &PoolId, export_id: &ExportId) -> Result<u64> {
        let mut removed = 0;
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.tables.main)
                .index_name(schema::GSI1)
                .key_condition_expression("GSI1PK = :pk")
                .filter_expression("distributed_by = :export")
                .expression_attribute_values(":pk", s(schema::pool_keys_pk(pool_id)))
                .expression_attribute_values(":export", s(export_id.to_string()))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(sdk("finding an export's marks"))?;
            for item in page.items() {
                let (Some(pk), Some(sk)) = (attr_string(item, PK), attr_string(item, SK)) else {
                    continue;
                };
                let result = self
                    .client
                    .update_item()
                    .table_name(&self.tables.main)
                    .set_key(Some(key_of(pk, sk)))
                    .update_expression("REMOVE distributed_at, distributed_by")
                    .condition_expression("distributed_by = :export")
                    .expression_attribute_values(":export", s(export_id.to_string()))
                    .send()
                    .await;
                match result {
                    Ok(_) => removed += 1,
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|e| e.is_conditional_check_failed_exception()) => {}
                    Err(e) => return Err(sdk("removing an export's mark")(e)),
                }
            }
            match page.last_evaluated_key {
                Some(lek) => start = Some(lek),
                None => return Ok(removed),
            }
        }
    }

    async fn insert_job_keys(
        &self,
        org: &OrgId,
        pool_id: &PoolId,
        job_id: &JobId,
        total: u64,
        keys: &[NewKey],
        now: Timestamp,
    ) -> Result<InsertOutcome> {
        let mut outcome = InsertOutcome::default();
        self.insert_chunks(org, pool_id, keys, now, &mut outcome, Some((job_id, total)))
            .await?;
        Ok(outcome)
    }

    async fn keys_of_job(&self, keys: &[KeyCode], job_id: &JobId) -> Result<Vec<KeyCode>> {
        let lookups = keys
            .iter()
            .map(|k| key_of(schema::key_pk(k), schema::KEY_SK))
            .collect();
        let items = self
            .batch_get(lookups, Some("PK, job_id"), "looking keys up")
            .await?;
        let job = job_id.to_string();
        Ok(items
            .iter()
            .filter(|item| attr_string(item, "job_id").as_deref() == Some(job.as_str()))
            .filter_map(|item| attr_string(item, PK))
            .filter_map(|pk| KeyCode::parse(pk.trim_start_matches(schema::KEY_PK_PREFIX)).ok())
            .collect())
    }

    async fn put_job_input(
        &self,
        org: &OrgId,
        job_id: &JobId,
        index: u32,
        keys: &[KeyCode],
    ) -> Result<()> {
        let mut item = key_of(schema::org_pk(org), schema::job_input_sk(job_id, index));
        item.insert(ENTITY.into(), s("job_input"));
        item.insert(
            "keys".into(),
            AttributeValue::L(keys.iter().map(|k| s(k.as_str())).collect()),
        );
        self.client
            .put_item()
            .table_name(&self.tables.main)
            .set_item(Some(item))
            .send()
            .await
            .map_err(sdk("storing a job's input"))?;
        Ok(())
    }

    async fn get_job_input(&self, org: &OrgId, job_id: &JobId, index: u32) -> Result<Vec<KeyCode>> {
        let item = self
            .get(
                &self.tables.main,
                key_of(schema::org_pk(org), schema::job_input_sk(job_id, index)),
                "reading a job's input",
            )
            .await?
            .with_context(|| format!("input {index} of job {job_id} is missing"))?;
        let Some(AttributeValue::L(list)) = item.get("keys") else {
            return Err(anyhow::anyhow!("input {index} of job {job_id} has no keys").into());
        };
        list.iter()
            .map(|v| match v {
                AttributeValue::S(text) => KeyCode::parse(text)
                    .map_err(|e| anyhow::anyhow!("a stored input key: {e}").into()),
                _ => Err(anyhow::anyhow!("a stored input key is not a string").into()),
            })
            .collect()
    }

    async fn record_job_progress(
        &self,
        org: &OrgId,
        job_id: &JobId,
        position: u32,
        rejected: &[KeyCode],
    ) -> Result<()> {
        let mut update = self
            .client
            .update_item()
            .table_name(&self.tables.main)
            .set_key(Some(key_of(
                schema::org_pk(org),
                schema::key_job_sk(job_id),
            )))
            .condition_expression("attribute_exists(PK)")
            .expression_attribute_values(":position", n(position));
        update = if rejected.is_empty() {
            update.update_expression("SET #position = :position")
        } else {
            // A set: a chunk processed twice (after a restart) reports its keys once.
            update
                .update_expression("SET #position = :position ADD rejected_keys :rejected")
                .expression_attribute_values(
                    ":rejected",
                    AttributeValue::Ss(rejected.iter().map(|k| k.display_form()).collect()),
                )
        };
        update
            .expression_attribute_names("#position", "position")
            .send()
            .await
            .map_err(sdk("recording a job's progress"))?;
        Ok(())
    }

    async fn put_key_job(&self, job: &KeyJob) -> Result<()> {
        let item = to_item(
            job,
            schema::org_pk(&job.org),
            schema::key_job_sk(&job.job_id),
            "key_job",
        )?;
        let open = Job::Generate {
            org: job.org.clone(),
            job_id: job.job_id,
        };
        self.put_open(item, &open, "creating a job").await
    }

    async fn get_key_job(&self, org: &OrgId, id: &JobId) -> Result<Option<KeyJob>> {
        self.get(
            &self.tables.main,
            key_of(schema::org_pk(org), schema::key_job_sk(id)),
            "reading a job",
        )
        .await?
        .map(|item| from_item(item, "job"))
        .transpose()
    }

    async fn set_key_job_status(&self, job: &KeyJob) -> Result<()> {
        let status = serde_json::to_value(job.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .context("a job status")?;
        let mut update = Update::builder()
            .table_name(&self.tables.main)
            .set_key(Some(key_of(
                schema::org_pk(&job.org),
                schema::key_job_sk(&job.job_id),
            )))
            .condition_expression("attribute_exists(PK)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#error", "error")
            .expression_attribute_values(":status", s(status))
            .expression_attribute_values(":updated", ts(&job.updated_at));
        update = match &job.error {
            Some(e) => update
                .update_expression("SET #status = :status, updated_at = :updated, #error = :error")
                .expression_attribute_values(":error", s(e)),
            None => update
                .update_expression("SET #status = :status, updated_at = :updated REMOVE #error"),
        };
        let mut items = vec![
            TransactWriteItem::builder()
                .update(update.build().context("building the job update")?)
                .build(),
        ];
        if matches!(job.status, JobStatus::Done | JobStatus::Failed) {
            items.push(self.close_open(&Job::Generate {
                org: job.org.clone(),
                job_id: job.job_id,
            })?);
        }
        match self.transact(items, "updating a job").await? {
            None => Ok(()),
            Some(codes) => Err(anyhow::anyhow!("updating a job refused: {codes:?}").into()),
        }
    }

    async fn put_export(&self, export: &Export) -> Result<()> {
        let item = to_item(
            export,
            schema::org_pk(&export.org),
            schema::export_sk(&export.export_id),
            "export",
        )?;
        let open = Job::Export {
            org: export.org.clone(),
            export_id: export.export_id,
        };
        self.put_open(item, &open, "creating an export").await
    }

    async fn get_export(&self, org: &OrgId, id: &ExportId) -> Result<Option<Export>> {
        self.get(
            &self.tables.main,
            key_of(schema::org_pk(org), schema::export_sk(id)),
            "reading an export",
        )
        .await?
        .map(|item| from_item(item, "export"))
        .transpose()
    }

    async fn update_export(&self, export: &Export) -> Result<()> {
        let item = to_item(
            export,
            schema::org_pk(&export.org),
            schema::export_sk(&export.export_id),
            "export",
        )?;
        self.client
            .put_item()
            .table_name(&self.tables.main)
            .set_item(Some(item))
            .condition_expression("attribute_exists(PK)")
            .send()
            .await
            .map_err(sdk("updating an export"))?;
        Ok(())
    }

    async fn finish_export(&self, export: &Export) -> Result<()> {
        let item = to_item(
            export,
            schema::org_pk(&export.org),
            schema::export_sk(&export.export_id),
            "export",
        )?;
        // Only the run that holds the export finishes it: a late duplicate run cannot turn a
        // done export into a failed one.
        let put = Put::builder()
            .table_name(&self.tables.main)
            .set_item(Some(item))
            .condition_expression("#status IN (:pending, :running)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":pending", s("pending"))
            .expression_attribute_values(":running", s("running"))
            .build()
            .context("building the export put")?;
        let items = vec![
            TransactWriteItem::builder().put(put).build(),
            self.close_open(&Job::Export {
                org: export.org.clone(),
                export_id: export.export_id,
            })?,
        ];
        match self.transact(items, "finishing an export").await? {
            None => Ok(()),
            Some(codes) if codes.first().is_some_and(|c| c == "ConditionalCheckFailed") => {
                tracing::warn!(export = %export.export_id, "another run finished this export first");
                Ok(())
            }
            Some(codes) => Err(anyhow::anyhow!("finishing an export refused: {codes:?}").into()),
        }
    }

    async fn open_jobs(&self) -> Result<Vec<Job>> {
        let mut jobs = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.tables.main)
                .key_condition_expression("PK = :pk")
                .expression_attribute_values(":pk", s(schema::OPEN_JOBS_PK))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(sdk("listing open jobs"))?;
            for item in page.items() {
                let text = attr_string(item, "job").unwrap_or_default();
                jobs.push(serde_json::from_str(&text).context("reading an open job")?);
            }
            match page.last_evaluated_key {
                Some(lek) => start = Some(lek),
                None => return Ok(jobs),
            }
        }
    }

    async fn list_all_pools(&self, cursor: Option<&str>, limit: usize) -> Result<Page<Pool>> {
        let start = decode_cursor(cursor, &[(SK, "POOL#")])?.map(|mut k| {
            k.insert(PK.into(), s(schema::POOL_REGISTRY_PK));
            k
        });
        let query = self
            .client
            .query()
            .table_name(&self.tables.main)
            .key_condition_expression("PK = :pk")
            .expression_attribute_values(":pk", s(schema::POOL_REGISTRY_PK));
        let (entries, next_cursor) = self
            .collect(Listing {
                query,
                start,
                limit: limit.min(KEYS_PER_BATCH_GET),
                filtered: false,
                cursor_attrs: &[SK],
                what: "listing every pool",
            })
            .await?;
        let mut keys = Vec::with_capacity(entries.len());
        for entry in &entries {
            let (Some(org), Some(pool)) =
                (attr_string(entry, "org"), attr_string(entry, "pool_id"))
            else {
                continue;
            };
            let org = OrgId::parse(&org).map_err(|e| anyhow::anyhow!("a pool entry: {e}"))?;
            let pool = PoolId::parse(&pool).context("a pool entry's id")?;
            keys.push(self.pool_key(&org, &pool));
        }
        let mut pools = self
            .batch_get(keys, None, "reading pools")
            .await?
            .into_iter()
            .map(|item| from_item::<Pool>(item, "pool"))
            .collect::<Result<Vec<_>>>()?;
        pools.sort_by_key(|p| p.pool_id);
        Ok(Page {
            items: pools,
            next_cursor,
        })
    }

    async fn claim_scheduled_export(
        &self,
        org: &OrgId,
        pool_id: &PoolId,
        mark: u64,
    ) -> Result<bool> {
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.main)
            .set_key(Some(self.pool_key(org, pool_id)))
            .update_expression("SET scheduled_mark = :mark")
            .condition_expression(
                "attribute_exists(PK) AND (attribute_not_exists(scheduled_mark) \
                 OR scheduled_mark < :mark)",
            )
            .expression_attribute_values(":mark", n(mark))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(sdk("claiming a scheduled export")(e)),
        }
    }

    async fn release_scheduled_export(
        &self,
        org: &OrgId,
        pool_id: &PoolId,
        mark: u64,
    ) -> Result<()> {
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.main)
            .set_key(Some(self.pool_key(org, pool_id)))
            .update_expression("REMOVE scheduled_mark")
            .condition_expression("scheduled_mark = :mark")
            .expression_attribute_values(":mark", n(mark))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // A later export claimed it since: nothing to undo.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(sdk("releasing a scheduled export")(e)),
        }
    }

    async fn failed_attempts(&self, learner: &UserId, window: &str) -> Result<u64> {
        let item = self
            .client
            .get_item()
            .table_name(&self.tables.main)
            .set_key(Some(key_of(
                schema::attempts_pk(learner),
                schema::attempts_sk(window),
            )))
            .projection_expression("attempts")
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk("reading failed attempts"))?
            .item;
        Ok(item
            .and_then(|i| match i.get("attempts") {
                Some(AttributeValue::N(v)) => v.parse().ok(),
                _ => None,
            })
            .unwrap_or(0))
    }

    async fn add_failed_attempt(
        &self,
        learner: &UserId,
        window: &str,
        expires_at: Timestamp,
    ) -> Result<u64> {
        let out = self
            .client
            .update_item()
            .table_name(&self.tables.main)
            .set_key(Some(key_of(
                schema::attempts_pk(learner),
                schema::attempts_sk(window),
            )))
            .update_expression("SET #entity = :entity, #ttl = :ttl ADD attempts :one")
            .expression_attribute_names("#entity", ENTITY)
            .expression_attribute_names("#ttl", schema::TTL)
            .expression_attribute_values(":entity", s("failed_attempts"))
            .expression_attribute_values(":ttl", n(expires_at.timestamp()))
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(sdk("counting a failed attempt"))?;
        Ok(out
            .attributes
            .and_then(|a| match a.get("attempts") {
                Some(AttributeValue::N(v)) => v.parse().ok(),
                _ => None,
            })
            .unwrap_or(0))
    }
}
