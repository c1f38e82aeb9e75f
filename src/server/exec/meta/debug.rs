//! me: memcached's debug dump of one item.

use crate::protocol::meta::base64_encode;
use crate::protocol::reply::push_u64;
use crate::server::counters::Stats;
use crate::store::item::FETCHED;
use crate::store::item::KEY_BINARY;
use crate::store::Store;

/// Slab class memcached would put an item of `ntotal` bytes in (default -n 48 -f 1.25, 1 MB
/// pages): only used to print `cls=` in `me`.
pub(super) fn slab_class(ntotal: usize) -> u32 {
    const CHUNK_MAX: u32 = 512 * 1024;
    let mut size: u32 = 48 + 48;
    let mut class = 0;
    while class < 62 && (size as f64) < CHUNK_MAX as f64 / 1.25 {
        if size % 8 != 0 {
            size += 8 - size % 8;
        }
        class += 1;
        if ntotal <= size as usize {
            return class;
        }
        size = (size as f64 * 1.25) as u32;
    }
    class + 1
}

pub(super) fn debug(store: &Store, stats: &Stats, key: &[u8], out: &mut Vec<u8>) {
    Stats::incr(&stats.cmd_meta);
    let e = store.entry(key);
    let Some(it) = e.item() else {
        out.extend_from_slice(b"EN\r\n");
        return;
    };
    let now = e.now();
    out.extend_from_slice(b"ME ");
    if it.bits() & KEY_BINARY != 0 {
        base64_encode(it.key(), out);
    } else {
        out.extend_from_slice(it.key());
    }
    out.extend_from_slice(b" exp=");
    if it.exptime() == 0 {
        out.extend_from_slice(b"-1");
    } else {
        // memcached prints (now - exptime) as a signed int: minus the time left.
        let exp = now.wrapping_sub(it.exptime()) as i32;
        out.extend_from_slice(exp.to_string().as_bytes());
    }
    out.extend_from_slice(b" la=");
    push_u64(out, now.wrapping_sub(it.last_access()) as u64);
    out.extend_from_slice(b" cas=");
    push_u64(out, it.cas());
    out.extend_from_slice(if it.has(FETCHED) {
        b" fetch=yes"
    } else {
        b" fetch=no"
    });
    // memcached's ITEM_ntotal: header, key + NUL, flags suffix, data + "\r\n", CAS.
    let nsuffix = if it.flags() == 0 { 0 } else { 4 };
    let cas_len = if store.cas_enabled() { 8 } else { 0 };
    let ntotal = 48 + it.key().len() + 1 + nsuffix + it.value().len() + 2 + cas_len;
    out.extend_from_slice(b" cls=");
    push_u64(out, slab_class(ntotal) as u64);
    out.extend_from_slice(b" size=");
    push_u64(out, ntotal as u64);
    out.extend_from_slice(b"\r\n");
}
