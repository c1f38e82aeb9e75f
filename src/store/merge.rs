//! Merge rules for replicated records: how a peer's mutation ([`apply_remote`]) or a
//! full-resync snapshot item ([`apply_snapshot_item`]) is ordered against what this node
//! holds (versions, tombstones, flush horizons, per-origin increments waiting for their base),
//! and the snapshot iteration a full resync sends.

use super::clock::{unix_now, Expiry};
use super::counter::{Contribution, Counter};
use super::entry::{Entry, Parts};
use super::flush::Flushes;
use super::item::{ItemRef, Meta};
use super::mutation::{ApplyOutcome, Mutation, MutationKind, MutationRef};
use super::shard::{PendingDelta, ShardRef, Shards, Tombstone};
use super::version::Version;
use std::sync::atomic::Ordering;

/// Snapshot cursors from here on walk the tombstones (see [`snapshot_chunk`]).
const TOMBS: usize = 1 << 62;
/// Below [`TOMBS`], a cursor is the shard index's generation (bits 40..62, see
/// `Shard::generation`) and the next bucket to visit (bits 0..40).
const BUCKET_BITS: u32 = 40;
const GEN_MASK: u64 = (1 << 22) - 1;

/// What a full-resync snapshot yields for each key in a shard.
pub enum SnapshotEntry<'a> {
    /// A live item, with its PN-counter state if it was incremented.
    Item(ItemRef<'a>, Option<&'a Counter>),
    /// A deleted key (`version` ZERO if it only remembers a touch: `touched`, `exptime`).
    Tombstone {
        key: &'a [u8],
        version: Version,
        touched: Version,
        exptime: u32,
    },
}

