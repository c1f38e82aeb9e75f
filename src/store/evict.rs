//! Making and reclaiming room: eviction at the ring's tail when writes need memory, the
//! background sweeper that drops expired and flushed items and old tombstones, and flush_all's
//! horizon.
//!
//! Eviction is FIFO with reinsertion (CLOCK on the log): the tail walker reads the key of the
//! item at the tail, locks its shard, and if the index still points there (else it is a dead
//! copy and is skipped) either copies the item to the head, when it was hit since it was
//! written or last moved (`item::ACCESSED`), or drops it. One LRU across all shards is
//! approximated that way, and the newest data is never what goes.
//!
//! Lock order: the evictor mutex, then one shard lock, then the log lock (never held while
//! taking another). Every command makes room *before* it locks its shard
//! ([`Store::ensure_room`]); a write that still finds no room under its shard lock may evict
//! only with try_lock (the evictor mutex and other shards), and otherwise answers out of memory:
//! it never waits while holding a shard lock.

use super::arena::{Log, Ring};
use super::clock::{unix_now, Expiry};
use super::item::{self, ItemRef};
use super::mutation::{Mutation, MutationKind};
use super::shard::{hash_key, Shard, Tombstone};
use super::version::Version;
use super::Store;
use parking_lot::MutexGuard;
use std::sync::atomic::Ordering;

/// Index buckets the sweeper looks at per shard and tick (memcached's lru_crawler_tocrawl).
pub const SWEEP_SLICE: usize = 2048;
/// Between two sweeper ticks, in microseconds (memcached's lru_crawler_sleep).
pub const SWEEP_INTERVAL_US: u64 = 1_000_000;

/// Most delayed flushes waiting for their time at once (any client may send `flush_all N`).
const MAX_PENDING_FLUSHES: usize = 64;

/// flush_all horizons. A flush removes every item whose full write is older than its version
/// once its time has come; before that it changes nothing, and in particular it never makes a
/// replicated record stale (a delayed flush used to, and stopped replication for its delay).
#[derive(Debug, Default)]
pub(super) struct FlushMarks {
    /// The newest flush in effect (ZERO: none).
    effective: Version,
    /// Delayed flushes whose time has not come: (absolute unix seconds, version), by time.
    pending: Vec<(u32, Version)>,
}

impl FlushMarks {
    /// The newest flush in effect at `now`, after moving the delayed ones whose time has come.
    fn effective_at(&mut self, now: u32) -> Version {
        let due = self.pending.partition_point(|&(at, _)| at <= now);
        for (_, v) in self.pending.drain(..due) {
            self.effective = self.effective.max(v);
        }
        self.effective
    }

    /// Adds a flush; true if it is in effect now and newer than the one in effect before.
    fn add(&mut self, at: u32, version: Version, now: u32) -> bool {
        let before = self.effective_at(now);
        if at <= now {
            self.effective = before.max(version);
            return version > before;
        }
        if version <= before || self.pending.iter().any(|&(_, v)| v == version) {
            // Already covered (the same record again, from a snapshot or a second link).
            return false;
        }
        let i = self.pending.partition_point(|&(t, _)| t <= at);
        self.pending.insert(i, (at, version));
        if self.pending.len() > MAX_PENDING_FLUSHES {
            // Over the bound, the flush with the oldest horizon goes: every later one kills
            // what it would have (a delayed flush's version is its time), only later.
            if let Some(k) = (0..self.pending.len()).min_by_key(|&k| self.pending[k].1) {
                self.pending.remove(k);
            }
        }
        false
    }
}

/// How a pass of the tail walker ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reclaim {
    /// The room asked for is free at the head.
    Room,
    /// Nothing more can go (empty ring, only the caller's own item, -M and nothing dead).
    Impossible,
    /// The tail item's shard is held by another thread (only when the caller holds a shard).
    Busy,
}

impl Store {
    pub(super) fn is_flushed(&self, it: &ItemRef<'_>, now: u32) -> bool {
        if !self.flush_active.load(Ordering::Relaxed) {
            return false;
        }
        // By the full write: increments made elsewhere on a flushed value die with it.
        it.base() < self.flush.lock().effective_at(now)
    }

    /// The newest flush in effect at `now` (None: there never was one). A delayed flush whose
    /// time has not come is not: records older than it must still apply until then.
    pub(super) fn flush_in_effect(&self, now: u32) -> Option<Version> {
        if !self.flush_active.load(Ordering::Relaxed) {
            return None;
        }
        Some(self.flush.lock().effective_at(now)).filter(|v| *v != Version::ZERO)
    }

