//! Settings an operator changes at run time with memcached's commands (`lru_crawler enable|
//! disable|sleep|tocrawl`, `slabs automove`), read back by `stats settings`, and the request
//! that `lru_crawler crawl` hands to the sweeper.
//!
//! The sweeper is the store's LRU crawler: `lru_crawler disable` stops only what memcached's
//! crawler does for a client (`crawl`, `metadump`); the periodic sweep of expired items and
//! tombstones keeps running, because replication needs the tombstones collected. The sleep,
//! tocrawl and automove values are kept and reported (scripts read them back) but a ring store
//! has no per-class crawl pacing and no slab pages to move: see README, Differences.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use tokio::sync::Notify;

/// memcached 1.6.18's defaults: crawler on, 100 µs sleep, tocrawl 0 (no limit).
pub const LRU_CRAWLER_SLEEP_DEFAULT: u32 = 100;

pub struct Tunables {
    pub lru_crawler: AtomicBool,
    pub lru_crawler_sleep: AtomicU32,
    pub lru_crawler_tocrawl: AtomicU32,
    pub slab_automove: AtomicU32,
    /// f64 bits.
    pub slab_automove_ratio: AtomicU64,
    /// A full sweep asked for by `lru_crawler crawl` is under way (`stats` lru_crawler_running).
    pub crawl_running: AtomicBool,
    /// Wakes the sweeper for a full pass.
    pub crawl_request: Notify,
}

impl Tunables {
    /// memcached's defaults, the crawler on or off as `-o` said.
    pub fn new(lru_crawler: bool) -> Self {
        Tunables {
            lru_crawler: AtomicBool::new(lru_crawler),
            lru_crawler_sleep: AtomicU32::new(LRU_CRAWLER_SLEEP_DEFAULT),
            lru_crawler_tocrawl: AtomicU32::new(0),
            slab_automove: AtomicU32::new(0),
            slab_automove_ratio: AtomicU64::new(0.8f64.to_bits()),
            crawl_running: AtomicBool::new(false),
            crawl_request: Notify::new(),
        }
    }

    /// Asks the sweeper for a full pass now; false when one is already running (memcached:
    /// BUSY).
    pub fn request_crawl(&self) -> bool {
        if self.crawl_running.swap(true, Ordering::SeqCst) {
            return false;
        }
        self.crawl_request.notify_one();
        true
    }

    pub fn automove_ratio(&self) -> f64 {
        f64::from_bits(self.slab_automove_ratio.load(Ordering::Relaxed))
    }
}
