//! The binary `stat` command: memcached's `process_bin_stat`, one STAT frame per statistic and
//! an empty one to end. The statistics are the typed snapshots the text `stats` renders
//! (`server::stats`, chosen by `exec::stats_cmd`), so both protocols report the same numbers
//! from one place.

use crate::protocol::binary::{encode_stat, encode_stats_end};
use crate::protocol::StatsGroup;
use crate::server::exec::stats_cmd;
use crate::server::shared::ServerState;
use std::io::Write;

/// Appends the reply to `stat <key>`; false when memcached answers "Not found" instead.
pub fn write(shared: &ServerState, opaque: u32, key: &[u8], out: &mut Vec<u8>) -> bool {
    // memcached compares prefixes here (strncmp): "resetall" resets, "settingsx" lists settings.
    let group = if key.is_empty() {
        StatsGroup::General
    } else if key.starts_with(b"reset") {
        stats_cmd::reset(shared);
        encode_stats_end(opaque, out);
        return true;
    } else if key.starts_with(b"settings") {
        StatsGroup::Settings
    } else if let Some(arg) = key.strip_prefix(b"detail") {
        // Per-prefix detail statistics are not kept: on/off are accepted, the dump is empty.
        if arg.starts_with(b" dump") {
            encode_stat(opaque, b"detailed", b"END\r\n", out);
        } else if !(arg.starts_with(b" on") || arg.starts_with(b" off")) {
            return false;
        }
        encode_stats_end(opaque, out);
        return true;
    } else {
        match key {
            b"items" => StatsGroup::Items,
            b"slabs" => StatsGroup::Slabs,
            b"sizes" => StatsGroup::Sizes,
            // Ours: the replication state, as `stats replication` in text.
            b"replication" => StatsGroup::Replication,
            // memcached 1.6.18 sends these without the closing empty frame.
            b"sizes_enable" => {
                encode_stat(opaque, b"sizes_status", b"enabled", out);
                return true;
            }
            b"sizes_disable" => {
                encode_stat(opaque, b"sizes_status", b"disabled", out);
                return true;
            }
            // conns, cachedump, extstore and the rest are text-only in memcached.
            _ => return false,
        }
    };
    let Some(snapshot) = stats_cmd::snapshot(shared, group) else {
        return false;
    };
    let mut name = Vec::new();
    let mut value = Vec::new();
    for stat in snapshot.iter() {
        name.clear();
        value.clear();
        let _ = write!(name, "{}", stat.name);
        let _ = write!(value, "{}", stat.value);
        encode_stat(opaque, &name, &value, out);
    }
    encode_stats_end(opaque, out);
    true
}
