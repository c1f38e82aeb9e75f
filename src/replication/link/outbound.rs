//! The sending half of a link: a snapshot (unless resuming from the backlog) walked in chunks that
//! hold a shard lock only briefly, then this node's records as they are published, copied from
//! the backlog's already encoded frames, heartbeats, and the drain and BYE on shutdown.

use super::super::backlog::Keep;
use super::super::frame::{self, Frame};
use super::super::peers::Slot;
use super::super::secure::LinkWriter;
use super::super::shared::{now_millis, Shared};
use super::io::*;
use crate::store::{unix_now, SnapshotEntry};
use bytes::BytesMut;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

fn sent_bytes(sh: &Shared, slot: &Slot, n: usize) {
    slot.bytes_sent.fetch_add(n as u64, Ordering::Relaxed);
    sh.totals.bytes_sent.fetch_add(n as u64, Ordering::Relaxed);
}

pub(super) fn heartbeat(sh: &Shared, peer: u32, out: &mut BytesMut) {
    let ack = sh.progress(peer).map(|(_, o)| o).unwrap_or(0);
    let last = sh.backlog.next_offset().saturating_sub(1);
    let now_ms = now_millis();
    frame::encode(&Frame::Heartbeat { ack, last, now_ms }, 0, out);
}

/// Appends one snapshot entry's frame (borrowed from the store: nothing is allocated).
fn encode_snapshot_entry(e: SnapshotEntry<'_>, now: u32, out: &mut BytesMut) {
    match e {
        SnapshotEntry::Item(it, counter) => {
            let item = frame::SnapItemRef {
                key: it.key(),
                value: it.value(),
                flags: it.flags(),
                exptime: it.exptime(),
                version: it.version(),
                base: it.base(),
                touched: it.touched(),
                counter,
            };
            frame::encode_snap_item(&item, now, out);
        }
        SnapshotEntry::Tombstone {
            key,
            version,
            touched,
            exptime,
        } => frame::encode_snap_tomb(key, version, touched, exptime, now, out),
    }
}

