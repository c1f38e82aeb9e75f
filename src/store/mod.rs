//! The cache: items in one ring of -m bytes (`arena`), indexed by key in shards, evicted
//! oldest first with a second chance for items hit since they were written (CLOCK on the log),
//! memcached's expiry and CAS rules, and a version on every item and tombstone for replication.
//!
//! Callers lock one key at a time with [`Store::entry`]; all command logic (text and meta) runs
//! on an [`Entry`] while its shard lock is held, and never awaits. Every change made through an
//! `Entry` is published as one [`Mutation`] record (a [`MutationRef`] borrowing the item's bytes)
//! to the replication sink; changes that arrive from peers go through [`Store::apply_remote`] (or
//! [`Store::apply_remote_batch`], one shard lock per batch) and are never published again.
//!
//! This file owns the [`Store`] itself (its shards, memory accounting, counters and the key
//! lookup every command starts with); the rest is split by concern:
//!
//! - `config`: [`StoreConfig`].
//! - `clock`: the coarse unix clock ([`unix_now`]) and memcached's expiry rules ([`Expiry`]).
//! - `entry`: memcached command semantics on one locked key ([`Entry`], [`WriteMode`]).
//! - `merge`: merge rules for replicated records and the full-resync snapshot.
//! - `counter`: the PN-counter state of incremented items ([`Counter`]).
//! - `dump`: the read-only item walk of the key dumps ([`Store::visit_items`]).
//! - `evict`: eviction at the ring's tail, the background sweeper, and flush_all.
//! - `arena`: the ring the items live in: its mapping and raw accessors (`unsafe fn`, called
//!   only from `shard` and `evict`, each call with the rule that makes it sound).
//! - `shard`, `item`, `version`, `mutation`: the data structures under all of these.
//!
//! The store depends on nothing else in the crate: the protocol and the server convert their
//! requests into its types, and replication only sees [`Mutation`] records.

mod arena;
mod clock;
mod config;
pub mod counter;
mod dump;
mod entry;
mod evict;
pub mod item;
mod merge;
pub mod mutation;
mod shard;
pub mod version;

pub use clock::{start_coarse_clock, unix_now, Expiry};
pub use config::StoreConfig;
pub use counter::{Contribution, Counter, MAX_SEQ};
pub use dump::{DumpItem, DUMP_BATCH};
pub use entry::{
    parse_counter, ArithError, Entry, StoreError, StoreOutcome, WriteMode, BUMP_INTERVAL,
};
pub use evict::{SWEEP_INTERVAL_US, SWEEP_SLICE};
pub use item::{ItemRef, Meta};
pub use merge::SnapshotEntry;
pub use mutation::{ApplyOutcome, Mutation, MutationKind, MutationRef, MutationSink};
pub use version::{HybridClock, Version};

use hashbrown::DefaultHashBuilder;
use parking_lot::Mutex;
use shard::{hash_key, Shard, Space};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// Why `cache_memlimit` changed nothing (memcached answers both with MEMLIMIT_ADJUST_FAILED).
#[derive(Debug, thiserror::Error)]
pub enum MemLimitError {
    #[error("{asked} bytes is more than the {reserved} bytes of address space reserved at start")]
    OutOfBounds { asked: usize, reserved: usize },
    #[error("the item ring cannot grow: {0}")]
    Grow(std::io::Error),
}

