//! mg: the reply is built flag by flag, in the order sent, while the TTL flags take effect.

use super::common::{
    abs_exptime, commit_exptime, fetch_bump, push_flag_num, push_key, push_opaque_and_key, push_ttl,
};
use crate::protocol::meta::{MetaCmd, MAX_OPAQUE_LEN};
use crate::protocol::reply::{push_u64, OPAQUE_TOO_LONG};
use crate::server::counters::Stats;
use crate::server::exec::apply;
use crate::server::session::HeldItems;
use crate::store::item::{FETCHED, KEY_BINARY, STALE, TOKEN_SENT};
use crate::store::{Expiry, Store};

pub(super) fn get(
    store: &Store,
    stats: &Stats,
    cmd: &MetaCmd<'_>,
    out: &mut Vec<u8>,
    held: &mut HeldItems,
) {
    let f = &cmd.flags;
    let start = out.len();
    let mut e = store.entry(&cmd.key);
    let now = e.now();
    let mut created = false;
    if e.item().is_none() && f.vivify.is_some() {
        // The placeholder starts with no expiry; an N flag sets it while the reply is built.
        created = e.put(&[], 0, Expiry::Never, None).is_ok() && e.item().is_some();
    }
    let Some(it) = e.item() else {
        apply::fetch::count(stats, false, false);
        out.extend_from_slice(b"EN");
        if !push_opaque_and_key(out, cmd) {
            out.truncate(start);
            out.extend_from_slice(OPAQUE_TOO_LONG);
            return;
        }
        out.extend_from_slice(b"\r\n");
        if f.no_reply {
            out.truncate(start);
        }
        return;
    };
    // memcached keeps a reference to a hit until its reply is written.
    held.hold(&cmd.key, it.cas());
    let (cas, client_flags, orig_exptime, last_access, bits, vlen) = (
        it.cas(),
        it.flags(),
        it.exptime(),
        it.last_access(),
        it.bits(),
        it.value().len(),
    );
    let mut exptime = orig_exptime;
    let mut won = false;
    let mut ttl_set = false;
    if f.value {
        out.extend_from_slice(b"VA ");
        push_u64(out, vlen as u64);
    } else {
        out.extend_from_slice(b"HD");
    }
    for t in cmd.tokens() {
        match t[0] {
            b'T' => {
                ttl_set = true;
                exptime = abs_exptime(f.ttl, now);
            }
            b'N' if created => {
                exptime = abs_exptime(f.vivify, now);
                won = true;
            }
            // Win the recache token when the TTL left is below the threshold.
            b'R' if bits & TOKEN_SENT == 0
                && !created
                && exptime != 0
                && exptime < abs_exptime(f.recache, now) =>
            {
                won = true;
            }
            b's' => push_flag_num(out, b's', vlen as u64),
            b't' => push_ttl(out, exptime, now),
            b'c' => push_flag_num(out, b'c', cas),
            b'f' => push_flag_num(out, b'f', client_flags as u64),
            b'l' => push_flag_num(out, b'l', now.wrapping_sub(last_access) as u64),
            b'h' => out.extend_from_slice(if bits & FETCHED != 0 { b" h1" } else { b" h0" }),
            b'O' => {
                if t.len() > MAX_OPAQUE_LEN {
                    // memcached has already applied the TTL flags before the opaque, and
                    // without N/T/R/l/h it bumped the item while fetching it.
                    let locked = cmd
                        .tokens()
                        .any(|t| matches!(t[0], b'N' | b'T' | b'R' | b'l' | b'h'));
                    if !locked && !f.no_update {
                        fetch_bump(&mut e, bits, last_access);
                    }
                    commit_exptime(&mut e, orig_exptime, exptime);
                    out.truncate(start);
                    out.extend_from_slice(OPAQUE_TOO_LONG);
                    return;
                }
                out.push(b' ');
                out.extend_from_slice(t);
            }
            b'k' => push_key(out, &cmd.key, bits & KEY_BINARY != 0),
            _ => {}
        }
    }
    // Z before W so a client never sees both for one token.
    if bits & TOKEN_SENT != 0 {
        out.extend_from_slice(b" Z");
    }
    if bits & STALE != 0 {
        out.extend_from_slice(b" X");
        if bits & TOKEN_SENT == 0 {
            won = true;
        }
    }
    if won {
        out.extend_from_slice(b" W");
    }
    out.extend_from_slice(b"\r\n");
    if f.value {
        if let Some(it) = e.item() {
            out.extend_from_slice(it.value());
        }
        out.extend_from_slice(b"\r\n");
    }
    if won {
        if let Some(mut it) = e.item_mut() {
            it.set_bits(TOKEN_SENT);
        }
    }
    if !f.no_update {
        fetch_bump(&mut e, bits, last_access);
    }
    commit_exptime(&mut e, orig_exptime, exptime);
    apply::fetch::count(stats, ttl_set, true);
}
