//! Adding custom keys: typed one by one or pasted one per line, each line checked, all or
//! nothing unless partial.

use std::collections::HashSet;

use serde::Serialize;

pub use super::paste::{CheckedPaste, MAX_REJECTED_SHOWN, RejectedLine, Rejections};
use super::pools;
use crate::domain::{KeySource, NewKey};
use crate::error::{Error, ErrorCode, Result};
use crate::identity::OrgId;
use crate::jobs::Jobs;
use crate::keys::KeyCode;
use crate::ops::limits::CollisionBudget;
use crate::settings::Settings;
use crate::store::{Counters, KeyJobs, Keys, Pools};
use crate::time::Timestamp;

/// Most keys one request may add or generate synchronously.
pub const MAX_SYNC_KEYS: usize = 10_000;
/// Keys looked up per round when a paste is checked against the keys already stored.
pub const CHECK_CHUNK: usize = 1_000;

/// What an add of custom keys did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AddReport {
    /// Keys added, as shown to learners.
    pub added: Vec<String>,
    /// The first `MAX_REJECTED_SHOWN` lines not added, in line order.
    pub rejected: Vec<RejectedLine>,
    /// How many lines were not added in all.
    pub rejected_count: usize,
}

/// Drops from `keys` those that exist already, anywhere, and rejects their lines; returns the
/// lines dropped. The one place where a paste meets the keys already stored: every path (a
/// paste, an import) calls it once per chunk of at most `CHECK_CHUNK` keys. Keys that another
/// organization holds are spent from the organization's collision budget before anything is
/// answered about them.
pub async fn reject_existing<S: Keys + Counters + ?Sized>(
    store: &S,
    budget: &mut CollisionBudget,
    org: &OrgId,
    keys: &mut Vec<(usize, KeyCode)>,
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
    if existing.is_empty() {
        return Ok(taken);
    }
    keys.retain(|(line, key)| {
        if !existing.contains(key) {
            return true;
        }
        rejections.add(*line, || RejectedLine::already_exists(*line, key));
        taken.push(*line);
        false
    });
    Ok(taken)
}

/// The answer to an all-or-nothing paste with rejected lines: the first thousand, and how
/// many there are.
pub(crate) fn rejected_error(rejections: &Rejections) -> Error {
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

/// Adds custom keys to a pool: all or nothing unless `partial` (across a crash too: see
/// `import`), with a reason for every line that cannot be added.
#[allow(clippy::too_many_arguments)] // the request, its limits, where a recovery goes, the time
pub async fn add_custom_keys<S: Pools + Keys + KeyJobs + Counters + ?Sized>(
    store: &S,
    settings: &Settings,
    jobs: &dyn Jobs,
    org: &OrgId,
    pool_id: &str,
    paste: &CheckedPaste,
    partial: bool,
    now: Timestamp,
) -> Result<AddReport> {
    let (pool, mut budget) = tokio::try_join!(
        pools::get_pool(store, org, pool_id),
        CollisionBudget::read(store, settings, org, now)
    )?;
    if paste.is_empty() {
        return Err(Error::refused(
            ErrorCode::NoKeys,
            "the request holds no keys",
        ));
    }
    if paste.len() > MAX_SYNC_KEYS {
        // The routes send longer lists to an import job: this is a caller's mistake.
        return Err(
            anyhow::anyhow!("at most {MAX_SYNC_KEYS} keys per request; split the list").into(),
        );
    }
    let mut rejections = paste.rejections().clone();
    let mut valid = Vec::with_capacity(paste.valid_count());
    for index in 0..paste.chunk_count(CHECK_CHUNK) {
        let mut chunk = paste.chunk(index, CHECK_CHUNK);
        reject_existing(store, &mut budget, org, &mut chunk, &mut rejections).await?;
        valid.extend(chunk);
    }
    if !rejections.is_empty() && !partial {
        return Err(rejected_error(&rejections));
    }
    if !partial {
        let keys: Vec<KeyCode> = valid.iter().map(|(_, k)| k.clone()).collect();
        let pasted = super::import::paste_all_or_nothing(store, jobs, &pool, &keys, now).await?;
        if let Err(taken) = pasted {
            // Another request took these keys between our check and our write.
            let taken: HashSet<&KeyCode> = taken.iter().collect();
            for (line, key) in &valid {
                if taken.contains(key) {
                    rejections.add(*line, || RejectedLine::already_exists(*line, key));
                }
            }
            return Err(rejected_error(&rejections));
        }
        return Ok(AddReport {
            added: keys.iter().map(KeyCode::display_form).collect(),
            rejected: Vec::new(),
            rejected_count: 0,
        });
    }
    let new_keys: Vec<NewKey> = valid
        .iter()
        .map(|(_, key)| NewKey {
            key: key.clone(),
            source: KeySource::Custom,
        })
        .collect();
    let outcome = store.insert_keys(&pool, &new_keys, now).await?;
    // Another request took these keys between our check and our write.
    let taken: HashSet<&KeyCode> = outcome.taken.iter().collect();
    for (line, key) in &valid {
        if taken.contains(key) {
            rejections.add(*line, || RejectedLine::already_exists(*line, key));
        }
    }
    Ok(AddReport {
        added: outcome.inserted.iter().map(KeyCode::display_form).collect(),
        rejected: rejections.shown(),
        rejected_count: rejections.count(),
    })
}
