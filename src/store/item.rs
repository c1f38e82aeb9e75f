//! The layout of one item in the ring (see `arena`): a compact header, the optional fields the
//! item needs, its key, its value, padding to the ring's unit. Only what cannot be derived is
//! stored:
//!
//! ```text
//! offset  size  field
//!      0     8  hlc          version timestamp (changes in place: incr that keeps its length)
//!      8     4  value_len    never changes
//!     12     2  node         version's origin, an index into the store's `NodeTable` (0 = us)
//!     14     2  access       last access, seconds after the write (see `encode_access`)
//!     16     1  key_len      never changes
//!     17     1  shape        which optional fields follow (HAS_*); never changes
//!     18     1  bits         local state: FETCHED, STALE, TOKEN_SENT, KEY_BINARY, COUNTER, ACCESSED
//!     19     1  (spare)
//!     20     -  optional, in this order, each only if its HAS_* bit is set:
//!               flags u32 (if nonzero), exptime u32 (if nonzero), cas u64 (if it is not the one
//!               derived from the version, e.g. meta E), base hlc u64 + node u16 (if the last
//!               full write is not the version, i.e. after incr/decr), touched hlc u64 + node u16
//!               (after a touch)
//!      -     -  key, value, padding to the ring's unit (8 bytes)
//! ```
//!
//! A 15-byte key with a 100-byte value and no optional field takes 20 + 15 + 100 = 135 bytes,
//! 136 in the ring (`ItemRef::charge`, what `stats` bytes adds up and memcached's ITEM_ntotal
//! stands for); its shard's index adds a 4-byte position and a control byte per bucket (at a
//! load of 0.44 to 0.875, 6 to 11 bytes per item). A change that
//! needs a field the item lacks writes a new copy (the old one stays dead in the ring until the
//! tail passes it); a change that fits the item's shape is made in place.
//!
//! This file is safe code over byte slices; the ring's raw memory is in `arena`.

use super::version::{NodeTable, Version};

/// Bytes of the fixed header.
pub const HEADER: usize = 20;

const HLC: usize = 0;
const VLEN: usize = 8;
const NODE: usize = 12;
const ACCESS: usize = 14;
const KLEN: usize = 16;
const SHAPE: usize = 17;
const BITS: usize = 18;

/// Local, never-replicated item state (the `bits` byte).
pub const FETCHED: u8 = 1;
pub const STALE: u8 = 2;
pub const TOKEN_SENT: u8 = 4;
/// The key was given base64-encoded (meta `b`): meta replies print it encoded again.
pub const KEY_BINARY: u8 = 8;
/// The item has PN-counter state in its shard's side table (`Shard::counters`).
pub const COUNTER: u8 = 16;
/// Hit since the tail last passed it: the tail walker moves it to the head instead of evicting
/// it (CLOCK on the log, see `evict`).
pub const ACCESSED: u8 = 32;

const HAS_FLAGS: u8 = 1;
const HAS_EXPTIME: u8 = 2;
const HAS_CAS: u8 = 4;
const HAS_BASE: u8 = 8;
const HAS_TOUCHED: u8 = 16;

const VERSION_LEN: usize = 10;

/// Everything about an item but its key and value: what a write stores and a change rewrites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub flags: u32,
    /// Absolute unix seconds; 0 = never expires.
    pub exptime: u32,
    pub cas: u64,
    /// Version of the latest change of any kind.
    pub version: Version,
    /// Version of the latest full write; incr/decr records name it as their base.
    pub base: Version,
    /// Version of the latest touch (ZERO if none since the last write). Kept apart from
    /// `version` so that replication merges value and expiry field by field.
    pub touched: Version,
    /// Unix seconds of the last access (mg `l` and `h` flags).
    pub last_access: u32,
    pub bits: u8,
}

/// The optional fields `m` needs (`cas_enabled`: whether the derived CAS is the hlc or 0).
pub(super) fn shape_for(m: &Meta, cas_enabled: bool) -> u8 {
    let derived = if cas_enabled { m.version.hlc } else { 0 };
    let mut s = 0;
    if m.flags != 0 {
        s |= HAS_FLAGS;
    }
    if m.exptime != 0 {
        s |= HAS_EXPTIME;
    }
    if m.cas != derived {
        s |= HAS_CAS;
    }
    if m.base != m.version {
        s |= HAS_BASE;
    }
    if m.touched != Version::ZERO {
        s |= HAS_TOUCHED;
    }
    s
}

pub(super) fn opt_len(shape: u8) -> usize {
    let mut n = 0;
    if shape & HAS_FLAGS != 0 {
        n += 4;
    }
    if shape & HAS_EXPTIME != 0 {
        n += 4;
    }
    if shape & HAS_CAS != 0 {
        n += 8;
    }
    if shape & HAS_BASE != 0 {
        n += VERSION_LEN;
    }
    if shape & HAS_TOUCHED != 0 {
        n += VERSION_LEN;
    }
    n
}

