//! The receiving half of a link: the peer's stream (snapshot, then records, applied a read buffer
//! at a time), applied to the store with the clock-skew check, acks and heartbeats passed to the
//! writer half.

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
            if clock_ok(sh, slot, ms, allowance) {
                if allowance == 0 {
                    slot.applied_through_ms.fetch_max(ms, Ordering::Relaxed);
                }
                batch.push(m);
            } else {
                count(sh, slot, ApplyOutcome::Rejected);
            }
            *last = offset;
            used += n;
            applied += 1;
        }
        if used == 0 {
            return Ok(0);
        }
        sh.store
            .apply_remote_batch(&batch, |_, outcome| count(sh, slot, outcome));
    }
    reader.buf.advance(used);
    reader.received += used as u64;
    // Recorded right after applying, with no await in between (see `read_stream`).
    sh.set_progress(peer, run, *last);
    Ok(applied)
}

/// Records how far ahead of our clock the peer's clock was seen, and whether a version stamped
/// at `millis` may be adopted: one far in the future would drag this node's hybrid clock along
/// (and, at the top of the range, every later write would tie), so it is refused and counted.
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
    let ahead = millis as i64 - now as i64;
    let n = slot.clock_rejected.fetch_add(1, Ordering::Relaxed);
    sh.totals.clock_rejected.fetch_add(1, Ordering::Relaxed);
    if n % 10_000 == 0 {
        tracing::warn!(
            "replication: refused a record from {} stamped {ahead} ms ahead of this node's \
             clock (limit {} ms, --repl-max-clock-skew); check both nodes' clocks (NTP)",
            slot.addr.lock(),
            sh.max_skew_ms
        );
    }
    false
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
        let clock_refused = stamp.is_some_and(|(ms, allowance)| !clock_ok(sh, slot, ms, allowance));
        if clock_refused {
            count(sh, slot, ApplyOutcome::Rejected);
        } else if let Some((ms, 0)) = stamp {
            slot.applied_through_ms.fetch_max(ms, Ordering::Relaxed);
        }
        match (f, &mut st) {
            (Frame::Record { offset, mutation }, Inbound::Stream { run, last }) => {
                if offset <= *last {
                    return Err(LinkError::Protocol(format!(
                        "record offset {offset} after {last}"
                    )));
                }
                // A record refused for its clock still moves the stream on (it will not come
                // again).
                if !clock_refused {
                    count(sh, slot, store.apply_remote(&mutation));
                }
                *last = offset;
                // Recorded right after applying, with no await in between: a replacing link
                // reads it only once this one has stopped, so nothing is applied twice.
                sh.set_progress(peer, *run, offset);
                // Ack soon after applying, not only with the next heartbeat, so that the
                // sender's lag figures are current.
                if last_poke.elapsed() >= ACK_EVERY {
                    let _ = ctrl.try_send(Ctrl::AckNow);
                    last_poke = Instant::now();
                }
            }
            // Any other frame refused for its clock (a snapshot entry) is skipped.
            _ if clock_refused => {}
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
                // The peer's clock reading is any u64: saturate instead of wrapping.
                let ahead = i64::try_from(now_ms)
                    .unwrap_or(i64::MAX)
                    .saturating_sub(now_millis() as i64);
                slot.max_clock_skew_ms.fetch_max(ahead, Ordering::Relaxed);
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
            ) => {
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
            (Frame::SnapFlush { at, version }, Inbound::Snapshot { .. }) => {
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
            ) => {
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
            (Frame::SnapEnd { .. }, Inbound::Snapshot { run, start }) => {
                let (run, last) = (*run, start.saturating_sub(1));
                sh.set_progress(peer, run, last);
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
