//! memcached_exporter v0.11's families, name for name, from the typed `stats`, `stats slabs`,
//! `stats items` and `stats settings` snapshots: the exporter's `parseStats` and
//! `parseStatsSettings` over what its client library (gomemcache) would have parsed from our
//! text, so a dashboard built for memcached_exporter works unchanged. A field that is absent
//! gives no sample, as there.

use super::prometheus::{Families, COUNTER, GAUGE};
use crate::server::stats::{Name, Snapshot, Value};
use std::collections::{BTreeMap, HashMap};

/// A stats field exported as a family: (field, family, kind, help).
pub type Row = (&'static str, &'static str, &'static str, &'static str);

/// Fields by name.
pub type Fields<'a> = HashMap<&'a str, &'a Value>;

/// What `stats`, `stats slabs` and `stats items` hold, grouped as gomemcache groups their
/// lines: `a` global, `N:a` per slab class, `items:N:a` per class's items. A value with a
/// space is left out, as gomemcache leaves such lines out.
#[derive(Default, Debug)]
pub struct Grouped<'a> {
    pub stats: Fields<'a>,
    pub slabs: BTreeMap<u32, Fields<'a>>,
    pub items: BTreeMap<u32, Fields<'a>>,
}

/// No TEMP LRU here (memcached reports number_temp only with temp_lru on; its value would be
/// 0): served so that every exporter name is there.
static NUMBER_TEMP: Value = Value::Count(0);

impl<'a> Grouped<'a> {
    pub fn new(snapshots: &[&'a Snapshot]) -> Grouped<'a> {
        let mut g = Grouped::default();
        for stat in snapshots.iter().flat_map(|s| s.iter()) {
            if has_space(&stat.value) {
                continue;
            }
            let v = &stat.value;
            match &stat.name {
                Name::Field(n) => {
                    g.stats.insert(n, v);
                }
                Name::Owned(n) if !n.contains(':') => {
                    g.stats.insert(n, v);
                }
                Name::Slab(class, n) => {
                    g.slabs.entry(*class).or_default().insert(n, v);
                }
                Name::Item(class, n) => {
                    g.items.entry(*class).or_default().insert(n, v);
                }
                Name::Owned(_) | Name::Conn(..) => {}
            }
        }
        for u in g.items.values_mut() {
            u.entry("number_temp").or_insert(&NUMBER_TEMP);
        }
        g
    }
}

fn has_space(v: &Value) -> bool {
    match v {
        Value::Word(t) => t.contains(' '),
        Value::Text(t) => t.contains(' '),
        Value::Count(_) | Value::CpuTime { .. } | Value::YesNo(_) => false,
    }
}

/// `stats settings` by name (every line, as the exporter reads them).
pub fn settings_fields(settings: &Snapshot) -> HashMap<String, &Value> {
    settings
        .iter()
        .map(|s| (s.name.to_string(), &s.value))
        .collect()
}

/// A value as the exporter reads a number (Go's strconv.ParseFloat of the text).
pub fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Count(n) => Some(*n as f64),
        other => other.text().parse().ok(),
    }
}

fn num(m: &Fields<'_>, k: &str) -> Option<f64> {
    number(m.get(k)?)
}

/// memcached's "seconds.microseconds" CPU times, as the exporter splits them.
fn cpu_seconds(m: &Fields<'_>, k: &str) -> Option<f64> {
    match m.get(k)? {
        Value::CpuTime { secs, micros } => Some(*secs as f64 + *micros as f64 / 1e6),
        other => {
            let text = other.text();
            let (s, us) = text.split_once('.')?;
            Some(s.parse::<f64>().ok()? + us.parse::<f64>().ok()? / 1e6)
        }
    }
}

const CMD: &str = "memcached_commands_total";
const CMD_HELP: &str =
    "Total number of all requests broken down by command (get, set, etc.) and status.";
const OPS: [&str; 6] = ["get", "delete", "incr", "decr", "cas", "touch"];

/// Every exporter family.
pub fn families(g: &Grouped<'_>, settings: &HashMap<String, &Value>, f: &mut Families) {
    general_families(&g.stats, f);
    item_families(&g.items, f);
    slab_families(&g.slabs, f);
    settings_families(settings, f);
}

