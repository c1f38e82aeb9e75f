//! What every part of a link shares: timing constants, the error type, the frame reader over
//! the secure channel, the bounded writer, and the reader-to-writer control message.

use super::super::frame::{self, Frame, FrameError, FrameLimits, PROTO_VERSION};
use super::super::secure::{LinkReader, LinkWriter, SecureError};
use crate::store::unix_now;
use bytes::{Buf, BytesMut};
use std::time::Duration;
use tokio::time::{timeout, Instant};

/// The whole handshake (secure channel and HELLO) must finish within this, so that a peer that
/// accepts and then says nothing (a blackhole, a half-open tunnel) fails fast.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
pub const HEARTBEAT_EVERY: Duration = Duration::from_millis(500);
pub const DEAD_AFTER: Duration = Duration::from_secs(3);
/// A write that makes no progress for this long means the peer is stuck: drop it.
pub(super) const WRITE_STALL: Duration = Duration::from_secs(5);
/// A receiver acks applied records at least this often while they flow.
pub(super) const ACK_EVERY: Duration = Duration::from_millis(50);
/// How long a shutting-down writer waits for the peer to ack its last record.
pub(super) const BYE_ACK_WAIT: Duration = Duration::from_secs(2);
/// Per-peer send buffer: one batch of records is encoded, written, then the next.
pub(super) const BATCH_BYTES: usize = 256 * 1024;
/// Most entries of a full snapshot visited under one shard lock (see `Store::snapshot_chunk`):
/// with 100-byte values a chunk of 16 held the lock about 4 µs (p99 5 µs) on the 2-core test
/// machine, one of 64 about 15 µs, a whole shard of a 1M-item cache 4 ms.
pub(super) const SNAPSHOT_CHUNK: usize = 16;
/// A full snapshot rests this long after each `BATCH_BYTES` it writes (see `send_snapshot`).
pub(super) const SNAPSHOT_PAUSE: Duration = Duration::from_millis(1);
/// Most bytes copied from the backlog under its lock at a time (the lock also serves writers).
pub(super) const READ_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    Outgoing,
    Incoming,
}

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("connection closed by peer")]
    Closed,
    #[error("peer shut down")]
    PeerBye,
    #[error("timed out {0}")]
    Timeout(&'static str),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("bad frame: {0}")]
    Frame(#[from] FrameError),
    #[error("peer speaks replication protocol {0}, this node {PROTO_VERSION}")]
    Version(u16),
    #[error("{0}")]
    Secure(#[from] SecureError),
    /// Certificate mode: the certificate or the HELLO does not match a peer of ours.
    #[error("not a peer of this node: {0}")]
    Identity(String),
    #[error("too many replication links")]
    TooManyLinks,
    #[error("handshake cancelled: a newer connection from the same address took its slot")]
    Evicted,
    #[error("connected to itself")]
    SelfConnect,
    #[error("duplicate link to node {0:08x}, keeping the other one")]
    Duplicate(u32),
    #[error("peer fell behind the replication backlog; it will resync")]
    Overrun,
    #[error("peer too slow: a write stalled for {}s", WRITE_STALL.as_secs())]
    Stalled,
    #[error("link replaced by a newer one")]
    Cancelled,
    #[error(
        "clock skew: the peer's clock is {0} ms off ours, beyond the {1} ms bound \
         (--repl-max-clock-skew); its stream waits until the clocks agree (check NTP)"
    )]
    ClockSkew(i64, u64),
    #[error("shutting down")]
    Shutdown,
}

impl LinkError {
    /// Errors that are part of normal operation and need no warning in the log.
    pub fn is_quiet(&self) -> bool {
        matches!(
            self,
            LinkError::Duplicate(_) | LinkError::Cancelled | LinkError::Shutdown
        )
    }
}

/// Reads whole frames from the socket, never buffering more than one maximal frame.
pub(super) struct FrameReader {
    pub(super) rd: LinkReader,
    pub(super) buf: BytesMut,
    pub(super) limits: FrameLimits,
    /// Once the peer is authenticated, a frame over our limits (say a value larger than our
    /// -I, from a peer started with a bigger one) is drained and counted instead of ending the
    /// link; before that it is a protocol error.
    pub(super) skip_oversize: bool,
    /// Bytes of an oversize frame still to be dropped.
    pub(super) discard: usize,
    pub(super) skipped: u64,
    /// Frame bytes taken off the channel so far (for the byte counters).
    pub(super) received: u64,
    /// Until authenticated, the whole handshake must finish by then (no slow-drip sockets).
    pub(super) deadline: Option<Instant>,
}

/// Frame limits while the peer is unauthenticated: HELLO and AUTH are small.
pub(super) const HANDSHAKE_LIMITS: FrameLimits = FrameLimits { item_size_max: 0 };

impl FrameReader {
    /// The next frame; `wait` bounds each silence, not the whole frame, so a large value on a
    /// slow link is not mistaken for a dead peer.
    pub(super) async fn next(
        &mut self,
        wait: Duration,
        what: &'static str,
    ) -> Result<Frame, LinkError> {
        loop {
            if self.discard > 0 {
                let n = self.discard.min(self.buf.len());
                self.buf.advance(n);
                self.received += n as u64;
                self.discard -= n;
            }
            if self.discard == 0 {
                match frame::decode(&self.buf, &self.limits, unix_now()) {
                    Ok(Some((f, n))) => {
                        self.buf.advance(n);
                        self.received += n as u64;
                        return Ok(f);
                    }
                    Ok(None) => {}
                    Err(FrameError::TooLarge(len)) if self.skip_oversize => {
                        self.discard = 4 + len;
                        self.skipped += 1;
                        continue;
                    }
                    Err(FrameError::ValueTooLarge(_)) if self.skip_oversize => {
                        // decode only checks the value once the whole frame is buffered.
                        let len = u32::from_be_bytes([
                            self.buf[0],
                            self.buf[1],
                            self.buf[2],
                            self.buf[3],
                        ]);
                        self.discard = 4 + len as usize;
                        self.skipped += 1;
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            self.buf.reserve(64 * 1024);
            let wait = match self.deadline {
                Some(d) => wait.min(d.saturating_duration_since(Instant::now())),
                None => wait,
            };
            let n = timeout(wait, self.rd.read_buf(&mut self.buf))
                .await
                .map_err(|_| LinkError::Timeout(what))??;
            if n == 0 {
                return Err(LinkError::Closed);
            }
        }
    }
}

/// Aborts a spawned task when the link it belongs to goes away.
pub(super) struct AbortOnDrop<T>(pub(super) tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Writes and clears `out`. The stall limit applies per chunk, so a big snapshot over a slow
/// link is fine as long as it keeps moving; a peer that stops reading is dropped.
pub(super) async fn flush(wr: &mut LinkWriter, out: &mut BytesMut) -> Result<(), LinkError> {
    flush_counted(wr, out).await.map(|_| ())
}

/// [`flush`], returning how many bytes were written.
pub(super) async fn flush_counted(
    wr: &mut LinkWriter,
    out: &mut BytesMut,
) -> Result<usize, LinkError> {
    let n = out.len();
    for chunk in out.chunks(BATCH_BYTES) {
        timeout(WRITE_STALL, wr.write_all(chunk))
            .await
            .map_err(|_| LinkError::Stalled)??;
    }
    out.clear();
    Ok(n)
}

/// Control messages from the reader half to the writer half.
pub(super) enum Ctrl {
    /// The peer said BYE: send our ack right away.
    AckNow,
}