/// Whether an item of shape `have` can hold everything a change to shape `need` needs.
pub(super) fn shape_holds(have: u8, need: u8) -> bool {
    need & !have == 0
}

/// Where the header fields that never change after the item is written sit: value_len (bytes
/// 8..12), then key_len and shape (bytes 16..18). The tail walker reads these and the key under
/// the log lock only, without the item's shard lock, while a shard-lock holder may be rewriting
/// the item's other header bytes in place (node and access at 12..16, bits at 18: see
/// [`MUTABLE_RANGES`]). Reading only these two ranges, never the bytes between or after them,
/// keeps the walker's reads disjoint from every in-place write, so no two threads touch the same
/// byte unordered (a data race under Rust's memory model even when the read value is thrown
/// away). Atomics for the mutable bytes would work too, but would cost every header read and
/// write an atomic access for what a narrower read gives for free.
pub(super) const FIXED_RANGES: [(usize, usize); 2] = [(VLEN, 4), (KLEN, 2)];

/// The fixed part every item has, from the header fields that never change (`FIXED_RANGES`:
/// `value_len` is bytes 8..12, `key_shape` bytes 16..18): (key offset, key length, total length
/// before padding).
pub(super) fn extent(value_len: [u8; 4], key_shape: [u8; 2]) -> (usize, usize, usize) {
    let vlen = u32::from_le_bytes(value_len) as usize;
    // key_len at KLEN, shape at SHAPE = KLEN + 1.
    let klen = key_shape[0] as usize;
    let shape = key_shape[SHAPE - KLEN];
    let key_off = HEADER + opt_len(shape);
    (key_off, klen, key_off + klen + vlen)
}

/// [`extent`] of a whole header (`head` starts at the item and holds at least `HEADER` bytes).
pub(super) fn extent_of(head: &[u8]) -> (usize, usize, usize) {
    extent(
        head[VLEN..VLEN + 4].try_into().expect("4 bytes"),
        [head[KLEN], head[SHAPE]],
    )
}

/// Seconds after the write time, up to 32767 exactly, then in steps of 64 s up to ~24 days
/// (saturating): memcached itself refreshes an item's access time only every 60 s.
fn encode_access(written: u32, at: u32) -> u16 {
    let d = at.saturating_sub(written);
    if d < 32768 {
        d as u16
    } else {
        (32768 + ((d - 32768) / 64).min(32767)) as u16
    }
}

fn decode_access(written: u32, v: u16) -> u32 {
    let d = if v < 32768 {
        v as u32
    } else {
        32768 + (v as u32 - 32768) * 64
    };
    written.saturating_add(d)
}

/// Unix seconds of a version's timestamp: the write time access times are counted from.
fn written_secs(hlc: u64) -> u32 {
    ((hlc >> 16) / 1000).min(u32::MAX as u64) as u32
}

fn rd_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn rd_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn rd_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Node indexes of a meta's versions in the store's node table (None: table full).
#[derive(Debug, Clone, Copy)]
pub(super) struct NodeIdx {
    pub version: u16,
    pub base: u16,
    pub touched: u16,
}

impl NodeIdx {
    pub fn of(m: &Meta, nodes: &NodeTable) -> Option<NodeIdx> {
        Some(NodeIdx {
            version: nodes.index(m.version.node)?,
            base: nodes.index(m.base.node)?,
            touched: nodes.index(m.touched.node)?,
        })
    }
}

/// Writes a new item's header (all of it), optional fields and key into `out`, which is
/// exactly `HEADER + opt_len + key.len()` bytes.
pub(super) fn encode_head(
    out: &mut [u8],
    m: &Meta,
    n: NodeIdx,
    shape: u8,
    key: &[u8],
    value_len: usize,
) {
    out[VLEN..VLEN + 4].copy_from_slice(&(value_len as u32).to_le_bytes());
    out[KLEN] = key.len() as u8;
    out[SHAPE] = shape;
    out[19] = 0;
    let opt = opt_len(shape);
    encode_mutable(&mut out[..HEADER + opt], m, n, shape);
    out[HEADER + opt..].copy_from_slice(key);
}

