//! ms, md and ma: the writes, with memcached's mode mapping, CAS rules, quiet mode and the
//! arithmetic's TTL quirk.

use super::common::{
    abs_exptime, commit_exptime, push_flag_num, push_key, push_opaque_and_key, push_ttl,
};
use crate::protocol::meta::{MetaCmd, SetMode, MAX_OPAQUE_LEN};
use crate::protocol::reply::{
    push_u64, BAD_CHUNK, NON_NUMERIC, OPAQUE_TOO_LONG, OUT_OF_MEMORY, OUT_OF_MEMORY_STORING,
    TOO_LARGE,
};
use crate::server::counters::Stats;
use crate::server::session::HeldItems;
use crate::store::item::KEY_BINARY;
use crate::store::{ArithError, Expiry, Store, StoreError, StoreOutcome, WriteMode};

pub(super) fn set(store: &Store, stats: &Stats, cmd: &MetaCmd<'_>, out: &mut Vec<u8>) {
    let f = &cmd.flags;
    let mode = match (cmd.set_mode, f.cas) {
        // A CAS turns set and replace into cas; add ignores it; append/prepend compare it.
        (SetMode::Set | SetMode::Replace, Some(c)) => WriteMode::Cas(c),
        (SetMode::Set, None) => WriteMode::Set,
        (SetMode::Replace, None) => WriteMode::Replace,
        (SetMode::Add, _) => WriteMode::Add,
        (SetMode::Append, _) => WriteMode::Append,
        (SetMode::Prepend, _) => WriteMode::Prepend,
    };
    if cmd.bad_chunk {
        Stats::incr(&stats.cmd_set);
        out.extend_from_slice(BAD_CHUNK);
        return;
    }
    let is_cas = matches!(mode, WriteMode::Cas(_));
    let concat = matches!(mode, WriteMode::Append | WriteMode::Prepend);
    let mut e = store.entry(&cmd.key);
    let exptime = f
        .ttl
        .map_or(Expiry::Never, |t| Expiry::from_client(t, e.now()));
    let outcome = e.store(
        mode,
        f.client_flags,
        exptime,
        cmd.data,
        f.cas,
        f.set_stale && is_cas,
    );
    Stats::incr(&stats.cmd_set);
    let (code, stored_cas): (&[u8], u64) = match outcome {
        StoreOutcome::Stored(cas) => {
            if is_cas {
                Stats::incr(&stats.cas_hits);
            }
            if f.key_binary && !concat {
                if let Some(mut it) = e.item_mut() {
                    it.set_bits(KEY_BINARY);
                }
            }
            (b"HD", cas)
        }
        StoreOutcome::Exists => {
            if is_cas {
                Stats::incr(&stats.cas_badval);
            }
            (b"EX", 0)
        }
        StoreOutcome::NotFound => {
            Stats::incr(&stats.cas_misses);
            (b"NF", 0)
        }
        StoreOutcome::NotStored => (b"NS", 0),
        // append/prepend that cannot allocate the joined value answer NS in memcached.
        StoreOutcome::Error(_) if concat => (b"NS", 0),
        StoreOutcome::Error(err) => {
            // memcached drops the old value rather than keep serving stale data.
            e.delete();
            let reply: &[u8] = match err {
                StoreError::TooLarge => {
                    Stats::incr(&stats.store_too_large);
                    TOO_LARGE
                }
                StoreError::OutOfMemory => {
                    Stats::incr(&stats.store_no_memory);
                    OUT_OF_MEMORY_STORING
                }
            };
            out.extend_from_slice(reply);
            return;
        }
    };
    if code == b"HD" && f.no_reply {
        return;
    }
    out.extend_from_slice(code);
    for t in cmd.tokens() {
        match t[0] {
            b'O' => {
                out.push(b' ');
                out.extend_from_slice(t);
            }
            b'k' => push_key(out, &cmd.key, f.key_binary),
            b'c' => push_flag_num(out, b'c', stored_cas),
            _ => {}
        }
    }
    out.extend_from_slice(b"\r\n");
}

pub(super) fn delete(store: &Store, stats: &Stats, cmd: &MetaCmd<'_>, out: &mut Vec<u8>) {
    let f = &cmd.flags;
    let mut e = store.entry(&cmd.key);
    let code: &[u8] = match e.item().map(|it| it.cas()) {
        Some(cas) if f.cas.is_some_and(|c| c != cas) => {
            Stats::incr(&stats.delete_misses);
            b"EX"
        }
        Some(_) if f.set_stale => {
            // Keep the item but hand the next reader the recache token.
            let now = e.now();
            e.invalidate(f.ttl.map(|t| Expiry::from_client(t, now)));
            b"HD"
        }
        Some(_) => {
            Stats::incr(&stats.delete_hits);
            e.delete();
            b"HD"
        }
        None => {
            Stats::incr(&stats.delete_misses);
            b"NF"
        }
    };
    drop(e);
    if code == b"HD" && f.no_reply {
        return;
    }
    let start = out.len();
    out.extend_from_slice(code);
    if !push_opaque_and_key(out, cmd) {
        // The parser refuses long opaques for md; kept for safety.
        out.truncate(start);
        out.extend_from_slice(OPAQUE_TOO_LONG);
        return;
    }
    out.extend_from_slice(b"\r\n");
}

