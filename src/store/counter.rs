//! PN-counter state of an item that was changed by incr/decr.
//!
//! A counter is the numeric value of its base write (`base`, the full write set/add/... that
//! incr/decr apply on top of) plus, per origin node, that node's contribution: the net change
//! its own incr/decr made (`net`), stamped with a sequence number that grows with every one of
//! its operations (`seq`). Only the origin ever changes its contribution, so replicas merge by
//! keeping, per origin, the contribution with the larger `seq`: merging is commutative,
//! associative and idempotent, and every node that has seen the same operations holds the same
//! state whatever the order, the duplicates, or the mix of records and snapshots that brought
//! them.
//!
//! The value shown is a function of that state alone: with `S = base + sum of net` (exact,
//! 128-bit), a negative `S` shows 0, and a non-negative one shows `S mod 2^64`. memcached's
//! local rules apply to that shown value: a local `incr d` makes the shown value
//! `(shown + d) mod 2^64` and a local `decr d` makes it `shown - min(d, shown)` (the origin
//! records the change it actually made, not the one asked for), so a node on its own answers
//! exactly what memcached would. When concurrent decrements on several nodes together took more
//! than there was, `S` is negative and every node shows 0; the next local `incr d` shows `d`
//! (its contribution first makes up the deficit), and a local `decr` on 0 changes nothing.
//!
//! Items that were never incremented carry no counter at all: the state lives in a side table
//! of the shard (see `Shard::counters`), charged against -m by [`Counter::charge`].
//!
//! Also memcached's reading of a counter's digits ([`parse_counter`]) and the local incr/decr
//! rule (`apply_delta`: incr wraps at 2^64, decr stops at 0).

/// One origin's contribution. `net` is split in two words so the struct stays 8-byte aligned
/// (an i128 field would make it 48 bytes instead of 32).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Contribution {
    pub node: u32,
    /// Number of incr/decr the origin made on this base write (grows by one each time).
    pub seq: u64,
    net_hi: i64,
    net_lo: u64,
}

impl Contribution {
    pub fn new(node: u32, seq: u64, net: i128) -> Contribution {
        Contribution {
            node,
            seq,
            net_hi: (net >> 64) as i64,
            net_lo: net as u64,
        }
    }

    /// The net change (sum of increments minus the decrements actually applied) of this origin.
    pub fn net(&self) -> i128 {
        ((self.net_hi as i128) << 64) | self.net_lo as i128
    }

