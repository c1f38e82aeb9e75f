//! One shard of the cache: a hash index of the positions of its items in the store's ring
//! (`arena`), plus the tombstones of recently deleted keys, the increments waiting for their
//! write and the PN-counter state of incremented items (those three live on the heap, outside
//! the ring, with their own charges). A shard is only ever touched under its own lock; holding
//! it is what entitles a thread to read and write the bytes of the shard's items in the ring.
//! [`Shards`] is all of them, with the hasher that places a key and the `Space` they share;
//! [`ShardRef`] is a locked shard an `Entry` holds (its own lock, or a batch's).

use super::counter::Counter;
use super::item::{self, ItemRef, Meta, NodeIdx};
use super::space::Space;
use super::version::Version;
use hashbrown::{DefaultHashBuilder, HashMap, HashTable};
use parking_lot::{Mutex, MutexGuard};
use std::hash::BuildHasher;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Bytes of a hash index bucket: the item's position and hashbrown's control byte.
pub(crate) const INDEX_BUCKET_BYTES: usize = std::mem::size_of::<u32>() + 1;

/// Why a write found no room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoRoom {
    /// This many contiguous bytes are missing at the head: evicting may help.
    Full(usize),
    /// The item can never be stored (larger than the ring, or a version from too many nodes).
    Never,
}

/// Bytes charged per tombstone on top of its key.
/// Estimated: a hashbrown slot of 16 (boxed key) + 40 (Tombstone) bytes with its control byte
/// and load-factor slack (up to 1/8 empty, after a growth up to half), plus the key
/// allocation's rounding.
pub(crate) const TOMBSTONE_OVERHEAD: usize = 96;

/// A deleted key's version, kept so that an older write arriving later (a record still in
/// flight, a peer's full-resync snapshot) does not bring the key back.
///
/// When it goes (`Shard::purge_tombstones`):
/// - this node's own delete (`offset` != 0): once every peer has acknowledged the delete's
///   record *and* this node has applied everything each peer wrote before acknowledging it
///   (`Store::set_tombstone_watermark`). From then on no peer holds, or has in flight to us, a
///   write older than the delete: their older writes were overwritten by the delete before
///   they acknowledged it, or arrived here already and were overwritten here.
/// - a delete received from a peer: on a node whose only peer is that origin, at once: the
///   origin keeps its own tombstone until we acknowledged it (above), every record of the origin
///   older than the delete came before it on the link, and our own older writes were
///   overwritten here by it. With several peers, a third node may still send an older write and
///   this node cannot know when it has the delete: such tombstones stay until the time limit.
/// - without replication (no peers to tell), at the next sweep.
/// - any tombstone: at `until` (`--repl-tombstone-time` after it was made, for a peer that
///   stays away), or earlier, oldest first, when tombstones take more than a quarter of -m.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tombstone {
    /// The delete's version (ZERO when the entry only remembers a touch).
    pub version: Version,
    /// Offset of this node's own delete record in its replication stream (0: received from a
    /// peer, or no replication).
    pub offset: u64,
    /// Unix seconds after which the tombstone is dropped whatever the peers say.
    pub until: u32,
    /// A touch newer than the delete, or one that arrived for a key this node did not hold,
    /// with its expiry: a write older than the touch that arrives later still takes that expiry
    /// (replication merges value and expiry separately). ZERO = none.
    pub touched: Version,
    pub exptime: u32,
}

/// Bytes charged per buffered delta (plus its key once per key).
pub(crate) const PENDING_OVERHEAD: usize = 48;
/// Pending deltas may take at most 1/PENDING_SHARE of -m (split evenly between the shards).
/// Past it a new one is refused and counted (`pending_deltas_refused`) rather than the oldest
/// dropped: refusing is O(1), and either way one contribution is missing until the origin's next
/// delta on the key (each carries the origin's whole contribution) or a full resync. A peer that keeps sending increments for writes that never come (only an
/// authenticated one can) can no longer grow this without bound until the 24 h purge.
pub(crate) const PENDING_SHARE: usize = 16;

/// An incr/decr received before the write it was based on (in a mesh that write can come from
/// a third node, later): it is added once that write arrives.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PendingDelta {
    pub base: Version,
    pub version: Version,
    /// The origin's contribution (node = `version.node`).
    pub contribution: super::counter::Contribution,
    /// Unix seconds after which it is dropped (the write never came).
    pub until: u32,
}

