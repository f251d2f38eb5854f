//! Key jobs: large generations and imports, their input chunks and progress.

use super::*;

#[async_trait]
impl KeyJobs for DynamoStore {
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

    async fn put_key_job(&self, job: &KeyJob, max_open: MaxOpenJobs) -> Result<()> {
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
            .put_open(item, &open, Some(max_open.get()), "creating a job")
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
        let update = TransactWriteItem::builder()
            .update(update.build().context("building the job update")?)
            .build();
        let written = if matches!(job.status, JobStatus::Done | JobStatus::Failed) {
            let open = Job::Generate {
                org: job.org.clone(),
                job_id: job.job_id,
            };
            self.finish_open(update, &open, true, "finishing a job")
                .await?
        } else {
            self.transact(vec![update], "updating a job").await?
        };
        match written {
            None => Ok(()),
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
