//! One replication link over one TCP connection, from HELLO to close.
//!
//! Sequence (both sides run the same code, whoever dialed):
//! 1. The secure channel (`secure`: Noise with the shared secret, or mutual TLS), bounded by
//!    HANDSHAKE_TIMEOUT and, on the listener, by the unauthenticated budget. Then HELLO both ways
//!    inside it (protocol version, node id, listen port): the dialer first, the acceptor only
//!    after the dialer's HELLO decrypted, which is the proof that the dialer holds the key.
//!    In certificate mode the peer's certificate, not its HELLO, says which peer the link is:
//!    the acceptor maps the certificate's names to a configured peer (or a
//!    --repl-tls-peer-name) and refuses it otherwise, before its own HELLO; a node id claimed
//!    in HELLO that another peer's live link speaks for is refused on both sides, unless this
//!    node dialed the claimant at its configured address (`Shared::check_node_claim`). The
//!    authenticated node id enters the store's node table. Every record the link then carries
//!    must originate at the node it speaks for, and snapshot entries name origins within the
//!    node table's bounds (`inbound`).
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
//!
//! Files: `io` (constants, errors, the frame reader, the bounded writer), `handshake` (phases 1
//! and 3: what the nodes agree on before the stream), `inbound` (the stream read: what the peer
//! sends, frame by frame), `checks` (what each of its frames must pass), `outbound` (the stream
//! written: what this node sends); this file runs the phases in order, admission, and the
//! session that joins the two halves, and counts and logs how a link ended.

mod checks;
mod handshake;
mod inbound;
mod io;
mod outbound;

pub use io::{Dir, LinkError};

use super::budget::Permit;
use super::peers::{admit, ActiveLink, Admit, LinkState, Slot};
use super::secure::LinkWriter;
use super::shared::{canonical_ip, Shared, MAX_LINKS};
use handshake::{authenticate, negotiate_sync, Authenticated};
use inbound::read_stream;
use io::*;
use outbound::write_stream;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::timeout;

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
        if matches!(e, LinkError::Identity(_)) {
            sh.totals.identity_refused.fetch_add(1, Ordering::Relaxed);
        }
        if matches!(e, LinkError::Timeout("in handshake")) {
            sh.totals.handshake_timeouts.fetch_add(1, Ordering::Relaxed);
        }
        let auth_failure = matches!(e, LinkError::Secure(s) if s.is_auth_failure());
        // Authentication failures and identity refusals are logged alike (rate-limited).
        if auth_failure || matches!(e, LinkError::Identity(_)) {
            if auth_failure {
                sh.totals.auth_failures.fetch_add(1, Ordering::Relaxed);
                // Incoming links have no slot yet: charge the configured peer at that address.
                let slot = slot_used
                    .clone()
                    .or_else(|| sh.configured_slot_at(canonical_ip(remote?.ip())));
                if let Some(s) = slot {
                    s.auth_failures.fetch_add(1, Ordering::Relaxed);
                }
            }
            // Once per address per minute: a scanner or a misconfigured peer retrying every
            // few seconds must not flood the log.
            let logged = remote.is_none_or(|r| sh.failure_log.should_log(canonical_ip(r.ip())));
            let from = remote.map(|r| r.to_string()).unwrap_or_default();
            if logged {
                tracing::warn!("replication: rejected peer connection {from}: {e}");
            } else {
                tracing::debug!("replication: rejected peer connection {from}: {e}");
            }
        }
    }
    let logged_as_auth = matches!(&res, Err(LinkError::Secure(s)) if s.is_auth_failure())
        || matches!(&res, Err(LinkError::Identity(_)));
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
            // Clock skew has its own warning, once a minute (`inbound::skew_error`).
            e if e.is_quiet() || repeated || matches!(e, LinkError::ClockSkew(..)) => {
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
    let me = sh.node_id;
    // 1. The secure channel, then HELLO inside it: who the peer is.
    let Authenticated {
        reader,
        wr,
        peer,
        slot,
        take_over,
    } = authenticate(sh, stream, dir, slot, remote, slot_used, permit).await?;

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
        // The node id was claimed by another peer's link, which a dialed certificate beats
        // (`check_node_claim`): that link ends, and nothing of its progress is kept.
        let usurper = if take_over { links.remove(&peer) } else { None };
        if links.len() >= MAX_LINKS && !links.contains_key(&peer) {
            return Err(LinkError::TooManyLinks);
        }
        match usurper {
            Some(old) => {
                let _ = old.cancel.send(true);
                links.insert(peer, link);
                Admit::Replaces(old.done)
            }
            None => admit(&mut links, me, peer, link),
        }
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
        if take_over {
            // The usurper has stopped: what it sent under this node id is not the owner's
            // stream, so the owner's starts over (a full sync).
            sh.clear_progress(peer);
        }
        session(sh, reader, wr, &slot, peer).await
    };
    tokio::select! {
        r = session => r,
        _ = cancelled => Err(LinkError::Cancelled),
    }
}

async fn session(
    sh: &Arc<Shared>,
    mut reader: FrameReader,
    mut wr: LinkWriter,
    slot: &Slot,
    peer: u32,
) -> Result<(), LinkError> {
    // 3. PSYNC and SYNC_MODE both ways: resume or full sync.
    let resume = negotiate_sync(sh, &mut reader, &mut wr, peer).await?;
    *slot.settle_candidate.lock() = None;
    slot.peer_ack.store(resume.unwrap_or(0), Ordering::Relaxed);
    slot.set_state(LinkState::Syncing);
    let (ctrl_tx, ctrl_rx) = mpsc::channel(4);
    // The writer runs as its own task: it can use the other core, and a reader busy applying a
    // long snapshot never delays our heartbeats.
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
