//! One replication link over one TCP connection, from HELLO to close.
//!
//! Sequence (both sides run the same code, whoever dialed):
//! 1. The secure channel (`secure`: Noise with the shared secret, or mutual TLS), bounded by
//!    HANDSHAKE_TIMEOUT and, on the listener, by the unauthenticated budget. Then HELLO both ways
//!    inside it (protocol version, node id, listen port): the dialer first, the acceptor only
//!    after the dialer's HELLO decrypted, which is the proof that the dialer holds the key.
//! 2. Admission: at most one link per pair of nodes survives (see `peers::admit`); a link that
//!    replaces another waits until the old one has stopped, so that the progress it reads next is
//!    final and no record is applied twice.
//! 3. PSYNC both ways: "I have applied your run R up to offset O", then SYNC_MODE both ways:
//!    "I can resume you from my backlog" or not. Each side then streams its own writes:
//!    CONTINUE + backlog records after O when both sides can resume, else (both ways) FULLSYNC +
//!    the flush horizon + a snapshot of every shard + SNAP_END + records from the snapshot's
//!    start offset.
//! 4. Steady state: records as they are published, heartbeats every 500 ms carrying the acked
//!    offset; silence for 3 s means the peer is dead. On shutdown the writer sends what is queued,
//!    a BYE, and waits briefly for the ack.

use super::budget::Permit;
use super::frame::{self, Frame, FrameError, Limits, PROTO_VERSION};
use super::peers::{admit, ActiveLink, Admit, LinkState, Slot};
use super::secure::{self, LinkReader, LinkWriter, Role, SecureError};
use super::shared::{canonical_ip, now_millis, parse_peer, Shared, MAX_LINKS};
use crate::store::{unix_now, ApplyOutcome, Mutation, MutationKind, SnapshotEntry, Version};
use bytes::{Buf, BytesMut};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::{timeout, Instant};

/// The whole handshake (secure channel and HELLO) must finish within this, so that a peer that
/// accepts and then says nothing (a blackhole, a half-open tunnel) fails fast.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
pub const HEARTBEAT_EVERY: Duration = Duration::from_millis(500);
pub const DEAD_AFTER: Duration = Duration::from_secs(3);
/// A write that makes no progress for this long means the peer is stuck: drop it.
const WRITE_STALL: Duration = Duration::from_secs(5);
/// A receiver acks applied records at least this often while they flow.
const ACK_EVERY: Duration = Duration::from_millis(50);
/// How long a shutting-down writer waits for the peer to ack its last record.
const BYE_ACK_WAIT: Duration = Duration::from_secs(2);
/// Per-peer send buffer: one batch of records is encoded, written, then the next.
const BATCH_BYTES: usize = 256 * 1024;
const BATCH_RECORDS: usize = 4096;

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
struct FrameReader {
    rd: LinkReader,
    buf: BytesMut,
    limits: Limits,
    /// Once the peer is authenticated, a frame over our limits (say a value larger than our
    /// -I, from a peer started with a bigger one) is drained and counted instead of ending the
    /// link; before that it is a protocol error.
    skip_oversize: bool,
    /// Bytes of an oversize frame still to be dropped.
    discard: usize,
    skipped: u64,
    /// Until authenticated, the whole handshake must finish by then (no slow-drip sockets).
    deadline: Option<Instant>,
}

/// Frame limits while the peer is unauthenticated: HELLO and AUTH are small.
const HANDSHAKE_LIMITS: Limits = Limits { item_size_max: 0 };

