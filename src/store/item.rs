//! One cached item: key and value in a single allocation, plus the metadata memcached keeps
//! (flags, expiry, CAS, access time) and the version replication orders writes by.

// The item keeps key and value behind a thin pointer (8 bytes saved per item, see `Item::data`);
// the raw-pointer code that owns that allocation is here and nowhere else in the store.
#![allow(unsafe_code)]

use super::version::Version;
use std::ptr::NonNull;

/// Bytes charged per item on top of key and value: the 80-byte slab node (with its vector's
/// growth slack), the allocator's header and rounding, and the hash index slot. Measured: 1M
/// items of 15+100 bytes take 219.5 bytes each in RSS (BENCHMARKS.md), so -m tracks the resident
/// memory the items really take.
pub const ITEM_OVERHEAD: usize = 104;

/// Local, never-replicated item state used by the meta protocol.
pub const FETCHED: u8 = 1;
pub const STALE: u8 = 2;
pub const TOKEN_SENT: u8 = 4;
/// The key was given base64-encoded (meta `b`): meta replies print it encoded again.
pub const KEY_BINARY: u8 = 8;
/// The item has PN-counter state in its shard's side table (`Shard::counters`).
pub const COUNTER: u8 = 16;

#[derive(Debug)]
pub struct Item {
    /// Key then value, `len` bytes, allocated as a `Box<[u8]>`. A thin pointer plus a u32 length
    /// instead of the box's fat pointer saves 8 bytes per item (values are at most -I, < 4 GiB).
    data: NonNull<u8>,
    len: u32,
    key_len: u8,
    /// FETCHED / STALE / TOKEN_SENT / KEY_BINARY / COUNTER.
    pub bits: u8,
    pub flags: u32,
    /// Absolute unix seconds; 0 = never expires.
    pub exptime: u32,
    /// Unix seconds of the last access (mg `l` and `h` flags).
    pub last_access: u32,
    pub cas: u64,
    /// Version of the latest change of any kind.
    pub version: Version,
    /// Version of the latest full write; incr/decr records name it as their base.
    pub base: Version,
    /// Version of the latest touch (ZERO if none since the last write). Kept apart from
    /// `version` so that replication merges value and expiry field by field: a touch on one node
    /// never makes an older copy of the value win over a newer write made elsewhere.
    pub touched: Version,
}

impl Item {
    pub fn new(key: &[u8], value: &[u8]) -> Item {
        Item::from_parts(key, &[value])
    }

    /// Builds the item from a key and value pieces laid end to end (append/prepend).
    pub fn from_parts(key: &[u8], value_parts: &[&[u8]]) -> Item {
        let vlen: usize = value_parts.iter().map(|p| p.len()).sum();
        let mut data = Vec::with_capacity(key.len() + vlen);
        data.extend_from_slice(key);
        for part in value_parts {
            data.extend_from_slice(part);
        }
        let len = u32::try_from(data.len()).expect("item larger than 4 GiB");
        let raw = Box::into_raw(data.into_boxed_slice()) as *mut u8;
        Item {
            // SAFETY: Box::into_raw never returns null (an empty boxed slice gives a dangling,
            // well-aligned, non-null pointer).
            data: unsafe { NonNull::new_unchecked(raw) },
            len,
            key_len: key.len() as u8,
            bits: 0,
            flags: 0,
            exptime: 0,
            last_access: 0,
            cas: 0,
            version: Version::ZERO,
            base: Version::ZERO,
            touched: Version::ZERO,
        }
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `data` and `len` come from a Box<[u8]> of exactly `len` initialised bytes that
        // this item owns until Drop and never reallocates; the shared borrow of `self` keeps any
        // `&mut` (value_mut) from existing while the returned slice lives.
        unsafe { std::slice::from_raw_parts(self.data.as_ptr(), self.len as usize) }
    }

    pub fn key(&self) -> &[u8] {
        &self.bytes()[..self.key_len as usize]
    }

    pub fn value(&self) -> &[u8] {
        &self.bytes()[self.key_len as usize..]
    }

