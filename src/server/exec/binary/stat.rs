//! The binary `stat` command: memcached's `process_bin_stat`, one STAT frame per statistic and
//! an empty one to end. The statistics themselves come from the text producers
//! (`exec::stats`), read back as (name, value) pairs, so both protocols report the same
//! numbers from one place.

use crate::protocol::binary::{encode_stat, encode_stats_end};
use crate::protocol::StatsGroup;
use crate::server::exec::stats as stats_report;
use crate::server::shared::Shared;

/// Appends the reply to `stat <key>`; false when memcached answers "Not found" instead.
pub fn write(shared: &Shared, opaque: u32, key: &[u8], out: &mut Vec<u8>) -> bool {
    // memcached compares prefixes here (strncmp): "resetall" resets, "settingsx" lists settings.
    let group = if key.is_empty() {
        StatsGroup::General
    } else if key.starts_with(b"reset") {
        let mut discard = Vec::new();
        stats_report::write(shared, StatsGroup::Reset, &mut discard);
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
    let mut text = Vec::new();
    stats_report::write(shared, group, &mut text);
    for (name, value) in pairs(&text) {
        encode_stat(opaque, name, value, out);
    }
    encode_stats_end(opaque, out);
    true
}

/// The (name, value) pairs of a text stats listing ("STAT name value\r\n" lines; `END` and
/// anything else that is not a STAT line is skipped). Names never contain spaces; values may.
fn pairs(text: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    text.split(|&b| b == b'\n').filter_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let rest = line.strip_prefix(b"STAT ")?;
        let at = rest.iter().position(|&b| b == b' ')?;
        Some((&rest[..at], &rest[at + 1..]))
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn pairs_of_a_text_listing() {
        let text = b"STAT pid 12\r\nSTAT inter a b\r\nSTAT empty \r\nEND\r\n";
        let got: Vec<_> = super::pairs(text).collect();
        assert_eq!(
            got,
            vec![
                (&b"pid"[..], &b"12"[..]),
                (b"inter", b"a b"),
                (b"empty", b""),
            ]
        );
    }
}
