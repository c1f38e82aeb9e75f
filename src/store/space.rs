//! The memory every shard shares ([`Space`]): the ring of -m bytes the items live in, the node
//! table of their versions, the settings the item layout depends on, the memory limit and the
//! share of it the hash indexes take, the room the ring keeps free at its head, and the flags
//! and mutex of eviction (whose walk is `evict`).

use super::arena::{GrowError, Ring};
use super::version::{NodeTable, Version};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Why `cache_memlimit` changed nothing (memcached answers both with MEMLIMIT_ADJUST_FAILED).
#[derive(Debug, thiserror::Error)]
pub enum MemLimitError {
    #[error("{asked} bytes is more than the {reserved} bytes of address space reserved at start")]
    OutOfBounds { asked: usize, reserved: usize },
    #[error("the item ring cannot grow: {0}")]
    Grow(std::io::Error),
}

/// What every shard shares. Invariants: the ring's capacity is what the indexes leave of
/// `limit` (at least half of it, see [`Space::fit_ring`]); `headroom` follows the capacity.
pub(crate) struct Space {
    pub ring: Ring,
    pub nodes: NodeTable,
    pub cas_enabled: bool,
    /// -I: the largest value.
    pub item_size_max: usize,
    /// Contiguous free bytes the ring should keep at its head (see `evict::Evictor::ensure_room`).
    pub headroom: AtomicUsize,
    /// Set by a write that left less than `headroom` free: the next lookup evicts first.
    pub low: AtomicBool,
    /// Set when an item's bytes in the ring die (removed, or replaced by a new copy): with -M,
    /// moving live items to reclaim dead space is tried again only after that.
    pub died: AtomicBool,
    /// The memory limit (-m, or the last cache_memlimit): the ring gets what the shards' hash
    /// indexes leave of it, so that -m bounds items and index together (see [`Space::fit_ring`]).
    pub limit: AtomicUsize,
    /// Bytes of every shard's hash index (buckets and control bytes).
    pub index_bytes: AtomicUsize,
    /// Set when an index grew: the next lookup gives the ring its new, smaller share of -m.
    pub refit: AtomicBool,
    /// One evictor at a time (see `evict`): taken with lock() only with no other lock held,
    /// with try_lock() by a writer that holds its shard lock.
    pub evicting: Mutex<()>,
    /// Eviction is on (not -M).
    pub evict: bool,
}

impl Space {
    pub fn new(
        mem_limit: usize,
        node_id: u32,
        cas_enabled: bool,
        item_size_max: usize,
        evict: bool,
    ) -> Space {
        let space = Space {
            ring: Ring::new(mem_limit),
            nodes: NodeTable::new(node_id),
            cas_enabled,
            item_size_max,
            headroom: AtomicUsize::new(0),
            low: AtomicBool::new(false),
            died: AtomicBool::new(false),
            limit: AtomicUsize::new(mem_limit),
            index_bytes: AtomicUsize::new(0),
            refit: AtomicBool::new(false),
            evicting: Mutex::new(()),
            evict,
        };
        space.set_headroom();
        space
    }

    /// The memory limit (-m or cache_memlimit): the ring and the hash indexes together.
    pub fn mem_limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
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

    /// cache_memlimit: the ring's capacity changes at once; when it shrinks, the next writes
    /// evict down to it. Refused, with nothing changed, above the address space reserved at
    /// start (32 GiB, or -m if larger) or when the system will not let the ring grow (mprotect
    /// fails: RLIMIT_DATA, strict overcommit): memcached's "unable to adjust".
    pub fn set_mem_limit(&self, bytes: usize) -> Result<(), MemLimitError> {
        let reserved = self.ring.reserved();
        if bytes > reserved {
            return Err(MemLimitError::OutOfBounds {
                asked: bytes,
                reserved,
            });
        }
        let old = self.limit.swap(bytes, Ordering::Relaxed);
        if let Err(GrowError(e)) = self.fit_ring() {
            // Back to the old limit, unless another cache_memlimit has set one meanwhile.
            let _ = self
                .limit
                .compare_exchange(bytes, old, Ordering::Relaxed, Ordering::Relaxed);
            // The old limit's share is no more than what is already usable: no mprotect.
            let _ = self.fit_ring();
            return Err(MemLimitError::Grow(e));
        }
        self.low.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Gives the ring what the hash indexes leave of the memory limit, so that -m bounds the
    /// resident memory of items and index together (memcached leaves its hash table outside
    /// -m; filled past -m it stays near 1.1x -m, and so do we this way, while holding more
    /// items). The ring keeps at least half of the limit whatever the indexes take.
    /// Fails, leaving the ring as it was, when growing it needs an mprotect that fails.
    pub fn fit_ring(&self) -> Result<(), GrowError> {
        let limit = self.mem_limit();
        let index = self.index_bytes.load(Ordering::Relaxed);
        let set = self
            .ring
            .set_cap(limit.saturating_sub(index).max(limit / 2));
        self.set_headroom();
        set.map(|_| ())
    }

    /// The contiguous room the ring keeps free at its head: -m/64, at least 64 KiB and two of
    /// the largest items, at most an eighth of -m. Writes in flight on other threads take from
    /// it between a lookup's check and their allocation.
    fn set_headroom(&self) {
        let cap = self.ring.lock().cap();
        let h = (cap / 64)
            .max(64 << 10)
            .max(2 * (self.item_size_max + 512))
            .min(cap / 8);
        self.headroom.store(h, Ordering::Relaxed);
    }
}
