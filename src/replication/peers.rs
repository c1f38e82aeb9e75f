//! What the node knows about each peer: address, node id, link state and counters (the rows of
//! `stats replication`), and the registry of live links that keeps one link per pair of nodes.

use parking_lot::Mutex;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum LinkState {
    Connecting = 0,
    Handshake = 1,
    Syncing = 2,
    Synced = 3,
    Down = 4,
    /// The peer's clock is further from ours than --repl-max-clock-skew (its heartbeats say
    /// so), or a record of its stream is stamped that far ahead: nothing more of its stream is
    /// applied until that is over (see `PeerSlot::clock_skewed`).
    ClockSkew = 5,
}

impl LinkState {
    pub fn name(self) -> &'static str {
        match self {
            LinkState::Connecting => "connecting",
            LinkState::Handshake => "handshake",
            LinkState::Syncing => "syncing",
            LinkState::Synced => "synced",
            LinkState::Down => "down",
            LinkState::ClockSkew => "clock_skew",
        }
    }

    fn from_u8(v: u8) -> LinkState {
        match v {
            0 => LinkState::Connecting,
            1 => LinkState::Handshake,
            2 => LinkState::Syncing,
            3 => LinkState::Synced,
            _ => LinkState::Down,
        }
    }
}

/// One peer: either named in the configuration (we dial it) or one that dialed us.
pub struct PeerSlot {
    pub addr: Mutex<String>,
    pub configured: bool,
    /// Addresses the configured name resolved to (matches incoming links to this slot).
    pub resolved: Mutex<Vec<SocketAddr>>,
    pub node_id: AtomicU32,
    state: AtomicU8,
    pub records_sent: AtomicU64,
    pub records_applied: AtomicU64,
    pub records_stale: AtomicU64,
    pub records_rejected: AtomicU64,
    /// Frame bytes (before encryption) sent to and received from the peer.
    pub bytes_sent: AtomicU64,
    pub bytes_received: AtomicU64,
    /// Last offset of our backlog the peer has confirmed applying (on the current link).
    pub peer_ack: AtomicU64,
    /// Offset of our stream up to which the peer is settled for tombstones: it acknowledged
    /// that far, and we had applied every write it made before acknowledging (see
    /// `shard::Tombstone`). Only grows.
    pub settled_ack: AtomicU64,
    /// A heartbeat's (ack, the peer's newest offset then) waiting for us to apply that far.
    pub settle_candidate: Mutex<Option<(u64, u64)>>,
    /// Wall-clock ms of the newest of our writes the peer has confirmed (0: none known).
    pub acked_through_ms: AtomicU64,
    /// Wall-clock ms of the newest write of the peer applied here (records and snapshots).
    pub applied_through_ms: AtomicU64,
    /// Full / partial syncs this node received from the peer, and sent to it.
    pub full_syncs: AtomicU64,
    pub partial_syncs: AtomicU64,
    pub full_syncs_sent: AtomicU64,
    pub partial_syncs_sent: AtomicU64,
    pub last_error: Mutex<String>,
    /// Connections to or from this peer that failed the secure handshake.
    pub auth_failures: AtomicU64,
    /// Records from this peer refused for a version too far ahead of our clock.
    pub clock_rejected: AtomicU64,
    /// The most any of this peer's versions or heartbeats was ahead of our clock, in ms
    /// (negative: behind; `i64::MIN` until seen).
    pub max_clock_skew_ms: AtomicI64,
    /// The peer's clock minus ours, in ms, from its latest heartbeat (`i64::MIN` until seen).
    pub clock_offset_ms: AtomicI64,
    /// The latest heartbeat put the peer's clock beyond the skew bound.
    pub skew_offset: AtomicBool,
    /// The offset of the peer's record refused for a stamp beyond the bound, which its stream
    /// is stopped at (u64::MAX: a snapshot entry; 0: none). Cleared once the stream gets past.
    pub skew_blocked_at: AtomicU64,
    /// When the clock-skew warning was last logged (ms), to log it once a minute at most.
    pub skew_warned_ms: AtomicU64,
    /// The first sync from this peer finished, or the peer turned out unreachable: either way
    /// a starting node stops waiting for it.
    pub initial_done: AtomicBool,
    /// How the initial-sync wait ended for this peer (`stats replication`: initial_sync).
    pub initial_outcome: Mutex<String>,
}

