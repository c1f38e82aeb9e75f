//! `zipf`: the hit rate of a cache-aside client on a seeded, Zipf-distributed key trace.
//!
//! Issue 12's eviction-quality measure: `--keys` K keys ranked by popularity, rank r drawn with
//! probability proportional to 1 / r^`--exponent` (0.99 by default, the usual web-cache skew).
//! Each operation is a `get`; on a miss the client `set`s the key (a `--value-size` value), as a
//! cache-aside application does. `--warmup` operations run first and are not counted, then
//! `--ops` operations are measured. The trace depends only on `--seed`, so two servers run with
//! the same options see the same sequence of gets; only their hits (and so their sets) differ.
//!
//! `--depth` gets are pipelined per round, then the misses of the round are set (pipelined). A
//! key repeated inside one round misses in each of its gets if it was absent at the start of the
//! round; that is the same for every server, and `--depth 1` gives the strict one-at-a-time trace.
//!
//! Rank r is key index r - 1: popular keys are not placed near each other in the server because
//! both servers hash the key text.

use std::io::Write;
use std::time::Instant;

use crate::{connect, key, Conn, Opts, Reply, Rng};

/// Cumulative probabilities of ranks 1..=n under Zipf(s), for sampling by binary search.
fn cdf(n: u64, s: f64) -> Vec<f64> {
    let mut c = Vec::with_capacity(n as usize);
    let mut sum = 0.0;
    for r in 1..=n {
        sum += 1.0 / (r as f64).powf(s);
        c.push(sum);
    }
    for v in &mut c {
        *v /= sum;
    }
    c
}

/// One key index drawn from the distribution whose cumulative table is `c`.
fn draw(c: &[f64], rng: &mut Rng) -> u64 {
    let u = rng.unit();
    c.partition_point(|&p| p < u).min(c.len() - 1) as u64
}

pub fn zipf(o: &Opts) -> Result<String, String> {
    let server = o.required("server")?;
    let keys: u64 = o.num("keys", 1_000_000)?;
    let s: f64 = o.num("exponent", 0.99)?;
    let ops: u64 = o.num("ops", 2_000_000)?;
    let warmup: u64 = o.num("warmup", 1_000_000)?;
    let value_size: usize = o.num("value-size", 100)?;
    let depth: u64 = o.num("depth", 16)?;
    let seed: u64 = o.num("seed", 99)?;
    let prefix = o.str("prefix", "z");
    if keys == 0 || depth == 0 || s <= 0.0 {
        return Err("need --keys >= 1, --depth >= 1, --exponent > 0".into());
    }
    let c = cdf(keys, s);
    let mut rng = Rng(seed | 1);
    let mut conn = Conn::new(connect(&server)?);
    let value = vec![b'z'; value_size];
    let mut out = Vec::with_capacity(depth as usize * (value_size + 64));
    let mut batch = Vec::with_capacity(depth as usize);
    let mut missed = Vec::with_capacity(depth as usize);
    let (mut hits, mut gets, mut sets, mut errors) = (0u64, 0u64, 0u64, 0u64);
    let start = Instant::now();
    let mut measure_start = start;
    let mut done = 0u64;
    while done < warmup + ops {
        if done == warmup {
            measure_start = Instant::now();
        }
        // A round never straddles the end of the warm-up, so the counts are exact.
        let end = if done < warmup { warmup } else { warmup + ops };
        let n = depth.min(end - done);
        out.clear();
        batch.clear();
        for _ in 0..n {
            let k = draw(&c, &mut rng);
            out.extend_from_slice(format!("get {}\r\n", key(&prefix, k)).as_bytes());
            batch.push(k);
        }
        conn.stream.write_all(&out).map_err(|e| e.to_string())?;
        missed.clear();
        for &k in &batch {
            match conn.read_reply()? {
                Reply::Values(0) => missed.push(k),
                Reply::Values(_) => {
                    if done >= warmup {
                        hits += 1;
                    }
                }
                _ => return Err("unexpected reply to get".into()),
            }
        }
        if done >= warmup {
            gets += n;
            sets += missed.len() as u64;
        }
        if !missed.is_empty() {
            out.clear();
            for &k in &missed {
                out.extend_from_slice(
                    format!("set {} 0 0 {value_size}\r\n", key(&prefix, k)).as_bytes(),
                );
                out.extend_from_slice(&value);
                out.extend_from_slice(b"\r\n");
            }
            conn.stream.write_all(&out).map_err(|e| e.to_string())?;
            for _ in &missed {
                if conn.read_reply()? != Reply::Line {
                    errors += 1;
                }
            }
        }
        done += n;
    }
    let secs = measure_start.elapsed().as_secs_f64();
    Ok(format!(
        "keys={keys} exponent={s} warmup={warmup} ops={gets} hits={hits} hit_ratio={:.4} sets={sets} \
         set_errors={errors} secs={secs:.3} total_secs={:.3}",
        hits as f64 / gets.max(1) as f64,
        start.elapsed().as_secs_f64(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_favours_low_ranks() {
        let c = cdf(1000, 0.99);
        assert!((c[999] - 1.0).abs() < 1e-9);
        let mut rng = Rng(7);
        let draws: Vec<u64> = (0..10_000).map(|_| draw(&c, &mut rng)).collect();
        let top10 = draws.iter().filter(|&&k| k < 10).count();
        let bottom10 = draws.iter().filter(|&&k| k >= 990).count();
        assert!(draws.iter().all(|&k| k < 1000));
        // P(rank <= 10) is about 0.39 for n = 1000, s = 0.99; the last ten ranks about 0.002.
        assert!(top10 > 3000 && bottom10 < 100, "{top10} {bottom10}");
    }
}
