//! flush_all: its horizons ([`Flushes`]: the flush in effect and the delayed ones waiting for
//! their time), whether an item is flushed, the immediate removal of what a new flush kills, and
//! what a removal by flush must remember (a newer touch outlives the value).
//!
//! A flush removes every item whose full write is older than its version once its time has
//! come; before that it changes nothing, and in particular it never makes a replicated record
//! stale. Items a flush kills and nobody removed yet are dropped lazily by whoever finds them
//! (a lookup, the sweeper, the tail walker), each asking [`Flushes::is_flushed`].

use super::clock::{unix_now, Expiry};
use super::item::ItemRef;
use super::mutation::{Mutation, MutationKind};
use super::shard::{hash_key, Shards, Tombstone};
use super::stream::Stream;
use super::version::Version;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Index buckets looked at per shard lock hold while dropping what a flush killed.
const DROP_SLICE: usize = 2048;

/// Most delayed flushes waiting for their time at once (any client may send `flush_all N`).
const MAX_PENDING_FLUSHES: usize = 64;

/// flush_all horizons. A flush removes every item whose full write is older than its version
/// once its time has come; before that it changes nothing, and in particular it never makes a
/// replicated record stale (a delayed flush used to, and stopped replication for its delay).
#[derive(Debug, Default)]
struct FlushMarks {
    /// The newest flush in effect (ZERO: none).
    effective: Version,
    /// Delayed flushes whose time has not come: (absolute unix seconds, version), by time.
    pending: Vec<(u32, Version)>,
}

impl FlushMarks {
    /// The newest flush in effect at `now`, after moving the delayed ones whose time has come.
    fn effective_at(&mut self, now: u32) -> Version {
        let due = self.pending.partition_point(|&(at, _)| at <= now);
        for (_, v) in self.pending.drain(..due) {
            self.effective = self.effective.max(v);
        }
        self.effective
    }

    /// Adds a flush; true if it is in effect now and newer than the one in effect before.
    fn add(&mut self, at: u32, version: Version, now: u32) -> bool {
        let before = self.effective_at(now);
        if at <= now {
            self.effective = before.max(version);
            return version > before;
        }
        if version <= before || self.pending.iter().any(|&(_, v)| v == version) {
            // Already covered (the same record again, from a snapshot or a second link).
            return false;
        }
        let i = self.pending.partition_point(|&(t, _)| t <= at);
        self.pending.insert(i, (at, version));
        if self.pending.len() > MAX_PENDING_FLUSHES {
            // Over the bound, the flush with the oldest horizon goes: every later one kills
            // what it would have (a delayed flush's version is its time), only later.
            if let Some(k) = (0..self.pending.len()).min_by_key(|&k| self.pending[k].1) {
                self.pending.remove(k);
            }
        }
        false
    }
}

/// The flushes this node knows. `active` is set once there was one, so that a cache never
/// flushed pays one relaxed load per item check and no lock.
#[derive(Debug, Default)]
pub(crate) struct Flushes {
    active: AtomicBool,
    marks: Mutex<FlushMarks>,
}

impl Flushes {
    /// Whether a flush in effect at `now` kills `it`. Every lookup asks: inlined, one relaxed
    /// load while there never was a flush.
    #[inline(always)]
    pub fn is_flushed(&self, it: &ItemRef<'_>, now: u32) -> bool {
        self.active.load(Ordering::Relaxed) && self.kills(it, now)
    }

    #[cold]
    #[inline(never)]
    fn kills(&self, it: &ItemRef<'_>, now: u32) -> bool {
        // By the full write: increments made elsewhere on a flushed value die with it.
        it.base() < self.marks.lock().effective_at(now)
    }

    /// The newest flush in effect at `now` (None: there never was one). A delayed flush whose
    /// time has not come is not: records older than it must still apply until then.
    pub fn in_effect(&self, now: u32) -> Option<Version> {
        if !self.active.load(Ordering::Relaxed) {
            return None;
        }
        Some(self.marks.lock().effective_at(now)).filter(|v| *v != Version::ZERO)
    }