fn general_families(s: &Fields<'_>, f: &mut Families) {
    f.add(
        "memcached_up",
        "Could the memcached server be reached.",
        GAUGE,
        &[],
        1.0,
    );
    if let Some(v) = s.get("version") {
        f.add(
            "memcached_version",
            "The version of this memcached server.",
            GAUGE,
            &[("version", &v.text())],
            1.0,
        );
    }
    for op in OPS {
        for (suffix, status) in [("hits", "hit"), ("misses", "miss")] {
            if let Some(v) = num(s, &format!("{op}_{suffix}")) {
                let l = [("command", op), ("status", status)];
                f.add(CMD, CMD_HELP, COUNTER, &l, v);
            }
        }
    }
    if let Some(v) = num(s, "cas_badval") {
        let l = [("command", "cas"), ("status", "badval")];
        f.add(CMD, CMD_HELP, COUNTER, &l, v);
    }
    if let Some(v) = num(s, "cmd_flush") {
        let l = [("command", "flush"), ("status", "hit")];
        f.add(CMD, CMD_HELP, COUNTER, &l, v);
    }
    if let (Some(set), Some(a), Some(b), Some(c)) = (
        num(s, "cmd_set"),
        num(s, "cas_misses"),
        num(s, "cas_hits"),
        num(s, "cas_badval"),
    ) {
        // memcached counts cas operations in cmd_set too.
        let l = [("command", "set"), ("status", "hit")];
        f.add(CMD, CMD_HELP, COUNTER, &l, set - a - b - c);
    }
    for (key, name, kind, help) in GENERAL {
        if let Some(v) = num(s, key) {
            f.add(name, help, kind, &[], v);
        }
    }
    for (key, name, help) in [
        (
            "rusage_user",
            "memcached_process_user_cpu_seconds_total",
            "Accumulated user time for this process.",
        ),
        (
            "rusage_system",
            "memcached_process_system_cpu_seconds_total",
            "Accumulated system time for this process.",
        ),
    ] {
        if let Some(v) = cpu_seconds(s, key) {
            f.add(name, help, COUNTER, &[], v);
        }
    }
}

fn item_families(items: &BTreeMap<u32, Fields<'_>>, f: &mut Families) {
    for (class, u) in items {
        let slab = class.to_string();
        let l = [("slab", slab.as_str())];
        for (key, name, kind, help) in ITEMS {
            if let Some(v) = num(u, key) {
                f.add(name, help, kind, &l, v);
            }
        }
        for (key, lru) in [
            ("hits_to_hot", "hot"),
            ("hits_to_warm", "warm"),
            ("hits_to_cold", "cold"),
            ("hits_to_temp", "temporary"),
        ] {
            if let Some(v) = num(u, key) {
                f.add(
                    "memcached_slab_lru_hits_total",
                    "Number of get_hits to the LRU.",
                    COUNTER,
                    &[("slab", &slab), ("lru", lru)],
                    v,
                );
            }
        }
    }
}

fn slab_families(slabs: &BTreeMap<u32, Fields<'_>>, f: &mut Families) {
    const SCMD: &str = "memcached_slab_commands_total";
    const SCMD_HELP: &str =
        "Total number of all requests broken down by command (get, set, etc.) and status per slab.";
    for (class, v) in slabs {
        let slab = class.to_string();
        let slab = slab.as_str();
        for op in OPS {
            if let Some(x) = num(v, &format!("{op}_hits")) {
                let l = [("slab", slab), ("command", op), ("status", "hit")];
                f.add(SCMD, SCMD_HELP, COUNTER, &l, x);
            }
        }
        if let Some(x) = num(v, "cas_badval") {
            let l = [("slab", slab), ("command", "cas"), ("status", "badval")];
            f.add(SCMD, SCMD_HELP, COUNTER, &l, x);
        }
        if let (Some(set), Some(a), Some(b)) =
            (num(v, "cmd_set"), num(v, "cas_hits"), num(v, "cas_badval"))
        {
            let l = [("slab", slab), ("command", "set"), ("status", "hit")];
            f.add(SCMD, SCMD_HELP, COUNTER, &l, set - a - b);
        }
        for (key, name, help) in SLABS {
            if let Some(x) = num(v, key) {
                f.add(name, help, GAUGE, &[("slab", slab)], x);
            }
        }
    }
}