impl PeerSlot {
    pub fn new(addr: String, configured: bool) -> PeerSlot {
        PeerSlot {
            addr: Mutex::new(addr),
            configured,
            resolved: Mutex::new(Vec::new()),
            node_id: AtomicU32::new(0),
            state: AtomicU8::new(if configured {
                LinkState::Connecting
            } else {
                LinkState::Down
            } as u8),
            records_sent: AtomicU64::new(0),
            records_applied: AtomicU64::new(0),
            records_stale: AtomicU64::new(0),
            records_rejected: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            peer_ack: AtomicU64::new(0),
            settled_ack: AtomicU64::new(0),
            settle_candidate: Mutex::new(None),
            acked_through_ms: AtomicU64::new(0),
            applied_through_ms: AtomicU64::new(0),
            full_syncs: AtomicU64::new(0),
            partial_syncs: AtomicU64::new(0),
            full_syncs_sent: AtomicU64::new(0),
            partial_syncs_sent: AtomicU64::new(0),
            last_error: Mutex::new(String::new()),
            auth_failures: AtomicU64::new(0),
            clock_rejected: AtomicU64::new(0),
            max_clock_skew_ms: AtomicI64::new(i64::MIN),
            clock_offset_ms: AtomicI64::new(i64::MIN),
            skew_offset: AtomicBool::new(false),
            skew_blocked_at: AtomicU64::new(0),
            skew_warned_ms: AtomicU64::new(0),
            initial_done: AtomicBool::new(false),
            initial_outcome: Mutex::new(if configured { "waiting" } else { "-" }.into()),
        }
    }

    /// A heartbeat said the peer applied our stream through `ack` when its own stream was at
    /// `last`; we have applied its stream through `applied` (None: not streaming yet).
    pub fn settle(&self, ack: u64, last: u64, applied: Option<u64>) {
        let mut cand = self.settle_candidate.lock();
        let Some(applied) = applied else {
            *cand = None;
            return;
        };
        if let Some((a, l)) = *cand {
            if applied >= l {
                self.settled_ack.fetch_max(a, Ordering::Relaxed);
                *cand = None;
            }
        }
        if cand.is_none() {
            if applied >= last {
                self.settled_ack.fetch_max(ack, Ordering::Relaxed);
            } else {
                *cand = Some((ack, last));
            }
        }
    }

    /// The link's state; `ClockSkew` whenever the clocks are out of bounds, whatever the
    /// link is doing (it reconnects and is refused again until they are not).
    pub fn state(&self) -> LinkState {
        if self.clock_skewed() {
            return LinkState::ClockSkew;
        }
        LinkState::from_u8(self.state.load(Ordering::Relaxed))
    }

    /// Whether the peer's clock is beyond the skew bound, or its stream is stopped at a record
    /// stamped beyond it.
    pub fn clock_skewed(&self) -> bool {
        self.skew_offset.load(Ordering::Relaxed)
            || self.skew_blocked_at.load(Ordering::Relaxed) != 0
    }

    pub fn set_state(&self, s: LinkState) {
        self.state.store(s as u8, Ordering::Relaxed);
    }

    /// A starting node stops waiting for this peer: its first sync `outcome` (synced, or why
    /// not). Only the first call counts.
    pub fn end_initial_wait(&self, outcome: &str) {
        if !self.initial_done.swap(true, Ordering::AcqRel) {
            *self.initial_outcome.lock() = outcome.replace(['\r', '\n'], " ");
            if self.configured {
                tracing::info!(
                    "replication: initial sync with {}: {outcome}",
                    self.addr.lock()
                );
            }
        }
    }

    pub fn set_error(&self, e: impl ToString) {
        *self.last_error.lock() = e.to_string();
    }
}

/// A link that finished its handshake and owns the pair (this node, `peer`).
pub struct ActiveLink {
    pub id: u64,
    /// Node id of the side that opened the TCP connection.
    pub initiator: u32,
    pub cancel: watch::Sender<bool>,
    /// Becomes true when the link's task has fully stopped.
    pub done: watch::Receiver<bool>,
}

/// Decision on a freshly authenticated link when the pair may already have one.
pub enum Admit {
    /// No other link: go ahead.
    Alone,
    /// Another link loses to this one: it was cancelled, wait for it to stop first.
    Replaces(watch::Receiver<bool>),
    /// The existing link wins: close this one.
    Duplicate,
}

/// Which of two links between nodes `a` and `b` survives is decided the same way on both nodes:
/// the one opened by the lower node id. A new link from the same initiator replaces the old one
/// (the old one is a dead connection the node has not noticed yet).
pub fn admit(
    links: &mut std::collections::HashMap<u32, ActiveLink>,
    me: u32,
    peer: u32,
    link: ActiveLink,
) -> Admit {
    let preferred = me.min(peer);
    match links.get(&peer) {
        None => {
            links.insert(peer, link);
            Admit::Alone
        }
        Some(old) if old.initiator != link.initiator && old.initiator == preferred => {
            Admit::Duplicate
        }
        Some(_) => {
            let old = links.insert(peer, link).expect("checked above");
            let _ = old.cancel.send(true);
            Admit::Replaces(old.done)
        }
    }
}

/// Shared handle to a slot list entry.
pub type Slot = Arc<PeerSlot>;
