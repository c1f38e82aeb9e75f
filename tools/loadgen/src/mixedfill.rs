//! `mixedfill`: fill a server with values of mixed sizes and check that the newest writes survive.
//!
//! Issue 12's mixed-size memory run: `--writers` connections in parallel set keys `--prefix` +
//! index (each key once, indexes dealt round robin to the writers) with values of a length drawn
//! uniformly from `--min`..=`--max` bytes, `--depth` sets in flight per connection, until
//! `--keys` keys are written or `--duration` seconds have passed. Every STORED reply is
//! timestamped when it is read; afterwards the `--check` most recently acknowledged sets across
//! all writers (one global order by acknowledgement time) are read back on a fresh connection
//! and compared byte for byte. The caller reads the server's peak RSS (VmHWM) itself.
//!
//! A value is a slice of one seeded pseudo-random pool at an offset derived from its key, so the
//! writers copy instead of generating bytes, and a value read back under the wrong key (or cut
//! short) does not compare equal.

use std::io::{BufRead, BufReader, Read, Write};
use std::thread;
use std::time::{Duration, Instant};

use crate::{connect, key, Conn, Opts, Reply, Rng};

/// The pool values are cut from: `--max` plus this many possible start offsets.
const POOL_SLACK: usize = 1 << 20;

