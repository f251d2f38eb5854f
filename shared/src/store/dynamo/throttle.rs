//! Failed redemption attempts, one counter item per learner and window, expiring by TTL.

use super::*;

#[async_trait]
impl Throttle for DynamoStore {
    async fn failed_attempts(&self, learner: &UserId, window: &str) -> Result<u64> {
        let item = self
            .client
            .get_item()
            .table_name(&self.tables.main)
            .set_key(Some(key_of(
                schema::attempts_pk(learner),
                schema::attempts_sk(window),
            )))
            .projection_expression("attempts")
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk("reading failed attempts"))?
            .item;
        Ok(item
            .and_then(|i| match i.get("attempts") {
                Some(AttributeValue::N(v)) => v.parse().ok(),
                _ => None,
            })
            .unwrap_or(0))
    }

    async fn add_failed_attempt(
        &self,
        learner: &UserId,
        window: &str,
        expires_at: Timestamp,
    ) -> Result<u64> {
        let out = self
            .client
            .update_item()
            .table_name(&self.tables.main)
            .set_key(Some(key_of(
                schema::attempts_pk(learner),
                schema::attempts_sk(window),
            )))
            .update_expression("SET #entity = :entity, #ttl = :ttl ADD attempts :one")
            .expression_attribute_names("#entity", ENTITY)
            .expression_attribute_names("#ttl", schema::TTL)
            .expression_attribute_values(":entity", s("failed_attempts"))
            .expression_attribute_values(":ttl", n(expires_at.timestamp()))
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(sdk("counting a failed attempt"))?;
        Ok(out
            .attributes
            .and_then(|a| match a.get("attempts") {
                Some(AttributeValue::N(v)) => v.parse().ok(),
                _ => None,
            })
            .unwrap_or(0))
    }
}
