//! Pools' settings as redemptions last read them, and the counters lately found busy.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::domain::{CounterId, Pool, PoolId};
use crate::identity::OrgId;
use crate::keys::KeyTag;

/// Pools' settings as redemptions last read them, so that the happy path reads nothing before
/// it writes: a generated key's tag names its pool here. Safe to be behind, and to be misled
/// by a tag: the redemption transaction changes the key only while it belongs to the pool
/// read, and counts it only while the pool is still at the version read; a pool that looks
/// closed is read again before the learner is told so.
#[derive(Debug)]
pub struct PoolCache {
    entries: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    pools: HashMap<PoolId, (Pool, Instant)>,
    /// The pool that each tag names; `None` once two pools that drew the tag were seen.
    tags: HashMap<KeyTag, Option<PoolId>>,
    /// Counters lately found not quiet (a learner or an address that failed lately), and
    /// until when the shortcut leaves their redemptions alone: its write would be refused.
    busy: HashMap<CounterId, Instant>,
}

impl PoolCache {
    /// How long a pool's settings are used before they are read again, whatever happens.
    const TTL: Duration = Duration::from_secs(60);
    /// Pools kept; when full, the stale ones go, then all.
    const CAPACITY: usize = 10_000;

    pub fn new() -> Self {
        Self {
            entries: Mutex::new(Entries::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn get(&self, org: &OrgId, id: &PoolId) -> Option<Pool> {
        self.lock()
            .pools
            .get(id)
            .filter(|(pool, at)| pool.org == *org && at.elapsed() < Self::TTL)
            .map(|(pool, _)| pool.clone())
    }

    /// The pool whose generated keys carry `tag`, when this process read it lately.
    pub(super) fn tagged(&self, tag: &KeyTag) -> Option<Pool> {
        let entries = self.lock();
        let id = entries.tags.get(tag)?.as_ref()?;
        entries
            .pools
            .get(id)
            .filter(|(pool, at)| pool.key_tag == Some(*tag) && at.elapsed() < Self::TTL)
            .map(|(pool, _)| pool.clone())
    }

    pub(super) fn put(&self, pool: &Pool) {
        let mut entries = self.lock();
        if entries.pools.len() >= Self::CAPACITY {
            entries.pools.retain(|_, (_, at)| at.elapsed() < Self::TTL);
            if entries.pools.len() >= Self::CAPACITY {
                entries.pools.clear();
            }
            let Entries { pools, tags, .. } = &mut *entries;
            tags.retain(|_, id| id.is_none_or(|id| pools.contains_key(&id)));
        }
        if let Some(tag) = pool.key_tag {
            // Two live pools with one tag: the tag names neither, rather than each in turn.
            let named = match entries.tags.get(&tag) {
                Some(Some(other))
                    if *other != pool.pool_id && entries.pools.contains_key(other) =>
                {
                    None
                }
                Some(None) => None,
                _ => Some(pool.pool_id),
            };
            entries.tags.insert(tag, named);
        }
        entries
            .pools
            .insert(pool.pool_id, (pool.clone(), Instant::now()));
    }

    pub(super) fn forget(&self, id: &PoolId) {
        let mut entries = self.lock();
        if let Some((pool, _)) = entries.pools.remove(id)
            && let Some(tag) = pool.key_tag
            && entries.tags.get(&tag) == Some(&Some(*id))
        {
            entries.tags.remove(&tag);
        }
    }

    /// Leaves the shortcut alone for redemptions counted against `id` for `window`.
    pub(super) fn note_busy(&self, id: &CounterId, window: Duration) {
        let mut entries = self.lock();
        if entries.busy.len() >= Self::CAPACITY {
            let now = Instant::now();
            entries.busy.retain(|_, until| *until > now);
            if entries.busy.len() >= Self::CAPACITY {
                entries.busy.clear();
            }
        }
        entries.busy.insert(id.clone(), Instant::now() + window);
    }

    /// True when the counter `id` was lately found not quiet.
    pub(super) fn is_busy(&self, id: &CounterId) -> bool {
        self.lock()
            .busy
            .get(id)
            .is_some_and(|until| *until > Instant::now())
    }
}

impl Default for PoolCache {
    fn default() -> Self {
        Self::new()
    }
}