/// Writes the fields of the header that may change in place (hlc, node, access, bits) and the
/// optional fields of `shape` into `head` (the header and optional fields, as one slice).
/// Never writes value_len, key_len or shape.
pub(super) fn encode_mutable(head: &mut [u8], m: &Meta, n: NodeIdx, shape: u8) {
    head[HLC..HLC + 8].copy_from_slice(&m.version.hlc.to_le_bytes());
    head[NODE..NODE + 2].copy_from_slice(&n.version.to_le_bytes());
    let access = encode_access(written_secs(m.version.hlc), m.last_access);
    head[ACCESS..ACCESS + 2].copy_from_slice(&access.to_le_bytes());
    head[BITS] = m.bits;
    let mut at = HEADER;
    let mut put = |bytes: &[u8]| {
        head[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    };
    if shape & HAS_FLAGS != 0 {
        put(&m.flags.to_le_bytes());
    }
    if shape & HAS_EXPTIME != 0 {
        put(&m.exptime.to_le_bytes());
    }
    if shape & HAS_CAS != 0 {
        put(&m.cas.to_le_bytes());
    }
    if shape & HAS_BASE != 0 {
        put(&m.base.hlc.to_le_bytes());
        put(&n.base.to_le_bytes());
    }
    if shape & HAS_TOUCHED != 0 {
        put(&m.touched.hlc.to_le_bytes());
        put(&n.touched.to_le_bytes());
    }
}

/// The longest header with every optional field.
pub(super) const MAX_HEAD: usize = HEADER + 4 + 4 + 8 + 2 * VERSION_LEN;

/// Byte ranges of the header that [`encode_mutable`] writes and an in-place change copies into
/// the ring (value_len, key_len and shape, [`FIXED_RANGES`], stay untouched, so that the tail
/// walker may read them meanwhile): hlc, node + access, bits; then the optional fields from
/// `HEADER` on.
pub(super) const MUTABLE_RANGES: [(usize, usize); 3] = [(HLC, 8), (NODE, 4), (BITS, 1)];

/// A read-only view of one item in the ring, valid while its shard is borrowed.
#[derive(Clone, Copy)]
pub struct ItemRef<'a> {
    b: &'a [u8],
    nodes: &'a NodeTable,
    cas_enabled: bool,
    charge: usize,
}

impl std::fmt::Debug for ItemRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ItemRef")
            .field("key", &self.key())
            .field("value_len", &self.value().len())
            .field("meta", &self.meta())
            .finish()
    }
}

