//! Exports and the scheduled exports' claims.

use super::*;

/// An export as stored: in its organization's partition, and listed under its pool in GSI1.
fn export_item(export: &Export) -> Result<Item> {
    let sk = schema::export_sk(&export.export_id);
    let mut item = to_item(export, schema::org_pk(&export.org), sk.clone(), "export")?;
    item.insert(GSI1PK.into(), s(schema::pool_exports_pk(&export.pool_id)));
    item.insert(GSI1SK.into(), s(sk));
    Ok(item)
}

#[async_trait]
impl Exports for DynamoStore {
    async fn put_export(&self, export: &Export, max_open: MaxOpenJobs) -> Result<()> {
        let item = export_item(export)?;
        let open = Job::Export {
            org: export.org.clone(),
            export_id: export.export_id,
        };
        let cap = export.counts_as_open_job().then_some(max_open.get());
        let record = export.start_record();
        self.put_open(item, &open, cap, record.as_ref(), "creating an export")
            .await
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

    async fn list_exports(
        &self,
        org: &OrgId,
        pool_id: &PoolId,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Export>> {
        // An export's sort key is the same in the table and in the index, so the cursor
        // carries it once and the rest of the start key is the caller's.
        let start = decode_cursor(cursor, &[(GSI1SK, schema::EXPORT_SK_PREFIX)])?.map(|mut k| {
            if let Some(sk) = k.get(GSI1SK).cloned() {
                k.insert(SK.into(), sk);
            }
            k.insert(GSI1PK.into(), s(schema::pool_exports_pk(pool_id)));
            k.insert(PK.into(), s(schema::org_pk(org)));
            k
        });
        // A pool is of one organization, whose partition holds its exports: the index's
        // partition is the caller's once the caller has read the pool.
        // The index is eventually consistent: an export started a moment ago may show a
        // moment later, and its status may lag; `get_export` reads it exactly.
        let query = self
            .client
            .query()
            .table_name(&self.tables.main)
            .index_name(schema::GSI1)
            .key_condition_expression("GSI1PK = :pk")
            .expression_attribute_values(":pk", s(schema::pool_exports_pk(pool_id)))
            .scan_index_forward(false);
        let (items, next_cursor) = self
            .collect(Listing {
                query,
                start,
                limit,
                filtered: false,
                cursor_attrs: &[GSI1SK],
                what: "listing a pool's exports",
            })
            .await?;
        page_of(items, next_cursor, "export")
    }

    async fn update_export(&self, export: &Export) -> Result<bool> {
        let item = export_item(export)?;
        let put = self
            .client
            .put_item()
            .table_name(&self.tables.main)
            .set_item(Some(item))
            .condition_expression("#status IN (:pending, :running)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":pending", s("pending"))
            .expression_attribute_values(":running", s("running"))
            .send();
        Ok(conditional(put, "updating an export").await?.is_some())
    }

    async fn finish_export(&self, export: &Export) -> Result<()> {
        let item = export_item(export)?;
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
        let open = Job::Export {
            org: export.org.clone(),
            export_id: export.export_id,
        };
        let finished = self
            .finish_open(
                TransactWriteItem::builder().put(put).build(),
                &open,
                export.counts_as_open_job(),
                export.end_record().as_ref(),
                "finishing an export",
            )
            .await?;
        match finished {
            None => Ok(()),
            Some(codes) if condition_failed(&codes, 0) => {
                tracing::warn!(export = %export.export_id, "another run finished this export first");
                Ok(())
            }
            Some(codes) => Err(anyhow::anyhow!("finishing an export refused: {codes:?}").into()),
        }
    }

    async fn claim_scheduled_export(
        &self,
        org: &OrgId,
        pool_id: &PoolId,
        mark: u64,
    ) -> Result<bool> {
        let claim = self
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
            .send();
        Ok(conditional(claim, "claiming a scheduled export")
            .await?
            .is_some())
    }

    async fn release_scheduled_export(
        &self,
        org: &OrgId,
        pool_id: &PoolId,
        mark: u64,
    ) -> Result<()> {
        let release = self
            .client
            .update_item()
            .table_name(&self.tables.main)
            .set_key(Some(self.pool_key(org, pool_id)))
            .update_expression("REMOVE scheduled_mark")
            .condition_expression("scheduled_mark = :mark")
            .expression_attribute_values(":mark", n(mark))
            .send();
        // Refused: a later export claimed it since, and there is nothing to undo.
        conditional(release, "releasing a scheduled export").await?;
        Ok(())
    }
}
