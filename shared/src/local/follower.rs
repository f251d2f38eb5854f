//! The local server's event source mappings: follows the assignments table's stream and hands
//! its records to the billing handler, then to webhooks' fan-out and the stats handler, in
//! batches, as Lambda does in AWS (where each has a mapping of its own).
//!
//! Progress is a checkpoint per shard in the store, saved after each batch is billed, fanned
//! out and counted. A crash between them and saving replays that batch, which each absorbs (a
//! line, a delivery, an activity's marker is written once); nothing after the checkpoint is
//! ever skipped.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use aws_lambda_events::event::dynamodb::{
    Event, EventRecord, StreamRecord, StreamViewType, UserIdentity,
};
use aws_sdk_dynamodbstreams::types::{Record, ShardIteratorType};

use crate::store::FollowerStore;

/// How often the local server's follower looks for new records.
pub const DEFAULT_POLL: Duration = Duration::from_millis(250);
/// Records asked for per GetRecords call, and so the largest batch billing gets.
pub const BATCH_SIZE: i32 = 100;
/// Empty pages read in a row before a shard counts as drained for one round.
const MAX_EMPTY_PAGES: usize = 3;

/// Follows one table's stream into the billing handler.
pub struct StreamFollower {
    dynamodb: aws_sdk_dynamodb::Client,
    streams: aws_sdk_dynamodbstreams::Client,
    store: Arc<dyn FollowerStore>,
    table: String,
    batch_size: i32,
    /// Where webhooks' deliveries go; none, and the stream feeds billing only.
    deliveries: Option<Arc<dyn crate::webhooks::DeliveryQueue>>,
}

impl StreamFollower {
    /// A follower of `table`'s stream that bills into `store` and keeps its checkpoints there.
    pub fn new(
        dynamodb: aws_sdk_dynamodb::Client,
        streams: aws_sdk_dynamodbstreams::Client,
        store: Arc<dyn FollowerStore>,
        table: impl Into<String>,
    ) -> Self {
        Self {
            dynamodb,
            streams,
            store,
            table: table.into(),
            batch_size: BATCH_SIZE,
            deliveries: None,
        }
    }

    /// Also fans each batch out to webhooks, handing the deliveries to `deliveries`.
    pub fn with_webhooks(mut self, deliveries: Arc<dyn crate::webhooks::DeliveryQueue>) -> Self {
        self.deliveries = Some(deliveries);
        self
    }

    /// Asks for at most `records` per batch instead of `BATCH_SIZE`.
    pub fn with_batch_size(mut self, records: i32) -> Self {
        self.batch_size = records.clamp(1, 1000);
        self
    }

    /// Bills every record now on the stream after the checkpoints; returns how many records it
    /// handed to billing. Stops at the first batch that billing could not finish, after saving
    /// the progress it made, and says so.
    pub async fn drain(&self) -> anyhow::Result<usize> {
        let table = self
            .dynamodb
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .with_context(|| format!("describing the table {}", self.table))?;
        let Some(stream_arn) = table.table().and_then(|t| t.latest_stream_arn()) else {
            anyhow::bail!("the table {} has no stream", self.table);
        };
        let mut handed = 0;
        let mut failed = None;
        // A shard that cannot be billed now must not hold back the others.
        for shard_id in self.shards(stream_arn).await? {
            match self.drain_shard(stream_arn, &shard_id).await {
                Ok(n) => handed += n,
                Err(e) => failed = Some(e.context(format!("shard {shard_id}"))),
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(handed),
        }
    }

    /// Drains the stream every `every` until `shutdown` resolves; failures are logged and
    /// retried on the next round, from the checkpoint.
    pub async fn run(self, every: Duration, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            match self.drain().await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(records = n, "stream records billed"),
                Err(e) => tracing::warn!(error = format!("{e:#}"), "billing follower will retry"),
            }
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }

