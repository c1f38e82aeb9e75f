//! The sending half of a link: a snapshot (unless resuming from the backlog) walked in chunks that
//! hold a shard lock only briefly, then this node's records as they are published, copied from
//! the backlog's already encoded frames, heartbeats, and the drain and BYE on shutdown.
//! [`write_stream`] runs the phases (`start_partial` or `send_snapshot`, then `stream`); every
//! byte goes out through `Sender::flush`, the one place the writer half writes to the channel.

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
use tokio::sync::{mpsc, watch};
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

/// Per shard, the backlog offset at which its snapshot was taken, and the highest of them: older
/// records of a shard are already in the snapshot and must not be sent again (an incr would
/// count twice). None once the stream is past every mark (or there was no snapshot).
type ShardMarks = Option<(Vec<u64>, u64)>;

/// The writer half's state: the channel, the send buffer, when the last heartbeat went.
struct Sender {
    sh: Arc<Shared>,
    wr: LinkWriter,
    slot: Slot,
    peer: u32,
    out: BytesMut,
    last_hb: Instant,
}

impl Sender {
    /// Writes the send buffer to the channel and counts its bytes.
    async fn flush(&mut self) -> Result<(), LinkError> {
        let n = flush_counted(&mut self.wr, &mut self.out).await?;
        sent_bytes(&self.sh, &self.slot, n);
        Ok(())
    }

    /// Appends a heartbeat to the send buffer.
    fn heartbeat(&mut self) {
        heartbeat(&self.sh, self.peer, &mut self.out);
        self.last_hb = Instant::now();
    }

    /// Appends a heartbeat if HEARTBEAT_EVERY has passed since the last one.
    fn heartbeat_if_due(&mut self) {
        if self.last_hb.elapsed() >= HEARTBEAT_EVERY {
            self.heartbeat();
        }
    }

    /// Partial sync: CONTINUE, then the backlog's records after `after`. Returns the first
    /// offset to send.
    fn start_partial(&mut self, after: u64) -> Result<u64, LinkError> {
        // `after` is the peer's PSYNC offset, checked by `can_resume_after` (so below
        // `next_offset`); checked again here so that no path can wrap it.
        let cursor = after
            .checked_add(1)
            .ok_or_else(|| LinkError::Protocol("PSYNC offset out of range".into()))?;
        self.slot.partial_syncs_sent.fetch_add(1, Ordering::Relaxed);
        frame::encode(
            &Frame::Continue {
                run: self.sh.backlog.run(),
                from: cursor,
            },
            0,
            &mut self.out,
        );
        Ok(cursor)
    }

