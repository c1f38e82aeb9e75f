//! What replication reports: the `repl_*` lines of `stats` and the `peerN:` rows of `stats
//! replication`, read from the shared state, the backlog and every peer's slot.

use super::peers::{LinkState, Slot};
use super::shared::{now_millis, Shared};
use std::sync::atomic::{AtomicU64, Ordering};

/// Lines for `stats` (name, value).
pub(super) fn general_stats(sh: &Shared) -> Vec<(String, String)> {
    let (first, next, bytes) = sh.backlog.range();
    let slots = sh.slots.lock().clone();
    let up = |s: &&Slot| matches!(s.state(), LinkState::Syncing | LinkState::Synced);
    let t = &sh.totals;
    let l = |v: &AtomicU64| v.load(Ordering::Relaxed).to_string();
    let st = sh.store.stats();
    vec![
        ("repl_role".into(), "master".into()),
        ("repl_node_id".into(), sh.node_id.to_string()),
        ("repl_run_id".into(), sh.backlog.run().to_string()),
        ("repl_port".into(), sh.listen_port.to_string()),
        ("repl_peers".into(), slots.len().to_string()),
        (
            "repl_peers_connected".into(),
            slots.iter().filter(up).count().to_string(),
        ),
        (
            "repl_peers_synced".into(),
            slots
                .iter()
                .filter(|s| s.state() == LinkState::Synced)
                .count()
                .to_string(),
        ),
        (
            "repl_peers_clock_skew".into(),
            slots
                .iter()
                .filter(|s| s.state() == LinkState::ClockSkew)
                .count()
                .to_string(),
        ),
        (
            "repl_backlog_size".into(),
            sh.backlog.capacity().to_string(),
        ),
        ("repl_backlog_bytes".into(), bytes.to_string()),
        ("repl_backlog_first".into(), first.to_string()),
        ("repl_backlog_last".into(), (next - 1).to_string()),
        ("repl_records_sent".into(), l(&t.sent)),
        ("repl_records_applied".into(), l(&t.applied)),
        ("repl_records_stale".into(), l(&t.stale)),
        ("repl_records_rejected".into(), l(&t.rejected)),
        ("repl_bytes_sent".into(), l(&t.bytes_sent)),
        ("repl_bytes_received".into(), l(&t.bytes_received)),
        ("repl_full_syncs".into(), l(&t.full_syncs)),
        ("repl_partial_syncs".into(), l(&t.partial_syncs)),
        (
            "repl_security".into(),
            sh.security.mode().short_name().into(),
        ),
        ("repl_auth_failures".into(), l(&t.auth_failures)),
        ("repl_handshakes_refused".into(), l(&t.handshakes_refused)),
        ("repl_handshake_timeouts".into(), l(&t.handshake_timeouts)),
        (
            "repl_handshakes_pending".into(),
            sh.budget.pending().to_string(),
        ),
        ("repl_clock_rejected".into(), l(&t.clock_rejected)),
        ("repl_protocol_errors".into(), l(&t.protocol_errors)),
        ("repl_identity_refused".into(), l(&t.identity_refused)),
        ("repl_origin_rejected".into(), l(&t.origin_rejected)),
        ("repl_max_clock_skew_ms".into(), sh.max_skew_ms.to_string()),
        // Tombstones (also `curr_tombstones`): kept until every peer has the delete, at most
        // --repl-tombstone-time, their bytes counted in `bytes` against -m.
        ("repl_tombstones".into(), st.tombstones.to_string()),
        (
            "repl_tombstone_bytes".into(),
            st.tombstone_bytes.to_string(),
        ),
        (
            "repl_tombstone_time".into(),
            sh.store.tombstone_secs().to_string(),
        ),
        (
            "repl_tombstones_acked".into(),
            st.tombstones_acked.to_string(),
        ),
        (
            "repl_tombstones_timed_out".into(),
            st.tombstones_timed_out.to_string(),
        ),
        (
            "repl_tombstones_over_cap".into(),
            st.tombstones_over_cap.to_string(),
        ),
        (
            "repl_pending_deltas_refused".into(),
            st.pending_deltas_refused.to_string(),
        ),
    ]
}

/// `stats replication`: one group of `peerN:` lines per peer.
pub(super) fn replication_stats(sh: &Shared) -> Vec<(String, String)> {
    let (first, next, _) = sh.backlog.range();
    let last = next - 1;
    let now = now_millis();
    let mut out = Vec::new();
    for (i, s) in sh.slots.lock().iter().enumerate() {
        let l = |v: &AtomicU64| v.load(Ordering::Relaxed).to_string();
        let ack = s.peer_ack.load(Ordering::Relaxed).min(last);
        let lag = last - ack;
        let lag_ms = if lag == 0 {
            0
        } else {
            sh.backlog
                .millis_at(ack + 1)
                .map(|m| now.saturating_sub(m))
                .unwrap_or(0)
        };
        let err = s.last_error.lock().replace(['\r', '\n'], " ");
        let skew = s.max_clock_skew_ms.load(Ordering::Relaxed);
        let applied = sh
            .progress(s.node_id.load(Ordering::Relaxed))
            .map(|(_, o)| o)
            .unwrap_or(0);
        let offset = s.clock_offset_ms.load(Ordering::Relaxed);
        let rows: [(&str, String); 28] = [
            ("addr", s.addr.lock().clone()),
            ("node_id", s.node_id.load(Ordering::Relaxed).to_string()),
            ("state", s.state().name().to_string()),
            ("configured", (s.configured as u8).to_string()),
            ("records_sent", l(&s.records_sent)),
            ("records_applied", l(&s.records_applied)),
            ("records_stale", l(&s.records_stale)),
            ("records_rejected", l(&s.records_rejected)),
            ("bytes_sent", l(&s.bytes_sent)),
            ("bytes_received", l(&s.bytes_received)),
            ("lag_records", lag.to_string()),
            // The failover barrier (scripts/wait-synced): our writes up to this offset of
            // our backlog are on the peer; theirs up to `applied_offset` of their stream
            // are here.
            ("acked_offset", ack.to_string()),
            ("acked_through_ms", l(&s.acked_through_ms)),
            ("applied_offset", applied.to_string()),
            ("applied_through_ms", l(&s.applied_through_ms)),
            ("lag_ms", lag_ms.to_string()),
            ("backlog_first", first.to_string()),
            ("backlog_last", last.to_string()),
            ("full_syncs", l(&s.full_syncs)),
            ("partial_syncs", l(&s.partial_syncs)),
            ("full_syncs_sent", l(&s.full_syncs_sent)),
            ("partial_syncs_sent", l(&s.partial_syncs_sent)),
            ("auth_failures", l(&s.auth_failures)),
            ("clock_rejected", l(&s.clock_rejected)),
            (
                "max_clock_skew_ms",
                if skew == i64::MIN {
                    "-".into()
                } else {
                    skew.to_string()
                },
            ),
            // The peer's clock minus ours at its latest heartbeat; beyond
            // repl_max_clock_skew_ms either way the state is clock_skew.
            (
                "clock_offset_ms",
                if offset == i64::MIN {
                    "-".into()
                } else {
                    offset.to_string()
                },
            ),
            ("initial_sync", s.initial_outcome.lock().clone()),
            ("last_error", if err.is_empty() { "-".into() } else { err }),
        ];
        out.extend(rows.into_iter().map(|(k, v)| (format!("peer{i}:{k}"), v)));
    }
    out
}
