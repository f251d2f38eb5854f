//! Invoice lines, written in chunks with their months' totals, each line once; reading them
//! back.
//!
//! A chunk is one transaction: a put per line (only if absent) and one ADD per month's totals
//! item that its lines touch, by their sum. A month's totals item is so written once per chunk,
//! not once per line, which is what keeps it from being a hot item under thousands of
//! redemptions a second. A line that exists already (an earlier delivery billed it) cancels the
//! transaction; it is dropped and the rest written again with totals summed anew, so a replay
//! never counts a line twice.

use std::collections::HashSet;

use super::*;
use crate::domain::LineKind;
use crate::store::RecordedLines;

/// Actions in one transaction: DynamoDB's limit.
const ACTIONS_PER_TRANSACTION: usize = 100;

#[async_trait]
impl Ledger for DynamoStore {
    async fn record_invoice_lines(&self, lines: &[InvoiceLine]) -> RecordedLines {
        let mut recorded = RecordedLines::default();
        let mut start = 0;
        while start < lines.len() {
            let chunk = &lines[start..chunk_end(lines, start)];
            match self.record_chunk(chunk).await {
                Ok(new) => recorded.settled.extend(new),
                Err(e) => {
                    recorded.failure = Some(e);
                    break;
                }
            }
            start += chunk.len();
        }
        recorded
    }
}

/// Where the chunk that starts at `start` ends: as many lines as fit one transaction with the
/// totals items they touch. A line repeated within the chunk takes no action of its own.
fn chunk_end(lines: &[InvoiceLine], start: usize) -> usize {
    let mut keys = HashSet::new();
    let mut totals = HashSet::new();
    for (i, line) in lines.iter().enumerate().skip(start) {
        let key = line_key(line);
        if keys.contains(&key) {
            continue;
        }
        let new_totals = usize::from(!totals.contains(&key.0));
        if keys.len() + 1 + totals.len() + new_totals > ACTIONS_PER_TRANSACTION {
            return i;
        }
        totals.insert(key.0.clone());
        keys.insert(key);
    }
    lines.len()
}

/// A line's item key: its month's partition (which is also where its totals are) and its own.
fn line_key(line: &InvoiceLine) -> (String, String) {
    (
        schema::invoice_pk(&line.org, line.month),
        schema::invoice_line_sk(&line.assignment_id, line.kind),
    )
}

impl DynamoStore {
    /// Writes one chunk of lines, each once, with their totals; per line, whether it was new.
    async fn record_chunk(&self, chunk: &[InvoiceLine]) -> Result<Vec<bool>> {
        let mut new = vec![false; chunk.len()];
        // The first of each line in the chunk: DynamoDB refuses two actions on one item, and
        // the same record may well come twice in one batch.
        let mut seen = HashSet::new();
        let mut pending: Vec<usize> = (0..chunk.len())
            .filter(|&i| seen.insert(line_key(&chunk[i])))
            .collect();
        // Each round either writes every pending line or drops at least one that exists.
        while !pending.is_empty() {
            let mut items = Vec::with_capacity(pending.len() + 1);
            let mut totals: BTreeMap<String, (u64, u64)> = BTreeMap::new();
            for &i in &pending {
                let line = &chunk[i];
                let (pk, sk) = line_key(line);
                let counts = totals.entry(pk.clone()).or_default();
                match line.kind {
                    LineKind::Redemption => counts.0 += 1,
                    LineKind::Credit => counts.1 += 1,
                }
                let put = Put::builder()
                    .table_name(&self.tables.main)
                    .set_item(Some(to_item(line, pk, sk, "invoice_line")?))
                    .condition_expression("attribute_not_exists(PK)")
                    .build()
                    .context("building an invoice line put")?;
                items.push(TransactWriteItem::builder().put(put).build());
            }
            for (pk, (redemptions, credits)) in totals {
                items.push(
                    TransactWriteItem::builder()
                        .update(self.totals_update(pk, redemptions, credits)?)
                        .build(),
                );
            }
            let actions = items.len();
            let Some(codes) = self.transact(items, "recording invoice lines").await? else {
                for &i in &pending {
                    new[i] = true;
                }
                break;
            };
            let billed_already = |c: &String| c == CONDITION_FAILED;
            let retryable = |c: &String| {
                matches!(
                    c.as_str(),
                    "None" | "TransactionConflict" | "ThrottlingError"
                )
            };
            let understood = codes.len() == actions
                && codes[..pending.len()].iter().any(billed_already)
                && codes[..pending.len()]
                    .iter()
                    .all(|c| billed_already(c) || retryable(c))
                && codes[pending.len()..].iter().all(retryable);
            if !understood {
                return Err(anyhow::anyhow!(
                    "invoice lines refused for an unexpected reason: {codes:?}"
                )
                .into());
            }
            // Those lines are there: an earlier delivery of their records billed them.
            pending = pending
                .iter()
                .zip(&codes)
                .filter(|&(_, c)| !billed_already(c))
                .map(|(&i, _)| i)
                .collect();
        }
        Ok(new)
    }

