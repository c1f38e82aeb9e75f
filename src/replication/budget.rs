//! What unauthenticated parties may hold on the replication listener, and how often their
//! failures reach the log.
//!
//! A connection counts against the handshake budget from accept until it has authenticated (or
//! failed); authenticated links have their own cap (`shared::MAX_LINKS`). Budgets are per *source*:
//! an IPv4 address, or an IPv6 /64 (one host usually holds a whole /64, so counting single IPv6
//! addresses would give it billions of budgets). Sources that are not configured peers share
//! `UNAUTH_TOTAL` slots and have `UNAUTH_PER_SOURCE` each; the exact address of a configured peer
//! has its own `UNAUTH_PER_SOURCE` slots outside the total.
//!
//! A newcomer is never refused: when its source's slots (or the shared total) are full, the
//! pending handshake that has made the least progress gives way, the oldest first. Progress is
//! whether a whole preamble has arrived (`Permit::spoke`; garbage is handed to the secure channel,
//! which refuses it at once): a real dialer writes its preamble in one piece the moment its
//! connect completes, so a socket that has not sent one within `FIRST_BYTE_TIMEOUT` is closed,
//! and a silent (or half-speaking) socket is always evicted before one that has spoken. So a
//! flood of silent sockets, from anywhere (the peer's own address included), only ever evicts
//! itself, and a real peer (a listen-only node's peers are not configured) links within a round
//! trip or two. What this cannot tell apart: an attacker that sends whole preambles too (they
//! are public) and opens new connections from the peer's own source faster than the peer
//! finishes its handshake (a few round trips); that needs the peer configured with `-x` or a
//! network that keeps such parties away.

use super::secure::{PREAMBLE_LEN, PREAMBLE_MAGIC};
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// Pending handshakes from sources that are not configured peers, in total.
pub const UNAUTH_TOTAL: usize = 64;
/// Pending handshakes from any one source (IPv4 address, IPv6 /64, configured peer address).
pub const UNAUTH_PER_SOURCE: usize = 8;
/// A dialer sends its preamble as soon as it is connected: a socket that has not sent a whole
/// one within this long is closed.
pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(1);
/// One log line per address per this long for a repeated authentication failure.
const LOG_EVERY: Duration = Duration::from_secs(60);
const LOG_MEMORY: usize = 4096;

/// Where a pending handshake comes from, as the budget counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// The exact address of a configured peer: slots outside the shared total.
    Peer(IpAddr),
    /// Any other source: an IPv4 address or an IPv6 /64.
    Other(IpAddr),
}

impl Source {
    fn of(ip: IpAddr, from_peer: bool) -> Source {
        if from_peer {
            return Source::Peer(ip);
        }
        match ip {
            IpAddr::V4(_) => Source::Other(ip),
            IpAddr::V6(a) => {
                let prefix = u128::from(a) & !((1u128 << 64) - 1);
                Source::Other(IpAddr::V6(Ipv6Addr::from(prefix)))
            }
        }
    }
}

struct Pending {
    id: u64,
    source: Source,
    /// Its first bytes have arrived.
    spoke: bool,
    cancel: Arc<Notify>,
}

#[derive(Default)]
struct Counts {
    /// Every pending handshake, oldest first. Short: at most `UNAUTH_TOTAL` plus
    /// `UNAUTH_PER_SOURCE` per configured peer address, so scanning it is cheap.
    pending: VecDeque<Pending>,
    next_id: u64,
}

#[derive(Default)]
pub struct HandshakeBudget {
    counts: Mutex<Counts>,
}

/// Held by one connection until it authenticates or closes.
pub struct Permit {
    budget: Arc<HandshakeBudget>,
    id: u64,
    /// Notified when a newer handshake takes this slot.
    pub cancel: Arc<Notify>,
}

/// Why an accepted socket never got to its handshake.
#[derive(Debug, PartialEq, Eq)]
pub enum Silent {
    /// Nothing arrived within `FIRST_BYTE_TIMEOUT`.
    Timeout,
    /// Closed (or failed) before sending a byte.
    Closed,
    /// A newer connection took its slot.
    Evicted,
}

