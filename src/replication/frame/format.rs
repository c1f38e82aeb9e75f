//! The vocabulary of the wire format: protocol constants, the frame type and record kind codes,
//! [`Frame`] (every frame as a value), the receiver's [`FrameLimits`], [`FrameError`], and how
//! expiry times travel (remaining seconds, see [`ttl_out`] and [`ttl_in`]).

use crate::store::{Counter, Mutation, Version};
use bytes::Bytes;

pub const MAGIC: [u8; 4] = *b"RPCD";
/// 3: PN-counter contributions in DELTA records and SNAP_ITEM frames.
pub const PROTO_VERSION: u16 = 3;
/// memcached's KEY_MAX_LENGTH.
pub const KEY_MAX: usize = 250;
/// Room for a frame's fixed fields on top of its key and value.
const FRAME_OVERHEAD: usize = 1024;
/// Most contributions one counter may carry in a snapshot frame (one per node that incremented
/// it; far more nodes than any mesh has).
pub(super) const MAX_CONTRIBUTIONS: usize = 4096;
/// `ttl` value meaning "already expired" (distinct from 0 = never).
const TTL_EXPIRED: u32 = u32::MAX;

pub(super) const T_HELLO: u8 = 1;
pub(super) const T_PSYNC: u8 = 3;
pub(super) const T_FULLSYNC: u8 = 4;
pub(super) const T_CONTINUE: u8 = 5;
pub(super) const T_SNAP_ITEM: u8 = 6;
pub(super) const T_SNAP_TOMB: u8 = 7;
pub(super) const T_SNAP_END: u8 = 8;
pub(super) const T_SNAP_FLUSH: u8 = 9;
pub(super) const T_SYNC_MODE: u8 = 10;
pub(super) const T_RECORD: u8 = 16;
pub(super) const T_HEARTBEAT: u8 = 32;
pub(super) const T_BYE: u8 = 33;

pub(super) const K_PUT: u8 = 1;
pub(super) const K_DELETE: u8 = 2;
pub(super) const K_TOUCH: u8 = 3;
pub(super) const K_DELTA: u8 = 4;
pub(super) const K_FLUSH: u8 = 5;

/// Limits a replication receiver enforces on every peer frame (client input has its own,
/// `protocol::ParseLimits`).
#[derive(Debug, Clone, Copy)]
pub struct FrameLimits {
    pub item_size_max: usize,
}

impl FrameLimits {
    pub fn max_frame(&self) -> usize {
        self.item_size_max + KEY_MAX + FRAME_OVERHEAD
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// First frame each side sends inside the secure channel (see `secure`). `listen_port` is
    /// the sender's replication port (0 = none) and `listen_ip` the address its listener binds
    /// (None: all interfaces), which let the receiver match an incoming link to a configured
    /// peer even when the connection leaves from another source address.
    Hello {
        version: u16,
        node: u32,
        listen_port: u16,
        listen_ip: Option<std::net::IpAddr>,
    },
    /// "My backlog is `run` up to `next - 1`; I have applied your run `want_run` up to
    /// `want_offset`" (`want_run` 0 = nothing usable: send me a full snapshot).
    Psync {
        run: u64,
        next: u64,
        want_run: u64,
        want_offset: u64,
    },
    /// Whether the sender needs to send a full snapshot (it cannot resume the receiver from its
    /// backlog); if either side does, both do.
    SyncMode {
        full: bool,
    },
    /// A snapshot follows, then records from `start` on.
    FullSync {
        run: u64,
        start: u64,
    },
    /// Records follow from `from` on (partial sync).
    Continue {
        run: u64,
        from: u64,
    },
    /// One item of a snapshot: `version` orders the value, `touched` (ZERO if none) the expiry,
    /// `counter` its PN-counter state if it was incremented.
    SnapItem {
        key: Bytes,
        value: Bytes,
        flags: u32,
        exptime: u32,
        version: Version,
        base: Version,
        touched: Version,
        counter: Option<Counter>,
    },
    /// A deleted key (`version` ZERO if it only remembers a touch), and the newest touch the
    /// sender knows for it (`touched` ZERO if none) with its expiry.
    SnapTomb {
        key: Bytes,
        version: Version,
        touched: Version,
        exptime: u32,
    },
    SnapEnd {
        items: u64,
    },
    /// The sender's newest flush_all (`at` absolute on the receiver's clock, 0 = done).
    SnapFlush {
        at: u32,
        version: Version,
    },
    Record {
        offset: u64,
        mutation: Mutation,
    },
    /// Liveness plus the receiver's progress: `ack` is the last offset of the peer's stream it
    /// has applied, `last` the newest offset of its own backlog.
    Heartbeat {
        ack: u64,
        last: u64,
        now_ms: u64,
    },
    /// The sender is shutting down after having sent everything up to `last`.
    Bye {
        last: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {0} bytes exceeds the limit")]
    TooLarge(usize),
    #[error("unknown frame type {0}")]
    UnknownType(u8),
    #[error("malformed {0} frame")]
    Malformed(&'static str),
    #[error("key length {0} out of range")]
    BadKey(usize),
    #[error("value of {0} bytes exceeds the item size limit")]
    ValueTooLarge(usize),
}

/// Remaining seconds of an absolute expiry: 0 = never, `TTL_EXPIRED` = already past.
pub(super) fn ttl_out(abs: u32, now: u32) -> u32 {
    match abs {
        0 => 0,
        t if t <= now => TTL_EXPIRED,
        t => (t - now).min(TTL_EXPIRED - 1),
    }
}

/// Back to an absolute time on the receiver's clock; 1 is "long past" for the store.
pub(super) fn ttl_in(ttl: u32, now: u32) -> u32 {
    match ttl {
        0 => 0,
        TTL_EXPIRED => 1,
        t => now.saturating_add(t).max(2),
    }
}
