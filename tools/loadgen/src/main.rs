//! `loadgen`: the small memcached text-protocol load generator behind scripts/bench, for what
//! memcaslap cannot do. memcaslap keeps exactly one request in flight per connection (its state
//! machine goes write -> read -> write), so it cannot pipeline; and it has no bulk loader, no
//! replication-lag probe and no stats reader. It is a std-only workspace member (tools/loadgen) on
//! purpose: it builds in seconds, shares no code with the server it measures, and adds nothing to
//! the server's dependency graph. scripts/bench-lib.sh builds it with
//! `cargo build --release -p loadgen` (target/release/loadgen).
//!
//! Modes (every mode prints one `key=value ...` line on stdout, errors go to stderr, exit 1):
//!   pipe  --server H:P [--threads 2] [--conns 32] [--depth 16] [--set-ratio 0.9] [--keys 100000]
//!         [--value-size 100] [--duration 10] [--rate 0] [--pace round|conn]
//!         Each connection sends `depth` requests in one write, then reads the `depth` replies.
//!         `--rate` caps the total ops/s (0 = as fast as possible). `--pace conn` serves one
//!         connection at a time (write its batch, read its replies, then wait for the rate), so
//!         a rate-limited load is smooth; the default `round` writes to all of a thread's
//!         connections before reading, which is fastest but bursty under `--rate`.
//!   load  --server H:P [--count 1000000] [--value-size 100] [--conns 4] [--prefix k] [--start 0]
//!         `set ... noreply` for keys prefix+index, then a `version` round trip per connection so
//!         that every set has been processed when the mode returns.
//!   lag   --a H:P --b H:P [--samples 2000] [--interval-us 500] [--timeout-ms 5000]
//!         For each sample: set a fresh key on A, then poll `get` on B until it is visible.
//!   probe --server H:P [--keys 1000] [--interval-us 1000] [--duration 60] [--stop-file PATH]
//!         A latency probe: one connection, one `get` of an existing key at a time, every
//!         interval, until the duration ends or PATH exists; prints latency percentiles. Used to
//!         compare client latency on an idle node with the latency while a peer resyncs from it.
//!   seq   --server H:P --cmd get|set|mget [--count 20000] [--keys 1000] [--value-size 100]
//!         [--multi 10]
//!         A fixed count of requests on one connection, one in flight at a time: the short,
//!         repeatable workload the callgrind profile (scripts/profile) measures per operation.
//!         `mget` sends `get` with `--multi` keys per request (count = requests).
//!   stat  --server H:P [--group replication] --name curr_items
//!         Prints the value of one `stats [group]` line (`value=` then nothing if absent).
//!   stats --server H:P [--group replication]   Prints the raw stats reply (exit 1 on ERROR).
//!   mixedfill --server H:P [--keys 2000000] [--writers 4] [--min 10] [--max 102400]
//!         [--duration 60] [--check 100] [--depth 4]
//!         Mixed-size fill, then the last acknowledged sets read back (see mixedfill.rs).
//!   zipf  --server H:P [--keys 1000000] [--exponent 0.99] [--warmup 1000000] [--ops 2000000]
//!         [--value-size 100] [--depth 16] [--seed 99]
//!         Cache-aside hit ratio on a seeded Zipf trace (see zipf.rs).
//!
//! Keys are the prefix followed by a zero-padded index, 15 bytes with the default prefix `k`.

