//! get/gets/gat/gats (text), get/gat/touch (binary), touch (text), and the counters of `mg`.

use crate::server::counters::Stats;
use crate::store::{Entry, Expiry, ItemRef};

/// Fetches the item of the locked entry: `reply` encodes it as found (a touch changes neither
/// its value nor its CAS, and may end its life, so the reply comes first), then the item is
/// marked accessed and, with `touch` (a raw client expiry), given its new expiry. Returns the
/// CAS of a hit.
pub fn fetch(
    e: &mut Entry<'_, '_>,
    stats: &Stats,
    touch: Option<i64>,
    reply: impl FnOnce(&ItemRef<'_>),
) -> Option<u64> {
    let cas = e.item().map(|it| {
        reply(&it);
        it.cas()
    });
    if cas.is_some() {
        e.bump();
        if let Some(exptime) = touch {
            let exp = Expiry::from_client(exptime, e.now());
            e.touch(exp);
        }
    }
    count(stats, touch.is_some(), cas.is_some());
    cas
}

/// The text `touch` command: a new expiry, then the access mark. True if the item was there.
pub fn touch(e: &mut Entry<'_, '_>, stats: &Stats, exptime: i64) -> bool {
    let exp = Expiry::from_client(exptime, e.now());
    let touched = e.touch(exp);
    if touched {
        e.bump();
    }
    count(stats, true, touched);
    touched
}

/// Counts one key fetched: `cmd_touch` and `touch_hits|misses` when it was touched too, else
/// `cmd_get` and `get_hits|misses`.
pub fn count(stats: &Stats, touched: bool, hit: bool) {
    let (cmds, hits, misses) = if touched {
        (&stats.cmd_touch, &stats.touch_hits, &stats.touch_misses)
    } else {
        (&stats.cmd_get, &stats.get_hits, &stats.get_misses)
    };
    Stats::incr(cmds);
    Stats::incr(if hit { hits } else { misses });
}
