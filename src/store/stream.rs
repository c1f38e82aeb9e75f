//! This node's side of replication as the store sees it ([`Stream`]): the hybrid clock that
//! versions every write, the sink every local change is published to (the store never touches
//! the network: the sink must not block), and how long tombstones are kept for the peers (the
//! time limit, and the watermark of what every peer has acknowledged).

use super::mutation::{MutationRef, MutationSink};
use super::version::HybridClock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

pub(crate) struct Stream {
    pub clock: HybridClock,
    sink: OnceLock<Arc<dyn MutationSink>>,
    /// Longest a tombstone is kept (`--repl-tombstone-time`), seconds.
    tombstone_secs: AtomicU32,
    /// See [`Stream::set_tombstone_watermark`].
    tomb_acked: AtomicU64,
    tomb_sole_peer: AtomicU32,
}

impl Stream {
    pub fn new(node_id: u32, tombstone_secs: u32) -> Stream {
        Stream {
            clock: HybridClock::new(node_id),
            sink: OnceLock::new(),
            tombstone_secs: AtomicU32::new(tombstone_secs),
            tomb_acked: AtomicU64::new(0),
            tomb_sole_peer: AtomicU32::new(0),
        }
    }

    /// The sink, once replication has installed one.
    #[inline]
    pub fn sink(&self) -> Option<&Arc<dyn MutationSink>> {
        self.sink.get()
    }

    /// Whether writes are published (replication is on).
    #[inline]
    pub fn replicating(&self) -> bool {
        self.sink.get().is_some()
    }

    /// Installs the replication sink; only the first call has an effect.
    pub fn set_sink(&self, sink: Arc<dyn MutationSink>) {
        let _ = self.sink.set(sink);
    }

    /// Publishes a record; returns its offset in this node's stream (0 if none).
    pub fn publish(&self, m: MutationRef<'_>) -> u64 {
        match self.sink.get() {
            Some(sink) => sink.publish_ref(m),
            None => 0,
        }
    }

    /// Runs `f`, the execution of one batch of requests on this thread, telling the sink so that
    /// it wakes its readers once for the whole batch rather than once per record.
    pub fn batch<R>(&self, f: impl FnOnce() -> R) -> R {
        struct End<'a>(&'a dyn MutationSink);
        impl Drop for End<'_> {
            fn drop(&mut self) {
                self.0.end_batch();
            }
        }
        match self.sink.get() {
            Some(sink) => {
                sink.begin_batch();
                let _end = End(sink.as_ref());
                f()
            }
            None => f(),
        }
    }

    /// The longest a tombstone (or a remembered touch, or an increment waiting for its write)
    /// is kept, in seconds.
    #[inline]
    pub fn tombstone_secs(&self) -> u32 {
        self.tombstone_secs.load(Ordering::Relaxed)
    }

    pub fn set_tombstone_secs(&self, secs: u32) {
        self.tombstone_secs.store(secs, Ordering::Relaxed);
    }

    /// Replication's view of its peers, for dropping tombstones (see `shard::Tombstone`):
    /// `acked` is the offset of this node's stream that every peer has acknowledged, with this
    /// node holding everything each peer wrote before acknowledging it (0: none, or some peer
    /// never acknowledged anything); `sole_peer` the node id of the only peer this node has
    /// (0 if it has none or several).
    pub fn set_tombstone_watermark(&self, acked: u64, sole_peer: u32) {
        self.tomb_acked.store(acked, Ordering::Relaxed);
        self.tomb_sole_peer.store(sole_peer, Ordering::Relaxed);
    }

    /// (acked offset, sole peer) as last set; without replication every tombstone is acked.
    pub fn tombstone_watermark(&self) -> (u64, u32) {
        let acked = if self.replicating() {
            self.tomb_acked.load(Ordering::Relaxed)
        } else {
            u64::MAX
        };
        (acked, self.tomb_sole_peer.load(Ordering::Relaxed))
    }
}