/// Streams this node's writes to the peer: a snapshot first unless resuming after `resume_after`.
pub(super) async fn write_stream(
    sh: Arc<Shared>,
    mut wr: LinkWriter,
    slot: Slot,
    peer: u32,
    resume_after: Option<u64>,
    mut ctrl: mpsc::Receiver<Ctrl>,
) -> Result<(), LinkError> {
    let store = &sh.store;
    let backlog = &sh.backlog;
    let mut shutdown = sh.shutdown.subscribe();
    let mut out = BytesMut::with_capacity(64 * 1024);
    let mut last_hb = Instant::now();
    let mut cursor;
    // Per shard, the backlog offset at which its snapshot was taken: older records of that shard
    // are already in the snapshot and must not be sent again (an incr would count twice).
    let mut shard_marks: Option<(Vec<u64>, u64)> = None;
    // A heartbeat first: it carries our clock, so a peer whose clock is beyond the skew bound
    // stops the link before it applies any of the stream.
    heartbeat(&sh, peer, &mut out);
    match resume_after {
        Some(after) => {
            // `after` is the peer's PSYNC offset, checked by `can_resume_after` (so below
            // `next_offset`); checked again here so that no path can wrap it.
            cursor = after
                .checked_add(1)
                .ok_or_else(|| LinkError::Protocol("PSYNC offset out of range".into()))?;
            slot.partial_syncs_sent.fetch_add(1, Ordering::Relaxed);
            frame::encode(
                &Frame::Continue {
                    run: backlog.run(),
                    from: cursor,
                },
                0,
                &mut out,
            );
        }
        None => {
            let start = backlog.next_offset();
            slot.full_syncs_sent.fetch_add(1, Ordering::Relaxed);
            frame::encode(
                &Frame::FullSync {
                    run: backlog.run(),
                    start,
                },
                0,
                &mut out,
            );
            // The flush horizons first: items older than them must go on the receiver too,
            // and a delayed flush must still happen there at its time.
            for (at, version) in store.flush_marks() {
                frame::encode(&Frame::SnapFlush { at, version }, unix_now(), &mut out);
            }
            sent_bytes(&sh, &slot, flush_counted(&mut wr, &mut out).await?);
            let mut marks = Vec::with_capacity(store.shard_count());
            let mut items = 0u64;
            // Not interrupted by a shutdown: the writes acknowledged to clients since the
            // snapshot started follow it, and a stopping node must deliver them (the shutdown
            // wait bounds the whole drain).
            for i in 0..store.shard_count() {
                // The shard in chunks of SNAPSHOT_CHUNK entries, each encoded under the shard
                // lock straight into the send buffer (encoding is the copy that copying the
                // entries out would be), the lock released between chunks and the buffer
                // written whenever it is full. The mark is taken with the first chunk; every
                // record of the shard after it follows the snapshot (see
                // `Store::snapshot_chunk` for why a walk the clients keep changing still
                // converges).
                let mut cursor = Some(0);
                let mut mark = None;
                while let Some(c) = cursor {
                    let now = unix_now();
                    let (m, next) = store.snapshot_chunk_marked(
                        i,
                        c,
                        SNAPSHOT_CHUNK,
                        || backlog.next_offset(),
                        |e| {
                            items += 1;
                            encode_snapshot_entry(e, now, &mut out);
                        },
                    );
                    mark = mark.or(m);
                    cursor = next;
                    if out.len() >= BATCH_BYTES {
                        if last_hb.elapsed() >= HEARTBEAT_EVERY {
                            heartbeat(&sh, peer, &mut out);
                            last_hb = Instant::now();
                        }
                        sent_bytes(&sh, &slot, flush_counted(&mut wr, &mut out).await?);
                        // A pause after each batch leaves the cores to the clients for a
                        // moment (and paces the peer applying it): streaming flat out, the
                        // snapshot and the peer's merge took both cores of a small machine and
                        // client requests waited for a scheduler slice.
                        tokio::time::sleep(SNAPSHOT_PAUSE).await;
                    }
                }
                marks.push(mark.expect("the first chunk takes the mark"));
            }
            if last_hb.elapsed() >= HEARTBEAT_EVERY {
                heartbeat(&sh, peer, &mut out);
                last_hb = Instant::now();
            }
            sent_bytes(&sh, &slot, flush_counted(&mut wr, &mut out).await?);
            if !backlog.can_resume_after(start.saturating_sub(1)) {
                return Err(LinkError::Overrun);
            }
            frame::encode(&Frame::SnapEnd { items }, 0, &mut out);
            sent_bytes(&sh, &slot, flush_counted(&mut wr, &mut out).await?);
            let max_mark = marks.iter().copied().max().unwrap_or(start);
            shard_marks = Some((marks, max_mark));
            cursor = start;
        }
    }

    let mut draining = false;
    let mut ctrl_open = true;
    let mut ack_now = false;
    loop {
        if *shutdown.borrow_and_update() {
            draining = true;
        }
        if ack_now || last_hb.elapsed() >= HEARTBEAT_EVERY {
            heartbeat(&sh, peer, &mut out);
            last_hb = Instant::now();
            ack_now = false;
        }
        // Whole ranges of already encoded records, copied from the backlog.
        let mut sent = 0u64;
        while out.len() < BATCH_BYTES {
            let mut skip_old = |offset: u64, key: &[u8]| match &shard_marks {
                Some((marks, _)) => key.is_empty() || offset >= marks[store.shard_of(key)],
                None => true,
            };
            let filter: Option<&mut Keep<'_>> = match shard_marks {
                Some(_) => Some(&mut skip_old),
                None => None,
            };
            let room = BATCH_BYTES - out.len();
            let read = backlog
                .read_into(cursor, room.min(READ_BYTES), unix_now(), &mut out, filter)
                .map_err(|_| LinkError::Overrun)?;
            if read.next == cursor {
                break;
            }
            sent += read.records;
            cursor = read.next;
            if shard_marks.as_ref().is_some_and(|(_, max)| cursor >= *max) {
                shard_marks = None;
            }
        }
        if !out.is_empty() {
            sent_bytes(&sh, &slot, flush_counted(&mut wr, &mut out).await?);
            slot.records_sent.fetch_add(sent, Ordering::Relaxed);
            sh.totals.sent.fetch_add(sent, Ordering::Relaxed);
            continue;
        }
        if draining {
            // Everything published so far has been written: say goodbye, wait for the ack.
            let last = cursor - 1;
            frame::encode(&Frame::Bye { last }, 0, &mut out);
            sent_bytes(&sh, &slot, flush_counted(&mut wr, &mut out).await?);
            let deadline = Instant::now() + BYE_ACK_WAIT;
            while slot.peer_ack.load(Ordering::Relaxed) < last && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let _ = wr.shutdown().await;
            return Err(LinkError::Shutdown);
        }
        tokio::select! {
            _ = backlog.wait_beyond(cursor) => {}
            _ = tokio::time::sleep_until(last_hb + HEARTBEAT_EVERY) => {}
            c = ctrl.recv(), if ctrl_open => match c {
                Some(Ctrl::AckNow) => ack_now = true,
                None => ctrl_open = false,
            },
            _ = shutdown.changed() => draining = true,
        }
    }
}
