//! The key dumps: `stats cachedump <class> <limit>` and `lru_crawler metadump all|hash|<classes>`,
//! in memcached 1.6.18's formats. The store has a single slab class, 1: every item is listed
//! there and the other classes are empty.
//!
//! Both replies are bounded: cachedump stops, as memcached's item_cachedump does, before its
//! reply would pass 2 MB; metadump (which memcached streams without a bound from its crawler
//! thread) stops before [`METADUMP_MAX_BYTES`], since our reply is built in the connection's
//! buffer before it is written. Neither holds a shard lock while formatting: the store copies
//! items out in bounded batches (`Store::visit_items`).

use crate::protocol::reply::{push_u64, END};
use crate::protocol::MetadumpScope;
use crate::store::{DumpItem, Store};

/// memcached's item_cachedump buffer: the whole reply, END included, fits in 2 MB.
pub const CACHEDUMP_MAX_BYTES: usize = 2 * 1024 * 1024;
/// The most a metadump reply holds (about 300 000 items of 20-byte keys); the dump ends early,
/// with END, once the next line would pass it.
pub const METADUMP_MAX_BYTES: usize = 32 * 1024 * 1024;
/// The one slab class the store reports.
const CLASS: u32 = 1;

pub const CACHEDUMP_NOT_ALLOWED: &[u8] = b"CLIENT_ERROR stats cachedump not allowed\r\n";
pub const METADUMP_PIPELINED: &[u8] = b"ERROR cannot pipeline other commands before metadump\r\n";
pub const METADUMP_BADCLASS: &[u8] = b"BADCLASS invalid class id\r\n";
pub const METADUMP_NOTSTARTED: &[u8] = b"NOTSTARTED no items to crawl\r\n";

/// `stats cachedump <class> <limit>` (class checked below 64 by the parser; limit 0 = no limit
/// but the size bound). Lines: `ITEM <key> [<value bytes> b; <exptime or 0> s]`. Items whose key
/// was given in base64 are skipped, as memcached skips binary keys. Appends END.
pub fn cachedump(store: &Store, class: u32, limit: u32, out: &mut Vec<u8>) {
    let start = out.len();
    if class == CLASS {
        let mut shown = 0u32;
        store.visit_items(|it| {
            if limit != 0 && shown >= limit {
                return false;
            }
            if it.key_binary {
                return true;
            }
            let mark = out.len();
            out.extend_from_slice(b"ITEM ");
            out.extend_from_slice(&it.key);
            out.extend_from_slice(b" [");
            push_u64(out, it.value_len as u64);
            out.extend_from_slice(b" b; ");
            push_u64(out, u64::from(it.exptime));
            out.extend_from_slice(b" s]\r\n");
            // memcached: `if (bufcurr + len + 6 > memlimit) break;` (6 = "END\r\n\0").
            if out.len() - start + 6 > CACHEDUMP_MAX_BYTES {
                out.truncate(mark);
                return false;
            }
            shown += 1;
            true
        });
    }
    out.extend_from_slice(END);
}

/// `lru_crawler metadump`: one `key=<uri-encoded key> exp=<exptime or -1> la=<last access>
/// cas=<cas> fetch=<yes|no> cls=1 size=<bytes>` line per live item, ended by "\n" alone as
/// memcached's crawler writes them, then END. `queued`: replies to earlier pipelined commands
/// are still waiting to be written (memcached's resp_has_stack), which memcached refuses.
pub fn metadump(store: &Store, scope: MetadumpScope, queued: bool, out: &mut Vec<u8>) {
    if queued {
        out.extend_from_slice(METADUMP_PIPELINED);
        return;
    }
    let walk = match scope {
        MetadumpScope::All | MetadumpScope::Hash => true,
        MetadumpScope::Classes(0) => {
            out.extend_from_slice(METADUMP_NOTSTARTED);
            return;
        }
        MetadumpScope::Classes(set) => set & (1 << CLASS) != 0,
        MetadumpScope::BadClass => {
            out.extend_from_slice(METADUMP_BADCLASS);
            return;
        }
    };
    if walk {
        let start = out.len();
        store.visit_items(|it| {
            let mark = out.len();
            metadump_line(it, out);
            if out.len() - start + END.len() > METADUMP_MAX_BYTES {
                out.truncate(mark);
                return false;
            }
            true
        });
    }
    out.extend_from_slice(END);
}