mod mixedfill;
mod zipf;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Key length with the default one-byte prefix: 1 + 14 digits = 15 bytes.
const KEY_DIGITS: usize = 14;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(mode) = args.next() else {
        eprintln!("usage: loadgen pipe|load|lag|stat|stats --option value ...");
        return ExitCode::FAILURE;
    };
    let opts = match Opts::parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match mode.as_str() {
        "pipe" => pipe(&opts),
        "load" => load(&opts),
        "lag" => lag(&opts),
        "probe" => probe(&opts),
        "seq" => seq(&opts),
        "stat" => stat(&opts),
        "stats" => raw_stats(&opts),
        "mixedfill" => mixedfill::mixedfill(&opts),
        "zipf" => zipf::zipf(&opts),
        other => Err(format!("unknown mode {other}")),
    };
    match result {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("loadgen {mode}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--name value` pairs; every option takes a value.
struct Opts(HashMap<String, String>);

impl Opts {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Self, String> {
        let mut map = HashMap::new();
        while let Some(flag) = args.next() {
            let name = flag
                .strip_prefix("--")
                .ok_or_else(|| format!("expected --option, got {flag}"))?;
            let value = args
                .next()
                .ok_or_else(|| format!("--{name} needs a value"))?;
            map.insert(name.to_string(), value);
        }
        Ok(Opts(map))
    }

    fn str(&self, name: &str, default: &str) -> String {
        self.0
            .get(name)
            .cloned()
            .unwrap_or_else(|| default.to_string())
    }

    fn required(&self, name: &str) -> Result<String, String> {
        self.0
            .get(name)
            .cloned()
            .ok_or_else(|| format!("--{name} is required"))
    }

    fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, String> {
        match self.0.get(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| format!("--{name}: bad number {v}")),
        }
    }
}

fn connect(addr: &str) -> Result<TcpStream, String> {
    let s = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    Ok(s)
}

fn key(prefix: &str, i: u64) -> String {
    format!("{prefix}{i:0KEY_DIGITS$}")
}

/// xorshift64*: cheap, good enough to spread keys and pick set vs get.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// What one complete reply was.
#[derive(Debug, PartialEq)]
enum Reply {
    /// A get reply: how many VALUE blocks preceded END.
    Values(u64),
    /// STORED, NOT_STORED, VERSION ..., and the like.
    Line,
    /// ERROR, CLIENT_ERROR ..., SERVER_ERROR ...
    Error,
}

/// Parses one reply at the start of `buf`: zero or more VALUE blocks then one line. Returns the
/// reply and the bytes it used, or None when more bytes are needed.
fn parse_reply(buf: &[u8]) -> Option<(Reply, usize)> {
    let mut pos = 0;
    let mut values = 0u64;
    loop {
        let rest = &buf[pos..];
        let nl = rest.windows(2).position(|w| w == b"\r\n")?;
        let line = &rest[..nl];
        if let Some(header) = line.strip_prefix(b"VALUE ") {
            let len: usize = std::str::from_utf8(header)
                .ok()
                .and_then(|h| h.split(' ').nth(2))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let block = nl + 2 + len + 2;
            if rest.len() < block {
                return None;
            }
            pos += block;
            values += 1;
            continue;
        }
        pos += nl + 2;
        let reply = if line == b"END" {
            Reply::Values(values)
        } else if line.starts_with(b"ERROR")
            || line.starts_with(b"CLIENT_ERROR")
            || line.starts_with(b"SERVER_ERROR")
        {
            Reply::Error
        } else {
            Reply::Line
        };
        return Some((reply, pos));
    }
}

/// A connection with a read buffer, reading whole replies.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
}

impl Conn {
    fn new(stream: TcpStream) -> Self {
        Conn {
            stream,
            buf: Vec::with_capacity(1 << 16),
            start: 0,
        }
    }

    fn read_reply(&mut self) -> Result<Reply, String> {
        loop {
            if let Some((reply, used)) = parse_reply(&self.buf[self.start..]) {
                self.consume(used);
                return Ok(reply);
            }
            self.read_more()?;
        }
    }

    fn consume(&mut self, used: usize) {
        self.start += used;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }

    fn read_more(&mut self) -> Result<(), String> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let old = self.buf.len();
        self.buf.resize(old + (1 << 16), 0);
        let n = self
            .stream
            .read(&mut self.buf[old..])
            .map_err(|e| e.to_string())?;
        self.buf.truncate(old + n);
        if n == 0 {
            return Err("server closed the connection".into());
        }
        Ok(())
    }
}

#[derive(Default)]
struct Counters {
    ops: AtomicU64,
    gets: AtomicU64,
    hits: AtomicU64,
    errors: AtomicU64,
}

