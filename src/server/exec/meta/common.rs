//! Reply pieces every meta executor writes, and the item updates they share.

use crate::protocol::meta::{base64_encode, MetaCmd, MAX_OPAQUE_LEN};
use crate::protocol::reply::push_u64;
use crate::store::item::FETCHED;
use crate::store::{Entry, Expiry};

pub(super) fn push_flag_num(out: &mut Vec<u8>, flag: u8, n: u64) {
    out.push(b' ');
    out.push(flag);
    push_u64(out, n);
}

/// ` k<key>`, or the key in base64 followed by ` b` for binary keys.
pub(super) fn push_key(out: &mut Vec<u8>, key: &[u8], binary: bool) {
    out.extend_from_slice(b" k");
    if binary {
        base64_encode(key, out);
        out.extend_from_slice(b" b");
    } else {
        out.extend_from_slice(key);
    }
}

/// ` t<remaining>`: -1 for no expiry; memcached subtracts unsigned 32-bit times.
pub(super) fn push_ttl(out: &mut Vec<u8>, exptime: u32, now: u32) {
    if exptime == 0 {
        out.extend_from_slice(b" t-1");
    } else {
        push_flag_num(out, b't', exptime.wrapping_sub(now) as u64);
    }
}

/// The absolute expiry memcached's `realtime()` gives a raw TTL flag value.
pub(super) fn abs_exptime(raw: Option<i64>, now: u32) -> u32 {
    raw.map_or(0, |t| Expiry::from_client(t, now).as_abs())
}

/// Writes the opaque and key tokens only (replies without an item). False if an opaque is too
/// long, in which case memcached answers with an error instead.
pub(super) fn push_opaque_and_key(out: &mut Vec<u8>, cmd: &MetaCmd<'_>) -> bool {
    for t in cmd.tokens() {
        match t[0] {
            b'O' => {
                if t.len() > MAX_OPAQUE_LEN {
                    return false;
                }
                out.push(b' ');
                out.extend_from_slice(t);
            }
            b'k' => push_key(out, &cmd.key, cmd.flags.key_binary),
            _ => {}
        }
    }
    true
}

/// Applies an expiry that the reply loop changed, as one replicated touch.
pub(super) fn commit_exptime(e: &mut Entry<'_, '_>, old: u32, new: u32) {
    if old != new {
        let now = e.now();
        e.touch(Expiry::from_abs(new, now));
    }
}

/// Marks a fetch. memcached's segmented LRU leaves the access time alone on an item's first
/// fetch (it only sets FETCHED), so `l` and `me la=` count from the store until the second.
pub(super) fn fetch_bump(e: &mut Entry<'_, '_>, bits_before: u8, last_access_before: u32) {
    e.bump();
    if bits_before & FETCHED == 0 {
        e.set_last_access(last_access_before);
    }
}
