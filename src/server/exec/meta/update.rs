//! ms, md and ma: the writes, with memcached's mode mapping, CAS rules, quiet mode and the
//! arithmetic's TTL quirk.

use super::common::{
    abs_exptime, commit_exptime, push_flag_num, push_key, push_opaque_and_key, push_ttl,
};
use crate::protocol::meta::{MetaCmd, MAX_OPAQUE_LEN};
use crate::protocol::reply::{
    push_u64, BAD_CHUNK, NON_NUMERIC, OPAQUE_TOO_LONG, OUT_OF_MEMORY, OUT_OF_MEMORY_STORING,
    TOO_LARGE,
};
use crate::server::counters::Stats;
use crate::server::exec::apply::{self, arith::ArithOutcome, delete::DeleteOutcome};
use crate::server::session::HeldItems;
use crate::store::{Store, StoreError, StoreOutcome};

pub(super) fn set(store: &Store, stats: &Stats, cmd: &MetaCmd<'_>, out: &mut Vec<u8>) {
    let f = &cmd.flags;
    if cmd.bad_chunk {
        apply::store::refused_bad_chunk(stats);
        out.extend_from_slice(BAD_CHUNK);
        return;
    }
    let write = cmd.store_command();
    let outcome = apply::store::store(&mut store.entry(&cmd.key), stats, &write);
    let (code, stored_cas): (&[u8], u64) = match outcome {
        StoreOutcome::Stored(cas) => (b"HD", cas),
        StoreOutcome::Exists => (b"EX", 0),
        StoreOutcome::NotFound => (b"NF", 0),
        StoreOutcome::NotStored => (b"NS", 0),
        StoreOutcome::Error(StoreError::TooLarge) => {
            out.extend_from_slice(TOO_LARGE);
            return;
        }
        StoreOutcome::Error(StoreError::OutOfMemory) => {
            out.extend_from_slice(OUT_OF_MEMORY_STORING);
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
    let del = cmd.delete_command();
    let code: &[u8] = match apply::delete::delete(&mut store.entry(&cmd.key), stats, &del) {
        DeleteOutcome::Deleted | DeleteOutcome::Invalidated => b"HD",
        DeleteOutcome::Exists => b"EX",
        DeleteOutcome::NotFound => b"NF",
    };
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
    let mut created = false;
    let mut e = store.entry(&cmd.key);
    let now = e.now();
    let old_len = e.item().map_or(0, |it| it.value().len());
    // (value, cas) of the item after the operation, or the status code without an item.
    let result: Result<(u64, u64), &[u8]> =
        match apply::arith::arith(&mut e, stats, &cmd.arith_command(), held) {
            ArithOutcome::Done {
                value,
                cas,
                created: c,
            } => {
                created = c;
                Ok((value, cas))
            }
            ArithOutcome::NotFound => Err(b"NF"),
            ArithOutcome::Exists => Err(b"EX"),
            ArithOutcome::NonNumeric => {
                out.extend_from_slice(NON_NUMERIC);
                return;
            }
            ArithOutcome::NoMemory => {
                out.extend_from_slice(OUT_OF_MEMORY);
                return;
            }
            ArithOutcome::CreateFailed => {
                out.extend_from_slice(b"SERVER_ERROR Out of memory allocating new item\r\n");
                return;
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
