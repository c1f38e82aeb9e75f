//! The server's striped counters (`Stats`: one [`StripedCounter`] per memcached `stats` field
//! that the server counts itself; the store counts its own). `server::stats` reads them into the
//! typed snapshot that `stats`, binary `stat` and `/metrics` render.
//!
//! Every request bumps two or three counters. One shared atomic per counter would bounce its
//! cache line between the worker threads on every request (memcached keeps per-thread stats for
//! the same reason), so each counter is striped: a thread adds to its own cache line, `stats`
//! sums the stripes. Counters are relaxed: they are only read by `stats` and need no ordering.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Stripes per counter; threads beyond this share stripes (still correct, just less spread).
const STRIPES: usize = 8;

#[repr(align(64))]
#[derive(Debug, Default)]
struct Stripe(AtomicU64);

/// A counter that threads update on their own cache line.
#[derive(Debug, Default)]
pub struct StripedCounter {
    stripes: [Stripe; STRIPES],
}

fn stripe_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    INDEX.with(|i| {
        if i.get() == usize::MAX {
            i.set(NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES);
        }
        i.get()
    })
}

impl StripedCounter {
    #[inline]
    pub fn add(&self, n: u64) {
        self.stripes[stripe_index()]
            .0
            .fetch_add(n, Ordering::Relaxed);
    }

    /// For gauges (curr_connections): stripes may go "negative" alone, the sum stays right.
    #[inline]
    pub fn sub(&self, n: u64) {
        self.stripes[stripe_index()]
            .0
            .fetch_sub(n, Ordering::Relaxed);
    }

    /// The sum over all stripes (the `ordering` argument mirrors `AtomicU64::load`).
    pub fn load(&self, _ordering: Ordering) -> u64 {
        self.stripes
            .iter()
            .fold(0u64, |sum, s| sum.wrapping_add(s.0.load(Ordering::Relaxed)))
    }

    fn reset(&self) {
        for s in &self.stripes {
            s.0.store(0, Ordering::Relaxed);
        }
    }
}

macro_rules! counters {
    ($($name:ident),* $(,)?) => {
        /// Per-command and connection counters; field names are memcached's stat names.
        #[derive(Debug, Default)]
        pub struct Stats {
            $(pub $name: StripedCounter,)*
        }

        impl Stats {
            /// (name, value) for every counter, in memcached's order.
            pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($name), self.$name.load(Ordering::Relaxed)),)*]
            }

            /// `stats reset`: zero the resettable counters (memcached keeps connection gauges).
            pub fn reset(&self) {
                $(if !Self::is_gauge(stringify!($name)) {
                    self.$name.reset();
                })*
            }
        }
    };
}

counters!(
    curr_connections,
    total_connections,
    rejected_connections,
    cmd_get,
    cmd_set,
    cmd_flush,
    cmd_touch,
    cmd_meta,
    get_hits,
    get_misses,
    delete_misses,
    delete_hits,
    incr_misses,
    incr_hits,
    decr_misses,
    decr_hits,
    cas_misses,
    cas_hits,
    cas_badval,
    touch_hits,
    touch_misses,
    store_too_large,
    store_no_memory,
    bytes_read,
    bytes_written,
    conn_yields,
    idle_kicks,
    response_obj_oom,
    auth_cmds,
    auth_errors,
    auth_conns_closed,
    auth_throttled,
    auth_sources_blocked,
);

impl Stats {
    fn is_gauge(name: &str) -> bool {
        name == "curr_connections"
    }

    /// Adds one to a counter.
    #[inline]
    pub fn incr(counter: &StripedCounter) {
        counter.add(1);
    }

    #[inline]
    pub fn add(counter: &StripedCounter, n: u64) {
        counter.add(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripes_sum_across_threads_and_reset_keeps_gauges() {
        let stats = std::sync::Arc::new(Stats::default());
        let handles: Vec<_> = (0..12)
            .map(|_| {
                let stats = stats.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        Stats::incr(&stats.cmd_get);
                    }
                    Stats::incr(&stats.curr_connections);
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        stats.curr_connections.sub(2);
        assert_eq!(stats.cmd_get.load(Ordering::Relaxed), 12_000);
        assert_eq!(stats.curr_connections.load(Ordering::Relaxed), 10);
        stats.reset();
        assert_eq!(stats.cmd_get.load(Ordering::Relaxed), 0);
        assert_eq!(stats.curr_connections.load(Ordering::Relaxed), 10);
    }
}