fn metadump_line(it: &DumpItem, out: &mut Vec<u8>) {
    out.extend_from_slice(b"key=");
    uriencode(&it.key, out);
    out.extend_from_slice(b" exp=");
    if it.exptime == 0 {
        out.extend_from_slice(b"-1");
    } else {
        push_u64(out, u64::from(it.exptime));
    }
    out.extend_from_slice(b" la=");
    push_u64(out, u64::from(it.last_access));
    out.extend_from_slice(b" cas=");
    push_u64(out, it.cas);
    out.extend_from_slice(if it.fetched {
        b" fetch=yes cls="
    } else {
        b" fetch=no cls="
    });
    push_u64(out, u64::from(CLASS));
    out.extend_from_slice(b" size=");
    push_u64(out, it.size as u64);
    out.push(b'\n');
}

/// memcached's uriencode: letters, digits and `-._~` as they are, every other byte `%XX`.
fn uriencode(key: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in key {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Expiry, StoreConfig, WriteMode};

    fn store_with(keys: &[&[u8]]) -> Store {
        let s = Store::new(StoreConfig::default());
        for k in keys {
            s.entry(k)
                .store(WriteMode::Set, 0, Expiry::Never, b"xyz", None, false);
        }
        s
    }

    #[test]
    fn uriencode_matches_memcached() {
        let mut out = Vec::new();
        uriencode(b"a-b.c_d~e f%/\x01\xff", &mut out);
        assert_eq!(out, b"a-b.c_d~e%20f%25%2F%01%FF");
    }

    #[test]
    fn cachedump_lines_limit_and_other_classes() {
        let s = store_with(&[b"k1", b"k2", b"k3"]);
        let mut out = Vec::new();
        cachedump(&s, 1, 0, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 4, "{text}");
        assert!(text.contains("ITEM k2 [3 b; 0 s]\r\n"));
        assert!(text.ends_with("END\r\n"));
        let mut out = Vec::new();
        cachedump(&s, 1, 2, &mut out);
        assert_eq!(out.split(|&b| b == b'\n').count(), 4);
        let mut out = Vec::new();
        cachedump(&s, 2, 0, &mut out);
        assert_eq!(out, END);
    }

    #[test]
    fn cachedump_stops_under_two_megabytes() {
        let s = Store::new(StoreConfig {
            mem_limit: 1 << 30,
            ..StoreConfig::default()
        });
        let key = [b'k'; 200];
        for i in 0..20_000u32 {
            let mut k = key.to_vec();
            k.extend_from_slice(i.to_string().as_bytes());
            s.entry(&k)
                .store(WriteMode::Set, 0, Expiry::Never, b"v", None, false);
        }
        let mut out = Vec::new();
        cachedump(&s, 1, 0, &mut out);
        assert!(out.len() < CACHEDUMP_MAX_BYTES, "{}", out.len());
        assert!(out.len() > CACHEDUMP_MAX_BYTES - 300);
        assert!(out.ends_with(b"]\r\nEND\r\n"));
    }

    #[test]
    fn metadump_answers() {
        let s = store_with(&[b"a b"]);
        let mut out = Vec::new();
        metadump(&s, MetadumpScope::All, false, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("key=a%20b exp=-1 la="), "{text}");
        assert!(text.contains(" fetch=no cls=1 size="), "{text}");
        assert!(text.ends_with("\nEND\r\n"), "{text}");
        for (scope, queued, want) in [
            (MetadumpScope::All, true, METADUMP_PIPELINED),
            (MetadumpScope::BadClass, false, METADUMP_BADCLASS),
            (MetadumpScope::Classes(0), false, METADUMP_NOTSTARTED),
            (MetadumpScope::Classes(1 << 2), false, END),
        ] {
            let mut out = Vec::new();
            metadump(&s, scope, queued, &mut out);
            assert_eq!(out, want, "{scope:?}");
        }
        let mut out = Vec::new();
        metadump(&s, MetadumpScope::Classes(1 << 1 | 1 << 5), false, &mut out);
        assert!(out.starts_with(b"key=a%20b "));
    }
}