/// Every method that takes a ring position `pos` expects one of this shard's live items (from
/// its index, or the copy just written and being linked): that is what makes the raw ring
/// accesses inside them sound (see `arena`). Positions only ever come from the shard itself.
pub(crate) struct Shard {
    /// Ring positions (in units, see `Ring::pos`) of the live items.
    index: HashTable<u32>,
    space: Arc<Space>,
    /// Bumped whenever the index may move entries (a resize or an in-place rehash): a walk by
    /// bucket index that sees it change restarts (see [`Shard::walk_from`]).
    generation: u64,
    pub items: usize,
    /// Bytes of this shard's live items in the ring.
    pub bytes: usize,
    /// Bytes charged for tombstones (outside the ring).
    pub tomb_bytes: usize,
    /// Bytes charged for pending deltas and counter state (outside the ring).
    pub heap_bytes: usize,
    /// The part of `heap_bytes` charged for pending deltas (bounded by `PENDING_SHARE`).
    pub pending_bytes: usize,
    pub tombstones: HashMap<Box<[u8]>, Tombstone>,
    /// Bumped whenever an insert may rehash `tombstones` (and so reorder it): a chunked
    /// snapshot walk that saw another value starts the tombstones again.
    pub tomb_gen: u32,
    pub pending: HashMap<Box<[u8]>, Vec<PendingDelta>>,
    /// PN-counter state of the items that were incremented (flag `item::COUNTER`), by ring
    /// position: a side table, so that the other items carry nothing for it. Moves with the item.
    counters: HashMap<u32, Counter>,
}

pub(crate) fn hash_key<S: BuildHasher>(hasher: &S, key: &[u8]) -> u64 {
    hasher.hash_one(key)
}

/// An item view at ring offset `off`, its length read from its header.
///
/// # Safety
///
/// `off` is a live item of a shard the caller holds locked (`&Shard` or `&mut Shard`), and the
/// view is dropped before that borrow ends (its lifetime is tied to `space`, which the caller
/// borrows from the shard).
#[allow(unsafe_code)]
unsafe fn view(space: &Space, off: usize) -> ItemRef<'_> {
    // SAFETY: a live item of a locked shard (this function's contract): only that lock's holder
    // writes its bytes, and `&Shard` keeps this thread's own writers (`&mut Shard`) out.
    let head = unsafe { space.ring.bytes(off, item::HEADER) };
    let (_, _, len) = item::extent_of(head);
    ItemRef::new(
        // SAFETY: as above; the item is `len` bytes long by its own header.
        unsafe { space.ring.bytes(off, len) },
        &space.nodes,
        space.cas_enabled,
        space.ring.padded(len),
    )
}

impl Shard {
    pub fn new(space: Arc<Space>) -> Shard {
        Shard {
            index: HashTable::new(),
            space,
            generation: 0,
            items: 0,
            bytes: 0,
            tomb_bytes: 0,
            heap_bytes: 0,
            pending_bytes: 0,
            tombstones: HashMap::new(),
            tomb_gen: 0,
            pending: HashMap::new(),
            counters: HashMap::new(),
        }
    }

    #[allow(unsafe_code)]
    pub fn find(&self, hash: u64, key: &[u8]) -> Option<u32> {
        let space = &*self.space;
        let matches = |&pos: &u32| {
            // SAFETY: the index holds live items of this shard, locked while `&self` lives;
            // the view is dropped inside the closure.
            let it = unsafe { view(space, space.ring.off(pos)) };
            it.key() == key
        };
        self.index.find(hash, matches).copied()
    }