    /// Full sync: FULLSYNC, the flush horizons, every shard in chunks, SNAP_END. Returns the
    /// first backlog offset to send after it and the shards' marks.
    async fn send_snapshot(&mut self) -> Result<(u64, ShardMarks), LinkError> {
        let sh = self.sh.clone();
        let (store, backlog) = (&sh.store, &sh.backlog);
        let start = backlog.next_offset();
        self.slot.full_syncs_sent.fetch_add(1, Ordering::Relaxed);
        frame::encode(
            &Frame::FullSync {
                run: backlog.run(),
                start,
            },
            0,
            &mut self.out,
        );
        // The flush horizons first: items older than them must go on the receiver too,
        // and a delayed flush must still happen there at its time.
        for (at, version) in store.flush_marks() {
            frame::encode(&Frame::SnapFlush { at, version }, unix_now(), &mut self.out);
        }
        self.flush().await?;
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
                let out = &mut self.out;
                let (m, next) = store.snapshot_chunk_marked(
                    i,
                    c,
                    SNAPSHOT_CHUNK,
                    || backlog.next_offset(),
                    |e| {
                        items += 1;
                        encode_snapshot_entry(e, now, out);
                    },
                );
                mark = mark.or(m);
                cursor = next;
                if self.out.len() >= BATCH_BYTES {
                    self.heartbeat_if_due();
                    self.flush().await?;
                    // A pause after each batch leaves the cores to the clients for a
                    // moment (and paces the peer applying it): streaming flat out, the
                    // snapshot and the peer's merge took both cores of a small machine and
                    // client requests waited for a scheduler slice.
                    tokio::time::sleep(SNAPSHOT_PAUSE).await;
                }
            }
            marks.push(mark.expect("the first chunk takes the mark"));
        }
        self.heartbeat_if_due();
        self.flush().await?;
        if !backlog.can_resume_after(start.saturating_sub(1)) {
            return Err(LinkError::Overrun);
        }
        frame::encode(&Frame::SnapEnd { items }, 0, &mut self.out);
        self.flush().await?;
        let max_mark = marks.iter().copied().max().unwrap_or(start);
        Ok((start, Some((marks, max_mark))))
    }

    /// The steady state from backlog offset `cursor` on: whole ranges of records as they are
    /// published, heartbeats (at once when the reader asks for an ack), and on shutdown the
    /// drain, BYE and the wait for its ack.
    async fn stream(
        &mut self,
        mut cursor: u64,
        mut shard_marks: ShardMarks,
        mut ctrl: mpsc::Receiver<Ctrl>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), LinkError> {
        let sh = self.sh.clone();
        let (store, backlog) = (&sh.store, &sh.backlog);
        let mut draining = false;
        let mut ctrl_open = true;
        let mut ack_now = false;
        loop {
            if *shutdown.borrow_and_update() {
                draining = true;
            }
            if ack_now || self.last_hb.elapsed() >= HEARTBEAT_EVERY {
                self.heartbeat();
                ack_now = false;
            }
            // Whole ranges of already encoded records, copied from the backlog.
            let mut sent = 0u64;
            while self.out.len() < BATCH_BYTES {
                let mut skip_old = |offset: u64, key: &[u8]| match &shard_marks {
                    Some((marks, _)) => key.is_empty() || offset >= marks[store.shard_of(key)],
                    None => true,
                };
                let filter: Option<&mut Keep<'_>> = match shard_marks {
                    Some(_) => Some(&mut skip_old),
                    None => None,
                };
                let room = BATCH_BYTES - self.out.len();
                let read = backlog
                    .read_into(
                        cursor,
                        room.min(READ_BYTES),
                        unix_now(),
                        &mut self.out,
                        filter,
                    )
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
            if !self.out.is_empty() {
                self.flush().await?;
                self.slot.records_sent.fetch_add(sent, Ordering::Relaxed);
                sh.totals.sent.fetch_add(sent, Ordering::Relaxed);
                continue;
            }
            if draining {
                // Everything published so far has been written: say goodbye, wait for the ack.
                let last = cursor - 1;
                frame::encode(&Frame::Bye { last }, 0, &mut self.out);
                self.flush().await?;
                let deadline = Instant::now() + BYE_ACK_WAIT;
                while self.slot.peer_ack.load(Ordering::Relaxed) < last && Instant::now() < deadline
                {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                let _ = self.wr.shutdown().await;
                return Err(LinkError::Shutdown);
            }
            tokio::select! {
                _ = backlog.wait_beyond(cursor) => {}
                _ = tokio::time::sleep_until(self.last_hb + HEARTBEAT_EVERY) => {}
                c = ctrl.recv(), if ctrl_open => match c {
                    Some(Ctrl::AckNow) => ack_now = true,
                    None => ctrl_open = false,
                },
                _ = shutdown.changed() => draining = true,
            }
        }
    }
}

/// Streams this node's writes to the peer: a snapshot first unless resuming after `resume_after`.
pub(super) async fn write_stream(
    sh: Arc<Shared>,
    wr: LinkWriter,
    slot: Slot,
    peer: u32,
    resume_after: Option<u64>,
    ctrl: mpsc::Receiver<Ctrl>,
) -> Result<(), LinkError> {
    let shutdown = sh.shutdown.subscribe();
    let mut tx = Sender {
        sh,
        wr,
        slot,
        peer,
        out: BytesMut::with_capacity(64 * 1024),
        last_hb: Instant::now(),
    };
    // A heartbeat first: it carries our clock, so a peer whose clock is beyond the skew bound
    // stops the link before it applies any of the stream.
    heartbeat(&tx.sh, peer, &mut tx.out);
    let (cursor, shard_marks) = match resume_after {
        Some(after) => (tx.start_partial(after)?, None),
        None => tx.send_snapshot().await?,
    };
    tx.stream(cursor, shard_marks, ctrl, shutdown).await
}
