//! Activity counts from the assignments stream: per pool and UTC day, per pool in all, per
//! organization and UTC month; each activity counted once.
//!
//! A chunk of activities is one transaction: a marker per activity (`STATSMARK#assignment` /
//! the happening), put only if absent, and one ADD per counter item that the chunk's
//! activities touch, by their sum. A marker that exists already (an earlier delivery counted
//! it) cancels the transaction; its activity is dropped and the rest written again with their
//! sums taken anew, so a replayed record never counts twice. As with invoice totals, a day's
//! item is written once per chunk, not once per activity.

use std::collections::HashSet;

use chrono::NaiveDate;

use super::*;
use crate::domain::{Activity, DayCounts, Happening, MonthCounts, PoolTotals};
use crate::store::{ActivityCounts, Settled, Stats};

/// Actions in one transaction: DynamoDB's limit.
const ACTIONS_PER_TRANSACTION: usize = 100;

/// How long a marker is kept after its activity: far beyond the 24 hours for which the stream
/// holds a record, and so any redelivery of it.
const MARKER_DAYS: i64 = 90;

/// A counter item's key.
type ItemKey = (String, String);

#[async_trait]
impl ActivityCounts for DynamoStore {
    async fn count_activities(&self, activities: &[Activity]) -> Settled {
        let mut settled = Settled::default();
        let mut start = 0;
        while start < activities.len() {
            let chunk = &activities[start..chunk_end(activities, start)];
            match self.count_chunk(chunk).await {
                Ok(new) => settled.settled.extend(new),
                Err(e) => {
                    settled.failure = Some(e);
                    break;
                }
            }
            start += chunk.len();
        }
        settled
    }
}

/// The marker's key of an activity.
fn marker_key(activity: &Activity) -> ItemKey {
    (
        schema::stats_mark_pk(&activity.assignment_id),
        schema::stats_mark_sk(activity.happening),
    )
}

/// What an activity adds, to which counter item: (item, entity, field).
fn additions(activity: &Activity) -> Vec<(ItemKey, &'static str, &'static str)> {
    let day = (
        schema::pool_stats_pk(&activity.pool_id),
        schema::stats_day_sk(activity.day()),
    );
    let totals = (
        schema::pool_stats_pk(&activity.pool_id),
        schema::POOL_STATS_TOTALS_SK.to_string(),
    );
    let month = (
        schema::org_stats_pk(&activity.org),
        schema::stats_month_sk(activity.month()),
    );
    match activity.happening {
        Happening::Redeemed => vec![
            (day, "pool_day", "redeemed"),
            (month, "org_month", "redeemed"),
        ],
        Happening::Cancelled => vec![
            (day, "pool_day", "cancelled"),
            (month, "org_month", "cancelled"),
        ],
        Happening::Launched(n) => {
            let mut adds = vec![
                (day, "pool_day", "launched"),
                (totals.clone(), "pool_stats", "launches"),
            ];
            if n == 1 {
                adds.push((totals, "pool_stats", "launched_assignments"));
            }
            adds
        }
    }
}

/// Where the chunk that starts at `start` ends: as many activities as fit one transaction with
/// the counter items they touch. An activity repeated within the chunk takes no action.
fn chunk_end(activities: &[Activity], start: usize) -> usize {
    let mut markers = HashSet::new();
    let mut counters = HashSet::new();
    for (i, activity) in activities.iter().enumerate().skip(start) {
        let marker = marker_key(activity);
        if markers.contains(&marker) {
            continue;
        }
        let items: HashSet<ItemKey> = additions(activity).into_iter().map(|a| a.0).collect();
        let new_counters = items.difference(&counters).count();
        if markers.len() + 1 + counters.len() + new_counters > ACTIONS_PER_TRANSACTION {
            return i;
        }
        counters.extend(items);
        markers.insert(marker);
    }
    activities.len()
}