    /// Whether a contribution received from a peer is in range (see [`MAX_SEQ`]).
    pub fn valid(&self) -> bool {
        self.seq <= MAX_SEQ
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counter {
    /// The numeric value of the base write.
    pub base: u64,
    /// Sorted by node id; a handful of entries (one per node that incremented this write).
    contributions: Vec<Contribution>,
}

/// The largest `seq` a contribution may carry. A node makes one operation per step of its own
/// `seq`, so 2^62 is out of reach (146 years at a billion a second); a peer sending more is
/// refused (frame decode, and again in the store's merge), so that a local `seq + 1` can never
/// wrap. (A wrapped `seq` lost every later local incr on the key: the next contribution looked
/// older than the one held.) A node whose own contribution was handed exactly this value by a
/// peer turns its next incr/decr on the key into a full write (`Entry::arith`), so no node, even
/// one a peer tampered with, ever sends more and breaks its links with honest peers.
pub const MAX_SEQ: u64 = 1 << 62;

/// Bytes charged for a counter's side-table entry (hash slot, Vec header, allocator header).
pub(crate) const COUNTER_OVERHEAD: usize = 64;

impl Counter {
    pub fn new(base: u64) -> Counter {
        Counter {
            base,
            contributions: Vec::new(),
        }
    }

    pub fn contributions(&self) -> &[Contribution] {
        &self.contributions
    }

    /// Whether every contribution is in range (a counter received from a peer).
    pub fn valid(&self) -> bool {
        self.contributions.iter().all(Contribution::valid)
    }

    /// Bytes charged against the memory limit.
    pub fn charge(&self) -> usize {
        COUNTER_OVERHEAD + self.contributions.capacity() * std::mem::size_of::<Contribution>()
    }

    /// `base + sum of contributions`, exact (saturating only past ±2^127).
    pub fn sum(&self) -> i128 {
        self.contributions
            .iter()
            .fold(self.base as i128, |s, c| s.saturating_add(c.net()))
    }

    /// The value every node shows for this state: 0 when negative, else the sum mod 2^64.
    pub fn shown(&self) -> u64 {
        let s = self.sum();
        if s < 0 {
            0
        } else {
            s as u64
        }
    }

    pub fn get(&self, node: u32) -> Option<Contribution> {
        self.contributions
            .binary_search_by_key(&node, |c| c.node)
            .ok()
            .map(|i| self.contributions[i])
    }

    /// A local incr/decr by `node` with memcached's rules on the shown value; returns the new
    /// shown value and the origin's new contribution (what the replication record carries).
    pub fn local(&mut self, node: u32, incr: bool, delta: u64) -> (u64, Contribution) {
        let s = self.sum();
        let shown = self.shown();
        let target = if incr {
            if s < 0 {
                delta as i128
            } else {
                s.saturating_add(delta as i128)
            }
        } else if s < 0 {
            s
        } else {
            s - delta.min(shown) as i128
        };
        // Peers' nets are any i128 and their sum saturates: `target - s` could overflow
        // (an incr on a sum stuck at -2^127), so it saturates too.
        let change = target.saturating_sub(s);
        let mine = self.get(node).unwrap_or(Contribution::new(node, 0, 0));
        // Our own seq is at most MAX_SEQ plus our operations since (peers' are refused above
        // MAX_SEQ), so this never saturates in practice; if it did, the contribution would stop
        // moving rather than wrap to an older-looking one.
        let next = Contribution::new(
            node,
            mine.seq.saturating_add(1),
            mine.net().saturating_add(change),
        );
        self.merge_one(next);
        (self.shown(), next)
    }

    /// Takes `c` if it is newer than what is held for its origin; true if anything changed.
    pub fn merge_one(&mut self, c: Contribution) -> bool {
        match self.contributions.binary_search_by_key(&c.node, |x| x.node) {
            Ok(i) if self.contributions[i].seq < c.seq => {
                self.contributions[i] = c;
                true
            }
            Ok(_) => false,
            Err(i) => {
                self.contributions.insert(i, c);
                true
            }
        }
    }

    /// Merges another replica's state of the same base write; true if anything changed.
    pub fn merge(&mut self, other: &Counter) -> bool {
        let mut changed = false;
        for c in &other.contributions {
            changed |= self.merge_one(*c);
        }
        changed
    }

    /// Rebuilds a counter from decoded parts (snapshot frames); contributions in any order,
    /// duplicates merged.
    pub fn from_parts(base: u64, parts: impl IntoIterator<Item = Contribution>) -> Counter {
        let mut c = Counter::new(base);
        for p in parts {
            c.merge_one(p);
        }
        c
    }
}

/// memcached's safe_strtoull on an item value (a C string: it ends at the first NUL), by the
/// crate's one implementation of memcached's number rules.
pub fn parse_counter(v: &[u8]) -> Option<u64> {
    crate::numbers::safe_strtoull_c_str(v)
}

pub(crate) fn apply_delta(current: u64, incr: bool, delta: u64) -> u64 {
    if incr {
        current.wrapping_add(delta)
    } else {
        current.saturating_sub(delta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_operations_follow_memcached() {
        let mut c = Counter::new(5);
        assert_eq!(c.local(1, false, 10).0, 0, "decr floors at 0");
        assert_eq!(c.local(1, true, 3).0, 3);
        assert_eq!(c.local(1, true, u64::MAX).0, 2, "incr wraps at 2^64");
        assert_eq!(c.local(1, false, 1).0, 1);
        assert_eq!(c.get(1).unwrap().seq, 4);
        assert_eq!(std::mem::size_of::<Contribution>(), 32);
    }

    #[test]
    fn concurrent_decrements_floor_the_merged_value_the_same_everywhere() {
        let mut a = Counter::new(5);
        let mut b = a.clone();
        a.local(1, false, 5);
        b.local(2, false, 5);
        let mut ab = a.clone();
        ab.merge(&b);
        let mut ba = b.clone();
        ba.merge(&a);
        assert_eq!(ab, ba);
        assert_eq!(ab.sum(), -5);
        assert_eq!(ab.shown(), 0);
        // The next incr shows its delta: it makes up the deficit first.
        assert_eq!(ab.local(1, true, 2).0, 2);
        assert_eq!(ab.local(1, false, 7).0, 0);
    }

    #[test]
    fn a_contribution_at_max_seq_from_a_peer_does_not_freeze_local_incr() {
        // A peer's state names this node (1) at the largest seq it may send. (`local` itself
        // goes past it; `Entry::arith` turns such an incr into a full write.)
        let mut c = Counter::from_parts(0, [Contribution::new(1, MAX_SEQ, 5)]);
        assert!(c.valid());
        assert_eq!(c.local(1, true, 1).0, 6);
        assert_eq!(c.local(1, true, 1).0, 7, "the second incr was lost");
        assert_eq!(c.get(1).unwrap().seq, MAX_SEQ + 2);
        // Beyond it, the state is refused as a whole.
        assert!(!Counter::from_parts(0, [Contribution::new(2, MAX_SEQ + 1, 0)]).valid());
        assert!(!Contribution::new(2, u64::MAX, 0).valid());
    }

    #[test]
    fn an_incr_on_a_sum_saturated_by_peers_does_not_overflow() {
        // Nets from peers can add up past -2^127 (the sum saturates); a local incr then asks
        // for `delta - i128::MIN`, which used to overflow (a panic in debug builds).
        let mut c = Counter::from_parts(
            0,
            [
                Contribution::new(2, 1, i128::MIN),
                Contribution::new(3, 1, i128::MIN),
            ],
        );
        assert_eq!(c.sum(), i128::MIN);
        let (shown, mine) = c.local(1, true, 5);
        assert_eq!(mine.seq, 1);
        assert_eq!(shown, 0, "still far below zero");
        assert_eq!(c.local(1, false, 5).0, 0);
    }

    #[test]
    fn contributions_roundtrip_negative_nets() {
        for net in [
            0i128,
            -1,
            1,
            i64::MIN as i128 * 3,
            u64::MAX as i128 + 7,
            -(1 << 100),
        ] {
            assert_eq!(Contribution::new(3, 1, net).net(), net);
        }
    }
}
