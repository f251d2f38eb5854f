//! Transactions, with what DynamoDB says when it cancels one, retried with backoff on
//! conflicts and throttling; and BatchGetItem, retried on unprocessed keys.

use super::*;

impl DynamoStore {
    /// Runs a transaction, retrying with backoff while DynamoDB cancels it only for conflicts
    /// with other transactions or for throttling of its items. Returns the cancellation reason
    /// codes, if it was cancelled. Out of attempts, it answers 409 `write_conflict`, or 503
    /// `store_busy` when the last cancellation was throttling. Throttling of the request as a
    /// whole was retried by the SDK already and is answered 503 at once (see `sdk`).
    pub(super) async fn transact(
        &self,
        items: Vec<TransactWriteItem>,
        what: &'static str,
    ) -> Result<Option<Vec<String>>> {
        let mut delay = Duration::from_millis(5);
        for attempt in 1..=CONFLICT_ATTEMPTS {
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
                .await;
            let err = match result {
                Ok(_) => return Ok(None),
                Err(err) => err,
            };
            let codes = match &err {
                SdkError::ServiceError(service) => match service.err() {
                    TransactWriteItemsError::TransactionCanceledException(c) => Some(
                        c.cancellation_reasons()
                            .iter()
                            .map(|r| r.code().unwrap_or("None").to_string())
                            .collect::<Vec<_>>(),
                    ),
                    TransactWriteItemsError::TransactionInProgressException(_) => Some(Vec::new()),
                    _ => None,
                },
                _ => None,
            };
            let Some(codes) = codes else {
                return Err(sdk(what)(err));
            };
            let decisive = codes
                .iter()
                .any(|c| c != "None" && c != "TransactionConflict" && c != "ThrottlingError");
            if decisive {
                return Ok(Some(codes));
            }
            if attempt == CONFLICT_ATTEMPTS {
                if codes.iter().any(|c| c == "ThrottlingError") {
                    tracing::warn!(what, "DynamoDB throttled a transaction through every retry");
                    return Err(Error::store_busy());
                }
                break;
            }
            // Full jitter keeps racing writers from retrying in lockstep.
            let jitter = u64::from(random_u16()) % (delay.as_millis() as u64 + 1);
            tokio::time::sleep(Duration::from_millis(jitter)).await;
            delay = (delay * 2).min(Duration::from_millis(500));
        }
        Err(Error::write_conflict())
    }

    /// Reads items of the main table by key (strongly consistent), 100 per request, asking
    /// again with backoff for what DynamoDB leaves unprocessed.
    pub(super) async fn batch_get(
        &self,
        keys: Vec<Item>,
        projection: Option<&str>,
        what: &'static str,
    ) -> Result<Vec<Item>> {
        let mut found = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(KEYS_PER_BATCH_GET) {
            let request = KeysAndAttributes::builder()
                .set_keys(Some(chunk.to_vec()))
                .set_projection_expression(projection.map(str::to_string))
                .consistent_read(true)
                .build()
                .context("building a batch read")?;
            let mut pending = Some(request);
            let mut delay = Duration::from_millis(10);
            while let Some(request) = pending.take() {
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.tables.main, request)
                    .send()
                    .await
                    .map_err(sdk(what))?;
                found.extend(
                    out.responses
                        .and_then(|mut r| r.remove(&self.tables.main))
                        .unwrap_or_default(),
                );
                pending = out
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.tables.main))
                    .filter(|k| !k.keys().is_empty());
                if pending.is_some() {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_millis(1000));
                }
            }
        }
        Ok(found)
    }
}

/// The cancellation reason of a transaction's item whose condition did not hold.
pub(super) const CONDITION_FAILED: &str = "ConditionalCheckFailed";

/// True when the transaction item at `index` failed its condition.
pub(super) fn condition_failed(codes: &[String], index: usize) -> bool {
    codes.get(index).is_some_and(|c| c == CONDITION_FAILED)
}

/// Keeps the items whose condition held (to go again) and returns those refused; an error
/// when the cancellation refused none of them (it would go round for ever). `pending` are the
/// transaction's first items, in order.
pub(super) fn retain_unrefused<T: Clone>(
    pending: &mut Vec<T>,
    codes: &[String],
    what: &str,
) -> Result<Vec<T>> {
    let before = pending.len();
    let mut refused = Vec::new();
    let mut i = 0;
    pending.retain(|item| {
        let no = condition_failed(codes, i);
        i += 1;
        if no {
            refused.push(item.clone());
        }
        !no
    });
    if pending.len() == before {
        return Err(anyhow::anyhow!("{what} was cancelled without a reason: {codes:?}").into());
    }
    Ok(refused)
}

fn random_u16() -> u16 {
    let mut b = [0u8; 2];
    // Jitter only; a failing entropy source just means no jitter.
    let _ = getrandom::fill(&mut b);
    u16::from_le_bytes(b)
}
