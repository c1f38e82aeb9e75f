//! memcached's binary protocol as a sans-IO codec: request frames in, typed requests or typed
//! errors out ([`parse`]), reply frames encoded into a `BytesMut` ([`encode_response`] and one
//! helper per reply memcached sends).
//!
//! The behaviour reproduced is memcached 1.6.18's `proto_bin.c` (the binary protocol is frozen
//! upstream): the order of its checks, the exact status and error text of every refusal, and what
//! the connection does afterwards (keep going, discard the rest of the body, close). Where
//! memcached reads less than the declared body (stat, touch, gat), so do we: the rest of the body
//! is parsed as the next request, as memcached does.
//!
//! Nothing here allocates from a declared length: [`parse`] only borrows from the caller's buffer
//! and answers "need more bytes" until a frame is complete, and a frame it waits for is never
//! longer than [`max_frame_len`].
//!
//! [`lower`] turns the item commands into the typed commands of `protocol::command`. What stays
//! with the executor, because it is connection state rather than framing (all of it pinned by
//! the recorded table in `tests/data/binary_reference.txt`, replayed by `tests/binary_reference.rs`):
//! - memcached queues replies and flushes them when the input runs dry at a request boundary,
//!   after noop and quit, and after every error reply that discards nothing; an error that
//!   discards bytes (too large, unknown opcode with a body) waits for the next flush;
//!   [`Close::Now`] loses the queued replies, [`Close::AfterReply`] flushes them first;
//! - quiet requests suppress their success reply (and the get/gat miss), never an error or a
//!   get/gat hit; the `…K` misses carry the key and do not flush;
//! - store outcomes map as memcached's `complete_update_bin` does: add on an existing key is
//!   "Data exists for key.", replace on a missing one "Not found", append/prepend on a missing
//!   one "Not stored."; a non-zero header CAS makes any store a compare-and-swap;
//! - flush when flushing is disabled (-F) is "Auth failure." without a close.

pub mod lower;
mod request;
mod response;

pub use request::{parse, BinError, BinRequest, Close, Command, ErrorKind, Sasl};
pub use response::{
    encode_counter, encode_error, encode_hit, encode_miss, encode_response, encode_sasl_continue,
    encode_sasl_mechs, encode_sasl_ok, encode_stat, encode_stats_end, encode_success,
    encode_version, SASL_AUTHENTICATED,
};

use super::ParseLimits;

/// Every request and response starts with this fixed header.
pub const HEADER_LEN: usize = 24;
/// First byte of a request; anything else makes memcached close the connection.
pub const REQUEST_MAGIC: u8 = 0x80;
/// First byte of a response.
pub const RESPONSE_MAGIC: u8 = 0x81;
/// memcached's `ITEM_SIZE_MAX_UPPER_LIMIT`: a declared body above it is refused before anything
/// else looks at it (memcached 1.6.18 lacked this check and mishandled bodies of 2 GiB and more;
/// later releases added it, and we follow them).
pub const MAX_BODY_LEN: u32 = 1024 * 1024 * 1024;
/// memcached's `MAX_SASL_MECH_LEN`: a longer mechanism name is refused.
pub const MAX_SASL_MECH_LEN: usize = 32;
/// Bytes memcached's `item_size_ok` charges besides key and value: `sizeof(item)` on 64-bit (48)
/// plus the CAS field (8). The key adds its NUL, the value its "\r\n", non-zero client flags 4.
/// (The text parser applies the same rule; kept local so the two codecs stay independent.)
const ITEM_OVERHEAD: usize = 48 + 8;

/// Opcodes memcached 1.6 knows. Quiet forms (`…Q`) differ from their loud form only in which
/// replies are suppressed; replies always carry the request's own opcode.
pub mod opcode {
    pub const GET: u8 = 0x00;
    pub const SET: u8 = 0x01;
    pub const ADD: u8 = 0x02;
    pub const REPLACE: u8 = 0x03;
    pub const DELETE: u8 = 0x04;
    pub const INCREMENT: u8 = 0x05;
    pub const DECREMENT: u8 = 0x06;
    pub const QUIT: u8 = 0x07;
    pub const FLUSH: u8 = 0x08;
    pub const GETQ: u8 = 0x09;
    pub const NOOP: u8 = 0x0a;
    pub const VERSION: u8 = 0x0b;
    pub const GETK: u8 = 0x0c;
    pub const GETKQ: u8 = 0x0d;
    pub const APPEND: u8 = 0x0e;
    pub const PREPEND: u8 = 0x0f;
    pub const STAT: u8 = 0x10;
    pub const SETQ: u8 = 0x11;
    pub const ADDQ: u8 = 0x12;
    pub const REPLACEQ: u8 = 0x13;
    pub const DELETEQ: u8 = 0x14;
    pub const INCREMENTQ: u8 = 0x15;
    pub const DECREMENTQ: u8 = 0x16;
    pub const QUITQ: u8 = 0x17;
    pub const FLUSHQ: u8 = 0x18;
    pub const APPENDQ: u8 = 0x19;
    pub const PREPENDQ: u8 = 0x1a;
    /// Listed in protocol-binary.xml but answered "Unknown command" by memcached 1.6.
    pub const VERBOSITY: u8 = 0x1b;
    pub const TOUCH: u8 = 0x1c;
    pub const GAT: u8 = 0x1d;
    pub const GATQ: u8 = 0x1e;
    pub const SASL_LIST_MECHS: u8 = 0x20;
    pub const SASL_AUTH: u8 = 0x21;
    pub const SASL_STEP: u8 = 0x22;
    pub const GATK: u8 = 0x23;
    pub const GATKQ: u8 = 0x24;
}

