//! The built-in Prometheus endpoint (`--metrics-listen ADDR:PORT`, off by default).
//!
//! It serves the metric names of prometheus memcached_exporter v0.11 (`memcached_*`), made the
//! way the exporter makes them: from this server's own `stats`, `stats slabs`, `stats items` and
//! `stats settings` text, parsed as the exporter's client library (gomemcache) parses it. So a
//! dashboard built for memcached_exporter works unchanged, and the two can never disagree.
//! Replication metrics (`repcached_repl_*`) come from `stats` and `stats replication`, plus a
//! histogram of each peer's lag sampled once a second.
//!
//! The HTTP side is deliberately tiny: HTTP/1.x, one request per connection, `GET /metrics`
//! answered 200, other paths 404, other methods 405, anything unparsable 400, a request head
//! over [`MAX_REQUEST`] 431, a client that has not sent its head within [`READ_DEADLINE`] 408.
//! At most [`MAX_CONNS`] scrapes at once; it runs on the main runtime, never on the workers.

use crate::protocol::StatsGroup;
use crate::server::exec::stats as stats_report;
use crate::server::shared::Shared;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// Largest request head accepted (request line and headers).
pub const MAX_REQUEST: usize = 8 * 1024;
/// The whole request head must arrive within this.
pub const READ_DEADLINE: Duration = Duration::from_secs(5);
/// Writing the answer must finish within this.
const WRITE_DEADLINE: Duration = Duration::from_secs(10);
/// Scrapes served at once; connections beyond are closed at once.
pub const MAX_CONNS: usize = 16;
/// Upper bounds (ms) of the lag histogram's buckets.
pub const LAG_BUCKETS_MS: [u64; 12] = [1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000];

/// Per peer (by address): lag samples in [`LAG_BUCKETS_MS`] (+Inf last), their sum and count.
#[derive(Default, Clone)]
struct LagHistogram {
    buckets: [u64; LAG_BUCKETS_MS.len() + 1],
    sum: u64,
    count: u64,
}

impl LagHistogram {
    fn observe(&mut self, ms: u64) {
        let i = LAG_BUCKETS_MS
            .iter()
            .position(|&b| ms <= b)
            .unwrap_or(LAG_BUCKETS_MS.len());
        self.buckets[i] += 1;
        self.sum += ms;
        self.count += 1;
    }
}

#[derive(Default)]
pub struct MetricsState {
    lag: Mutex<BTreeMap<String, LagHistogram>>,
}

