//! Key jobs: large generations and imports, their input chunks and progress.

use super::*;

impl DynamoStore {
    /// A key item of an uncommitted paste: it holds its key, and is in no listing (no GSI1
    /// attributes) and no count.
    fn pending_item(
        &self,
        org: &OrgId,
        pool_id: &PoolId,
        key: &KeyCode,
        now: Timestamp,
        job_id: &JobId,
    ) -> Result<Item> {
        let record = KeyRecord {
            key: key.clone(),
            org: org.clone(),
            pool_id: *pool_id,
            status: KeyStatus::Pending,
            source: KeySource::Custom,
            created_at: now,
            redeemed_by: None,
            redeemed_at: None,
            assignment_id: None,
            barred: Vec::new(),
            assignment_expires_at: None,
            job_id: Some(*job_id),
            distributed_at: None,
        };
        to_item(&record, schema::key_pk(key), schema::KEY_SK.into(), "key")
    }

    /// Counts `keys` written in a key job's `done`, inside the transaction that writes them;
    /// with a `total`, only while the job stays within it.
    pub(super) fn job_done(
        &self,
        org: &OrgId,
        job_id: &JobId,
        keys: u64,
        total: Option<u64>,
        now: Timestamp,
    ) -> Result<TransactWriteItem> {
        let update = Update::builder()
            .table_name(&self.tables.main)
            .set_key(Some(key_of(
                schema::org_pk(org),
                schema::key_job_sk(job_id),
            )))
            .update_expression("SET updated_at = :now ADD done :n")
            .expression_attribute_values(":now", ts(&now))
            .expression_attribute_values(":n", n(keys));
        let update = match total {
            Some(total) => update
                .condition_expression("attribute_exists(PK) AND done <= :limit")
                .expression_attribute_values(":limit", n(total.saturating_sub(keys))),
            None => update.condition_expression("attribute_exists(PK)"),
        };
        let update = update.build().context("building the job progress update")?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// The check, inside a transaction, that a paste is still in `phase`.
    fn phase_check(
        &self,
        org: &OrgId,
        job_id: &JobId,
        phase: PastePhase,
    ) -> Result<TransactWriteItem> {
        let check = ConditionCheck::builder()
            .table_name(&self.tables.main)
            .set_key(Some(key_of(
                schema::org_pk(org),
                schema::key_job_sk(job_id),
            )))
            .condition_expression("#phase = :phase")
            .expression_attribute_names("#phase", "phase")
            .expression_attribute_values(":phase", s(phase_name(phase)))
            .build()
            .context("building the paste phase check")?;
        Ok(TransactWriteItem::builder().condition_check(check).build())
    }
}

fn phase_name(phase: PastePhase) -> &'static str {
    match phase {
        PastePhase::Writing => "writing",
        PastePhase::Committing => "committing",
        PastePhase::RollingBack => "rolling_back",
    }
}

fn interrupted() -> Error {
    Error::Conflict {
        code: ErrorCode::PasteInterrupted,
        message: "the paste was stopped before it committed; nothing was added, send it again"
            .into(),
    }
}

#[async_trait]
impl KeyJobs for DynamoStore {
    async fn insert_job_keys(
        &self,
        pool: &Pool,
        job_id: &JobId,
        total: u64,
        keys: &[NewKey],
        now: Timestamp,
    ) -> Result<Result<InsertOutcome, JobFull>> {
        let mut outcome = InsertOutcome::default();
        Ok(self
            .insert_chunks(pool, keys, now, &mut outcome, Some((job_id, total)), None)
            .await?
            .map(|()| outcome))
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
        shown: &[KeyCode],
        taken: u64,
    ) -> Result<()> {
        let mut update = self
            .client
            .update_item()
            .table_name(&self.tables.main)
            .set_key(Some(key_of(
                schema::org_pk(org),
                schema::key_job_sk(job_id),
            )))
            // Only forwards: a chunk recorded twice (after a restart) counts once.
            .condition_expression("attribute_exists(PK) AND #position < :position")
            .expression_attribute_values(":position", n(position));
        update = match (shown.is_empty(), taken) {
            (_, 0) => update.update_expression("SET #position = :position"),
            (true, _) => update
                .update_expression("SET #position = :position ADD rejected_count :taken")
                .expression_attribute_values(":taken", n(taken)),
            (false, _) => update
                .update_expression(
                    "SET #position = :position ADD rejected_keys :rejected, rejected_count :taken",
                )
                .expression_attribute_values(":taken", n(taken))
                .expression_attribute_values(
                    ":rejected",
                    AttributeValue::Ss(shown.iter().map(|k| k.display_form()).collect()),
                ),
        };
        let sent = update
            .expression_attribute_names("#position", "position")
            .send();
        // Refused: the chunk was recorded already.
        conditional(sent, "recording a job's progress").await?;
        Ok(())
    }

