//! Pools: settings, counts, and the listing the scheduled export walks.

use super::*;
use crate::domain::{AuditRecord, PoolFilter};

impl DynamoStore {
    pub(super) fn pool_key(&self, org: &OrgId, pool_id: &PoolId) -> Item {
        key_of(schema::org_pk(org), schema::pool_sk(pool_id))
    }

    /// The count update that rides along with a write of the pool's keys: `total` keys added
    /// (or removed) and `redeemed` redeemed (or given back), on one shard chosen at random, or
    /// on the pool's own item for a pool made before shards. `version`, when given, is the
    /// pool version whose settings the write relied on: refused if the pool is edited since.
    pub(super) fn count(
        &self,
        pool: &Pool,
        total: i64,
        redeemed: i64,
        version: Option<u64>,
    ) -> Result<TransactWriteItem> {
        let mut update = Update::builder()
            .table_name(&self.tables.main)
            .expression_attribute_values(":one", n(1));
        let mut set = vec!["change_seq :one"];
        if total != 0 {
            set.push("total_keys :total");
            update = update.expression_attribute_values(":total", n(total));
        }
        if redeemed != 0 {
            set.push("redeemed_count :redeemed");
            update = update.expression_attribute_values(":redeemed", n(redeemed));
        }
        let adds = format!("ADD {}", set.join(", "));
        update = match pool.shard_for_write() {
            // A shard is made by its first write; an edit of the pool bumps every shard's
            // `version` after the pool's, so a shard at most at the version read still
            // agrees with it (the edit has not finished), and a newer one refuses.
            Some(shard) => {
                let update = update
                    .set_key(Some(key_of(
                        schema::pool_shard_pk(&pool.pool_id, shard),
                        schema::POOL_SHARD_SK,
                    )))
                    .update_expression(format!("SET #entity = :entity {adds}"))
                    .expression_attribute_names("#entity", ENTITY)
                    .expression_attribute_values(":entity", s("pool_shard"));
                match version {
                    Some(v) => update
                        .condition_expression(
                            "attribute_not_exists(version) OR version <= :version",
                        )
                        .expression_attribute_values(":version", n(v)),
                    None => update,
                }
            }
            None => {
                let update = update
                    .set_key(Some(self.pool_key(&pool.org, &pool.pool_id)))
                    .update_expression(adds);
                match version {
                    Some(v) => update
                        .condition_expression("attribute_exists(PK) AND version = :version")
                        .expression_attribute_values(":version", n(v)),
                    None => update.condition_expression("attribute_exists(PK)"),
                }
            }
        };
        let update = update.build().context("building the pool count update")?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// Adds each pool's shard counts to what its own item holds, and finishes any edit whose
    /// shard bumps were cut short (a shard behind the pool's version).
    async fn with_shard_counts(&self, pools: &mut [Pool]) -> Result<()> {
        let mut owner = HashMap::new();
        let mut keys = Vec::new();
        for (i, pool) in pools.iter().enumerate() {
            for shard in 0..pool.shards {
                let pk = schema::pool_shard_pk(&pool.pool_id, shard);
                owner.insert(pk.clone(), (i, shard));
                keys.push(key_of(pk, schema::POOL_SHARD_SK));
            }
        }
        if keys.is_empty() {
            return Ok(());
        }
        let mut sums = vec![(0i64, 0i64, 0i64); pools.len()];
        let mut behind: Vec<Vec<u16>> = pools.iter().map(|p| (0..p.shards).collect()).collect();
        let items = self
            .batch_get(
                keys,
                Some("PK, total_keys, redeemed_count, change_seq, version"),
                "reading pool count shards",
            )
            .await?;
        for item in items {
            let Some(&(i, shard)) = attr_string(&item, PK).and_then(|pk| owner.get(&pk)) else {
                continue;
            };
            let number = |name: &str| match item.get(name) {
                Some(AttributeValue::N(v)) => v.parse::<i64>().ok(),
                _ => None,
            };
            let sum = &mut sums[i];
            sum.0 += number("total_keys").unwrap_or(0);
            sum.1 += number("redeemed_count").unwrap_or(0);
            sum.2 += number("change_seq").unwrap_or(0);
            if number("version").is_some_and(|v| v >= pools[i].version as i64) {
                behind[i].retain(|s| *s != shard);
            }
        }
        for ((pool, (total, redeemed, changes)), behind) in pools.iter_mut().zip(sums).zip(behind) {
            let add = |own: u64, delta: i64| u64::try_from(own as i64 + delta).unwrap_or(0);
            pool.total_keys = add(pool.total_keys, total);
            pool.redeemed_count = add(pool.redeemed_count, redeemed);
            pool.change_seq = add(pool.change_seq, changes);
            // Only a pool edited at least once has shards to bring up to date.
            if pool.version > crate::domain::FIRST_VERSION && !behind.is_empty() {
                self.bump_shards(pool, &behind).await?;
            }
        }
        Ok(())
    }

    /// Brings shards up to the pool's version (never back), in parallel.
    async fn bump_shards(&self, pool: &Pool, shards: &[u16]) -> Result<()> {
        let bumps = shards.iter().map(|&shard| async move {
            let bump = self
                .client
                .update_item()
                .table_name(&self.tables.main)
                .set_key(Some(key_of(
                    schema::pool_shard_pk(&pool.pool_id, shard),
                    schema::POOL_SHARD_SK,
                )))
                .update_expression("SET version = :version, #entity = :entity")
                .condition_expression("attribute_not_exists(version) OR version < :version")
                .expression_attribute_names("#entity", ENTITY)
                .expression_attribute_values(":version", n(pool.version))
                .expression_attribute_values(":entity", s("pool_shard"))
                .send();
            // Refused: a later edit got there first.
            conditional(bump, "bringing a pool count shard up to date")
                .await
                .map(|_| ())
        });
        futures_util::future::try_join_all(bumps).await?;
        Ok(())
    }
}

pub(super) fn pool_id_value(id: &PoolId) -> Result<AttributeValue> {
    Ok(serde_dynamo::to_attribute_value(id).context("serialising a pool id")?)
}

#[async_trait]
impl Pools for DynamoStore {
    async fn put_pool(&self, pool: &Pool, record: &AuditRecord) -> Result<()> {
        let mut item = to_item(
            pool,
            schema::org_pk(&pool.org),
            schema::pool_sk(&pool.pool_id),
            "pool",
        )?;
        item.insert("name_lower".into(), s(pool.name.to_lowercase()));
        if let Some(title) = &pool.course_title {
            item.insert("course_lower".into(), s(title.to_lowercase()));
        }
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
        let mut items = vec![
            put(item).context("building the pool put")?,
            put(entry).context("building the registry put")?,
        ];
        items.extend(self.audit_put(record)?);
        match self.transact(items, "creating a pool").await? {
            None => Ok(()),
            Some(codes) => Err(anyhow::anyhow!("a new pool's id is taken: {codes:?}").into()),
        }
    }

