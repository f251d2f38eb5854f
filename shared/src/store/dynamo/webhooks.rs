//! Webhook endpoints (in their organization's partition) and their deliveries (in the
//! endpoint's), with a small marker item per waiting delivery in one of `DUE_SHARDS`
//! partitions, sorted by when it is due: what the local server's sender polls, and what
//! survives a restart.

use super::*;
use crate::domain::AuditRecord;
use crate::domain::{Delivery, DeliveryId, DeliveryStatus, Webhook, WebhookId};

impl DynamoStore {
    fn webhook_key(org: &OrgId, id: &WebhookId) -> Item {
        key_of(schema::org_pk(org), schema::webhook_sk(id))
    }

    fn delivery_key(webhook: &WebhookId, id: &DeliveryId) -> Item {
        key_of(schema::deliveries_pk(webhook), schema::delivery_sk(id))
    }

    /// The marker of a delivery waiting until `at`.
    fn due_key(delivery: &Delivery, at: &Timestamp) -> Item {
        let shard = delivery.delivery_id.0.as_bytes()[15] % schema::DUE_SHARDS;
        key_of(
            schema::due_pk(shard),
            schema::due_sk(at, &delivery.webhook_id, &delivery.delivery_id),
        )
    }

    fn due_item(&self, delivery: &Delivery, at: &Timestamp) -> Item {
        let mut item = Self::due_key(delivery, at);
        item.insert(ENTITY.into(), s("delivery_due"));
        item
    }
}

impl DynamoStore {
    fn webhook_item(&self, webhook: &Webhook) -> Result<Item> {
        to_item(
            webhook,
            schema::org_pk(&webhook.org),
            schema::webhook_sk(&webhook.webhook_id),
            "webhook",
        )
    }

    /// A conditional put of an endpoint, for a transaction; `read` is the version it was read
    /// at, when the condition names it.
    fn webhook_put(
        &self,
        webhook: &Webhook,
        condition: &str,
        read: Option<u64>,
    ) -> Result<TransactWriteItem> {
        let put = Put::builder()
            .table_name(&self.tables.main)
            .set_item(Some(self.webhook_item(webhook)?))
            .condition_expression(condition)
            .set_expression_attribute_values(
                read.map(|r| HashMap::from([(":read".to_string(), n(r))])),
            )
            .build()
            .context("building a webhook put")?;
        Ok(TransactWriteItem::builder().put(put).build())
    }
}

#[async_trait]
impl Webhooks for DynamoStore {
    async fn put_webhook(&self, webhook: &Webhook, record: &AuditRecord) -> Result<()> {
        let put = self.webhook_put(webhook, "attribute_not_exists(PK)", None)?;
        if self
            .write_with_record(put, record, "creating a webhook")
            .await?
        {
            Ok(())
        } else {
            Err(anyhow::anyhow!("a new webhook's id is taken").into())
        }
    }

    async fn get_webhook(&self, org: &OrgId, id: &WebhookId) -> Result<Option<Webhook>> {
        self.get(
            &self.tables.main,
            Self::webhook_key(org, id),
            "reading a webhook",
        )
        .await?
        .map(|item| from_item(item, "webhook"))
        .transpose()
    }

    async fn list_webhooks(&self, org: &OrgId) -> Result<Vec<Webhook>> {
        let query = self
            .client
            .query()
            .table_name(&self.tables.main)
            .key_condition_expression("PK = :pk AND begins_with(SK, :prefix)")
            .expression_attribute_values(":pk", s(schema::org_pk(org)))
            .expression_attribute_values(":prefix", s(schema::WEBHOOK_SK_PREFIX))
            .consistent_read(true);
        let (items, _) = self
            .collect(Listing {
                query,
                start: None,
                limit: crate::domain::MAX_WEBHOOKS,
                filtered: false,
                cursor_attrs: &[SK],
                what: "listing webhooks",
            })
            .await?;
        items
            .into_iter()
            .map(|item| from_item(item, "webhook"))
            .collect()
    }

    async fn replace_webhook(
        &self,
        webhook: &Webhook,
        read: u64,
        record: Option<&AuditRecord>,
    ) -> Result<bool> {
        let condition = "attribute_exists(PK) AND version = :read";
        let Some(record) = record else {
            let item = self.webhook_item(webhook)?;
            let put = self
                .client
                .put_item()
                .table_name(&self.tables.main)
                .set_item(Some(item))
                .condition_expression(condition)
                .expression_attribute_values(":read", n(read))
                .send();
            return Ok(conditional(put, "changing a webhook").await?.is_some());
        };
        let put = self.webhook_put(webhook, condition, Some(read))?;
        self.write_with_record(put, record, "changing a webhook")
            .await
    }

    async fn delete_webhook(
        &self,
        org: &OrgId,
        id: &WebhookId,
        record: &AuditRecord,
    ) -> Result<bool> {
        let delete = Delete::builder()
            .table_name(&self.tables.main)
            .set_key(Some(Self::webhook_key(org, id)))
            .condition_expression("attribute_exists(PK)")
            .build()
            .context("building a webhook delete")?;
        let delete = TransactWriteItem::builder().delete(delete).build();
        self.write_with_record(delete, record, "removing a webhook")
            .await
    }

