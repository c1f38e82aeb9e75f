//! `stats` and its groups, with memcached 1.6's field names and value formats, so that
//! monitoring (memcached_exporter, munin, stats scripts) reads repcached like memcached.

use crate::protocol::reply::{push_u64, VERSION};
use crate::protocol::StatsGroup;
use crate::server::shared::Shared;
use std::sync::atomic::Ordering;

fn stat(out: &mut Vec<u8>, name: &str, value: impl std::fmt::Display) {
    use std::io::Write;
    let _ = write!(out, "STAT {name} {value}\r\n");
}

fn stat_u64(out: &mut Vec<u8>, name: &str, value: u64) {
    out.extend_from_slice(b"STAT ");
    out.extend_from_slice(name.as_bytes());
    out.push(b' ');
    push_u64(out, value);
    out.extend_from_slice(b"\r\n");
}

pub fn write(shared: &Shared, group: StatsGroup<'_>, out: &mut Vec<u8>) {
    match group {
        StatsGroup::General => general(shared, out),
        StatsGroup::Settings => settings(shared, out),
        StatsGroup::Items => items(shared, out),
        StatsGroup::Slabs => slabs(shared, out),
        StatsGroup::Sizes => {
            stat(out, "sizes_status", "disabled");
        }
        StatsGroup::Conns => conns(shared, out),
        StatsGroup::Replication => {
            if let Some(repl) = shared.replicator() {
                for (k, v) in repl.replication_stats() {
                    stat(out, &k, v);
                }
            }
        }
        StatsGroup::Reset => {
            shared.stats.reset();
            shared.store.reset_counters();
            shared.detail.clear();
            if let Some(tls) = &shared.tls {
                tls.reset_stats();
            }
            out.extend_from_slice(b"RESET\r\n");
            return;
        }
        StatsGroup::Detail(arg) => {
            match arg {
                b"dump" => shared.detail.dump(out),
                on_off => {
                    shared.detail.set_enabled(on_off == b"on");
                    out.extend_from_slice(b"OK\r\n");
                }
            }
            return;
        }
        StatsGroup::CacheDump { class, limit } => {
            // Appends its own END.
            super::dump::cachedump(&shared.store, class, limit, out);
            return;
        }
        StatsGroup::Other(b"sizes_enable") => stat(out, "sizes_status", "enabled"),
        StatsGroup::Other(b"sizes_disable") => stat(out, "sizes_status", "disabled"),
        StatsGroup::Other(b"extstore") => {}
        StatsGroup::Other(_) => {
            out.extend_from_slice(b"ERROR\r\n");
            return;
        }
    }
    out.extend_from_slice(b"END\r\n");
}

/// (user, system) CPU time as memcached prints it: seconds.microseconds.
#[allow(unsafe_code)] // getrusage(2): std has no equivalent.
fn rusage() -> (String, String) {
    // SAFETY: libc::rusage is a plain C struct of integers and timevals, for which all-zero
    // bytes are a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage only writes into the struct we pass, which is valid and exclusively
    // borrowed for the call; RUSAGE_SELF cannot fail (on error `ru` would stay zeroed).
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let fmt = |tv: libc::timeval| format!("{}.{:06}", tv.tv_sec, tv.tv_usec);
    (fmt(ru.ru_utime), fmt(ru.ru_stime))
}

