//! The receiving half of a link: the peer's stream (snapshot, then records, applied a read buffer
//! at a time), applied to the store with the origin and clock-skew checks, acks and heartbeats
//! passed to the writer half.

use super::super::frame::{self, Frame};
use super::super::peers::Slot;
use super::super::shared::{now_millis, Shared};
use super::io::*;
use crate::store::{unix_now, ApplyOutcome, Mutation, MutationKind, MutationRef, Version};
use bytes::Buf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::time::Instant;

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
fn record_millis(r: &MutationRef<'_>) -> (u64, u64) {
    match r.kind {
        MutationKind::Delta { base, .. } => (r.version.millis().max(base.millis()), 0),
        MutationKind::Flush { at } => (r.version.millis(), flush_allowance(at)),
        _ => (r.version.millis(), 0),
    }
}

/// Applies the RECORD frames at the front of the reader's buffer as one batch
/// (`Store::apply_remote_batch`: decoded in place, one lock per shard), with the same checks as
/// one record at a time: offsets strictly increasing, the clock-skew check (a record refused for
/// its clock still moves the stream on), progress recorded right after applying. Stops at the
/// first frame that is not a whole, valid record: `FrameReader::next` deals with it (other
/// frames, more bytes to read, oversize records to skip, errors).
fn apply_buffered_records(
    sh: &Shared,
    reader: &mut FrameReader,
    slot: &Slot,
    peer: u32,
    run: u64,
    last: &mut u64,
) -> Result<u64, LinkError> {
    if reader.discard > 0 {
        // The buffer starts inside an oversize frame being dropped.
        return Ok(0);
    }
    let now = unix_now();
    let mut used = 0;
    let mut applied = 0;
    // A record refused for its clock stops the stream there (how far ahead it was, in ms):
    // what came before it is applied, it and what follows wait for a later link.
    let mut refused = None;
    {
        let mut batch: Vec<MutationRef<'_>> = Vec::new();
        let buf = &reader.buf[..];
        while let Ok(Some((offset, m, n))) = frame::decode_record(&buf[used..], &reader.limits, now)
        {
            if offset <= *last {
                return Err(LinkError::Protocol(format!(
                    "record offset {offset} after {last}"
                )));
            }
            let (ms, allowance) = record_millis(&m);
            if !origin_ok(sh, slot, peer, &m) {
                // Refused and passed over: the stream moves on (it will not come again).
                count(sh, slot, ApplyOutcome::Rejected);
                *last = offset;
                used += n;
                applied += 1;
                continue;
            }
            if !clock_ok(sh, slot, ms, allowance) {
                count(sh, slot, ApplyOutcome::Rejected);
                slot.skew_blocked_at.store(offset, Ordering::Relaxed);
                refused = Some(ms as i64 - now_millis() as i64);
                break;
            }
            if allowance == 0 {
                slot.applied_through_ms.fetch_max(ms, Ordering::Relaxed);
            }
            batch.push(m);
            *last = offset;
            used += n;
            applied += 1;
        }
        if used > 0 {
            sh.store
                .apply_remote_batch(&batch, |_, outcome| count(sh, slot, outcome));
        }
    }
    if used > 0 {
        reader.buf.advance(used);
        reader.received += used as u64;
        // Recorded right after applying, with no await in between (see `read_stream`).
        sh.set_progress(peer, run, *last);
        stream_passed(slot, *last);
    }
    match refused {
        Some(ahead) => Err(skew_error(sh, slot, ahead)),
        None => Ok(applied),
    }
}

/// The peer's stream got past `offset`: if it was stopped at a record refused for its clock,
/// that record is applied now.
fn stream_passed(slot: &Slot, offset: u64) {
    let blocked = slot.skew_blocked_at.load(Ordering::Relaxed);
    if blocked != 0 && blocked != u64::MAX && offset >= blocked {
        slot.skew_blocked_at.store(0, Ordering::Relaxed);
    }
}