impl<'a> ItemRef<'a> {
    /// `b` is the item's stored bytes (unpadded); `charge` its padded size in the ring.
    pub(super) fn new(
        b: &'a [u8],
        nodes: &'a NodeTable,
        cas_enabled: bool,
        charge: usize,
    ) -> ItemRef<'a> {
        ItemRef {
            b,
            nodes,
            cas_enabled,
            charge,
        }
    }

    pub(super) fn shape(&self) -> u8 {
        self.b[SHAPE]
    }

    fn key_off(&self) -> usize {
        HEADER + opt_len(self.shape())
    }

    /// Offset of the optional field `bit`, if the item has it.
    fn opt(&self, bit: u8) -> Option<usize> {
        let s = self.shape();
        if s & bit == 0 {
            return None;
        }
        let mut at = HEADER;
        for (b, len) in [
            (HAS_FLAGS, 4),
            (HAS_EXPTIME, 4),
            (HAS_CAS, 8),
            (HAS_BASE, VERSION_LEN),
            (HAS_TOUCHED, VERSION_LEN),
        ] {
            if b == bit {
                return Some(at);
            }
            if s & b != 0 {
                at += len;
            }
        }
        None
    }

    fn version_at(&self, at: usize) -> Version {
        Version::new(rd_u64(self.b, at), self.nodes.id(rd_u16(self.b, at + 8)))
    }

    pub fn key(&self) -> &'a [u8] {
        let k = self.key_off();
        &self.b[k..k + self.b[KLEN] as usize]
    }

    pub fn value(&self) -> &'a [u8] {
        &self.b[self.key_off() + self.b[KLEN] as usize..]
    }

    /// Offset of the value within the item.
    pub(super) fn value_off(&self) -> usize {
        self.key_off() + self.b[KLEN] as usize
    }

    pub fn flags(&self) -> u32 {
        self.opt(HAS_FLAGS).map_or(0, |at| rd_u32(self.b, at))
    }

    /// Absolute unix seconds; 0 = never expires.
    pub fn exptime(&self) -> u32 {
        self.opt(HAS_EXPTIME).map_or(0, |at| rd_u32(self.b, at))
    }

    pub fn cas(&self) -> u64 {
        match self.opt(HAS_CAS) {
            Some(at) => rd_u64(self.b, at),
            None if self.cas_enabled => rd_u64(self.b, HLC),
            None => 0,
        }
    }

    pub fn version(&self) -> Version {
        Version::new(rd_u64(self.b, HLC), self.nodes.id(rd_u16(self.b, NODE)))
    }

    pub fn base(&self) -> Version {
        match self.opt(HAS_BASE) {
            Some(at) => self.version_at(at),
            None => self.version(),
        }
    }

    pub fn touched(&self) -> Version {
        self.opt(HAS_TOUCHED)
            .map_or(Version::ZERO, |at| self.version_at(at))
    }

    /// Unix seconds of the last access.
    pub fn last_access(&self) -> u32 {
        decode_access(written_secs(rd_u64(self.b, HLC)), rd_u16(self.b, ACCESS))
    }

    pub fn bits(&self) -> u8 {
        self.b[BITS]
    }

    pub fn has(&self, bit: u8) -> bool {
        self.bits() & bit != 0
    }

    pub fn is_expired(&self, now: u32) -> bool {
        let e = self.exptime();
        e != 0 && e <= now
    }

    /// Bytes the item takes in the ring (header, optional fields, key, value, padding):
    /// memcached's ITEM_ntotal for this layout, what `stats` bytes adds up.
    pub fn charge(&self) -> usize {
        self.charge
    }

    pub fn meta(&self) -> Meta {
        Meta {
            flags: self.flags(),
            exptime: self.exptime(),
            cas: self.cas(),
            version: self.version(),
            base: self.base(),
            touched: self.touched(),
            last_access: self.last_access(),
            bits: self.bits(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(v: Version) -> Meta {
        Meta {
            flags: 0,
            exptime: 0,
            cas: v.hlc,
            version: v,
            base: v,
            touched: Version::ZERO,
            last_access: written_secs(v.hlc) + 5,
            bits: 0,
        }
    }

    fn build(m: &Meta, key: &[u8], value: &[u8], nodes: &NodeTable) -> Vec<u8> {
        let shape = shape_for(m, true);
        let n = NodeIdx::of(m, nodes).unwrap();
        let head = HEADER + opt_len(shape) + key.len();
        let mut b = vec![0u8; head + value.len()];
        encode_head(&mut b[..head], m, n, shape, key, value.len());
        b[head..].copy_from_slice(value);
        b
    }

    #[test]
    fn a_plain_item_takes_the_fixed_header_only() {
        let nodes = NodeTable::new(1);
        let v = Version::new(1_700_000_000_000 << 16, 1);
        let m = meta(v);
        let b = build(&m, b"key:0000000001", &[b'x'; 100], &nodes);
        assert_eq!(b.len(), HEADER + 14 + 100);
        let it = ItemRef::new(&b, &nodes, true, 136);
        assert_eq!(it.key(), b"key:0000000001");
        assert_eq!(it.value(), &[b'x'; 100][..]);
        assert_eq!(it.meta(), m);
        assert_eq!(extent_of(&b), (HEADER, 14, b.len()));
        let [(v, _), (k, _)] = FIXED_RANGES;
        let fixed = extent(b[v..v + 4].try_into().unwrap(), [b[k], b[k + 1]]);
        assert_eq!(fixed, (HEADER, 14, b.len()));
    }

    #[test]
    fn optional_fields_round_trip() {
        let nodes = NodeTable::new(1);
        assert!(nodes.admit(7) && nodes.admit(9));
        let v = Version::new(1_700_000_000_000 << 16, 7);
        let m = Meta {
            flags: 0xdead_beef,
            exptime: 1_800_000_000,
            cas: 42,
            version: v,
            base: Version::new(v.hlc - 3, 9),
            touched: Version::new(v.hlc + 1, 1),
            last_access: written_secs(v.hlc) + 100_000,
            bits: FETCHED | ACCESSED,
        };
        let b = build(&m, b"k", b"12", &nodes);
        let it = ItemRef::new(&b, &nodes, true, 0);
        let mut want = m;
        // Past 32767 s access times are kept in steps of 64 s.
        want.last_access = written_secs(v.hlc) + 32768 + (100_000 - 32768) / 64 * 64;
        assert_eq!(it.meta(), want);
        assert_eq!(it.key(), b"k");
        assert_eq!(it.value(), b"12");
        assert!(shape_holds(it.shape(), shape_for(&meta(v), true)));
    }

    #[test]
    fn cas_is_derived_unless_it_differs() {
        let nodes = NodeTable::new(1);
        let v = Version::new(5 << 16, 1);
        let mut m = meta(v);
        m.cas = 0;
        assert_eq!(shape_for(&m, false), 0, "-C: cas 0 is derived");
        assert_eq!(shape_for(&m, true), HAS_CAS);
        let b = build(&meta(v), b"k", b"v", &nodes);
        assert_eq!(ItemRef::new(&b, &nodes, false, 0).cas(), 0);
        let hlc = v.hlc;
        assert_eq!(ItemRef::new(&b, &nodes, true, 0).cas(), hlc);
    }
}
