//! Time for the store: the process-wide coarse unix clock ([`unix_now`], ticked by the thread
//! [`start_coarse_clock`] starts) and memcached's expiration rules ([`Expiry`]).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// memcached's REALTIME_MAXDELTA: larger exptimes are absolute unix times.
const RELATIVE_EXPTIME_MAX: i64 = 60 * 60 * 24 * 30;

/// An expiration time after memcached's rules have been applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    Never,
    /// Absolute unix seconds.
    At(u32),
    /// Negative, or an absolute time already past: the item is dead on arrival.
    Expired,
}

impl Expiry {
    /// memcached's realtime(): 0 never, up to 30 days relative, else absolute; negative = expired.
    pub fn from_client(exptime: i64, now: u32) -> Expiry {
        if exptime == 0 {
            Expiry::Never
        } else if exptime < 0 {
            Expiry::Expired
        } else if exptime > RELATIVE_EXPTIME_MAX {
            if exptime <= now as i64 {
                Expiry::Expired
            } else {
                Expiry::At(exptime.min(u32::MAX as i64) as u32)
            }
        } else {
            Expiry::At(now.saturating_add(exptime as u32))
        }
    }

    /// The stored form: absolute seconds, 0 = never; `Expired` becomes 1 (long past).
    pub fn as_abs(self) -> u32 {
        match self {
            Expiry::Never => 0,
            Expiry::At(t) => t,
            Expiry::Expired => 1,
        }
    }

    pub fn from_abs(abs: u32, now: u32) -> Expiry {
        match abs {
            0 => Expiry::Never,
            t if t <= now => Expiry::Expired,
            t => Expiry::At(t),
        }
    }
}

/// Current unix time in seconds.
///
/// Once [`start_coarse_clock`] has run (the server does), this is a load from a value a
/// background thread refreshes ten times a second, like memcached's `current_time`: the store
/// reads the clock for every key, and the system call showed in profiles. Before that (library
/// use, tests) it reads the system clock.
pub fn unix_now() -> u32 {
    match COARSE_NOW.load(Ordering::Relaxed) {
        0 => wall_secs(),
        now => now,
    }
}

static COARSE_NOW: AtomicU32 = AtomicU32::new(0);

fn wall_secs() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}

/// Starts the process-wide clock thread behind [`unix_now`] (idempotent). Call it after any
/// fork (daemonizing): a thread does not survive a fork, and a clock nobody ticks would freeze.
pub fn start_coarse_clock() {
    static START: std::sync::Once = std::sync::Once::new();
    START.call_once(|| {
        COARSE_NOW.store(wall_secs(), Ordering::Relaxed);
        let ticker = std::thread::Builder::new()
            .name("repcached-clock".into())
            .spawn(|| loop {
                std::thread::sleep(std::time::Duration::from_millis(100));
                COARSE_NOW.store(wall_secs(), Ordering::Relaxed);
            });
        if ticker.is_err() {
            // No thread, no cache: fall back to reading the system clock every time.
            COARSE_NOW.store(0, Ordering::Relaxed);
        }
    });
}
