//! `mixed`: values of mixed sizes into a small -m, then a check that the newest writes survived.
//!
//! `--writers` threads (one connection each) set `--keys` distinct keys between them, each value
//! of a size drawn uniformly from `--min`..=`--max` bytes, one set at a time (a set counts once
//! its STORED arrived). Every acknowledged set takes a number from one global counter; at the end
//! the `--check` sets with the highest numbers (the last acknowledged, over all writers) are read
//! back on a fresh connection and compared byte for byte. What a cache must keep is exactly
//! those: memcached evicts the least recently used, and the newest data never is.
//!
//! It prints no memory figure: the caller reads the server's peak RSS (VmHWM in
//! /proc/PID/status) around the run.

use crate::{connect, key, Conn, Opts, Reply, Rng};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Instant;

/// The value bytes of key `i` with length `len`: a window into one random pattern, so that the
/// check can rebuild what was sent without keeping it.
fn value_of(pattern: &[u8], i: u64, len: usize) -> &[u8] {
    let off = (i as usize * 7919) % (pattern.len() - len + 1);
    &pattern[off..off + len]
}

pub fn mixed(o: &Opts) -> Result<String, String> {
    let server = o.required("server")?;
    let keys: u64 = o.num("keys", 2_000_000)?;
    let writers: u64 = o.num("writers", 4)?;
    let min: usize = o.num("min", 10)?;
    let max: usize = o.num("max", 100 * 1024)?;
    let check: usize = o.num("check", 100)?;
    let seed: u64 = o.num("seed", 1)?;
    let prefix = o.str("prefix", "k");
    if min > max || max == 0 || writers == 0 {
        return Err("need 0 < --min <= --max and --writers > 0".into());
    }
    let mut rng = Rng(seed | 1);
    let pattern: Arc<Vec<u8>> = Arc::new((0..max * 2).map(|_| rng.next() as u8).collect());
    let seq = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    // (ack number, key index, value length) of every writer's last `check` acknowledged sets.
    let acked: Arc<Mutex<Vec<(u64, u64, usize)>>> = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let mut handles = Vec::new();
    for w in 0..writers {
        let (server, prefix, pattern) = (server.clone(), prefix.clone(), pattern.clone());
        let (seq, errors, bytes, acked) =
            (seq.clone(), errors.clone(), bytes.clone(), acked.clone());
        handles.push(thread::spawn(move || -> Result<(), String> {
            let mut conn = Conn::new(connect(&server)?);
            let mut rng = Rng((seed ^ (w + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1);
            let mut mine: std::collections::VecDeque<(u64, u64, usize)> = Default::default();
            let mut req = Vec::with_capacity(max + 64);
            let mut i = w;
            while i < keys {
                let len = min + (rng.next() % (max - min + 1) as u64) as usize;
                req.clear();
                write!(req, "set {} 0 0 {}\r\n", key(&prefix, i), len)
                    .map_err(|e| e.to_string())?;
                req.extend_from_slice(value_of(&pattern, i, len));
                req.extend_from_slice(b"\r\n");
                conn.stream.write_all(&req).map_err(|e| e.to_string())?;
                match conn.read_reply()? {
                    Reply::Line => {
                        let n = seq.fetch_add(1, Ordering::Relaxed);
                        bytes.fetch_add(len as u64, Ordering::Relaxed);
                        if mine.len() == check {
                            mine.pop_front();
                        }
                        mine.push_back((n, i, len));
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                i += writers;
            }
            acked.lock().map_err(|_| "poisoned")?.extend(mine);
            Ok(())
        }));
    }
    for h in handles {
        h.join().map_err(|_| "writer panicked")??;
    }
    let secs = start.elapsed().as_secs_f64();
    let mut last = std::mem::take(&mut *acked.lock().map_err(|_| "poisoned")?);
    last.sort_unstable_by_key(|a| std::cmp::Reverse(a.0));
    last.truncate(check);
    let mut conn = Conn::new(connect(&server)?);
    let mut readable = 0;
    for &(_, i, len) in &last {
        conn.stream
            .write_all(format!("get {}\r\n", key(&prefix, i)).as_bytes())
            .map_err(|e| e.to_string())?;
        if let (Reply::Values(1), reply) = conn.read_reply_bytes()? {
            if value_block(&reply) == Some(value_of(&pattern, i, len)) {
                readable += 1;
            }
        }
    }
    Ok(format!(
        "keys={keys} writers={writers} min={min} max={max} secs={secs:.3} sets_per_sec={:.0} \
         value_bytes={} errors={} last_checked={} last_readable={readable}",
        keys as f64 / secs,
        bytes.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
        last.len()
    ))
}

/// The data block of the first VALUE of a get reply.
fn value_block(reply: &[u8]) -> Option<&[u8]> {
    let nl = reply.windows(2).position(|w| w == b"\r\n")?;
    let len: usize = std::str::from_utf8(&reply[..nl])
        .ok()?
        .split(' ')
        .nth(3)?
        .parse()
        .ok()?;
    reply.get(nl + 2..nl + 2 + len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_windows_fit_the_pattern() {
        let pattern: Vec<u8> = (0..200u32).map(|b| b as u8).collect();
        for i in 0..50 {
            for len in [1, 10, 100] {
                assert_eq!(value_of(&pattern, i, len).len(), len);
            }
        }
        assert_eq!(
            value_block(b"VALUE k 0 3\r\nabc\r\nEND\r\n"),
            Some(&b"abc"[..])
        );
    }
}
