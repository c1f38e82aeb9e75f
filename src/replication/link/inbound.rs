//! The receiving half of a link: the peer's stream (snapshot, then records, applied a read buffer
//! at a time), applied to the store after the checks of `checks`, acks and heartbeats passed to
//! the writer half. [`read_stream`] reads and dispatches; each kind of frame has its handler
//! below it.

use super::super::frame::{self, Frame};
use super::super::peers::Slot;
use super::super::shared::{now_millis, Shared};
use super::checks::{
    clock_ok, count, newest_millis, origin_ok, record_millis, skew_error, snapshot_origins,
    snapshot_origins_ok, stream_passed, watch_clock,
};
use super::io::*;
use crate::store::{unix_now, ApplyOutcome, Mutation, MutationKind, MutationRef, Version};
use bytes::Buf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::time::Instant;

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
        // Recorded right after applying, with no await in between (see `apply_record`).
        sh.set_progress(peer, run, *last);
        stream_passed(slot, *last);
    }
    match refused {
        Some(ahead) => Err(skew_error(sh, slot, ahead)),
        None => Ok(applied),
    }
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

/// What the reader half keeps between frames besides the stream's state.
struct Receiver<'a> {
    sh: &'a Arc<Shared>,
    slot: &'a Slot,
    peer: u32,
    ctrl: mpsc::Sender<Ctrl>,
    /// When the writer was last asked to ack.
    last_poke: Instant,
    /// The reader's byte count already added to the counters.
    counted: u64,
}

impl Receiver<'_> {
    /// Adds the bytes read since the last call to the peer's and the node's counters.
    fn count_bytes(&mut self, reader: &FrameReader) {
        let got = reader.received - self.counted;
        self.counted = reader.received;
        self.slot.bytes_received.fetch_add(got, Ordering::Relaxed);
        self.sh
            .totals
            .bytes_received
            .fetch_add(got, Ordering::Relaxed);
    }

    /// Asks the writer to ack soon after applying, not only with the next heartbeat, so that the
    /// sender's lag figures are current (at most every ACK_EVERY).
    fn poke_ack(&mut self) {
        if self.last_poke.elapsed() >= ACK_EVERY {
            let _ = self.ctrl.try_send(Ctrl::AckNow);
            self.last_poke = Instant::now();
        }
    }
}

