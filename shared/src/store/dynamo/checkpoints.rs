//! Stream consumers' checkpoints, one item per shard.

use super::*;

#[async_trait]
impl StreamCheckpoints for DynamoStore {
    async fn stream_checkpoint(&self, stream_arn: &str, shard_id: &str) -> Result<Option<String>> {
        let item = self
            .get(
                &self.tables.main,
                key_of(
                    schema::checkpoint_pk(stream_arn),
                    schema::checkpoint_sk(shard_id),
                ),
                "reading a stream checkpoint",
            )
            .await?;
        Ok(item.and_then(|i| attr_string(&i, "sequence_number")))
    }

    async fn save_stream_checkpoint(
        &self,
        stream_arn: &str,
        shard_id: &str,
        sequence_number: &str,
    ) -> Result<()> {
        let mut item = key_of(
            schema::checkpoint_pk(stream_arn),
            schema::checkpoint_sk(shard_id),
        );
        item.insert(ENTITY.into(), s("stream_checkpoint"));
        item.insert("sequence_number".into(), s(sequence_number));
        self.client
            .put_item()
            .table_name(&self.tables.main)
            .set_item(Some(item))
            .send()
            .await
            .map_err(sdk("saving a stream checkpoint"))?;
        Ok(())
    }
}