fn settings_families(settings: &HashMap<String, &Value>, f: &mut Families) {
    if let Some(v) = settings.get("maxconns").and_then(|v| number(v)) {
        f.add(
            "memcached_max_connections",
            "Maximum number of clients allowed.",
            GAUGE,
            &[],
            v,
        );
    }
    if settings.get("lru_crawler").map(|v| v.text() == "yes") != Some(true) {
        return;
    }
    for (key, name, help) in LRU_SETTINGS {
        let v = settings.get(*key).and_then(|v| match &*v.text() {
            "yes" => Some(1.0),
            "no" => Some(0.0),
            x => x.parse().ok(),
        });
        if let Some(v) = v {
            f.add(name, help, GAUGE, &[], v);
        }
    }
}

const GENERAL: &[Row] = &[
    ("uptime", "memcached_uptime_seconds", COUNTER, "Number of seconds since the server started."),
    ("time", "memcached_time_seconds", GAUGE, "current UNIX time according to the server."),
    ("bytes", "memcached_current_bytes", GAUGE, "Current number of bytes used to store items."),
    ("limit_maxbytes", "memcached_limit_bytes", GAUGE, "Number of bytes this server is allowed to use for storage."),
    ("curr_items", "memcached_current_items", GAUGE, "Current number of items stored by this instance."),
    ("total_items", "memcached_items_total", COUNTER, "Total number of items stored during the life of this instance."),
    ("bytes_read", "memcached_read_bytes_total", COUNTER, "Total number of bytes read by this server from network."),
    ("bytes_written", "memcached_written_bytes_total", COUNTER, "Total number of bytes sent by this server to network."),
    ("curr_connections", "memcached_current_connections", GAUGE, "Current number of open connections."),
    ("total_connections", "memcached_connections_total", COUNTER, "Total number of connections opened since the server started running."),
    ("rejected_connections", "memcached_connections_rejected_total", COUNTER, "Total number of connections rejected due to hitting the memcached's -c limit in maxconns_fast mode."),
    ("conn_yields", "memcached_connections_yielded_total", COUNTER, "Total number of connections yielded running due to hitting the memcached's -R limit."),
    ("hash_bytes", "memcached_hash_bytes", GAUGE, "Bytes currently used by hash tables."),
    ("listen_disabled_num", "memcached_connections_listener_disabled_total", COUNTER, "Number of times that memcached has hit its connections limit and disabled its listener."),
    ("evictions", "memcached_items_evicted_total", COUNTER, "Total number of valid items removed from cache to free memory for new items."),
    ("reclaimed", "memcached_items_reclaimed_total", COUNTER, "Total number of times an entry was stored using memory from an expired entry."),
    ("lru_crawler_starts", "memcached_lru_crawler_starts_total", COUNTER, "Times an LRU crawler was started."),
    ("crawler_items_checked", "memcached_lru_crawler_items_checked_total", COUNTER, "Total items examined by LRU Crawler."),
    ("crawler_reclaimed", "memcached_lru_crawler_reclaimed_total", COUNTER, "Total items freed by LRU Crawler."),
    ("moves_to_cold", "memcached_lru_crawler_moves_to_cold_total", COUNTER, "Total number of items moved from HOT/WARM to COLD LRU's."),
    ("moves_to_warm", "memcached_lru_crawler_moves_to_warm_total", COUNTER, "Total number of items moved from COLD to WARM LRU."),
    ("moves_within_lru", "memcached_lru_crawler_moves_within_lru_total", COUNTER, "Total number of items reshuffled within HOT or WARM LRU's."),
    ("total_malloced", "memcached_malloced_bytes", GAUGE, "Number of bytes of memory allocated to slab pages."),
    ("accepting_conns", "memcached_accepting_connections", GAUGE, "The Memcached server is currently accepting new connections."),
];

