//! Replication metrics (`repcached_repl_*`): the node-wide `repl_*` fields of `stats` and the
//! per-peer rows of `stats replication`, as replication words them.

use super::exporter::{number, Fields, Row};
use super::prometheus::{Families, COUNTER, GAUGE};
use crate::server::stats::{Name, Snapshot, Value};
use std::collections::{BTreeMap, HashMap};

/// `stats replication` rows grouped by peer number: `peerN:key value`.
pub fn peer_rows(rows: &Snapshot) -> BTreeMap<u32, HashMap<&str, &Value>> {
    let mut peers: BTreeMap<u32, HashMap<&str, &Value>> = BTreeMap::new();
    for stat in rows.iter() {
        let Name::Owned(name) = &stat.name else {
            continue;
        };
        let Some((peer, key)) = name.strip_prefix("peer").and_then(|r| r.split_once(':')) else {
            continue;
        };
        if let Ok(n) = peer.parse() {
            peers.entry(n).or_default().insert(key, &stat.value);
        }
    }
    peers
}

/// The families of the `repl_*` fields of `stats` (`general`) and of each peer's rows.
pub fn families(general: &Fields<'_>, peers: &Snapshot, f: &mut Families) {
    for (key, name, kind, help) in REPL_GENERAL {
        if let Some(v) = general.get(key).and_then(|v| number(v)) {
            f.add(name, help, kind, &[], v);
        }
    }
    for p in peer_rows(peers).values() {
        let Some(addr) = p.get("addr") else { continue };
        let addr = addr.text();
        let node = p.get("node_id").map(|v| v.text());
        let node = node.as_deref().unwrap_or("0");
        let now = p.get("state").map(|v| v.text());
        let now = now.as_deref().unwrap_or("");
        for st in PEER_STATES {
            f.add(
                "repcached_repl_peer_state",
                "Link state of each peer: 1 for the state it is in.",
                GAUGE,
                &[("peer", &addr), ("node_id", node), ("state", st)],
                if st == now { 1.0 } else { 0.0 },
            );
        }
        for (key, name, kind, help) in PEER_FIELDS {
            if let Some(v) = p.get(key).and_then(|v| number(v)) {
                f.add(name, help, kind, &[("peer", &addr)], v);
            }
        }
    }
}

