//! The text `stats` command and its groups: renders the typed snapshots of `server::stats` as
//! memcached 1.6's `STAT` lines (so monitoring — memcached_exporter, munin, stats scripts —
//! reads repcached like memcached), and runs the groups that act: `reset`, `detail`,
//! `cachedump`.

use crate::protocol::StatsGroup;
use crate::server::shared::ServerState;
use crate::server::stats::{self, Snapshot};

/// The snapshot a listing group reports; None for the groups that act or refuse.
pub fn snapshot(shared: &ServerState, group: StatsGroup<'_>) -> Option<Snapshot> {
    Some(match group {
        StatsGroup::General => stats::general(shared),
        StatsGroup::Settings => stats::settings(shared),
        StatsGroup::Items => stats::items(shared),
        StatsGroup::Slabs => stats::slabs(shared),
        StatsGroup::Sizes => stats::sizes("disabled"),
        StatsGroup::Conns => stats::conns(shared),
        StatsGroup::Replication => stats::replication(shared),
        StatsGroup::Other(b"sizes_enable") => stats::sizes("enabled"),
        StatsGroup::Other(b"sizes_disable") => stats::sizes("disabled"),
        StatsGroup::Other(b"extstore") => Snapshot::default(),
        StatsGroup::Reset
        | StatsGroup::Detail(_)
        | StatsGroup::CacheDump { .. }
        | StatsGroup::Other(_) => return None,
    })
}

/// `stats reset`: the server's, the store's, `stats detail`'s and TLS's counters.
pub fn reset(shared: &ServerState) {
    shared.stats.reset();
    shared.store.reset_counters();
    shared.detail.clear();
    if let Some(tls) = &shared.tls {
        tls.reset_stats();
    }
}

/// Appends the reply to `stats <group>`.
pub fn write(shared: &ServerState, group: StatsGroup<'_>, out: &mut Vec<u8>) {
    if let Some(snapshot) = snapshot(shared, group) {
        snapshot.write_text(out);
        out.extend_from_slice(b"END\r\n");
        return;
    }
    match group {
        StatsGroup::Reset => {
            reset(shared);
            out.extend_from_slice(b"RESET\r\n");
        }
        StatsGroup::Detail(b"dump") => shared.detail.dump(out),
        StatsGroup::Detail(on_off) => {
            shared.detail.set_enabled(on_off == b"on");
            out.extend_from_slice(b"OK\r\n");
        }
        // Appends its own END.
        StatsGroup::CacheDump { class, limit } => {
            super::dump::cachedump(&shared.store, class, limit, out)
        }
        _ => out.extend_from_slice(b"ERROR\r\n"),
    }
}