/// Length and pool offset of key `i`'s value: a pure function of the key, the seed and the size
/// range, so that the check needs no record of what was sent.
fn value_of(i: u64, seed: u64, min: usize, max: usize) -> (usize, usize) {
    let mut r = Rng((i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed);
    r.next();
    let len = min + (r.next() % (max - min + 1) as u64) as usize;
    let off = (r.next() % POOL_SLACK as u64) as usize;
    (len, off)
}

/// One acknowledged set: when its STORED was read, and the key index.
type Ack = (Instant, u64);

pub fn mixedfill(o: &Opts) -> Result<String, String> {
    let server = o.required("server")?;
    let keys: u64 = o.num("keys", 2_000_000)?;
    let writers: u64 = o.num("writers", 4)?;
    let depth: u64 = o.num("depth", 4)?;
    let min: usize = o.num("min", 10)?;
    let max: usize = o.num("max", 100 * 1024)?;
    let duration = Duration::from_secs_f64(o.num("duration", 60.0)?);
    let check: usize = o.num("check", 100)?;
    let seed: u64 = o.num("seed", 12)?;
    let prefix = o.str("prefix", "m");
    if writers == 0 || depth == 0 || min == 0 || max < min || keys == 0 {
        return Err("need --writers, --depth, --min, --keys >= 1 and --max >= --min".into());
    }
    let mut pool = vec![0u8; max + POOL_SLACK];
    let mut r = Rng(seed | 1);
    for chunk in pool.chunks_mut(8) {
        let v = r.next().to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
    let pool = std::sync::Arc::new(pool);
    let start = Instant::now();
    let deadline = start + duration;
    let mut handles = Vec::new();
    for w in 0..writers {
        let mut conn = Conn::new(connect(&server)?);
        let pool = pool.clone();
        let prefix = prefix.clone();
        handles.push(thread::spawn(
            move || -> Result<(u64, u64, u64, Vec<Ack>), String> {
                // The newest `check` acknowledgements of this writer, oldest first.
                let mut recent: std::collections::VecDeque<Ack> =
                    std::collections::VecDeque::with_capacity(check + 1);
                let (mut acked, mut errors, mut bytes) = (0u64, 0u64, 0u64);
                let mut out = Vec::with_capacity((depth as usize) * (max + 64));
                let mut i = w;
                let mut batch = Vec::with_capacity(depth as usize);
                while i < keys && Instant::now() < deadline {
                    out.clear();
                    batch.clear();
                    while batch.len() < depth as usize && i < keys {
                        let (len, off) = value_of(i, seed, min, max);
                        out.extend_from_slice(
                            format!("set {} 0 0 {len}\r\n", key(&prefix, i)).as_bytes(),
                        );
                        out.extend_from_slice(&pool[off..off + len]);
                        out.extend_from_slice(b"\r\n");
                        bytes += len as u64;
                        batch.push(i);
                        i += writers;
                    }
                    conn.stream.write_all(&out).map_err(|e| e.to_string())?;
                    for &k in &batch {
                        match conn.read_reply()? {
                            Reply::Line => {
                                acked += 1;
                                if check > 0 {
                                    if recent.len() == check {
                                        recent.pop_front();
                                    }
                                    recent.push_back((Instant::now(), k));
                                }
                            }
                            _ => errors += 1,
                        }
                    }
                }
                Ok((bytes, acked, errors, recent.into()))
            },
        ));
    }
    let (mut bytes, mut acked, mut errors, mut all) = (0u64, 0u64, 0u64, Vec::new());
    for h in handles {
        let (b, a, e, recent) = h.join().map_err(|_| "writer panicked".to_string())??;
        bytes += b;
        acked += a;
        errors += e;
        all.extend(recent);
    }
    let secs = start.elapsed().as_secs_f64();
    // The global order: the newest `check` acknowledgements over all writers.
    all.sort_unstable_by_key(|&(t, _)| t);
    let last: Vec<u64> = all.iter().rev().take(check).map(|&(_, k)| k).collect();
    let (mut ok, mut missing, mut wrong) = (0u64, 0u64, 0u64);
    let mut last_bytes = 0u64;
    if !last.is_empty() {
        let stream = connect(&server)?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        let mut rd = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
        let mut wr = stream;
        for &k in &last {
            let (len, off) = value_of(k, seed, min, max);
            last_bytes += len as u64;
            match get_one(&mut wr, &mut rd, &key(&prefix, k))? {
                None => missing += 1,
                Some(v) if v == pool[off..off + len] => ok += 1,
                Some(_) => wrong += 1,
            }
        }
    }
    Ok(format!(
        "written={} acked={acked} errors={errors} secs={secs:.3} sets_per_sec={:.0} \
         value_mb={:.0} last={} last_bytes={last_bytes} last_ok={ok} last_missing={missing} last_wrong={wrong}",
        acked + errors,
        (acked + errors) as f64 / secs,
        bytes as f64 / 1e6,
        last.len(),
    ))
}

/// `get KEY` on a plain connection: the value, or None on a miss.
fn get_one(
    wr: &mut std::net::TcpStream,
    rd: &mut BufReader<std::net::TcpStream>,
    k: &str,
) -> Result<Option<Vec<u8>>, String> {
    wr.write_all(format!("get {k}\r\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    rd.read_line(&mut line).map_err(|e| e.to_string())?;
    if line == "END\r\n" {
        return Ok(None);
    }
    let len: usize = line
        .strip_prefix("VALUE ")
        .and_then(|h| h.split_whitespace().nth(2))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("get {k}: unexpected reply {}", line.trim_end()))?;
    let mut v = vec![0u8; len + 2];
    rd.read_exact(&mut v).map_err(|e| e.to_string())?;
    v.truncate(len);
    line.clear();
    rd.read_line(&mut line).map_err(|e| e.to_string())?;
    if line != "END\r\n" {
        return Err(format!("get {k}: expected END, got {}", line.trim_end()));
    }
    Ok(Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_a_function_of_the_key_within_the_range() {
        for i in 0..1000 {
            let (len, off) = value_of(i, 12, 10, 102_400);
            assert!((10..=102_400).contains(&len));
            assert!(off < POOL_SLACK);
            assert_eq!(value_of(i, 12, 10, 102_400), (len, off));
        }
        assert_ne!(value_of(1, 12, 10, 102_400), value_of(2, 12, 10, 102_400));
        assert_eq!(value_of(5, 12, 7, 7).0, 7);
    }
}
