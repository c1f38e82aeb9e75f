//! memcached's command semantics on one locked key: [`Entry`] implements get (with its access mark),
//! set/add/replace/append/prepend/cas, delete, touch, incr/decr and meta invalidation, and
//! publishes every change it makes as one replication record.

use super::clock::Expiry;
use super::counter::{Counter, MAX_SEQ};
use super::item::{self, ItemRef, Meta};
use super::mutation::{Mutation, MutationKind};
use super::shard::{NoRoom, Shard, Tombstone};
use super::version::Version;
use super::Store;
use parking_lot::MutexGuard;
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

/// Which of memcached's store commands a write is (do_store_item's `comm`). The store's own
/// type: the text and meta protocols map their requests onto it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    /// Compare-and-swap against the given CAS id.
    Cas(u64),
}

/// Result of [`Entry::store`].
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

/// The locked shard an [`Entry`] works on: its own lock, or one that a batch of replicated
/// records holds for several entries in turn (`Store::apply_remote_batch`).
pub(super) enum ShardRef<'s> {
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

/// One key's slot, with its shard locked. Dropping it releases the lock (unless a batch holds
/// it).
pub struct Entry<'s, 'k> {
    pub(super) store: &'s Store,
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
                self.store
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
    fn write_new(&mut self, value_parts: &[&[u8]], meta: &Meta) -> Result<u32, StoreError> {
        for attempt in 0..2 {
            match self.shard.write(self.key, value_parts, meta) {
                Ok(pos) => return Ok(pos),
                Err(NoRoom::Full(need)) if attempt == 0 => {
                    let made =
                        self.store
                            .make_room_locked(&mut self.shard, self.shard_no, need, None);
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
                    if !self
                        .store
                        .make_room_locked(&mut self.shard, self.shard_no, need, keep)
                    {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        Err(StoreError::OutOfMemory)
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
            let offset = self.publish(
                MutationKind::Put {
                    flags,
                    exptime: 1,
                    value: &[],
                },
                version,
            );
            self.shard.set_tombstone_offset(self.key, version, offset);
            return Ok(cas);
        }
        self.put_raw(value_parts, flags, exptime, cas, version, version)?;
        if let (Some(sink), Some(i)) = (self.store.sink.get(), self.idx) {
            // The record borrows the new item's value: the sink encodes it in place.
            sink.publish_ref(Mutation {
                key: self.key,
                version,
                kind: MutationKind::Put {
                    flags,
                    exptime: exptime.as_abs(),
                    value: self.shard.item(i).value(),
                },
            });
        }
        Ok(cas)
    }

    pub(super) fn put_raw(
        &mut self,
        value_parts: &[&[u8]],
        flags: u32,
        exptime: Expiry,
        cas: u64,
        version: Version,
        base: Version,
    ) -> Result<(), StoreError> {
        self.put_meta(
            value_parts,
            Meta {
                flags,
                exptime: exptime.as_abs(),
                cas,
                version,
                base,
                touched: Version::ZERO,
                last_access: self.now,
                bits: 0,
            },
        )
    }

    /// Writes a new item with this value and meta, replacing the key's live item if any.
    pub(super) fn put_meta(&mut self, value_parts: &[&[u8]], meta: Meta) -> Result<(), StoreError> {
        let pos = self.write_new(value_parts, &meta)?;
        match self.idx {
            Some(old) => self.shard.replace(self.hash, old, pos),
            None => {
                self.shard.remove_tombstone(self.key);
                self.shard.link(&self.store.hasher, self.hash, pos);
            }
        }
        self.idx = Some(pos);
        self.store
            .counters
            .total_items
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// memcached's do_store_item: set/add/replace/append/prepend/cas with its exact outcomes.
    /// `compare` is a CAS id the item must hold (meta `C` on append/prepend; `Cas` mode carries
    /// its own and ignores it; set, replace and add never compare). As in memcached, a CAS id
    /// of 0 compares as none at all: `cas` with 0 answers EXISTS, append with `C0` stores.
    /// `allow_stale` is the meta `I` flag: a lower CAS than the item's stores, marked stale.
    pub fn store(
        &mut self,
        mode: WriteMode,
        flags: u32,
        exptime: Expiry,
        data: &[u8],
        compare: Option<u64>,
        allow_stale: bool,
    ) -> StoreOutcome {
        use WriteMode as M;
        if data.len() > self.store.item_size_max {
            return StoreOutcome::Error(StoreError::TooLarge);
        }
        let compare = match mode {
            M::Cas(c) => Some(c),
            _ => compare,
        };
        let Some(old) = self.item() else {
            return match mode {
                M::Set | M::Add => self.finish_put(&[data], flags, exptime),
                M::Cas(_) => StoreOutcome::NotFound,
                M::Replace | M::Append | M::Prepend => StoreOutcome::NotStored,
            };
        };
        let old_cas = old.cas();
        let old_flags = old.flags();
        let old_exp = Expiry::from_abs(old.exptime(), self.now);
        let old_bits = old.bits();
        #[derive(PartialEq)]
        enum Cas {
            None,
            Match,
            Stale,
            Bad,
        }
        let cas_res = match compare.filter(|&c| c != 0) {
            None => Cas::None,
            Some(c) if c == old_cas => Cas::Match,
            Some(c) if allow_stale && c < old_cas => Cas::Stale,
            Some(_) => Cas::Bad,
        };
        match mode {
            M::Add => {
                // add only adds a missing item, but promotes an existing one (memcached).
                if let Some(i) = self.idx {
                    self.shard.set_bits(i, item::ACCESSED, 0);
                }
                StoreOutcome::NotStored
            }
            M::Cas(_) => match cas_res {
                Cas::Match => self.finish_put(&[data], flags, exptime),
                Cas::Stale => {
                    let out = self.finish_put(&[data], flags, old_exp);
                    if let Some(mut it) = self.item_mut() {
                        it.set_bits(item::STALE | (old_bits & item::TOKEN_SENT));
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
                self.finish_put(&parts, old_flags, old_exp)
            }
            M::Set | M::Replace => self.finish_put(&[data], flags, exptime),
        }
    }

    fn finish_put(&mut self, parts: &[&[u8]], flags: u32, exptime: Expiry) -> StoreOutcome {
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
        let offset = self.publish(MutationKind::Delete, version);
        self.shard.set_tombstone_offset(self.key, version, offset);
        true
    }

    /// Sets a new expiry on the live item; true if there was one.
    pub fn touch(&mut self, exptime: Expiry) -> bool {
        let Some(i) = self.idx else { return false };
        let version = self.store.clock.tick();
        let abs = exptime.as_abs();
        // The value's version (and so its CAS id) stays: a touch only orders expiries.
        let mut m = self.shard.item(i).meta();
        m.exptime = abs;
        m.touched = version;
        if self.set_meta(&m).is_err() {
            // No room for the copy with a touch field, and nothing could be evicted: the item
            // keeps its old expiry, as if the touch had come before it (never published).
            return false;
        }
        let offset = self.publish(MutationKind::Touch { exptime: abs }, version);
        if exptime == Expiry::Expired {
            // Dead now, like a delete: peers do the same, and the tombstone keeps an older
            // write still in flight from bringing the key back here.
            self.remove_with_tombstone(version);
            self.shard.set_tombstone_offset(self.key, version, offset);
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
        if let Some(pos) = self.idx {
            let mut m = self.shard.item(pos).meta();
            m.bits = (m.bits | item::STALE) & !item::TOKEN_SENT;
            m.cas = cas;
            let _ = self.set_meta(&m);
        }
        true
    }

    /// incr/decr with memcached's rules: the value must parse as an unsigned decimal, incr wraps
    /// at 2^64, decr stops at 0; a result no longer than the old value is written in place and
    /// padded with spaces, like memcached does. Returns (new value, new CAS).
    ///
    /// While replicating, the item keeps its PN-counter state (see `counter`): this node's
    /// contribution grows by the change actually made, and the record carries it whole.
    pub fn arith(&mut self, incr: bool, delta: u64) -> Result<(u64, u64), ArithError> {
        self.arith_with(incr, delta, true)
    }

    /// [`Entry::arith`], saying whether the result may be written in place. memcached writes in
    /// place only while nobody else holds the item (a reply not yet written, e.g. after `mg`);
    /// otherwise it allocates a new value of exactly the result's length.
    ///
    /// A replicating node ignores `in_place` and always pads in place: its peers apply the change
    /// in place too (they hold no reply of this connection), so only padding keeps every node's
    /// bytes identical. The difference from memcached is only visible to a client that reads and
    /// changes a counter in one pipelined batch, where memcached itself pads or not depending on
    /// what its other threads hold at that moment.
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
                it.base(),
            )
        };
        let me = self.store.node_id();
        let stuck = self.store.sink.get().is_some()
            && self
                .shard
                .counter(i)
                .and_then(|c| c.get(me))
                .is_some_and(|c| c.seq >= MAX_SEQ);
        if stuck {
            // This node's contribution cannot grow (a peer handed it the largest sequence number
            // it may carry): the result goes out as a full write instead, a new base every node
            // takes whole, so no node ever sends a sequence number past MAX_SEQ.
            let value = apply_delta(current, incr, delta);
            let (flags, exptime) = {
                let it = self.shard.item(i);
                (it.flags(), Expiry::from_abs(it.exptime(), self.now))
            };
            let digits = value.to_string();
            let cas = self
                .put(&[digits.as_bytes()], flags, exptime, None)
                .map_err(ArithError::Store)?;
            return Ok((value, cas));
        }
        let version = self.store.clock.tick();
        let cas = self.store.cas_for(version);
        if self.store.sink.get().is_none() {
            // Not replicating: nobody needs the contributions.
            let value = apply_delta(current, incr, delta);
            self.write_counter(value, cas, version, in_place, None)?;
            return Ok((value, cas));
        }
        let mut counter = self
            .shard
            .take_counter(i)
            .unwrap_or_else(|| Counter::new(current));
        let (value, mine) = counter.local(self.store.node_id(), incr, delta);
        debug_assert_eq!(value, apply_delta(current, incr, delta));
        // In place whatever `in_place` says: see above.
        self.write_counter(value, cas, version, true, Some(counter))?;
        self.publish(
            MutationKind::Delta {
                base,
                incr,
                delta,
                value,
                seq: mine.seq,
                net: mine.net(),
            },
            version,
        );
        Ok((value, cas))
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
                    None => self.shard.link(&self.store.hasher, self.hash, pos),
                }
                self.idx = Some(pos);
                self.store
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
        let until = self.now.saturating_add(self.store.tombstone_secs());
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
    fn publish(&self, kind: MutationKind<&[u8]>, version: Version) -> u64 {
        self.store.publish(Mutation {
            key: self.key,
            version,
            kind,
        })
    }
}

/// memcached's safe_strtoull on an item value (a C string: it ends at the first NUL), by the
/// crate's one implementation of memcached's number rules.
pub fn parse_counter(v: &[u8]) -> Option<u64> {
    crate::numbers::safe_strtoull_c_str(v)
}

pub(super) fn apply_delta(current: u64, incr: bool, delta: u64) -> u64 {
    if incr {
        current.wrapping_add(delta)
    } else {
        current.saturating_sub(delta)
    }
}
