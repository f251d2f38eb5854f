//! The registry of open jobs: written with a job, removed in the same transaction that
//! finishes it; and each organization's count of open jobs, which caps how many it may have.
//! The count changes only in those same transactions, so concurrent starts can never open
//! more than the cap between them.

use super::*;

/// The attribute of an organization's count item that holds its open jobs.
const OPEN: &str = "open";

impl DynamoStore {
    /// Stores a new job's item together with its entry among the open jobs, atomically; with
    /// a cap, the organization's count of open jobs goes up in the same transaction, on
    /// condition that it is below the cap (else `Error::TooManyJobs`, and nothing is written).
    pub(super) async fn put_open(
        &self,
        item: Item,
        job: &Job,
        cap: Option<u64>,
        record: Option<&crate::domain::AuditRecord>,
        what: &'static str,
    ) -> Result<()> {
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
        let mut items = vec![
            put(item).context("building the job put")?,
            put(open).context("building the open job put")?,
        ];
        if let Some(max) = cap {
            let count = self
                .open_count_update(job.org())
                .update_expression(
                    "SET #open = if_not_exists(#open, :zero) + :one, #entity = :entity",
                )
                .condition_expression("attribute_not_exists(#open) OR #open < :max")
                .expression_attribute_names("#entity", ENTITY)
                .expression_attribute_values(":zero", n(0))
                .expression_attribute_values(":max", n(max))
                .expression_attribute_values(":entity", s("open_job_count"))
                .build()
                .context("building the open job count")?;
            items.push(TransactWriteItem::builder().update(count).build());
        }
        // Last, so that the count's condition keeps its place.
        if let Some(record) = record {
            items.extend(self.audit_put(record)?);
        }
        match (self.transact(items, what).await?, cap) {
            (None, _) => Ok(()),
            (Some(codes), Some(max)) if condition_failed(&codes, 2) => Err(Error::TooManyJobs {
                max_open: max,
                retry_after_secs: TOO_MANY_JOBS_RETRY_AFTER_SECS,
            }),
            (Some(codes), _) => Err(anyhow::anyhow!("a new job's id is taken: {codes:?}").into()),
        }
    }

    /// Runs `finish` (the write that finishes a job) in one transaction with taking the job
    /// off the open jobs: its entry goes and, if it was `counted`, its organization's count
    /// goes down. Only the run that removes the entry uncounts the job, so a job finished
    /// twice (two runners, a redelivered message) is uncounted once. Returns `finish`'s
    /// cancellation codes if its own condition refused it.
    pub(super) async fn finish_open(
        &self,
        finish: TransactWriteItem,
        job: &Job,
        counted: bool,
        record: Option<&crate::domain::AuditRecord>,
        what: &'static str,
    ) -> Result<Option<Vec<String>>> {
        // The record rides in whichever write finishes the job, after the items whose
        // conditions are read by position.
        let record = record.map(|r| self.audit_put(r)).transpose()?.flatten();
        let with_record = |mut items: Vec<TransactWriteItem>| {
            items.extend(record.clone());
            items
        };
        let entry = Delete::builder()
            .table_name(&self.tables.main)
            .set_key(Some(key_of(
                schema::OPEN_JOBS_PK.into(),
                schema::open_job_sk(job),
            )))
            .condition_expression("attribute_exists(PK)")
            .build()
            .context("building the open job delete")?;
        let entry = TransactWriteItem::builder().delete(entry).build();
        let mut items = vec![finish.clone(), entry.clone()];
        if counted {
            let count = self
                .open_count_update(job.org())
                .update_expression("SET #open = #open - :one")
                .condition_expression("#open >= :one")
                .build()
                .context("building the open job count")?;
            items.push(TransactWriteItem::builder().update(count).build());
        }
        let codes = match self.transact(with_record(items), what).await? {
            None => return Ok(None),
            Some(codes) => codes,
        };
        if condition_failed(&codes, 0) {
            return Ok(Some(codes));
        }
        if condition_failed(&codes, 1) {
            // Another run took the job off already (and uncounted it): only our own write.
            return self.transact(with_record(vec![finish]), what).await;
        }
        if counted && condition_failed(&codes, 2) {
            // A job opened before organizations' counts existed was never counted.
            return self.transact(with_record(vec![finish, entry]), what).await;
        }
        Err(anyhow::anyhow!("finishing a job refused: {codes:?}").into())
    }

    /// An update of an organization's count of open jobs, `:one` and `#open` bound.
    fn open_count_update(&self, org: &OrgId) -> aws_sdk_dynamodb::types::builders::UpdateBuilder {
        Update::builder()
            .table_name(&self.tables.main)
            .set_key(Some(key_of(schema::org_pk(org), schema::OPEN_JOB_COUNT_SK)))
            .expression_attribute_names("#open", OPEN)
            .expression_attribute_values(":one", n(1))
    }

    /// How many open jobs that count an organization has.
    pub(super) async fn open_count(&self, org: &OrgId) -> Result<u64> {
        let item = self
            .get(
                &self.tables.main,
                key_of(schema::org_pk(org), schema::OPEN_JOB_COUNT_SK),
                "reading an organization's open jobs",
            )
            .await?;
        match item.as_ref().and_then(|i| i.get(OPEN)) {
            None => Ok(0),
            Some(AttributeValue::N(v)) => Ok(v
                .parse::<i64>()
                .context("an organization's count of open jobs")?
                .max(0) as u64),
            Some(_) => {
                Err(anyhow::anyhow!("an organization's count of open jobs is not a number").into())
            }
        }
    }
}

#[async_trait]
impl OpenJobs for DynamoStore {
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
}