    /// A view of the live item at `pos` (a position from this shard's index).
    #[allow(unsafe_code)]
    pub fn item(&self, pos: u32) -> ItemRef<'_> {
        // SAFETY: callers pass positions of this shard's live items; the view borrows `self`,
        // so the shard stays locked and unchanged while it lives.
        unsafe { view(&self.space, self.space.ring.off(pos)) }
    }

    /// Sets local bits of a live item in place.
    #[allow(unsafe_code)]
    pub fn set_bits(&mut self, pos: u32, set: u8, clear: u8) {
        let off = self.space.ring.off(pos) + item::MUTABLE_RANGES[2].0;
        // SAFETY: a live item of this shard, locked (`&mut self`); the bits byte is outside
        // the fixed fields and key that the tail walker reads without the shard lock.
        let b = &mut unsafe { self.space.ring.bytes_mut(off, 1) }[0];
        *b = (*b | set) & !clear;
    }

    /// Writes a new item (not linked yet) and returns its position. The header and key are
    /// written under the log lock, the value after it.
    #[allow(unsafe_code)]
    pub fn write(&mut self, key: &[u8], value_parts: &[&[u8]], m: &Meta) -> Result<u32, NoRoom> {
        let vlen: usize = value_parts.iter().map(|p| p.len()).sum();
        let (off, voff) = self.alloc_head(key, vlen, m)?;
        // SAFETY: the value of an allocation just made and not linked yet, written under this
        // shard's lock (`&mut self`): the walker never reads a value.
        let mut dst = unsafe { self.space.ring.bytes_mut(off + voff, vlen) };
        for part in value_parts {
            let (head, rest) = dst.split_at_mut(part.len());
            head.copy_from_slice(part);
            dst = rest;
        }
        Ok(self.space.ring.pos(off))
    }

    /// Allocates an item of this key, value length and meta at the head and writes its header
    /// and key; returns (offset, value offset within the item).
    #[allow(unsafe_code)]
    fn alloc_head(&mut self, key: &[u8], vlen: usize, m: &Meta) -> Result<(usize, usize), NoRoom> {
        let space = &*self.space;
        let shape = item::shape_for(m, space.cas_enabled);
        let n = NodeIdx::of(m, &space.nodes).ok_or(NoRoom::Never)?;
        let head_len = item::HEADER + item::opt_len(shape) + key.len();
        let len = space.ring.padded(head_len + vlen);
        let mut log = space.ring.lock();
        if len > log.cap() {
            return Err(NoRoom::Never);
        }
        let Some(off) = log.alloc(len) else {
            space.low.store(true, Ordering::Relaxed);
            return Err(NoRoom::Full(len));
        };
        // SAFETY: the header and key of the allocation just handed out, written while `log`
        // (the log lock) is still held: nobody else can see these bytes before it is released.
        let head = unsafe { space.ring.bytes_mut(off, head_len) };
        item::encode_head(head, m, n, shape, key, vlen);
        if !log.fits(space.headroom.load(Ordering::Relaxed)) {
            space.low.store(true, Ordering::Relaxed);
        }
        Ok((off, head_len))
    }

    /// Copies the live item at `pos` to the head with a new meta (same key and value); returns
    /// the new position. The caller relinks it.
    #[allow(unsafe_code)]
    pub fn copy_with(&mut self, pos: u32, key: &[u8], m: &Meta) -> Result<u32, NoRoom> {
        let (src, vlen) = {
            let it = self.item(pos);
            (self.space.ring.off(pos) + it.value_off(), it.value().len())
        };
        let (off, voff) = self.alloc_head(key, vlen, m)?;
        // SAFETY: the source is the value of a live item of this shard, locked (`&mut self`);
        // the destination the value of the allocation just made, not linked yet.
        unsafe { self.space.ring.copy(src, off + voff, vlen) };
        Ok(self.space.ring.pos(off))
    }

    /// Changes the meta of the live item at `pos`: in place if its shape holds the new one,
    /// else as a new copy at the head (relinked here). Returns the item's position.
    #[allow(unsafe_code)]
    pub fn set_meta(&mut self, hash: u64, pos: u32, key: &[u8], m: &Meta) -> Result<u32, NoRoom> {
        let shape = self.item(pos).shape();
        let need = item::shape_for(m, self.space.cas_enabled);
        if item::shape_holds(shape, need) {
            let n = NodeIdx::of(m, &self.space.nodes).ok_or(NoRoom::Never)?;
            let opt = item::opt_len(shape);
            let mut head = [0u8; item::MAX_HEAD];
            item::encode_mutable(&mut head[..item::HEADER + opt], m, n, shape);
            let off = self.space.ring.off(pos);
            for (at, len) in item::MUTABLE_RANGES {
                // SAFETY: a live item of this shard, locked (`&mut self`); the mutable header
                // ranges are disjoint from the fixed fields the tail walker reads unlocked.
                unsafe { self.space.ring.bytes_mut(off + at, len) }
                    .copy_from_slice(&head[at..at + len]);
            }
            // SAFETY: as above; the optional fields lie between the header and the key.
            unsafe { self.space.ring.bytes_mut(off + item::HEADER, opt) }
                .copy_from_slice(&head[item::HEADER..item::HEADER + opt]);
            return Ok(pos);
        }
        let new = self.copy_with(pos, key, m)?;
        self.relink(hash, pos, new);
        Ok(new)
    }

    /// The value of the live item at `pos`, writable in place (same length).
    #[allow(unsafe_code)]
    pub fn value_mut(&mut self, pos: u32) -> &mut [u8] {
        let (at, len) = {
            let it = self.item(pos);
            (self.space.ring.off(pos) + it.value_off(), it.value().len())
        };
        // SAFETY: the value of a live item of this shard, locked for as long as the returned
        // borrow of `self` lives; the walker never reads values.
        unsafe { self.space.ring.bytes_mut(at, len) }
    }

    fn charge_of(&self, pos: u32) -> usize {
        self.item(pos).charge()
    }

    /// Links a new item (its key must not be present).
    #[allow(unsafe_code)]
    pub fn link<S: BuildHasher>(&mut self, hasher: &S, hash: u64, pos: u32) {
        let charge = self.charge_of(pos);
        self.items += 1;
        self.bytes += charge;
        if self.index.len() == self.index.capacity() {
            self.generation += 1;
        }
        let space = &*self.space;
        let before = self.index.num_buckets();
        self.index.insert_unique(hash, pos, |&p| {
            // SAFETY: a rehash hands us this shard's live items, locked (`&mut self`); the view
            // is dropped inside the closure.
            hash_key(hasher, unsafe { view(space, space.ring.off(p)) }.key())
        });
        let after = self.index.num_buckets();
        if after != before {
            // The index grew (hashbrown never shrinks it on its own): charge it against -m.
            space
                .index_bytes
                .fetch_add((after - before) * INDEX_BUCKET_BYTES, Ordering::Relaxed);
            space.refit.store(true, Ordering::Relaxed);
            space.low.store(true, Ordering::Relaxed);
        }
    }

    fn mark_died(&self) {
        // Read first: the flag's cache line stays shared while it is already set.
        if !self.space.died.load(Ordering::Relaxed) {
            self.space.died.store(true, Ordering::Relaxed);
        }
    }

    /// Points the index at a new copy of the same key; the counter state moves with it.
    pub fn relink(&mut self, hash: u64, old: u32, new: u32) {
        self.mark_died();
        let (co, cn) = (self.charge_of(old), self.charge_of(new));
        self.bytes = self.bytes + cn - co;
        if let Some(slot) = self.index.find_mut(hash, |&p| p == old) {
            *slot = new;
        }
        if let Some(c) = self.counters.remove(&old) {
            self.counters.insert(new, c);
        }
    }

    /// Swaps the item at `old` for a new one with the same key (already written at `new`).
    /// A new write starts a new lineage: the old item's counter state goes with it.
    pub fn replace(&mut self, hash: u64, old: u32, new: u32) {
        if self.item(old).has(item::COUNTER) {
            self.take_counter(old);
        }
        self.relink(hash, old, new);
    }

    /// Unlinks the item at `pos`: its bytes in the ring are dead from now on.
    pub fn remove(&mut self, hash: u64, pos: u32) {
        self.mark_died();
        if let Ok(entry) = self.index.find_entry(hash, |&p| p == pos) {
            entry.remove();
        }
        if self.item(pos).has(item::COUNTER) {
            self.take_counter(pos);
        }
        let charge = self.charge_of(pos);
        self.items -= 1;
        self.bytes -= charge;
    }

    /// Changes whenever the index may have moved its entries (see [`Shard::walk_from`]).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Visits the live items in index buckets `from..from + max` (positions), in bucket order,
    /// and returns the next bucket to visit, or None at the end. A walk that releases the lock
    /// between calls must restart from 0 when [`Shard::generation`] changed in between: the
    /// index moved its entries (a resize or an in-place rehash), and a walk that went on could
    /// miss items; removals and insertions alone move nothing.
    pub fn walk_from(&self, from: usize, max: usize, mut f: impl FnMut(u32)) -> Option<usize> {
        let n = self.index.num_buckets();
        let end = from.saturating_add(max).min(n);
        for b in from..end {
            if let Some(&pos) = self.index.get_bucket(b) {
                f(pos);
            }
        }
        (end < n).then_some(end)
    }

    /// The PN-counter state of the item at `pos`, if it was incremented.
    pub fn counter(&self, pos: u32) -> Option<&Counter> {
        if self.item(pos).has(item::COUNTER) {
            self.counters.get(&pos)
        } else {
            None
        }
    }

    /// Installs (or replaces) the counter state of the live item at `pos`.
    pub fn set_counter(&mut self, pos: u32, c: Counter) {
        self.heap_bytes += c.charge();
        if let Some(old) = self.counters.insert(pos, c) {
            self.heap_bytes -= old.charge();
        }
        self.set_bits(pos, item::COUNTER, 0);
    }

    /// Removes the counter state of the item at `pos` (which loses its flag).
    pub fn take_counter(&mut self, pos: u32) -> Option<Counter> {
        let c = self.counters.remove(&pos)?;
        self.heap_bytes -= c.charge();
        self.set_bits(pos, 0, item::COUNTER);
        Some(c)
    }

    pub fn add_tombstone(&mut self, key: &[u8], tomb: Tombstone) {
        match self.tombstones.get_mut(key) {
            Some(t) => {
                if tomb.version > t.version {
                    t.version = tomb.version;
                    t.offset = tomb.offset;
                    t.until = t.until.max(tomb.until);
                }
                if tomb.touched > t.touched {
                    t.touched = tomb.touched;
                    t.exptime = tomb.exptime;
                    t.until = t.until.max(tomb.until);
                }
            }
            None => {
                self.tomb_bytes += key.len() + TOMBSTONE_OVERHEAD;
                // No room left without growing or rehashing in place: either reorders.
                if self.tombstones.len() >= self.tombstones.capacity() {
                    self.tomb_gen = self.tomb_gen.wrapping_add(1);
                }
                self.tombstones.insert(key.into(), tomb);
            }
        }
    }

    /// Records where this node's own delete with `version` went in its stream.
    pub fn set_tombstone_offset(&mut self, key: &[u8], version: Version, offset: u64) {
        if let Some(t) = self.tombstones.get_mut(key) {
            if t.version == version {
                t.offset = offset;
            }
        }
    }

    pub fn remove_tombstone(&mut self, key: &[u8]) {
        if self.tombstones.remove(key).is_some() {
            self.tomb_bytes -= key.len() + TOMBSTONE_OVERHEAD;
        }
    }

    /// Buffers `d` unless that would take the pending deltas past `cap` bytes; false if refused.
    pub fn add_pending(&mut self, key: &[u8], d: PendingDelta, cap: usize) -> bool {
        let charge = match self.pending.contains_key(key) {
            true => PENDING_OVERHEAD,
            false => PENDING_OVERHEAD + key.len(),
        };
        if self.pending_bytes + charge > cap {
            return false;
        }
        match self.pending.get_mut(key) {
            Some(list) => list.push(d),
            None => {
                self.pending.insert(key.into(), vec![d]);
            }
        }
        self.heap_bytes += charge;
        self.pending_bytes += charge;
        true
    }

    pub fn take_pending(&mut self, key: &[u8]) -> Vec<PendingDelta> {
        match self.pending.remove(key) {
            Some(list) => {
                let freed = key.len() + list.len() * PENDING_OVERHEAD;
                self.heap_bytes -= freed;
                self.pending_bytes -= freed;
                list
            }
            None => Vec::new(),
        }
    }

    /// Drops the tombstones every peer has (see [`Tombstone`]), those whose time is up, and the
    /// oldest ones past `cap` bytes; returns (acked, timed out, over the cap).
    pub fn purge_tombstones(
        &mut self,
        now: u32,
        acked: u64,
        sole_peer: u32,
        cap: usize,
    ) -> (u64, u64, u64) {
        let (mut by_ack, mut by_time, mut by_cap) = (0, 0, 0);
        let mut freed = 0;
        self.tombstones.retain(|k, t| {
            let delete = t.version != Version::ZERO && t.touched == Version::ZERO;
            let everyone_has_it = delete
                && if acked == u64::MAX {
                    true
                } else if t.offset != 0 {
                    t.offset <= acked
                } else {
                    sole_peer != 0 && t.version.node == sole_peer
                };
            let keep = !everyone_has_it && t.until > now;
            if !keep {
                freed += k.len() + TOMBSTONE_OVERHEAD;
                if everyone_has_it {
                    by_ack += 1;
                } else {
                    by_time += 1;
                }
            }
            keep
        });
        if self.tomb_bytes - freed > cap {
            // Over the memory cap: the oldest go first (the guarantee ends for them).
            let mut ages: Vec<(u32, Box<[u8]>)> = self
                .tombstones
                .iter()
                .map(|(k, t)| (t.until, k.clone()))
                .collect();
            ages.sort_unstable();
            let mut over = self.tomb_bytes - freed - cap;
            for (_, k) in ages {
                if over == 0 {
                    break;
                }
                self.tombstones.remove(&k);
                let b = k.len() + TOMBSTONE_OVERHEAD;
                freed += b;
                over = over.saturating_sub(b);
                by_cap += 1;
            }
        }
        self.tomb_bytes -= freed;
        freed = 0;
        self.pending.retain(|k, list| {
            let before = list.len();
            list.retain(|d| d.until > now);
            freed += (before - list.len()) * PENDING_OVERHEAD;
            if list.is_empty() {
                freed += k.len();
            }
            !list.is_empty()
        });
        self.heap_bytes -= freed;
        self.pending_bytes -= freed;
        (by_ack, by_time, by_cap)
    }
}