    async fn get_pool_settings(&self, org: &OrgId, id: &PoolId) -> Result<Option<Pool>> {
        self.get(&self.tables.main, self.pool_key(org, id), "reading a pool")
            .await?
            .map(|item| from_item(item, "pool"))
            .transpose()
    }

    async fn get_pool(&self, org: &OrgId, id: &PoolId) -> Result<Option<Pool>> {
        let Some(item) = self
            .get(&self.tables.main, self.pool_key(org, id), "reading a pool")
            .await?
        else {
            return Ok(None);
        };
        let mut pool: Pool = from_item(item, "pool")?;
        self.with_shard_counts(std::slice::from_mut(&mut pool))
            .await?;
        Ok(Some(pool))
    }

    async fn list_pools(
        &self,
        org: &OrgId,
        filter: &PoolFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Pool>> {
        let kind = OrgListing {
            sk_prefix: schema::POOL_SK_PREFIX,
            search_attrs: &["name_lower", "course_lower"],
            entity: "pool",
            what: "listing pools",
        };
        // A status follows from the dates and the clock, which a filter expression would
        // have to restate: the pool's own rule decides, here. An unreadable item is kept, to
        // be skipped (and logged) with the page.
        let by_status = |item: &Item| {
            serde_dynamo::from_item::<_, Pool>(item.clone())
                .map_or(true, |pool| filter.admits_status(&pool))
        };
        let keep: Option<paging::Keep<'_>> = filter.status.is_some().then_some(&by_status);
        let mut page: Page<Pool> = self
            .list_org(org, &kind, filter.search.as_deref(), keep, cursor, limit)
            .await?;
        self.with_shard_counts(&mut page.items).await?;
        Ok(page)
    }

    async fn update_pool_settings(
        &self,
        pool: &Pool,
        expected_version: u64,
        record: &AuditRecord,
    ) -> Result<bool> {
        let update = Update::builder()
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
            .build()
            .context("building the pool update")?;
        let update = TransactWriteItem::builder().update(update).build();
        if !self
            .write_with_record(update, record, "updating a pool")
            .await?
        {
            return Ok(false);
        }
        // Every shard learns the new version before the edit is answered, so a redemption that
        // relied on the old settings (a cached pool) is refused from then on. Shard by shard,
        // not in one transaction, which busy shards would keep cancelling; an edit cut short
        // is finished by the next read of the pool.
        self.bump_shards(pool, &(0..pool.shards).collect::<Vec<_>>())
            .await?;
        Ok(true)
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
        self.with_shard_counts(&mut pools).await?;
        Ok(Page {
            items: pools,
            next_cursor,
        })
    }
}