fn general(shared: &Shared, out: &mut Vec<u8>) {
    let now = crate::store::unix_now();
    let (user, system) = rusage();
    let s = shared.stats.snapshot();
    let get = |name: &str| {
        s.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
            .unwrap_or(0)
    };
    let store = shared.store.stats();
    stat_u64(out, "pid", std::process::id() as u64);
    stat_u64(
        out,
        "uptime",
        now.saturating_sub(shared.started_unix) as u64,
    );
    stat_u64(out, "time", now as u64);
    stat(out, "version", VERSION);
    stat(out, "libevent", "tokio");
    stat_u64(
        out,
        "pointer_size",
        (std::mem::size_of::<usize>() * 8) as u64,
    );
    stat(out, "rusage_user", user);
    stat(out, "rusage_system", system);
    stat_u64(out, "max_connections", shared.config.max_connections as u64);
    for name in [
        "curr_connections",
        "total_connections",
        "rejected_connections",
    ] {
        stat_u64(out, name, get(name));
    }
    stat_u64(out, "connection_structures", get("curr_connections"));
    stat_u64(out, "response_obj_oom", get("response_obj_oom"));
    // Budgets are per connection (see connection.rs): a read buffer is never refused.
    stat_u64(out, "read_buf_oom", 0);
    for name in [
        "cmd_get",
        "cmd_set",
        "cmd_flush",
        "cmd_touch",
        "cmd_meta",
        "get_hits",
        "get_misses",
    ] {
        stat_u64(out, name, get(name));
    }
    // Counted by the store's lookup, like memcached's do_item_get.
    stat_u64(out, "get_expired", store.get_expired);
    stat_u64(out, "get_flushed", store.get_flushed);
    for name in [
        "delete_misses",
        "delete_hits",
        "incr_misses",
        "incr_hits",
        "decr_misses",
        "decr_hits",
        "cas_misses",
        "cas_hits",
        "cas_badval",
        "touch_hits",
        "touch_misses",
        "store_too_large",
        "store_no_memory",
    ] {
        stat_u64(out, name, get(name));
    }
    stat_u64(out, "auth_cmds", get("auth_cmds"));
    stat_u64(out, "auth_errors", get("auth_errors"));
    // Not memcached's: connections closed after too many failed logins (see auth_guard).
    stat_u64(out, "auth_conns_closed", get("auth_conns_closed"));
    // Not memcached's: login attempts refused unchecked because their source was blocked,
    // and blocks of a source after too many failures (see auth_guard).
    stat_u64(out, "auth_throttled", get("auth_throttled"));
    stat_u64(out, "auth_sources_blocked", get("auth_sources_blocked"));
    stat_u64(out, "idle_kicks", get("idle_kicks"));
    stat_u64(out, "bytes_read", get("bytes_read"));
    stat_u64(out, "bytes_written", get("bytes_written"));
    stat_u64(out, "limit_maxbytes", store.limit_maxbytes);
    stat_u64(out, "accepting_conns", 1);
    stat_u64(out, "listen_disabled_num", 0);
    stat_u64(out, "time_in_listen_disabled_us", 0);
    stat_u64(out, "threads", shared.config.threads as u64);
    stat_u64(out, "conn_yields", get("conn_yields"));
    // The items' hash indexes; with the ring they make up -m (see `Store::fit_ring`).
    stat_u64(out, "hash_bytes", store.index_bytes);
    // Each shard's index grows in one step under its lock: never half expanded.
    stat_u64(out, "hash_is_expanding", 0);
    // The sweeper is the store's LRU crawler (see `stats settings` lru_crawler_*); memcached
    // lists these only while its crawler is enabled.
    if shared.tunables.lru_crawler.load(Ordering::Relaxed) {
        stat_u64(
            out,
            "lru_crawler_running",
            shared.tunables.crawl_running.load(Ordering::Relaxed) as u64,
        );
        stat_u64(out, "lru_crawler_starts", store.crawler_starts);
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
        stat_u64(out, name, 0);
    }
    stat_u64(out, "bytes", store.bytes);
    stat_u64(out, "curr_items", store.curr_items);
    stat_u64(out, "total_items", store.total_items);
    stat_u64(out, "expired_unfetched", store.expired_unfetched);
    stat_u64(out, "evicted_unfetched", store.evicted_unfetched);
    stat_u64(out, "evicted_active", 0);
    stat_u64(out, "evictions", store.evictions);
    stat_u64(out, "reclaimed", store.reclaimed);
    stat_u64(out, "crawler_reclaimed", store.crawler_reclaimed);
    stat_u64(out, "crawler_items_checked", store.crawler_items_checked);
    stat_u64(out, "lrutail_reflocked", 0);
    // One FIFO over the ring with a second chance for items hit since they were written:
    // moves_to_warm counts those second chances (copies to the head), moves_within_lru the
    // hits that marked an item for one.
    stat_u64(out, "moves_to_cold", 0);
    stat_u64(out, "moves_to_warm", store.moves_to_head);
    stat_u64(out, "moves_within_lru", store.lru_bumps);
    stat_u64(out, "direct_reclaims", 0);
    stat_u64(out, "lru_bumps_dropped", 0);
    stat_u64(out, "curr_tombstones", store.tombstones);
    if let Some(tls) = &shared.tls {
        for (name, value) in tls.general_stats(now) {
            stat(out, name, value);
        }
    }
    if let Some(repl) = shared.replicator() {
        for (k, v) in repl.general_stats() {
            stat(out, &k, v);
        }
    }
}

