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
    pub fn tick(&self) -> Version {
        let wall = wall_millis() << 16;
        let mut prev = self.last.load(Ordering::Relaxed);
        loop {
            let next = if wall > prev { wall } else { prev + 1 };
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
}
