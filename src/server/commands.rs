//! Executes text-protocol requests against the store and appends memcached's exact replies.
//!
//! Shared by the TCP and UDP front ends. Runs synchronously: every store access locks one shard
//! for the duration of one key's work and never awaits.

use super::stats::Stats;
use super::{stats_report, Shared};
use crate::protocol::{text, Request, ShutdownMode, StoreMode};
use crate::store::{ArithError, Expiry, StoreError, StoreOutcome};
use std::sync::atomic::Ordering;

/// What the connection does after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Close this connection after flushing (quit).
    Close,
    /// Shut the whole server down (shutdown with -A).
    Shutdown,
}

/// Appends a decimal number without going through `fmt`.
#[inline]
pub fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// One hit of a get: `VALUE <key> <flags> <bytes> [<cas>]\r\n<data>\r\n`.
#[inline]
pub fn write_value(out: &mut Vec<u8>, key: &[u8], flags: u32, value: &[u8], cas: Option<u64>) {
    out.extend_from_slice(b"VALUE ");
    out.extend_from_slice(key);
    out.push(b' ');
    push_u64(out, flags as u64);
    out.push(b' ');
    push_u64(out, value.len() as u64);
    if let Some(cas) = cas {
        out.push(b' ');
        push_u64(out, cas);
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The version we answer `version` with: memcached's, so clients that parse it keep working,
/// tagged like repcached 2.x tagged its own.
pub const VERSION: &str = concat!("1.6.18-repcached-", env!("CARGO_PKG_VERSION"));

/// `held` tracks the items an unwritten reply still references (see [`HeldItems`]).
pub fn execute(
    shared: &Shared,
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
            let deleted = shared.store.entry(key).delete();
            Stats::incr(if deleted {
                &stats.delete_hits
            } else {
                &stats.delete_misses
            });
            if !noreply {
                out.extend_from_slice(if deleted {
                    b"DELETED\r\n"
                } else {
                    b"NOT_FOUND\r\n"
                });
            }
        }
        Request::Arith {
            key,
            incr,
            delta,
            noreply,
        } => {
            let mut e = shared.store.entry(key);
            let in_place = !e.item().is_some_and(|it| held.holds(key, it.cas));
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
                    Err(ArithError::NotFound) => out.extend_from_slice(b"NOT_FOUND\r\n"),
                    Err(ArithError::NonNumeric) => out.extend_from_slice(
                        b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n",
                    ),
                    Err(ArithError::Store(_)) => {
                        out.extend_from_slice(b"SERVER_ERROR out of memory\r\n")
                    }
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
                out.extend_from_slice(if touched {
                    b"TOUCHED\r\n"
                } else {
                    b"NOT_FOUND\r\n"
                });
            }
        }
        Request::FlushAll { delay, noreply } => {
            let reply: &[u8] = if shared.config.disable_flush {
                b"CLIENT_ERROR flush_all not allowed\r\n"
            } else {
                Stats::incr(&stats.cmd_flush);
                shared.store.flush_all(*delay);
                b"OK\r\n"
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
                out.extend_from_slice(b"OK\r\n");
            }
        }
        Request::Quit => return Flow::Close,
        Request::RefreshCerts { noreply } => match &shared.tls {
            // A TLS build of memcached (Debian's) started without -Z says this.
            None => out.extend_from_slice(b"Error TLS not enabled\r\n"),
            Some(tls) => match tls.refresh() {
                Ok(()) => {
                    if !noreply {
                        out.extend_from_slice(b"OK\r\n");
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
                b"MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m\r\n"
            } else {
                shared
                    .store
                    .set_mem_limit((*megabytes as usize).saturating_mul(1024 * 1024));
                b"OK\r\n"
            };
            if !noreply {
                out.extend_from_slice(reply);
            }
        }
        Request::Stats(group) => stats_report::write(shared, *group, out),
        Request::Meta(meta) => super::meta_exec::execute(&shared.store, stats, meta, out, held),
    }
    Flow::Continue
}

fn store(
    shared: &Shared,
    mode: StoreMode,
    key: &[u8],
    flags: u32,
    exptime: i64,
    data: &[u8],
) -> &'static [u8] {
    let stats = &shared.stats;
    Stats::incr(&stats.cmd_set);
    let mut e = shared.store.entry(key);
    let exp = Expiry::from_client(exptime, e.now());
    let outcome = e.store(mode, flags, exp, data, 0, false);
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
        StoreOutcome::Stored(_) => b"STORED\r\n",
        StoreOutcome::NotStored => b"NOT_STORED\r\n",
        StoreOutcome::Exists => b"EXISTS\r\n",
        StoreOutcome::NotFound => b"NOT_FOUND\r\n",
        StoreOutcome::Error(StoreError::TooLarge) => {
            Stats::incr(&stats.store_too_large);
            crate::protocol::reply::TOO_LARGE
        }
        StoreOutcome::Error(StoreError::OutOfMemory) => {
            Stats::incr(&stats.store_no_memory);
            b"SERVER_ERROR out of memory storing object\r\n"
        }
    }
}

fn get(shared: &Shared, keys: &[u8], with_cas: bool, touch: Option<i64>, out: &mut Vec<u8>) {
    get_until(shared, keys, with_cas, touch, out, usize::MAX);
}

/// A get/gets/gat/gats over `keys` that stops once `out` holds `until` bytes or more: returns
/// the keys not fetched yet (a suffix of `keys`), or `None` when it finished with `END`. The
/// connection writes what it has and fetches the rest afterwards, so a multi-get costs
/// bounded memory whatever its keys and values.
pub fn get_until<'k>(
    shared: &Shared,
    keys: &'k [u8],
    with_cas: bool,
    touch: Option<i64>,
    out: &mut Vec<u8>,
    until: usize,
) -> Option<&'k [u8]> {
    // memcached answers a list with an over-long key with one error and no hits.
    if text::keys(keys).any(|k| k.len() > shared.limits.max_key_len) {
        out.extend_from_slice(b"CLIENT_ERROR bad command line format\r\n");
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
                    it.flags,
                    it.value(),
                    with_cas.then_some(it.cas),
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
    out.extend_from_slice(b"END\r\n");
    None
}

/// Items that memcached would still hold a reference to because a reply naming them has not
/// been written yet (an `mg` hit before the next write point). While held, incr/decr cannot
/// rewrite the value in place and allocate an exact-length one instead, which a client sees as
/// the absence of memcached's space padding. Identified by key and CAS id: a replaced item is
/// a different item.
#[derive(Debug, Default)]
pub struct HeldItems {
    held: Vec<(Box<[u8]>, u64)>,
}

impl HeldItems {
    pub fn hold(&mut self, key: &[u8], cas: u64) {
        self.held.push((key.into(), cas));
    }

    pub fn holds(&self, key: &[u8], cas: u64) -> bool {
        self.held.iter().any(|(k, c)| **k == *key && *c == cas)
    }

    /// A write point: every queued reply went out and released its items.
    pub fn release_all(&mut self) {
        self.held.clear();
    }
}