fn settings(shared: &Shared, out: &mut Vec<u8>) {
    let c = &shared.config;
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    stat_u64(out, "maxbytes", shared.store.mem_limit() as u64);
    stat_u64(out, "maxconns", c.max_connections as u64);
    stat_u64(
        out,
        "tcpport",
        shared.tcp_port.load(Ordering::Relaxed) as u64,
    );
    stat_u64(
        out,
        "udpport",
        shared.udp_port.load(Ordering::Relaxed) as u64,
    );
    stat(
        out,
        "inter",
        if c.listen.is_empty() {
            "NULL".to_string()
        } else {
            c.listen.join(",")
        },
    );
    stat_u64(
        out,
        "verbosity",
        shared.verbosity.load(Ordering::Relaxed) as u64,
    );
    stat_u64(out, "oldest", 0);
    stat(out, "evictions", if c.no_evict { "off" } else { "on" });
    stat(out, "domain_socket", "NULL");
    stat_u64(out, "umask", 700);
    stat(out, "shutdown_command", yes_no(c.enable_shutdown));
    stat(out, "growth_factor", "1.25");
    stat_u64(out, "chunk_size", 48);
    stat_u64(out, "num_threads", c.threads as u64);
    stat_u64(out, "num_threads_per_udp", c.threads as u64);
    stat(out, "stat_key_prefix", ":");
    stat(out, "detail_enabled", yes_no(shared.detail.enabled()));
    stat_u64(out, "reqs_per_event", c.reqs_per_event as u64);
    stat(out, "cas_enabled", yes_no(!c.disable_cas));
    stat_u64(out, "tcp_backlog", c.backlog as u64);
    stat(out, "binding_protocol", c.protocol.name());
    stat(out, "auth_enabled_sasl", yes_no(c.sasl.is_some()));
    // memcached prints the -Y file's name as given.
    match &c.auth_file {
        Some(file) => stat(out, "auth_enabled_ascii", file.path.display()),
        None => stat(out, "auth_enabled_ascii", "no"),
    }
    stat_u64(out, "item_size_max", c.item_size_max as u64);
    stat(out, "maxconns_fast", "yes");
    stat(out, "slab_reassign", "no");
    stat_u64(
        out,
        "slab_automove",
        shared.tunables.slab_automove.load(Ordering::Relaxed) as u64,
    );
    // The sweeper plays memcached's LRU crawler; these are the values `lru_crawler` set (see
    // server::tunables for what they change).
    let t = &shared.tunables;
    stat(
        out,
        "lru_crawler",
        yes_no(t.lru_crawler.load(Ordering::Relaxed)),
    );
    stat_u64(
        out,
        "lru_crawler_sleep",
        t.lru_crawler_sleep.load(Ordering::Relaxed) as u64,
    );
    stat_u64(
        out,
        "lru_crawler_tocrawl",
        t.lru_crawler_tocrawl.load(Ordering::Relaxed) as u64,
    );
    stat_u64(out, "tail_repair_time", 0);
    stat(out, "flush_enabled", yes_no(!c.disable_flush));
    stat(out, "dump_enabled", "yes");
    // No LRU maintainer and no segmented LRU (one LRU per shard); the percentages and
    // factors are memcached's defaults, which it reports whether or not segmentation is on.
    stat(out, "lru_maintainer_thread", "no");
    stat(out, "lru_segmented", "no");
    stat_u64(out, "hot_lru_pct", 20);
    stat_u64(out, "warm_lru_pct", 40);
    stat(out, "hot_max_factor", "0.20");
    stat(out, "warm_max_factor", "2.00");
    stat(out, "temp_lru", "no");
    stat_u64(out, "temporary_ttl", 61);
    stat_u64(out, "idle_timeout", c.idle_timeout as u64);
    stat_u64(out, "read_buf_mem_limit", c.read_buf_mem_limit);
    for (name, value) in crate::server::tls::settings_stats(&c.tls) {
        stat(out, name, value);
    }
    stat_u64(out, "repl_port", c.repl_port as u64);
    stat_u64(out, "repl_peers", c.peers.len() as u64);
    stat_u64(out, "repl_backlog_size", c.repl_backlog_size as u64);
    // --repl-insecure given: a plaintext replication link is accepted where it would be refused.
    stat(out, "repl_insecure", yes_no(c.repl_insecure));
}

