//! Mutation records: what the store hands to replication for every local write.
//!
//! The store never talks to the network; it publishes one [`Mutation`] per change to a
//! [`MutationSink`] while it still holds the key's shard lock, so records for one key leave in the
//! order the writes happened. Evictions and expiries never produce a record.
//!
//! A record is generic over how it holds its bytes: the store publishes a [`MutationRef`] that
//! borrows the key and the item's value (the sink encodes it straight into its buffer, nothing
//! is allocated per write), a receiver applies records borrowed from its read buffer, and owned
//! [`Mutation`]s (`Bytes`) remain for whoever keeps records around (tests, tools).

use super::version::Version;
use bytes::Bytes;

/// What happened to a key (or, for `Flush`, to the whole cache).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MutationKind<B = Bytes> {
    /// The item now holds exactly this value (set/add/replace/cas/append/prepend/ms...).
    /// `exptime` is absolute unix seconds (0 = never); the wire format sends remaining time.
    Put { flags: u32, exptime: u32, value: B },
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mutation<B = Bytes> {
    /// Empty for `Flush`.
    pub key: B,
    pub version: Version,
    pub kind: MutationKind<B>,
}

/// A record borrowing its key and value (what the store publishes, what a receiver decodes).
pub type MutationRef<'a> = Mutation<&'a [u8]>;

impl<B: AsRef<[u8]>> Mutation<B> {
    /// The same record, borrowing this one's bytes.
    pub fn as_ref(&self) -> MutationRef<'_> {
        Mutation {
            key: self.key.as_ref(),
            version: self.version,
            kind: match &self.kind {
                MutationKind::Put {
                    flags,
                    exptime,
                    value,
                } => MutationKind::Put {
                    flags: *flags,
                    exptime: *exptime,
                    value: value.as_ref(),
                },
                MutationKind::Delete => MutationKind::Delete,
                MutationKind::Touch { exptime } => MutationKind::Touch { exptime: *exptime },
                MutationKind::Delta {
                    base,
                    incr,
                    delta,
                    value,
                    seq,
                    net,
                } => MutationKind::Delta {
                    base: *base,
                    incr: *incr,
                    delta: *delta,
                    value: *value,
                    seq: *seq,
                    net: *net,
                },
                MutationKind::Flush { at } => MutationKind::Flush { at: *at },
            },
        }
    }

    /// An owned copy (allocates the key and value).
    pub fn to_owned(&self) -> Mutation {
        let m = self.as_ref();
        Mutation {
            key: Bytes::copy_from_slice(m.key),
            version: m.version,
            kind: match m.kind {
                MutationKind::Put {
                    flags,
                    exptime,
                    value,
                } => MutationKind::Put {
                    flags,
                    exptime,
                    value: Bytes::copy_from_slice(value),
                },
                MutationKind::Delete => MutationKind::Delete,
                MutationKind::Touch { exptime } => MutationKind::Touch { exptime },
                MutationKind::Delta {
                    base,
                    incr,
                    delta,
                    value,
                    seq,
                    net,
                } => MutationKind::Delta {
                    base,
                    incr,
                    delta,
                    value,
                    seq,
                    net,
                },
                MutationKind::Flush { at } => MutationKind::Flush { at },
            },
        }
    }
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

    /// What the store calls: [`MutationSink::publish_at`] for a record that borrows the item's
    /// bytes. The replication backlog encodes it in place; the default makes an owned copy.
    fn publish_ref(&self, mutation: MutationRef<'_>) -> u64 {
        self.publish_at(mutation.to_owned())
    }

    /// The calling thread starts publishing a batch (a client's pipelined requests): the sink
    /// may hold back waking its readers until [`MutationSink::end_batch`] on the same thread.
    fn begin_batch(&self) {}

    fn end_batch(&self) {}
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
