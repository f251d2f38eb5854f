//! Pools: settings, counts, and the listing the scheduled export walks.

use super::*;

impl DynamoStore {
    pub(super) fn pool_key(&self, org: &OrgId, pool_id: &PoolId) -> Item {
        key_of(schema::org_pk(org), schema::pool_sk(pool_id))
    }

    /// The pool-count update that rides along with a batch of key writes.
    pub(super) fn count_keys(
        &self,
        org: &OrgId,
        pool_id: &PoolId,
        delta: i64,
    ) -> Result<TransactWriteItem> {
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
}

pub(super) fn pool_id_value(id: &PoolId) -> Result<AttributeValue> {
    Ok(serde_dynamo::to_attribute_value(id).context("serialising a pool id")?)
}

#[async_trait]
impl Pools for DynamoStore {
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
        // One unreadable entry or pool is skipped (and logged): the scheduler walks every
        // organization's pools, and one bad item must not stop it for the others.
        for entry in &entries {
            let org = attr_string(entry, "org").and_then(|o| OrgId::parse(&o).ok());
            let pool = attr_string(entry, "pool_id").and_then(|p| PoolId::parse(&p));
            match (org, pool) {
                (Some(org), Some(pool)) => keys.push(self.pool_key(&org, &pool)),
                _ => skipped(entry, "pool entry", "missing or malformed org or pool_id"),
            }
        }
        let mut pools: Vec<Pool> =
            readable(self.batch_get(keys, None, "reading pools").await?, "pool");
        pools.sort_by_key(|p| p.pool_id);
        Ok(Page {
            items: pools,
            next_cursor,
        })
    }
}
