//! The histogram of each peer's replication lag (`lag_ms` of `stats replication`), sampled
//! once a second by the endpoint's sampler task, exported as
//! `repcached_repl_peer_lag_sampled_milliseconds`.

use super::prometheus::{Families, HISTOGRAM};
use parking_lot::Mutex;
use std::collections::BTreeMap;

/// Upper bounds (ms) of the lag histogram's buckets.
pub const LAG_BUCKETS_MS: [u64; 12] = [1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000];

/// Lag samples in [`LAG_BUCKETS_MS`] (+Inf last), their sum and count.
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

/// One histogram per peer, by address.
#[derive(Default)]
pub struct Lag {
    peers: Mutex<BTreeMap<String, LagHistogram>>,
}

impl Lag {
    /// One sample for the peer at `addr`.
    pub fn observe(&self, addr: &str, ms: u64) {
        let mut peers = self.peers.lock();
        match peers.get_mut(addr) {
            Some(h) => h.observe(ms),
            None => peers.entry(addr.to_string()).or_default().observe(ms),
        }
    }

    pub fn families(&self, f: &mut Families) {
        const H: &str = "repcached_repl_peer_lag_sampled_milliseconds";
        const H_HELP: &str = "Each peer's lag_ms, sampled once a second.";
        for (peer, h) in self.peers.lock().iter() {
            let mut cumulative = 0;
            for (i, n) in h.buckets.iter().enumerate() {
                cumulative += n;
                let le = LAG_BUCKETS_MS
                    .get(i)
                    .map(|b| b.to_string())
                    .unwrap_or_else(|| "+Inf".into());
                let l = [("peer", peer.as_str()), ("le", le.as_str())];
                let series = format!("{H}_bucket");
                f.add_sample(H, &series, H_HELP, HISTOGRAM, &l, cumulative as f64);
            }
            let l = [("peer", peer.as_str())];
            let sum = h.sum as f64;
            f.add_sample(H, &format!("{H}_sum"), H_HELP, HISTOGRAM, &l, sum);
            let count = h.count as f64;
            f.add_sample(H, &format!("{H}_count"), H_HELP, HISTOGRAM, &l, count);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