    /// Overwrites the value in place; the caller guarantees the length is unchanged.
    pub fn value_mut(&mut self) -> &mut [u8] {
        let key_len = self.key_len as usize;
        // SAFETY: the same allocation as in `bytes`; `&mut self` makes this the only reference
        // to it for the slice's lifetime.
        let all = unsafe { std::slice::from_raw_parts_mut(self.data.as_ptr(), self.len as usize) };
        &mut all[key_len..]
    }

    /// Bytes charged against the memory limit.
    pub fn charge(&self) -> usize {
        self.len as usize + ITEM_OVERHEAD
    }

    pub fn is_expired(&self, now: u32) -> bool {
        self.exptime != 0 && self.exptime <= now
    }

    pub fn has(&self, bit: u8) -> bool {
        self.bits & bit != 0
    }
}

impl Drop for Item {
    fn drop(&mut self) {
        let slice = std::ptr::slice_from_raw_parts_mut(self.data.as_ptr(), self.len as usize);
        // SAFETY: `data`/`len` came from Box::into_raw of a boxed slice of exactly this length,
        // nothing else frees it, and no reference into it outlives `&mut self`.
        drop(unsafe { Box::from_raw(slice) });
    }
}

// SAFETY: the item owns its bytes exclusively, like the Box<[u8]> it was made from, and hands
// out references only through `&self`/`&mut self`; Box<[u8]> is Send.
unsafe impl Send for Item {}
// SAFETY: through `&Item` the bytes are only read (`bytes`), never written: no interior
// mutability, so shared references from several threads are fine, as for Box<[u8]>.
unsafe impl Sync for Item {}

/// Bytes an item with this key and value would be charged.
pub fn charge_for(key_len: usize, value_len: usize) -> usize {
    key_len + value_len + ITEM_OVERHEAD
}

#[cfg(test)]
mod tests {
    //! The raw-pointer paths (construction, both slice views, drop, Send/Sync), small enough for
    //! `cargo +nightly miri test --lib store::item` to check them for undefined behaviour.
    use super::*;

    #[test]
    fn key_and_value_round_trip() {
        let item = Item::from_parts(b"key", &[b"val", b"", b"ue"]);
        assert_eq!(item.key(), b"key");
        assert_eq!(item.value(), b"value");
        assert_eq!(item.charge(), 8 + ITEM_OVERHEAD);
        assert_eq!(item.charge(), charge_for(3, 5));
    }

    #[test]
    fn item_and_slab_node_sizes() {
        // ITEM_OVERHEAD is measured with these sizes; counters live in a side table so that
        // items never incremented pay nothing for them.
        assert_eq!(std::mem::size_of::<Item>(), 72);
        assert_eq!(std::mem::size_of::<Option<Item>>(), 72);
    }

    #[test]
    fn empty_key_and_value() {
        let item = Item::new(b"", b"");
        assert!(item.key().is_empty());
        assert!(item.value().is_empty());
        let item = Item::new(b"k", b"");
        assert_eq!(item.key(), b"k");
        assert!(item.value().is_empty());
    }

    #[test]
    fn value_mut_writes_in_place_and_leaves_the_key() {
        let mut item = Item::new(b"counter", b"0041");
        item.value_mut().copy_from_slice(b"0042");
        assert_eq!(item.value(), b"0042");
        assert_eq!(item.key(), b"counter");
    }

    #[test]
    fn items_move_and_are_shared_across_threads() {
        let item = std::sync::Arc::new(Item::new(b"k", &[7u8; 300]));
        let seen = std::thread::scope(|s| {
            let a = s.spawn(|| item.value().iter().map(|&b| b as usize).sum::<usize>());
            let b = s.spawn(|| item.key().len());
            (a.join().unwrap(), b.join().unwrap())
        });
        assert_eq!(seen, (7 * 300, 1));
        let moved = std::thread::spawn(move || Item::new(b"x", b"y"))
            .join()
            .unwrap();
        assert_eq!(moved.value(), b"y");
    }
}
