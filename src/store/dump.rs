//! A read-only walk over the live items for the key dumps (`stats cachedump`, `lru_crawler
//! metadump`). It copies each item's metadata out in bounded batches, one shard lock at a time,
//! so that a dump of a large cache never holds a shard lock for long: clients of that shard wait
//! at most for one batch. It walks each shard's index by bucket (`Shard::walk_from`) and starts
//! the shard over when the index moved its entries in between (a resize), so every item present
//! before the walk and still there after it is seen (some maybe twice, which the walk filters
//! per shard); an item written while the walk is under way may be missed.

use super::clock::unix_now;
use super::flush::Flushes;
use super::item::{FETCHED, KEY_BINARY};
use super::shard::Shards;

/// Items copied out per shard lock.
pub const DUMP_BATCH: usize = 256;

/// What a dump reports of one item (a copy: no lock is held while the caller looks at it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpItem {
    pub key: Vec<u8>,
    pub value_len: usize,
    /// Absolute unix seconds; 0 = never expires.
    pub exptime: u32,
    /// Unix seconds of the last access.
    pub last_access: u32,
    pub cas: u64,
    pub fetched: bool,
    /// The key was given base64-encoded (meta `b`).
    pub key_binary: bool,
    /// Bytes charged for the item against -m (memcached's ITEM_ntotal).
    pub size: usize,
}

/// Calls `f` on every live item (not expired, not flushed), shard by shard, until `f`
/// returns false. Never calls `f` with a lock held.
pub(super) fn visit_items(
    shards: &Shards,
    flushes: &Flushes,
    mut f: impl FnMut(&DumpItem) -> bool,
) {
    let mut batch: Vec<DumpItem> = Vec::with_capacity(DUMP_BATCH);
    for m in shards.iter() {
        let mut bucket = Some(0);
        let mut generation = None;
        // Keys already reported from this shard: a restarted walk does not repeat them.
        let mut seen: hashbrown::HashSet<Vec<u8>> = hashbrown::HashSet::new();
        while let Some(from) = bucket {
            batch.clear();
            {
                let now = unix_now();
                let shard = m.lock();
                let from = if generation == Some(shard.generation()) {
                    from
                } else {
                    0
                };
                generation = Some(shard.generation());
                bucket = shard.walk_from(from, DUMP_BATCH, |pos| {
                    let it = shard.item(pos);
                    if it.is_expired(now) || flushes.is_flushed(&it, now) {
                        return;
                    }
                    batch.push(DumpItem {
                        key: it.key().to_vec(),
                        value_len: it.value().len(),
                        exptime: it.exptime(),
                        last_access: it.last_access(),
                        cas: it.cas(),
                        fetched: it.has(FETCHED),
                        key_binary: it.has(KEY_BINARY),
                        size: it.charge(),
                    });
                });
            }
            for item in &batch {
                if !seen.insert(item.key.clone()) {
                    continue;
                }
                if !f(item) {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Expiry, Store, StoreConfig, WriteMode};

    fn store() -> Store {
        Store::new(StoreConfig {
            shards: 2,
            mem_limit: 64 << 20,
            ..StoreConfig::default()
        })
    }

    #[test]
    fn visits_every_live_item_in_batches_and_stops_on_false() {
        let s = store();
        let n = DUMP_BATCH * 3 + 7;
        for i in 0..n {
            let key = format!("key{i}");
            s.entry(key.as_bytes())
                .store(WriteMode::Set, 0, Expiry::Never, b"value", None, false);
        }
        let mut seen = std::collections::HashSet::new();
        s.visit_items(|it| {
            assert_eq!(it.value_len, 5);
            assert!(seen.insert(it.key.clone()), "seen twice");
            true
        });
        assert_eq!(seen.len(), n);
        let mut count = 0;
        s.visit_items(|_| {
            count += 1;
            count < 10
        });
        assert_eq!(count, 10);
    }
}
