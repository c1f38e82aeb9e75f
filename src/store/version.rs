//! Item versions: a hybrid logical clock timestamp plus the id of the node that made the write.
//!
//! Versions order every write to a key the same way on every node (last writer wins), even when
//! the nodes' wall clocks disagree: the clock never runs backwards and always moves past any
//! version it has seen from a peer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Ordered by `(hlc, node)`: a later timestamp wins, the node id breaks ties deterministically.
///
/// Packed to 12 bytes with 4-byte alignment (instead of 16): every item carries three versions,
/// so the padding would cost 12 bytes per item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(C, packed(4))]
pub struct Version {
    /// Milliseconds since the unix epoch in the upper 48 bits, a logical counter in the lower 16.
    pub hlc: u64,
    /// The originating node's id.
    pub node: u32,
}

impl Version {
    pub const ZERO: Version = Version { hlc: 0, node: 0 };

    pub fn new(hlc: u64, node: u32) -> Self {
        Version { hlc, node }
    }

    /// Wall-clock milliseconds encoded in the timestamp.
    pub fn millis(&self) -> u64 {
        self.hlc >> 16
    }
}

/// A hybrid logical clock shared by the whole node.
#[derive(Debug)]
pub struct HybridClock {
    last: AtomicU64,
    node: u32,
}

/// The largest millisecond count the 48-bit field holds (year 10889).
const MAX_MILLIS: u64 = (1 << 48) - 1;

fn wall_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl HybridClock {
    pub fn new(node: u32) -> Self {
        HybridClock {
            last: AtomicU64::new(0),
            node,
        }
    }

    pub fn node(&self) -> u32 {
        self.node
    }

    /// A fresh version, strictly greater than every version this clock has issued or observed.
    ///
    /// Never wraps: at the top of the range it stays at `u64::MAX` (versions then tie on the
    /// clock and order by node id). Replication refuses remote versions far ahead of the wall
    /// clock, so the top is out of reach in practice; the arithmetic is checked all the same.
    pub fn tick(&self) -> Version {
        let wall = wall_millis().min(MAX_MILLIS) << 16;
        let mut prev = self.last.load(Ordering::Relaxed);
        loop {
            let next = if wall > prev {
                wall
            } else {
                prev.saturating_add(1)
            };
            match self
                .last
                .compare_exchange_weak(prev, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    return Version {
                        hlc: next,
                        node: self.node,
                    }
                }
                Err(actual) => prev = actual,
            }
        }
    }

    /// Moves the clock past a version received from a peer, so later local writes win over it.
    pub fn observe(&self, seen: Version) {
        self.last.fetch_max(seen.hlc, Ordering::AcqRel);
    }
}

/// Node ids learned from peers' snapshots (writes of nodes that never linked with this one:
/// earlier incarnations of restarted peers, nodes gone from the mesh) are held to this many, so
/// that made-up origins can never take the room that authenticated nodes need.
pub const MAX_LEARNED_NODES: usize = 16_384;

/// The node ids items' versions name, so that an item stores a 2-byte index instead of a
/// 4-byte id (index 0 is this node, index 1 node 0: no node, the id of `Version::ZERO` and of
/// delayed flushes). Bounded to 65,536 ids and never shrinks, so what may add an id is
/// restricted: a node that authenticated on a replication link ([`NodeTable::admit`]), or an
/// origin named in a peer's snapshot, within [`MAX_LEARNED_NODES`] ([`NodeTable::learn`]).
/// Writes only look ids up ([`NodeTable::index`]): a version naming an id not in the table
/// cannot be stored.
#[derive(Debug)]
pub struct NodeTable {
    local: u32,
    table: parking_lot::RwLock<Nodes>,
}

#[derive(Debug)]
struct Nodes {
    ids: Vec<u32>,
    index: std::collections::HashMap<u32, u16>,
    learned: usize,
}

