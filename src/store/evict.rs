//! Making room: eviction at the ring's tail when writes need memory ([`Evictor`], working on
//! the shards, the flushes and the counters it is given; its mutex and flags are in `space`).
//!
//! Eviction is FIFO with reinsertion (CLOCK on the log): the tail walker reads the key of the
//! item at the tail, locks its shard, and if the index still points there (else it is a dead
//! copy and is skipped) either copies the item to the head, when it was hit since it was
//! written or last moved (`item::ACCESSED`), or drops it. One LRU across all shards is
//! approximated that way, and the newest data is never what goes.
//!
//! Lock order: the evictor mutex, then one shard lock, then the log lock (never held while
//! taking another). Every command makes room *before* it locks its shard
//! ([`Evictor::ensure_room`]); a write that still finds no room under its shard lock may evict
//! only with try_lock (the evictor mutex and other shards), and otherwise answers out of memory:
//! it never waits while holding a shard lock.

use super::arena::{Log, Ring};
use super::clock::unix_now;
use super::counters::StoreCounters;
use super::flush::Flushes;
use super::item;
use super::shard::{Shard, Shards};
use parking_lot::MutexGuard;
use std::sync::atomic::Ordering;

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

/// The tail walker, over the shards (and the memory they share) it evicts from.
pub(crate) struct Evictor<'a> {
    pub shards: &'a Shards,
    pub flushes: &'a Flushes,
    pub counters: &'a StoreCounters,
}

impl Evictor<'_> {
    /// Makes sure the ring has its headroom before a command locks its shard. Costs one atomic
    /// load unless a write left the ring short of room.
    #[inline]
    pub fn ensure_room(&self) {
        if self.shards.space.low.load(Ordering::Relaxed) {
            self.make_room();
        }
    }

    #[cold]
    fn make_room(&self) {
        let space = &*self.shards.space;
        if space.refit.swap(false, Ordering::Relaxed) {
            // An index that grew shrinks the ring's share, which needs no mprotect; should a
            // growth fail anyway, the ring keeps its old size (always safe: the capacity only
            // bounds allocations) and this write goes on. Retried at the next refit.
            let _ = space.fit_ring();
        }
        let headroom = space.headroom.load(Ordering::Relaxed);
        let _one = match space.evicting.try_lock() {
            Some(one) => one,
            None => {
                // Another thread is evicting a batch: go on while the ring still has room,
                // wait for it only when it is nearly out.
                if space.ring.lock().fits(headroom / 2) {
                    return;
                }
                space.evicting.lock()
            }
        };
        if !space.low.load(Ordering::Relaxed) {
            return;
        }
        if !space.evict && !space.died.load(Ordering::Relaxed) {
            space.low.store(false, Ordering::Relaxed);
            return;
        }
        // Free a little more than asked so that eviction runs in batches, not per write.
        let ok = self.reclaim(headroom + headroom / 2, None, None) == Reclaim::Room;
        if !ok && !space.evict {
            space.died.store(false, Ordering::Relaxed);
        }
        if ok || !space.evict {
            // With -M and no dead space to reclaim, writes answer out of memory themselves.
            space.low.store(false, Ordering::Relaxed);
        }
    }

    /// A write under its shard lock found no room for `need` bytes: evicts what it can without
    /// waiting (the evictor mutex and other shards only with try_lock). `keep`, the key's
    /// current item, is never dropped (its value may be what is being copied).
    pub fn make_room_locked(
        &self,
        own: &mut Shard,
        own_no: usize,
        need: usize,
        keep: Option<u32>,
    ) -> bool {
        let space = &*self.shards.space;
        for _ in 0..64 {
            if space.ring.lock().fits(need) {
                return true;
            }
            if !space.evict && !space.died.load(Ordering::Relaxed) {
                // -M: the last attempt to reclaim dead space failed and nothing died since.
                return false;
            }
            if let Some(one) = space.evicting.try_lock() {
                match self.reclaim(need, Some((own, own_no)), keep) {
                    Reclaim::Room => return true,
                    Reclaim::Impossible => {
                        if !space.evict {
                            space.died.store(false, Ordering::Relaxed);
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
        space.ring.lock().fits(need)
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
        let space = &*self.shards.space;
        let ring = &space.ring;
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
            let (shard_no, hash) = self.shards.place(key);
            let pos = ring.pos(off);
            let is_own = own.as_ref().is_some_and(|(_, no)| *no == shard_no);
            let mut guard: Option<parking_lot::MutexGuard<'_, Shard>> = None;
            let shard: &mut Shard = match own.as_mut() {
                Some((s, no)) if *no == shard_no => s,
                Some(_) => match self.shards.get(shard_no).try_lock() {
                    Some(g) => guard.insert(g),
                    None => return Reclaim::Busy,
                },
                None => guard.insert(self.shards.get(shard_no).lock()),
            };
            if shard.find(hash, key) == Some(pos) {
                if is_own && keep == Some(pos) {
                    return Reclaim::Impossible;
                }
                let now = unix_now();
                let it = shard.item(pos);
                let dead = it.is_expired(now) || self.flushes.is_flushed(&it, now);
                let second_chance = it.has(item::ACCESSED) && moved + len <= cap / 2;
                if !dead && (second_chance || !space.evict) {
                    let mut m = it.meta();
                    m.bits &= !item::ACCESSED;
                    match shard.copy_with(pos, key, &m) {
                        Ok(new) => {
                            shard.relink(hash, pos, new);
                            moved += len;
                            self.counters.moves_to_head.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) if !space.evict => return Reclaim::Impossible,
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
        let expired = it.is_expired(now) || self.flushes.is_flushed(&it, now);
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
    pub fn tail_age(&self, now: u32) -> u32 {
        let ring = &self.shards.space.ring;
        let mut key = [0u8; 256];
        let (off, klen) = {
            let log = ring.lock();
            let Some((off, klen, _)) = read_tail(ring, &log, &mut key) else {
                return 0;
            };
            (off, klen)
        };
        let key = &key[..klen];
        let (shard_no, hash) = self.shards.place(key);
        let shard = self.shards.get(shard_no).lock();
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