const ITEMS: &[Row] = &[
    ("number", "memcached_slab_current_items", GAUGE, "Number of items currently stored in this slab class."),
    ("age", "memcached_slab_items_age_seconds", GAUGE, "Number of seconds the oldest item has been in the slab class."),
    ("crawler_reclaimed", "memcached_slab_items_crawler_reclaimed_total", COUNTER, "Number of items freed by the LRU Crawler."),
    ("evicted", "memcached_slab_items_evicted_total", COUNTER, "Total number of times an item had to be evicted from the LRU before it expired."),
    ("evicted_nonzero", "memcached_slab_items_evicted_nonzero_total", COUNTER, "Total number of times an item which had an explicit expire time set had to be evicted from the LRU before it expired."),
    ("evicted_time", "memcached_slab_items_evicted_time_seconds", COUNTER, "Seconds since the last access for the most recent item evicted from this class."),
    ("evicted_unfetched", "memcached_slab_items_evicted_unfetched_total", COUNTER, "Total nmber of items evicted and never fetched."),
    ("expired_unfetched", "memcached_slab_items_expired_unfetched_total", COUNTER, "Total number of valid items evicted from the LRU which were never touched after being set."),
    ("outofmemory", "memcached_slab_items_outofmemory_total", COUNTER, "Total number of items for this slab class that have triggered an out of memory error."),
    ("reclaimed", "memcached_slab_items_reclaimed_total", COUNTER, "Total number of items reclaimed."),
    ("tailrepairs", "memcached_slab_items_tailrepairs_total", COUNTER, "Total number of times the entries for a particular ID need repairing."),
    ("mem_requested", "memcached_slab_mem_requested_bytes", COUNTER, "Number of bytes of memory actual items take up within a slab."),
    ("moves_to_cold", "memcached_slab_items_moves_to_cold", COUNTER, "Number of items moved from HOT or WARM into COLD."),
    ("moves_to_warm", "memcached_slab_items_moves_to_warm", COUNTER, "Number of items moves from COLD into WARM."),
    ("moves_within_lru", "memcached_slab_items_moves_within_lru", COUNTER, "Number of times active items were bumped within HOT or WARM."),
    ("number_hot", "memcached_slab_hot_items", GAUGE, "Number of items presently stored in the HOT LRU."),
    ("number_warm", "memcached_slab_warm_items", GAUGE, "Number of items presently stored in the WARM LRU."),
    ("number_cold", "memcached_slab_cold_items", GAUGE, "Number of items presently stored in the COLD LRU."),
    ("number_temp", "memcached_slab_temporary_items", GAUGE, "Number of items presently stored in the TEMPORARY LRU."),
    ("age_hot", "memcached_slab_hot_age_seconds", GAUGE, "Age of the oldest item in HOT LRU."),
    ("age_warm", "memcached_slab_warm_age_seconds", GAUGE, "Age of the oldest item in HOT LRU."),
];

const SLABS: &[(&str, &str, &str)] = &[
    (
        "chunk_size",
        "memcached_slab_chunk_size_bytes",
        "Number of bytes allocated to each chunk within this slab class.",
    ),
    (
        "chunks_per_page",
        "memcached_slab_chunks_per_page",
        "Number of chunks within a single page for this slab class.",
    ),
    (
        "total_pages",
        "memcached_slab_current_pages",
        "Number of pages allocated to this slab class.",
    ),
    (
        "total_chunks",
        "memcached_slab_current_chunks",
        "Number of chunks allocated to this slab class.",
    ),
    (
        "used_chunks",
        "memcached_slab_chunks_used",
        "Number of chunks allocated to an item.",
    ),
    (
        "free_chunks",
        "memcached_slab_chunks_free",
        "Number of chunks not yet allocated items.",
    ),
    (
        "free_chunks_end",
        "memcached_slab_chunks_free_end",
        "Number of free chunks at the end of the last allocated page.",
    ),
    (
        "mem_requested",
        "memcached_slab_mem_requested_bytes",
        "Number of bytes of memory actual items take up within a slab.",
    ),
];