    /// Every flush_all this node knows that still matters, as (at, version), for a
    /// full-resync snapshot (a snapshot of items alone would not tell the peer to drop its
    /// older ones): the one in effect with `at` 0, then the delayed ones with their time.
    pub fn flush_marks(&self) -> Vec<(u32, Version)> {
        if !self.flush_active.load(Ordering::Relaxed) {
            return Vec::new();
        }
        let mut marks = self.flush.lock();
        let effective = marks.effective_at(unix_now());
        (effective != Version::ZERO)
            .then_some((0, effective))
            .into_iter()
            .chain(marks.pending.iter().copied())
            .collect()
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
            // A delayed flush also kills what is written before it takes effect (memcached:
            // items whose time is at or before the flush time): its version is its time.
            // The clock is not moved there, so writes made before the flush time stay older.
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
        let newer = self.flush.lock().add(at, version, now);
        self.flush_active.store(true, Ordering::Relaxed);
        if newer {
            self.drop_older_than(version);
        }
    }

    /// Removes every item older than `version` right away (immediate flush), a bounded chunk
    /// of each shard's index per lock hold.
    fn drop_older_than(&self, version: Version) {
        for m in self.shards.iter() {
            let mut bucket = Some(0);
            let mut generation = m.lock().generation();
            let mut doomed = Vec::new();
            while let Some(from) = bucket {
                let mut shard = m.lock();
                if shard.generation() != generation {
                    // The index moved its entries: start over (removing twice is harmless).
                    generation = shard.generation();
                    bucket = Some(0);
                    continue;
                }
                doomed.clear();
                bucket = shard.walk_from(from, SWEEP_SLICE, |pos| doomed.push(pos));
                let now = unix_now();
                for &pos in &doomed {
                    let it = shard.item(pos);
                    if it.base() >= version {
                        continue;
                    }
                    let memory = self.touch_memory(&it, version, now);
                    let key: Box<[u8]> = it.key().into();
                    let h = hash_key(&self.hasher, &key);
                    shard.remove(h, pos);
                    if let Some(t) = memory {
                        shard.add_tombstone(&key, t);
                    }
                }
            }
        }
    }

    /// A touch newer than the flush that removes `it` outlives the value, like after a delete
    /// (see `Tombstone::touched`): what the removal must remember, if anything.
    fn touch_memory(&self, it: &ItemRef<'_>, flush: Version, now: u32) -> Option<Tombstone> {
        (it.touched() > flush && !it.is_expired(now)).then(|| Tombstone {
            version: Version::ZERO,
            offset: 0,
            until: now.saturating_add(self.tombstone_secs()),
            touched: it.touched(),
            exptime: it.exptime(),
        })
    }

    /// `touch_memory` for an item being dropped lazily because a flush has taken effect.
    pub(super) fn flushed_touch_memory(&self, it: &ItemRef<'_>, now: u32) -> Option<Tombstone> {
        if it.is_expired(now) {
            return None;
        }
        self.flush_in_effect(now)
            .and_then(|f| self.touch_memory(it, f, now))
    }

