//! What replication reports: the `repl_*` lines of `stats` and the `peerN:` rows of `stats
//! replication`, read from the shared state, the backlog and every peer's slot.

use super::peers::{LinkState, Slot};
use super::shared::{now_millis, Shared};
use std::sync::atomic::{AtomicU64, Ordering};

/// A reported value as replication knows it; server's stats turn it into their own typed value,
/// so the exporter reads numbers without parsing text (and replication never imports server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportValue {
    /// A counter or gauge: decimal.
    Count(u64),
    /// A fixed word (`master`, a link state, a security mode).
    Word(&'static str),
    /// Text made at run time (addresses, errors, signed values or `-`).
    Text(String),
}

impl std::fmt::Display for ReportValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Count(n) => write!(f, "{n}"),
            Word(w) => f.write_str(w),
            Text(t) => f.write_str(t),
        }
    }
}

use ReportValue::{Count, Text, Word};

/// Lines for `stats` (name, value).
pub(super) fn general_stats(sh: &Shared) -> Vec<(String, ReportValue)> {
    let (first, next, bytes) = sh.backlog.range();
    let slots = sh.slots.lock().clone();
    let up = |s: &&Slot| matches!(s.state(), LinkState::Syncing | LinkState::Synced);
    let t = &sh.totals;
    let l = |v: &AtomicU64| Count(v.load(Ordering::Relaxed));
    let st = sh.store.stats();
    vec![
        ("repl_role".into(), Word("master")),
        ("repl_node_id".into(), Count(u64::from(sh.node_id))),
        ("repl_run_id".into(), Count(sh.backlog.run())),
        ("repl_port".into(), Count(u64::from(sh.listen_port))),
        ("repl_peers".into(), Count(slots.len() as u64)),
        (
            "repl_peers_connected".into(),
            Count(slots.iter().filter(up).count() as u64),
        ),
        (
            "repl_peers_synced".into(),
            Count(
                slots
                    .iter()
                    .filter(|s| s.state() == LinkState::Synced)
                    .count() as u64,
            ),
        ),
        (
            "repl_peers_clock_skew".into(),
            Count(
                slots
                    .iter()
                    .filter(|s| s.state() == LinkState::ClockSkew)
                    .count() as u64,
            ),
        ),
        (
            "repl_backlog_size".into(),
            Count(sh.backlog.capacity() as u64),
        ),
        ("repl_backlog_bytes".into(), Count(bytes as u64)),
        ("repl_backlog_first".into(), Count(first)),
        ("repl_backlog_last".into(), Count(next - 1)),
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
            Word(sh.security.mode().short_name()),
        ),
        ("repl_auth_failures".into(), l(&t.auth_failures)),
        ("repl_handshakes_refused".into(), l(&t.handshakes_refused)),
        ("repl_handshake_timeouts".into(), l(&t.handshake_timeouts)),
        (
            "repl_handshakes_pending".into(),
            Count(sh.budget.pending() as u64),
        ),
        ("repl_clock_rejected".into(), l(&t.clock_rejected)),
        ("repl_protocol_errors".into(), l(&t.protocol_errors)),
        ("repl_identity_refused".into(), l(&t.identity_refused)),
        ("repl_origin_rejected".into(), l(&t.origin_rejected)),
        ("repl_max_clock_skew_ms".into(), Count(sh.max_skew_ms)),
        // Tombstones (also `curr_tombstones`): kept until every peer has the delete, at most
        // --repl-tombstone-time, their bytes counted in `bytes` against -m.
        ("repl_tombstones".into(), Count(st.tombstones)),
        ("repl_tombstone_bytes".into(), Count(st.tombstone_bytes)),
        (
            "repl_tombstone_time".into(),
            Count(u64::from(sh.store.tombstone_secs())),
        ),
        ("repl_tombstones_acked".into(), Count(st.tombstones_acked)),
        (
            "repl_tombstones_timed_out".into(),
            Count(st.tombstones_timed_out),
        ),
        (
            "repl_tombstones_over_cap".into(),
            Count(st.tombstones_over_cap),
        ),
        (
            "repl_pending_deltas_refused".into(),
            Count(st.pending_deltas_refused),
        ),
    ]
}

/// `stats replication`: one group of `peerN:` lines per peer.
pub(super) fn replication_stats(sh: &Shared) -> Vec<(String, ReportValue)> {
    let (first, next, _) = sh.backlog.range();
    let last = next - 1;
    let now = now_millis();
    let mut out = Vec::new();
    for (i, s) in sh.slots.lock().iter().enumerate() {
        let l = |v: &AtomicU64| Count(v.load(Ordering::Relaxed));
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
        let rows: [(&str, ReportValue); 28] = [
            ("addr", Text(s.addr.lock().clone())),
            (
                "node_id",
                Count(u64::from(s.node_id.load(Ordering::Relaxed))),
            ),
            ("state", Word(s.state().name())),
            ("configured", Count(u64::from(s.configured))),
            ("records_sent", l(&s.records_sent)),
            ("records_applied", l(&s.records_applied)),
            ("records_stale", l(&s.records_stale)),
            ("records_rejected", l(&s.records_rejected)),
            ("bytes_sent", l(&s.bytes_sent)),
            ("bytes_received", l(&s.bytes_received)),
            ("lag_records", Count(lag)),
            // The failover barrier (scripts/wait-synced): our writes up to this offset of
            // our backlog are on the peer; theirs up to `applied_offset` of their stream
            // are here.
            ("acked_offset", Count(ack)),
            ("acked_through_ms", l(&s.acked_through_ms)),
            ("applied_offset", Count(applied)),
            ("applied_through_ms", l(&s.applied_through_ms)),
            ("lag_ms", Count(lag_ms)),
            ("backlog_first", Count(first)),
            ("backlog_last", Count(last)),
            ("full_syncs", l(&s.full_syncs)),
            ("partial_syncs", l(&s.partial_syncs)),
            ("full_syncs_sent", l(&s.full_syncs_sent)),
            ("partial_syncs_sent", l(&s.partial_syncs_sent)),
            ("auth_failures", l(&s.auth_failures)),
            ("clock_rejected", l(&s.clock_rejected)),
            (
                "max_clock_skew_ms",
                if skew == i64::MIN {
                    Word("-")
                } else {
                    Text(skew.to_string())
                },
            ),
            // The peer's clock minus ours at its latest heartbeat; beyond
            // repl_max_clock_skew_ms either way the state is clock_skew.
            (
                "clock_offset_ms",
                if offset == i64::MIN {
                    Word("-")
                } else {
                    Text(offset.to_string())
                },
            ),
            ("initial_sync", Text(s.initial_outcome.lock().clone())),
            (
                "last_error",
                if err.is_empty() { Word("-") } else { Text(err) },
            ),
        ];
        out.extend(rows.into_iter().map(|(k, v)| (format!("peer{i}:{k}"), v)));
    }
    out
}
