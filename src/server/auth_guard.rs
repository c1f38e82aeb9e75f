//! What a failed login costs a client (-Y ascii authentication and -S SASL alike), on two
//! scales:
//!
//! - a connection: after [`MAX_AUTH_FAILURES`] failed attempts it is closed, so guessing needs a
//!   new TCP connection (and, with -Z, a TLS handshake) every few guesses;
//! - a source (an IPv4 address or an IPv6 /64, see [`Source`]): after
//!   [`SOURCE_FAILURE_BUDGET`] failures within [`SOURCE_WINDOW`] the source is blocked, first for
//!   [`FIRST_BLOCK`], then twice as long at each new block up to [`MAX_BLOCK`]. While it is
//!   blocked its login attempts are not checked: each is answered as a failure and its
//!   connection closed (`auth_throttled`), even a re-login on a connection that is logged in.
//!   A new connection is cheap: without this an outside review tried some 22,000 passwords a
//!   second from one client on loopback. A success from one source changes
//!   nothing for another, nor for its own budget (one known account must not reset the
//!   guessing of another's password).
//!
//! Memory is bounded: at most [`MAX_SOURCES`] sources are remembered. When the table is full,
//! sources with nothing in effect are forgotten first, then the least recently seen eighth; so an
//! attacker with more addresses than that can have its own blocks forgotten early, but it gets
//! [`SOURCE_FAILURE_BUDGET`] guesses per address anyway.
//!
//! Every failure is logged with the client's address for fail2ban-style tools, rate-limited per
//! source ([`LOG_LINES_PER_SOURCE`] a second) so that one address's flood cannot hide another's
//! lines, and [`LOG_LINES_PER_SECOND`] server-wide so that a flood from many addresses cannot
//! fill the disk (the line of a block passes its source's limit). The line is stable, for a
//! filter to match (`<HOST>` in fail2ban's terms):
//! `auth failure: client <ip> port <port> protocol <ascii|sasl>`, followed by
//! `, source blocked for <n> s` on the failure that blocks the source, `, throttled` on an
//! attempt refused unchecked, `, connection closed` when the connection closes, and the count
//! of this source's lines suppressed since its last one. Leaf module: it knows the counters and the
//! session, not the server.

use super::counters::Stats;
use super::session::Session;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Failed authentication attempts a connection may make; the last one is answered and the
/// connection closed. memcached has no limit.
pub const MAX_AUTH_FAILURES: u32 = 3;

/// Failed attempts a source may make within [`SOURCE_WINDOW`] before it is blocked.
pub const SOURCE_FAILURE_BUDGET: u32 = 10;

/// The window over which a source's failures are counted.
pub const SOURCE_WINDOW: Duration = Duration::from_secs(60);

/// A source's first block; each further block doubles, up to [`MAX_BLOCK`].
pub const FIRST_BLOCK: Duration = Duration::from_secs(1);

/// The longest block.
pub const MAX_BLOCK: Duration = Duration::from_secs(60);

/// A source without a failure for this long starts again from [`FIRST_BLOCK`].
pub const SOURCE_FORGET: Duration = Duration::from_secs(600);

/// Sources remembered at most (each a few dozen bytes).
pub const MAX_SOURCES: usize = 4096;

/// Failure lines logged per second and source at most (the rest are counted and reported in
/// that source's next line).
pub const LOG_LINES_PER_SOURCE: u32 = 5;

/// Failure lines logged per second server-wide at most.
pub const LOG_LINES_PER_SECOND: u32 = 100;

/// Which login failed, for the log.
#[derive(Debug, Clone, Copy)]
pub enum Mechanism {
    /// -Y: memcached's ascii authentication.
    Ascii,
    /// -S: SASL PLAIN over the binary protocol.
    Sasl,
}

impl Mechanism {
    fn name(self) -> &'static str {
        match self {
            Mechanism::Ascii => "ascii",
            Mechanism::Sasl => "sasl",
        }
    }
}