pub(super) fn arith(
    store: &Store,
    stats: &Stats,
    cmd: &MetaCmd<'_>,
    out: &mut Vec<u8>,
    held: &HeldItems,
) {
    let f = &cmd.flags;
    let start = out.len();
    let mut e = store.entry(&cmd.key);
    let now = e.now();
    let mut created = false;
    let old_len = e.item().map_or(0, |it| it.value().len());
    let miss = |stats: &Stats| {
        Stats::incr(if cmd.incr {
            &stats.incr_misses
        } else {
            &stats.decr_misses
        });
    };
    // (value, cas) of the item after the operation, or the status code without an item.
    let result: Result<(u64, u64), &[u8]> = match e
        .item()
        .map(|it| (it.value().is_empty(), it.cas()))
    {
        Some((true, _)) => {
            out.extend_from_slice(NON_NUMERIC);
            return;
        }
        Some((false, cas)) if f.cas.is_some_and(|c| c != 0 && c != cas) => Err(b"EX"),
        Some((false, cas)) => match e.arith_with(cmd.incr, f.delta, !held.holds(&cmd.key, cas)) {
            Ok(v) => {
                Stats::incr(if cmd.incr {
                    &stats.incr_hits
                } else {
                    &stats.decr_hits
                });
                Ok(v)
            }
            Err(ArithError::NonNumeric) => {
                out.extend_from_slice(NON_NUMERIC);
                return;
            }
            Err(ArithError::Store(_)) => {
                out.extend_from_slice(OUT_OF_MEMORY);
                return;
            }
            Err(ArithError::NotFound) => {
                miss(stats);
                Err(b"NF")
            }
        },
        None if f.vivify.is_some() => {
            let digits = f.initial.to_string();
            match e.put(&[digits.as_bytes()], 0, Expiry::Never, None) {
                Ok(cas) => {
                    created = true;
                    Ok((f.initial, cas))
                }
                Err(_) => {
                    out.extend_from_slice(b"SERVER_ERROR Out of memory allocating new item\r\n");
                    return;
                }
            }
        }
        None => {
            miss(stats);
            Err(b"NF")
        }
    };
    let (value, cas) = match result {
        Ok(v) => v,
        Err(code) => {
            out.extend_from_slice(code);
            if !push_opaque_and_key(out, cmd) {
                out.truncate(start);
                out.extend_from_slice(OPAQUE_TOO_LONG);
                return;
            }
            out.extend_from_slice(b"\r\n");
            return;
        }
    };
    let mut digits = Vec::with_capacity(20);
    push_u64(&mut digits, value);
    let orig_exptime = e.item().map_or(0, |it| it.exptime());
    // memcached applies T/N to the item do_add_delta returns. When the new digits do not fit
    // the old value it links a copy and returns the old, unlinked item: the TTL change shows in
    // this reply but is lost.
    let ttl_sticks = created || digits.len() <= old_len;
    let mut exptime = orig_exptime;
    if f.value {
        out.extend_from_slice(b"VA ");
        push_u64(out, digits.len() as u64);
    } else {
        out.extend_from_slice(b"HD");
    }
    for t in cmd.tokens() {
        match t[0] {
            b'c' => push_flag_num(out, b'c', cas),
            b't' => push_ttl(out, exptime, now),
            b'T' => exptime = abs_exptime(f.ttl, now),
            b'N' if created => exptime = abs_exptime(f.vivify, now),
            b'O' => {
                if t.len() > MAX_OPAQUE_LEN {
                    // The arithmetic (and any TTL before the opaque) has happened already.
                    if ttl_sticks {
                        commit_exptime(&mut e, orig_exptime, exptime);
                    }
                    out.truncate(start);
                    out.extend_from_slice(OPAQUE_TOO_LONG);
                    return;
                }
                out.push(b' ');
                out.extend_from_slice(t);
            }
            b'k' => push_key(out, &cmd.key, f.key_binary),
            _ => {}
        }
    }
    if f.value {
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&digits);
    }
    out.extend_from_slice(b"\r\n");
    if ttl_sticks {
        commit_exptime(&mut e, orig_exptime, exptime);
    }
    // memcached suppresses a successful reply with q, but not the reply to an auto-create.
    if f.no_reply && !created {
        out.truncate(start);
    }
}
