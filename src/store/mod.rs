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
//! This file declares the [`Store`], the parts it is made of and its public interface; each
//! concern is a module that works on the parts it is handed, never on the `Store`:
//!
//! - `shard`: a shard's index, tombstones and pending deltas; `Shards`, all of
//!   them with the hasher that places a key and the `space` they share.
//! - `space`: the ring and its memory accounting (-m, cache_memlimit, headroom, eviction flags).
//! - `flush`: flush_all's horizons and what a flush removes.
//! - `stream`: this node's side of replication (clock, sink, tombstone policy).
//! - `counters`: [`StoreCounters`] and the `stats` view [`StoreStats`].
//! - `entry`: one locked key ([`Entry`]), the lookup, and the primitives commands are made of.
//! - `command`: memcached command semantics on an entry ([`WriteMode`], [`StoreOutcome`]).
//! - `merge`: merge rules for replicated records and the full-resync snapshot walk.
//! - `evict`: eviction at the ring's tail; `sweep`: the background sweeper.
//! - `dump`: the read-only item walk of the key dumps ([`Store::visit_items`]).
//! - `config`, `clock`, `counter`, `arena`, `item`, `version`, `mutation`: the settings, the
//!   coarse clock and expiry rules, PN-counters, the ring's mapping and raw accessors (`unsafe
//!   fn`, called only from `shard` and `evict`, each call with the rule that makes it sound),
//!   the item layout, versions and the records.
//!
//! Imports run one way: `mod.rs` -> `merge`, `dump`, `sweep`, `entry`; `command`, `merge` ->
//! `entry` -> `evict` -> `flush` -> `shard` -> `space` -> `arena` (no file imports one that
//! imports it back, and `mod.rs` only re-exports `command`; `tools/modgraph.py` checks). The
//! store depends on nothing else in the crate but `numbers`: the protocol and the server convert
//! their requests into its types, and replication only sees [`Mutation`] records.

mod arena;
mod clock;
mod command;
mod config;
pub mod counter;
mod counters;
mod dump;
mod entry;
mod evict;
mod flush;
pub mod item;
mod merge;
pub mod mutation;
mod shard;
mod space;
mod stream;
mod sweep;
pub mod version;

pub use clock::{start_coarse_clock, unix_now, Expiry};
pub use command::{StoreOutcome, WriteMode};
pub use config::StoreConfig;
pub use counter::{parse_counter, Contribution, Counter, MAX_SEQ};
pub use counters::{StoreCounters, StoreStats};
pub use dump::{DumpItem, DUMP_BATCH};
pub use entry::{ArithError, Entry, StoreError, BUMP_INTERVAL};
pub use item::{ItemRef, Meta};
pub use merge::SnapshotEntry;
pub use mutation::{ApplyOutcome, Mutation, MutationKind, MutationRef, MutationSink};
pub use space::MemLimitError;
pub use sweep::{SWEEP_INTERVAL_US, SWEEP_SLICE};
pub use version::{HybridClock, Version};

use entry::Parts;
use evict::Evictor;
use flush::Flushes;
use shard::Shards;
use space::Space;
use std::sync::Arc;
use stream::Stream;

/// The cache. Invariants, kept by the parts:
/// - a key lives in the shard its hash picks (`Shards::place`), and only the
///   holder of that shard's lock reads or writes its items' bytes in the ring;
/// - lock order: the evictor mutex, one shard lock, the log lock; under a shard lock the
///   evictor and other shards are only try_locked (`evict`);
/// - -m bounds the ring and the hash indexes together (`space`);
/// - every local change is published once to the sink, a peer's change never (`stream`).
pub struct Store {
    shards: Shards,
    flushes: Flushes,
    stream: Stream,
    pub counters: StoreCounters,
}

impl Store {
    pub fn new(cfg: StoreConfig) -> Store {
        let space = Space::new(
            cfg.mem_limit,
            cfg.node_id,
            cfg.cas_enabled,
            cfg.item_size_max,
            cfg.evict,
        );
        Store {
            shards: Shards::new(cfg.shards, space),
            flushes: Flushes::default(),
            stream: Stream::new(cfg.node_id, cfg.tombstone_secs),
            counters: StoreCounters::default(),
        }
    }