/// Where failures are counted: an address for IPv4, a /64 for IPv6 (one host usually holds a
/// whole /64), and one source for every client whose address is not IP (none can log in
/// today: -s, Unix sockets, is refused, and -S and -Y refuse UDP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    V4([u8; 4]),
    V6Net(u64),
    Local,
}

impl Source {
    pub fn of(addr: Option<SocketAddr>) -> Source {
        match addr.map(|a| a.ip()) {
            Some(IpAddr::V4(ip)) => Source::V4(ip.octets()),
            Some(IpAddr::V6(ip)) => match ip.to_ipv4_mapped() {
                Some(v4) => Source::V4(v4.octets()),
                None => Source::V6Net((u128::from(ip) >> 64) as u64),
            },
            None => Source::Local,
        }
    }
}

/// What is remembered of one source.
struct Entry {
    /// Start of the window its `failures` are counted in.
    window_start: Instant,
    failures: u32,
    /// Until when its attempts are refused unchecked.
    blocked_until: Option<Instant>,
    /// Its last block's length (zero: never blocked, or forgotten).
    last_block: Duration,
    last_failure: Instant,
    last_seen: Instant,
    /// The log's second (since the guard's epoch), lines logged in it, lines suppressed since
    /// the last one logged.
    log_second: u64,
    log_lines: u32,
    log_suppressed: u64,
}

impl Entry {
    fn new(now: Instant) -> Entry {
        Entry {
            window_start: now,
            failures: 0,
            blocked_until: None,
            last_block: Duration::ZERO,
            last_failure: now,
            last_seen: now,
            log_second: u64::MAX,
            log_lines: 0,
            log_suppressed: 0,
        }
    }

    /// Nothing in effect: forgetting it changes nothing a client could notice.
    fn idle(&self, now: Instant) -> bool {
        self.blocked_until.is_none_or(|t| t <= now)
            && now.duration_since(self.last_failure) >= SOURCE_WINDOW
            && now.duration_since(self.last_seen) >= Duration::from_secs(1)
    }
}

struct Inner {
    sources: HashMap<Source, Entry>,
    /// The server-wide log limit: (second, lines logged in it).
    log_second: u64,
    log_lines: u32,
}

/// The per-source failure budget and the failure log's rate limits (one per server).
pub struct Guard {
    epoch: Instant,
    inner: Mutex<Inner>,
}

impl Default for Guard {
    fn default() -> Guard {
        Guard {
            epoch: Instant::now(),
            inner: Mutex::new(Inner {
                sources: HashMap::new(),
                log_second: u64::MAX,
                log_lines: 0,
            }),
        }
    }
}

impl Inner {
    /// `src`'s entry, made room for when the table is full.
    fn entry(&mut self, src: Source, now: Instant) -> &mut Entry {
        if !self.sources.contains_key(&src) && self.sources.len() >= MAX_SOURCES {
            self.sources.retain(|_, e| !e.idle(now));
            if self.sources.len() >= MAX_SOURCES {
                // The least recently seen eighth: O(n) once per n/8 new sources.
                let mut seen: Vec<Instant> = self.sources.values().map(|e| e.last_seen).collect();
                let nth = seen.len() / 8;
                let (_, cutoff, _) = seen.select_nth_unstable(nth);
                let cutoff = *cutoff;
                self.sources.retain(|_, e| e.last_seen > cutoff);
            }
        }
        self.sources.entry(src).or_insert_with(|| Entry::new(now))
    }

    /// Whether `src` is blocked now (without remembering a source that is not).
    fn blocked(&mut self, src: Source, now: Instant) -> bool {
        match self.sources.get_mut(&src) {
            Some(e) if e.blocked_until.is_some_and(|t| now < t) => {
                e.last_seen = now;
                true
            }
            _ => false,
        }
    }