    /// Adds a chunk's new lines to their month's totals (and creates the item if need be).
    fn totals_update(&self, pk: String, redemptions: u64, credits: u64) -> Result<Update> {
        let mut update = Update::builder()
            .table_name(&self.tables.main)
            .set_key(Some(key_of(pk, schema::INVOICE_TOTALS_SK)))
            .expression_attribute_names("#entity", ENTITY)
            .expression_attribute_values(":entity", s("invoice_totals"));
        let mut adds = Vec::new();
        for (counter, count) in [("redemptions", redemptions), ("credits", credits)] {
            if count > 0 {
                adds.push(format!("#{counter} :{counter}"));
                update = update
                    .expression_attribute_names(format!("#{counter}"), counter)
                    .expression_attribute_values(format!(":{counter}"), n(count));
            }
        }
        Ok(update
            .update_expression(format!("SET #entity = :entity ADD {}", adds.join(", ")))
            .build()
            .context("building the invoice totals update")?)
    }
}

#[async_trait]
impl Invoices for DynamoStore {
    async fn invoice_totals(&self, org: &OrgId, month: Month) -> Result<InvoiceTotals> {
        let item = self
            .get(
                &self.tables.main,
                key_of(schema::invoice_pk(org, month), schema::INVOICE_TOTALS_SK),
                "reading invoice totals",
            )
            .await?;
        let count = |name: &str| {
            item.as_ref()
                .and_then(|i| match i.get(name) {
                    Some(AttributeValue::N(v)) => v.parse().ok(),
                    _ => None,
                })
                .unwrap_or(0)
        };
        Ok(InvoiceTotals {
            redemptions: count("redemptions"),
            credits: count("credits"),
        })
    }

    async fn list_invoice_lines(
        &self,
        org: &OrgId,
        month: Month,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<InvoiceLine>> {
        let pk = schema::invoice_pk(org, month);
        let start = decode_cursor(cursor, &[(SK, schema::INVOICE_LINE_SK_PREFIX)])?.map(|mut k| {
            k.insert(PK.into(), s(pk.clone()));
            k
        });
        let query = self
            .client
            .query()
            .table_name(&self.tables.main)
            .key_condition_expression("PK = :pk AND begins_with(SK, :prefix)")
            .expression_attribute_values(":pk", s(pk.clone()))
            .expression_attribute_values(":prefix", s(schema::INVOICE_LINE_SK_PREFIX))
            .consistent_read(true);
        let (items, next_cursor) = self
            .collect(Listing {
                query,
                start,
                limit,
                filtered: false,
                cursor_attrs: &[SK],
                what: "listing invoice lines",
            })
            .await?;
        page_of(items, next_cursor, "invoice line")
    }
}
