//! The registry of open jobs: written with a job, removed in the same transaction that
//! finishes it.

use super::*;

impl DynamoStore {
    /// Stores a new job's item together with its entry among the open jobs, atomically.
    pub(super) async fn put_open(&self, item: Item, job: &Job, what: &'static str) -> Result<()> {
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
    pub(super) fn close_open(&self, job: &Job) -> Result<TransactWriteItem> {
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