    /// Counts a failure of `src`; the block it starts, if it does.
    fn fail(&mut self, src: Source, now: Instant) -> Option<Duration> {
        let e = self.entry(src, now);
        if now.duration_since(e.last_failure) >= SOURCE_FORGET {
            e.last_block = Duration::ZERO;
        }
        if now.duration_since(e.window_start) >= SOURCE_WINDOW {
            e.window_start = now;
            e.failures = 0;
        }
        e.last_seen = now;
        e.last_failure = now;
        e.failures = e.failures.saturating_add(1);
        if e.failures < SOURCE_FAILURE_BUDGET {
            return None;
        }
        let block = if e.last_block.is_zero() {
            FIRST_BLOCK
        } else {
            (e.last_block * 2).min(MAX_BLOCK)
        };
        e.last_block = block;
        e.blocked_until = Some(now + block);
        e.window_start = now;
        e.failures = 0;
        Some(block)
    }

    /// Whether a line about `src` may be logged in `second`, and how many of its lines were
    /// suppressed before it. A block's line passes the source's limit (there is at most one a
    /// second per source), not the server-wide one.
    fn admit_log(&mut self, src: Source, now: Instant, second: u64, block: bool) -> Option<u64> {
        if self.log_second != second {
            self.log_second = second;
            self.log_lines = 0;
        }
        let global_full = self.log_lines >= LOG_LINES_PER_SECOND;
        let e = self.entry(src, now);
        if e.log_second != second {
            e.log_second = second;
            e.log_lines = 0;
        }
        if global_full || (e.log_lines >= LOG_LINES_PER_SOURCE && !block) {
            e.log_suppressed = e.log_suppressed.saturating_add(1);
            return None;
        }
        e.log_lines = e.log_lines.saturating_add(1);
        let suppressed = std::mem::take(&mut e.log_suppressed);
        self.log_lines += 1;
        Some(suppressed)
    }
}

impl Guard {
    fn second(&self, now: Instant) -> u64 {
        now.duration_since(self.epoch).as_secs()
    }

    /// Sources remembered now (for tests and `stats`).
    pub fn sources(&self) -> usize {
        self.inner.lock().sources.len()
    }
}

/// The client's address in `session` (`tcp:IP:PORT`; anything else is not an IP client).
fn peer_addr(session: &Session) -> Option<SocketAddr> {
    session.peer.strip_prefix("tcp:")?.parse().ok()
}

/// Called before a login attempt of `session`'s client is checked: whether its source is
/// blocked. If so the attempt is counted (`auth_throttled`) and logged, and the caller answers
/// it as a failure without checking it, then closes the connection.
pub fn throttled(guard: &Guard, stats: &Stats, session: &Session, mech: Mechanism) -> bool {
    let addr = peer_addr(session);
    let src = Source::of(addr);
    let now = Instant::now();
    let second = guard.second(now);
    let logged = {
        let mut inner = guard.inner.lock();
        if !inner.blocked(src, now) {
            return false;
        }
        inner.admit_log(src, now, second, false)
    };
    Stats::incr(&stats.auth_throttled);
    Stats::incr(&stats.auth_conns_closed);
    if let Some(suppressed) = logged {
        log(addr, mech, ", throttled", true, suppressed);
    }
    true
}

/// Records one failed attempt of `session`'s client: counts it for the connection and for its
/// source, logs it (rate-limited) and says whether the connection must now close (the caller
/// answers the attempt first).
pub fn failed(guard: &Guard, stats: &Stats, session: &mut Session, mech: Mechanism) -> bool {
    let addr = peer_addr(session);
    let src = Source::of(addr);
    let now = Instant::now();
    let second = guard.second(now);
    let (blocked_for, logged) = {
        let mut inner = guard.inner.lock();
        let blocked_for = inner.fail(src, now);
        let logged = inner.admit_log(src, now, second, blocked_for.is_some());
        (blocked_for, logged)
    };
    session.auth_failures = session.auth_failures.saturating_add(1);
    // A source just blocked loses this connection too: its next attempt would be refused.
    let close = session.auth_failures >= MAX_AUTH_FAILURES || blocked_for.is_some();
    if close {
        Stats::incr(&stats.auth_conns_closed);
    }
    if blocked_for.is_some() {
        Stats::incr(&stats.auth_sources_blocked);
    }
    if let Some(suppressed) = logged {
        let what = blocked_for
            .map(|d| format!(", source blocked for {} s", d.as_secs()))
            .unwrap_or_default();
        log(addr, mech, &what, close, suppressed);
    }
    close
}