    async fn write_pending_keys(
        &self,
        org: &OrgId,
        pool_id: &PoolId,
        job_id: &JobId,
        keys: &[KeyCode],
        now: Timestamp,
    ) -> Result<InsertOutcome> {
        let mut outcome = InsertOutcome::default();
        for chunk in keys.chunks(KEYS_PER_TRANSACTION) {
            let mut pending: Vec<&KeyCode> = chunk.iter().collect();
            while !pending.is_empty() {
                let mut items = Vec::with_capacity(pending.len() + 1);
                for key in &pending {
                    let put = Put::builder()
                        .table_name(&self.tables.main)
                        .set_item(Some(self.pending_item(org, pool_id, key, now, job_id)?))
                        .condition_expression("attribute_not_exists(PK)")
                        .build()
                        .context("building a pending key put")?;
                    items.push(TransactWriteItem::builder().put(put).build());
                }
                items.push(self.phase_check(org, job_id, PastePhase::Writing)?);
                let Some(codes) = self.transact(items, "writing pending keys").await? else {
                    outcome.inserted.extend(pending.drain(..).cloned());
                    break;
                };
                if condition_failed(&codes, pending.len()) {
                    return Err(interrupted());
                }
                let taken = retain_unrefused(&mut pending, &codes, "writing pending keys")?;
                outcome.taken.extend(taken.into_iter().cloned());
            }
        }
        Ok(outcome)
    }

    async fn commit_pending_keys(
        &self,
        pool: &Pool,
        job_id: &JobId,
        keys: &[KeyCode],
        now: Timestamp,
    ) -> Result<u64> {
        let (org, pool_id) = (&pool.org, &pool.pool_id);
        let mut committed = 0;
        // Each transaction: the keys, the pool's count and the job's `done`.
        for chunk in keys.chunks(KEYS_PER_TRANSACTION - 1) {
            let mut pending: Vec<&KeyCode> = chunk.iter().collect();
            while !pending.is_empty() {
                let mut items = Vec::with_capacity(pending.len() + 2);
                for key in &pending {
                    let update = Update::builder()
                        .table_name(&self.tables.main)
                        .set_key(Some(key_of(schema::key_pk(key), schema::KEY_SK)))
                        .update_expression("SET #status = :available, GSI1PK = :gpk, GSI1SK = :gsk")
                        .condition_expression("#status = :pending AND job_id = :job")
                        .expression_attribute_names("#status", "status")
                        .expression_attribute_values(":available", s(KeyStatus::Available.as_str()))
                        .expression_attribute_values(":pending", s(KeyStatus::Pending.as_str()))
                        .expression_attribute_values(":job", s(job_id.to_string()))
                        .expression_attribute_values(":gpk", s(schema::pool_keys_pk(pool_id)))
                        .expression_attribute_values(
                            ":gsk",
                            s(schema::key_by_status_sk(KeyStatus::Available, key)),
                        )
                        .build()
                        .context("building a key commit")?;
                    items.push(TransactWriteItem::builder().update(update).build());
                }
                let count = pending.len();
                items.push(self.count(pool, count as i64, 0, None)?);
                items.push(self.job_done(org, job_id, count as u64, None, now)?);
                let Some(codes) = self.transact(items, "committing keys").await? else {
                    committed += count as u64;
                    break;
                };
                if condition_failed(&codes, count) {
                    return Err(Error::NotFound(Missing::Pool));
                }
                if condition_failed(&codes, count + 1) {
                    return Err(Error::NotFound(Missing::Job));
                }
                // Keys committed by an earlier run are passed over; the rest go again.
                retain_unrefused(&mut pending, &codes, "committing keys")?;
            }
        }
        Ok(committed)
    }

    async fn remove_pending_keys(&self, job_id: &JobId, keys: &[KeyCode]) -> Result<u64> {
        let mut removed = 0;
        for chunk in keys.chunks(KEYS_PER_TRANSACTION + 1) {
            let mut pending: Vec<&KeyCode> = chunk.iter().collect();
            while !pending.is_empty() {
                let mut items = Vec::with_capacity(pending.len());
                for key in &pending {
                    let delete = Delete::builder()
                        .table_name(&self.tables.main)
                        .set_key(Some(key_of(schema::key_pk(key), schema::KEY_SK)))
                        .condition_expression("#status = :pending AND job_id = :job")
                        .expression_attribute_names("#status", "status")
                        .expression_attribute_values(":pending", s(KeyStatus::Pending.as_str()))
                        .expression_attribute_values(":job", s(job_id.to_string()))
                        .build()
                        .context("building a pending key delete")?;
                    items.push(TransactWriteItem::builder().delete(delete).build());
                }
                let Some(codes) = self.transact(items, "removing pending keys").await? else {
                    removed += pending.len() as u64;
                    break;
                };
                // Keys not this job's (never written, or another's) stay; the rest go again.
                retain_unrefused(&mut pending, &codes, "removing pending keys")?;
            }
        }
        Ok(removed)
    }

