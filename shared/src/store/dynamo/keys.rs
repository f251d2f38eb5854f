//! Keys: one item per key, unique by its primary key, counted in its pool in the same
//! transaction; listings through GSI1; distribution marks.

use super::*;
use crate::domain::AuditRecord;

impl DynamoStore {
    pub(super) fn key_item(
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

    /// Writes keys in transactions of 99 plus the pool's count, recording into `outcome` what
    /// each committed chunk inserted and which keys were taken already.
    pub(super) async fn insert_chunks(
        &self,
        pool: &Pool,
        keys: &[NewKey],
        now: Timestamp,
        outcome: &mut InsertOutcome,
        job: Option<(&JobId, u64)>,
        record: Option<&AuditRecord>,
    ) -> Result<Result<(), JobFull>> {
        // A job's progress rides along in each transaction, and the audit record in the last
        // (each leaving room for one key fewer): a failure before it takes the committed
        // chunks back, so only the last decides that the change lands, and the record is
        // written with it or not at all.
        let mut record = record.map(|r| self.audit_put(r)).transpose()?.flatten();
        let per_transaction =
            KEYS_PER_TRANSACTION - usize::from(job.is_some()) - usize::from(record.is_some());
        let chunks: Vec<&[NewKey]> = keys.chunks(per_transaction).collect();
        let last = chunks.len().saturating_sub(1);
        let puts = |keys: &[&NewKey]| -> Result<Vec<TransactWriteItem>> {
            let mut items = Vec::with_capacity(keys.len() + 2);
            for key in keys {
                let put = Put::builder()
                    .table_name(&self.tables.main)
                    .set_item(Some(self.key_item(
                        &pool.org,
                        &pool.pool_id,
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
                items.push(self.count(pool, pending.len() as i64, 0, None)?);
                if let Some((job_id, total)) = job {
                    let count = pending.len() as u64;
                    items.push(self.job_done(&pool.org, job_id, count, Some(total), now)?);
                }
                // Last, so that the indexes of the reasons above stay as they are.
                if index == last {
                    items.extend(record.clone());
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
                        if index == last {
                            record = None;
                        }
                    }
                    Some(codes) => {
                        let failed = |i: usize| condition_failed(&codes, i);
                        let pool_at = pending.len();
                        // The job's count is only over its total if every key would go in:
                        // an engine that reports every failed condition (moto) also fails the
                        // count when keys of a resumed batch exist already, which are taken
                        // out below and the rest tried again.
                        let any_key_taken = (0..pool_at).any(failed);
                        if job.is_some() && failed(pool_at + 1) && !any_key_taken {
                            return Ok(Err(JobFull));
                        }
                        if failed(pool_at) {
                            return Err(Error::NotFound(Missing::Pool));
                        }
                        let taken = retain_unrefused(&mut pending, &codes, "adding keys")?;
                        outcome
                            .taken
                            .extend(taken.into_iter().map(|k| k.key.clone()));
                    }
                }
            }
        }
        // Every key of the last chunk was taken by others: the keys of the chunks before
        // landed, and their record goes alone.
        if let Some(record) = record
            && !outcome.inserted.is_empty()
            && let Some(codes) = self.transact(vec![record], "recording added keys").await?
        {
            return Err(anyhow::anyhow!("recording added keys was refused: {codes:?}").into());
        }
        Ok(Ok(()))
    }
}

impl DynamoStore {
    /// Removes an available key and uncounts it, with an audit record when one is given.
    async fn remove_one_key(
        &self,
        pool: &Pool,
        key: &KeyCode,
        record: Option<&AuditRecord>,
    ) -> Result<Result<(), RemoveConflict>> {
        let (org, pool_id) = (&pool.org, &pool.pool_id);

        let delete = Delete::builder()
            .table_name(&self.tables.main)
            .set_key(Some(key_of(schema::key_pk(key), schema::KEY_SK)))
            .condition_expression(
                "attribute_exists(PK) AND pool_id = :pool AND org = :org AND #status = :available",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":pool", pool_id_value(pool_id)?)
            .expression_attribute_values(":org", s(org.as_str()))
            .expression_attribute_values(":available", s(KeyStatus::Available.as_str()))
            .build()
            .context("building a key delete")?;
        let items = vec![
            TransactWriteItem::builder().delete(delete).build(),
            self.count(pool, -1, 0, None)?,
        ];
        let mut items = items;
        items.extend(record.map(|r| self.audit_put(r)).transpose()?.flatten());
        match self.transact(items, "removing a key").await? {
            None => Ok(Ok(())),
            Some(_) => match self.get_key(key).await? {
                // A pending key (of a paste not committed) is not in the pool yet.
                Some(record)
                    if record.pool_id == *pool_id
                        && record.org == *org
                        && record.status != KeyStatus::Pending =>
                {
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
}

#[async_trait]
impl Keys for DynamoStore {
    async fn insert_keys(
        &self,
        pool: &Pool,
        keys: &[NewKey],
        now: Timestamp,
        record: Option<&AuditRecord>,
    ) -> Result<InsertOutcome> {
        let mut outcome = InsertOutcome::default();
        // Without a job there is no job to be full.
        let result = self
            .insert_chunks(pool, keys, now, &mut outcome, None, record)
            .await
            .map(|written| written.unwrap_or(()));
        if let Err(error) = result {
            // A failed request adds nothing: take back the chunks that did commit.
            if !outcome.inserted.is_empty()
                && let Err(undo) = self.remove_available_keys(pool, &outcome.inserted).await
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

    async fn existing_keys(&self, keys: &[KeyCode]) -> Result<Vec<(KeyCode, Option<OrgId>)>> {
        let lookups = keys
            .iter()
            .map(|k| key_of(schema::key_pk(k), schema::KEY_SK))
            .collect();
        let items = self
            .batch_get(lookups, Some("PK, org"), "looking keys up")
            .await?;
        Ok(items
            .iter()
            .filter_map(|item| {
                let pk = attr_string(item, PK)?;
                let key = KeyCode::parse(pk.trim_start_matches(schema::KEY_PK_PREFIX)).ok()?;
                let org = attr_string(item, "org").and_then(|o| OrgId::parse(&o).ok());
                Some((key, org))
            })
            .collect())
    }

    async fn remove_key(
        &self,
        pool: &Pool,
        key: &KeyCode,
        record: &AuditRecord,
    ) -> Result<Result<(), RemoveConflict>> {
        self.remove_one_key(pool, key, Some(record)).await
    }

    async fn remove_available_keys(&self, pool: &Pool, keys: &[KeyCode]) -> Result<()> {
        for key in keys {
            // One by one: rare (an undo after a lost race), and each stays exact. An undo is
            // part of the change that failed, so it has no record of its own.
            if let Err(conflict) = self.remove_one_key(pool, key, None).await? {
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
                retain_unrefused(&mut pending, &codes, "marking keys")?;
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
                let unmark = self
                    .client
                    .update_item()
                    .table_name(&self.tables.main)
                    .set_key(Some(key_of(pk, sk)))
                    .update_expression("REMOVE distributed_at, distributed_by")
                    .condition_expression("distributed_by = :export")
                    .expression_attribute_values(":export", s(export_id.to_string()))
                    .send();
                if conditional(unmark, "removing an export's mark")
                    .await?
                    .is_some()
                {
                    removed += 1;
                }
            }
            match page.last_evaluated_key {
                Some(lek) => start = Some(lek),
                None => return Ok(removed),
            }
        }
    }
}
