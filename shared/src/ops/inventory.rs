//! A pool's inventory: listing its keys and removing the ones never redeemed.

use super::pools;
use crate::domain::{KeyFilter, KeyRecord, KeyStatus, Page};
use crate::error::{Error, Result};
use crate::identity::OrgId;
use crate::keys::KeyCode;
use crate::store::{Keys, Pools, RemoveConflict};

/// Removes a key that was never redeemed.
pub async fn remove_key<S: Pools + Keys + ?Sized>(
    store: &S,
    org: &OrgId,
    pool_id: &str,
    key: &str,
) -> Result<()> {
    let pool = pools::get_pool(store, org, pool_id).await?;
    let key = KeyCode::parse(key).map_err(|_| Error::NotFound("key"))?;
    match store.remove_key(&pool, &key).await? {
        Ok(()) => Ok(()),
        Err(RemoveConflict::NotFound) => Err(Error::NotFound("key")),
        Err(RemoveConflict::Redeemed) => Err(Error::KeyRedeemed),
    }
}

/// One page of a pool's keys.
pub async fn list_keys<S: Pools + Keys + ?Sized>(
    store: &S,
    org: &OrgId,
    pool_id: &str,
    status: Option<&str>,
    undistributed: Option<&str>,
    cursor: Option<&str>,
    limit: usize,
) -> Result<Page<KeyRecord>> {
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
