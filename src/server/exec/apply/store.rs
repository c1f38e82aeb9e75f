//! Storage commands: set/add/replace/append/prepend/cas of every protocol, and the storage
//! commands the parsers refused after reading (too large, bad data chunk).

use crate::protocol::command::StoreCommand;
use crate::protocol::StoreMode;
use crate::server::counters::Stats;
use crate::store::item::KEY_BINARY;
use crate::store::{Entry, Expiry, Store, StoreError, StoreOutcome, WriteMode};

/// Runs `cmd` on the locked entry of its key (memcached's `do_store_item` and what its callers
/// count). A failed `set` (any failed write with `alloc_first`) unlinks the old value under
/// the same lock, so no stale copy outlives it; with `alloc_first` an append/prepend that
/// cannot grow answers `NotStored`.
pub fn store(e: &mut Entry<'_, '_>, stats: &Stats, cmd: &StoreCommand<'_>) -> StoreOutcome {
    Stats::incr(&stats.cmd_set);
    let exptime = Expiry::from_client(cmd.exptime, e.now());
    let outcome = e.store(
        write_mode(cmd.mode),
        cmd.flags,
        exptime,
        cmd.data,
        cmd.compare,
        cmd.allow_stale,
    );
    let is_cas = matches!(cmd.mode, StoreMode::Cas(_));
    match outcome {
        StoreOutcome::Stored(_) => {
            if is_cas {
                Stats::incr(&stats.cas_hits);
            }
            if cmd.key_binary && !cmd.mode.is_concat() {
                if let Some(mut it) = e.item_mut() {
                    it.set_bits(KEY_BINARY);
                }
            }
        }
        StoreOutcome::Exists if is_cas => Stats::incr(&stats.cas_badval),
        StoreOutcome::NotFound if is_cas => Stats::incr(&stats.cas_misses),
        StoreOutcome::Exists | StoreOutcome::NotFound | StoreOutcome::NotStored => {}
        StoreOutcome::Error(_) if cmd.alloc_first && cmd.mode.is_concat() => {
            return StoreOutcome::NotStored
        }
        StoreOutcome::Error(err) => {
            if cmd.alloc_first || cmd.mode == StoreMode::Set {
                e.delete();
            }
            Stats::incr(match err {
                StoreError::TooLarge => &stats.store_too_large,
                StoreError::OutOfMemory => &stats.store_no_memory,
            });
        }
    }
    outcome
}

/// A storage command the parser refused as too large, after swallowing its value: memcached
/// counts `store_too_large` (the text protocols also `cmd_set`) and unlinks `unlink`, the key
/// of a refused `set` (every `ms`), so no stale value outlives the failed write.
pub fn refused_too_large(store: &Store, stats: &Stats, unlink: Option<&[u8]>, counts_set: bool) {
    Stats::incr(&stats.store_too_large);
    if counts_set {
        Stats::incr(&stats.cmd_set);
    }
    if let Some(key) = unlink {
        store.entry(key).delete();
    }
}

/// An `ms` whose data block did not end in "\r\n": memcached answers it without storing but
/// still counts the set.
pub fn refused_bad_chunk(stats: &Stats) {
    Stats::incr(&stats.cmd_set);
}

/// The one place protocol's store modes meet the store's own type (protocol and store never
/// import each other).
fn write_mode(mode: StoreMode) -> WriteMode {
    match mode {
        StoreMode::Set => WriteMode::Set,
        StoreMode::Add => WriteMode::Add,
        StoreMode::Replace => WriteMode::Replace,
        StoreMode::Append => WriteMode::Append,
        StoreMode::Prepend => WriteMode::Prepend,
        StoreMode::Cas(unique) => WriteMode::Cas(unique),
    }
}