impl HandshakeBudget {
    /// A slot for a new connection from `ip` (`from_peer`: the address of a configured peer),
    /// and whether an older pending handshake was evicted to make room for it.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr, from_peer: bool) -> (Permit, bool) {
        let source = Source::of(ip, from_peer);
        let mut c = self.counts.lock();
        let same = c.pending.iter().filter(|p| p.source == source).count();
        let victim = if same >= UNAUTH_PER_SOURCE {
            Self::least_progress(&c, |p| p.source == source)
        } else if matches!(source, Source::Other(_))
            && c.pending
                .iter()
                .filter(|p| matches!(p.source, Source::Other(_)))
                .count()
                >= UNAUTH_TOTAL
        {
            Self::least_progress(&c, |p| matches!(p.source, Source::Other(_)))
        } else {
            None
        };
        let evicted = match victim.and_then(|i| c.pending.remove(i)) {
            Some(old) => {
                old.cancel.notify_one();
                true
            }
            None => false,
        };
        c.next_id += 1;
        let id = c.next_id;
        let cancel = Arc::new(Notify::new());
        c.pending.push_back(Pending {
            id,
            source,
            spoke: false,
            cancel: cancel.clone(),
        });
        let permit = Permit {
            budget: self.clone(),
            id,
            cancel,
        };
        (permit, evicted)
    }

    /// The index of the pending handshake among `candidates` to evict: a silent one before
    /// one that has spoken, the oldest first.
    fn least_progress(c: &Counts, candidates: impl Fn(&Pending) -> bool) -> Option<usize> {
        let mut first_spoken = None;
        for (i, p) in c.pending.iter().enumerate() {
            if !candidates(p) {
                continue;
            }
            if !p.spoke {
                return Some(i);
            }
            first_spoken.get_or_insert(i);
        }
        first_spoken
    }

    /// Pending unauthenticated handshakes (for stats).
    pub fn pending(&self) -> usize {
        self.counts.lock().pending.len()
    }
}

impl Permit {
    /// The connection's first bytes have arrived: it now outranks every silent one.
    pub fn spoke(&self) {
        let mut c = self.budget.counts.lock();
        if let Some(p) = c.pending.iter_mut().find(|p| p.id == self.id) {
            p.spoke = true;
        }
    }

