//! Making and reclaiming room: LRU eviction when a write needs memory, the background sweeper
//! that drops expired and flushed items and old tombstones, and flush_all's horizon.

use super::clock::{unix_now, Expiry};
use super::item::{self, Item};
use super::mutation::{Mutation, MutationKind};
use super::shard::{hash_key, Shard, Tombstone};
use super::version::Version;
use super::Store;
use std::sync::atomic::Ordering;

/// Slots the sweeper looks at per shard and tick (memcached's lru_crawler_tocrawl).
pub const SWEEP_SLICE: usize = 2048;
/// Between two sweeper ticks, in microseconds (memcached's lru_crawler_sleep).
pub const SWEEP_INTERVAL_US: u64 = 1_000_000;

/// A flush_all horizon: once `at` has passed, items older than `version` are gone.
#[derive(Debug, Clone, Copy)]
pub(super) struct FlushMark {
    pub(super) at: u32,
    pub(super) version: Version,
}

impl Store {
    pub(super) fn is_flushed(&self, it: &Item, now: u32) -> bool {
        if !self.flush_active.load(Ordering::Relaxed) {
            return false;
        }
        let mark = *self.flush.lock();
        // By the full write: increments made elsewhere on a flushed value die with it.
        mark.at <= now && it.base < mark.version
    }

    pub(super) fn flush_version(&self) -> Option<Version> {
        if !self.flush_active.load(Ordering::Relaxed) {
            return None;
        }
        Some(self.flush.lock().version)
    }

    /// The newest flush_all this node knows, as (at, version), for a full-resync snapshot:
    /// a snapshot of items alone would not tell the peer to drop its older ones.
    pub fn flush_mark(&self) -> Option<(u32, Version)> {
        if !self.flush_active.load(Ordering::Relaxed) {
            return None;
        }
        let m = *self.flush.lock();
        Some((m.at, m.version))
    }

    /// flush_all [delay]: items stored before the flush time become invisible once it passes.
    pub fn flush_all(&self, delay: i64) {
        let now = unix_now();
        let at = if delay > 0 {
            Expiry::from_client(delay, now).as_abs()
        } else {
            0
        };
        let mut version = self.clock.tick();
        if at > now {
            // A delayed flush also kills what is written before it takes effect (memcached).
            let horizon = Version::new((at as u64 * 1000) << 16, 0);
            version = version.max(horizon);
        }
        self.publish(Mutation {
            key: &[],
            version,
            kind: MutationKind::Flush { at },
        });
        self.install_flush(at, version, now);
    }

    pub(super) fn install_flush(&self, at: u32, version: Version, now: u32) {
        {
            let mut mark = self.flush.lock();
            if version > mark.version {
                *mark = FlushMark { at, version };
            }
        }
        self.flush_active.store(true, Ordering::Relaxed);
        if at <= now {
            self.drop_older_than(version);
        }
    }

    /// Removes every item older than `version` right away (immediate flush).
    fn drop_older_than(&self, version: Version) {
        for m in self.shards.iter() {
            let mut shard = m.lock();
            let before = shard.bytes;
            let doomed: Vec<u32> = shard
                .slots()
                .filter(|&s| shard.item(s).base < version)
                .collect();
            let now = unix_now();
            for idx in doomed {
                let memory = self.touch_memory(shard.item(idx), version, now);
                let h = hash_key(&self.hasher, shard.item(idx).key());
                let it = shard.remove(h, idx);
                if let Some(t) = memory {
                    shard.add_tombstone(it.key(), t);
                }
            }
            self.account(before, shard.bytes);
        }
    }

    /// A touch newer than the flush that removes `it` outlives the value, like after a delete
    /// (see `Tombstone::touched`): what the removal must remember, if anything.
    fn touch_memory(&self, it: &Item, flush: Version, now: u32) -> Option<Tombstone> {
        (it.touched > flush && !it.is_expired(now)).then(|| Tombstone {
            version: Version::ZERO,
            offset: 0,
            until: now.saturating_add(self.tombstone_secs()),
            touched: it.touched,
            exptime: it.exptime,
        })
    }

    /// `touch_memory` for an item being dropped lazily because a flush has taken effect.
    pub(super) fn flushed_touch_memory(&self, it: &Item, now: u32) -> Option<Tombstone> {
        if it.is_expired(now) {
            return None;
        }
        self.flush_version()
            .and_then(|f| self.touch_memory(it, f, now))
    }