/// Counters kept by the store itself (the server keeps the per-command ones).
#[derive(Debug, Default)]
pub struct StoreCounters {
    pub total_items: AtomicU64,
    pub evictions: AtomicU64,
    pub evicted_unfetched: AtomicU64,
    pub reclaimed: AtomicU64,
    pub expired_unfetched: AtomicU64,
    pub curr_tombstones: AtomicU64,
    /// Tombstones dropped once every peer had them / at the time limit / over the memory cap.
    pub tombstones_acked: AtomicU64,
    pub tombstones_timed_out: AtomicU64,
    pub tombstones_over_cap: AtomicU64,
    /// Remote increments refused because the pending ones (waiting for their base write) had
    /// used up their share of -m (see `shard::PENDING_SHARE`).
    pub pending_deltas_refused: AtomicU64,
    /// Client lookups that found the key's item already expired / invalidated by flush_all.
    pub get_expired: AtomicU64,
    pub get_flushed: AtomicU64,
    /// The sweeper is the store's LRU crawler: its runs, the items it looked at, and the
    /// expired or flushed items it freed (memcached's lru_crawler_starts,
    /// crawler_items_checked, crawler_reclaimed).
    pub crawler_starts: AtomicU64,
    pub crawler_items_checked: AtomicU64,
    pub crawler_reclaimed: AtomicU64,
    /// Evictions of items that had an expiry time (memcached's evicted_nonzero).
    pub evicted_nonzero: AtomicU64,
    /// Seconds since the last access of the most recently evicted item (evicted_time).
    pub evicted_time: AtomicU64,
    /// Hits that marked an item accessed (it was not yet): each saves the item from the next
    /// pass of the tail. Reported as memcached's moves_within_lru.
    pub lru_bumps: AtomicU64,
    /// Accessed items the tail walker copied to the head instead of evicting them (and, with
    /// -M, live items moved to reclaim the dead space behind them): moves_to_warm.
    pub moves_to_head: AtomicU64,
}

/// A point-in-time view of the store for `stats`.
#[derive(Debug, Clone, Default)]
pub struct StoreStats {
    pub curr_items: u64,
    pub bytes: u64,
    pub limit_maxbytes: u64,
    pub total_items: u64,
    pub evictions: u64,
    pub evicted_unfetched: u64,
    pub reclaimed: u64,
    pub expired_unfetched: u64,
    pub tombstones: u64,
    /// Bytes charged for tombstones, outside the ring (capped at a quarter of -m).
    pub tombstone_bytes: u64,
    pub tombstones_acked: u64,
    pub tombstones_timed_out: u64,
    pub tombstones_over_cap: u64,
    pub pending_deltas_refused: u64,
    pub get_expired: u64,
    pub get_flushed: u64,
    pub crawler_starts: u64,
    pub crawler_items_checked: u64,
    pub crawler_reclaimed: u64,
    pub evicted_nonzero: u64,
    pub evicted_time: u64,
    pub lru_bumps: u64,
    pub moves_to_head: u64,
    /// Seconds since the last access of the item at the ring's tail, the next to be evicted
    /// (memcached's items:N:age: the age of the LRU tail).
    pub oldest_age: u64,
    /// The ring: its capacity (-m) and the bytes between its tail and head (live items, dead
    /// copies of changed or deleted ones, and the space skipped at a wrap not included).
    pub ring_capacity: u64,
    /// Bytes of the shards' hash indexes (memcached's hash_bytes), charged against -m.
    pub index_bytes: u64,
    pub ring_used: u64,
    /// Bytes charged outside the ring for pending deltas and counter state.
    pub heap_bytes: u64,
}

pub struct Store {
    shards: Box<[Mutex<Shard>]>,
    shard_mask: u64,
    hasher: DefaultHashBuilder,
    space: Arc<Space>,
    /// One evictor at a time (see `evict`): taken with lock() only with no other lock held,
    /// with try_lock() by a writer that holds its shard lock.
    evicting: Mutex<()>,
    item_size_max: usize,
    evict: bool,
    cas_enabled: bool,
    /// Longest a tombstone is kept (`--repl-tombstone-time`), seconds.
    tombstone_secs: AtomicU32,
    clock: HybridClock,
    sink: OnceLock<Arc<dyn MutationSink>>,
    flush_active: AtomicBool,
    flush: Mutex<evict::FlushMarks>,
    /// See [`Store::set_tombstone_watermark`].
    tomb_acked: AtomicU64,
    tomb_sole_peer: AtomicU32,
    pub counters: StoreCounters,
}