    /// Waits until `stream` holds a whole preamble (looked at, not consumed: the secure channel
    /// reads it), then marks this permit as having spoken. Garbage is handed on at once (the
    /// channel refuses it); a partial preamble counts as silence, since a dialer sends all of it
    /// in one write. Fails after `FIRST_BYTE_TIMEOUT`, on close, or when a newer connection
    /// evicts this one first.
    pub async fn wait_first_bytes(&self, stream: &TcpStream) -> Result<(), Silent> {
        let preamble = async {
            let mut buf = [0u8; PREAMBLE_LEN];
            loop {
                let n = stream.peek(&mut buf).await.map_err(|_| Silent::Closed)?;
                if n == 0 {
                    return Err(Silent::Closed);
                }
                if n >= PREAMBLE_LEN || !PREAMBLE_MAGIC.starts_with(&buf[..n.min(5)]) {
                    return Ok(());
                }
                // The rest of a split preamble: peek returns at once while bytes are
                // buffered, so wait a little between looks.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::select! {
            r = tokio::time::timeout(FIRST_BYTE_TIMEOUT, preamble) => match r {
                Err(_) => Err(Silent::Timeout),
                Ok(Ok(())) => {
                    self.spoke();
                    Ok(())
                }
                Ok(Err(e)) => Err(e),
            },
            _ = self.cancel.notified() => Err(Silent::Evicted),
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        // An evicted permit was already taken out of the list.
        let mut c = self.budget.counts.lock();
        if let Some(pos) = c.pending.iter().position(|p| p.id == self.id) {
            c.pending.remove(pos);
        }
    }
}

/// Remembers when each address last had a failure logged.
#[derive(Default)]
pub struct FailureLog {
    last: Mutex<HashMap<IpAddr, Instant>>,
}

impl FailureLog {
    /// Whether a failure from `ip` should be logged now (at most once per minute per address).
    pub fn should_log(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        let mut last = self.last.lock();
        if last.len() >= LOG_MEMORY {
            last.retain(|_, t| now.duration_since(*t) < LOG_EVERY);
            if last.len() >= LOG_MEMORY {
                // Failures from this many addresses at once: one line each minute is still
                // too many, stay quiet until the table drains (the counter still counts).
                return false;
            }
        }
        match last.get(&ip) {
            Some(t) if now.duration_since(*t) < LOG_EVERY => false,
            _ => {
                last.insert(ip, now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn acquire(b: &Arc<HandshakeBudget>, a: &str, peer: bool) -> (Permit, bool) {
        b.acquire(ip(a), peer)
    }

    fn evicted(p: &Permit) -> bool {
        // An evicted permit's Notify holds a stored wake-up.
        let n = p.cancel.notified();
        futures_poll(n)
    }

    fn futures_poll<F: std::future::Future>(f: F) -> bool {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut f = std::pin::pin!(f);
        f.as_mut().poll(&mut cx).is_ready()
    }

    #[test]
    fn a_full_source_evicts_its_oldest_silent_handshake_never_one_that_spoke() {
        let b = Arc::new(HandshakeBudget::default());
        // The real peer's connection, from the same address as the flood, has spoken.
        let (peer, _) = acquire(&b, "10.0.0.1", false);
        peer.spoke();
        let mut flood = Vec::new();
        for i in 0..500 {
            let (p, ev) = acquire(&b, "10.0.0.1", false);
            assert_eq!(ev, i >= UNAUTH_PER_SOURCE - 1, "connection {i}");
            flood.push(p);
        }
        assert_eq!(b.pending(), UNAUTH_PER_SOURCE);
        assert!(!evicted(&peer), "the handshake that spoke was evicted");
        // The oldest silent ones went first; the newest are still pending.
        assert!(evicted(&flood[0]));
        assert!(!evicted(&flood[499]));
        // When all have spoken, the oldest gives way (the newcomer gets its chance).
        for p in &flood[500 - (UNAUTH_PER_SOURCE - 1)..] {
            p.spoke();
        }
        let (_late, ev) = acquire(&b, "10.0.0.1", false);
        assert!(ev);
        assert!(evicted(&peer));
        drop(flood);
        drop(peer);
        assert_eq!(b.pending(), 1);
    }

    #[test]
    fn the_shared_total_evicts_silent_handshakes_from_any_source() {
        let b = Arc::new(HandshakeBudget::default());
        let (peer, _) = acquire(&b, "10.0.0.1", false);
        peer.spoke();
        let mut held = Vec::new();
        for i in 0..16 * 500 {
            let a = format!("10.1.0.{}", 1 + i % 16);
            held.push(acquire(&b, &a, false).0);
        }
        assert_eq!(b.pending(), UNAUTH_TOTAL);
        assert!(!evicted(&peer));
        // A configured peer's address has its own slots outside the total.
        let (p, ev) = acquire(&b, "192.168.1.1", true);
        assert!(!ev);
        assert_eq!(b.pending(), UNAUTH_TOTAL + 1);
        drop(p);
        drop(held);
        drop(peer);
        assert_eq!(b.pending(), 0);
    }

    #[test]
    fn ipv6_sources_are_counted_per_64() {
        let b = Arc::new(HandshakeBudget::default());
        let mut held = Vec::new();
        for i in 0..UNAUTH_PER_SOURCE {
            let (p, ev) = acquire(&b, &format!("2001:db8:1:2::{:x}", i + 1), false);
            assert!(!ev);
            held.push(p);
        }
        // Another address of the same /64 is the same source: it evicts.
        let (_p, ev) = acquire(&b, "2001:db8:1:2:ffff::1", false);
        assert!(ev);
        // Another /64 is not.
        let (_q, ev) = acquire(&b, "2001:db8:1:3::1", false);
        assert!(!ev);
    }

    #[test]
    fn a_peer_address_evicts_its_oldest_pending_handshake() {
        let b = Arc::new(HandshakeBudget::default());
        let held: Vec<_> = (0..UNAUTH_PER_SOURCE)
            .map(|_| acquire(&b, "192.168.1.1", true).0)
            .collect();
        let (newest, ev) = acquire(&b, "192.168.1.1", true);
        assert!(ev);
        assert!(evicted(&held[0]));
        assert_eq!(b.pending(), UNAUTH_PER_SOURCE);
        // The evicted one was taken out already; dropping it later does not double-count.
        drop(held);
        assert_eq!(b.pending(), 1);
        drop(newest);
        assert_eq!(b.pending(), 0);
    }

    #[test]
    fn failures_are_logged_once_per_address_per_minute() {
        let l = FailureLog::default();
        assert!(l.should_log(ip("10.0.0.1")));
        assert!(!l.should_log(ip("10.0.0.1")));
        assert!(l.should_log(ip("10.0.0.2")));
    }
}