    /// The stream's shards, each after its parent, so an item's changes are billed in order
    /// when DynamoDB splits a shard.
    async fn shards(&self, stream_arn: &str) -> anyhow::Result<Vec<String>> {
        let mut listed: Vec<(String, Option<String>)> = Vec::new();
        let mut start: Option<String> = None;
        loop {
            let out = self
                .streams
                .describe_stream()
                .stream_arn(stream_arn)
                .set_exclusive_start_shard_id(start.take())
                .send()
                .await
                .context("describing the stream")?;
            let Some(description) = out.stream_description else {
                break;
            };
            listed.extend(description.shards().iter().filter_map(|s| {
                s.shard_id()
                    .map(|id| (id.to_string(), s.parent_shard_id().map(str::to_string)))
            }));
            match description.last_evaluated_shard_id {
                Some(last) => start = Some(last),
                None => break,
            }
        }
        Ok(parents_first(listed))
    }

    async fn drain_shard(&self, stream_arn: &str, shard_id: &str) -> anyhow::Result<usize> {
        let checkpoint = self.store.stream_checkpoint(stream_arn, shard_id).await?;
        let request = self
            .streams
            .get_shard_iterator()
            .stream_arn(stream_arn)
            .shard_id(shard_id);
        let request = match &checkpoint {
            Some(sequence) => request
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .sequence_number(sequence),
            None => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
        };
        let mut iterator = match request.send().await {
            Ok(out) => out.shard_iterator,
            // The checkpoint is older than the stream's retention (24 hours in AWS): what lay
            // between is gone. Say so loudly and go on from the oldest record still there.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_trimmed_data_access_exception()) =>
            {
                tracing::error!(
                    shard = shard_id,
                    checkpoint = ?checkpoint,
                    "stream records after the checkpoint were trimmed before they were billed"
                );
                self.streams
                    .get_shard_iterator()
                    .stream_arn(stream_arn)
                    .shard_id(shard_id)
                    .shard_iterator_type(ShardIteratorType::TrimHorizon)
                    .send()
                    .await
                    .context("getting a shard iterator")?
                    .shard_iterator
            }
            Err(e) => return Err(e).context("getting a shard iterator"),
        };
        let mut handed = 0;
        let mut empty_pages = 0;
        while let Some(current) = iterator.take() {
            let out = self
                .streams
                .get_records()
                .shard_iterator(current)
                .limit(self.batch_size)
                .send()
                .await
                .context("reading stream records")?;
            let records = out.records.unwrap_or_default();
            if records.is_empty() {
                // DynamoDB Streams may answer empty pages before later records: look a few
                // pages further before calling the shard drained for this round.
                empty_pages += 1;
                if empty_pages >= MAX_EMPTY_PAGES {
                    break;
                }
                iterator = out.next_shard_iterator;
                continue;
            }
            empty_pages = 0;
            let mut event = Event::default();
            event.records = records.into_iter().map(event_record).collect();
            let response = crate::events::billing::bill(self.store.as_ref(), &event).await?;
            let failed = response
                .batch_item_failures
                .first()
                .and_then(|f| f.item_identifier.clone());
            let mut done = match &failed {
                None => event.records.len(),
                Some(sequence) => event
                    .records
                    .iter()
                    .position(|r| r.change.sequence_number.as_ref() == Some(sequence))
                    .context("billing reported a record that is not in the batch")?,
            };
            // Webhooks' events of what was billed; a failure leaves the batch to come again
            // (billing and fan-out both take a record twice as once).
            let mut failed = failed;
            if let Some(deliveries) = &self.deliveries {
                let mut billed = Event::default();
                billed.records = event.records[..done].to_vec();
                let fanned = crate::events::webhooks::fan_out(
                    self.store.as_ref(),
                    deliveries.as_ref(),
                    &billed,
                )
                .await?;
                if let Some(first) = fanned.batch_item_failures.first() {
                    done = billed
                        .records
                        .iter()
                        .position(|r| r.change.sequence_number == first.item_identifier)
                        .unwrap_or(0);
                    failed = failed.or(first.item_identifier.clone());
                }
            }
            // Activity counts of what was billed and fanned out, as the stats function counts
            // them in AWS; a failure leaves the batch to come again (a record counted twice is
            // counted once).
            let mut counted = Event::default();
            counted.records = event.records[..done].to_vec();
            let response = crate::events::stats::count(self.store.as_ref(), &counted).await?;
            if let Some(first) = response.batch_item_failures.first() {
                done = counted
                    .records
                    .iter()
                    .position(|r| r.change.sequence_number == first.item_identifier)
                    .unwrap_or(0);
                failed = failed.or(first.item_identifier.clone());
            }
            if let Some(last) = done
                .checked_sub(1)
                .and_then(|i| event.records[i].change.sequence_number.as_deref())
            {
                self.store
                    .save_stream_checkpoint(stream_arn, shard_id, last)
                    .await?;
            }
            handed += done;
            if let Some(sequence) = failed {
                anyhow::bail!("billing stopped at record {sequence}; it will be retried");
            }
            iterator = out.next_shard_iterator;
        }
        Ok(handed)
    }
}

