//! Checking custom keys against the store: which keys of a paste exist already, anywhere.
//! The one place where a paste meets the keys already stored; every path that adds custom keys
//! (a paste answered at once, an import) checks through it. Keys that another organization
//! holds are spent from the organization's collision budget before anything is answered about
//! them.

use std::collections::HashSet;

use crate::domain::Pool;
use crate::error::{Error, ErrorCode, Result};
use crate::identity::OrgId;
use crate::keys::KeyCode;
use crate::ops::limits::CollisionBudget;
use crate::ops::paste::{CheckedPaste, RejectedLine, Rejections};
use crate::ops::pools;
use crate::settings::Settings;
use crate::store::{Counters, Keys, Pools};
use crate::time::Timestamp;

/// Keys looked up per round when a paste is checked against the keys already stored.
pub const CHECK_CHUNK: usize = 1_000;

/// The pool that custom keys go to and the organization's collision budget, read together;
/// refused when the pool is not the organization's or the budget is spent.
pub async fn pool_and_budget<S: Pools + Counters + ?Sized>(
    store: &S,
    settings: &Settings,
    org: &OrgId,
    pool_id: &str,
    now: Timestamp,
) -> Result<(Pool, CollisionBudget)> {
    tokio::try_join!(
        pools::get_pool(store, org, pool_id),
        CollisionBudget::read(store, settings, org, now)
    )
}

/// Rejects the lines of `paste` whose keys exist already, anywhere, into `rejections`, in
/// rounds of `CHECK_CHUNK` keys; returns the lines rejected.
pub async fn reject_existing<S: Keys + Counters + ?Sized>(
    store: &S,
    budget: &mut CollisionBudget,
    org: &OrgId,
    paste: &CheckedPaste,
    rejections: &mut Rejections,
) -> Result<Vec<usize>> {
    let mut taken = Vec::new();
    for index in 0..paste.chunk_count(CHECK_CHUNK) {
        let chunk = paste.chunk(index, CHECK_CHUNK);
        taken.extend(reject_existing_chunk(store, budget, org, chunk, rejections).await?);
    }
    Ok(taken)
}

/// One round of `reject_existing`.
async fn reject_existing_chunk<S: Keys + Counters + ?Sized>(
    store: &S,
    budget: &mut CollisionBudget,
    org: &OrgId,
    keys: Vec<(usize, KeyCode)>,
    rejections: &mut Rejections,
) -> Result<Vec<usize>> {
    let codes: Vec<KeyCode> = keys.iter().map(|(_, k)| k.clone()).collect();
    let found = store.existing_keys(&codes).await?;
    let foreign = found
        .iter()
        .filter(|(_, holder)| holder.as_ref() != Some(org))
        .count();
    budget.spend(store, foreign as u64).await?;
    let existing: HashSet<KeyCode> = found.into_iter().map(|(key, _)| key).collect();
    let mut taken = Vec::new();
    for (line, key) in &keys {
        if existing.contains(key) {
            rejections.add(*line, || RejectedLine::already_exists(*line, key));
            taken.push(*line);
        }
    }
    Ok(taken)
}

/// The answer to an all-or-nothing paste with rejected lines: the first thousand, and how
/// many there are.
pub fn rejected_error(rejections: &Rejections) -> Error {
    let n = rejections.count();
    Error::Refused {
        code: ErrorCode::KeysRejected,
        message: format!(
            "{n} key{} rejected; nothing was added (send ?partial=true to add the others)",
            if n == 1 { " was" } else { "s were" }
        ),
        details: Some(serde_json::json!({
            "rejected": rejections.shown(),
            "rejected_count": n,
        })),
    }
}
