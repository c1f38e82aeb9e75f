//! Executes text-protocol requests against the store and appends memcached's exact replies;
//! hands meta requests to [`super::meta`] and `stats` to [`super::stats`].
//!
//! Runs synchronously: every store access locks one shard for the duration of one key's work
//! and never awaits.

use super::{admin, dump, meta, stats_cmd};
use crate::protocol::reply::{
    push_u64, write_value, BAD_FORMAT, DELETED, END, EXISTS, MEMLIMIT_ADJUST_FAILED,
    MEMLIMIT_TOO_SMALL, NON_NUMERIC, NOT_FOUND, NOT_STORED, OK, OUT_OF_MEMORY,
    OUT_OF_MEMORY_STORING, STORED, TOO_LARGE, TOUCHED, VERSION,
};
use crate::protocol::{tokens, Request, ShutdownMode, StoreMode};
use crate::server::counters::Stats;
use crate::server::detail::Op as DetailOp;
use crate::server::session::{Flow, HeldItems};
use crate::server::shared::ServerState;
use crate::store::{ArithError, Expiry, StoreError, StoreOutcome, WriteMode};
use std::sync::atomic::Ordering;

/// `held` tracks the items an unwritten reply still references (see [`HeldItems`]).
pub fn execute(
    shared: &ServerState,
    req: &Request<'_>,
    out: &mut Vec<u8>,
    held: &mut HeldItems,
) -> Flow {
    let stats = &shared.stats;
    match req {
        Request::Store {
            mode,
            key,
            flags,
            exptime,
            data,
            noreply,
        } => {
            let reply = store(shared, *mode, key, *flags, *exptime, data);
            if !noreply {
                out.extend_from_slice(reply);
            }
        }
        Request::Get { keys, with_cas } => get(shared, keys, *with_cas, None, out),
        Request::GetAndTouch {
            exptime,
            keys,
            with_cas,
        } => get(shared, keys, *with_cas, Some(*exptime), out),
        Request::Delete { key, noreply } => {
            shared.detail.record(key, DetailOp::Delete);
            let deleted = shared.store.entry(key).delete();
            Stats::incr(if deleted {
                &stats.delete_hits
            } else {
                &stats.delete_misses
            });
            if !noreply {
                out.extend_from_slice(if deleted { DELETED } else { NOT_FOUND });
            }
        }
        Request::Arith {
            key,
            incr,
            delta,
            noreply,
        } => {
            let mut e = shared.store.entry(key);
            let in_place = !e.item().is_some_and(|it| held.holds(key, it.cas()));
            let result = e.arith_with(*incr, *delta, in_place);
            drop(e);
            let (hits, misses) = if *incr {
                (&stats.incr_hits, &stats.incr_misses)
            } else {
                (&stats.decr_hits, &stats.decr_misses)
            };
            Stats::incr(if matches!(result, Err(ArithError::NotFound)) {
                misses
            } else {
                hits
            });
            if !noreply {
                match result {
                    Ok((value, _)) => {
                        push_u64(out, value);
                        out.extend_from_slice(b"\r\n");
                    }
                    Err(ArithError::NotFound) => out.extend_from_slice(NOT_FOUND),
                    Err(ArithError::NonNumeric) => out.extend_from_slice(NON_NUMERIC),
                    Err(ArithError::Store(_)) => out.extend_from_slice(OUT_OF_MEMORY),
                }
            }
        }
        Request::Touch {
            key,
            exptime,
            noreply,
        } => {
            let mut e = shared.store.entry(key);
            let exp = Expiry::from_client(*exptime, e.now());
            let touched = e.touch(exp);
            if touched {
                e.bump();
            }
            drop(e);
            Stats::incr(&stats.cmd_touch);
            Stats::incr(if touched {
                &stats.touch_hits
            } else {
                &stats.touch_misses
            });
            if !noreply {
                out.extend_from_slice(if touched { TOUCHED } else { NOT_FOUND });
            }
        }
        Request::FlushAll { delay, noreply } => {
            let reply: &[u8] = if shared.config.disable_flush {
                b"CLIENT_ERROR flush_all not allowed\r\n"
            } else {
                Stats::incr(&stats.cmd_flush);
                shared.store.flush_all(*delay);
                OK
            };
            if !noreply {
                out.extend_from_slice(reply);
            }
        }
        Request::Version => {
            out.extend_from_slice(b"VERSION ");
            out.extend_from_slice(VERSION.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Request::Verbosity { level, noreply } => {
            shared.verbosity.store(*level, Ordering::Relaxed);
            if !noreply {
                out.extend_from_slice(OK);
            }
        }
        Request::Quit => return Flow::Close,
        Request::RefreshCerts { noreply } => match &shared.tls {
            // A TLS build of memcached (Debian's) started without -Z says this.
            None => out.extend_from_slice(b"Error TLS not enabled\r\n"),
            Some(tls) => match tls.refresh() {
                Ok(()) => {
                    if !noreply {
                        out.extend_from_slice(OK);
                    }
                }
                // memcached sends its error text as is, noreply or not.
                Err(e) => {
                    out.extend_from_slice(e.to_string().as_bytes());
                    out.extend_from_slice(b"\r\n");
                }
            },
        },
        Request::Shutdown(mode) => {
            if !shared.config.enable_shutdown {
                out.extend_from_slice(b"ERROR: shutdown not enabled\r\n");
            } else if *mode == ShutdownMode::Invalid {
                out.extend_from_slice(b"CLIENT_ERROR invalid shutdown mode\r\n");
            } else {
                return Flow::Shutdown;
            }
        }
        Request::CacheMemlimit { megabytes, noreply } => {
            let reply: &[u8] = if *megabytes < 8 {
                MEMLIMIT_TOO_SMALL
            } else {
                let bytes = (*megabytes as usize).saturating_mul(1024 * 1024);
                match shared.store.set_mem_limit(bytes) {
                    Ok(()) => OK,
                    Err(_) => MEMLIMIT_ADJUST_FAILED,
                }
            };
            if !noreply {
                out.extend_from_slice(reply);
            }
        }
        Request::Stats(group) => stats_cmd::write(shared, *group, out),
        Request::Metadump(_) if !shared.tunables.lru_crawler.load(Ordering::Relaxed) => {
            out.extend_from_slice(admin::CRAWLER_DISABLED)
        }
        Request::Metadump(scope) => dump::metadump(&shared.store, *scope, !out.is_empty(), out),
        Request::LruCrawler(cmd) => admin::lru_crawler(shared, *cmd, out),
        Request::Slabs(cmd) => admin::slabs(shared, *cmd, out),
        Request::Meta(meta) => meta::execute(&shared.store, stats, meta, out, held),
    }
    Flow::Continue
}

/// The text protocol's store commands are the store's write modes, one for one.
impl From<StoreMode> for WriteMode {
    fn from(mode: StoreMode) -> WriteMode {
        match mode {
            StoreMode::Set => WriteMode::Set,
            StoreMode::Add => WriteMode::Add,
            StoreMode::Replace => WriteMode::Replace,
            StoreMode::Append => WriteMode::Append,
            StoreMode::Prepend => WriteMode::Prepend,
            StoreMode::Cas(unique) => WriteMode::Cas(unique),
        }
    }
}

fn store(
    shared: &ServerState,
    mode: StoreMode,
    key: &[u8],
    flags: u32,
    exptime: i64,
    data: &[u8],
) -> &'static [u8] {
    let stats = &shared.stats;
    Stats::incr(&stats.cmd_set);
    shared.detail.record(key, DetailOp::Set);
    let mut e = shared.store.entry(key);
    let exp = Expiry::from_client(exptime, e.now());
    let outcome = e.store(mode.into(), flags, exp, data, None, false);
    if let (StoreOutcome::Error(_), StoreMode::Set) = (outcome, mode) {
        // memcached unlinks the old value when a set fails, so no stale data survives it.
        e.delete();
    }
    drop(e);
    if let StoreMode::Cas(_) = mode {
        match outcome {
            StoreOutcome::Stored(_) => Stats::incr(&stats.cas_hits),
            StoreOutcome::Exists => Stats::incr(&stats.cas_badval),
            StoreOutcome::NotFound => Stats::incr(&stats.cas_misses),
            _ => {}
        }
    }
    match outcome {
        StoreOutcome::Stored(_) => STORED,
        StoreOutcome::NotStored => NOT_STORED,
        StoreOutcome::Exists => EXISTS,
        StoreOutcome::NotFound => NOT_FOUND,
        StoreOutcome::Error(StoreError::TooLarge) => {
            Stats::incr(&stats.store_too_large);
            TOO_LARGE
        }
        StoreOutcome::Error(StoreError::OutOfMemory) => {
            Stats::incr(&stats.store_no_memory);
            OUT_OF_MEMORY_STORING
        }
    }
}

fn get(shared: &ServerState, keys: &[u8], with_cas: bool, touch: Option<i64>, out: &mut Vec<u8>) {
    get_until(shared, keys, with_cas, touch, out, usize::MAX);
}

/// A get/gets/gat/gats over `keys` that stops once `out` holds `until` bytes or more: returns
/// the keys not fetched yet (a suffix of `keys`), or `None` when it finished with `END`. The
/// connection writes what it has and fetches the rest afterwards, so a multi-get costs
/// bounded memory whatever its keys and values.
pub fn get_until<'k>(
    shared: &ServerState,
    keys: &'k [u8],
    with_cas: bool,
    touch: Option<i64>,
    out: &mut Vec<u8>,
    until: usize,
) -> Option<&'k [u8]> {
    // memcached answers a list with an over-long key with one error and no hits.
    if tokens::keys(keys).any(|k| k.len() > shared.limits.max_key_len) {
        out.extend_from_slice(BAD_FORMAT);
        return None;
    }
    let stats = &shared.stats;
    let mut rest = keys;
    loop {
        // Keys are separated by spaces only, as in text::keys.
        let skip = rest.iter().take_while(|b| **b == b' ').count();
        rest = &rest[skip..];
        if rest.is_empty() {
            break;
        }
        if out.len() >= until {
            return Some(rest);
        }
        let end = memchr::memchr(b' ', rest).unwrap_or(rest.len());
        let key = &rest[..end];
        rest = &rest[end..];
        let mut e = shared.store.entry(key);
        let hit = match e.item() {
            Some(it) => {
                write_value(
                    out,
                    it.key(),
                    it.flags(),
                    it.value(),
                    with_cas.then_some(it.cas()),
                );
                true
            }
            None => false,
        };
        if hit {
            e.bump();
            if let Some(exptime) = touch {
                let exp = Expiry::from_client(exptime, e.now());
                e.touch(exp);
            }
        }
        drop(e);
        shared.detail.record(key, DetailOp::Get { hit });
        match (touch.is_some(), hit) {
            (false, true) => {
                Stats::incr(&stats.cmd_get);
                Stats::incr(&stats.get_hits);
            }
            (false, false) => {
                Stats::incr(&stats.cmd_get);
                Stats::incr(&stats.get_misses);
            }
            (true, true) => {
                Stats::incr(&stats.cmd_touch);
                Stats::incr(&stats.touch_hits);
            }
            (true, false) => {
                Stats::incr(&stats.cmd_touch);
                Stats::incr(&stats.touch_misses);
            }
        }
    }
    out.extend_from_slice(END);
    None
}