/// The error that ends a link in the clock-skew state (the peer's clock, or a stamp of its
/// stream, `off_ms` from ours), with a warning at most once a minute per peer.
fn skew_error(sh: &Shared, slot: &Slot, off_ms: i64) -> LinkError {
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
fn watch_clock(sh: &Shared, slot: &Slot, peer_ms: u64) -> Result<(), LinkError> {
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
fn snapshot_origins_ok(
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
fn snapshot_origins(f: &Frame) -> Option<Vec<u32>> {
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

/// The peer's stream, as this node receives it.
pub(super) enum Inbound {
    /// Waiting for FULLSYNC or CONTINUE.
    Start,
    Snapshot {
        run: u64,
        start: u64,
    },
    Stream {
        run: u64,
        last: u64,
    },
}

pub(super) async fn read_stream(
    sh: &Arc<Shared>,
    reader: &mut FrameReader,
    slot: &Slot,
    peer: u32,
    ctrl: mpsc::Sender<Ctrl>,
) -> Result<(), LinkError> {
    let store = &sh.store;
    let mut st = Inbound::Start;
    let mut bye = false;
    let mut last_poke = Instant::now();
    // Bytes of the handshake frames are not counted: only the session's.
    let mut counted = reader.received;
    loop {
        // Whole records already buffered go as one batch; the rest (other frames, a record not
        // complete yet) one frame at a time below.
        if let Inbound::Stream { run, last } = &mut st {
            if apply_buffered_records(sh, reader, slot, peer, *run, last)? > 0 {
                let got = reader.received - counted;
                counted = reader.received;
                slot.bytes_received.fetch_add(got, Ordering::Relaxed);
                sh.totals.bytes_received.fetch_add(got, Ordering::Relaxed);
                if last_poke.elapsed() >= ACK_EVERY {
                    let _ = ctrl.try_send(Ctrl::AckNow);
                    last_poke = Instant::now();
                }
            }
        }
        let skipped = reader.skipped;
        let f = match reader
            .next(DEAD_AFTER, "waiting for the peer (no heartbeat)")
            .await
        {
            Ok(f) => f,
            Err(LinkError::Closed) if bye => return Err(LinkError::PeerBye),
            Err(e) => return Err(e),
        };
        let got = reader.received - counted;
        counted = reader.received;
        slot.bytes_received.fetch_add(got, Ordering::Relaxed);
        sh.totals.bytes_received.fetch_add(got, Ordering::Relaxed);
        for _ in skipped..reader.skipped {
            count(sh, slot, ApplyOutcome::Rejected);
        }
        // One look at the frame's versions: the skew check, and (for the failover barrier) how
        // recent the peer's writes applied here are.
        let stamp = newest_millis(&f);
        let origin_refused = match &f {
            Frame::Record { mutation, .. } => !origin_ok(sh, slot, peer, &mutation.as_ref()),
            f => {
                snapshot_origins(f).is_some_and(|nodes| !snapshot_origins_ok(sh, slot, peer, nodes))
            }
        };
        if origin_refused {
            count(sh, slot, ApplyOutcome::Rejected);
        } else if let Some((ms, allowance)) = stamp {
            if !clock_ok(sh, slot, ms, allowance) {
                // Not skipped (it would never come again, and the ack would pass it): the
                // stream stops here, the link ends, and a later one starts from this frame
                // (a record) or from a new snapshot.
                count(sh, slot, ApplyOutcome::Rejected);
                let at = match &f {
                    Frame::Record { offset, .. } => *offset,
                    _ => u64::MAX,
                };
                slot.skew_blocked_at.store(at, Ordering::Relaxed);
                return Err(skew_error(sh, slot, ms as i64 - now_millis() as i64));
            }
            if allowance == 0 {
                slot.applied_through_ms.fetch_max(ms, Ordering::Relaxed);
            }
        }
        match (f, &mut st) {
            (Frame::Record { offset, mutation }, Inbound::Stream { run, last }) => {
                if offset <= *last {
                    return Err(LinkError::Protocol(format!(
                        "record offset {offset} after {last}"
                    )));
                }
                // A record refused for its origin still moves the stream on (it will not come
                // again).
                if !origin_refused {
                    count(sh, slot, store.apply_remote(&mutation));
                }
                *last = offset;
                // Recorded right after applying, with no await in between: a replacing link
                // reads it only once this one has stopped, so nothing is applied twice.
                sh.set_progress(peer, *run, offset);
                stream_passed(slot, offset);
                // Ack soon after applying, not only with the next heartbeat, so that the
                // sender's lag figures are current.
                if last_poke.elapsed() >= ACK_EVERY {
                    let _ = ctrl.try_send(Ctrl::AckNow);
                    last_poke = Instant::now();
                }
            }
            (Frame::Heartbeat { ack, last, now_ms }, _) => {
                slot.peer_ack.store(ack, Ordering::Relaxed);
                let applied = match &st {
                    Inbound::Stream { last, .. } => Some(*last),
                    _ => None,
                };
                slot.settle(ack, last, applied);
                sh.update_tombstone_watermark();
                if let Some(ms) = sh.backlog.millis_at(ack) {
                    slot.acked_through_ms.fetch_max(ms, Ordering::Relaxed);
                }
                watch_clock(sh, slot, now_ms)?;
            }
            (
                Frame::SnapItem {
                    key,
                    value,
                    flags,
                    exptime,
                    version,
                    base,
                    touched,
                    counter,
                },
                Inbound::Snapshot { .. },
            ) if !origin_refused => {
                let outcome = store.apply_snapshot_item(
                    &key,
                    &value,
                    flags,
                    exptime,
                    version,
                    base,
                    touched,
                    counter.as_ref(),
                );
                count(sh, slot, outcome);
            }
            (Frame::SnapFlush { at, version }, Inbound::Snapshot { .. }) if !origin_refused => {
                let m = Mutation {
                    key: bytes::Bytes::new(),
                    version,
                    kind: MutationKind::Flush { at },
                };
                count(sh, slot, store.apply_remote(&m));
            }
            (
                Frame::SnapTomb {
                    key,
                    version,
                    touched,
                    exptime,
                },
                Inbound::Snapshot { .. },
            ) if !origin_refused => {
                if version != crate::store::Version::ZERO {
                    let m = Mutation {
                        key: key.clone(),
                        version,
                        kind: MutationKind::Delete,
                    };
                    count(sh, slot, store.apply_remote(&m));
                }
                if touched != crate::store::Version::ZERO {
                    let m = Mutation {
                        key,
                        version: touched,
                        kind: MutationKind::Touch { exptime },
                    };
                    count(sh, slot, store.apply_remote(&m));
                }
            }
            // Refused for an origin (counted above): passed over, the snapshot goes on.
            (
                Frame::SnapItem { .. } | Frame::SnapTomb { .. } | Frame::SnapFlush { .. },
                Inbound::Snapshot { .. },
            ) => {}
            (Frame::SnapEnd { .. }, Inbound::Snapshot { run, start }) => {
                let (run, last) = (*run, start.saturating_sub(1));
                sh.set_progress(peer, run, last);
                // The whole snapshot was taken: nothing of the peer's waits any more.
                slot.skew_blocked_at.store(0, Ordering::Relaxed);
                sh.mark_synced(slot, peer);
                st = Inbound::Stream { run, last };
            }
            (Frame::FullSync { run, start }, Inbound::Start) => {
                // Until the snapshot is complete nothing of it may count as progress.
                sh.clear_progress(peer);
                slot.full_syncs.fetch_add(1, Ordering::Relaxed);
                sh.totals.full_syncs.fetch_add(1, Ordering::Relaxed);
                st = Inbound::Snapshot {
                    run,
                    start: start.max(1),
                };
            }
            (Frame::Continue { run, from }, Inbound::Start) => {
                let (have_run, have) = sh.progress(peer).unwrap_or((0, 0));
                // `have` is the last offset the peer sent (any u64): checked, never wrapped.
                if have_run != run || have.checked_add(1) != Some(from) {
                    return Err(LinkError::Protocol(
                        "CONTINUE does not match our progress".into(),
                    ));
                }
                slot.partial_syncs.fetch_add(1, Ordering::Relaxed);
                sh.totals.partial_syncs.fetch_add(1, Ordering::Relaxed);
                sh.mark_synced(slot, peer);
                st = Inbound::Stream { run, last: have };
            }
            (Frame::Bye { .. }, _) => {
                bye = true;
                let _ = ctrl.try_send(Ctrl::AckNow);
            }
            (f, _) => {
                return Err(LinkError::Protocol(format!(
                    "unexpected frame {}",
                    frame_name(&f)
                )));
            }
        }
    }
}

pub(super) fn frame_name(f: &Frame) -> &'static str {
    match f {
        Frame::Hello { .. } => "HELLO",
        Frame::Psync { .. } => "PSYNC",
        Frame::SyncMode { .. } => "SYNC_MODE",
        Frame::FullSync { .. } => "FULLSYNC",
        Frame::Continue { .. } => "CONTINUE",
        Frame::SnapItem { .. } => "SNAP_ITEM",
        Frame::SnapTomb { .. } => "SNAP_TOMB",
        Frame::SnapEnd { .. } => "SNAP_END",
        Frame::SnapFlush { .. } => "SNAP_FLUSH",
        Frame::Record { .. } => "RECORD",
        Frame::Heartbeat { .. } => "HEARTBEAT",
        Frame::Bye { .. } => "BYE",
    }
}