    /// Every flush_all this node knows that still matters, as (at, version), for a
    /// full-resync snapshot (a snapshot of items alone would not tell the peer to drop its
    /// older ones): the one in effect with `at` 0, then the delayed ones with their time.
    pub fn marks(&self) -> Vec<(u32, Version)> {
        if !self.active.load(Ordering::Relaxed) {
            return Vec::new();
        }
        let mut marks = self.marks.lock();
        let effective = marks.effective_at(unix_now());
        (effective != Version::ZERO)
            .then_some((0, effective))
            .into_iter()
            .chain(marks.pending.iter().copied())
            .collect()
    }

    /// `flush_all [delay]` from a client: published, then installed.
    pub fn flush_all(&self, shards: &Shards, stream: &Stream, delay: i64) {
        let now = unix_now();
        let at = if delay > 0 {
            Expiry::from_client(delay, now).as_abs()
        } else {
            0
        };
        let mut version = stream.clock.tick();
        if at > now {
            // A delayed flush also kills what is written before it takes effect (memcached:
            // items whose time is at or before the flush time): its version is its time.
            // The clock is not moved there, so writes made before the flush time stay older.
            let horizon = Version::new((at as u64 * 1000) << 16, 0);
            version = version.max(horizon);
        }
        stream.publish(Mutation {
            key: &[],
            version,
            kind: MutationKind::Flush { at },
        });
        self.install(shards, stream.tombstone_secs(), at, version, now);
    }

    /// Adds a flush (a client's or a peer's); one in effect now and newer than the one before
    /// removes what it kills at once. `tombstone_secs`: how long a surviving touch is kept.
    pub fn install(
        &self,
        shards: &Shards,
        tombstone_secs: u32,
        at: u32,
        version: Version,
        now: u32,
    ) {
        let newer = self.marks.lock().add(at, version, now);
        self.active.store(true, Ordering::Relaxed);
        if newer {
            drop_older_than(shards, tombstone_secs, version);
        }
    }

    /// [`touch_memory`] for an item being dropped lazily because a flush has taken effect.
    pub fn touch_memory(
        &self,
        it: &ItemRef<'_>,
        now: u32,
        tombstone_secs: u32,
    ) -> Option<Tombstone> {
        if it.is_expired(now) {
            return None;
        }
        self.in_effect(now)
            .and_then(|f| touch_memory(it, f, now, tombstone_secs))
    }
}

/// Removes every item older than `version` right away (immediate flush), a bounded chunk
/// of each shard's index per lock hold.
fn drop_older_than(shards: &Shards, tombstone_secs: u32, version: Version) {
    for m in shards.iter() {
        let mut bucket = Some(0);
        let mut generation = m.lock().generation();
        let mut doomed = Vec::new();
        while let Some(from) = bucket {
            let mut shard = m.lock();
            if shard.generation() != generation {
                // The index moved its entries: start over (removing twice is harmless).
                generation = shard.generation();
                bucket = Some(0);
                continue;
            }
            doomed.clear();
            bucket = shard.walk_from(from, DROP_SLICE, |pos| doomed.push(pos));
            let now = unix_now();
            for &pos in &doomed {
                let it = shard.item(pos);
                if it.base() >= version {
                    continue;
                }
                let memory = touch_memory(&it, version, now, tombstone_secs);
                let key: Box<[u8]> = it.key().into();
                let h = hash_key(shards.hasher(), &key);
                shard.remove(h, pos);
                if let Some(t) = memory {
                    shard.add_tombstone(&key, t);
                }
            }
        }
    }
}

/// A touch newer than the flush that removes `it` outlives the value, like after a delete
/// (see `Tombstone::touched`): what the removal must remember, if anything.
fn touch_memory(
    it: &ItemRef<'_>,
    flush: Version,
    now: u32,
    tombstone_secs: u32,
) -> Option<Tombstone> {
    (it.touched() > flush && !it.is_expired(now)).then(|| Tombstone {
        version: Version::ZERO,
        offset: 0,
        until: now.saturating_add(tombstone_secs),
        touched: it.touched(),
        exptime: it.exptime(),
    })
}
