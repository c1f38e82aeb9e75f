//! One key's slot with its shard locked ([`Entry`]), how a key is looked up into one
//! ([`Parts::lookup`]: expired and flushed items dropped on the way), and the primitives every
//! command and merge rule is written with: write a new copy, change the meta, replace the value,
//! leave a tombstone, rewrite a counter's digits, merge PN-counter state, publish a record.
//! memcached's commands on an entry are in `command`, the merge rules of peers' records in
//! `merge`.

use super::clock::unix_now;
use super::counter::{parse_counter, Counter};
use super::counters::StoreCounters;
use super::evict::Evictor;
use super::flush::Flushes;
use super::item::{self, ItemRef, Meta};
use super::mutation::{ApplyOutcome, Mutation, MutationKind};
use super::shard::{NoRoom, Shard, ShardRef, Shards, Tombstone};
use super::stream::Stream;
use super::version::Version;
use std::sync::atomic::Ordering;

/// Seconds between updates of the access time of an item that keeps being fetched
/// (memcached: 60).
pub const BUMP_INTERVAL: u32 = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// Value larger than -I.
    TooLarge,
    /// No room and eviction is off (-M), or the item cannot fit in -m at all.
    OutOfMemory,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithError {
    NotFound,
    NonNumeric,
    Store(StoreError),
}

/// The parts of the store an [`Entry`] works with: the shards (and the memory they share), the
/// flushes, this node's stream (clock, sink, tombstone policy) and the counters.
#[derive(Clone, Copy)]
pub(crate) struct Parts<'s> {
    pub shards: &'s Shards,
    pub flushes: &'s Flushes,
    pub stream: &'s Stream,
    pub counters: &'s StoreCounters,
}

