//! One shard of the cache: a hash index over a slab of items, threaded on an LRU list, plus the
//! tombstones of recently deleted keys. A shard is only ever touched under its own lock.

use super::counter::Counter;
use super::item::{self, Item};
use super::version::Version;
use hashbrown::{HashMap, HashTable};
use std::hash::BuildHasher;

pub(crate) const NIL: u32 = u32::MAX;

/// Bytes charged per tombstone on top of its key.
/// Estimated: a hashbrown slot of 16 (boxed key) + 40 (Tombstone) bytes with its control byte
/// and load-factor slack (up to 1/8 empty, after a growth up to half), plus the key
/// allocation's rounding.
pub(crate) const TOMBSTONE_OVERHEAD: usize = 96;

struct Node {
    item: Option<Item>,
    /// Towards the most recently used end.
    prev: u32,
    /// Towards the least recently used end.
    next: u32,
}

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

pub(crate) struct Shard {
    index: HashTable<u32>,
    nodes: Vec<Node>,
    free: Vec<u32>,
    /// Most recently used.
    head: u32,
    /// Least recently used: the eviction end.
    tail: u32,
    pub items: usize,
    /// Bytes charged for items and tombstones in this shard.
    pub bytes: usize,
    /// The part of `bytes` charged for tombstones.
    pub tomb_bytes: usize,
    pub tombstones: HashMap<Box<[u8]>, Tombstone>,
    /// Bumped whenever an insert may rehash `tombstones` (and so reorder it): a chunked
    /// snapshot walk that saw another value starts the tombstones again.
    pub tomb_gen: u32,
    pub pending: HashMap<Box<[u8]>, Vec<PendingDelta>>,
    /// PN-counter state of the items that were incremented (flag `item::COUNTER`), by slot:
    /// a side table, so that the other items carry nothing for it.
    counters: HashMap<u32, Counter>,
}

pub(crate) fn hash_key<S: BuildHasher>(hasher: &S, key: &[u8]) -> u64 {
    hasher.hash_one(key)
}

impl Shard {
    pub fn new() -> Shard {
        Shard {
            index: HashTable::new(),
            nodes: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            items: 0,
            bytes: 0,
            tomb_bytes: 0,
            tombstones: HashMap::new(),
            tomb_gen: 0,
            pending: HashMap::new(),
            counters: HashMap::new(),
        }
    }

    pub fn find(&self, hash: u64, key: &[u8]) -> Option<u32> {
        let nodes = &self.nodes;
        self.index
            .find(hash, |&idx| {
                nodes[idx as usize]
                    .item
                    .as_ref()
                    .is_some_and(|it| it.key() == key)
            })
            .copied()
    }

    pub fn item(&self, idx: u32) -> &Item {
        self.nodes[idx as usize].item.as_ref().expect("live slot")
    }

    pub fn item_mut(&mut self, idx: u32) -> &mut Item {
        self.nodes[idx as usize].item.as_mut().expect("live slot")
    }

    /// Links a new item (its key must not be present) at the most recently used end.
    pub fn insert<S: BuildHasher>(&mut self, hasher: &S, hash: u64, item: Item) -> u32 {
        self.items += 1;
        self.bytes += item.charge();
        let idx = match self.free.pop() {
            Some(idx) => {
                self.nodes[idx as usize].item = Some(item);
                idx
            }
            None => {
                self.nodes.push(Node {
                    item: Some(item),
                    prev: NIL,
                    next: NIL,
                });
                (self.nodes.len() - 1) as u32
            }
        };
        let nodes = &self.nodes;
        self.index.insert_unique(hash, idx, |&i| {
            hash_key(
                hasher,
                nodes[i as usize].item.as_ref().expect("indexed slot").key(),
            )
        });
        self.link_front(idx);
        idx
    }

    /// Swaps the item in a slot for a new one with the same key and marks it most recently used.
    /// A new write starts a new lineage: the slot's counter state goes with the old item.
    pub fn replace(&mut self, idx: u32, item: Item) -> Item {
        self.bytes += item.charge();
        let old = self.nodes[idx as usize]
            .item
            .replace(item)
            .expect("live slot");
        self.bytes -= old.charge();
        if old.has(item::COUNTER) {
            self.take_counter(idx);
        }
        self.bump(idx);
        old
    }

    pub fn remove(&mut self, hash: u64, idx: u32) -> Item {
        self.unlink(idx);
        if let Ok(entry) = self.index.find_entry(hash, |&i| i == idx) {
            entry.remove();
        }
        let item = self.nodes[idx as usize].item.take().expect("live slot");
        if item.has(item::COUNTER) {
            self.take_counter(idx);
        }
        self.free.push(idx);
        self.items -= 1;
        self.bytes -= item.charge();
        item
    }