pub(super) async fn read_stream(
    sh: &Arc<Shared>,
    reader: &mut FrameReader,
    slot: &Slot,
    peer: u32,
    ctrl: mpsc::Sender<Ctrl>,
) -> Result<(), LinkError> {
    let mut st = Inbound::Start;
    let mut bye = false;
    let mut rx = Receiver {
        sh,
        slot,
        peer,
        ctrl,
        last_poke: Instant::now(),
        // Bytes of the handshake frames are not counted: only the session's.
        counted: reader.received,
    };
    loop {
        // Whole records already buffered go as one batch; the rest (other frames, a record not
        // complete yet) one frame at a time below.
        if let Inbound::Stream { run, last } = &mut st {
            if apply_buffered_records(sh, reader, slot, peer, *run, last)? > 0 {
                rx.count_bytes(reader);
                rx.poke_ack();
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
        rx.count_bytes(reader);
        for _ in skipped..reader.skipped {
            count(sh, slot, ApplyOutcome::Rejected);
        }
        let origin_refused = screen(sh, slot, peer, &f)?;
        match (f, &mut st) {
            (Frame::Record { offset, mutation }, Inbound::Stream { run, last }) => {
                apply_record(&mut rx, *run, last, offset, &mutation, origin_refused)?;
            }
            (Frame::Heartbeat { ack, last, now_ms }, _) => {
                heartbeat(sh, slot, &st, ack, last, now_ms)?;
            }
            (
                f @ (Frame::SnapItem { .. } | Frame::SnapTomb { .. } | Frame::SnapFlush { .. }),
                Inbound::Snapshot { .. },
            ) => {
                // Refused for an origin (counted in `screen`): passed over, the snapshot goes on.
                if !origin_refused {
                    apply_snapshot_entry(sh, slot, f);
                }
            }
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
                st = continue_stream(sh, slot, peer, run, from)?;
            }
            (Frame::Bye { .. }, _) => {
                bye = true;
                let _ = rx.ctrl.try_send(Ctrl::AckNow);
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

/// The checks of one frame before it is applied: whether its origin is refused (counted; the
/// caller passes over it), and the skew check of its versions, which ends the link on a frame
/// stamped too far ahead. Also how recent the peer's writes applied here are (the failover
/// barrier), from the same look at its versions.
fn screen(sh: &Shared, slot: &Slot, peer: u32, f: &Frame) -> Result<bool, LinkError> {
    let stamp = newest_millis(f);
    let origin_refused = match f {
        Frame::Record { mutation, .. } => !origin_ok(sh, slot, peer, &mutation.as_ref()),
        f => snapshot_origins(f).is_some_and(|nodes| !snapshot_origins_ok(sh, slot, peer, nodes)),
    };
    if origin_refused {
        count(sh, slot, ApplyOutcome::Rejected);
    } else if let Some((ms, allowance)) = stamp {
        if !clock_ok(sh, slot, ms, allowance) {
            // Not skipped (it would never come again, and the ack would pass it): the
            // stream stops here, the link ends, and a later one starts from this frame
            // (a record) or from a new snapshot.
            count(sh, slot, ApplyOutcome::Rejected);
            let at = match f {
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
    Ok(origin_refused)
}

/// One RECORD frame decoded on its own (one not yet whole when the batch was taken).
fn apply_record(
    rx: &mut Receiver<'_>,
    run: u64,
    last: &mut u64,
    offset: u64,
    mutation: &Mutation,
    origin_refused: bool,
) -> Result<(), LinkError> {
    if offset <= *last {
        return Err(LinkError::Protocol(format!(
            "record offset {offset} after {last}"
        )));
    }
    // A record refused for its origin still moves the stream on (it will not come
    // again).
    if !origin_refused {
        count(rx.sh, rx.slot, rx.sh.store.apply_remote(mutation));
    }
    *last = offset;
    // Recorded right after applying, with no await in between: a replacing link
    // reads it only once this one has stopped, so nothing is applied twice.
    rx.sh.set_progress(rx.peer, run, offset);
    stream_passed(rx.slot, offset);
    rx.poke_ack();
    Ok(())
}

/// A HEARTBEAT: the peer's ack of our stream (lag, tombstones it has settled) and its clock.
fn heartbeat(
    sh: &Shared,
    slot: &Slot,
    st: &Inbound,
    ack: u64,
    last: u64,
    now_ms: u64,
) -> Result<(), LinkError> {
    slot.peer_ack.store(ack, Ordering::Relaxed);
    let applied = match st {
        Inbound::Stream { last, .. } => Some(*last),
        _ => None,
    };
    slot.settle(ack, last, applied);
    sh.update_tombstone_watermark();
    if let Some(ms) = sh.backlog.millis_at(ack) {
        slot.acked_through_ms.fetch_max(ms, Ordering::Relaxed);
    }
    watch_clock(sh, slot, now_ms)
}

/// One entry of a full snapshot (SNAP_ITEM, SNAP_TOMB or SNAP_FLUSH) merged into the store.
fn apply_snapshot_entry(sh: &Shared, slot: &Slot, f: Frame) {
    let store = &sh.store;
    match f {
        Frame::SnapItem {
            key,
            value,
            flags,
            exptime,
            version,
            base,
            touched,
            counter,
        } => {
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
        Frame::SnapFlush { at, version } => {
            let m = Mutation {
                key: bytes::Bytes::new(),
                version,
                kind: MutationKind::Flush { at },
            };
            count(sh, slot, store.apply_remote(&m));
        }
        Frame::SnapTomb {
            key,
            version,
            touched,
            exptime,
        } => {
            if version != Version::ZERO {
                let m = Mutation {
                    key: key.clone(),
                    version,
                    kind: MutationKind::Delete,
                };
                count(sh, slot, store.apply_remote(&m));
            }
            if touched != Version::ZERO {
                let m = Mutation {
                    key,
                    version: touched,
                    kind: MutationKind::Touch { exptime },
                };
                count(sh, slot, store.apply_remote(&m));
            }
        }
        _ => {}
    }
}

/// CONTINUE (partial sync): records follow from `from`, which must be right after what this
/// node has applied of the same run.
fn continue_stream(
    sh: &Shared,
    slot: &Slot,
    peer: u32,
    run: u64,
    from: u64,
) -> Result<Inbound, LinkError> {
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
    Ok(Inbound::Stream { run, last: have })
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