    async fn put_deliveries(&self, deliveries: &[Delivery]) -> Result<Vec<Delivery>> {
        let mut stored = Vec::new();
        // One transaction per delivery and its marker: a delivery that exists (the same event
        // fanned out again) is refused whole and left as it is.
        for delivery in deliveries {
            let item = to_item(
                delivery,
                schema::deliveries_pk(&delivery.webhook_id),
                schema::delivery_sk(&delivery.delivery_id),
                "delivery",
            )?;
            let mut items = vec![
                TransactWriteItem::builder()
                    .put(
                        Put::builder()
                            .table_name(&self.tables.main)
                            .set_item(Some(item))
                            .condition_expression("attribute_not_exists(PK)")
                            .build()
                            .context("building a delivery put")?,
                    )
                    .build(),
            ];
            if let Some(at) = &delivery.next_attempt_at {
                items.push(
                    TransactWriteItem::builder()
                        .put(
                            Put::builder()
                                .table_name(&self.tables.main)
                                .set_item(Some(self.due_item(delivery, at)))
                                .build()
                                .context("building a delivery's marker")?,
                        )
                        .build(),
                );
            }
            match self.transact(items, "storing a delivery").await? {
                None => stored.push(delivery.clone()),
                Some(codes) if condition_failed(&codes, 0) => {}
                Some(codes) => {
                    return Err(anyhow::anyhow!(
                        "storing a delivery was cancelled without a reason: {codes:?}"
                    )
                    .into());
                }
            }
        }
        Ok(stored)
    }

    async fn get_delivery(&self, webhook: &WebhookId, id: &DeliveryId) -> Result<Option<Delivery>> {
        self.get(
            &self.tables.main,
            Self::delivery_key(webhook, id),
            "reading a delivery",
        )
        .await?
        .map(|item| from_item(item, "delivery"))
        .transpose()
    }

    async fn save_delivery(
        &self,
        delivery: &Delivery,
        was_due: Option<Timestamp>,
        record: Option<&crate::domain::AuditRecord>,
    ) -> Result<()> {
        let item = to_item(
            delivery,
            schema::deliveries_pk(&delivery.webhook_id),
            schema::delivery_sk(&delivery.delivery_id),
            "delivery",
        )?;
        let mut items = vec![
            TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(&self.tables.main)
                        .set_item(Some(item))
                        .build()
                        .context("building a delivery put")?,
                )
                .build(),
        ];
        if was_due != delivery.next_attempt_at {
            if let Some(at) = &was_due {
                items.push(
                    TransactWriteItem::builder()
                        .delete(
                            Delete::builder()
                                .table_name(&self.tables.main)
                                .set_key(Some(Self::due_key(delivery, at)))
                                .build()
                                .context("building a marker's removal")?,
                        )
                        .build(),
                );
            }
            if let Some(at) = &delivery.next_attempt_at {
                items.push(
                    TransactWriteItem::builder()
                        .put(
                            Put::builder()
                                .table_name(&self.tables.main)
                                .set_item(Some(self.due_item(delivery, at)))
                                .build()
                                .context("building a delivery's marker")?,
                        )
                        .build(),
                );
            }
        }
        if let Some(record) = record {
            items.extend(self.audit_put(record)?);
        }
        match self.transact(items, "saving a delivery").await? {
            None => Ok(()),
            Some(codes) => Err(anyhow::anyhow!(
                "saving a delivery was cancelled without a reason: {codes:?}"
            )
            .into()),
        }
    }

    async fn list_deliveries(
        &self,
        webhook: &WebhookId,
        status: Option<DeliveryStatus>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Delivery>> {
        let start = decode_cursor(cursor, &[(SK, schema::DELIVERY_SK_PREFIX)])?.map(|mut k| {
            k.insert(PK.into(), s(schema::deliveries_pk(webhook)));
            k
        });
        let query = self
            .client
            .query()
            .table_name(&self.tables.main)
            .key_condition_expression("PK = :pk AND begins_with(SK, :prefix)")
            .expression_attribute_values(":pk", s(schema::deliveries_pk(webhook)))
            .expression_attribute_values(":prefix", s(schema::DELIVERY_SK_PREFIX))
            .scan_index_forward(false);
        let wanted = status.map(|s| s.as_str());
        let keep = move |item: &Item| {
            wanted
                .is_none_or(|w| matches!(item.get("status"), Some(AttributeValue::S(v)) if v == w))
        };
        let (items, next_cursor) = self
            .collect_where(
                Listing {
                    query,
                    start,
                    limit,
                    filtered: status.is_some(),
                    cursor_attrs: &[SK],
                    what: "listing deliveries",
                },
                Some(&keep),
            )
            .await?;
        page_of(items, next_cursor, "delivery")
    }

    async fn due_deliveries(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<(WebhookId, DeliveryId)>> {
        let until = schema::due_until(&now);
        let mut due = Vec::new();
        for shard in 0..schema::DUE_SHARDS {
            let out = self
                .client
                .query()
                .table_name(&self.tables.main)
                .key_condition_expression("PK = :pk AND SK < :until")
                .expression_attribute_values(":pk", s(schema::due_pk(shard)))
                .expression_attribute_values(":until", s(until.clone()))
                .limit(i32::try_from(limit).unwrap_or(i32::MAX))
                .send()
                .await
                .map_err(sdk("reading due deliveries"))?;
            for item in out.items() {
                let Some(sk) = attr_string(item, SK) else {
                    continue;
                };
                let mut parts = sk.rsplitn(3, '#');
                let (Some(delivery), Some(webhook)) = (parts.next(), parts.next()) else {
                    continue;
                };
                if let (Some(d), Some(w)) = (DeliveryId::parse(delivery), WebhookId::parse(webhook))
                {
                    due.push((w, d));
                }
            }
        }
        due.truncate(limit);
        Ok(due)
    }
}
