//! incr/decr of every protocol (memcached's `do_add_delta` and what its callers count).

use crate::protocol::command::ArithCommand;
use crate::server::counters::Stats;
use crate::server::session::HeldItems;
use crate::store::{ArithError, Entry, Expiry};

/// What an incr/decr did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOutcome {
    /// The counter's new value and CAS; `created` when a miss made it (`cmd.create`).
    Done {
        value: u64,
        cas: u64,
        created: bool,
    },
    NotFound,
    /// The item's CAS is not the one asked for.
    Exists,
    /// The value is empty or not a decimal number.
    NonNumeric,
    /// The new value found no room.
    NoMemory,
    /// The counter a miss creates found no room.
    CreateFailed,
}

/// Runs `cmd` on the locked entry of its key. The value is rewritten in place (padded) unless
/// an unwritten reply in `held` still references the item. memcached counts a hit once the
/// value parsed as a number (even if the write then fails) and a miss only when nothing is
/// created; it refuses an empty value before it compares the CAS.
pub fn arith(
    e: &mut Entry<'_, '_>,
    stats: &Stats,
    cmd: &ArithCommand<'_>,
    held: &HeldItems,
) -> ArithOutcome {
    let (hits, misses) = if cmd.incr {
        (&stats.incr_hits, &stats.incr_misses)
    } else {
        (&stats.decr_hits, &stats.decr_misses)
    };
    let Some((empty, cas)) = e.item().map(|it| (it.value().is_empty(), it.cas())) else {
        let Some(create) = cmd.create else {
            Stats::incr(misses);
            return ArithOutcome::NotFound;
        };
        let exptime = Expiry::from_client(create.exptime, e.now());
        let mut digits = [0u8; 20];
        let digits = decimal(create.initial, &mut digits);
        return match e.put(&[digits], 0, exptime, None) {
            Ok(cas) => ArithOutcome::Done {
                value: create.initial,
                cas,
                created: true,
            },
            Err(_) => ArithOutcome::CreateFailed,
        };
    };
    if empty {
        return ArithOutcome::NonNumeric;
    }
    if cmd.compare.is_some_and(|c| c != 0 && c != cas) {
        return ArithOutcome::Exists;
    }
    match e.arith_with(cmd.incr, cmd.delta, !held.holds(cmd.key, cas)) {
        Ok((value, cas)) => {
            Stats::incr(hits);
            ArithOutcome::Done {
                value,
                cas,
                created: false,
            }
        }
        Err(ArithError::NonNumeric) => ArithOutcome::NonNumeric,
        Err(ArithError::Store(_)) => {
            Stats::incr(hits);
            ArithOutcome::NoMemory
        }
        Err(ArithError::NotFound) => {
            Stats::incr(misses);
            ArithOutcome::NotFound
        }
    }
}

/// `n` in decimal, in `buf` (20 digits hold any u64): no allocation.
fn decimal(n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}