/// Visits every live item and tombstone of one shard under its lock (full resync).
pub(super) fn snapshot_shard(
    shards: &Shards,
    flushes: &Flushes,
    shard_no: usize,
    f: impl FnMut(SnapshotEntry<'_>),
) {
    snapshot_shard_marked(shards, flushes, shard_no, || (), f)
}

/// Like [`snapshot_shard`], but first calls `mark` with the shard lock held and
/// returns its result. Replication reads its backlog position there: records published
/// before the mark are part of the snapshot, records after it are not (no write to this
/// shard can slip in between, because writers publish under the same lock).
pub(super) fn snapshot_shard_marked<T>(
    shards: &Shards,
    flushes: &Flushes,
    shard_no: usize,
    mark: impl FnOnce() -> T,
    mut f: impl FnMut(SnapshotEntry<'_>),
) -> T {
    let (marked, mut cursor) =
        snapshot_chunk_marked(shards, flushes, shard_no, 0, usize::MAX, mark, &mut f);
    while let Some(c) = cursor {
        cursor = snapshot_chunk(shards, flushes, shard_no, c, usize::MAX, &mut f);
    }
    marked.expect("a walk from cursor 0 takes the mark")
}

/// One bounded piece of a shard's snapshot: visits at most `max` live items and tombstones
/// from `cursor` on (0 = the shard's start) under the shard lock, and returns the cursor to
/// continue from, or None once the shard is done. The lock is held for one chunk only, so a
/// full resync of a large cache never stalls the clients of a shard for longer than it
/// takes to visit `max` entries. The cursor means nothing outside the store.
///
/// Every entry present when the walk started (cursor 0) and not changed since is visited at
/// least once; an entry written, deleted or moved after that may be visited once, twice or
/// not at all. Replication makes that safe by taking its mark (see
/// [`snapshot_chunk_marked`]) with the first chunk and streaming every record of the
/// shard published after it: whatever the walk missed arrives as a record, and merging by
/// version is idempotent (a PN-counter keeps each origin's newest contribution, not a sum of
/// what arrived), so a snapshot entry and a record of the same write, in either order, leave
/// the newer state on the receiver.
pub(super) fn snapshot_chunk(
    shards: &Shards,
    flushes: &Flushes,
    shard_no: usize,
    cursor: usize,
    max: usize,
    f: impl FnMut(SnapshotEntry<'_>),
) -> Option<usize> {
    snapshot_chunk_marked(shards, flushes, shard_no, cursor, max, || (), f).1
}

/// [`snapshot_chunk`], calling `mark` under the shard lock when `cursor` is 0 (the
/// first chunk of the shard) and returning its result.
pub(super) fn snapshot_chunk_marked<T>(
    shards: &Shards,
    flushes: &Flushes,
    shard_no: usize,
    cursor: usize,
    max: usize,
    mark: impl FnOnce() -> T,
    mut f: impl FnMut(SnapshotEntry<'_>),
) -> (Option<T>, Option<usize>) {
    let now = unix_now();
    let shard = shards.get(shard_no).lock();
    let marked = (cursor == 0).then(mark);
    let mut left = max.max(1);
    // Items by index bucket, then tombstones by position (TOMBS marks the second phase).
    if cursor < TOMBS {
        // A walk by bucket misses items only if the index moved its entries in between
        // (a resize or rehash changes the generation): then it starts again from bucket 0.
        let gen = (shard.generation() & GEN_MASK) as usize;
        let from = if cursor >> BUCKET_BITS == gen {
            cursor & ((1 << BUCKET_BITS) - 1)
        } else {
            0
        };
        // Bounded in buckets (twice the entries wanted: a grown index is at least 44%
        // full), so that a sparse index cannot make one chunk long.
        let next = shard.walk_from(from, left.saturating_mul(2), |pos| {
            let it = shard.item(pos);
            if !it.is_expired(now) && !flushes.is_flushed(&it, now) {
                f(SnapshotEntry::Item(it, shard.counter(pos)));
            }
        });
        if let Some(bucket) = next {
            return (marked, Some(gen << BUCKET_BITS | bucket));
        }
    }
    // The tombstone table has no stable positions: a cursor there is (generation,
    // position), and a walk that finds the table rehashed since starts its tombstones
    // again (sending some twice is harmless; missing one could resurrect a key).
    let gen = (shard.tomb_gen & 0xffff) as usize;
    let skip = match cursor.checked_sub(TOMBS) {
        Some(c) if c >> 40 == gen => c & ((1 << 40) - 1),
        _ => 0,
    };
    for (i, (key, t)) in shard.tombstones.iter().skip(skip).enumerate() {
        if left == 0 {
            return (marked, Some(TOMBS | gen << 40 | (skip + i)));
        }
        f(SnapshotEntry::Tombstone {
            key,
            version: t.version,
            touched: t.touched,
            exptime: t.exptime,
        });
        left -= 1;
    }
    (marked, None)
}
/// Applies a mutation received from a peer if it is newer than what this node holds.
/// Never published again (each node sends only its own writes).
pub(super) fn apply_remote(parts: Parts<'_>, m: &Mutation) -> ApplyOutcome {
    apply_remote_ref(parts, m.as_ref())
}

/// [`apply_remote`] for a record that borrows its bytes (from a read buffer).
pub(super) fn apply_remote_ref(parts: Parts<'_>, m: MutationRef<'_>) -> ApplyOutcome {
    if let Some(outcome) = remote_prelude(parts, &m) {
        return outcome;
    }
    let mut e = parts.lookup(m.key, false);
    merge_remote(parts, &mut e, &m)
}

/// [`apply_remote`] for a run of records in stream order (a receiver's read
/// buffer), with one lock per shard per batch instead of one per record: the records are
/// grouped by shard, each group applied in its original order (records of one key always
/// share a shard, so per-key order holds), by the same rules. A flush is a barrier: what
/// came before it is applied before it. `done(i, outcome)` reports record `i`.
pub(super) fn apply_remote_batch(
    parts: Parts<'_>,
    batch: &[MutationRef<'_>],
    mut done: impl FnMut(usize, ApplyOutcome),
) {
    let mut order: Vec<(usize, usize, u64)> = Vec::with_capacity(batch.len());
    let mut i = 0;
    while i < batch.len() {
        let end = batch[i..]
            .iter()
            .position(|m| matches!(m.kind, MutationKind::Flush { .. }))
            .map_or(batch.len(), |p| i + p);
        order.clear();
        for (k, m) in batch.iter().enumerate().take(end).skip(i) {
            match remote_prelude(parts, m) {
                Some(outcome) => done(k, outcome),
                None => {
                    let (shard_no, hash) = parts.shards.place(m.key);
                    order.push((shard_no, k, hash));
                }
            }
        }
        // By shard, then by position: each shard's records keep their order.
        order.sort_unstable_by_key(|&(shard_no, k, _)| (shard_no, k));
        // Room is made with no lock held, as for a client command (see `ensure_room`);
        // a group that writes more than a quarter of the headroom under one lock lets go
        // of it and makes room again, so a batch never runs the ring out of room.
        let budget = parts.shards.space.headroom.load(Ordering::Relaxed) / 4;
        for group in order.chunk_by(|x, y| x.0 == y.0) {
            let shard_no = group[0].0;
            parts.evictor().ensure_room();
            let mut shard = parts.shards.get(shard_no).lock();
            let mut written = 0;
            for &(_, k, hash) in group {
                let m = &batch[k];
                written += m.key.len() + 64;
                if let MutationKind::Put { value, .. } = m.kind {
                    written += value.len();
                }
                if written > budget {
                    drop(shard);
                    parts.evictor().ensure_room();
                    shard = parts.shards.get(shard_no).lock();
                    written = 0;
                }
                let mut e =
                    parts.lookup_in(ShardRef::Batch(&mut shard), shard_no, hash, m.key, false);
                let outcome = merge_remote(parts, &mut e, m);
                drop(e);
                done(k, outcome);
            }
        }
        if end < batch.len() {
            // The flush itself.
            let outcome = remote_prelude(parts, &batch[end]);
            done(end, outcome.unwrap_or(ApplyOutcome::Applied));
        }
        i = end + 1;
    }
}

/// What every replicated record goes through before its key's rules: a flush is applied
/// whole here, the clock observes the version, a bad key is refused. None: go on with
/// [`merge_remote`].
fn remote_prelude(parts: Parts<'_>, m: &MutationRef<'_>) -> Option<ApplyOutcome> {
    if let MutationKind::Flush { at } = m.kind {
        // A delayed flush's version is its future horizon: not observed, since moving this
        // node's clock there would make writes made here before the flush time outlive it
        // (the origin's do not). An immediate one is: a write made here right after it
        // must be newer than it on every node (in the same millisecond, the origin's
        // logical counter may be ahead of ours).
        let now = unix_now();
        if at == 0 {
            parts.stream.clock.observe(m.version);
        }
        parts.flushes.install(
            parts.shards,
            parts.stream.tombstone_secs(),
            at,
            m.version,
            now,
        );
        return Some(ApplyOutcome::Applied);
    }
    parts.stream.clock.observe(m.version);
    if m.key.is_empty() || m.key.len() > 250 {
        return Some(ApplyOutcome::Rejected);
    }
    None
}

/// The merge rules of one keyed record, on its key's locked entry.
fn merge_remote(parts: Parts<'_>, e: &mut Entry<'_, '_>, m: &MutationRef<'_>) -> ApplyOutcome {
    // The newest full write or delete this node knows for the key: the item's base (its
    // increments do not make it newer than a later write elsewhere: a set newer than the
    // base wins over them, on every node), a tombstone, or the flush horizon.
    let held = e
        .item()
        .map(|it| it.base())
        .or_else(|| e.shard.tombstones.get(m.key).map(|t| t.version))
        .unwrap_or(Version::ZERO)
        .max(parts.flushes.in_effect(e.now).unwrap_or(Version::ZERO));
    match m.kind {
        MutationKind::Put {
            flags,
            exptime,
            value,
        } => {
            if m.version <= held {
                return ApplyOutcome::Stale;
            }
            if value.len() > parts.shards.space.item_size_max {
                return ApplyOutcome::Rejected;
            }
            let exp = Expiry::from_abs(exptime, e.now);
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
            let cas = parts.shards.space.cas_for(m.version);
            let meta = Meta {
                flags,
                exptime: exp.as_abs(),
                cas,
                version: m.version,
                base: m.version,
                touched: touch.map_or(Version::ZERO, |(t, _)| t),
                last_access: e.now,
                bits: 0,
            };
            match e.put_meta(&[value], meta) {
                Ok(()) => {
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
        MutationKind::Touch { exptime } if Expiry::from_abs(exptime, e.now) == Expiry::Expired => {
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
            match e.item().map(|it| it.meta()) {
                // Newer than both the value's full write (which set an expiry too; its
                // increments did not) and any other touch: the expiry is the touch's.
                Some(mut meta) if m.version > meta.base.max(meta.touched) => {
                    meta.exptime = exptime;
                    meta.touched = m.version;
                    if e.set_meta(&meta).is_err() {
                        return ApplyOutcome::Rejected;
                    }
                    if Expiry::from_abs(exptime, now) == Expiry::Expired {
                        e.remove_with_tombstone(m.version);
                    }
                    ApplyOutcome::Applied
                }
                Some(_) => ApplyOutcome::Stale,
                None if m.version <= held => ApplyOutcome::Stale,
                None => {
                    // The write it touched has not arrived yet (another origin in a mesh)
                    // or was deleted here concurrently: remember the expiry for it.
                    let until = now.saturating_add(parts.stream.tombstone_secs());
                    let tomb = Tombstone {
                        version: Version::ZERO,
                        offset: 0,
                        until,
                        touched: m.version,
                        exptime,
                    };
                    e.shard.add_tombstone(m.key, tomb);
                    ApplyOutcome::Applied
                }
            }
        }
        // The origin's result (`value`) is not needed: the delta applies on this node's
        // copy of the same base write, or waits for it.
        MutationKind::Delta { base, seq, net, .. } => {
            let c = Contribution::new(m.version.node, seq, net);
            // The frame decoder refuses it already; the store does not rely on that.
            if !c.valid() {
                return ApplyOutcome::Rejected;
            }
            apply_remote_delta(e, m.version, base, c, held)
        }
        MutationKind::Flush { .. } => unreachable!("handled above"),
    }
}

/// Applies a snapshot item from a peer's full resync: like a Put, but keeps the item's delta
/// base and PN-counter state. Value and expiry merge separately: the value by its full
/// write (`base`): the newer one wins whole, and on the same one the two sides' counter
/// contributions merge (per origin, the newer); the expiry by the newer of the full write
/// and the last touch (`touched`) on each side.
#[allow(clippy::too_many_arguments)]
pub(super) fn apply_snapshot_item(
    parts: Parts<'_>,
    key: &[u8],
    value: &[u8],
    flags: u32,
    exptime: u32,
    version: Version,
    base: Version,
    touched: Version,
    counter: Option<&Counter>,
) -> ApplyOutcome {
    parts.stream.clock.observe(version.max(touched));
    if key.is_empty() || key.len() > 250 || value.len() > parts.shards.space.item_size_max {
        return ApplyOutcome::Rejected;
    }
    if counter.is_some_and(|c| !c.valid()) {
        return ApplyOutcome::Rejected;
    }
    let mut e = parts.lookup(key, false);
    // The newest full write or delete held here. A tombstone or flush beats every item
    // whose full write is older.
    let ours = e
        .item()
        .map(|it| it.base())
        .or_else(|| e.shard.tombstones.get(key).map(|t| t.version))
        .unwrap_or(Version::ZERO);
    let flushed = parts.flushes.in_effect(e.now).is_some_and(|f| base <= f);
    let same_write = e.item().is_some_and(|it| it.base() == base);
    if same_write && !flushed {
        // Both sides hold the same full write: merge what each incremented on it.
        let outcome = match counter {
            Some(c) => e.merge_counter(version, |mine| mine.merge(c)),
            None => ApplyOutcome::Stale,
        };
        drop(e);
        return replay_touch(parts, key, touched, exptime).unwrap_or(outcome);
    }
    if base <= ours || flushed {
        // Our value is newer; their expiry may still be the newer one, set by a touch.
        drop(e);
        return replay_touch(parts, key, touched, exptime).unwrap_or(ApplyOutcome::Stale);
    }
    let theirs = base.max(touched);
    // Their value wins; the expiry is whichever side changed it last.
    let ours = e
        .item()
        .map(|it| (it.base().max(it.touched()), it.exptime(), it.touched()))
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
    let cas = parts.shards.space.cas_for(version);
    let meta = Meta {
        flags,
        exptime: exp.as_abs(),
        cas,
        version,
        base,
        touched,
        last_access: e.now,
        bits: 0,
    };
    match e.put_meta(&[value], meta) {
        Ok(()) => {
            if let (Some(c), Some(i)) = (counter, e.idx) {
                e.shard.set_counter(i, c.clone());
            }
            // Increments that arrived before their write: merged (merging is idempotent,
            // so those the snapshot already holds change nothing).
            e.apply_pending(base, true);
            ApplyOutcome::Applied
        }
        Err(_) => ApplyOutcome::Rejected,
    }
}

/// A snapshot's touch, replayed as a record (it applies only if newer than ours).
fn replay_touch(
    parts: Parts<'_>,
    key: &[u8],
    touched: Version,
    exptime: u32,
) -> Option<ApplyOutcome> {
    (touched != Version::ZERO).then(|| {
        apply_remote_ref(
            parts,
            Mutation {
                key,
                version: touched,
                kind: MutationKind::Touch { exptime },
            },
        )
    })
}

fn apply_remote_delta(
    e: &mut Entry<'_, '_>,
    version: Version,
    base: Version,
    c: Contribution,
    held: Version,
) -> ApplyOutcome {
    match e.item().map(|it| it.base()) {
        // Same lineage: keep the origin's newer contribution, so increments add up.
        Some(item_base) if item_base == base => e.merge_counter(version, |mine| mine.merge_one(c)),
        // A newer full write, or a delete/flush newer than the base, wins over the increment.
        Some(item_base) if item_base > base => ApplyOutcome::Stale,
        _ if base <= held => ApplyOutcome::Stale,
        _ => {
            // We do not hold the write it was based on yet (in a mesh it may come from a
            // third node, after this): keep the contribution for when that write arrives.
            let until = e.now.saturating_add(e.parts.stream.tombstone_secs());
            let pending = PendingDelta {
                base,
                version,
                contribution: c,
                until,
            };
            if e.shard
                .add_pending(e.key, pending, e.parts.shards.pending_cap())
            {
                ApplyOutcome::Applied
            } else {
                e.parts
                    .counters
                    .pending_deltas_refused
                    .fetch_add(1, Ordering::Relaxed);
                ApplyOutcome::Rejected
            }
        }
    }
}
