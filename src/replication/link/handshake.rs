//! The link's handshake, where the two nodes agree on everything before the stream: the secure
//! channel and HELLO (protocol version, node id, listen address), who the peer is (its slot, its
//! certificate's names, its node id claim), then PSYNC and SYNC_MODE (resume from the backlog or
//! a full sync both ways). An option both nodes must agree on goes in HELLO or next to PSYNC.

use super::super::budget::Permit;
use super::super::frame::{self, Frame, PROTO_VERSION};
use super::super::peers::{LinkState, Slot};
use super::super::secure::{self, LinkReader, LinkWriter, Role};
use super::super::shared::{parse_peer, Shared};
use super::io::*;
use bytes::BytesMut;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// A link whose peer has proven who it is (phase 1 done).
pub(super) struct Authenticated {
    pub(super) reader: FrameReader,
    pub(super) wr: LinkWriter,
    /// The peer's node id.
    pub(super) peer: u32,
    pub(super) slot: Slot,
    /// The peer's node id was another peer's whose link a dialed certificate beats
    /// (`Shared::check_node_claim`): that link ends.
    pub(super) take_over: bool,
}

/// The secure channel, then HELLO both ways inside it, then who the peer is: its slot (the
/// configured one for outgoing links; for incoming ones, the one its certificate or HELLO maps
/// to, reported through `slot_used` as soon as it is known) and its node id, admitted to the
/// store's node table. Bounded by HANDSHAKE_TIMEOUT, and on the listener by the budget (the
/// permit, dropped once the peer is authenticated).
pub(super) async fn authenticate(
    sh: &Arc<Shared>,
    stream: TcpStream,
    dir: Dir,
    slot: Option<Slot>,
    remote: Option<SocketAddr>,
    slot_used: &mut Option<Slot>,
    permit: Option<Permit>,
) -> Result<Authenticated, LinkError> {
    let _ = stream.set_nodelay(true);
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    let me = sh.node_id;

    // 1. The secure channel, then HELLO inside it.
    let (rd, mut wr) =
        open_channel(sh, stream, dir, slot.as_ref(), deadline, permit.as_ref()).await?;
    let mut reader = FrameReader {
        rd,
        buf: BytesMut::new(),
        limits: HANDSHAKE_LIMITS,
        skip_oversize: false,
        discard: 0,
        skipped: 0,
        received: 0,
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
    let cert = reader.rd.peer_certificate();
    let slot = match (slot, cert) {
        (Some(s), _) => s,
        (None, Some(cert)) => sh
            .slot_for_certificate(cert, peer, remote, peer_port, peer_ip)
            .ok_or_else(|| {
                LinkError::Identity(
                    "its certificate names no configured peer (-x) and no \
                     --repl-tls-peer-name"
                        .into(),
                )
            })?,
        (None, None) => sh.slot_for_incoming(peer, remote, peer_port, peer_ip),
    };
    *slot_used = Some(slot.clone());
    let take_over = match cert {
        Some(cert) => sh
            .check_node_claim(&slot, peer, cert, dir == Dir::Outgoing)
            .map_err(LinkError::Identity)?,
        None => false,
    };
    if dir == Dir::Incoming {
        frame::encode(&hello, 0, &mut out);
        flush(&mut wr, &mut out).await?;
    }
    // Authenticated: the connection no longer counts against the handshake budget.
    drop(permit);
    if !sh.links.lock().contains_key(&peer) {
        slot.set_state(LinkState::Handshake);
    }
    // An authenticated peer with our own id is this node reached through its own address (or its
    // own handshake reflected back by a relay).
    if peer == me {
        return Err(LinkError::SelfConnect);
    }
    // Authenticated: from now on items may carry this node's versions (the store's node table
    // gains ids only here, and within a bounded share from snapshots: see `inbound`).
    if !sh.store.admit_node(peer) {
        return Err(LinkError::Identity(format!(
            "its node id {peer:08x} is new and this node's table of 65,536 node ids is full \
             (restart this node to clear it)"
        )));
    }
    slot.node_id.store(peer, Ordering::Relaxed);
    reader.limits = sh.limits;
    reader.skip_oversize = true;
    reader.deadline = None;
    Ok(Authenticated {
        reader,
        wr,
        peer,
        slot,
        take_over,
    })
}

/// The secure channel (`secure::establish`), bounded by `deadline` and, for a connection the
/// listener charged to the budget, ended when the budget evicts it.
async fn open_channel(
    sh: &Shared,
    stream: TcpStream,
    dir: Dir,
    slot: Option<&Slot>,
    deadline: Instant,
    permit: Option<&Permit>,
) -> Result<(LinkReader, LinkWriter), LinkError> {
    let role = match dir {
        Dir::Outgoing => Role::Dialer,
        Dir::Incoming => Role::Acceptor,
    };
    // The dialer checks the acceptor's certificate against the name it dialed.
    let server_name = slot
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
        match permit {
            Some(p) => p.cancel.notified().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        r = handshake => match r {
            Err(_) => Err(LinkError::Timeout("in handshake")),
            Ok(r) => Ok(r?),
        },
        _ = evicted => Err(LinkError::Evicted),
    }
}

/// PSYNC both ways ("I have applied your run R up to offset O"), then SYNC_MODE both ways
/// ("I can resume you from my backlog" or not). Returns where this node's stream resumes
/// (the peer's offset), or None for a full sync: if either side needs a snapshot, both send one.
pub(super) async fn negotiate_sync(
    sh: &Shared,
    reader: &mut FrameReader,
    wr: &mut LinkWriter,
    peer: u32,
) -> Result<Option<u64>, LinkError> {
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
    flush(wr, &mut out).await?;
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
    flush(wr, &mut out).await?;
    let peer_full = match reader.next(HANDSHAKE_TIMEOUT, "in handshake").await? {
        Frame::SyncMode { full } => full,
        _ => return Err(LinkError::Protocol("expected SYNC_MODE".into())),
    };
    let partial = could_resume && !peer_full;
    Ok(partial.then_some(p_want_offset))
}
