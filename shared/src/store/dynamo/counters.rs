//! Sliding-window counters: one item per counter, changed by conditional updates only, and
//! expiring by TTL once it no longer counts.

use super::*;
use crate::domain::{Condition, Counter, CounterId, Step};

const WINDOW: &str = "#w";
const COUNT: &str = "#c";
const PREVIOUS: &str = "#p";

/// A counter condition's expression and its values.
pub(super) struct Parts {
    pub expression: String,
    pub values: Vec<(String, AttributeValue)>,
}

/// The attribute name placeholders that the expressions use (DynamoDB refuses unused ones).
pub(super) fn names_in(expressions: &[&str]) -> Vec<(&'static str, &'static str)> {
    [(WINDOW, "window"), (COUNT, "count"), (PREVIOUS, "previous")]
        .into_iter()
        .filter(|(placeholder, _)| expressions.iter().any(|e| e.contains(placeholder)))
        .collect()
}

/// A counter condition as a condition expression, its placeholders prefixed by `tag` so that
/// several fit in one request.
pub(super) fn condition_parts(condition: &Condition, tag: &str) -> Parts {
    let v = |name: &str| format!(":{tag}{name}");
    match *condition {
        // A damaged item (no readable window) counts as absent, and is replaced.
        Condition::Absent => Parts {
            expression: format!(
                "attribute_not_exists(PK) OR NOT attribute_type({WINDOW}, {})",
                v("number")
            ),
            values: vec![(v("number"), s("N"))],
        },
        Condition::Equals(c) => Parts {
            expression: format!(
                "{WINDOW} = {} AND {COUNT} = {} AND {PREVIOUS} = {}",
                v("w"),
                v("c"),
                v("p")
            ),
            values: vec![
                (v("w"), n(c.window)),
                (v("c"), n(c.count)),
                (v("p"), n(c.previous)),
            ],
        },
        Condition::Quiet {
            previous,
            count_below,
        } => Parts {
            expression: format!(
                "attribute_not_exists(PK) OR NOT attribute_type({WINDOW}, {number}) \
                 OR {WINDOW} < {p} OR ({WINDOW} = {p} AND {COUNT} < {below})",
                number = v("number"),
                p = v("p"),
                below = v("below"),
            ),
            values: vec![
                (v("number"), s("N")),
                (v("p"), n(previous)),
                (v("below"), n(count_below)),
            ],
        },
        Condition::Below {
            window,
            count_below,
        } => Parts {
            expression: format!("{WINDOW} = {} AND {COUNT} < {}", v("w"), v("below")),
            values: vec![(v("w"), n(window)), (v("below"), n(count_below))],
        },
    }
}

/// The key of a counter's item.
pub(super) fn counter_key(id: &CounterId) -> Item {
    key_of(schema::counter_pk(id), schema::COUNTER_SK)
}

#[async_trait]
impl Counters for DynamoStore {
    async fn counters(&self, ids: &[CounterId]) -> Result<Vec<Option<Counter>>> {
        let keys = ids.iter().map(counter_key).collect();
        let items = self.batch_get(keys, None, "reading counters").await?;
        Ok(counters_in(items, ids))
    }

    async fn keys_and_counters(
        &self,
        candidates: &[KeyCode],
        ids: &[CounterId],
    ) -> Result<(Vec<Option<KeyRecord>>, Vec<Option<Counter>>)> {
        let keys = candidates
            .iter()
            .map(|k| key_of(schema::key_pk(k), schema::KEY_SK))
            .chain(ids.iter().map(counter_key))
            .collect();
        let items = self
            .batch_get(keys, None, "reading a key and its counters")
            .await?;
        let (key_items, counter_items): (Vec<Item>, Vec<Item>) = items.into_iter().partition(|i| {
            attr_string(i, PK).is_some_and(|pk| pk.starts_with(schema::KEY_PK_PREFIX))
        });
        let mut records: HashMap<String, KeyRecord> = HashMap::new();
        for item in key_items {
            if let Some(pk) = attr_string(&item, PK) {
                records.insert(pk, from_item(item, "key")?);
            }
        }
        let found = candidates
            .iter()
            .map(|k| records.remove(&schema::key_pk(k)))
            .collect();
        Ok((found, counters_in(counter_items, ids)))
    }

    async fn step_counter(
        &self,
        id: &CounterId,
        step: &Step,
        expires_at: Timestamp,
    ) -> Result<bool> {
        let condition = condition_parts(&step.condition(), "");
        let condition_expression = condition.expression;
        let update_expression = match step {
            Step::Add { .. } => format!("SET #entity = :entity, #ttl = :ttl ADD {COUNT} :amount"),
            Step::Replace { .. } => format!(
                "SET #entity = :entity, #ttl = :ttl, {WINDOW} = :nw, {COUNT} = :nc, \
                 {PREVIOUS} = :np"
            ),
        };
        let mut request = self
            .client
            .update_item()
            .table_name(&self.tables.main)
            .set_key(Some(counter_key(id)))
            .update_expression(&update_expression)
            .expression_attribute_names("#entity", ENTITY)
            .expression_attribute_names("#ttl", schema::TTL)
            .expression_attribute_values(":entity", s("counter"))
            .expression_attribute_values(":ttl", n(expires_at.timestamp()));
        for (placeholder, name) in names_in(&[&update_expression, &condition_expression]) {
            request = request.expression_attribute_names(placeholder, name);
        }
        request = match *step {
            Step::Add { amount, .. } => request.expression_attribute_values(":amount", n(amount)),
            Step::Replace { next, .. } => request
                .expression_attribute_values(":nw", n(next.window))
                .expression_attribute_values(":nc", n(next.count))
                .expression_attribute_values(":np", n(next.previous)),
        };
        for (name, value) in condition.values {
            request = request.expression_attribute_values(name, value);
        }
        let sent = request.condition_expression(condition_expression).send();
        Ok(conditional(sent, "counting").await?.is_some())
    }
}

/// The counters among `items`, in the order of `ids`; `None` for one absent or unreadable.
fn counters_in(items: Vec<Item>, ids: &[CounterId]) -> Vec<Option<Counter>> {
    let mut by_pk: HashMap<String, Counter> = HashMap::new();
    for item in items {
        let Some(pk) = attr_string(&item, PK) else {
            continue;
        };
        match serde_dynamo::from_item::<_, Counter>(item) {
            Ok(counter) => {
                by_pk.insert(pk, counter);
            }
            // A damaged counter counts as none; the next step replaces it.
            Err(e) => tracing::error!(pk, error = %e, "skipped an unreadable counter"),
        }
    }
    ids.iter()
        .map(|id| by_pk.get(&schema::counter_pk(id)).copied())
        .collect()
}