/// Shard ids ordered so that each comes after its parent (when the parent is listed).
fn parents_first(mut shards: Vec<(String, Option<String>)>) -> Vec<String> {
    let mut ordered: Vec<String> = Vec::with_capacity(shards.len());
    while !shards.is_empty() {
        let before = shards.len();
        let known: std::collections::HashSet<String> =
            shards.iter().map(|(id, _)| id.clone()).collect();
        let (ready, waiting): (Vec<_>, Vec<_>) = shards
            .into_iter()
            .partition(|(_, parent)| parent.as_ref().is_none_or(|p| !known.contains(p)));
        ordered.extend(ready.into_iter().map(|(id, _)| id));
        shards = waiting;
        if shards.len() == before {
            // A cycle cannot happen in DynamoDB; never loop on bad data.
            ordered.extend(shards.drain(..).map(|(id, _)| id));
        }
    }
    ordered
}

/// A record as the event source mapping hands it to Lambda.
pub fn event_record(record: Record) -> EventRecord {
    let mut change = StreamRecord::default();
    if let Some(stream) = record.dynamodb {
        if let Some(at) = stream.approximate_creation_date_time {
            change.approximate_creation_date_time =
                chrono::DateTime::from_timestamp(at.secs(), at.subsec_nanos()).unwrap_or_default();
        }
        change.keys = stream.keys.unwrap_or_default().into();
        change.new_image = stream.new_image.unwrap_or_default().into();
        change.old_image = stream.old_image.unwrap_or_default().into();
        change.sequence_number = stream.sequence_number;
        change.size_bytes = stream.size_bytes.unwrap_or_default();
        change.stream_view_type = Some(StreamViewType::NewAndOldImages);
    }
    let mut event = EventRecord::default();
    event.change = change;
    event.aws_region = record.aws_region.unwrap_or_default();
    event.event_id = record.event_id.unwrap_or_default();
    event.event_name = record
        .event_name
        .map(|n| n.as_str().to_string())
        .unwrap_or_default();
    event.event_source = record.event_source;
    event.event_version = record.event_version;
    event.user_identity = record.user_identity.map(|i| {
        let mut identity = UserIdentity::default();
        identity.type_ = i.r#type.unwrap_or_default();
        identity.principal_id = i.principal_id.unwrap_or_default();
        identity
    });
    event
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_come_after_their_parents_whatever_the_listing_order() {
        let shard = |id: &str, parent: Option<&str>| (id.to_string(), parent.map(str::to_string));
        let ordered = parents_first(vec![
            shard("c2", Some("b")),
            shard("b", Some("a")),
            shard("c1", Some("b")),
            shard("a", Some("trimmed-away")),
            shard("x", None),
        ]);
        let at = |id: &str| ordered.iter().position(|s| s == id).unwrap();
        assert_eq!(ordered.len(), 5);
        assert!(at("a") < at("b") && at("b") < at("c1") && at("b") < at("c2"));
    }
}