/// Per-peer `stats replication` fields exported as `repcached_repl_peer_<name>{peer=...}`.
const PEER_FIELDS: &[Row] = &[
    (
        "records_sent",
        "repcached_repl_peer_records_sent_total",
        COUNTER,
        "Records of this node sent to the peer.",
    ),
    (
        "records_applied",
        "repcached_repl_peer_records_applied_total",
        COUNTER,
        "Records from the peer applied here.",
    ),
    (
        "records_stale",
        "repcached_repl_peer_records_stale_total",
        COUNTER,
        "Records from the peer older than what this node held (not applied).",
    ),
    (
        "records_rejected",
        "repcached_repl_peer_records_rejected_total",
        COUNTER,
        "Records from the peer refused (invalid, oversized, clock too far ahead).",
    ),
    (
        "bytes_sent",
        "repcached_repl_peer_sent_bytes_total",
        COUNTER,
        "Replication bytes (plaintext frames) sent to the peer.",
    ),
    (
        "bytes_received",
        "repcached_repl_peer_received_bytes_total",
        COUNTER,
        "Replication bytes (plaintext frames) received from the peer.",
    ),
    (
        "lag_records",
        "repcached_repl_peer_lag_records",
        GAUGE,
        "Records of this node the peer has not acknowledged yet.",
    ),
    (
        "lag_ms",
        "repcached_repl_peer_lag_milliseconds",
        GAUGE,
        "Age of the oldest record of this node the peer has not acknowledged.",
    ),
    (
        "acked_offset",
        "repcached_repl_peer_acked_offset",
        GAUGE,
        "Offset of this node's stream the peer has acknowledged.",
    ),
    (
        "applied_offset",
        "repcached_repl_peer_applied_offset",
        GAUGE,
        "Offset of the peer's stream applied here.",
    ),
    (
        "full_syncs",
        "repcached_repl_peer_full_syncs_total",
        COUNTER,
        "Full resyncs received from the peer.",
    ),
    (
        "partial_syncs",
        "repcached_repl_peer_partial_syncs_total",
        COUNTER,
        "Partial (backlog) resyncs received from the peer.",
    ),
    (
        "full_syncs_sent",
        "repcached_repl_peer_full_syncs_sent_total",
        COUNTER,
        "Full resyncs sent to the peer.",
    ),
    (
        "partial_syncs_sent",
        "repcached_repl_peer_partial_syncs_sent_total",
        COUNTER,
        "Partial (backlog) resyncs sent to the peer.",
    ),
    (
        "auth_failures",
        "repcached_repl_peer_auth_failures_total",
        COUNTER,
        "Connections to or from the peer that failed the secure handshake.",
    ),
    (
        "clock_rejected",
        "repcached_repl_peer_clock_rejected_total",
        COUNTER,
        "Records from the peer refused for a clock too far ahead.",
    ),
    (
        "max_clock_skew_ms",
        "repcached_repl_peer_max_clock_skew_milliseconds",
        GAUGE,
        "Most the peer's clock was seen ahead of ours (negative: behind).",
    ),
    (
        "clock_offset_ms",
        "repcached_repl_peer_clock_offset_milliseconds",
        GAUGE,
        "The peer's clock minus ours at its latest heartbeat (state clock_skew beyond the bound).",
    ),
];

