//! Response frames, byte for byte as memcached writes them: data type 0, the request's opcode
//! and opaque echoed, the CAS only where memcached sets one (hits, stores, counters).

use super::{opcode as op, Header, Status, RESPONSE_MAGIC};
use bytes::BufMut;

/// Body of a successful SASL auth or step.
pub const SASL_AUTHENTICATED: &[u8] = b"Authenticated";

/// Appends one response frame. Lengths come from the server (keys it parsed, values it
/// stored), never from a client; a key over 65535 bytes or extras over 255 would not fit the
/// header and are a caller bug.
#[allow(clippy::too_many_arguments)] // the header's fields, in wire order
pub fn encode_response(
    opcode: u8,
    status: Status,
    opaque: u32,
    cas: u64,
    extras: &[u8],
    key: &[u8],
    value: &[u8],
    out: &mut impl BufMut,
) {
    debug_assert!(extras.len() <= usize::from(u8::MAX) && key.len() <= usize::from(u16::MAX));
    let body_len = extras.len() + key.len() + value.len();
    let header = Header {
        magic: RESPONSE_MAGIC,
        opcode,
        key_len: u16::try_from(key.len()).unwrap_or(u16::MAX),
        extras_len: u8::try_from(extras.len()).unwrap_or(u8::MAX),
        data_type: 0,
        vbucket: status.code(),
        body_len: u32::try_from(body_len).unwrap_or(u32::MAX),
        opaque,
        cas,
    };
    out.put_slice(&header.to_bytes());
    out.put_slice(extras);
    out.put_slice(key);
    out.put_slice(value);
}

/// An error reply: the status and memcached's text for it, CAS 0 (memcached's
/// `write_bin_error`). Sent even for quiet requests.
pub fn encode_error(opcode: u8, opaque: u32, status: Status, out: &mut impl BufMut) {
    encode_response(opcode, status, opaque, 0, &[], &[], status.message(), out);
}

/// An empty success: set/add/replace/append/prepend (with the stored item's CAS),
/// delete, flush, noop and quit (CAS 0).
pub fn encode_success(opcode: u8, opaque: u32, cas: u64, out: &mut impl BufMut) {
    encode_response(opcode, Status::Success, opaque, cas, &[], &[], &[], out);
}

/// A hit for get/getq/getk/getkq, gat/gatq/gatk/gatkq or touch, shaped by the request's
/// opcode: 4 bytes of client flags as extras; the key for the `…K` forms; the value for all
/// but touch.
pub fn encode_hit(
    opcode: u8,
    opaque: u32,
    cas: u64,
    flags: u32,
    key: &[u8],
    value: &[u8],
    out: &mut impl BufMut,
) {
    let key: &[u8] = if returns_key(opcode) { key } else { &[] };
    let value: &[u8] = if opcode == op::TOUCH { &[] } else { value };
    let flags = flags.to_be_bytes();
    encode_response(
        opcode,
        Status::Success,
        opaque,
        cas,
        &flags,
        key,
        value,
        out,
    );
}

/// A miss for the get/gat/touch family (not sent at all for the quiet forms): the `…K` forms
/// carry the key as both key and body and no text; the others "Not found".
pub fn encode_miss(opcode: u8, opaque: u32, key: &[u8], out: &mut impl BufMut) {
    if returns_key(opcode) && !key.is_empty() {
        encode_response(opcode, Status::KeyNotFound, opaque, 0, &[], key, &[], out);
    } else {
        encode_error(opcode, opaque, Status::KeyNotFound, out);
    }
}

/// incr/decr: the new value as 8 bytes, with the item's CAS.
pub fn encode_counter(opcode: u8, opaque: u32, cas: u64, value: u64, out: &mut impl BufMut) {
    let value = value.to_be_bytes();
    encode_response(opcode, Status::Success, opaque, cas, &[], &[], &value, out);
}

/// The version string, e.g. "1.6.18".
pub fn encode_version(opaque: u32, version: &[u8], out: &mut impl BufMut) {
    encode_response(
        op::VERSION,
        Status::Success,
        opaque,
        0,
        &[],
        &[],
        version,
        out,
    );
}

/// One statistic: name as key, value as body. memcached stamps every stat frame with the STAT
/// opcode and CAS 0.
pub fn encode_stat(opaque: u32, name: &[u8], value: &[u8], out: &mut impl BufMut) {
    encode_response(op::STAT, Status::Success, opaque, 0, &[], name, value, out);
}

/// The empty STAT frame that ends a stats listing.
pub fn encode_stats_end(opaque: u32, out: &mut impl BufMut) {
    encode_stat(opaque, &[], &[], out);
}

/// SASL list mechanisms: space-separated names (repcached offers "PLAIN").
pub fn encode_sasl_mechs(opaque: u32, mechs: &[u8], out: &mut impl BufMut) {
    encode_response(
        op::SASL_LIST_MECHS,
        Status::Success,
        opaque,
        0,
        &[],
        &[],
        mechs,
        out,
    );
}

/// SASL auth or step succeeded: "Authenticated".
pub fn encode_sasl_ok(opcode: u8, opaque: u32, out: &mut impl BufMut) {
    encode_response(
        opcode,
        Status::Success,
        opaque,
        0,
        &[],
        &[],
        SASL_AUTHENTICATED,
        out,
    );
}

/// SASL auth or step needs another step; `challenge` is the mechanism's data.
pub fn encode_sasl_continue(opcode: u8, opaque: u32, challenge: &[u8], out: &mut impl BufMut) {
    encode_response(
        opcode,
        Status::AuthContinue,
        opaque,
        0,
        &[],
        &[],
        challenge,
        out,
    );
}

fn returns_key(opcode: u8) -> bool {
    matches!(opcode, op::GETK | op::GETKQ | op::GATK | op::GATKQ)
}