const LRU_SETTINGS: &[(&str, &str, &str)] = &[
    (
        "lru_crawler",
        "memcached_lru_crawler_enabled",
        "Whether the LRU crawler is enabled.",
    ),
    (
        "lru_crawler_sleep",
        "memcached_lru_crawler_sleep",
        "Microseconds to sleep between LRU crawls.",
    ),
    (
        "lru_crawler_tocrawl",
        "memcached_lru_crawler_to_crawl",
        "Max items to crawl per slab per run.",
    ),
    (
        "lru_maintainer_thread",
        "memcached_lru_crawler_maintainer_thread",
        "Split LRU mode and background threads.",
    ),
    (
        "hot_lru_pct",
        "memcached_lru_crawler_hot_percent",
        "Percent of slab memory reserved for HOT LRU.",
    ),
    (
        "warm_lru_pct",
        "memcached_lru_crawler_warm_percent",
        "Percent of slab memory reserved for WARM LRU.",
    ),
    (
        "hot_max_factor",
        "memcached_lru_crawler_hot_max_factor",
        "Set idle age of HOT LRU to COLD age * this",
    ),
    (
        "warm_max_factor",
        "memcached_lru_crawler_warm_max_factor",
        "Set idle age of WARM LRU to COLD age * this",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(f: &Families) -> String {
        let mut out = String::new();
        f.write(&mut out);
        out
    }

    #[test]
    fn groups_like_gomemcache() {
        let mut s = Snapshot::default();
        s.count("pid", 1);
        s.push(Name::Slab(1, "chunk_size"), Value::Count(96));
        s.push(Name::Item(1, "number"), Value::Count(3));
        s.push(
            Name::Owned("repl_last_error".into()),
            Value::Text("a b".into()),
        );
        s.push(Name::Owned("peer0:addr".into()), Value::Text("x".into()));
        s.push(Name::Conn(5, "state"), Value::Word("conn_read"));
        let g = Grouped::new(&[&s]);
        assert_eq!(g.stats.len(), 1);
        assert_eq!(g.stats["pid"], &Value::Count(1));
        assert_eq!(g.slabs[&1]["chunk_size"], &Value::Count(96));
        assert_eq!(g.items[&1]["number"], &Value::Count(3));
        // Served although we never report it (see NUMBER_TEMP).
        assert_eq!(g.items[&1]["number_temp"], &Value::Count(0));
    }

    #[test]
    fn exporter_names_and_values() {
        let mut s = Snapshot::default();
        s.field("version", Value::Word("1.6.18-x"));
        s.field(
            "rusage_user",
            Value::CpuTime {
                secs: 2,
                micros: 500_000,
            },
        );
        s.count("cmd_set", 10);
        for (name, n) in [("cas_misses", 1), ("cas_hits", 2), ("cas_badval", 3)] {
            s.count(name, n);
        }
        s.count("curr_items", 4);
        s.push(Name::Slab(1, "cmd_set"), Value::Count(10));
        s.push(Name::Slab(1, "cas_hits"), Value::Count(2));
        s.push(Name::Slab(1, "cas_badval"), Value::Count(3));
        let mut settings = Snapshot::default();
        settings.count("maxconns", 1024);
        settings.field("lru_crawler", Value::YesNo(true));
        settings.field("lru_maintainer_thread", Value::YesNo(false));
        settings.field("hot_max_factor", Value::Word("0.20"));
        let mut f = Families::default();
        families(&Grouped::new(&[&s]), &settings_fields(&settings), &mut f);
        let text = rendered(&f);
        for line in [
            "memcached_up 1\n",
            "memcached_version{version=\"1.6.18-x\"} 1\n",
            "memcached_process_user_cpu_seconds_total 2.5\n",
            "memcached_commands_total{command=\"set\",status=\"hit\"} 4\n",
            "memcached_commands_total{command=\"cas\",status=\"badval\"} 3\n",
            "memcached_current_items 4\n",
            "memcached_slab_commands_total{slab=\"1\",command=\"set\",status=\"hit\"} 5\n",
            "memcached_max_connections 1024\n",
            "memcached_lru_crawler_enabled 1\n",
            "memcached_lru_crawler_maintainer_thread 0\n",
            "memcached_lru_crawler_hot_max_factor 0.2\n",
        ] {
            assert!(text.contains(line), "{line:?} missing from\n{text}");
        }
        // A field that is absent gives no sample.
        assert!(!text.contains("memcached_items_total"));
    }
}