    /// Background work for one sweeper tick (the server runs one every [`SWEEP_INTERVAL_US`]
    /// with a budget of [`SWEEP_SLICE`]): reclaims expired and flushed items, tombstones
    /// every peer has (or whose time is up, or over their memory cap: see `shard::Tombstone`), looking at no more than `budget` slots per shard so a lock is never held
    /// for long. `cursor` carries the position between calls.
    pub fn sweep(&self, cursors: &mut Vec<usize>, budget: usize) -> usize {
        cursors.resize(self.shards.len(), 0);
        let now = unix_now();
        let tomb_acked = if self.sink.get().is_some() {
            self.tomb_acked.load(Ordering::Relaxed)
        } else {
            u64::MAX
        };
        let sole_peer = self.tomb_sole_peer.load(Ordering::Relaxed);
        // Tombstones may take at most a quarter of -m (shared evenly by the shards).
        let tomb_cap = self.mem_limit() / 4 / self.shards.len();
        let mut reclaimed = 0;
        let mut checked = 0u64;
        for (i, m) in self.shards.iter().enumerate() {
            let mut shard = m.lock();
            let before = shard.bytes;
            let slots: Vec<u32> = shard.slots().collect();
            if slots.is_empty() {
                cursors[i] = 0;
            } else {
                let start = cursors[i] % slots.len();
                let end = (start + budget).min(slots.len());
                checked += (end - start) as u64;
                for &idx in &slots[start..end] {
                    let it = shard.item(idx);
                    if it.is_expired(now) || self.is_flushed(it, now) {
                        let unfetched = !it.has(item::FETCHED);
                        let memory = self.flushed_touch_memory(it, now);
                        let h = hash_key(&self.hasher, it.key());
                        let gone = shard.remove(h, idx);
                        if let Some(t) = memory {
                            shard.add_tombstone(gone.key(), t);
                        }
                        reclaimed += 1;
                        if unfetched {
                            self.counters
                                .expired_unfetched
                                .fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                cursors[i] = if end >= slots.len() { 0 } else { end };
            }
            let (acked, timed_out, over_cap) =
                shard.purge_tombstones(now, tomb_acked, sole_peer, tomb_cap);
            for (counter, n) in [
                (&self.counters.tombstones_acked, acked),
                (&self.counters.tombstones_timed_out, timed_out),
                (&self.counters.tombstones_over_cap, over_cap),
            ] {
                if n > 0 {
                    counter.fetch_add(n, Ordering::Relaxed);
                }
            }
            self.account(before, shard.bytes);
        }
        let c = &self.counters;
        c.reclaimed.fetch_add(reclaimed as u64, Ordering::Relaxed);
        c.crawler_starts.fetch_add(1, Ordering::Relaxed);
        c.crawler_items_checked
            .fetch_add(checked, Ordering::Relaxed);
        c.crawler_reclaimed
            .fetch_add(reclaimed as u64, Ordering::Relaxed);
        reclaimed
    }

    /// Frees memory until `need` more bytes fit, evicting least recently used items, first from
    /// the locked shard, then from others that are not busy. Returns false if it cannot.
    pub(super) fn make_room(
        &self,
        own: &mut Shard,
        own_start: usize,
        need: usize,
        keep: Option<u32>,
    ) -> bool {
        let limit = self.mem_limit();
        if need > limit {
            return false;
        }
        let used_now =
            |own: &Shard| (self.used.load(Ordering::Relaxed) + own.bytes).saturating_sub(own_start);
        if used_now(own) + need <= limit {
            return true;
        }
        if !self.evict {
            return false;
        }
        // Own shard first: no other lock needed.
        let mut cursor = own.lru_tail();
        while used_now(own) + need > limit {
            let Some(idx) = cursor else { break };
            cursor = own.towards_head(idx);
            if Some(idx) == keep {
                continue;
            }
            self.evict_slot(own, idx);
        }
        // Then the others, skipping any shard another thread holds (no lock-order deadlock;
        // our own shard is skipped the same way because its lock is not reentrant).
        for _round in 0..4 {
            let mut freed_any = false;
            for m in self.shards.iter() {
                if used_now(own) + need <= limit {
                    break;
                }
                let Some(mut other) = m.try_lock() else {
                    continue;
                };
                while used_now(own) + need > limit {
                    let Some(idx) = other.lru_tail() else { break };
                    let before = other.bytes;
                    self.evict_slot(&mut other, idx);
                    self.account(before, other.bytes);
                    freed_any = true;
                }
            }
            if !freed_any || used_now(own) + need <= limit {
                break;
            }
        }
        used_now(own) + need <= limit
    }

    fn evict_slot(&self, shard: &mut Shard, idx: u32) {
        let now = unix_now();
        let it = shard.item(idx);
        let expired = it.is_expired(now);
        let unfetched = !it.has(item::FETCHED);
        let nonzero = it.exptime != 0;
        let idle = now.saturating_sub(it.last_access) as u64;
        let h = hash_key(&self.hasher, it.key());
        shard.remove(h, idx);
        if !expired {
            self.counters.evicted_time.store(idle, Ordering::Relaxed);
            if nonzero {
                self.counters
                    .evicted_nonzero
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        if expired {
            self.counters.reclaimed.fetch_add(1, Ordering::Relaxed);
        } else {
            self.counters.evictions.fetch_add(1, Ordering::Relaxed);
            if unfetched {
                self.counters
                    .evicted_unfetched
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
