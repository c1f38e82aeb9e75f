//! The cache: sharded LRU with byte-accurate memory accounting, memcached's expiry and CAS rules,
//! and a version on every item and tombstone for replication.
//!
//! Callers lock one key at a time with [`Store::entry`]; all command logic (text and meta) runs
//! on an [`Entry`] while its shard lock is held, and never awaits. Every change made through an
//! `Entry` is published as one [`Mutation`] to the replication sink; changes that arrive from peers
//! go through [`Store::apply_remote`] and are never published again.

pub mod item;
pub mod mutation;
mod shard;
pub mod version;

pub use item::Item;
pub use mutation::{ApplyOutcome, Mutation, MutationKind, MutationSink};
pub use version::{HybridClock, Version};

use bytes::Bytes;
use hashbrown::DefaultHashBuilder;
use parking_lot::{Mutex, MutexGuard};
use shard::{hash_key, PendingDelta, Shard, Tombstone};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds between LRU moves of an item that keeps being fetched (memcached: 60).
pub const BUMP_INTERVAL: u32 = 60;

/// memcached's REALTIME_MAXDELTA: larger exptimes are absolute unix times.
const RELATIVE_EXPTIME_MAX: i64 = 60 * 60 * 24 * 30;

#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// -m in bytes: items and tombstones are charged against it.
    pub mem_limit: usize,
    /// -I: largest value.
    pub item_size_max: usize,
    /// false with -M: refuse writes instead of evicting.
    pub evict: bool,
    /// false with -C: every CAS id is 0.
    pub cas_enabled: bool,
    /// Number of independently locked shards (rounded up to a power of two).
    pub shards: usize,
    /// This node's id, stamped into every version it creates.
    pub node_id: u32,
    /// How long a delete's tombstone is kept, in seconds.
    pub tombstone_secs: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            mem_limit: 64 * 1024 * 1024,
            item_size_max: 1024 * 1024,
            evict: true,
            cas_enabled: true,
            shards: 64,
            node_id: 1,
            tombstone_secs: 3600,
        }
    }
}

/// An expiration time after memcached's rules have been applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    Never,
    /// Absolute unix seconds.
    At(u32),
    /// Negative, or an absolute time already past: the item is dead on arrival.
    Expired,
}

impl Expiry {
    /// memcached's realtime(): 0 never, up to 30 days relative, else absolute; negative = expired.
    pub fn from_client(exptime: i64, now: u32) -> Expiry {
        if exptime == 0 {
            Expiry::Never
        } else if exptime < 0 {
            Expiry::Expired
        } else if exptime > RELATIVE_EXPTIME_MAX {
            if exptime <= now as i64 {
                Expiry::Expired
            } else {
                Expiry::At(exptime.min(u32::MAX as i64) as u32)
            }
        } else {
            Expiry::At(now.saturating_add(exptime as u32))
        }
    }

    /// The stored form: absolute seconds, 0 = never; `Expired` becomes 1 (long past).
    pub fn as_abs(self) -> u32 {
        match self {
            Expiry::Never => 0,
            Expiry::At(t) => t,
            Expiry::Expired => 1,
        }
    }

    pub fn from_abs(abs: u32, now: u32) -> Expiry {
        match abs {
            0 => Expiry::Never,
            t if t <= now => Expiry::Expired,
            t => Expiry::At(t),
        }
    }
}

/// Current unix time in seconds.
///
/// Once [`start_coarse_clock`] has run (the server does), this is a load from a value a
/// background thread refreshes ten times a second, like memcached's `current_time`: the store
/// reads the clock for every key, and the system call showed in profiles. Before that (library
/// use, tests) it reads the system clock.
pub fn unix_now() -> u32 {
    match COARSE_NOW.load(Ordering::Relaxed) {
        0 => wall_secs(),
        now => now,
    }
}

static COARSE_NOW: AtomicU32 = AtomicU32::new(0);

fn wall_secs() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}

/// Starts the process-wide clock thread behind [`unix_now`] (idempotent). Call it after any
/// fork (daemonizing): a thread does not survive a fork, and a clock nobody ticks would freeze.
pub fn start_coarse_clock() {
    static START: std::sync::Once = std::sync::Once::new();
    START.call_once(|| {
        COARSE_NOW.store(wall_secs(), Ordering::Relaxed);
        let ticker = std::thread::Builder::new()
            .name("repcached-clock".into())
            .spawn(|| loop {
                std::thread::sleep(std::time::Duration::from_millis(100));
                COARSE_NOW.store(wall_secs(), Ordering::Relaxed);
            });
        if ticker.is_err() {
            // No thread, no cache: fall back to reading the system clock every time.
            COARSE_NOW.store(0, Ordering::Relaxed);
        }
    });
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// Value larger than -I.
    TooLarge,
    /// No room and eviction is off (-M), or the item cannot fit in -m at all.
    OutOfMemory,
}