    /// What an [`Entry`] (and the merge rules) work with.
    #[inline]
    fn parts(&self) -> Parts<'_> {
        Parts {
            shards: &self.shards,
            flushes: &self.flushes,
            stream: &self.stream,
            counters: &self.counters,
        }
    }

    /// The longest a tombstone (or a remembered touch, or an increment waiting for its write)
    /// is kept, in seconds.
    pub fn tombstone_secs(&self) -> u32 {
        self.stream.tombstone_secs()
    }

    /// `--repl-tombstone-time`: applies to tombstones made from now on.
    pub fn set_tombstone_secs(&self, secs: u32) {
        self.stream.set_tombstone_secs(secs);
    }

    pub fn clock(&self) -> &HybridClock {
        &self.stream.clock
    }

    pub fn node_id(&self) -> u32 {
        self.stream.clock.node()
    }

    /// Lets items carry versions of `node`, a node that authenticated on a replication link;
    /// false if the node table is full (see `version::NodeTable`).
    pub fn admit_node(&self, node: u32) -> bool {
        self.shards.space.nodes.admit(node)
    }

    /// Whether items may carry versions of `node`: this node, no node (0), a node admitted, or
    /// one named in a peer's snapshot, learned now within its bounded share
    /// (`version::MAX_LEARNED_NODES`). False: refuse whatever names it.
    pub fn know_or_learn_node(&self, node: u32) -> bool {
        self.shards.space.nodes.learn(node)
    }

    pub fn item_size_max(&self) -> usize {
        self.shards.space.item_size_max
    }

    pub fn cas_enabled(&self) -> bool {
        self.shards.space.cas_enabled
    }

    /// The memory limit (-m or cache_memlimit): the ring and the hash indexes together.
    pub fn mem_limit(&self) -> usize {
        self.shards.space.mem_limit()
    }

    /// cache_memlimit (see `space::Space::set_mem_limit`).
    pub fn set_mem_limit(&self, bytes: usize) -> Result<(), MemLimitError> {
        self.shards.space.set_mem_limit(bytes)
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Installs the replication sink; only the first call has an effect.
    pub fn set_mutation_sink(&self, sink: Arc<dyn MutationSink>) {
        self.stream.set_sink(sink);
    }

    /// The CAS id of the write with this version: the same on every node (see
    /// `space::Space::cas_for`).
    pub fn cas_for(&self, version: Version) -> u64 {
        self.shards.space.cas_for(version)
    }

    /// Locks the shard of `key` and looks the key up, dropping it if it has expired or been
    /// flushed.
    ///
    /// Like memcached's do_item_get for a client, a dead item found this way counts in
    /// `get_flushed` or `get_expired`, whatever the command.
    #[inline]
    pub fn entry<'s, 'k>(&'s self, key: &'k [u8]) -> Entry<'s, 'k> {
        self.parts().lookup(key, true)
    }

    /// Runs `f`, the execution of one batch of requests on this thread, telling the sink so that
    /// it wakes its readers once for the whole batch rather than once per record.
    pub fn batch<R>(&self, f: impl FnOnce() -> R) -> R {
        self.stream.batch(f)
    }

    /// Replication's view of its peers, for dropping tombstones (see
    /// `stream::Stream::set_tombstone_watermark`).
    pub fn set_tombstone_watermark(&self, acked: u64, sole_peer: u32) {
        self.stream.set_tombstone_watermark(acked, sole_peer);
    }

    /// `stats reset`: zero the store's resettable counters, as memcached's item stats reset does.
    pub fn reset_counters(&self) {
        self.counters.reset();
    }

    pub fn stats(&self) -> StoreStats {
        let mut s = self.counters.snapshot();
        s.limit_maxbytes = self.mem_limit() as u64;
        for m in self.shards.iter() {
            let shard = m.lock();
            s.curr_items += shard.items as u64;
            s.bytes += shard.bytes as u64;
            s.tombstones += shard.tombstones.len() as u64;
            s.tombstone_bytes += shard.tomb_bytes as u64;
            s.heap_bytes += shard.heap_bytes as u64;
        }
        {
            let space = &self.shards.space;
            let log = space.ring.lock();
            s.ring_capacity = log.cap() as u64;
            s.index_bytes = space.index_bytes.load(std::sync::atomic::Ordering::Relaxed) as u64;
            s.ring_used = log.used() as u64;
        }
        s.oldest_age = self.evictor().tail_age(unix_now()) as u64;
        s
    }

    fn evictor(&self) -> Evictor<'_> {
        self.parts().evictor()
    }

    /// The shard a key lives in (as [`Entry::shard_no`]), without locking anything.
    pub fn shard_of(&self, key: &[u8]) -> usize {
        self.shards.place(key).0
    }

    /// Calls `f` on every live item (not expired, not flushed), shard by shard, until `f`
    /// returns false, in bounded batches per shard lock; never calls `f` with a lock held.
    pub fn visit_items(&self, f: impl FnMut(&DumpItem) -> bool) {
        dump::visit_items(&self.shards, &self.flushes, f)
    }

    /// `flush_all [delay]`: items stored before the flush time become invisible once it passes.
    pub fn flush_all(&self, delay: i64) {
        self.flushes.flush_all(&self.shards, &self.stream, delay)
    }

    /// Every flush_all this node knows that still matters, as (at, version), for a
    /// full-resync snapshot: the one in effect with `at` 0, then the delayed ones.
    pub fn flush_marks(&self) -> Vec<(u32, Version)> {
        self.flushes.marks()
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
        sweep::Sweep {
            shards: &self.shards,
            flushes: &self.flushes,
            stream: &self.stream,
            counters: &self.counters,
        }
        .run(cursors, budget, crawler)
    }

    /// Visits every live item and tombstone of one shard under its lock (full resync).
    pub fn snapshot_shard(&self, shard_no: usize, f: impl FnMut(SnapshotEntry<'_>)) {
        merge::snapshot_shard(&self.shards, &self.flushes, shard_no, f)
    }

    /// Like [`Store::snapshot_shard`], but first calls `mark` with the shard lock held and
    /// returns its result (see `merge::snapshot_shard_marked`).
    pub fn snapshot_shard_marked<T>(
        &self,
        shard_no: usize,
        mark: impl FnOnce() -> T,
        f: impl FnMut(SnapshotEntry<'_>),
    ) -> T {
        merge::snapshot_shard_marked(&self.shards, &self.flushes, shard_no, mark, f)
    }

    /// One bounded piece of a shard's snapshot: at most `max` live items and tombstones from
    /// `cursor` on (0 = the shard's start), under the shard lock; the cursor to continue from,
    /// or None once the shard is done (see `merge::snapshot_chunk` for what a walk sees).
    pub fn snapshot_chunk(
        &self,
        shard_no: usize,
        cursor: usize,
        max: usize,
        f: impl FnMut(SnapshotEntry<'_>),
    ) -> Option<usize> {
        merge::snapshot_chunk(&self.shards, &self.flushes, shard_no, cursor, max, f)
    }

    /// [`Store::snapshot_chunk`], calling `mark` under the shard lock when `cursor` is 0 (the
    /// first chunk of the shard) and returning its result.
    pub fn snapshot_chunk_marked<T>(
        &self,
        shard_no: usize,
        cursor: usize,
        max: usize,
        mark: impl FnOnce() -> T,
        f: impl FnMut(SnapshotEntry<'_>),
    ) -> (Option<T>, Option<usize>) {
        merge::snapshot_chunk_marked(&self.shards, &self.flushes, shard_no, cursor, max, mark, f)
    }

    /// Applies a mutation received from a peer if it is newer than what this node holds.
    /// Never published again (each node sends only its own writes).
    pub fn apply_remote(&self, m: &Mutation) -> ApplyOutcome {
        merge::apply_remote(self.parts(), m)
    }

    /// [`Store::apply_remote`] for a record that borrows its bytes (from a read buffer).
    pub fn apply_remote_ref(&self, m: MutationRef<'_>) -> ApplyOutcome {
        merge::apply_remote_ref(self.parts(), m)
    }

    /// [`Store::apply_remote`] for a run of records in stream order, with one lock per shard
    /// per batch (see `merge::apply_remote_batch`). `done(i, outcome)` reports record `i`.
    pub fn apply_remote_batch(
        &self,
        batch: &[MutationRef<'_>],
        done: impl FnMut(usize, ApplyOutcome),
    ) {
        merge::apply_remote_batch(self.parts(), batch, done)
    }

    /// Applies a snapshot item from a peer's full resync (see `merge::apply_snapshot_item`).
    #[allow(clippy::too_many_arguments)]
    pub fn apply_snapshot_item(
        &self,
        key: &[u8],
        value: &[u8],
        flags: u32,
        exptime: u32,
        version: Version,
        base: Version,
        touched: Version,
        counter: Option<&Counter>,
    ) -> ApplyOutcome {
        merge::apply_snapshot_item(
            self.parts(),
            key,
            value,
            flags,
            exptime,
            version,
            base,
            touched,
            counter,
        )
    }
}

#[cfg(test)]
mod tests;
