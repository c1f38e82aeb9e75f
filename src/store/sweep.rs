//! The background sweeper, the store's LRU crawler: each tick walks a bounded slice of every
//! shard's index, drops expired and flushed items, and purges the tombstones every peer has (or
//! whose time is up, or over their memory cap: see `shard::Tombstone`).

use super::clock::unix_now;
use super::counters::StoreCounters;
use super::flush::Flushes;
use super::item;
use super::shard::{hash_key, Shards};
use super::stream::Stream;
use std::sync::atomic::Ordering;

/// Index buckets the sweeper looks at per shard and tick (memcached's lru_crawler_tocrawl).
pub const SWEEP_SLICE: usize = 2048;
/// Between two sweeper ticks, in microseconds (memcached's lru_crawler_sleep).
pub const SWEEP_INTERVAL_US: u64 = 1_000_000;

/// What a sweep works on.
pub(crate) struct Sweep<'a> {
    pub shards: &'a Shards,
    pub flushes: &'a Flushes,
    pub stream: &'a Stream,
    pub counters: &'a StoreCounters,
}

impl Sweep<'_> {
    /// One sweeper tick: see `Store::sweep`.
    pub fn run(&self, cursors: &mut Vec<(usize, u64)>, budget: usize, crawler: bool) -> usize {
        let Sweep {
            shards,
            flushes,
            stream,
            counters,
        } = *self;
        cursors.resize(shards.len(), (0, 0));
        let now = unix_now();
        let (tomb_acked, sole_peer) = stream.tombstone_watermark();
        let tombstone_secs = stream.tombstone_secs();
        // Tombstones (outside the ring) may take at most a quarter of -m, shared evenly.
        let tomb_cap = shards.space.mem_limit() / 4 / shards.len();
        let mut reclaimed = 0;
        let mut checked = 0u64;
        let mut seen = Vec::with_capacity(budget.min(4096));
        for (i, m) in shards.iter().enumerate() {
            let mut shard = m.lock();
            let (from, generation) = cursors[i];
            // A moved index (resize, rehash) restarts the pass: an item seen twice is harmless.
            let from = if generation == shard.generation() {
                from
            } else {
                0
            };
            seen.clear();
            let next = shard.walk_from(from, budget, |pos| seen.push(pos));
            cursors[i] = (next.unwrap_or(0), shard.generation());
            checked += seen.len() as u64;
            for &pos in &seen {
                let it = shard.item(pos);
                if it.is_expired(now) || flushes.is_flushed(&it, now) {
                    let unfetched = !it.has(item::FETCHED);
                    let memory = flushes.touch_memory(&it, now, tombstone_secs);
                    let key: Box<[u8]> = it.key().into();
                    let h = hash_key(shards.hasher(), &key);
                    shard.remove(h, pos);
                    if let Some(t) = memory {
                        shard.add_tombstone(&key, t);
                    }
                    reclaimed += 1;
                    if unfetched {
                        counters.expired_unfetched.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            let (acked, timed_out, over_cap) =
                shard.purge_tombstones(now, tomb_acked, sole_peer, tomb_cap);
            for (counter, n) in [
                (&counters.tombstones_acked, acked),
                (&counters.tombstones_timed_out, timed_out),
                (&counters.tombstones_over_cap, over_cap),
            ] {
                if n > 0 {
                    counter.fetch_add(n, Ordering::Relaxed);
                }
            }
        }
        let c = counters;
        c.crawler_starts.fetch_add(1, Ordering::Relaxed);
        c.crawler_items_checked
            .fetch_add(checked, Ordering::Relaxed);
        let counter = if crawler {
            &c.crawler_reclaimed
        } else {
            &c.reclaimed
        };
        counter.fetch_add(reclaimed as u64, Ordering::Relaxed);
        reclaimed
    }
}
