//! State shared by the replication listener, the dialers and every link of this node, the
//! error type, and small helpers (peer address parsing, clocks) the links and the replicator
//! both use. It imports nothing of the links or the replicator, so the module graph stays
//! one-way: replicator, listener, dialer -> link -> shared.

use super::backlog::Backlog;
use super::budget;
use super::frame;
use super::peers::{ActiveLink, LinkState, PeerSlot, Slot};
use super::secure;
use crate::store::Store;
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{watch, Notify};

/// Port used for a peer named without one (repcached's default).
pub const DEFAULT_PORT: u16 = 11212;

/// Authenticated links beyond this many are refused (unauthenticated sockets have their own,
/// smaller budget: see `budget`).
pub(crate) const MAX_LINKS: usize = 256;
/// Slots of peers that dialed us and are gone are forgotten beyond this many.
const MAX_IDLE_INCOMING_SLOTS: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum ReplError {
    #[error("failed to listen on repl {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot read replication secret file {path}: {source}")]
    Secret {
        path: String,
        source: std::io::Error,
    },
    #[error("replication secret file {0} is empty")]
    EmptySecret(String),
    #[error(
        "replication secret file {path} is too weak: it holds {bits} bits of key material, \
         at least {min} are needed (make one with `{make}`)",
        min = crate::config::MIN_SECRET_BITS,
        make = crate::config::MAKE_SECRET
    )]
    WeakSecret { path: String, bits: usize },
    #[error("replication TLS: {0}")]
    Tls(String),
    #[error("bad replication peer address {0:?} (expected HOST[:PORT])")]
    BadPeer(String),
    #[error("cannot resolve replication listen address {0:?}")]
    BadListen(String),
    #[error(
        "replication over the non-loopback address {0} needs a shared secret \
         (--repl-secret-file FILE), or --repl-insecure to run without one \
         (or keep it on loopback: -l/--repl-listen 127.0.0.1, or -X 0 for no listener)"
    )]
    Insecure(String),
}

#[derive(Default)]
pub(crate) struct Totals {
    pub(crate) sent: AtomicU64,
    pub(crate) applied: AtomicU64,
    pub(crate) stale: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) bytes_sent: AtomicU64,
    pub(crate) bytes_received: AtomicU64,
    pub(crate) full_syncs: AtomicU64,
    pub(crate) partial_syncs: AtomicU64,
    /// Connections that failed the secure handshake (wrong secret, untrusted certificate,
    /// not a peer at all).
    pub(crate) auth_failures: AtomicU64,
    /// Pending handshakes evicted for a newer connection because their source (or all
    /// unauthenticated sockets) used up the budget.
    pub(crate) handshakes_refused: AtomicU64,
    /// Handshakes that did not finish within HANDSHAKE_TIMEOUT, or sent no whole preamble
    /// within `budget::FIRST_BYTE_TIMEOUT`.
    pub(crate) handshake_timeouts: AtomicU64,
    /// Records refused because their version was too far ahead of this node's clock.
    pub(crate) clock_rejected: AtomicU64,
    /// Authenticated links closed for a malformed, oversized or out-of-order frame.
    pub(crate) protocol_errors: AtomicU64,
    /// Certificate mode: links refused because the peer's certificate names no configured peer
    /// and no --repl-tls-peer-name, or its HELLO claimed the node id of another peer.
    pub(crate) identity_refused: AtomicU64,
    /// Records refused because their origin node is not the node the link speaks for.
    pub(crate) origin_rejected: AtomicU64,
}