/// Result of a text-protocol style store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOutcome {
    /// Stored, with the new CAS id.
    Stored(u64),
    NotStored,
    /// CAS mismatch.
    Exists,
    /// cas on a missing key.
    NotFound,
    Error(StoreError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithError {
    NotFound,
    NonNumeric,
    Store(StoreError),
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
    /// Client lookups that found the key's item already expired / invalidated by flush_all.
    pub get_expired: AtomicU64,
    pub get_flushed: AtomicU64,
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
    pub get_expired: u64,
    pub get_flushed: u64,
}

/// What a full-resync snapshot yields for each key in a shard.
pub enum SnapshotEntry<'a> {
    Item(&'a Item),
    /// A deleted key (`version` ZERO if it only remembers a touch: `touched`, `exptime`).
    Tombstone {
        key: &'a [u8],
        version: Version,
        touched: Version,
        exptime: u32,
    },
}

/// A flush_all horizon: once `at` has passed, items older than `version` are gone.
#[derive(Debug, Clone, Copy)]
struct FlushMark {
    at: u32,
    version: Version,
}

pub struct Store {
    shards: Box<[Mutex<Shard>]>,
    shard_mask: u64,
    hasher: DefaultHashBuilder,
    mem_limit: AtomicUsize,
    used: AtomicUsize,
    item_size_max: usize,
    evict: bool,
    cas_enabled: bool,
    tombstone_secs: u32,
    clock: HybridClock,
    sink: OnceLock<Arc<dyn MutationSink>>,
    flush_active: AtomicBool,
    flush: Mutex<FlushMark>,
    pub counters: StoreCounters,
}

impl Store {
    pub fn new(cfg: StoreConfig) -> Store {
        let n = cfg.shards.max(1).next_power_of_two();
        Store {
            shards: (0..n).map(|_| Mutex::new(Shard::new())).collect(),
            shard_mask: (n - 1) as u64,
            hasher: DefaultHashBuilder::default(),
            mem_limit: AtomicUsize::new(cfg.mem_limit),
            used: AtomicUsize::new(0),
            item_size_max: cfg.item_size_max,
            evict: cfg.evict,
            cas_enabled: cfg.cas_enabled,
            tombstone_secs: cfg.tombstone_secs,
            clock: HybridClock::new(cfg.node_id),
            sink: OnceLock::new(),
            flush_active: AtomicBool::new(false),
            flush: Mutex::new(FlushMark {
                at: 0,
                version: Version::ZERO,
            }),
            counters: StoreCounters::default(),
        }
    }

    pub fn clock(&self) -> &HybridClock {
        &self.clock
    }

    pub fn node_id(&self) -> u32 {
        self.clock.node()
    }

    pub fn item_size_max(&self) -> usize {
        self.item_size_max
    }

    pub fn cas_enabled(&self) -> bool {
        self.cas_enabled
    }

    pub fn mem_limit(&self) -> usize {
        self.mem_limit.load(Ordering::Relaxed)
    }

    /// cache_memlimit: takes effect for the next writes (eviction catches up lazily).
    pub fn set_mem_limit(&self, bytes: usize) {
        self.mem_limit.store(bytes, Ordering::Relaxed);
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

    /// [`Store::entry`] for replication: peers' writes are not client fetches.
    fn entry_for_peer<'s, 'k>(&'s self, key: &'k [u8]) -> Entry<'s, 'k> {
        self.lookup(key, false)
    }

    fn lookup<'s, 'k>(&'s self, key: &'k [u8], client: bool) -> Entry<'s, 'k> {
        let hash = hash_key(&self.hasher, key);
        let shard_no = ((hash >> 32) & self.shard_mask) as usize;
        let shard = self.shards[shard_no].lock();
        let start_bytes = shard.bytes;
        let mut entry = Entry {
            store: self,
            shard,
            shard_no,
            hash,
            key,
            idx: None,
            now: unix_now(),
            start_bytes,
        };
        entry.idx = entry.shard.find(hash, key);
        if let Some(idx) = entry.idx {
            let it = entry.shard.item(idx);
            let flushed = self.is_flushed(it, entry.now);
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
                let memory = self.flushed_touch_memory(it, entry.now);
                entry.shard.remove(hash, idx);
                if let Some(t) = memory {
                    entry.shard.add_tombstone(key, t);
                }
                entry.idx = None;
                self.counters.reclaimed.fetch_add(1, Ordering::Relaxed);
                if unfetched {
                    self.counters
                        .expired_unfetched
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        entry
    }

    fn is_flushed(&self, it: &Item, now: u32) -> bool {
        if !self.flush_active.load(Ordering::Relaxed) {
            return false;
        }
        let mark = *self.flush.lock();
        // By the full write: increments made elsewhere on a flushed value die with it.
        mark.at <= now && it.base < mark.version
    }

    fn flush_version(&self) -> Option<Version> {
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
            key: Bytes::new(),
            version,
            kind: MutationKind::Flush { at },
        });
        self.install_flush(at, version, now);
    }

    fn install_flush(&self, at: u32, version: Version, now: u32) {
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
        for (i, m) in self.shards.iter().enumerate() {
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
            let _ = i;
        }
    }

    /// A touch newer than the flush that removes `it` outlives the value, like after a delete
    /// (see `Tombstone::touched`): what the removal must remember, if anything.
    fn touch_memory(&self, it: &Item, flush: Version, now: u32) -> Option<Tombstone> {
        (it.touched > flush && !it.is_expired(now)).then(|| Tombstone {
            version: Version::ZERO,
            until: now.saturating_add(self.tombstone_secs),
            touched: it.touched,
            exptime: it.exptime,
        })
    }

    /// `touch_memory` for an item being dropped lazily because a flush has taken effect.
    fn flushed_touch_memory(&self, it: &Item, now: u32) -> Option<Tombstone> {
        if it.is_expired(now) {
            return None;
        }
        self.flush_version()
            .and_then(|f| self.touch_memory(it, f, now))
    }

    fn account(&self, before: usize, after: usize) {
        if after > before {
            self.used.fetch_add(after - before, Ordering::Relaxed);
        } else if before > after {
            self.used.fetch_sub(before - after, Ordering::Relaxed);
        }
    }

    fn publish(&self, m: Mutation) {
        if let Some(sink) = self.sink.get() {
            sink.publish(m);
        }
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
        ] {
            counter.store(0, Ordering::Relaxed);
        }
    }

    pub fn stats(&self) -> StoreStats {
        let mut s = StoreStats {
            limit_maxbytes: self.mem_limit() as u64,
            total_items: self.counters.total_items.load(Ordering::Relaxed),
            evictions: self.counters.evictions.load(Ordering::Relaxed),
            evicted_unfetched: self.counters.evicted_unfetched.load(Ordering::Relaxed),
            reclaimed: self.counters.reclaimed.load(Ordering::Relaxed),
            expired_unfetched: self.counters.expired_unfetched.load(Ordering::Relaxed),
            get_expired: self.counters.get_expired.load(Ordering::Relaxed),
            get_flushed: self.counters.get_flushed.load(Ordering::Relaxed),
            ..Default::default()
        };
        for m in self.shards.iter() {
            let shard = m.lock();
            s.curr_items += shard.items as u64;
            s.tombstones += shard.tombstones.len() as u64;
        }
        s.bytes = self.used.load(Ordering::Relaxed) as u64;
        s
    }

    /// Background work for one sweeper tick: reclaims expired and flushed items and old
    /// tombstones, looking at no more than `budget` slots per shard so a lock is never held
    /// for long. `cursor` carries the position between calls.
    pub fn sweep(&self, cursors: &mut Vec<usize>, budget: usize) -> usize {
        cursors.resize(self.shards.len(), 0);
        let now = unix_now();
        let mut reclaimed = 0;
        for (i, m) in self.shards.iter().enumerate() {
            let mut shard = m.lock();
            let before = shard.bytes;
            let slots: Vec<u32> = shard.slots().collect();
            if slots.is_empty() {
                cursors[i] = 0;
            } else {
                let start = cursors[i] % slots.len();
                let end = (start + budget).min(slots.len());
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
            shard.purge_tombstones(now);
            self.account(before, shard.bytes);
        }
        self.counters
            .reclaimed
            .fetch_add(reclaimed as u64, Ordering::Relaxed);
        reclaimed
    }

    /// Visits every live item and tombstone of one shard under its lock (full resync).
    pub fn snapshot_shard(&self, shard_no: usize, f: impl FnMut(SnapshotEntry<'_>)) {
        self.snapshot_shard_marked(shard_no, || (), f)
    }

    /// Like [`Store::snapshot_shard`], but first calls `mark` with the shard lock held and
    /// returns its result. Replication reads its backlog position there: records published
    /// before the mark are part of the snapshot, records after it are not (no write to this
    /// shard can slip in between, because writers publish under the same lock).
    pub fn snapshot_shard_marked<T>(
        &self,
        shard_no: usize,
        mark: impl FnOnce() -> T,
        mut f: impl FnMut(SnapshotEntry<'_>),
    ) -> T {
        let now = unix_now();
        let shard = self.shards[shard_no].lock();
        let marked = mark();
        for idx in shard.slots() {
            let it = shard.item(idx);
            if !it.is_expired(now) && !self.is_flushed(it, now) {
                f(SnapshotEntry::Item(it));
            }
        }
        for (key, t) in shard.tombstones.iter() {
            f(SnapshotEntry::Tombstone {
                key,
                version: t.version,
                touched: t.touched,
                exptime: t.exptime,
            });
        }
        marked
    }

    /// The shard a key lives in (as [`Entry::shard_no`]), without locking anything.
    pub fn shard_of(&self, key: &[u8]) -> usize {
        ((hash_key(&self.hasher, key) >> 32) & self.shard_mask) as usize
    }

    /// Applies a mutation received from a peer if it is newer than what this node holds.
    /// Never published again (each node sends only its own writes).
    pub fn apply_remote(&self, m: &Mutation) -> ApplyOutcome {
        if let MutationKind::Flush { at } = m.kind {
            // A delayed flush's version is its future horizon: not observed, since moving this
            // node's clock there would make writes made here before the flush time outlive it
            // (the origin's do not). An immediate one is: a write made here right after it
            // must be newer than it on every node (in the same millisecond, the origin's
            // logical counter may be ahead of ours).
            let now = unix_now();
            if at == 0 {
                self.clock.observe(m.version);
            }
            self.install_flush(at, m.version, now);
            return ApplyOutcome::Applied;
        }
        self.clock.observe(m.version);
        if m.key.is_empty() || m.key.len() > 250 {
            return ApplyOutcome::Rejected;
        }
        let mut e = self.entry_for_peer(&m.key);
        // The newest full write or delete this node knows for the key: the item's base (its
        // increments do not make it newer than a later write elsewhere: a set newer than the
        // base wins over them, on every node), a tombstone, or the flush horizon.
        let held = e
            .item()
            .map(|it| it.base)
            .or_else(|| e.shard.tombstones.get(&m.key[..]).map(|t| t.version))
            .unwrap_or(Version::ZERO)
            .max(self.flush_version().unwrap_or(Version::ZERO));
        match &m.kind {
            MutationKind::Put {
                flags,
                exptime,
                value,
            } => {
                if m.version <= held {
                    return ApplyOutcome::Stale;
                }
                if value.len() > self.item_size_max {
                    return ApplyOutcome::Rejected;
                }
                let exp = Expiry::from_abs(*exptime, e.now);
                if exp == Expiry::Expired {
                    e.remove_with_tombstone(m.version);
                    return ApplyOutcome::Applied;
                }
                // A touch newer than this write (made or received here before it arrived)
                // keeps its expiry.
                let touch = e.touch_newer_than(m.version);
                let exp = match touch {
                    Some((_, t)) => Expiry::from_abs(t, e.now),
                    None => exp,
                };
                let cas = self.cas_for(m.version);
                match e.put_raw(&[value], *flags, exp, cas, m.version, m.version) {
                    Ok(()) => {
                        if let (Some((touched, _)), Some(it)) = (touch, e.item_mut()) {
                            it.touched = touched;
                        }
                        e.apply_pending(m.version, true);
                        ApplyOutcome::Applied
                    }
                    Err(_) => ApplyOutcome::Rejected,
                }
            }
            MutationKind::Delete => {
                if m.version <= held {
                    return ApplyOutcome::Stale;
                }
                e.remove_with_tombstone(m.version);
                ApplyOutcome::Applied
            }
            MutationKind::Touch { exptime }
                if Expiry::from_abs(*exptime, e.now) == Expiry::Expired =>
            {
                // A touch into the past ends the value like a delete (the origin left a
                // tombstone), and orders like one.
                if m.version <= held {
                    return ApplyOutcome::Stale;
                }
                e.remove_with_tombstone(m.version);
                ApplyOutcome::Applied
            }
            MutationKind::Touch { exptime } => {
                let now = e.now;
                match e.item_mut() {
                    // Newer than both the value's full write (which set an expiry too; its
                    // increments did not) and any other touch: the expiry is the touch's.
                    Some(it) if m.version > it.base.max(it.touched) => {
                        it.exptime = *exptime;
                        it.touched = m.version;
                        if Expiry::from_abs(*exptime, now) == Expiry::Expired {
                            e.remove_with_tombstone(m.version);
                        }
                        ApplyOutcome::Applied
                    }
                    Some(_) => ApplyOutcome::Stale,
                    None if m.version <= held => ApplyOutcome::Stale,
                    None => {
                        // The write it touched has not arrived yet (another origin in a mesh)
                        // or was deleted here concurrently: remember the expiry for it.
                        let until = now.saturating_add(self.tombstone_secs);
                        let tomb = Tombstone {
                            version: Version::ZERO,
                            until,
                            touched: m.version,
                            exptime: *exptime,
                        };
                        e.shard.add_tombstone(&m.key, tomb);
                        ApplyOutcome::Applied
                    }
                }
            }
            MutationKind::Delta {
                base,
                incr,
                delta,
                value,
            } => e.apply_remote_delta(m.version, *base, *incr, *delta, *value, held),
            MutationKind::Flush { .. } => unreachable!("handled above"),
        }
    }

    /// Applies a snapshot item from a peer's full resync: like a Put, but keeps the item's delta
    /// base so that increments still in flight on the link are applied on top of it. Value and
    /// expiry merge separately: the value by (base, version), the expiry by the newer of the
    /// full write (`base`) and the last touch (`touched`) on each side.
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
    ) -> ApplyOutcome {
        self.clock.observe(version.max(touched));
        if key.is_empty() || key.len() > 250 || value.len() > self.item_size_max {
            return ApplyOutcome::Rejected;
        }
        let mut e = self.entry_for_peer(key);
        // Writes order by (base, version): the newer full write wins; on the same base (two
        // nodes incremented the same write) the later increment wins. A tombstone or flush
        // beats every item whose full write is older.
        let ours = e
            .item()
            .map(|it| (it.base, it.version))
            .or_else(|| e.shard.tombstones.get(key).map(|t| (t.version, t.version)))
            .unwrap_or((Version::ZERO, Version::ZERO));
        let flushed = self.flush_version().is_some_and(|f| base <= f);
        let theirs = base.max(touched);
        if (base, version) <= ours || flushed {
            // Our value is as new or newer; their expiry may still be the newer one, set by a
            // touch: replay that touch.
            drop(e);
            if touched == Version::ZERO {
                return ApplyOutcome::Stale;
            }
            return self.apply_remote(&Mutation {
                key: Bytes::copy_from_slice(key),
                version: touched,
                kind: MutationKind::Touch { exptime },
            });
        }
        // Their value wins; the expiry is whichever side changed it last.
        let ours = e
            .item()
            .map(|it| (it.base.max(it.touched), it.exptime, it.touched))
            .or_else(|| {
                e.touch_newer_than(Version::ZERO)
                    .map(|(t, exp)| (t, exp, t))
            });
        let (exptime, touched) = match ours {
            Some((v, exp, t)) if v > theirs => (exp, t),
            _ => (exptime, touched),
        };
        let exp = Expiry::from_abs(exptime, e.now);
        if exp == Expiry::Expired {
            return ApplyOutcome::Stale;
        }
        let cas = self.cas_for(version);
        match e.put_raw(&[value], flags, exp, cas, version, base) {
            Ok(()) => {
                if let Some(it) = e.item_mut() {
                    it.touched = touched;
                }
                // A snapshot item already holds whatever increments its sender had applied:
                // waiting deltas on the same write cannot be told apart from those, drop them.
                e.apply_pending(base, false);
                ApplyOutcome::Applied
            }
            Err(_) => ApplyOutcome::Rejected,
        }
    }

    /// Frees memory until `need` more bytes fit, evicting least recently used items, first from
    /// the locked shard, then from others that are not busy. Returns false if it cannot.
    fn make_room(&self, own: &mut Shard, own_start: usize, need: usize, keep: Option<u32>) -> bool {
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
        let h = hash_key(&self.hasher, it.key());
        shard.remove(h, idx);
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

/// One key's slot, with its shard locked. Dropping it releases the lock.
pub struct Entry<'s, 'k> {
    store: &'s Store,
    shard: MutexGuard<'s, Shard>,
    shard_no: usize,
    hash: u64,
    key: &'k [u8],
    idx: Option<u32>,
    now: u32,
    start_bytes: usize,
}

impl Drop for Entry<'_, '_> {
    fn drop(&mut self) {
        self.store.account(self.start_bytes, self.shard.bytes);
    }
}

impl<'s, 'k> Entry<'s, 'k> {
    pub fn key(&self) -> &'k [u8] {
        self.key
    }

    /// Unix seconds at the time the entry was locked.
    pub fn now(&self) -> u32 {
        self.now
    }

    pub fn shard_no(&self) -> usize {
        self.shard_no
    }

    /// The live item, if any.
    pub fn item(&self) -> Option<&Item> {
        self.idx.map(|i| self.shard.item(i))
    }

    /// Mutable access for local, never-replicated state (`bits`, `last_access`). Changing
    /// replicated fields through this bypasses replication: use the methods below instead.
    pub fn item_mut(&mut self) -> Option<&mut Item> {
        match self.idx {
            Some(i) => Some(self.shard.item_mut(i)),
            None => None,
        }
    }

    /// Records a fetch: fetched bit, and at most once per [`BUMP_INTERVAL`] seconds the access
    /// time and a move to the most recently used end. memcached does the same
    /// (ITEM_UPDATE_INTERVAL): hot items stay near the head without rewriting the list, and
    /// three random cache lines, on every hit.
    pub fn bump(&mut self) {
        if let Some(i) = self.idx {
            let now = self.now;
            let it = self.shard.item_mut(i);
            it.bits |= item::FETCHED;
            if now >= it.last_access.saturating_add(BUMP_INTERVAL) {
                it.last_access = now;
                self.shard.bump(i);
            }
        }
    }
    /// Writes the item (replacing any old one) and publishes it. `cas` of None takes a fresh
    /// id. Returns the item's CAS id.
    pub fn put(
        &mut self,
        value_parts: &[&[u8]],
        flags: u32,
        exptime: Expiry,
        cas: Option<u64>,
    ) -> Result<u64, StoreError> {
        let len: usize = value_parts.iter().map(|p| p.len()).sum();
        if len > self.store.item_size_max {
            return Err(StoreError::TooLarge);
        }
        let version = self.store.clock.tick();
        let cas = cas.unwrap_or_else(|| self.store.cas_for(version));
        // Deltas waiting for an older write can never apply now.
        self.apply_pending(version, false);
        if exptime == Expiry::Expired {
            // Stored already dead: no item remains, and a tombstone keeps older writes out.
            self.remove_with_tombstone(version);
            self.publish(
                MutationKind::Put {
                    flags,
                    exptime: 1,
                    value: Bytes::new(),
                },
                version,
            );
            return Ok(cas);
        }
        self.put_raw(value_parts, flags, exptime, cas, version, version)?;
        if self.store.sink.get().is_some() {
            let value = Bytes::copy_from_slice(self.item().map(|it| it.value()).unwrap_or(&[]));
            self.publish(
                MutationKind::Put {
                    flags,
                    exptime: exptime.as_abs(),
                    value,
                },
                version,
            );
        }
        Ok(cas)
    }

    fn put_raw(
        &mut self,
        value_parts: &[&[u8]],
        flags: u32,
        exptime: Expiry,
        cas: u64,
        version: Version,
        base: Version,
    ) -> Result<(), StoreError> {
        let mut item = Item::from_parts(self.key, value_parts);
        item.flags = flags;
        item.exptime = exptime.as_abs();
        item.last_access = self.now;
        item.cas = cas;
        item.version = version;
        item.base = base;
        let charge = item.charge();
        let freed = self.item().map(|it| it.charge()).unwrap_or(0);
        let need = charge.saturating_sub(freed);
        let start = self.start_bytes;
        if !self.store.make_room(&mut self.shard, start, need, self.idx) {
            return Err(StoreError::OutOfMemory);
        }
        match self.idx {
            Some(i) => {
                self.shard.replace(i, item);
            }
            None => {
                self.shard.remove_tombstone(self.key);
                self.idx = Some(self.shard.insert(&self.store.hasher, self.hash, item));
            }
        }
        self.store
            .counters
            .total_items
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// memcached's do_store_item: set/add/replace/append/prepend/cas with its exact outcomes.
    /// `cas_in` 0 means no CAS check (except for `Cas` mode, where it is the compare value).
    /// `allow_stale` is the meta `I` flag: a lower CAS than the item's stores, marked stale.
    pub fn store(
        &mut self,
        mode: crate::protocol::StoreMode,
        flags: u32,
        exptime: Expiry,
        data: &[u8],
        cas_in: u64,
        allow_stale: bool,
    ) -> StoreOutcome {
        use crate::protocol::StoreMode as M;
        if data.len() > self.store.item_size_max {
            return StoreOutcome::Error(StoreError::TooLarge);
        }
        let compare = match mode {
            M::Cas(c) => c,
            _ => cas_in,
        };
        let Some(old) = self.item() else {
            return match mode {
                M::Set | M::Add => self.finish_put(&[data], flags, exptime, 0),
                M::Cas(_) => StoreOutcome::NotFound,
                M::Replace | M::Append | M::Prepend => StoreOutcome::NotStored,
            };
        };
        let old_cas = old.cas;
        let old_flags = old.flags;
        let old_exp = Expiry::from_abs(old.exptime, self.now);
        let old_bits = old.bits;
        #[derive(PartialEq)]
        enum Cas {
            None,
            Match,
            Stale,
            Bad,
        }
        let cas_res = if compare == 0 {
            Cas::None
        } else if compare == old_cas {
            Cas::Match
        } else if allow_stale && compare < old_cas {
            Cas::Stale
        } else {
            Cas::Bad
        };
        match mode {
            M::Add => {
                // add only adds a missing item, but promotes an existing one (memcached).
                if let Some(i) = self.idx {
                    self.shard.bump(i);
                }
                StoreOutcome::NotStored
            }
            M::Cas(_) => match cas_res {
                Cas::Match => self.finish_put(&[data], flags, exptime, 0),
                Cas::Stale => {
                    let out = self.finish_put(&[data], flags, old_exp, 0);
                    if let Some(it) = self.item_mut() {
                        it.bits |= item::STALE | (old_bits & item::TOKEN_SENT);
                    }
                    out
                }
                _ => StoreOutcome::Exists,
            },
            M::Append | M::Prepend => {
                if cas_res != Cas::None && cas_res != Cas::Match {
                    return StoreOutcome::Exists;
                }
                let old_value = self
                    .item()
                    .map(|it| it.value().to_vec())
                    .unwrap_or_default();
                if old_value.len() + data.len() > self.store.item_size_max {
                    return StoreOutcome::Error(StoreError::TooLarge);
                }
                let parts: [&[u8]; 2] = if mode == M::Append {
                    [&old_value, data]
                } else {
                    [data, &old_value]
                };
                self.finish_put(&parts, old_flags, old_exp, 0)
            }
            M::Set | M::Replace => self.finish_put(&[data], flags, exptime, 0),
        }
    }

    fn finish_put(
        &mut self,
        parts: &[&[u8]],
        flags: u32,
        exptime: Expiry,
        _unused: u64,
    ) -> StoreOutcome {
        match self.put(parts, flags, exptime, None) {
            Ok(cas) => StoreOutcome::Stored(cas),
            Err(e) => StoreOutcome::Error(e),
        }
    }

    /// Deletes the item; true if there was one.
    pub fn delete(&mut self) -> bool {
        if self.idx.is_none() {
            return false;
        }
        let version = self.store.clock.tick();
        self.remove_with_tombstone(version);
        self.publish(MutationKind::Delete, version);
        true
    }

    /// Sets a new expiry on the live item; true if there was one.
    pub fn touch(&mut self, exptime: Expiry) -> bool {
        let Some(i) = self.idx else { return false };
        let version = self.store.clock.tick();
        let abs = exptime.as_abs();
        {
            // The value's version (and so its CAS id) stays: a touch only orders expiries.
            let it = self.shard.item_mut(i);
            it.exptime = abs;
            it.touched = version;
        }
        self.publish(MutationKind::Touch { exptime: abs }, version);
        if exptime == Expiry::Expired {
            // Dead now, like a delete: peers do the same, and the tombstone keeps an older
            // write still in flight from bringing the key back here.
            self.remove_with_tombstone(version);
        }
        true
    }

    /// meta `md <key> I`: marks the live item stale under a fresh CAS so that the next mg wins
    /// the recache token, with an optional new expiry (published as a touch). STALE, TOKEN_SENT
    /// and the CAS id are local state, so peers see only the expiry change. False if no item.
    pub fn invalidate(&mut self, exptime: Option<Expiry>) -> bool {
        if self.idx.is_none() {
            return false;
        }
        if let Some(exp) = exptime {
            self.touch(exp);
        }
        let cas = self.store.cas_for(self.store.clock.tick());
        if let Some(it) = self.item_mut() {
            it.bits = (it.bits | item::STALE) & !item::TOKEN_SENT;
            it.cas = cas;
        }
        true
    }

    /// incr/decr with memcached's rules: the value must parse as an unsigned decimal, incr wraps
    /// at 2^64, decr stops at 0; a result no longer than the old value is written in place and
    /// padded with spaces, like memcached does. Returns (new value, new CAS).
    pub fn arith(&mut self, incr: bool, delta: u64) -> Result<(u64, u64), ArithError> {
        self.arith_with(incr, delta, true)
    }

    /// [`Entry::arith`], saying whether the result may be written in place. memcached writes in
    /// place only while nobody else holds the item (a reply not yet written, e.g. after `mg`);
    /// otherwise it allocates a new value of exactly the result's length.
    pub fn arith_with(
        &mut self,
        incr: bool,
        delta: u64,
        in_place: bool,
    ) -> Result<(u64, u64), ArithError> {
        let Some(i) = self.idx else {
            return Err(ArithError::NotFound);
        };
        let (current, base) = {
            let it = self.shard.item(i);
            (
                parse_counter(it.value()).ok_or(ArithError::NonNumeric)?,
                it.base,
            )
        };
        let value = apply_delta(current, incr, delta);
        let version = self.store.clock.tick();
        let cas = self.store.cas_for(version);
        self.write_counter(value, cas, version, in_place)?;
        self.publish(
            MutationKind::Delta {
                base,
                incr,
                delta,
                value,
            },
            version,
        );
        Ok((value, cas))
    }

    /// Replaces the counter's digits, in place when they fit (memcached pads with spaces).
    fn write_counter(
        &mut self,
        value: u64,
        cas: u64,
        version: Version,
        in_place: bool,
    ) -> Result<(), ArithError> {
        let Some(i) = self.idx else {
            return Err(ArithError::NotFound);
        };
        let digits = value.to_string();
        let it = self.shard.item_mut(i);
        if in_place && digits.len() <= it.value().len() && !it.value().is_empty() {
            let v = it.value_mut();
            v[..digits.len()].copy_from_slice(digits.as_bytes());
            v[digits.len()..].fill(b' ');
            it.cas = cas;
            it.version = version;
            return Ok(());
        }
        let (flags, exp, base, touched) = (
            it.flags,
            Expiry::from_abs(it.exptime, self.now),
            it.base,
            it.touched,
        );
        self.put_raw(&[digits.as_bytes()], flags, exp, cas, version, base)
            .map_err(ArithError::Store)?;
        if let Some(it) = self.item_mut() {
            it.touched = touched;
        }
        Ok(())
    }

    fn apply_remote_delta(
        &mut self,
        version: Version,
        base: Version,
        incr: bool,
        delta: u64,
        _origin_value: u64,
        held: Version,
    ) -> ApplyOutcome {
        match self
            .item()
            .map(|it| (it.base, it.version, parse_counter(it.value())))
        {
            Some((item_base, item_version, Some(current))) if item_base == base => {
                // Same lineage: add the peer's delta to ours, so concurrent increments add up.
                let next = apply_delta(current, incr, delta);
                let new_version = item_version.max(version);
                let cas = self.store.cas_for(new_version);
                match self.write_counter(next, cas, new_version, true) {
                    Ok(()) => ApplyOutcome::Applied,
                    Err(_) => ApplyOutcome::Rejected,
                }
            }
            // A newer full write, or a delete/flush newer than the base, wins over the increment.
            Some((item_base, _, _)) if item_base > base => ApplyOutcome::Stale,
            _ if base <= held => ApplyOutcome::Stale,
            _ => {
                // We do not hold the write it was based on yet (in a mesh it may come from a
                // third node, after this): keep the delta and add it when that write arrives.
                let until = self.now.saturating_add(self.store.tombstone_secs);
                let pending = PendingDelta {
                    base,
                    version,
                    incr,
                    delta,
                    until,
                };
                self.shard.add_pending(self.key, pending);
                ApplyOutcome::Applied
            }
        }
    }

    /// After a full write with version `written` was applied: adds the deltas that were waiting
    /// for it, keeps those based on a later write, drops those based on an older one.
    fn apply_pending(&mut self, written: Version, add: bool) {
        if self.shard.pending.is_empty() {
            return;
        }
        for d in self.shard.take_pending(self.key) {
            if d.base > written {
                self.shard.add_pending(self.key, d);
            } else if d.base == written && add {
                let counter = self
                    .item()
                    .map(|it| (it.version, parse_counter(it.value())));
                if let Some((item_version, Some(current))) = counter {
                    let next = apply_delta(current, d.incr, d.delta);
                    let v = item_version.max(d.version);
                    let _ = self.write_counter(next, self.store.cas_for(v), v, true);
                }
            }
        }
    }

    /// The newest touch this node knows for the key (on the item, or remembered by its
    /// tombstone) if it is newer than `version`: (touch version, expiry).
    fn touch_newer_than(&self, version: Version) -> Option<(Version, u32)> {
        match self.item() {
            Some(it) => (it.touched > version).then_some((it.touched, it.exptime)),
            None => self
                .shard
                .tombstones
                .get(self.key)
                .filter(|t| t.touched > version)
                .map(|t| (t.touched, t.exptime)),
        }
    }

    fn remove_with_tombstone(&mut self, version: Version) {
        // A touch newer than this delete outlives the value (see `Tombstone::touched`).
        let (touched, exptime) = self
            .item()
            .filter(|it| it.touched > version)
            .map(|it| (it.touched, it.exptime))
            .unwrap_or((Version::ZERO, 0));
        if let Some(i) = self.idx.take() {
            let h = self.hash;
            self.shard.remove(h, i);
        }
        let until = self.now.saturating_add(self.store.tombstone_secs);
        self.shard.add_tombstone(
            self.key,
            Tombstone {
                version,
                until,
                touched,
                exptime,
            },
        );
    }

    fn publish(&self, kind: MutationKind, version: Version) {
        if self.store.sink.get().is_some() {
            self.store.publish(Mutation {
                key: Bytes::copy_from_slice(self.key),
                version,
                kind,
            });
        }
    }
}

/// memcached's safe_strtoull on an item value: optional leading white space and sign, decimal
/// digits, then the end, white space or a NUL byte; a negative number is refused.
pub fn parse_counter(v: &[u8]) -> Option<u64> {
    let is_space = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r');
    if v.is_empty() {
        return None;
    }
    let mut i = 0;
    while i < v.len() && is_space(v[i]) {
        i += 1;
    }
    let mut negative = false;
    if i < v.len() && (v[i] == b'+' || v[i] == b'-') {
        negative = v[i] == b'-';
        i += 1;
    }
    let digits_start = i;
    let mut n: u64 = 0;
    while i < v.len() && v[i].is_ascii_digit() {
        n = n.checked_mul(10)?.checked_add((v[i] - b'0') as u64)?;
        i += 1;
    }
    if i == digits_start {
        return None;
    }
    // strtoull stops at the first non-digit; memcached accepts white space there, or the NUL
    // that ends a C string (a value may contain one).
    if i < v.len() && !is_space(v[i]) && v[i] != 0 {
        return None;
    }
    if negative {
        let wrapped = n.wrapping_neg();
        // strtoull negates; memcached refuses it only when the result looks negative as signed.
        if (wrapped as i64) < 0 {
            return None;
        }
        return Some(wrapped);
    }
    Some(n)
}

fn apply_delta(current: u64, incr: bool, delta: u64) -> u64 {
    if incr {
        current.wrapping_add(delta)
    } else {
        current.saturating_sub(delta)
    }
}

#[cfg(test)]
mod tests;
