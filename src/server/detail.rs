//! `stats detail on|off|dump`: memcached's per-prefix counters. The prefix is a key's bytes
//! before its first `:` (memcached's default delimiter; `-D` is accepted and ignored); keys
//! without one are not counted. get/gets/gat/gats count a get per key (and a hit when found),
//! the store commands a set, delete a del, whatever the outcome, as in memcached's
//! stats_prefix_record_*; `stats reset` clears them.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

const DELIMITER: u8 = b':';

#[derive(Default, Clone, Copy)]
struct Counts {
    get: u64,
    hit: u64,
    set: u64,
    del: u64,
}

#[derive(Default)]
pub struct Detail {
    enabled: AtomicBool,
    prefixes: Mutex<BTreeMap<Box<[u8]>, Counts>>,
}

/// What a request did to a key, for [`Detail::record`].
#[derive(Clone, Copy)]
pub enum Op {
    Get { hit: bool },
    Set,
    Delete,
}

impl Detail {
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }

    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Counts `op` on `key` when collection is on (one relaxed load otherwise).
    pub fn record(&self, key: &[u8], op: Op) {
        if !self.enabled() {
            return;
        }
        let Some(end) = memchr::memchr(DELIMITER, key) else {
            return;
        };
        let prefix = &key[..end];
        let mut map = self.prefixes.lock();
        let counts = match map.get_mut(prefix) {
            Some(c) => c,
            None => map.entry(prefix.into()).or_default(),
        };
        match op {
            Op::Get { hit } => {
                counts.get += 1;
                counts.hit += u64::from(hit);
            }
            Op::Set => counts.set += 1,
            Op::Delete => counts.del += 1,
        }
    }

    /// `stats reset`.
    pub fn clear(&self) {
        self.prefixes.lock().clear();
    }

    /// `stats detail dump`: one `PREFIX` line per prefix, then `END`.
    pub fn dump(&self, out: &mut Vec<u8>) {
        for (prefix, c) in self.prefixes.lock().iter() {
            out.extend_from_slice(b"PREFIX ");
            out.extend_from_slice(prefix);
            out.extend_from_slice(
                format!(
                    " get {} hit {} set {} del {}\r\n",
                    c.get, c.hit, c.set, c.del
                )
                .as_bytes(),
            );
        }
        out.extend_from_slice(b"END\r\n");
    }
}
