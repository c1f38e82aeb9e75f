//! One cached item: key and value in a single allocation, plus the metadata memcached keeps
//! (flags, expiry, CAS, access time) and the version replication orders writes by.

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

#[derive(Debug)]
pub struct Item {
    /// Key then value, `len` bytes, allocated as a `Box<[u8]>`. A thin pointer plus a u32 length
    /// instead of the box's fat pointer saves 8 bytes per item (values are at most -I, < 4 GiB).
    data: NonNull<u8>,
    len: u32,
    key_len: u8,
    /// FETCHED / STALE / TOKEN_SENT / KEY_BINARY.
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
            // SAFETY: Box::into_raw never returns null.
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
        // SAFETY: `data` points to `len` initialised bytes owned by this item.
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
        // SAFETY: as in `bytes`, and `&mut self` makes the access exclusive.
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
        // SAFETY: `data`/`len` came from Box::into_raw of a boxed slice of exactly this length.
        drop(unsafe { Box::from_raw(slice) });
    }
}

// SAFETY: the item owns its bytes exclusively, like the Box<[u8]> it was made from.
unsafe impl Send for Item {}
unsafe impl Sync for Item {}

/// Bytes an item with this key and value would be charged.
pub fn charge_for(key_len: usize, value_len: usize) -> usize {
    key_len + value_len + ITEM_OVERHEAD
}