impl NodeTable {
    pub fn new(local: u32) -> NodeTable {
        let mut ids = vec![local];
        let mut index = std::collections::HashMap::new();
        if local != 0 {
            ids.push(0);
            index.insert(0, 1);
        }
        NodeTable {
            local,
            table: parking_lot::RwLock::new(Nodes {
                ids,
                index,
                learned: 0,
            }),
        }
    }

    /// The index of `node`, if the table holds it (never adds it).
    pub fn index(&self, node: u32) -> Option<u16> {
        if node == self.local {
            return Some(0);
        }
        self.table.read().index.get(&node).copied()
    }

    /// Whether the table holds `node`.
    pub fn knows(&self, node: u32) -> bool {
        self.index(node).is_some()
    }

    /// Adds a node that authenticated on a replication link; false if the table is full.
    pub fn admit(&self, node: u32) -> bool {
        self.add(node, false)
    }

    /// Adds an origin named in a peer's snapshot, within [`MAX_LEARNED_NODES`]; false if that
    /// share (or the table) is full.
    pub fn learn(&self, node: u32) -> bool {
        self.add(node, true)
    }

    fn add(&self, node: u32, learned: bool) -> bool {
        if self.knows(node) {
            return true;
        }
        let mut t = self.table.write();
        if t.index.contains_key(&node) {
            return true;
        }
        if learned && t.learned >= MAX_LEARNED_NODES {
            return false;
        }
        let Ok(i) = u16::try_from(t.ids.len()) else {
            return false;
        };
        t.ids.push(node);
        t.index.insert(node, i);
        if learned {
            t.learned += 1;
        }
        true
    }

    /// The node id at `index` (0 for an index never handed out, which cannot happen).
    pub fn id(&self, index: u16) -> u32 {
        if index == 0 {
            return self.local;
        }
        self.table
            .read()
            .ids
            .get(index as usize)
            .copied()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_strictly_increasing_and_pass_observed_versions() {
        let clock = HybridClock::new(7);
        let a = clock.tick();
        let b = clock.tick();
        assert!(b > a);
        let future = Version::new(a.hlc + (10_000 << 16), 3);
        clock.observe(future);
        let c = clock.tick();
        assert!(c.hlc > future.hlc);
        assert_eq!(c.node, 7);
    }

    #[test]
    fn the_clock_never_wraps_at_the_top_of_its_range() {
        let clock = HybridClock::new(1);
        clock.observe(Version::new(u64::MAX - 1, 2));
        assert_eq!({ clock.tick().hlc }, u64::MAX);
        assert_eq!(
            { clock.tick().hlc },
            u64::MAX,
            "saturates instead of wrapping to 0"
        );
        assert!(clock.tick() > Version::new(u64::MAX - 1, 2));
        let far = Version::new(u64::MAX, 0);
        assert_eq!(far.millis(), MAX_MILLIS);
    }

    #[test]
    fn node_table_is_bounded_and_only_admitted_or_learned_ids_enter_it() {
        let t = NodeTable::new(5);
        assert_eq!(t.index(5), Some(0));
        assert_eq!(
            t.index(0),
            Some(1),
            "no node (Version::ZERO, delayed flushes)"
        );
        assert_eq!(t.index(9), None, "a lookup never adds");
        assert!(t.admit(9));
        assert_eq!(t.index(9), Some(2));
        assert!(t.admit(9));
        assert_eq!(t.id(2), 9);
        assert_eq!(t.id(0), 5);
        for n in 0..MAX_LEARNED_NODES as u32 {
            assert!(t.learn(1_000_000 + n));
        }
        assert!(!t.learn(7), "the learned share is full");
        assert!(t.learn(9), "known ids are still found");
        assert!(t.admit(7), "authenticated nodes keep their room");
        let mut n = 2_000_000;
        while t.admit(n) {
            n += 1;
        }
        assert_eq!(n - 2_000_000, 65_536 - 4 - MAX_LEARNED_NODES as u32);
        assert_eq!(t.index(u32::MAX), None, "a 65,537th node is refused");
    }
}