    /// Marks a slot most recently used.
    pub fn bump(&mut self, idx: u32) {
        if self.head != idx {
            self.unlink(idx);
            self.link_front(idx);
        }
    }

    /// The least recently used slot.
    pub fn lru_tail(&self) -> Option<u32> {
        (self.tail != NIL).then_some(self.tail)
    }

    /// The slot after `idx` towards the least recently used end... walking from the tail uses
    /// `prev` instead; both are exposed for the sweeper and eviction.
    pub fn towards_head(&self, idx: u32) -> Option<u32> {
        let p = self.nodes[idx as usize].prev;
        (p != NIL).then_some(p)
    }

    /// Every live slot, in no particular order.
    pub fn slots(&self) -> impl Iterator<Item = u32> + '_ {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.item.is_some())
            .map(|(i, _)| i as u32)
    }

    /// (slots allocated, slots on the free list, slots reserved but never used).
    pub fn slot_counts(&self) -> (usize, usize, usize) {
        (
            self.nodes.len(),
            self.free.len(),
            self.nodes.capacity() - self.nodes.len(),
        )
    }

    /// Every live slot from slot number `from` on, in slot order (a resumable walk).
    pub fn slots_from(&self, from: usize) -> impl Iterator<Item = u32> + '_ {
        self.nodes
            .iter()
            .enumerate()
            .skip(from)
            .filter(|(_, n)| n.item.is_some())
            .map(|(i, _)| i as u32)
    }

    /// The PN-counter state of the item in `idx`, if it was incremented.
    pub fn counter(&self, idx: u32) -> Option<&Counter> {
        if self.item(idx).has(item::COUNTER) {
            self.counters.get(&idx)
        } else {
            None
        }
    }

    /// Installs (or replaces) the counter state of the live item in `idx`.
    pub fn set_counter(&mut self, idx: u32, c: Counter) {
        self.bytes += c.charge();
        if let Some(old) = self.counters.insert(idx, c) {
            self.bytes -= old.charge();
        }
        self.item_mut(idx).bits |= item::COUNTER;
    }

    /// Removes the counter state of slot `idx` (the item, if still there, loses its flag).
    pub fn take_counter(&mut self, idx: u32) -> Option<Counter> {
        let c = self.counters.remove(&idx)?;
        self.bytes -= c.charge();
        if let Some(it) = self.nodes[idx as usize].item.as_mut() {
            it.bits &= !item::COUNTER;
        }
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
                self.bytes += key.len() + TOMBSTONE_OVERHEAD;
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
            self.bytes -= key.len() + TOMBSTONE_OVERHEAD;
            self.tomb_bytes -= key.len() + TOMBSTONE_OVERHEAD;
        }
    }

    pub fn add_pending(&mut self, key: &[u8], d: PendingDelta) {
        match self.pending.get_mut(key) {
            Some(list) => list.push(d),
            None => {
                self.bytes += key.len();
                self.pending.insert(key.into(), vec![d]);
            }
        }
        self.bytes += PENDING_OVERHEAD;
    }

    pub fn take_pending(&mut self, key: &[u8]) -> Vec<PendingDelta> {
        match self.pending.remove(key) {
            Some(list) => {
                self.bytes -= key.len() + list.len() * PENDING_OVERHEAD;
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
        self.pending.retain(|k, list| {
            let before = list.len();
            list.retain(|d| d.until > now);
            freed += (before - list.len()) * PENDING_OVERHEAD;
            if list.is_empty() {
                freed += k.len();
            }
            !list.is_empty()
        });
        self.bytes -= freed;
        (by_ack, by_time, by_cap)
    }

    fn unlink(&mut self, idx: u32) {
        let (prev, next) = {
            let n = &self.nodes[idx as usize];
            (n.prev, n.next)
        };
        if prev != NIL {
            self.nodes[prev as usize].next = next;
        } else if self.head == idx {
            self.head = next;
        }
        if next != NIL {
            self.nodes[next as usize].prev = prev;
        } else if self.tail == idx {
            self.tail = prev;
        }
        let n = &mut self.nodes[idx as usize];
        n.prev = NIL;
        n.next = NIL;
    }

    fn link_front(&mut self, idx: u32) {
        let old_head = self.head;
        {
            let n = &mut self.nodes[idx as usize];
            n.prev = NIL;
            n.next = old_head;
        }
        if old_head != NIL {
            self.nodes[old_head as usize].prev = idx;
        }
        self.head = idx;
        if self.tail == NIL {
            self.tail = idx;
        }
    }
}