fn pipe(o: &Opts) -> Result<String, String> {
    let server = o.required("server")?;
    let threads: usize = o.num("threads", 2)?;
    let conns: usize = o.num("conns", 32)?;
    let depth: usize = o.num("depth", 16)?;
    let set_ratio: f64 = o.num("set-ratio", 0.9)?;
    let keys: u64 = o.num("keys", 100_000)?;
    let value_size: usize = o.num("value-size", 100)?;
    let duration: f64 = o.num("duration", 10.0)?;
    let rate: f64 = o.num("rate", 0.0)?;
    let pace_conn = match o.str("pace", "round").as_str() {
        "round" => false,
        "conn" => true,
        other => return Err(format!("--pace {other}: expected round or conn")),
    };
    let prefix = o.str("prefix", "k");
    if threads == 0 || conns < threads || depth == 0 || keys == 0 {
        return Err("need threads >= 1, conns >= threads, depth >= 1, keys >= 1".into());
    }
    let counters = Arc::new(Counters::default());
    let value = vec![b'x'; value_size];
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(duration);
    let mut handles = Vec::new();
    for t in 0..threads {
        // Spread the connections as evenly as the division allows.
        let mine = conns / threads + usize::from(t < conns % threads);
        let mut streams = Vec::new();
        for _ in 0..mine {
            streams.push(Conn::new(connect(&server)?));
        }
        let counters = counters.clone();
        let value = value.clone();
        let prefix = prefix.clone();
        let thread_rate = rate / threads as f64;
        handles.push(thread::spawn(move || -> Result<(), String> {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (t as u64 + 1).wrapping_mul(0xA24B_AED4));
            let mut out = Vec::with_capacity(depth * (value.len() + 64));
            let mut done = 0u64;
            let began = Instant::now();
            // Connections served per round: all of them (the server sees every connection busy
            // at once), or one at a time with `--pace conn` so that a rate-limited load arrives
            // in bursts of `depth` requests rather than `conns / threads * depth`.
            let group = if pace_conn { 1 } else { streams.len() };
            let mut first = 0;
            while Instant::now() < deadline {
                let range = first..(first + group).min(streams.len());
                first = if range.end == streams.len() {
                    0
                } else {
                    range.end
                };
                let mut gets_sent = 0u64;
                for conn in streams[range.clone()].iter_mut() {
                    out.clear();
                    for _ in 0..depth {
                        let k = key(&prefix, rng.next() % keys);
                        if rng.unit() < set_ratio {
                            out.extend_from_slice(
                                format!("set {k} 0 0 {}\r\n", value.len()).as_bytes(),
                            );
                            out.extend_from_slice(&value);
                            out.extend_from_slice(b"\r\n");
                        } else {
                            out.extend_from_slice(format!("get {k}\r\n").as_bytes());
                            gets_sent += 1;
                        }
                    }
                    conn.stream.write_all(&out).map_err(|e| e.to_string())?;
                }
                for conn in streams[range.clone()].iter_mut() {
                    for _ in 0..depth {
                        match conn.read_reply()? {
                            Reply::Values(n) => {
                                counters.hits.fetch_add(n, Ordering::Relaxed);
                            }
                            Reply::Line => {}
                            Reply::Error => {
                                counters.errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
                let batch = (range.len() * depth) as u64;
                counters.ops.fetch_add(batch, Ordering::Relaxed);
                counters.gets.fetch_add(gets_sent, Ordering::Relaxed);
                done += batch;
                if thread_rate > 0.0 {
                    let due = Duration::from_secs_f64(done as f64 / thread_rate);
                    let elapsed = began.elapsed();
                    if due > elapsed {
                        thread::sleep(due - elapsed);
                    }
                }
            }
            Ok(())
        }));
    }
    for h in handles {
        h.join().map_err(|_| "worker panicked".to_string())??;
    }
    let secs = start.elapsed().as_secs_f64();
    let ops = counters.ops.load(Ordering::Relaxed);
    Ok(format!(
        "ops={ops} secs={secs:.3} ops_per_sec={:.0} gets={} hits={} errors={}",
        ops as f64 / secs,
        counters.gets.load(Ordering::Relaxed),
        counters.hits.load(Ordering::Relaxed),
        counters.errors.load(Ordering::Relaxed),
    ))
}

fn load(o: &Opts) -> Result<String, String> {
    let server = o.required("server")?;
    let count: u64 = o.num("count", 1_000_000)?;
    let first: u64 = o.num("start", 0)?;
    let value_size: usize = o.num("value-size", 100)?;
    let conns: u64 = o.num("conns", 4)?;
    let prefix = o.str("prefix", "k");
    if conns == 0 {
        return Err("--conns must be >= 1".into());
    }
    let value = vec![b'v'; value_size];
    let start = Instant::now();
    let mut handles = Vec::new();
    for c in 0..conns {
        let lo = first + count * c / conns;
        let hi = first + count * (c + 1) / conns;
        let stream = connect(&server)?;
        let value = value.clone();
        let prefix = prefix.clone();
        handles.push(thread::spawn(move || -> Result<u64, String> {
            // noreply sets get no answer, but a server may still send errors; a reader thread
            // drains them so that neither side can block on a full socket buffer.
            let reader = stream.try_clone().map_err(|e| e.to_string())?;
            let drain = thread::spawn(move || -> Result<u64, String> {
                let mut lines = BufReader::new(reader);
                let mut errors = 0;
                let mut line = String::new();
                loop {
                    line.clear();
                    if lines.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
                        return Err("server closed the connection during load".into());
                    }
                    if line.starts_with("VERSION") {
                        return Ok(errors);
                    }
                    errors += 1;
                }
            });
            let mut stream = stream;
            let mut out = Vec::with_capacity(1 << 20);
            for i in lo..hi {
                out.extend_from_slice(
                    format!("set {} 0 0 {} noreply\r\n", key(&prefix, i), value.len()).as_bytes(),
                );
                out.extend_from_slice(&value);
                out.extend_from_slice(b"\r\n");
                if out.len() >= (1 << 20) - 512 {
                    stream.write_all(&out).map_err(|e| e.to_string())?;
                    out.clear();
                }
            }
            out.extend_from_slice(b"version\r\n");
            stream.write_all(&out).map_err(|e| e.to_string())?;
            drain.join().map_err(|_| "reader panicked".to_string())?
        }));
    }
    let mut errors = 0;
    for h in handles {
        errors += h.join().map_err(|_| "loader panicked".to_string())??;
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(format!(
        "items={count} secs={secs:.3} sets_per_sec={:.0} error_lines={errors}",
        count as f64 / secs
    ))
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let idx = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn lag(o: &Opts) -> Result<String, String> {
    let a = o.required("a")?;
    let b = o.required("b")?;
    let samples: u64 = o.num("samples", 2000)?;
    let interval = Duration::from_micros(o.num("interval-us", 500)?);
    let timeout = Duration::from_millis(o.num("timeout-ms", 5000)?);
    let mut ca = Conn::new(connect(&a)?);
    let mut cb = Conn::new(connect(&b)?);
    // Unique per run so that a previous run's keys never look visible already.
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64 % 1_000_000)
        .unwrap_or(0);
    let mut from_send = Vec::new();
    let mut from_ack = Vec::new();
    let mut timeouts = 0;
    let mut polls = 0u64;
    for i in 0..samples {
        let k = format!("lag{run:06}:{i:08}");
        let t0 = Instant::now();
        ca.stream
            .write_all(format!("set {k} 0 0 8\r\n{i:08}\r\n").as_bytes())
            .map_err(|e| e.to_string())?;
        if ca.read_reply()? != Reply::Line {
            return Err(format!("set {k} on A failed"));
        }
        let acked = Instant::now();
        let get = format!("get {k}\r\n");
        loop {
            cb.stream
                .write_all(get.as_bytes())
                .map_err(|e| e.to_string())?;
            polls += 1;
            if let Reply::Values(n) = cb.read_reply()? {
                if n > 0 {
                    let now = Instant::now();
                    from_send.push((now - t0).as_micros() as u64);
                    from_ack.push((now - acked).as_micros() as u64);
                    break;
                }
            }
            if t0.elapsed() > timeout {
                timeouts += 1;
                break;
            }
        }
        thread::sleep(interval);
    }
    from_send.sort_unstable();
    from_ack.sort_unstable();
    Ok(format!(
        "samples={} timeouts={timeouts} polls={polls} p50_us={} p90_us={} p99_us={} max_us={} \
         ack_p50_us={} ack_p99_us={}",
        from_send.len(),
        percentile(&from_send, 0.50),
        percentile(&from_send, 0.90),
        percentile(&from_send, 0.99),
        from_send.last().copied().unwrap_or(0),
        percentile(&from_ack, 0.50),
        percentile(&from_ack, 0.99),
    ))
}

fn probe(o: &Opts) -> Result<String, String> {
    let server = o.required("server")?;
    let keys: u64 = o.num("keys", 1000)?;
    let interval = Duration::from_micros(o.num("interval-us", 1000)?);
    let duration = Duration::from_secs_f64(o.num("duration", 60.0)?);
    let stop_file = o.str("stop-file", "");
    let prefix = o.str("prefix", "k");
    if keys == 0 {
        return Err("--keys must be >= 1".into());
    }
    let mut conn = Conn::new(connect(&server)?);
    let mut rng = Rng(0x51_7CC1_B727_220A);
    let mut lat = Vec::new();
    let mut misses = 0u64;
    let start = Instant::now();
    while start.elapsed() < duration {
        // Checking for the file costs a stat() per sample, far less than the interval.
        if !stop_file.is_empty() && std::path::Path::new(&stop_file).exists() {
            break;
        }
        let req = format!("get {}\r\n", key(&prefix, rng.next() % keys));
        let t0 = Instant::now();
        conn.stream
            .write_all(req.as_bytes())
            .map_err(|e| e.to_string())?;
        match conn.read_reply()? {
            Reply::Values(n) => misses += u64::from(n == 0),
            _ => return Err("unexpected reply to get".into()),
        }
        lat.push(t0.elapsed().as_micros() as u64);
        thread::sleep(interval);
    }
    lat.sort_unstable();
    Ok(format!(
        "samples={} misses={misses} secs={:.3} p50_us={} p90_us={} p99_us={} p999_us={} max_us={}",
        lat.len(),
        start.elapsed().as_secs_f64(),
        percentile(&lat, 0.50),
        percentile(&lat, 0.90),
        percentile(&lat, 0.99),
        percentile(&lat, 0.999),
        lat.last().copied().unwrap_or(0),
    ))
}

fn seq(o: &Opts) -> Result<String, String> {
    let server = o.required("server")?;
    let cmd = o.required("cmd")?;
    let count: u64 = o.num("count", 20_000)?;
    let keys: u64 = o.num("keys", 1000)?;
    let value_size: usize = o.num("value-size", 100)?;
    let multi: u64 = o.num("multi", 10)?;
    let prefix = o.str("prefix", "k");
    if keys == 0 || multi == 0 {
        return Err("--keys and --multi must be >= 1".into());
    }
    let value = vec![b's'; value_size];
    let mut conn = Conn::new(connect(&server)?);
    let mut out = Vec::with_capacity(value_size + 64);
    let (mut hits, mut errors) = (0u64, 0u64);
    let start = Instant::now();
    for i in 0..count {
        let k = key(&prefix, i % keys);
        out.clear();
        match cmd.as_str() {
            "get" => out.extend_from_slice(format!("get {k}\r\n").as_bytes()),
            "mget" => {
                out.extend_from_slice(b"get");
                for j in 0..multi {
                    out.push(b' ');
                    out.extend_from_slice(key(&prefix, (i * multi + j) % keys).as_bytes());
                }
                out.extend_from_slice(b"\r\n");
            }
            "set" => {
                out.extend_from_slice(format!("set {k} 0 0 {value_size}\r\n").as_bytes());
                out.extend_from_slice(&value);
                out.extend_from_slice(b"\r\n");
            }
            other => return Err(format!("--cmd {other}: expected get, set or mget")),
        }
        conn.stream.write_all(&out).map_err(|e| e.to_string())?;
        match conn.read_reply()? {
            Reply::Values(n) => hits += n,
            Reply::Line => {}
            Reply::Error => errors += 1,
        }
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(format!(
        "ops={count} secs={secs:.3} ops_per_sec={:.0} hits={hits} errors={errors}",
        count as f64 / secs
    ))
}

/// Sends `stats [group]` and returns the STAT lines, or an error if the server refused.
fn fetch_stats(o: &Opts) -> Result<Vec<(String, String)>, String> {
    let server = o.required("server")?;
    let group = o.str("group", "");
    let mut stream = connect(&server)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let cmd = if group.is_empty() {
        "stats\r\n".to_string()
    } else {
        format!("stats {group}\r\n")
    };
    stream
        .write_all(cmd.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut lines = BufReader::new(stream);
    let mut out = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
            return Err("connection closed before END".into());
        }
        let l = line.trim_end();
        if l == "END" {
            return Ok(out);
        }
        if let Some(rest) = l.strip_prefix("STAT ") {
            let (name, value) = rest.split_once(' ').unwrap_or((rest, ""));
            out.push((name.to_string(), value.to_string()));
        } else {
            return Err(format!("stats {group}: {l}"));
        }
    }
}

fn stat(o: &Opts) -> Result<String, String> {
    let name = o.required("name")?;
    let stats = fetch_stats(o)?;
    let value = stats
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
        .unwrap_or_default();
    Ok(format!("value={value}"))
}

fn raw_stats(o: &Opts) -> Result<String, String> {
    let stats = fetch_stats(o)?;
    let mut s = String::new();
    for (n, v) in stats {
        s.push_str(&format!("STAT {n} {v}\n"));
    }
    Ok(s.trim_end().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_replies() {
        assert_eq!(parse_reply(b"STORED\r\n"), Some((Reply::Line, 8)));
        assert_eq!(parse_reply(b"END\r\n"), Some((Reply::Values(0), 5)));
        let get = b"VALUE k 0 3\r\nabc\r\nVALUE j 0 1\r\nz\r\nEND\r\nSTORED\r\n";
        assert_eq!(parse_reply(get), Some((Reply::Values(2), get.len() - 8)));
        assert_eq!(parse_reply(b"VALUE k 0 3\r\nab"), None);
        assert_eq!(
            parse_reply(b"SERVER_ERROR out of memory\r\n").map(|r| r.0),
            Some(Reply::Error)
        );
        assert_eq!(parse_reply(b"STOR"), None);
    }

    #[test]
    fn keys_are_15_bytes() {
        assert_eq!(key("k", 42).len(), 15);
    }
}