impl FrameReader {
    /// The next frame; `wait` bounds each silence, not the whole frame, so a large value on a
    /// slow link is not mistaken for a dead peer.
    async fn next(&mut self, wait: Duration, what: &'static str) -> Result<Frame, LinkError> {
        loop {
            if self.discard > 0 {
                let n = self.discard.min(self.buf.len());
                self.buf.advance(n);
                self.discard -= n;
            }
            if self.discard == 0 {
                match frame::decode(&self.buf, &self.limits, unix_now()) {
                    Ok(Some((f, n))) => {
                        self.buf.advance(n);
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
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Writes and clears `out`. The stall limit applies per chunk, so a big snapshot over a slow
/// link is fine as long as it keeps moving; a peer that stops reading is dropped.
async fn flush(wr: &mut LinkWriter, out: &mut BytesMut) -> Result<(), LinkError> {
    for chunk in out.chunks(BATCH_BYTES) {
        timeout(WRITE_STALL, wr.write_all(chunk))
            .await
            .map_err(|_| LinkError::Stalled)??;
    }
    out.clear();
    Ok(())
}

/// Removes the registry entry (if still ours) and signals that the link has stopped.
struct LinkGuard {
    sh: Arc<Shared>,
    peer: u32,
    id: u64,
    done: watch::Sender<bool>,
}

impl Drop for LinkGuard {
    fn drop(&mut self) {
        let mut links = self.sh.links.lock();
        if links.get(&self.peer).is_some_and(|l| l.id == self.id) {
            links.remove(&self.peer);
        }
        drop(links);
        let _ = self.done.send(true);
    }
}

/// Runs one link to completion. `slot` is the configured peer for outgoing links; incoming
/// links find or create theirs after HELLO. The slot used is reported through `on_slot`.
pub async fn run_link(
    sh: Arc<Shared>,
    stream: TcpStream,
    dir: Dir,
    slot: Option<Slot>,
    permit: Option<Permit>,
) -> (Option<Slot>, Result<(), LinkError>) {
    let _live = sh.live_link();
    let remote = stream.peer_addr().ok();
    let mut slot_used = slot.clone();
    let res = link_inner(&sh, stream, dir, slot, remote, &mut slot_used, permit).await;
    if let Err(e) = &res {
        if matches!(
            e,
            LinkError::Frame(_) | LinkError::Protocol(_) | LinkError::Version(_)
        ) {
            sh.totals.protocol_errors.fetch_add(1, Ordering::Relaxed);
        }
        if matches!(e, LinkError::Timeout("in handshake")) {
            sh.totals.handshake_timeouts.fetch_add(1, Ordering::Relaxed);
        }
        if matches!(e, LinkError::Secure(s) if s.is_auth_failure()) {
            sh.totals.auth_failures.fetch_add(1, Ordering::Relaxed);
            // Incoming links have no slot yet: charge the configured peer at that address.
            let slot = slot_used.clone().or_else(|| {
                let ip = canonical_ip(remote?.ip());
                sh.slots
                    .lock()
                    .iter()
                    .find(|s| {
                        s.configured && s.resolved.lock().iter().any(|a| canonical_ip(a.ip()) == ip)
                    })
                    .cloned()
            });
            if let Some(s) = slot {
                s.auth_failures.fetch_add(1, Ordering::Relaxed);
            }
            // Once per address per minute: a scanner or a misconfigured peer retrying every
            // few seconds must not flood the log.
            let logged = remote.map_or(true, |r| sh.failure_log.should_log(canonical_ip(r.ip())));
            let from = remote.map(|r| r.to_string()).unwrap_or_default();
            if logged {
                tracing::warn!("replication: rejected peer connection {from}: {e}");
            } else {
                tracing::debug!("replication: rejected peer connection {from}: {e}");
            }
        }
    }
    let logged_as_auth = matches!(&res, Err(LinkError::Secure(s)) if s.is_auth_failure());
    // The same failure again (a peer retrying with a wrong secret every few seconds) is logged
    // once at its level, then only at debug.
    let mut repeated = false;
    if let Some(s) = &slot_used {
        // Two links may share a slot for a moment (the duplicate rule picks one): only the
        // last one standing reports the peer down.
        if !sh
            .links
            .lock()
            .contains_key(&s.node_id.load(Ordering::Relaxed))
        {
            s.set_state(LinkState::Down);
        }
        if let Err(e) = &res {
            if !e.is_quiet() {
                let text = e.to_string();
                repeated = *s.last_error.lock() == text;
                s.set_error(text);
            }
        }
    }
    if let Err(e) = &res {
        let who = slot_used
            .as_ref()
            .map(|s| s.addr.lock().clone())
            .or_else(|| remote.map(|r| r.to_string()))
            .unwrap_or_default();
        let from = remote.map(|r| r.to_string()).unwrap_or_default();
        match e {
            _ if logged_as_auth => {}
            e if e.is_quiet() || repeated => {
                tracing::debug!("replication: link to {who} ({from}) closed: {e}")
            }
            e => tracing::info!("replication: link to {who} ({from}) closed: {e}"),
        }
    }
    (slot_used, res)
}

async fn link_inner(
    sh: &Arc<Shared>,
    stream: TcpStream,
    dir: Dir,
    slot: Option<Slot>,
    remote: Option<SocketAddr>,
    slot_used: &mut Option<Slot>,
    permit: Option<Permit>,
) -> Result<(), LinkError> {
    let _ = stream.set_nodelay(true);
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    let me = sh.node_id;

    // 1. The secure channel, then HELLO inside it.
    let role = match dir {
        Dir::Outgoing => Role::Dialer,
        Dir::Incoming => Role::Acceptor,
    };
    // The dialer checks the acceptor's certificate against the name it dialed.
    let server_name = slot
        .as_ref()
        .and_then(|s| parse_peer(&s.addr.lock()).ok())
        .map(|(host, _)| host)
        .unwrap_or_default();
    let handshake = async {
        tokio::time::timeout_at(
            deadline,
            secure::establish(stream, role, &sh.security, &server_name),
        )
        .await
    };
    let evicted = async {
        match &permit {
            Some(p) => p.cancel.notified().await,
            None => std::future::pending().await,
        }
    };
    let (rd, mut wr) = tokio::select! {
        r = handshake => match r {
            Err(_) => return Err(LinkError::Timeout("in handshake")),
            Ok(r) => r?,
        },
        _ = evicted => return Err(LinkError::Evicted),
    };
    let mut reader = FrameReader {
        rd,
        buf: BytesMut::new(),
        limits: HANDSHAKE_LIMITS,
        skip_oversize: false,
        discard: 0,
        skipped: 0,
        deadline: Some(deadline),
    };
    let mut out = BytesMut::new();
    let hello = Frame::Hello {
        version: PROTO_VERSION,
        node: me,
        listen_port: sh.listen_port,
        listen_ip: sh.listen_ip,
    };
    // The acceptor speaks only after the dialer's HELLO decrypted: with Noise that message is
    // the dialer's proof of the key (its handshake message alone could be a replay).
    if dir == Dir::Outgoing {
        frame::encode(&hello, 0, &mut out);
        flush(&mut wr, &mut out).await?;
    }
    let (peer, peer_port, peer_ip) = match reader.next(HANDSHAKE_TIMEOUT, "in handshake").await? {
        Frame::Hello {
            version,
            node,
            listen_port,
            listen_ip,
        } => {
            if version != PROTO_VERSION {
                return Err(LinkError::Version(version));
            }
            (node, listen_port, listen_ip)
        }
        _ => return Err(LinkError::Protocol("expected HELLO".into())),
    };
    if dir == Dir::Incoming {
        frame::encode(&hello, 0, &mut out);
        flush(&mut wr, &mut out).await?;
    }
    // Authenticated: the connection no longer counts against the handshake budget.
    drop(permit);
    let slot = match slot {
        Some(s) => s,
        None => sh.slot_for_incoming(peer, remote, peer_port, peer_ip),
    };
    *slot_used = Some(slot.clone());
    if !sh.links.lock().contains_key(&peer) {
        slot.set_state(LinkState::Handshake);
    }
    // An authenticated peer with our own id is this node reached through its own address (or its
    // own handshake reflected back by a relay).
    if peer == me {
        return Err(LinkError::SelfConnect);
    }
    slot.node_id.store(peer, Ordering::Relaxed);
    reader.limits = sh.limits;
    reader.skip_oversize = true;
    reader.deadline = None;

    // 2. Admission: one link per pair of nodes.
    let (cancel_tx, mut cancel_rx) = watch::channel(false);
    let (done_tx, done_rx) = watch::channel(false);
    let id = sh.next_link_id.fetch_add(1, Ordering::Relaxed);
    let initiator = if dir == Dir::Outgoing { me } else { peer };
    let link = ActiveLink {
        id,
        initiator,
        cancel: cancel_tx,
        done: done_rx,
    };
    let admitted = {
        let mut links = sh.links.lock();
        if links.len() >= MAX_LINKS && !links.contains_key(&peer) {
            return Err(LinkError::TooManyLinks);
        }
        admit(&mut links, me, peer, link)
    };
    let _guard = LinkGuard {
        sh: sh.clone(),
        peer,
        id,
        done: done_tx,
    };
    let cancelled = async move {
        let _ = cancel_rx.wait_for(|c| *c).await;
    };
    let session = async {
        match admitted {
            Admit::Duplicate => return Err(LinkError::Duplicate(peer)),
            Admit::Replaces(mut old_done) => {
                let _ = timeout(HANDSHAKE_TIMEOUT, old_done.wait_for(|d| *d)).await;
            }
            Admit::Alone => {}
        }
        session(sh, reader, wr, &slot, peer).await
    };
    tokio::select! {
        r = session => r,
        _ = cancelled => Err(LinkError::Cancelled),
    }
}

/// Control messages from the reader half to the writer half.
enum Ctrl {
    /// The peer said BYE: send our ack right away.
    AckNow,
}

async fn session(
    sh: &Arc<Shared>,
    mut reader: FrameReader,
    mut wr: LinkWriter,
    slot: &Slot,
    peer: u32,
) -> Result<(), LinkError> {
    // 3. PSYNC both ways.
    let backlog = &sh.backlog;
    let (want_run, want_offset) = sh.progress(peer).unwrap_or((0, 0));
    let mut out = BytesMut::new();
    frame::encode(
        &Frame::Psync {
            run: backlog.run(),
            next: backlog.next_offset(),
            want_run,
            want_offset,
        },
        0,
        &mut out,
    );
    flush(&mut wr, &mut out).await?;
    let (p_want_run, p_want_offset) = match reader.next(HANDSHAKE_TIMEOUT, "in handshake").await? {
        Frame::Psync {
            want_run,
            want_offset,
            ..
        } => (want_run, want_offset),
        _ => return Err(LinkError::Protocol("expected PSYNC".into())),
    };
    let could_resume = p_want_run == backlog.run() && backlog.can_resume_after(p_want_offset);
    // Both directions resync the same way: if either side needs a snapshot, both send one.
    // Items are then compared on both nodes (the same winner everywhere); a snapshot one way
    // and a record stream the other could merge the same counter differently on each side.
    frame::encode(
        &Frame::SyncMode {
            full: !could_resume,
        },
        0,
        &mut out,
    );
    flush(&mut wr, &mut out).await?;
    let peer_full = match reader.next(HANDSHAKE_TIMEOUT, "in handshake").await? {
        Frame::SyncMode { full } => full,
        _ => return Err(LinkError::Protocol("expected SYNC_MODE".into())),
    };
    let partial = could_resume && !peer_full;
    *slot.settle_candidate.lock() = None;
    slot.peer_ack
        .store(if partial { p_want_offset } else { 0 }, Ordering::Relaxed);
    slot.set_state(LinkState::Syncing);
    let (ctrl_tx, ctrl_rx) = mpsc::channel(4);
    // The writer runs as its own task: it can use the other core, and a reader busy applying a
    // long snapshot never delays our heartbeats.
    let resume = partial.then_some(p_want_offset);
    let mut writer = AbortOnDrop(tokio::spawn(write_stream(
        sh.clone(),
        wr,
        slot.clone(),
        peer,
        resume,
        ctrl_rx,
    )));
    let reader = read_stream(sh, &mut reader, slot, peer, ctrl_tx);
    tokio::select! {
        r = &mut writer.0 => r.unwrap_or_else(|e| Err(LinkError::Protocol(format!("writer task failed: {e}")))),
        r = reader => r,
    }
}

/// The newest clock reading among a frame's versions (ms), and how much further ahead than the
/// usual skew it may legitimately be: a delayed flush is stamped at its flush time.
fn newest_millis(f: &Frame) -> Option<(u64, u64)> {
    let m = |v: &Version| v.millis();
    let flush_allowance = |at: u32| (at as u64 * 1000).saturating_sub(now_millis());
    match f {
        Frame::Record { mutation, .. } => Some(match &mutation.kind {
            MutationKind::Delta { base, .. } => (m(&mutation.version).max(m(base)), 0),
            MutationKind::Flush { at } => (m(&mutation.version), flush_allowance(*at)),
            _ => (m(&mutation.version), 0),
        }),
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

/// Records how far ahead of our clock the peer's clock was seen, and whether a version stamped
/// at `millis` may be adopted: one far in the future would drag this node's hybrid clock along
/// (and, at the top of the range, every later write would tie), so it is refused and counted.
fn clock_ok(sh: &Shared, slot: &Slot, millis: u64, allowance: u64) -> bool {
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

fn count(sh: &Shared, slot: &Slot, outcome: ApplyOutcome) {
    let (a, b) = match outcome {
        ApplyOutcome::Applied => (&slot.records_applied, &sh.totals.applied),
        ApplyOutcome::Stale => (&slot.records_stale, &sh.totals.stale),
        ApplyOutcome::Rejected => (&slot.records_rejected, &sh.totals.rejected),
    };
    a.fetch_add(1, Ordering::Relaxed);
    b.fetch_add(1, Ordering::Relaxed);
}

/// The peer's stream, as this node receives it.
enum Inbound {
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

async fn read_stream(
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
    loop {
        let skipped = reader.skipped;
        let f = match reader
            .next(DEAD_AFTER, "waiting for the peer (no heartbeat)")
            .await
        {
            Ok(f) => f,
            Err(LinkError::Closed) if bye => return Err(LinkError::PeerBye),
            Err(e) => return Err(e),
        };
        for _ in skipped..reader.skipped {
            count(sh, slot, ApplyOutcome::Rejected);
        }
        if let Some((ms, allowance)) = newest_millis(&f) {
            if !clock_ok(sh, slot, ms, allowance) {
                count(sh, slot, ApplyOutcome::Rejected);
                // A refused record still moves the stream on (it will not come again).
                if let (Frame::Record { offset, .. }, Inbound::Stream { run, last }) = (&f, &mut st)
                {
                    if *offset <= *last {
                        return Err(LinkError::Protocol(format!(
                            "record offset {offset} after {last}"
                        )));
                    }
                    *last = *offset;
                    sh.set_progress(peer, *run, *offset);
                }
                continue;
            }
        }
        if let Some((ms, 0)) = newest_millis(&f) {
            // For the failover barrier: how recent the peer's writes applied here are.
            slot.applied_through_ms.fetch_max(ms, Ordering::Relaxed);
        }
        match (f, &mut st) {
            (Frame::Record { offset, mutation }, Inbound::Stream { run, last }) => {
                if offset <= *last {
                    return Err(LinkError::Protocol(format!(
                        "record offset {offset} after {last}"
                    )));
                }
                count(sh, slot, store.apply_remote(&mutation));
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
                let ahead = now_ms as i64 - now_millis() as i64;
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
                if have_run != run || from != have + 1 {
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

fn frame_name(f: &Frame) -> &'static str {
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

fn heartbeat(sh: &Shared, peer: u32, out: &mut BytesMut) {
    let ack = sh.progress(peer).map(|(_, o)| o).unwrap_or(0);
    let last = sh.backlog.next_offset().saturating_sub(1);
    let now_ms = now_millis();
    frame::encode(&Frame::Heartbeat { ack, last, now_ms }, 0, out);
}

/// Streams this node's writes to the peer: a snapshot first unless resuming after `resume_after`.
async fn write_stream(
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
    match resume_after {
        Some(after) => {
            cursor = after + 1;
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
            // The flush horizon first: items older than it must go on the receiver too.
            if let Some((at, version)) = store.flush_mark() {
                frame::encode(&Frame::SnapFlush { at, version }, unix_now(), &mut out);
            }
            flush(&mut wr, &mut out).await?;
            let mut marks = Vec::with_capacity(store.shard_count());
            let mut items = 0u64;
            // Not interrupted by a shutdown: the writes acknowledged to clients since the
            // snapshot started follow it, and a stopping node must deliver them (the shutdown
            // wait bounds the whole drain).
            for i in 0..store.shard_count() {
                let now = unix_now();
                let mark = store.snapshot_shard_marked(
                    i,
                    || backlog.next_offset(),
                    |e| {
                        items += 1;
                        let f = match e {
                            SnapshotEntry::Item(it, counter) => Frame::SnapItem {
                                key: bytes::Bytes::copy_from_slice(it.key()),
                                value: bytes::Bytes::copy_from_slice(it.value()),
                                flags: it.flags,
                                exptime: it.exptime,
                                version: it.version,
                                base: it.base,
                                touched: it.touched,
                                counter: counter.cloned(),
                            },
                            SnapshotEntry::Tombstone {
                                key,
                                version,
                                touched,
                                exptime,
                            } => Frame::SnapTomb {
                                key: bytes::Bytes::copy_from_slice(key),
                                version,
                                touched,
                                exptime,
                            },
                        };
                        frame::encode(&f, now, &mut out);
                    },
                );
                marks.push(mark);
                if last_hb.elapsed() >= HEARTBEAT_EVERY {
                    heartbeat(&sh, peer, &mut out);
                    last_hb = Instant::now();
                }
                flush(&mut wr, &mut out).await?;
                // Give the reader half and other links a turn between shards.
                tokio::task::yield_now().await;
            }
            if !backlog.can_resume_after(start.saturating_sub(1)) {
                return Err(LinkError::Overrun);
            }
            frame::encode(&Frame::SnapEnd { items }, 0, &mut out);
            flush(&mut wr, &mut out).await?;
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
        let recs = backlog
            .read(cursor, BATCH_RECORDS, BATCH_BYTES)
            .map_err(|_| LinkError::Overrun)?;
        let mut sent = 0u64;
        if let Some(&(last, _)) = recs.last() {
            let now = unix_now();
            for (offset, m) in recs {
                if let Some((marks, _)) = &shard_marks {
                    if !m.key.is_empty() && offset < marks[store.shard_of(&m.key)] {
                        continue;
                    }
                }
                frame::encode(
                    &Frame::Record {
                        offset,
                        mutation: m,
                    },
                    now,
                    &mut out,
                );
                sent += 1;
            }
            cursor = last + 1;
            if shard_marks.as_ref().is_some_and(|(_, max)| cursor >= *max) {
                shard_marks = None;
            }
        }
        if !out.is_empty() {
            flush(&mut wr, &mut out).await?;
            slot.records_sent.fetch_add(sent, Ordering::Relaxed);
            sh.totals.sent.fetch_add(sent, Ordering::Relaxed);
            continue;
        }
        if draining {
            // Everything published so far has been written: say goodbye, wait for the ack.
            let last = cursor - 1;
            frame::encode(&Frame::Bye { last }, 0, &mut out);
            flush(&mut wr, &mut out).await?;
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