    async fn set_paste_phase(
        &self,
        org: &OrgId,
        job_id: &JobId,
        from: PastePhase,
        to: PastePhase,
        record: Option<&crate::domain::AuditRecord>,
    ) -> Result<bool> {
        let update = Update::builder()
            .table_name(&self.tables.main)
            .set_key(Some(key_of(
                schema::org_pk(org),
                schema::key_job_sk(job_id),
            )))
            .update_expression("SET #phase = :to, #position = :zero")
            .condition_expression("#phase = :from")
            .expression_attribute_names("#phase", "phase")
            .expression_attribute_names("#position", "position")
            .expression_attribute_values(":from", s(phase_name(from)))
            .expression_attribute_values(":to", s(phase_name(to)))
            .expression_attribute_values(":zero", n(0));
        let what = "moving a paste to its next phase";
        match record {
            Some(record) => {
                let update = update.build().context("building the phase update")?;
                let update = TransactWriteItem::builder().update(update).build();
                self.write_with_record(update, record, what).await
            }
            None => {
                let sent = self
                    .client
                    .update_item()
                    .set_table_name(update.get_table_name().clone())
                    .set_key(update.get_key().clone())
                    .set_update_expression(update.get_update_expression().clone())
                    .set_condition_expression(update.get_condition_expression().clone())
                    .set_expression_attribute_names(update.get_expression_attribute_names().clone())
                    .set_expression_attribute_values(
                        update.get_expression_attribute_values().clone(),
                    )
                    .send();
                Ok(conditional(sent, what).await?.is_some())
            }
        }
    }

    async fn put_key_job(
        &self,
        job: &KeyJob,
        max_open: MaxOpenJobs,
        record: Option<&crate::domain::AuditRecord>,
    ) -> Result<()> {
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
        let put = self
            .put_open(item, &open, Some(max_open.get()), record, "creating a job")
            .await;
        if matches!(put, Err(Error::TooManyJobs { .. })) {
            // A refused import leaves none of the input it stored beforehand.
            self.remove_job_inputs(&job.org, &job.job_id, job.inputs)
                .await;
        }
        put
    }

    async fn open_job_count(&self, org: &OrgId) -> Result<u64> {
        self.open_count(org).await
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
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#error", "error")
            .expression_attribute_values(":status", s(status))
            .expression_attribute_values(":updated", ts(&job.updated_at));
        // The end of a job a person started is recorded by the one write that ends it.
        let record = job.end_record();
        update = match record {
            Some(_) => update
                .condition_expression("attribute_exists(PK) AND NOT (#status IN (:done, :failed))")
                .expression_attribute_values(":done", s("done"))
                .expression_attribute_values(":failed", s("failed")),
            None => update.condition_expression("attribute_exists(PK)"),
        };
        update = match &job.error {
            Some(e) => update
                .update_expression("SET #status = :status, updated_at = :updated, #error = :error")
                .expression_attribute_values(":error", s(e)),
            None => update
                .update_expression("SET #status = :status, updated_at = :updated REMOVE #error"),
        };
        let update = TransactWriteItem::builder()
            .update(update.build().context("building the job update")?)
            .build();
        let written = if matches!(job.status, JobStatus::Done | JobStatus::Failed) {
            let open = Job::Generate {
                org: job.org.clone(),
                job_id: job.job_id,
            };
            self.finish_open(update, &open, true, record.as_ref(), "finishing a job")
                .await?
        } else {
            self.transact(vec![update], "updating a job").await?
        };
        match written {
            None => Ok(()),
            Some(codes) if record.is_some() && condition_failed(&codes, 0) => {
                tracing::warn!(job = %job.job_id, "another run finished this job first");
                Ok(())
            }
            Some(codes) => Err(anyhow::anyhow!("updating a job refused: {codes:?}").into()),
        }
    }
}

impl DynamoStore {
    /// Deletes an import's stored input chunks, as far as it can (what is left is never read:
    /// no job refers to it).
    async fn remove_job_inputs(&self, org: &OrgId, job_id: &JobId, inputs: u32) {
        for index in 0..inputs {
            let deleted = self
                .client
                .delete_item()
                .table_name(&self.tables.main)
                .set_key(Some(key_of(
                    schema::org_pk(org),
                    schema::job_input_sk(job_id, index),
                )))
                .send()
                .await;
            if let Err(e) = deleted {
                tracing::warn!(error = %DisplayErrorContext(&e), job = %job_id, "a refused job's input stays");
            }
        }
    }
}