/// State shared by the listener, the dialers and every link of this node.
pub(crate) struct Shared {
    pub(crate) store: Arc<Store>,
    pub(crate) node_id: u32,
    pub(crate) security: secure::Security,
    /// Plaintext links without --repl-insecure: checked at start to stay on loopback, and
    /// again at every dial (a peer's name may resolve elsewhere later).
    pub(crate) plain_loopback_only: bool,
    /// --repl-tls-peer-name: certificate names that may dial in without being configured.
    pub(crate) tls_peer_names: Vec<String>,
    pub(crate) budget: Arc<budget::HandshakeBudget>,
    pub(crate) failure_log: budget::FailureLog,
    /// A remote version more than this many milliseconds ahead of our wall clock is refused.
    pub(crate) max_skew_ms: u64,
    pub(crate) limits: frame::FrameLimits,
    pub(crate) backlog: Arc<Backlog>,
    pub(crate) listen_port: u16,
    /// The address the listener binds, told to peers in HELLO (None: all interfaces).
    pub(crate) listen_ip: Option<IpAddr>,
    /// Per peer node: (its backlog run, last offset of it applied here).
    pub(crate) inbound: Mutex<HashMap<u32, (u64, u64)>>,
    pub(crate) links: Mutex<HashMap<u32, ActiveLink>>,
    pub(crate) slots: Mutex<Vec<Slot>>,
    pub(crate) synced_nodes: Mutex<HashSet<u32>>,
    pub(crate) shutdown: watch::Sender<bool>,
    pub(crate) next_link_id: AtomicU64,
    pub(crate) live: AtomicUsize,
    pub(crate) live_changed: Notify,
    pub(crate) totals: Totals,
}

/// Counts a running link; dropping it wakes a waiting shutdown.
pub(crate) struct LiveGuard(Arc<Shared>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::AcqRel);
        self.0.live_changed.notify_waiters();
    }
}

impl Shared {
    pub(crate) fn live_link(self: &Arc<Self>) -> LiveGuard {
        self.live.fetch_add(1, Ordering::AcqRel);
        LiveGuard(self.clone())
    }

    pub(crate) fn progress(&self, peer: u32) -> Option<(u64, u64)> {
        self.inbound.lock().get(&peer).copied()
    }

    pub(crate) fn set_progress(&self, peer: u32, run: u64, offset: u64) {
        self.inbound.lock().insert(peer, (run, offset));
    }

    pub(crate) fn clear_progress(&self, peer: u32) {
        self.inbound.lock().remove(&peer);
    }

    /// Whether `ip` is the address of a configured peer (its handshakes get reserved slots).
    pub(crate) fn is_peer_ip(&self, ip: IpAddr) -> bool {
        self.configured_slot_at(ip).is_some()
    }

    /// The configured peer whose name resolved to `ip`, if any.
    pub(crate) fn configured_slot_at(&self, ip: IpAddr) -> Option<Slot> {
        self.slots
            .lock()
            .iter()
            .find(|s| s.configured && s.resolved.lock().iter().any(|a| canonical_ip(a.ip()) == ip))
            .cloned()
    }

    /// Tells the store how far every peer is settled (see `shard::Tombstone`): the lowest
    /// settled offset over every peer this node knows (configured or not, connected or not:
    /// a peer away keeps our tombstones until the time limit), and the only peer's node id.
    pub(crate) fn update_tombstone_watermark(&self) {
        let slots = self.slots.lock();
        let acked = slots
            .iter()
            .map(|s| s.settled_ack.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0);
        let sole = match slots.as_slice() {
            [only] => only.node_id.load(Ordering::Relaxed),
            _ => 0,
        };
        self.store.set_tombstone_watermark(acked, sole);
    }

    pub(crate) fn mark_synced(&self, slot: &Slot, peer: u32) {
        slot.set_state(LinkState::Synced);
        slot.end_initial_wait("synced");
        self.synced_nodes.lock().insert(peer);
    }