impl Store {
    pub fn new(cfg: StoreConfig) -> Store {
        let n = cfg.shards.max(1).next_power_of_two();
        let space = Arc::new(Space {
            ring: arena::Ring::new(cfg.mem_limit),
            nodes: version::NodeTable::new(cfg.node_id),
            cas_enabled: cfg.cas_enabled,
            headroom: Default::default(),
            low: AtomicBool::new(false),
            died: AtomicBool::new(false),
            limit: AtomicUsize::new(cfg.mem_limit),
            index_bytes: AtomicUsize::new(0),
            refit: AtomicBool::new(false),
        });
        let store = Store {
            shards: (0..n)
                .map(|_| Mutex::new(Shard::new(space.clone())))
                .collect(),
            shard_mask: (n - 1) as u64,
            hasher: DefaultHashBuilder::default(),
            space,
            evicting: Mutex::new(()),
            item_size_max: cfg.item_size_max,
            evict: cfg.evict,
            cas_enabled: cfg.cas_enabled,
            tombstone_secs: AtomicU32::new(cfg.tombstone_secs),
            clock: HybridClock::new(cfg.node_id),
            sink: OnceLock::new(),
            flush_active: AtomicBool::new(false),
            flush: Mutex::new(Default::default()),
            tomb_acked: AtomicU64::new(0),
            tomb_sole_peer: AtomicU32::new(0),
            counters: StoreCounters::default(),
        };
        store.set_headroom();
        store
    }

    /// The longest a tombstone (or a remembered touch, or an increment waiting for its write)
    /// is kept, in seconds.
    pub fn tombstone_secs(&self) -> u32 {
        self.tombstone_secs.load(Ordering::Relaxed)
    }

    /// `--repl-tombstone-time`: applies to tombstones made from now on.
    pub fn set_tombstone_secs(&self, secs: u32) {
        self.tombstone_secs.store(secs, Ordering::Relaxed);
    }

    pub fn clock(&self) -> &HybridClock {
        &self.clock
    }

    pub fn node_id(&self) -> u32 {
        self.clock.node()
    }

    /// Lets items carry versions of `node`, a node that authenticated on a replication link;
    /// false if the node table is full (see `version::NodeTable`).
    pub fn admit_node(&self, node: u32) -> bool {
        self.space.nodes.admit(node)
    }

    /// Whether items may carry versions of `node`: this node, no node (0), a node admitted, or
    /// one named in a peer's snapshot, learned now within its bounded share
    /// (`version::MAX_LEARNED_NODES`). False: refuse whatever names it.
    pub fn know_or_learn_node(&self, node: u32) -> bool {
        self.space.nodes.learn(node)
    }

    pub fn item_size_max(&self) -> usize {
        self.item_size_max
    }

    pub fn cas_enabled(&self) -> bool {
        self.cas_enabled
    }

    /// The memory limit (-m or cache_memlimit): the ring and the hash indexes together.
    pub fn mem_limit(&self) -> usize {
        self.space.limit.load(Ordering::Relaxed)
    }

    /// Bytes each shard may hold in pending deltas (increments waiting for their base write).
    pub(crate) fn pending_cap(&self) -> usize {
        self.mem_limit() / shard::PENDING_SHARE / self.shards.len()
    }