/// The store has no slab classes; everything is reported as class 1 so that tools that
/// iterate `items:<class>:` find a consistent picture.
fn items(shared: &Shared, out: &mut Vec<u8>) {
    let s = shared.store.stats();
    if s.curr_items == 0 {
        return;
    }
    stat_u64(out, "items:1:number", s.curr_items);
    stat_u64(out, "items:1:number_hot", 0);
    stat_u64(out, "items:1:number_warm", 0);
    stat_u64(out, "items:1:number_cold", s.curr_items);
    stat_u64(out, "items:1:age_hot", 0);
    stat_u64(out, "items:1:age_warm", 0);
    stat_u64(out, "items:1:age", s.oldest_age);
    stat_u64(out, "items:1:mem_requested", s.bytes);
    stat_u64(out, "items:1:evicted", s.evictions);
    stat_u64(out, "items:1:evicted_nonzero", s.evicted_nonzero);
    stat_u64(out, "items:1:evicted_time", s.evicted_time);
    stat_u64(
        out,
        "items:1:outofmemory",
        shared.stats.store_no_memory.load(Ordering::Relaxed),
    );
    stat_u64(out, "items:1:tailrepairs", 0);
    stat_u64(out, "items:1:reclaimed", s.reclaimed);
    stat_u64(out, "items:1:expired_unfetched", s.expired_unfetched);
    stat_u64(out, "items:1:evicted_unfetched", s.evicted_unfetched);
    stat_u64(out, "items:1:evicted_active", 0);
    stat_u64(out, "items:1:crawler_reclaimed", s.crawler_reclaimed);
    stat_u64(
        out,
        "items:1:crawler_items_checked",
        s.crawler_items_checked,
    );
    stat_u64(out, "items:1:lrutail_reflocked", 0);
    stat_u64(out, "items:1:moves_to_cold", 0);
    stat_u64(out, "items:1:moves_to_warm", s.moves_to_head);
    stat_u64(out, "items:1:moves_within_lru", s.lru_bumps);
    stat_u64(out, "items:1:direct_reclaims", 0);
    // Every item lives in the one (COLD-like) LRU, so every hit is a hit to it.
    stat_u64(out, "items:1:hits_to_hot", 0);
    stat_u64(out, "items:1:hits_to_warm", 0);
    stat_u64(
        out,
        "items:1:hits_to_cold",
        shared.stats.get_hits.load(Ordering::Relaxed),
    );
    stat_u64(out, "items:1:hits_to_temp", 0);
}

/// memcached's slab page (-o slab_page_size default).
const PAGE_SIZE: u64 = 1024 * 1024;