impl<'s> Parts<'s> {
    /// The tail walker over these parts.
    #[inline]
    pub fn evictor(self) -> Evictor<'s> {
        Evictor {
            shards: self.shards,
            flushes: self.flushes,
            counters: self.counters,
        }
    }

    /// Locks the shard of `key` and looks the key up, dropping it if it has expired or been
    /// flushed. `client`: a client's lookup (counted in `get_flushed`/`get_expired` when it
    /// finds a dead item), not a peer's record.
    #[inline]
    pub fn lookup<'k>(self, key: &'k [u8], client: bool) -> Entry<'s, 'k> {
        // Room first, with no lock held: eviction locks the shards of the items it drops.
        self.evictor().ensure_room();
        let (shard_no, hash) = self.shards.place(key);
        let shard = self.shards.get(shard_no).lock();
        self.lookup_in(ShardRef::Locked(shard), shard_no, hash, key, client)
    }

    /// [`Parts::lookup`] in a shard the caller has locked already.
    pub fn lookup_in<'k>(
        self,
        shard: ShardRef<'s>,
        shard_no: usize,
        hash: u64,
        key: &'k [u8],
        client: bool,
    ) -> Entry<'s, 'k> {
        let mut entry = Entry {
            parts: self,
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
            let flushed = self.flushes.is_flushed(&it, entry.now);
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
                let memory =
                    self.flushes
                        .touch_memory(&it, entry.now, self.stream.tombstone_secs());
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
}

/// One key's slot, with its shard locked. Dropping it releases the lock (unless a batch holds
/// it).
pub struct Entry<'s, 'k> {
    pub(super) parts: Parts<'s>,
    pub(super) shard: ShardRef<'s>,
    pub(super) shard_no: usize,
    pub(super) hash: u64,
    pub(super) key: &'k [u8],
    /// The ring position of the key's live item, if any.
    pub(super) idx: Option<u32>,
    pub(super) now: u32,
}

/// Local, never-replicated state of the live item that a caller may change in place.
pub struct ItemMut<'e, 's> {
    shard: &'e mut Shard,
    pos: u32,
    _store: std::marker::PhantomData<&'s ()>,
}

impl ItemMut<'_, '_> {
    /// Sets local bits (FETCHED, STALE, TOKEN_SENT, KEY_BINARY).
    pub fn set_bits(&mut self, bits: u8) {
        self.shard.set_bits(self.pos, bits, 0);
    }

    /// Sets these bits and clears those.
    pub fn change_bits(&mut self, set: u8, clear: u8) {
        self.shard.set_bits(self.pos, set, clear);
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
    pub fn item(&self) -> Option<ItemRef<'_>> {
        self.idx.map(|i| self.shard.item(i))
    }

    /// Mutable access for local, never-replicated state (the local bits). Replicated fields
    /// change only through the methods below.
    pub fn item_mut(&mut self) -> Option<ItemMut<'_, 's>> {
        self.idx.map(|pos| ItemMut {
            shard: &mut self.shard,
            pos,
            _store: std::marker::PhantomData,
        })
    }

    /// Sets the live item's last access time (mg without a bump keeps the old one). Rewrites
    /// the header in place: the access time is in every item.
    pub fn set_last_access(&mut self, at: u32) {
        if let Some(pos) = self.idx {
            let mut m = self.shard.item(pos).meta();
            m.last_access = at;
            // The shape does not change, so this cannot need room.
            let _ = self.shard.set_meta(self.hash, pos, self.key, &m);
        }
    }

    /// Records a fetch: the fetched and accessed bits (the tail walker gives an accessed item a
    /// second pass instead of evicting it) and, at most once per [`BUMP_INTERVAL`] seconds, the
    /// access time. memcached does the same (ITEM_UPDATE_INTERVAL).
    pub fn bump(&mut self) {
        if let Some(pos) = self.idx {
            let it = self.shard.item(pos);
            let (bits, last) = (it.bits(), it.last_access());
            if bits & item::ACCESSED == 0 {
                self.parts
                    .counters
                    .lru_bumps
                    .fetch_add(1, Ordering::Relaxed);
            }
            if bits & (item::FETCHED | item::ACCESSED) != item::FETCHED | item::ACCESSED {
                self.shard.set_bits(pos, item::FETCHED | item::ACCESSED, 0);
            }
            if self.now >= last.saturating_add(BUMP_INTERVAL) {
                self.set_last_access(self.now);
            }
        }
    }

    /// Writes a new copy of the key's item with `meta` and `value_parts` (making room if it
    /// must, with this shard locked) and returns its position; nothing is linked yet.
    pub(super) fn write_new(
        &mut self,
        value_parts: &[&[u8]],
        meta: &Meta,
    ) -> Result<u32, StoreError> {
        for attempt in 0..2 {
            match self.shard.write(self.key, value_parts, meta) {
                Ok(pos) => return Ok(pos),
                Err(NoRoom::Full(need)) if attempt == 0 => {
                    let made = self.parts.evictor().make_room_locked(
                        &mut self.shard,
                        self.shard_no,
                        need,
                        None,
                    );
                    // Eviction may have dropped the key's own item.
                    self.idx = self.shard.find(self.hash, self.key);
                    if !made {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        Err(StoreError::OutOfMemory)
    }

    /// Changes the live item's meta, in place when its layout allows, else as a new copy
    /// (making room if it must).
    pub(super) fn set_meta(&mut self, meta: &Meta) -> Result<(), StoreError> {
        let Some(pos) = self.idx else {
            return Ok(());
        };
        for attempt in 0..2 {
            match self.shard.set_meta(self.hash, pos, self.key, meta) {
                Ok(p) => {
                    self.idx = Some(p);
                    return Ok(());
                }
                Err(NoRoom::Full(need)) if attempt == 0 => {
                    let keep = self.idx;
                    if !self.parts.evictor().make_room_locked(
                        &mut self.shard,
                        self.shard_no,
                        need,
                        keep,
                    ) {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        Err(StoreError::OutOfMemory)
    }

    /// Writes a new item with this value and meta, replacing the key's live item if any.
    pub(super) fn put_meta(&mut self, value_parts: &[&[u8]], meta: Meta) -> Result<(), StoreError> {
        let pos = self.write_new(value_parts, &meta)?;
        match self.idx {
            Some(old) => self.shard.replace(self.hash, old, pos),
            None => {
                self.shard.remove_tombstone(self.key);
                self.shard.link(self.parts.shards.hasher(), self.hash, pos);
            }
        }
        self.idx = Some(pos);
        self.parts
            .counters
            .total_items
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Replaces the counter's digits, in place when they fit (memcached pads with spaces), and
    /// installs `counter` (taken out of the shard by the caller) as the item's PN state; on an
    /// error the item and its counter stay as they were.
    pub(super) fn write_counter(
        &mut self,
        value: u64,
        cas: u64,
        version: Version,
        in_place: bool,
        counter: Option<Counter>,
    ) -> Result<(), ArithError> {
        let Some(i) = self.idx else {
            return Err(ArithError::NotFound);
        };
        let digits = value.to_string();
        let (mut m, old_len) = {
            let it = self.shard.item(i);
            (it.meta(), it.value().len())
        };
        m.cas = cas;
        m.version = version;
        if in_place && digits.len() <= old_len && old_len != 0 {
            // Same length, so only the header may need a field the item lacks (the base, on
            // the first incr): then the whole item is copied first.
            if let Err(e) = self.set_meta(&m) {
                if let Some(c) = counter {
                    self.shard.set_counter(i, c);
                }
                return Err(ArithError::Store(e));
            }
            let j = self.idx.expect("live item");
            let v = self.shard.value_mut(j);
            v[..digits.len()].copy_from_slice(digits.as_bytes());
            v[digits.len()..].fill(b' ');
            if let Some(c) = counter {
                self.shard.set_counter(j, c);
            }
            return Ok(());
        }
        m.last_access = self.now;
        m.bits = 0;
        // A new value of the result's length: same lineage (base), same touch.
        match self.write_new(&[digits.as_bytes()], &m) {
            Ok(pos) => {
                match self.idx {
                    Some(old) => self.shard.replace(self.hash, old, pos),
                    None => self.shard.link(self.parts.shards.hasher(), self.hash, pos),
                }
                self.idx = Some(pos);
                self.parts
                    .counters
                    .total_items
                    .fetch_add(1, Ordering::Relaxed);
                if let Some(c) = counter {
                    self.shard.set_counter(pos, c);
                }
                Ok(())
            }
            Err(e) => {
                if let (Some(c), Some(j)) = (counter, self.idx) {
                    self.shard.set_counter(j, c);
                }
                Err(ArithError::Store(e))
            }
        }
    }

    pub(super) fn remove_with_tombstone(&mut self, version: Version) {
        // A touch newer than this delete outlives the value (see `Tombstone::touched`).
        let (touched, exptime) = self
            .item()
            .filter(|it| it.touched() > version)
            .map(|it| (it.touched(), it.exptime()))
            .unwrap_or((Version::ZERO, 0));
        if let Some(i) = self.idx.take() {
            let h = self.hash;
            self.shard.remove(h, i);
        }
        let until = self.now.saturating_add(self.parts.stream.tombstone_secs());
        self.shard.add_tombstone(
            self.key,
            Tombstone {
                version,
                offset: 0,
                until,
                touched,
                exptime,
            },
        );
    }

    /// Returns the record's offset in this node's stream (0 without replication).
    pub(super) fn publish(&self, kind: MutationKind<&[u8]>, version: Version) -> u64 {
        self.parts.stream.publish(Mutation {
            key: self.key,
            version,
            kind,
        })
    }

    /// Changes the live item's PN-counter state with `f` (which says whether it changed
    /// anything) and rewrites the digits; `version` is the newest version the change brings.
    /// An item never incremented starts from its value (that of the base write).
    pub(super) fn merge_counter(
        &mut self,
        version: Version,
        f: impl FnOnce(&mut Counter) -> bool,
    ) -> ApplyOutcome {
        let Some(i) = self.idx else {
            return ApplyOutcome::Stale;
        };
        let mut counter = match self.shard.take_counter(i) {
            Some(c) => c,
            None => match parse_counter(self.shard.item(i).value()) {
                Some(v) => Counter::new(v),
                // The same write holds a number on the origin: cannot happen.
                None => return ApplyOutcome::Rejected,
            },
        };
        if !f(&mut counter) {
            if !counter.contributions().is_empty() {
                self.shard.set_counter(i, counter);
            }
            return ApplyOutcome::Stale;
        }
        let value = counter.shown();
        let new_version = self.shard.item(i).version().max(version);
        let cas = self.parts.shards.space.cas_for(new_version);
        match self.write_counter(value, cas, new_version, true, Some(counter)) {
            Ok(()) => ApplyOutcome::Applied,
            Err(_) => ApplyOutcome::Rejected,
        }
    }

    /// After a full write with version `written` was applied: merges the contributions that
    /// were waiting for it (if `add`), keeps those based on a later write, drops those based on
    /// an older one.
    pub(super) fn apply_pending(&mut self, written: Version, add: bool) {
        if self.shard.pending.is_empty() {
            return;
        }
        for d in self.shard.take_pending(self.key) {
            if d.base > written {
                // Put back what was just taken out: it fits again, whatever the cap.
                self.shard.add_pending(self.key, d, usize::MAX);
            } else if d.base == written && add {
                let _ = self.merge_counter(d.version, |c| c.merge_one(d.contribution));
            }
        }
    }

    /// The newest touch this node knows for the key (on the item, or remembered by its
    /// tombstone) if it is newer than `version`: (touch version, expiry).
    pub(super) fn touch_newer_than(&self, version: Version) -> Option<(Version, u32)> {
        match self.item() {
            Some(it) => (it.touched() > version).then_some((it.touched(), it.exptime())),
            None => self
                .shard
                .tombstones
                .get(self.key)
                .filter(|t| t.touched > version)
                .map(|t| (t.touched, t.exptime)),
        }
    }
}