fn log(addr: Option<SocketAddr>, mech: Mechanism, what: &str, close: bool, suppressed: u64) {
    let (ip, port) = match addr {
        Some(a) => (a.ip().to_string(), a.port().to_string()),
        None => ("unknown".to_string(), "0".to_string()),
    };
    let closed = if close { ", connection closed" } else { "" };
    let more = if suppressed > 0 {
        format!(
            " ({suppressed} earlier failure lines from this client suppressed by the rate limit)"
        )
    } else {
        String::new()
    };
    tracing::warn!(
        "auth failure: client {ip} port {port} protocol {}{what}{closed}{more}",
        mech.name()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inner() -> Inner {
        Guard::default().inner.into_inner()
    }

    const A: Source = Source::V4([192, 0, 2, 7]);
    const B: Source = Source::V4([192, 0, 2, 8]);

    #[test]
    fn ipv6_sources_are_counted_per_64_and_mapped_ipv4_as_ipv4() {
        let of = |s: &str| Source::of(Some(s.parse().unwrap()));
        assert_eq!(of("[2001:db8:1:2::1]:5"), of("[2001:db8:1:2:ffff::9]:6"));
        assert_ne!(of("[2001:db8:1:2::1]:5"), of("[2001:db8:1:3::1]:5"));
        assert_eq!(of("[::ffff:192.0.2.7]:5"), A);
        assert_eq!(of("192.0.2.7:9"), A);
        assert_eq!(Source::of(None), Source::Local);
    }

    #[test]
    fn a_source_is_blocked_after_its_budget_with_a_growing_backoff() {
        let mut g = inner();
        let mut now = Instant::now();
        let mut blocks = Vec::new();
        for _ in 0..9 {
            for _ in 1..SOURCE_FAILURE_BUDGET {
                assert_eq!(g.fail(A, now), None);
                assert!(!g.blocked(A, now));
            }
            let block = g.fail(A, now).expect("the budget is spent");
            assert!(g.blocked(A, now));
            // Another source is not affected, nor by its success (which is not recorded).
            assert!(!g.blocked(B, now));
            assert!(g.blocked(A, now + block - Duration::from_millis(1)));
            now += block;
            assert!(!g.blocked(A, now));
            blocks.push(block.as_secs());
        }
        assert_eq!(blocks, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        // Quiet for SOURCE_FORGET: the backoff starts again.
        now += SOURCE_FORGET;
        for _ in 1..SOURCE_FAILURE_BUDGET {
            assert_eq!(g.fail(A, now), None);
        }
        assert_eq!(g.fail(A, now), Some(FIRST_BLOCK));
    }

    #[test]
    fn failures_spread_over_more_than_the_window_do_not_block() {
        let mut g = inner();
        let mut now = Instant::now();
        for _ in 0..100 {
            assert_eq!(g.fail(A, now), None);
            // The fixed window: at most SOURCE_FAILURE_BUDGET - 1 failures fall in any one.
            now += SOURCE_WINDOW / (SOURCE_FAILURE_BUDGET - 2);
        }
    }

    #[test]
    fn the_source_table_is_bounded_and_keeps_an_active_blocked_source() {
        let mut g = inner();
        let now = Instant::now();
        for _ in 0..SOURCE_FAILURE_BUDGET {
            g.fail(A, now);
        }
        assert!(g.blocked(A, now));
        for i in 0..(3 * MAX_SOURCES as u64) {
            let t = now + Duration::from_micros(i + 1);
            g.fail(Source::V6Net(i), t);
            // The attacker's own address keeps trying, so it stays among the recently seen.
            assert!(g.blocked(A, t));
            assert!(g.sources.len() <= MAX_SOURCES);
        }
        // Sources with nothing in effect go first, all of them, when the table is full.
        let later = now + SOURCE_FORGET;
        let mut i = 10 * MAX_SOURCES as u64;
        loop {
            let before = g.sources.len();
            g.fail(Source::V6Net(i), later);
            i += 1;
            if g.sources.len() < before {
                break;
            }
        }
        // Only the sources failing at `later` are left.
        assert_eq!(g.sources.len() as u64, i - 10 * MAX_SOURCES as u64);
    }

    #[test]
    fn the_log_limit_is_per_source() {
        let mut g = inner();
        let now = Instant::now();
        for _ in 0..LOG_LINES_PER_SOURCE {
            assert_eq!(g.admit_log(A, now, 7, false), Some(0));
        }
        assert_eq!(g.admit_log(A, now, 7, false), None);
        assert_eq!(g.admit_log(A, now, 7, false), None);
        // A's flood does not hide B.
        assert_eq!(g.admit_log(B, now, 7, false), Some(0));
        // A block's line passes A's limit.
        assert_eq!(g.admit_log(A, now, 7, true), Some(2));
        assert_eq!(g.admit_log(A, now, 7, false), None);
        // A new second: A's suppressed lines are reported once.
        assert_eq!(g.admit_log(A, now, 8, false), Some(1));
        assert_eq!(g.admit_log(A, now, 8, false), Some(0));
    }

    #[test]
    fn the_log_limit_is_bounded_server_wide() {
        let mut g = inner();
        let now = Instant::now();
        let admitted = (0..1000u64)
            .filter(|&i| g.admit_log(Source::V6Net(i), now, 3, false).is_some())
            .count();
        assert_eq!(admitted, LOG_LINES_PER_SECOND as usize);
        // The source whose line was dropped hears of it in its next line.
        assert_eq!(g.admit_log(Source::V6Net(999), now, 4, false), Some(1));
    }

    #[test]
    fn the_third_failure_closes() {
        let guard = Guard::default();
        let stats = Stats::default();
        let mut session = Session {
            peer: "tcp:127.0.0.1:4000".into(),
            ..Session::default()
        };
        assert!(!failed(&guard, &stats, &mut session, Mechanism::Ascii));
        assert!(!failed(&guard, &stats, &mut session, Mechanism::Ascii));
        assert!(failed(&guard, &stats, &mut session, Mechanism::Sasl));
        assert_eq!(
            stats
                .auth_conns_closed
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        assert!(!throttled(&guard, &stats, &session, Mechanism::Ascii));
    }

    #[test]
    fn a_blocked_source_is_throttled_and_counted() {
        let guard = Guard::default();
        let stats = Stats::default();
        let load = |c: &crate::server::counters::StripedCounter| {
            c.load(std::sync::atomic::Ordering::Relaxed)
        };
        let session = |port: u16| Session {
            peer: format!("tcp:127.0.0.2:{port}"),
            ..Session::default()
        };
        let mut port = 1000;
        let mut closes = 0;
        while load(&stats.auth_sources_blocked) == 0 {
            port += 1;
            let mut s = session(port);
            while !failed(&guard, &stats, &mut s, Mechanism::Ascii) {}
            closes += 1;
        }
        assert_eq!(port - 1000, 4, "ten failures: 3 + 3 + 3 + 1");
        assert!(throttled(&guard, &stats, &session(1), Mechanism::Sasl));
        assert_eq!(load(&stats.auth_throttled), 1);
        assert_eq!(load(&stats.auth_conns_closed), closes + 1);
        let other = Session {
            peer: "tcp:127.0.0.3:1".into(),
            ..Session::default()
        };
        assert!(!throttled(&guard, &stats, &other, Mechanism::Ascii));
    }
}
