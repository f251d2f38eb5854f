//! Adding custom keys in a request: typed one by one or pasted one per line, each line
//! checked, all or nothing unless partial. Longer lists are imports (`key_jobs::import`).

use std::collections::HashSet;

use serde::Serialize;

pub use super::key_jobs::MAX_SYNC_KEYS;
use super::key_jobs::{all_or_nothing, checks};
use super::open_jobs::JobContext;
pub use super::paste::{CheckedPaste, MAX_REJECTED_SHOWN, RejectedLine, Rejections};
use crate::domain::{AuditAction, Caller, NewKey, Resource, Summary};
use crate::error::{Error, ErrorCode, Result};
use crate::keys::KeyCode;
use crate::settings::Settings;
use crate::store::{Counters, KeyJobs, Keys, Pools};

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

/// Adds custom keys to a pool: all or nothing unless `partial` (across a crash too: see
/// `key_jobs::all_or_nothing`), with a reason for every line that cannot be added.
pub async fn add_custom_keys<S: Pools + Keys + KeyJobs + Counters + ?Sized>(
    cx: &JobContext<'_, S>,
    settings: &Settings,
    caller: &Caller,
    pool_id: &str,
    paste: &CheckedPaste,
    partial: bool,
) -> Result<AddReport> {
    let (store, now, org) = (cx.store, cx.clock.now(), &caller.org);
    let (pool, mut budget) = checks::pool_and_budget(store, settings, org, pool_id, now).await?;
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
    let taken = checks::reject_existing(store, &mut budget, org, paste, &mut rejections).await?;
    if !rejections.is_empty() && !partial {
        return Err(checks::rejected_error(&rejections));
    }
    let taken: HashSet<usize> = taken.into_iter().collect();
    let mut valid = paste.valid();
    valid.retain(|(line, _)| !taken.contains(line));
    let action = match paste.len() {
        1 => AuditAction::KeyAdded,
        _ => AuditAction::KeysPasted,
    };
    let record = caller.record(
        action,
        Resource::new("pool", pool.pool_id),
        Summary::new()
            .with("lines", paste.len())
            .with("keys", valid.len())
            .with("partial", partial),
        now,
    );
    if !partial {
        let keys: Vec<KeyCode> = valid.iter().map(|(_, k)| k.clone()).collect();
        let pasted = all_or_nothing::paste(store, cx.jobs, &pool, &keys, now, &record).await?;
        if let Err(taken) = pasted {
            reject_taken(&valid, &taken, &mut rejections);
            return Err(checks::rejected_error(&rejections));
        }
        return Ok(AddReport {
            added: keys.iter().map(KeyCode::display_form).collect(),
            rejected: Vec::new(),
            rejected_count: 0,
        });
    }
    let new_keys: Vec<NewKey> = valid
        .iter()
        .map(|(_, key)| NewKey::custom(key.clone()))
        .collect();
    let outcome = store
        .insert_keys(&pool, &new_keys, now, Some(&record))
        .await?;
    reject_taken(&valid, &outcome.taken, &mut rejections);
    Ok(AddReport {
        added: outcome.inserted.iter().map(KeyCode::display_form).collect(),
        rejected: rejections.shown(),
        rejected_count: rejections.count(),
    })
}

/// Rejects the lines whose keys another request took between our check and our write.
fn reject_taken(valid: &[(usize, KeyCode)], taken: &[KeyCode], rejections: &mut Rejections) {
    let taken: HashSet<&KeyCode> = taken.iter().collect();
    for (line, key) in valid {
        if taken.contains(key) {
            rejections.add(*line, || RejectedLine::already_exists(*line, key));
        }
    }
}