    /// Certificate mode: the slot of an incoming link whose peer presented `cert`. The
    /// certificate decides: configured peers whose host name or address it is valid for (of
    /// several, the one that knows node id `peer`, else the one at the listen address the
    /// peer advertised, else the first), else a slot named after the first --repl-tls-peer-name
    /// it is valid for. None: the certificate names no peer of ours and is refused. What the
    /// HELLO claims only chooses among the slots the certificate already entitles.
    pub(crate) fn slot_for_certificate(
        &self,
        cert: &secure::PeerCert,
        peer: u32,
        remote: Option<SocketAddr>,
        port: u16,
        listen_ip: Option<IpAddr>,
    ) -> Option<Slot> {
        let mut slots = self.slots.lock();
        let named: Vec<Slot> = slots
            .iter()
            .filter(|s| s.configured && cert.is_valid_for(&slot_host(s)))
            .cloned()
            .collect();
        if !named.is_empty() {
            if let Some(s) = named
                .iter()
                .find(|s| s.node_id.load(Ordering::Relaxed) == peer)
            {
                return Some(s.clone());
            }
            let advertised: Vec<SocketAddr> = [listen_ip, remote.map(|r| r.ip())]
                .into_iter()
                .flatten()
                .filter(|_| port != 0)
                .map(|ip| SocketAddr::new(canonical_ip(ip), port))
                .collect();
            for adv in &advertised {
                if let Some(s) = named.iter().find(|s| {
                    s.resolved
                        .lock()
                        .iter()
                        .any(|a| SocketAddr::new(canonical_ip(a.ip()), a.port()) == *adv)
                }) {
                    return Some(s.clone());
                }
            }
            return named.first().cloned();
        }
        let name = self.tls_peer_names.iter().find(|n| cert.is_valid_for(n))?;
        if let Some(s) = slots
            .iter()
            .find(|s| !s.configured && *s.addr.lock() == *name)
        {
            return Some(s.clone());
        }
        Some(new_incoming_slot(&mut slots, name.clone()))
    }

    /// Certificate mode: whether node id `peer`, claimed in HELLO by the link of `slot` whose
    /// peer presented `cert`, may be that link's. Node ids are not in certificates, so a claim
    /// only holds while its link lives: another slot that knows the id but whose link has ended
    /// forgets it (else the first peer to claim an id, an impostor with a genuine certificate
    /// for another peer among them, would keep it and lock its owner out). While the other
    /// slot's link lives, the claim is refused, unless `dialed`: this node dialed `slot`'s
    /// configured address and the certificate was checked against that name, which beats a
    /// claim that only rests on what an incoming HELLO said; then `Ok(true)`: the other slot
    /// forgets the id and the caller ends its link. A slot whose name `cert` is valid for is
    /// the same identity and never conflicts.
    pub(crate) fn check_node_claim(
        &self,
        slot: &Slot,
        peer: u32,
        cert: &secure::PeerCert,
        dialed: bool,
    ) -> Result<bool, String> {
        let live = self.links.lock().contains_key(&peer);
        let slots = self.slots.lock();
        let mut take_over = false;
        for s in slots.iter() {
            if Arc::ptr_eq(s, slot) || s.node_id.load(Ordering::Relaxed) != peer {
                continue;
            }
            let host = slot_host(s);
            if cert.is_valid_for(&host) {
                continue;
            }
            if live && !dialed {
                return Err(format!(
                    "its HELLO claims node id {peer:08x}, which belongs to peer {} (linked \
                     now), but its certificate does not name {host}",
                    s.addr.lock()
                ));
            }
            // Ids are random per start: another identity claiming one is rare enough to show.
            tracing::warn!(
                "replication: node id {peer:08x} moves from peer {} to {}{}",
                s.addr.lock(),
                slot.addr.lock(),
                if live {
                    " (dialed at its configured address: its link replaces the other)"
                } else {
                    ""
                }
            );
            s.node_id.store(0, Ordering::Relaxed);
            take_over |= live;
        }
        Ok(take_over)
    }