/// Response status codes, with the text memcached's `write_bin_error` puts in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum Status {
    Success = 0x0000,
    KeyNotFound = 0x0001,
    KeyExists = 0x0002,
    TooLarge = 0x0003,
    InvalidArguments = 0x0004,
    NotStored = 0x0005,
    DeltaBadValue = 0x0006,
    AuthError = 0x0020,
    AuthContinue = 0x0021,
    UnknownCommand = 0x0081,
    OutOfMemory = 0x0082,
}

impl Status {
    /// The wire value.
    pub const fn code(self) -> u16 {
        self as u16
    }

    /// The body memcached sends with this status when it has nothing more specific to say
    /// (empty for the two statuses that are not errors).
    pub const fn message(self) -> &'static [u8] {
        match self {
            Status::Success | Status::AuthContinue => b"",
            Status::KeyNotFound => b"Not found",
            Status::KeyExists => b"Data exists for key.",
            Status::TooLarge => b"Too large.",
            Status::InvalidArguments => b"Invalid arguments",
            Status::NotStored => b"Not stored.",
            Status::DeltaBadValue => b"Non-numeric server-side value for incr or decr",
            Status::AuthError => b"Auth failure.",
            Status::UnknownCommand => b"Unknown command",
            Status::OutOfMemory => b"Out of memory",
        }
    }

    /// The status for a wire value, if memcached defines it.
    pub const fn from_code(code: u16) -> Option<Status> {
        Some(match code {
            0x0000 => Status::Success,
            0x0001 => Status::KeyNotFound,
            0x0002 => Status::KeyExists,
            0x0003 => Status::TooLarge,
            0x0004 => Status::InvalidArguments,
            0x0005 => Status::NotStored,
            0x0006 => Status::DeltaBadValue,
            0x0020 => Status::AuthError,
            0x0021 => Status::AuthContinue,
            0x0081 => Status::UnknownCommand,
            0x0082 => Status::OutOfMemory,
            _ => return None,
        })
    }
}

/// The 24-byte header, fields in host order. In a response, `vbucket` holds the status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    pub magic: u8,
    pub opcode: u8,
    pub key_len: u16,
    pub extras_len: u8,
    pub data_type: u8,
    pub vbucket: u16,
    pub body_len: u32,
    pub opaque: u32,
    pub cas: u64,
}

impl Header {
    /// Decodes the first 24 bytes of `buf`; `None` while fewer are there. Any magic is accepted
    /// here (the caller decides what a wrong one means).
    pub fn decode(buf: &[u8]) -> Option<Header> {
        let h: &[u8; HEADER_LEN] = buf.get(..HEADER_LEN)?.try_into().ok()?;
        Some(Header {
            magic: h[0],
            opcode: h[1],
            key_len: u16::from_be_bytes([h[2], h[3]]),
            extras_len: h[4],
            data_type: h[5],
            vbucket: u16::from_be_bytes([h[6], h[7]]),
            body_len: u32::from_be_bytes([h[8], h[9], h[10], h[11]]),
            opaque: u32::from_be_bytes([h[12], h[13], h[14], h[15]]),
            cas: u64::from_be_bytes([h[16], h[17], h[18], h[19], h[20], h[21], h[22], h[23]]),
        })
    }

    /// The 24 bytes of this header.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0] = self.magic;
        b[1] = self.opcode;
        b[2..4].copy_from_slice(&self.key_len.to_be_bytes());
        b[4] = self.extras_len;
        b[5] = self.data_type;
        b[6..8].copy_from_slice(&self.vbucket.to_be_bytes());
        b[8..12].copy_from_slice(&self.body_len.to_be_bytes());
        b[12..16].copy_from_slice(&self.opaque.to_be_bytes());
        b[16..24].copy_from_slice(&self.cas.to_be_bytes());
        b
    }
}

/// `-B auto`: memcached picks the binary protocol for a connection whose first byte is the
/// request magic, the text protocol otherwise.
pub fn is_binary_start(first_byte: u8) -> bool {
    first_byte == REQUEST_MAGIC
}

/// The longest input [`parse`] can ask to see before it answers: a header, the largest extras
/// and key a header can declare (memcached reads both before it checks anything about them),
/// and a value at the item size limit. A connection's read buffer never needs more.
pub fn max_frame_len(limits: &ParseLimits) -> usize {
    let fixed = HEADER_LEN + usize::from(u8::MAX) + usize::from(u16::MAX);
    // A stored value passes the size check only if it fits in an item, so it is below the limit.
    fixed.saturating_add(limits.item_size_max)
}

/// True when memcached would find no room for an item of this key, flags and value length
/// (`item_size_ok` failing): the request is answered "Too large." and its value discarded.
fn item_too_large(limits: &ParseLimits, key_len: usize, flags: u32, value_len: usize) -> bool {
    let flags_size = if flags == 0 { 0 } else { 4 };
    let total = ITEM_OVERHEAD
        .saturating_add(key_len + 1 + flags_size)
        .saturating_add(value_len.saturating_add(2));
    total > limits.item_size_max
}

#[cfg(test)]
mod tests;
