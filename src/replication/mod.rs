//! Master-master replication: the peer links of one node, their listener and dialers, the
//! backlog of this node's own writes, and the stats the server shows for them.
//!
//! Every local mutation goes from the store's sink into the [`backlog`], encoded once as a frame;
//! each link copies ranges of the backlog to its peer (after a chunked snapshot when the peer
//! cannot resume) and applies what the peer streams back in batches with
//! `Store::apply_remote_batch`, which, like `Store::apply_remote`, never republishes. Each node therefore sends only
//! its own writes, and any mesh of nodes naming each other works without loops.
//!
//! Files, from the wire up: [`frame`] (the wire format), [`secure`] (the encrypted and
//! authenticated channel under it), `budget` (what unauthenticated sockets may hold), `backlog`,
//! `peers` (per-peer state), `shared` (the state every link shares), `link` (one connection's
//! life: handshake, then the stream read and written), `listener` and `dialer` (where links come
//! from), `setup` (the start-up checks of the configuration), `report` (the stats lines), and
//! `replicator` ([`Replicator`], what the server holds). This file only declares them.

mod backlog;
mod budget;
mod dialer;
pub mod frame;
mod link;
mod listener;
mod peers;
mod random;
mod replicator;
mod report;
pub mod secure;
mod setup;
mod shared;

pub use random::random_node_id;
pub use replicator::{PeerChanges, Replicator};
pub use report::ReportValue;
pub use shared::{parse_peer, ReplError, DEFAULT_PORT};
