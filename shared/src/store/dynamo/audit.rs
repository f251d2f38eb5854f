//! The audit log: its own table, written only by puts that ride in the transaction of the
//! change they record, read by Query on the organization's partition or one of four indexes
//! (actor, resource, action, pool), newest first.

use super::*;
use crate::domain::{AuditFilter, AuditRecord};

impl DynamoStore {
    /// The audit record's item: keyed by time and id, in every index it can be found by, and
    /// expiring after the retention.
    fn audit_item(&self, record: &AuditRecord) -> Result<Item> {
        let sk = schema::audit_sk(&record.at, &record.event_id);
        let mut item = to_item(record, schema::audit_pk(&record.org), sk.clone(), "audit")?;
        // A record of no pool is in no pool's partition (the index is sparse).
        let partitions = [
            Some(schema::audit_actor_pk(&record.org, &record.actor.sub)),
            Some(schema::audit_resource_pk(&record.org, &record.resource.id)),
            Some(schema::audit_action_pk(&record.org, &record.action)),
            record
                .pool_id
                .as_ref()
                .map(|pool| schema::audit_pool_pk(&record.org, pool)),
        ];
        for ((_, pk, sk_attr), partition) in schema::AUDIT_INDEX_KEYS.iter().zip(partitions) {
            if let Some(partition) = partition {
                item.insert((*pk).into(), s(partition));
                item.insert((*sk_attr).into(), s(sk.clone()));
            }
        }
        let expires = record.at + chrono::Duration::days(i64::from(self.audit_retention_days));
        item.insert(schema::TTL.into(), n(expires.timestamp()));
        Ok(item)
    }

    /// The put of an audit record, to ride in the transaction of the change it records. Its
    /// condition never fails (the id is new); it makes the put append-only all the same.
    /// None only in the bench's control arm, which writes changes without records.
    pub(super) fn audit_put(&self, record: &AuditRecord) -> Result<Option<TransactWriteItem>> {
        if !self.audit_records {
            return Ok(None);
        }
        let put = Put::builder()
            .table_name(&self.tables.audit)
            .set_item(Some(self.audit_item(record)?))
            .condition_expression("attribute_not_exists(PK)")
            .build()
            .context("building the audit put")?;
        Ok(Some(TransactWriteItem::builder().put(put).build()))
    }
}

#[async_trait]
impl AuditLog for DynamoStore {
    async fn record_audit(&self, record: &AuditRecord) -> Result<()> {
        self.put_new(
            &self.tables.audit,
            self.audit_item(record)?,
            "recording an audit record",
        )
        .await
    }

    async fn list_audit(
        &self,
        org: &OrgId,
        filter: &AuditFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<AuditRecord>> {
        // The most selective filter picks the partition read; the others filter it.
        let action = filter.action.map(|a| a.as_str());
        let by = if let Some(id) = &filter.resource_id {
            Some((1, schema::audit_resource_pk(org, id)))
        } else if let Some(pool) = &filter.pool_id {
            Some((3, schema::audit_pool_pk(org, pool)))
        } else if let Some(sub) = &filter.actor {
            Some((0, schema::audit_actor_pk(org, sub)))
        } else {
            action.map(|action| (2, schema::audit_action_pk(org, action)))
        };
        let read = by.as_ref().map(|(i, _)| *i);
        let (index, pk_attr, sk_attr, pk) = match by {
            Some((i, pk)) => {
                let (name, p, k) = schema::AUDIT_INDEX_KEYS[i];
                (Some(name), p, k, pk)
            }
            None => (None, PK, SK, schema::audit_pk(org)),
        };
        let from = filter
            .since
            .as_ref()
            .map(schema::audit_from)
            .unwrap_or_else(|| schema::AUDIT_SK_PREFIX.into());
        let to = filter
            .until
            .as_ref()
            .map(schema::audit_to)
            .unwrap_or_else(|| format!("{}~", schema::AUDIT_SK_PREFIX));
        let mut query = self
            .client
            .query()
            .table_name(&self.tables.audit)
            .set_index_name(index.map(str::to_string))
            .key_condition_expression("#pk = :pk AND #sk BETWEEN :from AND :to")
            .expression_attribute_names("#pk", pk_attr)
            .expression_attribute_names("#sk", sk_attr)
            .expression_attribute_values(":pk", s(pk.clone()))
            .expression_attribute_values(":from", s(from))
            .expression_attribute_values(":to", s(to))
            .scan_index_forward(false);
        // Every filter but the one whose partition is read is a filter expression.
        let mut conditions = Vec::new();
        if let Some(pool) = &filter.pool_id
            && read != Some(3)
        {
            conditions.push("pool_id = :pool");
            query = query.expression_attribute_values(":pool", s(pool.clone()));
        }
        if let Some(sub) = &filter.actor
            && read != Some(0)
        {
            conditions.push("actor.#sub = :actor");
            query = query
                .expression_attribute_names("#sub", "sub")
                .expression_attribute_values(":actor", s(sub.clone()));
        }
        if let Some(action) = action
            && read != Some(2)
        {
            conditions.push("#action = :action");
            query = query
                .expression_attribute_names("#action", "action")
                .expression_attribute_values(":action", s(action));
        }
        let filtered = !conditions.is_empty();
        if filtered {
            query = query.filter_expression(conditions.join(" AND "));
        }
        // A cursor holds the table's keys, and the index's when one is read; each must stay
        // in the partition this query reads.
        let mut allowed = vec![
            (PK, schema::audit_pk(org)),
            (SK, schema::AUDIT_SK_PREFIX.into()),
        ];
        if index.is_some() {
            allowed.push((pk_attr, pk.clone()));
            allowed.push((sk_attr, schema::AUDIT_SK_PREFIX.into()));
        }
        let allowed: Vec<(&str, &str)> = allowed.iter().map(|(a, p)| (*a, p.as_str())).collect();
        let start = decode_cursor(cursor, &allowed)?;
        // The partition keys must match exactly, not by prefix.
        if let Some(start) = &start {
            let exact = |attr: &str, want: &str| attr_string(start, attr).as_deref() == Some(want);
            if !exact(PK, &schema::audit_pk(org)) || !exact(pk_attr, &pk) {
                return Err(Error::refused(
                    ErrorCode::InvalidCursor,
                    "the cursor is not one this listing gave out",
                ));
            }
        }
        let cursor_attrs: Vec<&str> = allowed.iter().map(|(a, _)| *a).collect();
        let (items, next_cursor) = self
            .collect(Listing {
                query,
                start,
                limit,
                filtered,
                cursor_attrs: &cursor_attrs,
                what: "listing audit records",
            })
            .await?;
        page_of(items, next_cursor, "audit")
    }
}

impl DynamoStore {
    /// Writes one conditional change with its audit record, as one transaction (what was a
    /// single PutItem, UpdateItem or DeleteItem): true when written, false when the change's
    /// condition did not hold (and nothing, the record neither, was written).
    pub(super) async fn write_with_record(
        &self,
        change: TransactWriteItem,
        record: &AuditRecord,
        what: &'static str,
    ) -> Result<bool> {
        let mut items = vec![change];
        items.extend(self.audit_put(record)?);
        match self.transact(items, what).await? {
            None => Ok(true),
            Some(codes) if condition_failed(&codes, 0) => Ok(false),
            Some(codes) => Err(anyhow::anyhow!("{what} was cancelled: {codes:?}").into()),
        }
    }
}