    /// The slot an incoming link belongs to: the one that knows this node id, else a configured
    /// peer whose address matches what the peer advertised (its listen address, else the
    /// connection's source address, with its listen port), else one for this dialer alone.
    /// (The advertised address comes from the authenticated HELLO; the source address alone
    /// would not do for a multi-homed peer whose links leave from another address.)
    pub(crate) fn slot_for_incoming(
        &self,
        peer: u32,
        remote: Option<SocketAddr>,
        port: u16,
        listen_ip: Option<IpAddr>,
    ) -> Slot {
        let mut slots = self.slots.lock();
        if let Some(s) = slots
            .iter()
            .find(|s| s.node_id.load(Ordering::Relaxed) == peer)
        {
            return s.clone();
        }
        let candidates: Vec<SocketAddr> = [listen_ip, remote.map(|r| r.ip())]
            .into_iter()
            .flatten()
            .filter(|_| port != 0)
            .map(|ip| SocketAddr::new(canonical_ip(ip), port))
            .collect();
        for adv in &candidates {
            if let Some(s) = slots.iter().find(|s| {
                s.configured
                    && s.resolved
                        .lock()
                        .iter()
                        .any(|a| SocketAddr::new(canonical_ip(a.ip()), a.port()) == *adv)
            }) {
                return s.clone();
            }
        }
        let advertised = candidates.first().copied();
        let addr = advertised
            .or(remote)
            .map(|a| a.to_string())
            .unwrap_or_else(|| "?".into());
        if let Some(s) = slots
            .iter()
            .find(|s| !s.configured && *s.addr.lock() == addr)
        {
            return s.clone();
        }
        new_incoming_slot(&mut slots, addr)
    }
}

/// A new slot for a peer that dialed in, forgetting the oldest idle one beyond
/// MAX_IDLE_INCOMING_SLOTS.
fn new_incoming_slot(slots: &mut Vec<Slot>, addr: String) -> Slot {
    let idle: Vec<usize> = slots
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.configured && s.state() == LinkState::Down)
        .map(|(i, _)| i)
        .collect();
    if idle.len() >= MAX_IDLE_INCOMING_SLOTS {
        slots.remove(idle[0]);
    }
    let s = Arc::new(PeerSlot::new(addr, false));
    slots.push(s.clone());
    s
}

/// The name a slot's certificate must be valid for: a configured peer's host, or the
/// --repl-tls-peer-name an unconfigured slot was created for.
fn slot_host(s: &Slot) -> String {
    let addr = s.addr.lock().clone();
    parse_peer(&addr).map(|(h, _)| h).unwrap_or(addr)
}

/// An IPv4 address seen through an IPv6 socket (`::ffff:a.b.c.d`) as the IPv4 address, so that
/// budgets and peer matching see one address, not two.
pub(crate) fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

pub(crate) fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Splits `HOST[:PORT]`, `[V6]:PORT`, or a bare IPv6 address.
pub fn parse_peer(s: &str) -> Result<(String, u16), ReplError> {
    let bad = || ReplError::BadPeer(s.to_string());
    let t = s.trim();
    if t.is_empty() {
        return Err(bad());
    }
    if let Some(rest) = t.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        let port = match after {
            "" => DEFAULT_PORT,
            p => p
                .strip_prefix(':')
                .and_then(|p| p.parse().ok())
                .ok_or_else(bad)?,
        };
        return Ok((host.to_string(), port));
    }
    match t.matches(':').count() {
        0 => Ok((t.to_string(), DEFAULT_PORT)),
        1 => {
            let (h, p) = t.split_once(':').ok_or_else(bad)?;
            if h.is_empty() {
                return Err(bad());
            }
            Ok((h.to_string(), p.parse().map_err(|_| bad())?))
        }
        _ => t
            .parse::<IpAddr>()
            .map(|ip| (ip.to_string(), DEFAULT_PORT))
            .map_err(|_| bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_addresses() {
        assert_eq!(parse_peer("host").unwrap(), ("host".into(), 11212));
        assert_eq!(parse_peer("host:1234").unwrap(), ("host".into(), 1234));
        assert_eq!(parse_peer("[::1]:99").unwrap(), ("::1".into(), 99));
        assert_eq!(parse_peer("[::1]").unwrap(), ("::1".into(), 11212));
        assert_eq!(parse_peer("::1").unwrap(), ("::1".into(), 11212));
        assert!(parse_peer("host:x").is_err());
        assert!(parse_peer("").is_err());
        assert!(parse_peer(":5").is_err());
    }
}