/// Accepts scrapes until the task is aborted; samples the replication lag once a second.
pub async fn serve(shared: Arc<Shared>, listener: TcpListener) {
    let state = Arc::new(MetricsState::default());
    let sampler = tokio::spawn(sample_lag(shared.clone(), state.clone()));
    let _abort = AbortOnDrop(sampler);
    let slots = Arc::new(Semaphore::new(MAX_CONNS));
    loop {
        let sock = match listener.accept().await {
            Ok((sock, _)) => sock,
            Err(e) => {
                tracing::debug!("metrics: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue; // dropped: closed
        };
        let shared = shared.clone();
        let state = state.clone();
        tokio::spawn(async move {
            handle(&shared, &state, sock).await;
            drop(permit);
        });
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn sample_lag(shared: Arc<Shared>, state: Arc<MetricsState>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let Some(repl) = shared.replicator() else {
            return;
        };
        let peers = peer_rows(&repl.replication_stats());
        let mut lag = state.lag.lock();
        for p in peers.values() {
            if let (Some(addr), Some(ms)) = (p.get("addr"), p.get("lag_ms")) {
                if let Ok(ms) = ms.parse::<u64>() {
                    lag.entry(addr.clone()).or_default().observe(ms);
                }
            }
        }
    }
}

async fn handle(shared: &Shared, state: &MetricsState, mut sock: TcpStream) {
    let mut buf = Vec::with_capacity(1024);
    let deadline = tokio::time::Instant::now() + READ_DEADLINE;
    let response = loop {
        if let Some(end) = head_end(&buf) {
            break route(shared, state, &buf[..end]);
        }
        if buf.len() >= MAX_REQUEST {
            break plain(
                431,
                "Request Header Fields Too Large",
                "request too large\n",
            );
        }
        let mut chunk = [0u8; 2048];
        let room = (MAX_REQUEST - buf.len()).min(chunk.len());
        match tokio::time::timeout_at(deadline, sock.read(&mut chunk[..room])).await {
            Err(_) => break plain(408, "Request Timeout", "request timeout\n"),
            Ok(Err(_)) | Ok(Ok(0)) => return,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let _ = tokio::time::timeout(WRITE_DEADLINE, async {
        sock.write_all(&response).await?;
        sock.shutdown().await
    })
    .await;
}

/// Where the request head ends (blank line, CRLF or bare LF).
fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = memchr::memmem::find(buf, b"\r\n\r\n");
    let lf = memchr::memmem::find(buf, b"\n\n");
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The answer to one request head.
pub fn route(shared: &Shared, state: &MetricsState, head: &[u8]) -> Vec<u8> {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let parts: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    let [method, target, version] = parts[..] else {
        return plain(400, "Bad Request", "bad request\n");
    };
    if !version.starts_with(b"HTTP/1.") || !target.starts_with(b"/") {
        return plain(400, "Bad Request", "bad request\n");
    }
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    if path != b"/metrics" {
        return plain(404, "Not Found", "not found: try /metrics\n");
    }
    if method != b"GET" {
        let mut r = plain(405, "Method Not Allowed", "only GET\n");
        // Insert the Allow header before the blank line.
        let at = memchr::memmem::find(&r, b"\r\n\r\n").unwrap_or(0);
        r.splice(at..at, b"\r\nAllow: GET".iter().copied());
        return r;
    }
    let body = render(shared, state);
    response(
        200,
        "OK",
        "text/plain; version=0.0.4; charset=utf-8",
        body.as_bytes(),
    )
}

fn plain(code: u16, reason: &str, body: &str) -> Vec<u8> {
    response(code, reason, "text/plain; charset=utf-8", body.as_bytes())
}

fn response(code: u16, reason: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// What `stats`, `stats slabs` and `stats items` hold, split as gomemcache splits it: `a`
/// global, `N:a` per slab class, `items:N:a` per class's items; lines whose value has a space
/// are skipped, as there.
#[derive(Default, Debug)]
pub struct ParsedStats {
    pub stats: HashMap<String, String>,
    pub slabs: BTreeMap<u32, HashMap<String, String>>,
    pub items: BTreeMap<u32, HashMap<String, String>>,
}

pub fn parse_stats(text: &str, into: &mut ParsedStats) {
    for line in text.lines() {
        let parts: Vec<&str> = line.split(' ').collect();
        let [stat, key, value] = parts[..] else {
            continue;
        };
        if stat != "STAT" {
            continue;
        }
        let f: Vec<&str> = key.split(':').collect();
        match f[..] {
            [k] => {
                into.stats.insert(k.into(), value.into());
            }
            [class, k] => {
                if let Ok(n) = class.parse() {
                    into.slabs
                        .entry(n)
                        .or_default()
                        .insert(k.into(), value.into());
                }
            }
            [_, class, k] => {
                if let Ok(n) = class.parse() {
                    into.items
                        .entry(n)
                        .or_default()
                        .insert(k.into(), value.into());
                }
            }
            _ => {}
        }
    }
}

/// `stats settings` as a map.
pub fn parse_settings(text: &str) -> HashMap<String, String> {
    let mut m = HashMap::new();
    for line in text.lines() {
        let mut it = line.splitn(3, ' ');
        if let (Some("STAT"), Some(k), Some(v)) = (it.next(), it.next(), it.next()) {
            m.insert(k.to_string(), v.to_string());
        }
    }
    m
}

fn stats_text(shared: &Shared, group: StatsGroup<'_>) -> String {
    let mut out = Vec::new();
    stats_report::write(shared, group, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Families of samples, kept by name so that each family is written in one block.
#[derive(Default)]
pub struct Families {
    map: BTreeMap<String, Family>,
}

struct Family {
    help: &'static str,
    kind: &'static str,
    samples: Vec<String>,
}

impl Families {
    pub fn add(
        &mut self,
        name: &str,
        help: &'static str,
        kind: &'static str,
        labels: &[(&str, &str)],
        value: f64,
    ) {
        self.add_sample(name, name, help, kind, labels, value);
    }

    /// A sample under `family` whose series is called `series` (histograms: `_bucket`, ...).
    fn add_sample(
        &mut self,
        family: &str,
        series: &str,
        help: &'static str,
        kind: &'static str,
        labels: &[(&str, &str)],
        value: f64,
    ) {
        let f = self.map.entry(family.to_string()).or_insert(Family {
            help,
            kind,
            samples: Vec::new(),
        });
        let mut s = series.to_string();
        if !labels.is_empty() {
            s.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(s, "{k}=\"{v}\"");
            }
            s.push('}');
        }
        let _ = write!(s, " {value}");
        f.samples.push(s);
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(|s| s.as_str())
    }

    pub fn write(&self, out: &mut String) {
        for (name, f) in &self.map {
            let _ = writeln!(out, "# HELP {name} {}", f.help);
            let _ = writeln!(out, "# TYPE {name} {}", f.kind);
            for s in &f.samples {
                out.push_str(s);
                out.push('\n');
            }
        }
    }
}

const C: &str = "counter";
const G: &str = "gauge";

fn num(m: &HashMap<String, String>, k: &str) -> Option<f64> {
    m.get(k)?.parse().ok()
}

/// memcached's "seconds.microseconds" CPU times.
fn timeval(m: &HashMap<String, String>, k: &str) -> Option<f64> {
    let (s, us) = m.get(k)?.split_once('.')?;
    Some(s.parse::<f64>().ok()? + us.parse::<f64>().ok()? / 1e6)
}

/// The exporter's `parseStats` and `parseStatsSettings` (memcached_exporter v0.11), name for
/// name; a field that is absent gives no sample, as there.
pub fn exporter_families(p: &ParsedStats, settings: &HashMap<String, String>, f: &mut Families) {
    let s = &p.stats;
    f.add(
        "memcached_up",
        "Could the memcached server be reached.",
        G,
        &[],
        1.0,
    );
    if let Some(v) = s.get("version") {
        f.add(
            "memcached_version",
            "The version of this memcached server.",
            G,
            &[("version", v)],
            1.0,
        );
    }
    const CMD: &str = "memcached_commands_total";
    const CMD_HELP: &str =
        "Total number of all requests broken down by command (get, set, etc.) and status.";
    for op in ["get", "delete", "incr", "decr", "cas", "touch"] {
        for (suffix, status) in [("hits", "hit"), ("misses", "miss")] {
            if let Some(v) = num(s, &format!("{op}_{suffix}")) {
                f.add(CMD, CMD_HELP, C, &[("command", op), ("status", status)], v);
            }
        }
    }
    if let Some(v) = num(s, "cas_badval") {
        f.add(
            CMD,
            CMD_HELP,
            C,
            &[("command", "cas"), ("status", "badval")],
            v,
        );
    }
    if let Some(v) = num(s, "cmd_flush") {
        f.add(
            CMD,
            CMD_HELP,
            C,
            &[("command", "flush"), ("status", "hit")],
            v,
        );
    }
    if let (Some(set), Some(a), Some(b), Some(c)) = (
        num(s, "cmd_set"),
        num(s, "cas_misses"),
        num(s, "cas_hits"),
        num(s, "cas_badval"),
    ) {
        // memcached counts cas operations in cmd_set too.
        f.add(
            CMD,
            CMD_HELP,
            C,
            &[("command", "set"), ("status", "hit")],
            set - a - b - c,
        );
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
        if let Some(v) = timeval(s, key) {
            f.add(name, help, C, &[], v);
        }
    }
    for (class, u) in &p.items {
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
                    C,
                    &[("slab", &slab), ("lru", lru)],
                    v,
                );
            }
        }
    }
    const SCMD: &str = "memcached_slab_commands_total";
    const SCMD_HELP: &str =
        "Total number of all requests broken down by command (get, set, etc.) and status per slab.";
    for (class, v) in &p.slabs {
        let slab = class.to_string();
        for op in ["get", "delete", "incr", "decr", "cas", "touch"] {
            if let Some(x) = num(v, &format!("{op}_hits")) {
                let l = [("slab", slab.as_str()), ("command", op), ("status", "hit")];
                f.add(SCMD, SCMD_HELP, C, &l, x);
            }
        }
        if let Some(x) = num(v, "cas_badval") {
            let l = [
                ("slab", slab.as_str()),
                ("command", "cas"),
                ("status", "badval"),
            ];
            f.add(SCMD, SCMD_HELP, C, &l, x);
        }
        if let (Some(set), Some(a), Some(b)) =
            (num(v, "cmd_set"), num(v, "cas_hits"), num(v, "cas_badval"))
        {
            let l = [
                ("slab", slab.as_str()),
                ("command", "set"),
                ("status", "hit"),
            ];
            f.add(SCMD, SCMD_HELP, C, &l, set - a - b);
        }
        for (key, name, help) in SLABS {
            if let Some(x) = num(v, key) {
                f.add(name, help, G, &[("slab", &slab)], x);
            }
        }
    }
    if let Some(v) = num(settings, "maxconns") {
        f.add(
            "memcached_max_connections",
            "Maximum number of clients allowed.",
            G,
            &[],
            v,
        );
    }
    if settings.get("lru_crawler").map(String::as_str) == Some("yes") {
        for (key, name, help) in LRU_SETTINGS {
            let v = match settings.get(*key).map(String::as_str) {
                Some("yes") => Some(1.0),
                Some("no") => Some(0.0),
                Some(x) => x.parse().ok(),
                None => None,
            };
            if let Some(v) = v {
                f.add(name, help, G, &[], v);
            }
        }
    }
}

type Row = (&'static str, &'static str, &'static str, &'static str);

const GENERAL: &[Row] = &[
    ("uptime", "memcached_uptime_seconds", C, "Number of seconds since the server started."),
    ("time", "memcached_time_seconds", G, "current UNIX time according to the server."),
    ("bytes", "memcached_current_bytes", G, "Current number of bytes used to store items."),
    ("limit_maxbytes", "memcached_limit_bytes", G, "Number of bytes this server is allowed to use for storage."),
    ("curr_items", "memcached_current_items", G, "Current number of items stored by this instance."),
    ("total_items", "memcached_items_total", C, "Total number of items stored during the life of this instance."),
    ("bytes_read", "memcached_read_bytes_total", C, "Total number of bytes read by this server from network."),
    ("bytes_written", "memcached_written_bytes_total", C, "Total number of bytes sent by this server to network."),
    ("curr_connections", "memcached_current_connections", G, "Current number of open connections."),
    ("total_connections", "memcached_connections_total", C, "Total number of connections opened since the server started running."),
    ("rejected_connections", "memcached_connections_rejected_total", C, "Total number of connections rejected due to hitting the memcached's -c limit in maxconns_fast mode."),
    ("conn_yields", "memcached_connections_yielded_total", C, "Total number of connections yielded running due to hitting the memcached's -R limit."),
    ("hash_bytes", "memcached_hash_bytes", G, "Bytes currently used by hash tables."),
    ("listen_disabled_num", "memcached_connections_listener_disabled_total", C, "Number of times that memcached has hit its connections limit and disabled its listener."),
    ("evictions", "memcached_items_evicted_total", C, "Total number of valid items removed from cache to free memory for new items."),
    ("reclaimed", "memcached_items_reclaimed_total", C, "Total number of times an entry was stored using memory from an expired entry."),
    ("lru_crawler_starts", "memcached_lru_crawler_starts_total", C, "Times an LRU crawler was started."),
    ("crawler_items_checked", "memcached_lru_crawler_items_checked_total", C, "Total items examined by LRU Crawler."),
    ("crawler_reclaimed", "memcached_lru_crawler_reclaimed_total", C, "Total items freed by LRU Crawler."),
    ("moves_to_cold", "memcached_lru_crawler_moves_to_cold_total", C, "Total number of items moved from HOT/WARM to COLD LRU's."),
    ("moves_to_warm", "memcached_lru_crawler_moves_to_warm_total", C, "Total number of items moved from COLD to WARM LRU."),
    ("moves_within_lru", "memcached_lru_crawler_moves_within_lru_total", C, "Total number of items reshuffled within HOT or WARM LRU's."),
    ("total_malloced", "memcached_malloced_bytes", G, "Number of bytes of memory allocated to slab pages."),
    ("accepting_conns", "memcached_accepting_connections", G, "The Memcached server is currently accepting new connections."),
];

const ITEMS: &[Row] = &[
    ("number", "memcached_slab_current_items", G, "Number of items currently stored in this slab class."),
    ("age", "memcached_slab_items_age_seconds", G, "Number of seconds the oldest item has been in the slab class."),
    ("crawler_reclaimed", "memcached_slab_items_crawler_reclaimed_total", C, "Number of items freed by the LRU Crawler."),
    ("evicted", "memcached_slab_items_evicted_total", C, "Total number of times an item had to be evicted from the LRU before it expired."),
    ("evicted_nonzero", "memcached_slab_items_evicted_nonzero_total", C, "Total number of times an item which had an explicit expire time set had to be evicted from the LRU before it expired."),
    ("evicted_time", "memcached_slab_items_evicted_time_seconds", C, "Seconds since the last access for the most recent item evicted from this class."),
    ("evicted_unfetched", "memcached_slab_items_evicted_unfetched_total", C, "Total nmber of items evicted and never fetched."),
    ("expired_unfetched", "memcached_slab_items_expired_unfetched_total", C, "Total number of valid items evicted from the LRU which were never touched after being set."),
    ("outofmemory", "memcached_slab_items_outofmemory_total", C, "Total number of items for this slab class that have triggered an out of memory error."),
    ("reclaimed", "memcached_slab_items_reclaimed_total", C, "Total number of items reclaimed."),
    ("tailrepairs", "memcached_slab_items_tailrepairs_total", C, "Total number of times the entries for a particular ID need repairing."),
    ("mem_requested", "memcached_slab_mem_requested_bytes", C, "Number of bytes of memory actual items take up within a slab."),
    ("moves_to_cold", "memcached_slab_items_moves_to_cold", C, "Number of items moved from HOT or WARM into COLD."),
    ("moves_to_warm", "memcached_slab_items_moves_to_warm", C, "Number of items moves from COLD into WARM."),
    ("moves_within_lru", "memcached_slab_items_moves_within_lru", C, "Number of times active items were bumped within HOT or WARM."),
    ("number_hot", "memcached_slab_hot_items", G, "Number of items presently stored in the HOT LRU."),
    ("number_warm", "memcached_slab_warm_items", G, "Number of items presently stored in the WARM LRU."),
    ("number_cold", "memcached_slab_cold_items", G, "Number of items presently stored in the COLD LRU."),
    ("number_temp", "memcached_slab_temporary_items", G, "Number of items presently stored in the TEMPORARY LRU."),
    ("age_hot", "memcached_slab_hot_age_seconds", G, "Age of the oldest item in HOT LRU."),
    ("age_warm", "memcached_slab_warm_age_seconds", G, "Age of the oldest item in HOT LRU."),
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

/// `stats replication` rows grouped by peer number: `peerN:key value`.
fn peer_rows(rows: &[(String, String)]) -> BTreeMap<u32, HashMap<String, String>> {
    let mut peers: BTreeMap<u32, HashMap<String, String>> = BTreeMap::new();
    for (k, v) in rows {
        let Some((peer, key)) = k.strip_prefix("peer").and_then(|r| r.split_once(':')) else {
            continue;
        };
        if let Ok(n) = peer.parse() {
            peers.entry(n).or_default().insert(key.into(), v.clone());
        }
    }
    peers
}

/// Per-peer `stats replication` fields exported as `repcached_repl_peer_<name>{peer=...}`.
const PEER_FIELDS: &[Row] = &[
    (
        "records_sent",
        "repcached_repl_peer_records_sent_total",
        C,
        "Records of this node sent to the peer.",
    ),
    (
        "records_applied",
        "repcached_repl_peer_records_applied_total",
        C,
        "Records from the peer applied here.",
    ),
    (
        "records_stale",
        "repcached_repl_peer_records_stale_total",
        C,
        "Records from the peer older than what this node held (not applied).",
    ),
    (
        "records_rejected",
        "repcached_repl_peer_records_rejected_total",
        C,
        "Records from the peer refused (invalid, oversized, clock too far ahead).",
    ),
    (
        "bytes_sent",
        "repcached_repl_peer_sent_bytes_total",
        C,
        "Replication bytes (plaintext frames) sent to the peer.",
    ),
    (
        "bytes_received",
        "repcached_repl_peer_received_bytes_total",
        C,
        "Replication bytes (plaintext frames) received from the peer.",
    ),
    (
        "lag_records",
        "repcached_repl_peer_lag_records",
        G,
        "Records of this node the peer has not acknowledged yet.",
    ),
    (
        "lag_ms",
        "repcached_repl_peer_lag_milliseconds",
        G,
        "Age of the oldest record of this node the peer has not acknowledged.",
    ),
    (
        "acked_offset",
        "repcached_repl_peer_acked_offset",
        G,
        "Offset of this node's stream the peer has acknowledged.",
    ),
    (
        "applied_offset",
        "repcached_repl_peer_applied_offset",
        G,
        "Offset of the peer's stream applied here.",
    ),
    (
        "full_syncs",
        "repcached_repl_peer_full_syncs_total",
        C,
        "Full resyncs received from the peer.",
    ),
    (
        "partial_syncs",
        "repcached_repl_peer_partial_syncs_total",
        C,
        "Partial (backlog) resyncs received from the peer.",
    ),
    (
        "full_syncs_sent",
        "repcached_repl_peer_full_syncs_sent_total",
        C,
        "Full resyncs sent to the peer.",
    ),
    (
        "partial_syncs_sent",
        "repcached_repl_peer_partial_syncs_sent_total",
        C,
        "Partial (backlog) resyncs sent to the peer.",
    ),
    (
        "auth_failures",
        "repcached_repl_peer_auth_failures_total",
        C,
        "Connections to or from the peer that failed the secure handshake.",
    ),
    (
        "clock_rejected",
        "repcached_repl_peer_clock_rejected_total",
        C,
        "Records from the peer refused for a clock too far ahead.",
    ),
    (
        "max_clock_skew_ms",
        "repcached_repl_peer_max_clock_skew_milliseconds",
        G,
        "Most the peer's clock was seen ahead of ours (negative: behind).",
    ),
    (
        "clock_offset_ms",
        "repcached_repl_peer_clock_offset_milliseconds",
        G,
        "The peer's clock minus ours at its latest heartbeat (state clock_skew beyond the bound).",
    ),
];

/// Node-wide replication fields of `stats` exported as `repcached_repl_<name>`.
const REPL_GENERAL: &[Row] = &[
    (
        "repl_peers",
        "repcached_repl_peers",
        G,
        "Peers known (configured or connected).",
    ),
    (
        "repl_peers_connected",
        "repcached_repl_peers_connected",
        G,
        "Peers with a live link (syncing or synced).",
    ),
    (
        "repl_peers_synced",
        "repcached_repl_peers_synced",
        G,
        "Peers in state synced.",
    ),
    (
        "repl_peers_clock_skew",
        "repcached_repl_peers_clock_skew",
        G,
        "Peers in state clock_skew (clock beyond --repl-max-clock-skew: stream held).",
    ),
    (
        "repl_backlog_size",
        "repcached_repl_backlog_size_bytes",
        G,
        "Capacity of the replication backlog.",
    ),
    (
        "repl_backlog_bytes",
        "repcached_repl_backlog_bytes",
        G,
        "Bytes held in the replication backlog.",
    ),
    (
        "repl_backlog_first",
        "repcached_repl_backlog_first_offset",
        G,
        "Oldest offset still in the backlog.",
    ),
    (
        "repl_backlog_last",
        "repcached_repl_backlog_last_offset",
        G,
        "Newest offset written to the backlog.",
    ),
    (
        "repl_records_sent",
        "repcached_repl_records_sent_total",
        C,
        "Records sent to all peers.",
    ),
    (
        "repl_records_applied",
        "repcached_repl_records_applied_total",
        C,
        "Records from peers applied.",
    ),
    (
        "repl_records_stale",
        "repcached_repl_records_stale_total",
        C,
        "Records from peers not applied (older).",
    ),
    (
        "repl_records_rejected",
        "repcached_repl_records_rejected_total",
        C,
        "Records from peers refused.",
    ),
    (
        "repl_pending_deltas_refused",
        "repcached_repl_pending_deltas_refused_total",
        C,
        "Increments from peers refused because those waiting for their write filled -m/16.",
    ),
    (
        "repl_bytes_sent",
        "repcached_repl_sent_bytes_total",
        C,
        "Replication bytes sent to all peers.",
    ),
    (
        "repl_bytes_received",
        "repcached_repl_received_bytes_total",
        C,
        "Replication bytes received from all peers.",
    ),
    (
        "repl_full_syncs",
        "repcached_repl_full_syncs_total",
        C,
        "Full resyncs received.",
    ),
    (
        "repl_partial_syncs",
        "repcached_repl_partial_syncs_total",
        C,
        "Partial resyncs received.",
    ),
    (
        "repl_auth_failures",
        "repcached_repl_auth_failures_total",
        C,
        "Replication connections that failed the secure handshake.",
    ),
    (
        "repl_handshakes_refused",
        "repcached_repl_handshakes_refused_total",
        C,
        "Unauthenticated replication connections evicted for the handshake budget.",
    ),
    (
        "repl_handshake_timeouts",
        "repcached_repl_handshake_timeouts_total",
        C,
        "Replication handshakes that timed out (or sent no preamble within 1 s).",
    ),
    (
        "repl_clock_rejected",
        "repcached_repl_clock_rejected_total",
        C,
        "Records refused for a clock too far ahead.",
    ),
    (
        "repl_protocol_errors",
        "repcached_repl_protocol_errors_total",
        C,
        "Links closed for a malformed frame.",
    ),
    (
        "repl_identity_refused",
        "repcached_repl_identity_refused_total",
        C,
        "Links refused: the certificate names no peer, or HELLO claimed another peer's node id.",
    ),
    (
        "repl_origin_rejected",
        "repcached_repl_origin_rejected_total",
        C,
        "Records refused: their origin is not the node the link speaks for.",
    ),
    (
        "repl_max_clock_skew_ms",
        "repcached_repl_max_clock_skew_allowed_milliseconds",
        G,
        "Clock skew allowed for a peer's versions (--repl-max-clock-skew).",
    ),
    (
        "repl_tombstones",
        "repcached_repl_tombstones",
        G,
        "Tombstones kept for deleted keys.",
    ),
    (
        "repl_tombstone_bytes",
        "repcached_repl_tombstone_bytes",
        G,
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

fn replication_families(shared: &Shared, state: &MetricsState, f: &mut Families) {
    let Some(repl) = shared.replicator() else {
        return;
    };
    let general: HashMap<String, String> = repl.general_stats().into_iter().collect();
    for (key, name, kind, help) in REPL_GENERAL {
        if let Some(v) = num(&general, key) {
            f.add(name, help, kind, &[], v);
        }
    }
    for p in peer_rows(&repl.replication_stats()).values() {
        let Some(addr) = p.get("addr") else { continue };
        let node = p.get("node_id").map(String::as_str).unwrap_or("0");
        let now = p.get("state").map(String::as_str).unwrap_or("");
        for st in PEER_STATES {
            f.add(
                "repcached_repl_peer_state",
                "Link state of each peer: 1 for the state it is in.",
                G,
                &[("peer", addr), ("node_id", node), ("state", st)],
                if st == now { 1.0 } else { 0.0 },
            );
        }
        for (key, name, kind, help) in PEER_FIELDS {
            if let Some(v) = num(p, key) {
                f.add(name, help, kind, &[("peer", addr)], v);
            }
        }
    }
    const H: &str = "repcached_repl_peer_lag_sampled_milliseconds";
    const H_HELP: &str = "Each peer's lag_ms, sampled once a second.";
    for (peer, h) in state.lag.lock().iter() {
        let mut cumulative = 0;
        for (i, n) in h.buckets.iter().enumerate() {
            cumulative += n;
            let le = LAG_BUCKETS_MS
                .get(i)
                .map(|b| b.to_string())
                .unwrap_or_else(|| "+Inf".into());
            let l = [("peer", peer.as_str()), ("le", le.as_str())];
            f.add_sample(
                H,
                &format!("{H}_bucket"),
                H_HELP,
                "histogram",
                &l,
                cumulative as f64,
            );
        }
        let l = [("peer", peer.as_str())];
        f.add_sample(
            H,
            &format!("{H}_sum"),
            H_HELP,
            "histogram",
            &l,
            h.sum as f64,
        );
        f.add_sample(
            H,
            &format!("{H}_count"),
            H_HELP,
            "histogram",
            &l,
            h.count as f64,
        );
    }
}

/// Every family, as the endpoint serves them.
pub fn families(shared: &Shared, state: &MetricsState) -> Families {
    let mut p = ParsedStats::default();
    for group in [StatsGroup::General, StatsGroup::Slabs, StatsGroup::Items] {
        parse_stats(&stats_text(shared, group), &mut p);
    }
    // No TEMP LRU here (memcached reports number_temp only with temp_lru on; its value
    // would be 0): served so that every exporter name is there.
    for u in p.items.values_mut() {
        u.entry("number_temp".into()).or_insert_with(|| "0".into());
    }
    let settings = parse_settings(&stats_text(shared, StatsGroup::Settings));
    let mut f = Families::default();
    exporter_families(&p, &settings, &mut f);
    replication_families(shared, state, &mut f);
    f
}

fn render(shared: &Shared, state: &MetricsState) -> String {
    let mut out = String::with_capacity(16 * 1024);
    families(shared, state).write(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_gomemcache() {
        let mut p = ParsedStats::default();
        parse_stats(
            "STAT pid 1\r\nSTAT version 1.6.18\r\nSTAT 1:chunk_size 96\r\nSTAT items:1:number 3\r\n\
             STAT repl_last_error a b\r\nEND\r\n",
            &mut p,
        );
        assert_eq!(p.stats["pid"], "1");
        assert_eq!(p.slabs[&1]["chunk_size"], "96");
        assert_eq!(p.items[&1]["number"], "3");
        assert!(!p.stats.contains_key("repl_last_error"));
    }

    #[test]
    fn histogram_buckets() {
        let mut h = LagHistogram::default();
        for ms in [0, 1, 2, 100, 20_000] {
            h.observe(ms);
        }
        assert_eq!(h.buckets[0], 2);
        assert_eq!(h.buckets[1], 1);
        assert_eq!(h.buckets[5], 1);
        assert_eq!(h.buckets[LAG_BUCKETS_MS.len()], 1);
        assert_eq!((h.count, h.sum), (5, 20_103));
    }

    #[test]
    fn head_end_and_families_text() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\n"), Some(14));
        assert_eq!(head_end(b"GET / HTTP/1.0\n\n"), Some(14));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n"), None);
        let mut f = Families::default();
        f.add("a_total", "help", C, &[("x", "q\"uote")], 2.0);
        f.add("a_total", "help", C, &[("x", "y")], 3.0);
        let mut s = String::new();
        f.write(&mut s);
        assert_eq!(
            s,
            "# HELP a_total help\n# TYPE a_total counter\na_total{x=\"q\\\"uote\"} 2\na_total{x=\"y\"} 3\n"
        );
    }
}