fn slabs(shared: &Shared, out: &mut Vec<u8>) {
    let s = shared.store.stats();
    let st = &shared.stats;
    let load = |c: &crate::server::stats::Counter| c.load(Ordering::Relaxed);
    if s.curr_items > 0 {
        // One class: the ring. A chunk is an item of the average size the items take in the
        // ring (header, key, value, padding); pages are 1 MiB pages of the ring's capacity;
        // used chunks are the live items, free chunks the items of that size the ring's free
        // part would hold, and free_chunks_end the same for the dead space (changed or deleted
        // items' old copies) that the tail has not passed yet.
        let chunk_size = s.bytes.div_ceil(s.curr_items).max(1);
        let free = s.ring_capacity.saturating_sub(s.ring_used);
        let dead = s.ring_used.saturating_sub(s.bytes);
        stat_u64(out, "1:chunk_size", chunk_size);
        stat_u64(out, "1:chunks_per_page", (PAGE_SIZE / chunk_size).max(1));
        stat_u64(out, "1:total_pages", s.ring_capacity.div_ceil(PAGE_SIZE));
        stat_u64(
            out,
            "1:total_chunks",
            s.curr_items + (free + dead) / chunk_size,
        );
        stat_u64(out, "1:used_chunks", s.curr_items);
        stat_u64(out, "1:free_chunks", free / chunk_size);
        stat_u64(out, "1:free_chunks_end", dead / chunk_size);
        stat_u64(out, "1:get_hits", load(&st.get_hits));
        stat_u64(out, "1:cmd_set", load(&st.cmd_set));
        stat_u64(out, "1:delete_hits", load(&st.delete_hits));
        stat_u64(out, "1:incr_hits", load(&st.incr_hits));
        stat_u64(out, "1:decr_hits", load(&st.decr_hits));
        stat_u64(out, "1:cas_hits", load(&st.cas_hits));
        stat_u64(out, "1:cas_badval", load(&st.cas_badval));
        stat_u64(out, "1:touch_hits", load(&st.touch_hits));
    }
    stat_u64(out, "active_slabs", u64::from(s.curr_items > 0));
    stat_u64(out, "total_malloced", s.ring_used);
}

/// memcached's `stats conns`: listening sockets and client connections, by fd.
fn conns(shared: &Shared, out: &mut Vec<u8>) {
    let now = crate::store::unix_now();
    // Listeners have run no command: memcached counts their idle time from the start.
    let since_start = now.saturating_sub(shared.started_unix) as u64;
    let mut rows: Vec<(i32, Vec<u8>)> = Vec::new();
    for l in shared.listeners.lock().iter() {
        let mut row = Vec::new();
        let fd = l.fd;
        if l.udp {
            stat(&mut row, &format!("{fd}:UDP"), "UDP");
        }
        stat(&mut row, &format!("{fd}:addr"), &l.addr);
        let state = if l.udp { "conn_read" } else { "conn_listening" };
        stat(&mut row, &format!("{fd}:state"), state);
        stat_u64(&mut row, &format!("{fd}:secs_since_last_cmd"), since_start);
        rows.push((fd, row));
    }
    for (fd, info) in shared.conns.lock().iter() {
        let mut row = Vec::new();
        stat(&mut row, &format!("{fd}:addr"), &info.peer);
        stat(&mut row, &format!("{fd}:listen_addr"), &info.listen);
        let state = if info.nread.load(Ordering::Relaxed) {
            "conn_nread"
        } else {
            "conn_parse_cmd"
        };
        stat(&mut row, &format!("{fd}:state"), state);
        stat_u64(
            &mut row,
            &format!("{fd}:secs_since_last_cmd"),
            now.saturating_sub(info.last_cmd.load(Ordering::Relaxed)) as u64,
        );
        rows.push((*fd, row));
    }
    rows.sort_by_key(|(fd, _)| *fd);
    for (_, row) in rows {
        out.extend_from_slice(&row);
    }
}