/// Node-wide replication fields of `stats` exported as `repcached_repl_<name>`.
const REPL_GENERAL: &[Row] = &[
    (
        "repl_peers",
        "repcached_repl_peers",
        GAUGE,
        "Peers known (configured or connected).",
    ),
    (
        "repl_peers_connected",
        "repcached_repl_peers_connected",
        GAUGE,
        "Peers with a live link (syncing or synced).",
    ),
    (
        "repl_peers_synced",
        "repcached_repl_peers_synced",
        GAUGE,
        "Peers in state synced.",
    ),
    (
        "repl_peers_clock_skew",
        "repcached_repl_peers_clock_skew",
        GAUGE,
        "Peers in state clock_skew (clock beyond --repl-max-clock-skew: stream held).",
    ),
    (
        "repl_backlog_size",
        "repcached_repl_backlog_size_bytes",
        GAUGE,
        "Capacity of the replication backlog.",
    ),
    (
        "repl_backlog_bytes",
        "repcached_repl_backlog_bytes",
        GAUGE,
        "Bytes held in the replication backlog.",
    ),
    (
        "repl_backlog_first",
        "repcached_repl_backlog_first_offset",
        GAUGE,
        "Oldest offset still in the backlog.",
    ),
    (
        "repl_backlog_last",
        "repcached_repl_backlog_last_offset",
        GAUGE,
        "Newest offset written to the backlog.",
    ),
    (
        "repl_records_sent",
        "repcached_repl_records_sent_total",
        COUNTER,
        "Records sent to all peers.",
    ),
    (
        "repl_records_applied",
        "repcached_repl_records_applied_total",
        COUNTER,
        "Records from peers applied.",
    ),
    (
        "repl_records_stale",
        "repcached_repl_records_stale_total",
        COUNTER,
        "Records from peers not applied (older).",
    ),
    (
        "repl_records_rejected",
        "repcached_repl_records_rejected_total",
        COUNTER,
        "Records from peers refused.",
    ),
    (
        "repl_pending_deltas_refused",
        "repcached_repl_pending_deltas_refused_total",
        COUNTER,
        "Increments from peers refused because those waiting for their write filled -m/16.",
    ),
    (
        "repl_bytes_sent",
        "repcached_repl_sent_bytes_total",
        COUNTER,
        "Replication bytes sent to all peers.",
    ),
    (
        "repl_bytes_received",
        "repcached_repl_received_bytes_total",
        COUNTER,
        "Replication bytes received from all peers.",
    ),
    (
        "repl_full_syncs",
        "repcached_repl_full_syncs_total",
        COUNTER,
        "Full resyncs received.",
    ),
    (
        "repl_partial_syncs",
        "repcached_repl_partial_syncs_total",
        COUNTER,
        "Partial resyncs received.",
    ),
    (
        "repl_auth_failures",
        "repcached_repl_auth_failures_total",
        COUNTER,
        "Replication connections that failed the secure handshake.",
    ),
    (
        "repl_handshakes_refused",
        "repcached_repl_handshakes_refused_total",
        COUNTER,
        "Unauthenticated replication connections evicted for the handshake budget.",
    ),
    (
        "repl_handshake_timeouts",
        "repcached_repl_handshake_timeouts_total",
        COUNTER,
        "Replication handshakes that timed out (or sent no preamble within 1 s).",
    ),
    (
        "repl_clock_rejected",
        "repcached_repl_clock_rejected_total",
        COUNTER,
        "Records refused for a clock too far ahead.",
    ),
    (
        "repl_protocol_errors",
        "repcached_repl_protocol_errors_total",
        COUNTER,
        "Links closed for a malformed frame.",
    ),
    (
        "repl_identity_refused",
        "repcached_repl_identity_refused_total",
        COUNTER,
        "Links refused: the certificate names no peer, or HELLO claimed another peer's node id.",
    ),
    (
        "repl_origin_rejected",
        "repcached_repl_origin_rejected_total",
        COUNTER,
        "Records refused: their origin is not the node the link speaks for.",
    ),
    (
        "repl_max_clock_skew_ms",
        "repcached_repl_max_clock_skew_allowed_milliseconds",
        GAUGE,
        "Clock skew allowed for a peer's versions (--repl-max-clock-skew).",
    ),
    (
        "repl_tombstones",
        "repcached_repl_tombstones",
        GAUGE,
        "Tombstones kept for deleted keys.",
    ),
    (
        "repl_tombstone_bytes",
        "repcached_repl_tombstone_bytes",
        GAUGE,
        "Bytes charged for tombstones.",
    ),
];

pub const PEER_STATES: [&str; 6] = [
    "connecting",
    "handshake",
    "syncing",
    "synced",
    "down",
    "clock_skew",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_rows_and_families() {
        let mut rows = Snapshot::default();
        rows.extend_text(
            [
                ("peer0:addr", "127.0.0.1:11212"),
                ("peer0:node_id", "7"),
                ("peer0:state", "synced"),
                ("peer0:lag_ms", "12"),
                ("peer0:max_clock_skew_ms", "-"),
                ("peer1:addr", "h:1"),
                ("other", "1"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        let peers = peer_rows(&rows);
        assert_eq!(peers.len(), 2);
        assert_eq!(peers[&0]["lag_ms"].text(), "12");
        let mut general = Fields::new();
        let three = Value::Count(3);
        general.insert("repl_peers", &three);
        let mut f = Families::default();
        families(&general, &rows, &mut f);
        let mut text = String::new();
        f.write(&mut text);
        for line in [
            "repcached_repl_peers 3\n",
            "repcached_repl_peer_lag_milliseconds{peer=\"127.0.0.1:11212\"} 12\n",
            "repcached_repl_peer_state{peer=\"127.0.0.1:11212\",node_id=\"7\",state=\"synced\"} 1\n",
            "repcached_repl_peer_state{peer=\"h:1\",node_id=\"0\",state=\"down\"} 0\n",
        ] {
            assert!(text.contains(line), "{line:?} missing from\n{text}");
        }
        assert!(!text.contains("repcached_repl_peer_max_clock_skew_milliseconds"));
    }
}