    /// Background work for one sweeper tick (the server runs one every [`SWEEP_INTERVAL_US`]
    /// with a budget of [`SWEEP_SLICE`]): reclaims expired and flushed items, tombstones every
    /// peer has (or whose time is up, or over their memory cap: see `shard::Tombstone`), looking
    /// at no more than `budget` index buckets per shard so a lock is never held for long.
    /// `cursors` carries each shard's position (and index generation) between calls.
    ///
    /// Each reclaim is counted once, as memcached does: in `crawler_reclaimed` when the pass
    /// plays its LRU crawler (`crawler`: `lru_crawler crawl`), else in `reclaimed`, like the
    /// expired items memcached's LRU maintainer drops from its tails.
    pub fn sweep(&self, cursors: &mut Vec<(usize, u64)>, budget: usize, crawler: bool) -> usize {
        cursors.resize(self.shards.len(), (0, 0));
        let now = unix_now();
        let tomb_acked = if self.sink.get().is_some() {
            self.tomb_acked.load(Ordering::Relaxed)
        } else {
            u64::MAX
        };
        let sole_peer = self.tomb_sole_peer.load(Ordering::Relaxed);
        // Tombstones (outside the ring) may take at most a quarter of -m, shared evenly.
        let tomb_cap = self.mem_limit() / 4 / self.shards.len();
        let mut reclaimed = 0;
        let mut checked = 0u64;
        let mut seen = Vec::with_capacity(budget.min(4096));
        for (i, m) in self.shards.iter().enumerate() {
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
                if it.is_expired(now) || self.is_flushed(&it, now) {
                    let unfetched = !it.has(item::FETCHED);
                    let memory = self.flushed_touch_memory(&it, now);
                    let key: Box<[u8]> = it.key().into();
                    let h = hash_key(&self.hasher, &key);
                    shard.remove(h, pos);
                    if let Some(t) = memory {
                        shard.add_tombstone(&key, t);
                    }
                    reclaimed += 1;
                    if unfetched {
                        self.counters
                            .expired_unfetched
                            .fetch_add(1, Ordering::Relaxed);
                    }
                }
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
        }
        let c = &self.counters;
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

    /// The contiguous room the ring keeps free at its head: -m/64, at least 64 KiB and two of
    /// the largest items, at most an eighth of -m. Writes in flight on other threads take from
    /// it between a lookup's check and their allocation.
    pub(super) fn set_headroom(&self) {
        let cap = self.space.ring.lock().cap();
        let h = (cap / 64)
            .max(64 << 10)
            .max(2 * (self.item_size_max + 512))
            .min(cap / 8);
        self.space.headroom.store(h, Ordering::Relaxed);
    }

    /// Makes sure the ring has its headroom before a command locks its shard. Costs one atomic
    /// load unless a write left the ring short of room.
    pub(super) fn ensure_room(&self) {
        if !self.space.low.load(Ordering::Relaxed) {
            return;
        }
        if self.space.refit.swap(false, Ordering::Relaxed) {
            // An index that grew shrinks the ring's share, which needs no mprotect; should a
            // growth fail anyway, the ring keeps its old size (always safe: the capacity only
            // bounds allocations) and this write goes on. Retried at the next refit.
            let _ = self.fit_ring();
        }
        let headroom = self.space.headroom.load(Ordering::Relaxed);
        let _one = match self.evicting.try_lock() {
            Some(one) => one,
            None => {
                // Another thread is evicting a batch: go on while the ring still has room,
                // wait for it only when it is nearly out.
                if self.space.ring.lock().fits(headroom / 2) {
                    return;
                }
                self.evicting.lock()
            }
        };
        if !self.space.low.load(Ordering::Relaxed) {
            return;
        }
        if !self.evict && !self.space.died.load(Ordering::Relaxed) {
            self.space.low.store(false, Ordering::Relaxed);
            return;
        }
        // Free a little more than asked so that eviction runs in batches, not per write.
        let ok = self.reclaim(headroom + headroom / 2, None, None) == Reclaim::Room;
        if !ok && !self.evict {
            self.space.died.store(false, Ordering::Relaxed);
        }
        if ok || !self.evict {
            // With -M and no dead space to reclaim, writes answer out of memory themselves.
            self.space.low.store(false, Ordering::Relaxed);
        }
    }

    /// A write under its shard lock found no room for `need` bytes: evicts what it can without
    /// waiting (the evictor mutex and other shards only with try_lock). `keep`, the key's
    /// current item, is never dropped (its value may be what is being copied).
    pub(super) fn make_room_locked(
        &self,
        own: &mut Shard,
        own_no: usize,
        need: usize,
        keep: Option<u32>,
    ) -> bool {
        for _ in 0..64 {
            if self.space.ring.lock().fits(need) {
                return true;
            }
            if !self.evict && !self.space.died.load(Ordering::Relaxed) {
                // -M: the last attempt to reclaim dead space failed and nothing died since.
                return false;
            }
            if let Some(one) = self.evicting.try_lock() {
                match self.reclaim(need, Some((own, own_no)), keep) {
                    Reclaim::Room => return true,
                    Reclaim::Impossible => {
                        if !self.evict {
                            self.space.died.store(false, Ordering::Relaxed);
                        }
                        return false;
                    }
                    // The tail's shard is held by a write that may itself be waiting for the
                    // evictor mutex: let it go, so that write can evict (its own shard is the
                    // tail's) and finish, then try again.
                    Reclaim::Busy => drop(one),
                }
            }
            // Another evictor is at work; it may be waiting for our shard, so never block.
            std::thread::yield_now();
        }
        self.space.ring.lock().fits(need)
    }

    /// Moves the tail until `need` contiguous bytes are free at the head. Called with the
    /// evictor mutex held; `own` is a shard the caller already holds (then every other shard is
    /// only try_locked, and a busy one ends the call with [`Reclaim::Busy`]).
    fn reclaim(
        &self,
        need: usize,
        mut own: Option<(&mut Shard, usize)>,
        keep: Option<u32>,
    ) -> Reclaim {
        let ring = &self.space.ring;
        let cap = ring.lock().cap();
        // Second chances given in this call, in bytes: past half the ring, accessed items are
        // evicted too (a ring of nothing but hot items must still make room).
        let mut moved = 0usize;
        let mut walked = 0usize;
        let mut key = [0u8; 256];
        loop {
            let (off, klen, len) = {
                let log = ring.lock();
                if log.fits(need) {
                    return Reclaim::Room;
                }
                let Some((off, klen, len)) = read_tail(ring, &log, &mut key) else {
                    return Reclaim::Impossible;
                };
                (off, klen, ring.padded(len))
            };
            walked += len;
            if walked > 2 * cap {
                return Reclaim::Impossible;
            }
            let key = &key[..klen];
            let hash = hash_key(&self.hasher, key);
            let shard_no = ((hash >> 32) & self.shard_mask) as usize;
            let pos = ring.pos(off);
            let is_own = own.as_ref().is_some_and(|(_, no)| *no == shard_no);
            let mut guard: Option<parking_lot::MutexGuard<'_, Shard>> = None;
            let shard: &mut Shard = match own.as_mut() {
                Some((s, no)) if *no == shard_no => s,
                Some(_) => match self.shards[shard_no].try_lock() {
                    Some(g) => guard.insert(g),
                    None => return Reclaim::Busy,
                },
                None => guard.insert(self.shards[shard_no].lock()),
            };
            if shard.find(hash, key) == Some(pos) {
                if is_own && keep == Some(pos) {
                    return Reclaim::Impossible;
                }
                let now = unix_now();
                let it = shard.item(pos);
                let dead = it.is_expired(now) || self.is_flushed(&it, now);
                let second_chance = it.has(item::ACCESSED) && moved + len <= cap / 2;
                if !dead && (second_chance || !self.evict) {
                    let mut m = it.meta();
                    m.bits &= !item::ACCESSED;
                    match shard.copy_with(pos, key, &m) {
                        Ok(new) => {
                            shard.relink(hash, pos, new);
                            moved += len;
                            self.counters.moves_to_head.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) if !self.evict => return Reclaim::Impossible,
                        Err(_) => self.evict_item(shard, hash, pos, now),
                    }
                } else {
                    self.evict_item(shard, hash, pos, now);
                }
            }
            // Only the evictor moves the tail, so it is still `off`.
            ring.lock().advance(len);
            drop(guard);
        }
    }

    fn evict_item(&self, shard: &mut Shard, hash: u64, pos: u32, now: u32) {
        let it = shard.item(pos);
        let expired = it.is_expired(now) || self.is_flushed(&it, now);
        let unfetched = !it.has(item::FETCHED);
        let nonzero = it.exptime() != 0;
        let idle = now.saturating_sub(it.last_access()) as u64;
        shard.remove(hash, pos);
        if expired {
            self.counters.reclaimed.fetch_add(1, Ordering::Relaxed);
        } else {
            self.counters.evicted_time.store(idle, Ordering::Relaxed);
            if nonzero {
                self.counters
                    .evicted_nonzero
                    .fetch_add(1, Ordering::Relaxed);
            }
            self.counters.evictions.fetch_add(1, Ordering::Relaxed);
            if unfetched {
                self.counters
                    .evicted_unfetched
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Seconds since the last access of the item at the tail (0 if none).
    pub(super) fn tail_age(&self, now: u32) -> u32 {
        let ring = &self.space.ring;
        let mut key = [0u8; 256];
        let (off, klen) = {
            let log = ring.lock();
            let Some((off, klen, _)) = read_tail(ring, &log, &mut key) else {
                return 0;
            };
            (off, klen)
        };
        let key = &key[..klen];
        let hash = hash_key(&self.hasher, key);
        let shard = self.shards[((hash >> 32) & self.shard_mask) as usize].lock();
        match shard.find(hash, key) {
            Some(pos) if pos == ring.pos(off) => now.saturating_sub(shard.item(pos).last_access()),
            _ => 0,
        }
    }
}

/// The tail item's offset, key (copied into `key`) and unpadded length, read under the log lock
/// (`log`) without the item's shard lock: only the header fields that never change after the
/// item is written (`item::FIXED_RANGES`) and the key, never the bytes that in-place changes
/// rewrite meanwhile under the shard lock. None when the ring is empty.
#[allow(unsafe_code)]
fn read_tail(
    ring: &Ring,
    log: &MutexGuard<'_, Log>,
    key: &mut [u8; 256],
) -> Option<(usize, usize, usize)> {
    let off = log.tail()?;
    let [(vlen_at, _), (kshape_at, _)] = item::FIXED_RANGES;
    // SAFETY: (this and the two reads below) `log` holds the log lock and `off` is the tail,
    // an allocated item; these are its fixed header fields and its key, written under the log
    // lock at allocation and never again (in-place changes write only `item::MUTABLE_RANGES`,
    // the optional fields and the value), and the region cannot be reallocated while the log
    // lock is held. Each slice is copied out at once.
    let vlen: [u8; 4] = unsafe { ring.bytes(off + vlen_at, 4) }
        .try_into()
        .expect("4 bytes");
    // SAFETY: as above.
    let kshape = unsafe { ring.bytes(off + kshape_at, 2) };
    let (key_off, klen, len) = item::extent(vlen, [kshape[0], kshape[1]]);
    // SAFETY: as above (the key).
    key[..klen].copy_from_slice(unsafe { ring.bytes(off + key_off, klen) });
    Some((off, klen, len))
}
