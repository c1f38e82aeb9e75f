//! delete (text, binary) and `md` (meta).

use crate::protocol::command::DeleteCommand;
use crate::server::counters::Stats;
use crate::store::{Entry, Expiry};

/// What a delete did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    Deleted,
    /// meta `I`: kept, marked stale.
    Invalidated,
    NotFound,
    /// The item's CAS is not the one asked for.
    Exists,
}

/// Runs `cmd` on the locked entry of its key.
pub fn delete(e: &mut Entry<'_, '_>, stats: &Stats, cmd: &DeleteCommand<'_>) -> DeleteOutcome {
    match e.item().map(|it| it.cas()) {
        None => {
            Stats::incr(&stats.delete_misses);
            DeleteOutcome::NotFound
        }
        Some(cas) if cmd.compare.is_some_and(|c| c != cas) => {
            if cmd.mismatch_is_miss {
                Stats::incr(&stats.delete_misses);
            }
            DeleteOutcome::Exists
        }
        Some(_) => match cmd.invalidate {
            Some(ttl) => {
                // Keep the item but hand the next reader the recache token.
                let now = e.now();
                e.invalidate(ttl.map(|t| Expiry::from_client(t, now)));
                DeleteOutcome::Invalidated
            }
            None => {
                e.delete();
                Stats::incr(&stats.delete_hits);
                DeleteOutcome::Deleted
            }
        },
    }
}