impl DynamoStore {
    /// Counts one chunk of activities, each once; per activity, whether it was new.
    async fn count_chunk(&self, chunk: &[Activity]) -> Result<Vec<bool>> {
        let mut new = vec![false; chunk.len()];
        // The first of each activity in the chunk: DynamoDB refuses two actions on one item,
        // and the same record may well come twice in one batch.
        let mut seen = HashSet::new();
        let mut pending: Vec<usize> = (0..chunk.len())
            .filter(|&i| seen.insert(marker_key(&chunk[i])))
            .collect();
        // Each round either counts every pending activity or drops at least one counted before.
        while !pending.is_empty() {
            let mut items = Vec::with_capacity(pending.len() + 8);
            let mut sums: BTreeMap<ItemKey, (&'static str, BTreeMap<&'static str, u64>)> =
                BTreeMap::new();
            for &i in &pending {
                let activity = &chunk[i];
                let (pk, sk) = marker_key(activity);
                let expires = activity.at + chrono::Duration::days(MARKER_DAYS);
                let mut marker = key_of(pk, sk);
                marker.insert(ENTITY.into(), s("stats_mark"));
                marker.insert("at".into(), ts(&activity.at));
                marker.insert(schema::TTL.into(), n(expires.timestamp()));
                let put = Put::builder()
                    .table_name(&self.tables.main)
                    .set_item(Some(marker))
                    .condition_expression("attribute_not_exists(PK)")
                    .build()
                    .context("building an activity marker put")?;
                items.push(TransactWriteItem::builder().put(put).build());
                for (key, entity, field) in additions(activity) {
                    *sums
                        .entry(key)
                        .or_insert_with(|| (entity, BTreeMap::new()))
                        .1
                        .entry(field)
                        .or_default() += 1;
                }
            }
            for ((pk, sk), (entity, fields)) in sums {
                items.push(
                    TransactWriteItem::builder()
                        .update(self.counts_update(pk, sk, entity, &fields)?)
                        .build(),
                );
            }
            let actions = items.len();
            let Some(codes) = self.transact(items, "counting activities").await? else {
                for &i in &pending {
                    new[i] = true;
                }
                break;
            };
            let counted_already = |c: &String| c == CONDITION_FAILED;
            let retryable = |c: &String| {
                matches!(
                    c.as_str(),
                    "None" | "TransactionConflict" | "ThrottlingError"
                )
            };
            let understood = codes.len() == actions
                && codes[..pending.len()].iter().any(counted_already)
                && codes[..pending.len()]
                    .iter()
                    .all(|c| counted_already(c) || retryable(c))
                && codes[pending.len()..].iter().all(retryable);
            if !understood {
                return Err(anyhow::anyhow!(
                    "activity counts refused for an unexpected reason: {codes:?}"
                )
                .into());
            }
            // Those activities are counted: an earlier delivery of their records did it.
            pending = pending
                .iter()
                .zip(&codes)
                .filter(|&(_, c)| !counted_already(c))
                .map(|(&i, _)| i)
                .collect();
        }
        Ok(new)
    }

    /// Adds a chunk's new activities to one counter item (and creates it if need be).
    fn counts_update(
        &self,
        pk: String,
        sk: String,
        entity: &str,
        fields: &BTreeMap<&'static str, u64>,
    ) -> Result<Update> {
        let mut update = Update::builder()
            .table_name(&self.tables.main)
            .set_key(Some(key_of(pk, sk)))
            .expression_attribute_names("#entity", ENTITY)
            .expression_attribute_values(":entity", s(entity));
        let mut adds = Vec::new();
        for (field, count) in fields {
            adds.push(format!("#{field} :{field}"));
            update = update
                .expression_attribute_names(format!("#{field}"), *field)
                .expression_attribute_values(format!(":{field}"), n(count));
        }
        Ok(update
            .update_expression(format!("SET #entity = :entity ADD {}", adds.join(", ")))
            .build()
            .context("building an activity count update")?)
    }

    /// Every item of a partition whose sort key lies between `from` and `to` (both included),
    /// in sort key order (strongly consistent).
    async fn range(
        &self,
        pk: String,
        from: String,
        to: String,
        what: &'static str,
    ) -> Result<Vec<Item>> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.tables.main)
                .key_condition_expression("PK = :pk AND SK BETWEEN :from AND :to")
                .expression_attribute_values(":pk", s(pk.clone()))
                .expression_attribute_values(":from", s(from.clone()))
                .expression_attribute_values(":to", s(to.clone()))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(sdk(what))?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        Ok(items)
    }
}

/// A counter of an item; 0 when absent.
fn count(item: &Item, name: &str) -> u64 {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v.parse().unwrap_or(0),
        _ => 0,
    }
}

#[async_trait]
impl Stats for DynamoStore {
    async fn pool_days(
        &self,
        pool_id: &PoolId,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<DayCounts>> {
        let items = self
            .range(
                schema::pool_stats_pk(pool_id),
                schema::stats_day_sk(from),
                schema::stats_day_sk(to),
                "reading a pool's days",
            )
            .await?;
        Ok(items
            .iter()
            .filter_map(|item| {
                let sk = attr_string(item, SK)?;
                let date = sk
                    .strip_prefix("DAY#")
                    .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
                let Some(date) = date else {
                    skipped(item, "pool_day", "its sort key is not a day");
                    return None;
                };
                Some(DayCounts {
                    date,
                    redeemed: count(item, "redeemed"),
                    launched: count(item, "launched"),
                    cancelled: count(item, "cancelled"),
                })
            })
            .collect())
    }

    async fn pool_totals(&self, pool_id: &PoolId) -> Result<PoolTotals> {
        let item = self
            .get(
                &self.tables.main,
                key_of(schema::pool_stats_pk(pool_id), schema::POOL_STATS_TOTALS_SK),
                "reading a pool's activity totals",
            )
            .await?;
        Ok(item.map_or_else(PoolTotals::default, |item| PoolTotals {
            launched_assignments: count(&item, "launched_assignments"),
            launches: count(&item, "launches"),
        }))
    }

    async fn month_counts(&self, org: &OrgId, from: Month, to: Month) -> Result<Vec<MonthCounts>> {
        let items = self
            .range(
                schema::org_stats_pk(org),
                schema::stats_month_sk(from),
                schema::stats_month_sk(to),
                "reading an organization's months",
            )
            .await?;
        Ok(items
            .iter()
            .filter_map(|item| {
                let sk = attr_string(item, SK)?;
                let Some(month) = sk.strip_prefix("MONTH#").and_then(Month::parse) else {
                    skipped(item, "org_month", "its sort key is not a month");
                    return None;
                };
                Some(MonthCounts {
                    month,
                    redeemed: count(item, "redeemed"),
                    cancelled: count(item, "cancelled"),
                })
            })
            .collect())
    }
}
