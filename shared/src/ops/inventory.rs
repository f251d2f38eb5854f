//! A pool's inventory: listing its keys and removing the ones never redeemed.

use super::pools;
use crate::domain::{
    AuditAction, Caller, KeyFilter, KeyRecord, KeyStatus, Page, Pool, Resource, Summary, key_id,
};
use crate::error::{Error, Missing, Result};
use crate::identity::OrgId;
use crate::keys::{self, KeyCode, KeyLookup};
use crate::store::{Keys, Pools, RemoveConflict};
use crate::time::Timestamp;

/// Removes a key that was never redeemed.
pub async fn remove_key<S: Pools + Keys + ?Sized>(
    store: &S,
    caller: &Caller,
    pool_id: &str,
    key: &str,
    now: Timestamp,
) -> Result<()> {
    let pool = pools::get_pool(store, &caller.org, pool_id).await?;
    let key = KeyCode::parse(key).map_err(|_| Error::NotFound(Missing::Key))?;
    let record = caller
        .record(
            AuditAction::KeyRemoved,
            Resource::new("key", key_id(&key)),
            Summary::new().with("pool_id", pool.pool_id.to_string()),
            now,
        )
        .in_pool(pool.pool_id);
    match store.remove_key(&pool, &key, &record).await? {
        Ok(()) => Ok(()),
        Err(RemoveConflict::NotFound) => Err(Error::NotFound(Missing::Key)),
        Err(RemoveConflict::Redeemed) => Err(Error::KeyRedeemed),
    }
}

/// Finds the key a learner reports, in any form they may type it, and the pool that holds
/// it. Another organization's key, a pending one and a malformed one are all "not found",
/// exactly like an absent key, so the answer tells nothing about other organizations.
pub async fn find_key<S: Pools + Keys + ?Sized>(
    store: &S,
    org: &OrgId,
    typed: &str,
) -> Result<(KeyRecord, Pool)> {
    let candidates = match keys::lookup_candidates(typed) {
        KeyLookup::Candidates(candidates) => candidates,
        KeyLookup::Invalid | KeyLookup::Mistyped => Vec::new(),
    };
    // As typed first, as redemption reads them.
    for key in &candidates {
        let Some(record) = store.get_key(key).await? else {
            continue;
        };
        if record.org != *org || record.status == KeyStatus::Pending {
            continue;
        }
        if let Some(pool) = store.get_pool_settings(org, &record.pool_id).await? {
            return Ok((record, pool));
        }
    }
    Err(Error::NotFound(Missing::Key))
}

/// Which page of a pool's keys to list, as a request names it: each field is checked by
/// `list_keys`.
#[derive(Debug, Clone, Copy)]
pub struct KeyListing<'a> {
    /// `available` or `redeemed`; every key when absent or empty.
    pub status: Option<&'a str>,
    /// `true` for only keys never handed out by an export.
    pub undistributed: Option<&'a str>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<&'a str>,
    /// Page size.
    pub limit: usize,
}

impl<'a> KeyListing<'a> {
    /// A page of `limit` keys of any status, from `cursor`.
    pub fn page(cursor: Option<&'a str>, limit: usize) -> Self {
        Self {
            status: None,
            undistributed: None,
            cursor,
            limit,
        }
    }
}

/// One page of a pool's keys.
pub async fn list_keys<S: Pools + Keys + ?Sized>(
    store: &S,
    org: &OrgId,
    pool_id: &str,
    listing: KeyListing<'_>,
) -> Result<Page<KeyRecord>> {
    let KeyListing {
        status,
        undistributed,
        cursor,
        limit,
    } = listing;
    let mut v = crate::error::Validator::default();
    let status = match status {
        None | Some("") => None,
        Some(s) => v.check(
            "status",
            KeyStatus::parse(s).ok_or("status is available or redeemed"),
        ),
    };
    let undistributed = match undistributed {
        None | Some("") | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            v.fail("undistributed", "undistributed is true or false");
            false
        }
    };
    v.finish()?;
    let pool = pools::get_pool(store, org, pool_id).await?;
    let filter = KeyFilter {
        status,
        undistributed,
    };
    store.list_keys(&pool.pool_id, &filter, cursor, limit).await
}
