//! `stats` (the general group), in memcached 1.6's order, then TLS's and replication's fields.

use super::snapshot::{Snapshot, Value};
use crate::protocol::reply::VERSION;
use crate::server::shared::ServerState;
use std::sync::atomic::Ordering;

/// (user, system) CPU time of the process.
#[allow(unsafe_code)] // getrusage(2): std has no equivalent.
fn rusage() -> (Value, Value) {
    // SAFETY: libc::rusage is a plain C struct of integers and timevals, for which all-zero
    // bytes are a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage only writes into the struct we pass, which is valid and exclusively
    // borrowed for the call; RUSAGE_SELF cannot fail (on error `ru` would stay zeroed).
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    // time_t and suseconds_t are narrower than i64 on some targets.
    #[allow(clippy::useless_conversion)]
    let time = |tv: libc::timeval| Value::CpuTime {
        secs: i64::from(tv.tv_sec),
        micros: i64::from(tv.tv_usec),
    };
    (time(ru.ru_utime), time(ru.ru_stime))
}

pub fn general(shared: &ServerState) -> Snapshot {
    let now = crate::store::unix_now();
    let (user, system) = rusage();
    let c = &shared.stats;
    let load = |counter: &crate::server::counters::StripedCounter| counter.load(Ordering::Relaxed);
    let store = shared.store.stats();
    let mut s = Snapshot::default();
    s.count("pid", std::process::id() as u64);
    s.count("uptime", now.saturating_sub(shared.started_unix) as u64);
    s.count("time", now as u64);
    s.field("version", Value::Word(VERSION));
    s.field("libevent", Value::Word("tokio"));
    s.count("pointer_size", (std::mem::size_of::<usize>() * 8) as u64);
    s.field("rusage_user", user);
    s.field("rusage_system", system);
    s.count("max_connections", shared.config.max_connections as u64);
    s.count("curr_connections", load(&c.curr_connections));
    s.count("total_connections", load(&c.total_connections));
    s.count("rejected_connections", load(&c.rejected_connections));
    s.count("connection_structures", load(&c.curr_connections));
    s.count("response_obj_oom", load(&c.response_obj_oom));
    // Budgets are per connection (see connection.rs): a read buffer is never refused.
    s.count("read_buf_oom", 0);
    s.count("cmd_get", load(&c.cmd_get));
    s.count("cmd_set", load(&c.cmd_set));
    s.count("cmd_flush", load(&c.cmd_flush));
    s.count("cmd_touch", load(&c.cmd_touch));
    s.count("cmd_meta", load(&c.cmd_meta));
    s.count("get_hits", load(&c.get_hits));
    s.count("get_misses", load(&c.get_misses));
    // Counted by the store's lookup, like memcached's do_item_get.
    s.count("get_expired", store.get_expired);
    s.count("get_flushed", store.get_flushed);
    s.count("delete_misses", load(&c.delete_misses));
    s.count("delete_hits", load(&c.delete_hits));
    s.count("incr_misses", load(&c.incr_misses));
    s.count("incr_hits", load(&c.incr_hits));
    s.count("decr_misses", load(&c.decr_misses));
    s.count("decr_hits", load(&c.decr_hits));
    s.count("cas_misses", load(&c.cas_misses));
    s.count("cas_hits", load(&c.cas_hits));
    s.count("cas_badval", load(&c.cas_badval));
    s.count("touch_hits", load(&c.touch_hits));
    s.count("touch_misses", load(&c.touch_misses));
    s.count("store_too_large", load(&c.store_too_large));
    s.count("store_no_memory", load(&c.store_no_memory));
    s.count("auth_cmds", load(&c.auth_cmds));
    s.count("auth_errors", load(&c.auth_errors));
    // Not memcached's: connections closed after too many failed logins (see auth_guard).
    s.count("auth_conns_closed", load(&c.auth_conns_closed));
    // Not memcached's: login attempts refused unchecked because their source was blocked,
    // and blocks of a source after too many failures (see auth_guard).
    s.count("auth_throttled", load(&c.auth_throttled));
    s.count("auth_sources_blocked", load(&c.auth_sources_blocked));
    s.count("idle_kicks", load(&c.idle_kicks));
    s.count("bytes_read", load(&c.bytes_read));
    s.count("bytes_written", load(&c.bytes_written));
    s.count("limit_maxbytes", store.limit_maxbytes);
    s.count("accepting_conns", 1);
    s.count("listen_disabled_num", 0);
    s.count("time_in_listen_disabled_us", 0);
    s.count("threads", shared.config.threads as u64);
    s.count("conn_yields", load(&c.conn_yields));
    // The items' hash indexes; with the ring they make up -m (see `Store::fit_ring`).
    s.count("hash_bytes", store.index_bytes);
    // Each shard's index grows in one step under its lock: never half expanded.
    s.count("hash_is_expanding", 0);
    // The sweeper is the store's LRU crawler (see `stats settings` lru_crawler_*); memcached
    // lists these only while its crawler is enabled.
    if shared.tunables.lru_crawler.load(Ordering::Relaxed) {
        let running = shared.tunables.crawl_running.load(Ordering::Relaxed);
        s.count("lru_crawler_running", running as u64);
        s.count("lru_crawler_starts", store.crawler_starts);
    }
    // True zeros, not estimates: a failed allocation aborts the process (none is survived and
    // counted), there is no `watch` logger, and -N (NAPI ids) is not supported.
    for name in [
        "malloc_fails",
        "log_worker_dropped",
        "log_worker_written",
        "log_watcher_skipped",
        "log_watcher_sent",
        "log_watchers",
        "unexpected_napi_ids",
        "round_robin_fallback",
    ] {
        s.count(name, 0);
    }
    s.count("bytes", store.bytes);
    s.count("curr_items", store.curr_items);
    s.count("total_items", store.total_items);
    s.count("expired_unfetched", store.expired_unfetched);
    s.count("evicted_unfetched", store.evicted_unfetched);
    s.count("evicted_active", 0);
    s.count("evictions", store.evictions);
    s.count("reclaimed", store.reclaimed);
    s.count("crawler_reclaimed", store.crawler_reclaimed);
    s.count("crawler_items_checked", store.crawler_items_checked);
    s.count("lrutail_reflocked", 0);
    // One FIFO over the ring with a second chance for items hit since they were written:
    // moves_to_warm counts those second chances (copies to the head), moves_within_lru the
    // hits that marked an item for one.
    s.count("moves_to_cold", 0);
    s.count("moves_to_warm", store.moves_to_head);
    s.count("moves_within_lru", store.lru_bumps);
    s.count("direct_reclaims", 0);
    s.count("lru_bumps_dropped", 0);
    s.count("curr_tombstones", store.tombstones);
    if let Some(tls) = &shared.tls {
        s.extend(tls.general_stats(now));
    }
    if let Some(repl) = shared.replicator() {
        s.extend(repl.general_stats());
    }
    s
}
