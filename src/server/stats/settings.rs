//! `stats settings`, in memcached 1.6's order, then TLS's and replication's settings.

use super::snapshot::{Snapshot, Value};
use crate::server::shared::ServerState;
use std::sync::atomic::Ordering;

pub fn settings(shared: &ServerState) -> Snapshot {
    let c = &shared.config;
    let t = &shared.tunables;
    let mut s = Snapshot::default();
    s.count("maxbytes", shared.store.mem_limit() as u64);
    s.count("maxconns", c.max_connections as u64);
    s.count("tcpport", shared.tcp_port.load(Ordering::Relaxed) as u64);
    s.count("udpport", shared.udp_port.load(Ordering::Relaxed) as u64);
    s.field(
        "inter",
        if c.listen.is_empty() {
            Value::Word("NULL")
        } else {
            Value::Text(c.listen.join(","))
        },
    );
    s.count("verbosity", shared.verbosity.load(Ordering::Relaxed) as u64);
    s.count("oldest", 0);
    s.field(
        "evictions",
        Value::Word(if c.no_evict { "off" } else { "on" }),
    );
    s.field("domain_socket", Value::Word("NULL"));
    s.count("umask", 700);
    s.field("shutdown_command", Value::YesNo(c.enable_shutdown));
    s.field("growth_factor", Value::Word("1.25"));
    s.count("chunk_size", 48);
    s.count("num_threads", c.threads as u64);
    s.count("num_threads_per_udp", c.threads as u64);
    s.field("stat_key_prefix", Value::Word(":"));
    s.field("detail_enabled", Value::YesNo(shared.detail.enabled()));
    s.count("reqs_per_event", c.reqs_per_event as u64);
    s.field("cas_enabled", Value::YesNo(!c.disable_cas));
    s.count("tcp_backlog", c.backlog as u64);
    s.field("binding_protocol", Value::Word(c.protocol.name()));
    s.field("auth_enabled_sasl", Value::YesNo(c.sasl.is_some()));
    // memcached prints the -Y file's name as given.
    s.field(
        "auth_enabled_ascii",
        match &c.auth_file {
            Some(file) => Value::Text(file.path.display().to_string()),
            None => Value::Word("no"),
        },
    );
    s.count("item_size_max", c.item_size_max as u64);
    s.field("maxconns_fast", Value::YesNo(true));
    s.field("slab_reassign", Value::YesNo(false));
    s.count(
        "slab_automove",
        t.slab_automove.load(Ordering::Relaxed) as u64,
    );
    // The sweeper plays memcached's LRU crawler; these are the values `lru_crawler` set (see
    // server::tunables for what they change).
    s.field(
        "lru_crawler",
        Value::YesNo(t.lru_crawler.load(Ordering::Relaxed)),
    );
    s.count(
        "lru_crawler_sleep",
        t.lru_crawler_sleep.load(Ordering::Relaxed) as u64,
    );
    s.count(
        "lru_crawler_tocrawl",
        t.lru_crawler_tocrawl.load(Ordering::Relaxed) as u64,
    );
    s.count("tail_repair_time", 0);
    s.field("flush_enabled", Value::YesNo(!c.disable_flush));
    s.field("dump_enabled", Value::YesNo(true));
    // No LRU maintainer and no segmented LRU (one LRU per shard); the percentages and
    // factors are memcached's defaults, which it reports whether or not segmentation is on.
    s.field("lru_maintainer_thread", Value::YesNo(false));
    s.field("lru_segmented", Value::YesNo(false));
    s.count("hot_lru_pct", 20);
    s.count("warm_lru_pct", 40);
    s.field("hot_max_factor", Value::Word("0.20"));
    s.field("warm_max_factor", Value::Word("2.00"));
    s.field("temp_lru", Value::YesNo(false));
    s.count("temporary_ttl", 61);
    s.count("idle_timeout", c.idle_timeout as u64);
    s.count("read_buf_mem_limit", c.read_buf_mem_limit);
    s.extend_text(crate::server::tls::settings_stats(&c.tls));
    s.count("repl_port", c.repl_port as u64);
    s.count("repl_peers", c.peers.len() as u64);
    s.count("repl_backlog_size", c.repl_backlog_size as u64);
    // --repl-insecure given: a plaintext replication link is accepted where it would be refused.
    s.field("repl_insecure", Value::YesNo(c.repl_insecure));
    s
}
