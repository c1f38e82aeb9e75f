//! memcached's command semantics on one locked key: get's access mark is in `entry`; here are
//! set/add/replace/append/prepend/cas (do_store_item), delete, touch, incr/decr and meta
//! invalidation, each publishing the change it makes as one replication record.

use super::clock::Expiry;
use super::counter::{apply_delta, parse_counter, Counter, MAX_SEQ};
use super::entry::{ArithError, Entry, StoreError};
use super::item::{self, Meta};
use super::mutation::{Mutation, MutationKind};
use super::version::Version;

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

impl Entry<'_, '_> {
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
        if len > self.parts.shards.space.item_size_max {
            return Err(StoreError::TooLarge);
        }
        let version = self.parts.stream.clock.tick();
        let cas = cas.unwrap_or_else(|| self.parts.shards.space.cas_for(version));
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
        if let (Some(sink), Some(i)) = (self.parts.stream.sink(), self.idx) {
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
        if data.len() > self.parts.shards.space.item_size_max {
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
                if old_value.len() + data.len() > self.parts.shards.space.item_size_max {
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
        let version = self.parts.stream.clock.tick();
        self.remove_with_tombstone(version);
        let offset = self.publish(MutationKind::Delete, version);
        self.shard.set_tombstone_offset(self.key, version, offset);
        true
    }

    /// Sets a new expiry on the live item; true if there was one.
    pub fn touch(&mut self, exptime: Expiry) -> bool {
        let Some(i) = self.idx else { return false };
        let version = self.parts.stream.clock.tick();
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
        let cas = self
            .parts
            .shards
            .space
            .cas_for(self.parts.stream.clock.tick());
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
        let me = self.parts.stream.clock.node();
        let stuck = self.parts.stream.sink().is_some()
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
        let version = self.parts.stream.clock.tick();
        let cas = self.parts.shards.space.cas_for(version);
        if self.parts.stream.sink().is_none() {
            // Not replicating: nobody needs the contributions.
            let value = apply_delta(current, incr, delta);
            self.write_counter(value, cas, version, in_place, None)?;
            return Ok((value, cas));
        }
        let mut counter = self
            .shard
            .take_counter(i)
            .unwrap_or_else(|| Counter::new(current));
        let (value, mine) = counter.local(self.parts.stream.clock.node(), incr, delta);
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
}
