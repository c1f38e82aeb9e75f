//! The store's own counters ([`StoreCounters`], bumped where things happen, read by `stats`) and
//! the point-in-time view `stats` renders ([`StoreStats`]). The server keeps the per-command ones.

use std::sync::atomic::{AtomicU64, Ordering};

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

impl StoreCounters {
    /// `stats reset`: zero the resettable counters, as memcached's item stats reset does.
    pub(super) fn reset(&self) {
        for counter in [
            &self.total_items,
            &self.evictions,
            &self.evicted_unfetched,
            &self.reclaimed,
            &self.expired_unfetched,
            &self.get_expired,
            &self.get_flushed,
            &self.crawler_reclaimed,
            &self.crawler_items_checked,
            &self.evicted_nonzero,
            &self.lru_bumps,
            &self.moves_to_head,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
    }

    /// `stats` fields read from the counters (the rest of [`StoreStats`] left at zero).
    pub(super) fn snapshot(&self) -> StoreStats {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StoreStats {
            total_items: load(&self.total_items),
            evictions: load(&self.evictions),
            evicted_unfetched: load(&self.evicted_unfetched),
            reclaimed: load(&self.reclaimed),
            expired_unfetched: load(&self.expired_unfetched),
            get_expired: load(&self.get_expired),
            get_flushed: load(&self.get_flushed),
            tombstones_acked: load(&self.tombstones_acked),
            tombstones_timed_out: load(&self.tombstones_timed_out),
            tombstones_over_cap: load(&self.tombstones_over_cap),
            pending_deltas_refused: load(&self.pending_deltas_refused),
            crawler_starts: load(&self.crawler_starts),
            crawler_items_checked: load(&self.crawler_items_checked),
            crawler_reclaimed: load(&self.crawler_reclaimed),
            evicted_nonzero: load(&self.evicted_nonzero),
            evicted_time: load(&self.evicted_time),
            lru_bumps: load(&self.lru_bumps),
            moves_to_head: load(&self.moves_to_head),
            ..Default::default()
        }
    }
}
