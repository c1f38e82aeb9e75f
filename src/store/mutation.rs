//! Mutation records: what the store hands to replication for every local write.
//!
//! The store never talks to the network; it publishes one [`Mutation`] per change to a
//! [`MutationSink`] while it still holds the key's shard lock, so records for one key leave in the
//! order the writes happened. Evictions and expiries never produce a record.

use super::version::Version;
use bytes::Bytes;

/// What happened to a key (or, for `Flush`, to the whole cache).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MutationKind {
    /// The item now holds exactly this value (set/add/replace/cas/append/prepend/ms...).
    /// `exptime` is absolute unix seconds (0 = never); the wire format sends remaining time.
    Put {
        flags: u32,
        exptime: u32,
        value: Bytes,
    },
    /// The key was deleted; receivers keep a tombstone with this version.
    Delete,
    /// Only the expiry changed (touch, gat, mg T).
    Touch { exptime: u32 },
    /// incr/decr applied on top of the item whose full write had version `base`; `value` is the
    /// result on the origin, `incr`/`delta` the command. The merge reads only `seq` and `net`:
    /// the origin's (the version's node) whole PN-counter contribution on that base after this
    /// operation (see `counter`), which the receiver keeps if it is newer than the one it holds
    /// (or keeps aside until that write arrives). Applying it twice changes nothing.
    Delta {
        base: Version,
        incr: bool,
        delta: u64,
        value: u64,
        seq: u64,
        net: i128,
    },
    /// flush_all: everything older than this record's version is gone once `at` (absolute unix
    /// seconds, 0 = now) has passed.
    Flush { at: u32 },
}

/// One replicated change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mutation {
    /// Empty for `Flush`.
    pub key: Bytes,
    pub version: Version,
    pub kind: MutationKind,
}

/// Receives the store's mutation records. Called with a shard lock held: must not block.
pub trait MutationSink: Send + Sync {
    fn publish(&self, mutation: Mutation);

    /// Like `publish`, returning the record's position in this node's stream (the backlog
    /// offset; 0 when the sink has none). A delete's tombstone remembers it, so that it can be
    /// dropped once every peer has acknowledged that far (see `Store::set_tombstone_watermark`).
    fn publish_at(&self, mutation: Mutation) -> u64 {
        self.publish(mutation);
        0
    }
}

/// What [`super::Store::apply_remote`] did with a replicated mutation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyOutcome {
    Applied,
    /// The receiver already holds a newer version (or a newer flush); nothing changed.
    Stale,
    /// Refused: the record breaks a limit (value too large, key too long) or memory is full.
    Rejected,
}