    /// cache_memlimit: the ring's capacity changes at once; when it shrinks, the next writes
    /// evict down to it. Refused, with nothing changed, above the address space reserved at
    /// start (32 GiB, or -m if larger) or when the system will not let the ring grow (mprotect
    /// fails: RLIMIT_DATA, strict overcommit): memcached's "unable to adjust".
    pub fn set_mem_limit(&self, bytes: usize) -> Result<(), MemLimitError> {
        let reserved = self.space.ring.reserved();
        if bytes > reserved {
            return Err(MemLimitError::OutOfBounds {
                asked: bytes,
                reserved,
            });
        }
        let old = self.space.limit.swap(bytes, Ordering::Relaxed);
        if let Err(arena::GrowError(e)) = self.fit_ring() {
            // Back to the old limit, unless another cache_memlimit has set one meanwhile.
            let _ =
                self.space
                    .limit
                    .compare_exchange(bytes, old, Ordering::Relaxed, Ordering::Relaxed);
            // The old limit's share is no more than what is already usable: no mprotect.
            let _ = self.fit_ring();
            return Err(MemLimitError::Grow(e));
        }
        self.space.low.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Gives the ring what the hash indexes leave of the memory limit, so that -m bounds the
    /// resident memory of items and index together (memcached leaves its hash table outside
    /// -m; filled past -m it stays near 1.1x -m, and so do we this way, while holding more
    /// items). The ring keeps at least half of the limit whatever the indexes take.
    /// Fails, leaving the ring as it was, when growing it needs an mprotect that fails.
    pub(super) fn fit_ring(&self) -> Result<(), arena::GrowError> {
        let limit = self.mem_limit();
        let index = self.space.index_bytes.load(Ordering::Relaxed);
        let set = self
            .space
            .ring
            .set_cap(limit.saturating_sub(index).max(limit / 2));
        self.set_headroom();
        set.map(|_| ())
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Installs the replication sink; only the first call has an effect.
    pub fn set_mutation_sink(&self, sink: Arc<dyn MutationSink>) {
        let _ = self.sink.set(sink);
    }

    /// The CAS id of the write with this version. Derived from the version rather than from a
    /// local counter so that every node gives the same write the same CAS id: a `gets` on one
    /// node followed by a `cas` on another succeeds exactly when that node holds the same write.
    pub fn cas_for(&self, version: Version) -> u64 {
        if self.cas_enabled {
            version.hlc
        } else {
            0
        }
    }

    /// Locks the shard of `key` and looks the key up, dropping it if it has expired or been
    /// flushed.
    ///
    /// Like memcached's do_item_get for a client, a dead item found this way counts in
    /// `get_flushed` or `get_expired`, whatever the command.
    pub fn entry<'s, 'k>(&'s self, key: &'k [u8]) -> Entry<'s, 'k> {
        self.lookup(key, true)
    }

    fn lookup<'s, 'k>(&'s self, key: &'k [u8], client: bool) -> Entry<'s, 'k> {
        // Room first, with no lock held: eviction locks the shards of the items it drops.
        self.ensure_room();
        let hash = hash_key(&self.hasher, key);
        let shard_no = ((hash >> 32) & self.shard_mask) as usize;
        let shard = self.shards[shard_no].lock();
        self.lookup_in(entry::ShardRef::Locked(shard), shard_no, hash, key, client)
    }

    /// The shard number and hash of `key` (what [`Store::lookup_in`] takes).
    fn place(&self, key: &[u8]) -> (usize, u64) {
        let hash = hash_key(&self.hasher, key);
        (((hash >> 32) & self.shard_mask) as usize, hash)
    }

    /// [`Store::lookup`] in a shard the caller has locked already.
    fn lookup_in<'s, 'k>(
        &'s self,
        shard: entry::ShardRef<'s>,
        shard_no: usize,
        hash: u64,
        key: &'k [u8],
        client: bool,
    ) -> Entry<'s, 'k> {
        let mut entry = Entry {
            store: self,
            shard,
            shard_no,
            hash,
            key,
            idx: None,
            now: unix_now(),
        };
        entry.idx = entry.shard.find(hash, key);
        if let Some(idx) = entry.idx {
            let it = entry.shard.item(idx);
            let flushed = self.is_flushed(&it, entry.now);
            if flushed || it.is_expired(entry.now) {
                if client {
                    let counter = if flushed {
                        &self.counters.get_flushed
                    } else {
                        &self.counters.get_expired
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                let unfetched = !it.has(item::FETCHED);
                let memory = self.flushed_touch_memory(&it, entry.now);
                entry.shard.remove(hash, idx);
                if let Some(t) = memory {
                    entry.shard.add_tombstone(key, t);
                }
                entry.idx = None;
                // Not `reclaimed`: memcached counts that only when a write reuses the room of
                // an expired item (here the tail walker), not when a get drops one.
                if unfetched {
                    self.counters
                        .expired_unfetched
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        entry
    }

    /// Runs `f`, the execution of one batch of requests on this thread, telling the sink so that
    /// it wakes its readers once for the whole batch rather than once per record.
    pub fn batch<R>(&self, f: impl FnOnce() -> R) -> R {
        struct End<'a>(&'a dyn MutationSink);
        impl Drop for End<'_> {
            fn drop(&mut self) {
                self.0.end_batch();
            }
        }
        match self.sink.get() {
            Some(sink) => {
                sink.begin_batch();
                let _end = End(sink.as_ref());
                f()
            }
            None => f(),
        }
    }

    /// Publishes a record; returns its offset in this node's stream (0 if none).
    fn publish(&self, m: MutationRef<'_>) -> u64 {
        match self.sink.get() {
            Some(sink) => sink.publish_ref(m),
            None => 0,
        }
    }

    /// Replication's view of its peers, for dropping tombstones (see `shard::Tombstone`):
    /// `acked` is the offset of this node's stream that every peer has acknowledged, with this
    /// node holding everything each peer wrote before acknowledging it (0: none, or some peer
    /// never acknowledged anything); `sole_peer` the node id of the only peer this node has
    /// (0 if it has none or several).
    pub fn set_tombstone_watermark(&self, acked: u64, sole_peer: u32) {
        self.tomb_acked.store(acked, Ordering::Relaxed);
        self.tomb_sole_peer.store(sole_peer, Ordering::Relaxed);
    }

    /// `stats reset`: zero the store's resettable counters, as memcached's item stats reset does.
    pub fn reset_counters(&self) {
        let c = &self.counters;
        for counter in [
            &c.total_items,
            &c.evictions,
            &c.evicted_unfetched,
            &c.reclaimed,
            &c.expired_unfetched,
            &c.get_expired,
            &c.get_flushed,
            &c.crawler_reclaimed,
            &c.crawler_items_checked,
            &c.evicted_nonzero,
            &c.lru_bumps,
            &c.moves_to_head,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
    }

    pub fn stats(&self) -> StoreStats {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut s = StoreStats {
            limit_maxbytes: self.mem_limit() as u64,
            total_items: self.counters.total_items.load(Ordering::Relaxed),
            evictions: self.counters.evictions.load(Ordering::Relaxed),
            evicted_unfetched: self.counters.evicted_unfetched.load(Ordering::Relaxed),
            reclaimed: self.counters.reclaimed.load(Ordering::Relaxed),
            expired_unfetched: self.counters.expired_unfetched.load(Ordering::Relaxed),
            get_expired: self.counters.get_expired.load(Ordering::Relaxed),
            get_flushed: self.counters.get_flushed.load(Ordering::Relaxed),
            tombstones_acked: self.counters.tombstones_acked.load(Ordering::Relaxed),
            tombstones_timed_out: self.counters.tombstones_timed_out.load(Ordering::Relaxed),
            tombstones_over_cap: self.counters.tombstones_over_cap.load(Ordering::Relaxed),
            pending_deltas_refused: load(&self.counters.pending_deltas_refused),
            crawler_starts: load(&self.counters.crawler_starts),
            crawler_items_checked: load(&self.counters.crawler_items_checked),
            crawler_reclaimed: load(&self.counters.crawler_reclaimed),
            evicted_nonzero: load(&self.counters.evicted_nonzero),
            evicted_time: load(&self.counters.evicted_time),
            lru_bumps: load(&self.counters.lru_bumps),
            moves_to_head: load(&self.counters.moves_to_head),
            ..Default::default()
        };
        for m in self.shards.iter() {
            let shard = m.lock();
            s.curr_items += shard.items as u64;
            s.bytes += shard.bytes as u64;
            s.tombstones += shard.tombstones.len() as u64;
            s.tombstone_bytes += shard.tomb_bytes as u64;
            s.heap_bytes += shard.heap_bytes as u64;
        }
        {
            let log = self.space.ring.lock();
            s.ring_capacity = log.cap() as u64;
            s.index_bytes = self.space.index_bytes.load(Ordering::Relaxed) as u64;
            s.ring_used = log.used() as u64;
        }
        s.oldest_age = self.tail_age(unix_now()) as u64;
        s
    }

    /// The shard a key lives in (as [`Entry::shard_no`]), without locking anything.
    pub fn shard_of(&self, key: &[u8]) -> usize {
        ((hash_key(&self.hasher, key) >> 32) & self.shard_mask) as usize
    }
}

#[cfg(test)]
mod tests;
