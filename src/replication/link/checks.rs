//! What a frame of the peer's stream must pass before it is applied, and what it tells about the
//! peer: the origin check (a link carries only its own node's writes; snapshots name origins
//! within the node table's bounds), the clock-skew check of its versions and the heartbeat's
//! clock watch (state `clock_skew`), and the applied/stale/rejected counters.

use super::super::frame::Frame;
use super::super::peers::Slot;
use super::super::shared::{now_millis, Shared};
use super::io::LinkError;
use crate::store::{ApplyOutcome, MutationKind, MutationRef, Version};
use std::sync::atomic::Ordering;

/// The newest clock reading among a frame's versions (ms), and how much further ahead than the
/// usual skew it may legitimately be: a delayed flush is stamped at its flush time.
pub(super) fn newest_millis(f: &Frame) -> Option<(u64, u64)> {
    let m = |v: &Version| v.millis();
    match f {
        Frame::Record { mutation, .. } => Some(record_millis(&mutation.as_ref())),
        Frame::SnapItem {
            version,
            base,
            touched,
            ..
        } => Some((m(version).max(m(base)).max(m(touched)), 0)),
        Frame::SnapTomb {
            version, touched, ..
        } => Some((m(version).max(m(touched)), 0)),
        Frame::SnapFlush { version, at } => Some((m(version), flush_allowance(*at))),
        _ => None,
    }
}

fn flush_allowance(at: u32) -> u64 {
    (at as u64 * 1000).saturating_sub(now_millis())
}

/// [`newest_millis`] of a record.
pub(super) fn record_millis(r: &MutationRef<'_>) -> (u64, u64) {
    match r.kind {
        MutationKind::Delta { base, .. } => (r.version.millis().max(base.millis()), 0),
        MutationKind::Flush { at } => (r.version.millis(), flush_allowance(at)),
        _ => (r.version.millis(), 0),
    }
}

/// The peer's stream got past `offset`: if it was stopped at a record refused for its clock,
/// that record is applied now.
pub(super) fn stream_passed(slot: &Slot, offset: u64) {
    let blocked = slot.skew_blocked_at.load(Ordering::Relaxed);
    if blocked != 0 && blocked != u64::MAX && offset >= blocked {
        slot.skew_blocked_at.store(0, Ordering::Relaxed);
    }
}

/// The error that ends a link in the clock-skew state (the peer's clock, or a stamp of its
/// stream, `off_ms` from ours), with a warning at most once a minute per peer.
pub(super) fn skew_error(sh: &Shared, slot: &Slot, off_ms: i64) -> LinkError {
    let now = now_millis();
    let last = slot.skew_warned_ms.load(Ordering::Relaxed);
    if now.saturating_sub(last) >= 60_000
        && slot
            .skew_warned_ms
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(
            "replication: link to {} in state clock_skew: the peer's clock is {off_ms} ms off \
             this node's (limit {} ms, --repl-max-clock-skew); its stream is held, not applied \
             in part, until the clocks agree; check both nodes' clocks (NTP)",
            slot.addr.lock(),
            sh.max_skew_ms
        );
    }
    LinkError::ClockSkew(off_ms, sh.max_skew_ms)
}

/// A heartbeat says the peer's clock read `peer_ms` when it was sent: the offset is watched
/// continuously (CockroachDB's max-offset rule): beyond the bound the link leaves its state for
/// `clock_skew` and ends (the dialer tries again); back inside it, the link may sync again.
pub(super) fn watch_clock(sh: &Shared, slot: &Slot, peer_ms: u64) -> Result<(), LinkError> {
    // From the peer: any u64 (saturating, never a wrapped or panicking subtraction).
    let offset = i64::try_from(peer_ms)
        .unwrap_or(i64::MAX)
        .saturating_sub(now_millis() as i64);
    slot.clock_offset_ms.store(offset, Ordering::Relaxed);
    slot.max_clock_skew_ms.fetch_max(offset, Ordering::Relaxed);
    if offset.unsigned_abs() > sh.max_skew_ms {
        slot.skew_offset.store(true, Ordering::Relaxed);
        return Err(skew_error(sh, slot, offset));
    }
    if slot.skew_offset.swap(false, Ordering::Relaxed) {
        tracing::info!(
            "replication: the clock of {} is back within the bound ({offset} ms off)",
            slot.addr.lock()
        );
    }
    Ok(())
}

