//! Executes text-protocol requests and appends memcached's exact replies: item commands are
//! lowered to `protocol::command` and run by [`super::apply`] (this file only encodes their
//! outcome and records `stats detail`); meta requests go to [`super::meta`], `stats` to
//! [`super::stats`]; the server commands are `server_command`.
//!
//! Runs synchronously: every store access locks one shard for the duration of one key's work
//! and never awaits.

use super::apply::{self, arith::ArithOutcome, delete::DeleteOutcome};
use super::{admin, dump, meta, stats_cmd};
use crate::protocol::command::{ArithCommand, DeleteCommand, StoreCommand};
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
use crate::store::{StoreError, StoreOutcome};
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
            let cmd = DeleteCommand::new(key);
            let outcome = apply::delete::delete(&mut shared.store.entry(key), stats, &cmd);
            if !noreply {
                out.extend_from_slice(match outcome {
                    DeleteOutcome::Deleted => DELETED,
                    _ => NOT_FOUND,
                });
            }
        }
        Request::Arith {
            key,
            incr,
            delta,
            noreply,
        } => {
            let cmd = ArithCommand::new(key, *incr, *delta);
            let outcome = apply::arith::arith(&mut shared.store.entry(key), stats, &cmd, held);
            if !noreply {
                match outcome {
                    ArithOutcome::Done { value, .. } => {
                        push_u64(out, value);
                        out.extend_from_slice(b"\r\n");
                    }
                    ArithOutcome::NonNumeric => out.extend_from_slice(NON_NUMERIC),
                    ArithOutcome::NoMemory | ArithOutcome::CreateFailed => {
                        out.extend_from_slice(OUT_OF_MEMORY)
                    }
                    ArithOutcome::NotFound | ArithOutcome::Exists => {
                        out.extend_from_slice(NOT_FOUND)
                    }
                }
            }
        }
        Request::Touch {
            key,
            exptime,
            noreply,
        } => {
            let touched = apply::fetch::touch(&mut shared.store.entry(key), stats, *exptime);
            if !noreply {
                out.extend_from_slice(if touched { TOUCHED } else { NOT_FOUND });
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
        Request::FlushAll { .. }
        | Request::Version
        | Request::Verbosity { .. }
        | Request::Quit
        | Request::RefreshCerts { .. }
        | Request::Shutdown(_)
        | Request::CacheMemlimit { .. } => return server_command(shared, req, out),
    }
    Flow::Continue
}

/// The commands about the server rather than an item: flush_all, version, verbosity, quit,
/// refresh_certs, shutdown, cache_memlimit.
fn server_command(shared: &ServerState, req: &Request<'_>, out: &mut Vec<u8>) -> Flow {
    match req {
        Request::FlushAll { delay, noreply } => {
            let reply: &[u8] = if shared.config.disable_flush {
                b"CLIENT_ERROR flush_all not allowed\r\n"
            } else {
                Stats::incr(&shared.stats.cmd_flush);
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
        // Every other request is dispatched by `execute`.
        _ => {}
    }
    Flow::Continue
}

fn store(
    shared: &ServerState,
    mode: StoreMode,
    key: &[u8],
    flags: u32,
    exptime: i64,
    data: &[u8],
) -> &'static [u8] {
    shared.detail.record(key, DetailOp::Set);
    let cmd = StoreCommand::new(mode, key, flags, exptime, data);
    match apply::store::store(&mut shared.store.entry(key), &shared.stats, &cmd) {
        StoreOutcome::Stored(_) => STORED,
        StoreOutcome::NotStored => NOT_STORED,
        StoreOutcome::Exists => EXISTS,
        StoreOutcome::NotFound => NOT_FOUND,
        StoreOutcome::Error(StoreError::TooLarge) => TOO_LARGE,
        StoreOutcome::Error(StoreError::OutOfMemory) => OUT_OF_MEMORY_STORING,
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
        let hit = apply::fetch::fetch(&mut shared.store.entry(key), stats, touch, |it| {
            write_value(
                out,
                it.key(),
                it.flags(),
                it.value(),
                with_cas.then_some(it.cas()),
            )
        })
        .is_some();
        shared.detail.record(key, DetailOp::Get { hit });
    }
    out.extend_from_slice(END);
    None
}
