//! What unauthenticated parties may hold on the replication listener, and how often their
//! failures reach the log.
//!
//! A connection counts against the handshake budget from accept until it has authenticated (or
//! failed); authenticated links have their own cap in `mod.rs`. Connections from the addresses
//! of configured peers have their own per-address slots outside the shared total, so a flood from
//! elsewhere can never lock a real peer out; when a peer address's own slots are full (a flood
//! from behind the same address), the oldest pending handshake from it is cancelled instead of
//! refusing the newest, because a real peer finishes its handshake within a round trip or two
//! while an attacker's sockets sit idle.

use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Pending handshakes from addresses that are not configured peers, in total.
pub const UNAUTH_TOTAL: usize = 64;
/// Pending handshakes from any one address.
pub const UNAUTH_PER_IP: usize = 8;
/// One log line per address per this long for a repeated authentication failure.
const LOG_EVERY: Duration = Duration::from_secs(60);
const LOG_MEMORY: usize = 4096;

struct Pending {
    id: u64,
    ip: IpAddr,
    cancel: Arc<Notify>,
}

#[derive(Default)]
struct Counts {
    /// Pending handshakes from non-peer addresses.
    others: usize,
    per_ip: HashMap<IpAddr, usize>,
    /// Handshakes from peer addresses, oldest first (the eviction order).
    peer_queue: VecDeque<Pending>,
    next_id: u64,
}

#[derive(Default)]
pub struct HandshakeBudget {
    counts: Mutex<Counts>,
}

/// Held by one connection until it authenticates or closes.
pub struct Permit {
    budget: Arc<HandshakeBudget>,
    ip: IpAddr,
    id: u64,
    peer: bool,
    /// Notified when a newer handshake from the same peer address takes this slot.
    pub cancel: Arc<Notify>,
}

impl HandshakeBudget {
    /// A slot for a new connection from `ip`, or `None` (refuse it). `from_peer` says whether
    /// `ip` is the address of a configured peer.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr, from_peer: bool) -> Option<Permit> {
        let mut c = self.counts.lock();
        let n = c.per_ip.get(&ip).copied().unwrap_or(0);
        if from_peer {
            if n >= UNAUTH_PER_IP {
                // Make room: the oldest pending handshake from this address gives way.
                if let Some(pos) = c.peer_queue.iter().position(|p| p.ip == ip) {
                    if let Some(old) = c.peer_queue.remove(pos) {
                        old.cancel.notify_one();
                        Self::forget(&mut c, ip);
                    }
                }
            }
        } else if n >= UNAUTH_PER_IP || c.others >= UNAUTH_TOTAL {
            return None;
        }
        c.next_id += 1;
        let id = c.next_id;
        let cancel = Arc::new(Notify::new());
        *c.per_ip.entry(ip).or_insert(0) += 1;
        if from_peer {
            c.peer_queue.push_back(Pending {
                id,
                ip,
                cancel: cancel.clone(),
            });
        } else {
            c.others += 1;
        }
        Some(Permit {
            budget: self.clone(),
            ip,
            id,
            peer: from_peer,
            cancel,
        })
    }

    fn forget(c: &mut Counts, ip: IpAddr) {
        if let Some(n) = c.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                c.per_ip.remove(&ip);
            }
        }
    }

    /// Pending unauthenticated handshakes (for stats).
    pub fn pending(&self) -> usize {
        let c = self.counts.lock();
        c.others + c.peer_queue.len()
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut c = self.budget.counts.lock();
        if self.peer {
            // An evicted permit was already taken out of the queue and the counts.
            if let Some(pos) = c.peer_queue.iter().position(|p| p.id == self.id) {
                c.peer_queue.remove(pos);
                HandshakeBudget::forget(&mut c, self.ip);
            }
        } else {
            c.others -= 1;
            HandshakeBudget::forget(&mut c, self.ip);
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

    #[test]
    fn others_are_capped_per_address_and_in_total() {
        let b = Arc::new(HandshakeBudget::default());
        let mut held = Vec::new();
        for _ in 0..UNAUTH_PER_IP {
            held.push(b.try_acquire(ip("10.0.0.1"), false).unwrap());
        }
        assert!(b.try_acquire(ip("10.0.0.1"), false).is_none());
        for i in 0..UNAUTH_TOTAL - UNAUTH_PER_IP {
            let a = format!("10.0.{}.{}", 1 + i / 4, 2 + i % 4);
            held.push(b.try_acquire(ip(&a), false).unwrap());
        }
        assert!(b.try_acquire(ip("10.9.9.9"), false).is_none(), "total cap");
        // A configured peer's address is not affected by the flood.
        let p = b.try_acquire(ip("192.168.1.1"), true).unwrap();
        assert_eq!(b.pending(), UNAUTH_TOTAL + 1);
        drop(p);
        held.pop();
        assert!(b.try_acquire(ip("10.9.9.9"), false).is_some());
        drop(held);
        assert_eq!(b.pending(), 0);
        assert!(b.counts.lock().per_ip.is_empty());
    }

    #[test]
    fn a_peer_address_evicts_its_oldest_pending_handshake() {
        let b = Arc::new(HandshakeBudget::default());
        let peer = ip("192.168.1.1");
        let held: Vec<_> = (0..UNAUTH_PER_IP)
            .map(|_| b.try_acquire(peer, true).unwrap())
            .collect();
        let newest = b.try_acquire(peer, true).unwrap();
        assert_eq!(b.pending(), UNAUTH_PER_IP);
        // The oldest was told to give way; dropping it later does not double-count.
        drop(held);
        assert_eq!(b.pending(), 1);
        drop(newest);
        assert_eq!(b.pending(), 0);
        assert!(b.counts.lock().per_ip.is_empty());
    }

    #[test]
    fn failures_are_logged_once_per_address_per_minute() {
        let l = FailureLog::default();
        assert!(l.should_log(ip("10.0.0.1")));
        assert!(!l.should_log(ip("10.0.0.1")));
        assert!(l.should_log(ip("10.0.0.2")));
    }
}