/// Records how far ahead of our clock the peer's clock was seen, and whether a version stamped
/// at `millis` may be adopted: one far in the future would drag this node's hybrid clock along
/// (and, at the top of the range, every later write would tie), so it is refused and counted.
/// A refused record is never skipped: the caller stops the stream there (clock_skew).
pub(super) fn clock_ok(sh: &Shared, slot: &Slot, millis: u64, allowance: u64) -> bool {
    let now = now_millis();
    if allowance == 0 {
        // A delayed flush's stamp says nothing about the peer's clock.
        slot.max_clock_skew_ms
            .fetch_max(millis as i64 - now as i64, Ordering::Relaxed);
    }
    if millis <= now.saturating_add(allowance).saturating_add(sh.max_skew_ms) {
        return true;
    }
    slot.clock_rejected.fetch_add(1, Ordering::Relaxed);
    sh.totals.clock_rejected.fetch_add(1, Ordering::Relaxed);
    false
}

/// Whether record `m`, stamped with origin node `m.version.node`, may be applied from the link that speaks
/// for node `peer`. Each node sends only its own writes (nothing is forwarded), so a record of
/// any other origin is a forgery (a peer writing "as" another node, to win its conflicts or
/// poison its counters): refused and counted. The stream moves on past it, like a record
/// refused for its clock. (Snapshots carry the peer's whole store, other nodes' writes
/// included, so their entries are held to [`snapshot_origins_ok`] instead.)
/// A delayed flush_all is stamped at its flush time with node 0, which is no node's id (ids
/// are never 0): on a Flush it speaks for no other node and is allowed.
pub(super) fn origin_ok(sh: &Shared, slot: &Slot, peer: u32, m: &MutationRef<'_>) -> bool {
    let origin = m.version.node;
    if origin == peer || (origin == 0 && matches!(m.kind, MutationKind::Flush { .. })) {
        return true;
    }
    let n = sh.totals.origin_rejected.fetch_add(1, Ordering::Relaxed);
    if n % 10_000 == 0 {
        tracing::warn!(
            "replication: refused a record from {} (node {peer:08x}) claiming to originate at \
             node {origin:08x}: a link may only carry its own node's writes",
            slot.addr.lock()
        );
    }
    false
}

/// Whether a snapshot entry (SNAP_ITEM, SNAP_TOMB, SNAP_FLUSH) may name the origin nodes
/// `nodes` (its versions' nodes and its counter contributions') on the link of node `peer`.
/// A snapshot carries the peer's whole store, so other nodes' writes are legitimate in it:
/// a third node of the mesh, and nodes that never linked with this one (earlier incarnations of
/// restarted nodes, which come back with a new id, whose writes the peer still holds). So an
/// origin passes if it is the peer, no node (0), this node, a node that authenticated here, or
/// an id the store can still learn within its bounded share (`MAX_LEARNED_NODES`); once that
/// share is full, entries naming further unknown ids are refused and counted and the link goes
/// on. The node table can thus never be filled by made-up origins: the room of nodes that
/// authenticate is kept.
pub(super) fn snapshot_origins_ok(
    sh: &Shared,
    slot: &Slot,
    peer: u32,
    nodes: impl IntoIterator<Item = u32>,
) -> bool {
    for origin in nodes {
        if origin == peer || origin == 0 || origin == sh.node_id {
            continue;
        }
        if sh.store.know_or_learn_node(origin) {
            continue;
        }
        let n = sh.totals.origin_rejected.fetch_add(1, Ordering::Relaxed);
        if n % 10_000 == 0 {
            tracing::warn!(
                "replication: refused a snapshot entry from {} (node {peer:08x}) naming node \
                 {origin:08x}: too many node ids this node has not seen authenticate \
                 ({} at most)",
                slot.addr.lock(),
                crate::store::version::MAX_LEARNED_NODES
            );
        }
        return false;
    }
    true
}

/// The origin nodes a snapshot frame names (None: not a snapshot entry).
pub(super) fn snapshot_origins(f: &Frame) -> Option<Vec<u32>> {
    match f {
        Frame::SnapItem {
            version,
            base,
            touched,
            counter,
            ..
        } => {
            let mut v = vec![version.node, base.node, touched.node];
            if let Some(c) = counter {
                v.extend(c.contributions().iter().map(|c| c.node));
            }
            Some(v)
        }
        Frame::SnapTomb {
            version, touched, ..
        } => Some(vec![version.node, touched.node]),
        Frame::SnapFlush { version, .. } => Some(vec![version.node]),
        _ => None,
    }
}

pub(super) fn count(sh: &Shared, slot: &Slot, outcome: ApplyOutcome) {
    let (a, b) = match outcome {
        ApplyOutcome::Applied => (&slot.records_applied, &sh.totals.applied),
        ApplyOutcome::Stale => (&slot.records_stale, &sh.totals.stale),
        ApplyOutcome::Rejected => (&slot.records_rejected, &sh.totals.rejected),
    };
    a.fetch_add(1, Ordering::Relaxed);
    b.fetch_add(1, Ordering::Relaxed);
}