/// All the shards of a store, the hasher that places a key in one of them, and the memory
/// they share. A key's shard is the top bits of its hash; the shard's index uses the rest.
pub(crate) struct Shards {
    list: Box<[Mutex<Shard>]>,
    mask: u64,
    hasher: DefaultHashBuilder,
    pub space: Arc<Space>,
}

impl Shards {
    /// `n` shards (rounded up to a power of two, at least one) over `space`.
    pub fn new(n: usize, space: Space) -> Shards {
        let n = n.max(1).next_power_of_two();
        let space = Arc::new(space);
        Shards {
            list: (0..n)
                .map(|_| Mutex::new(Shard::new(space.clone())))
                .collect(),
            mask: (n - 1) as u64,
            hasher: DefaultHashBuilder::default(),
            space,
        }
    }

    /// The shard number and hash of `key`.
    #[inline]
    pub fn place(&self, key: &[u8]) -> (usize, u64) {
        let hash = hash_key(&self.hasher, key);
        (((hash >> 32) & self.mask) as usize, hash)
    }

    /// The shard lock of shard number `no` (from [`Shards::place`]).
    #[inline]
    pub fn get(&self, no: usize) -> &Mutex<Shard> {
        &self.list[no]
    }

    pub fn hasher(&self) -> &DefaultHashBuilder {
        &self.hasher
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Mutex<Shard>> {
        self.list.iter()
    }

    /// Bytes each shard may hold in pending deltas (increments waiting for their base write).
    pub fn pending_cap(&self) -> usize {
        self.space.mem_limit() / PENDING_SHARE / self.list.len()
    }
}

/// The locked shard an `Entry` works on: its own lock, or one that a batch of replicated
/// records holds for several entries in turn (`merge::apply_remote_batch`).
pub(crate) enum ShardRef<'s> {
    Locked(MutexGuard<'s, Shard>),
    Batch(&'s mut Shard),
}

impl std::ops::Deref for ShardRef<'_> {
    type Target = Shard;
    fn deref(&self) -> &Shard {
        match self {
            ShardRef::Locked(g) => g,
            ShardRef::Batch(s) => s,
        }
    }
}

impl std::ops::DerefMut for ShardRef<'_> {
    fn deref_mut(&mut self) -> &mut Shard {
        match self {
            ShardRef::Locked(g) => g,
            ShardRef::Batch(s) => s,
        }
    }
}
