//! `stats replication`: replication's per-peer rows.

use super::snapshot::Snapshot;
use crate::server::shared::ServerState;

/// `stats replication`: replication's per-peer rows (`peerN:field`), as its owner words them;
/// empty without replication.
pub fn replication(shared: &ServerState) -> Snapshot {
    let mut s = Snapshot::default();
    if let Some(repl) = shared.replicator() {
        s.extend(repl.replication_stats());
    }
    s
}
