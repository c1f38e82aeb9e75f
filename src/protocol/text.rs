//! The memcached text protocol parser (placeholder until the parser lands).

use super::{Limits, Parsed};

/// Parses one request from the front of `input`.
pub fn parse<'a>(_input: &'a [u8], _limits: &Limits) -> Parsed<'a> {
    Parsed::Incomplete
}

/// Iterates over the keys of a get/gets/gat/gats key list.
pub fn keys(raw: &[u8]) -> impl Iterator<Item = &[u8]> {
    raw.split(|b| *b == b' ').filter(|k| !k.is_empty())
}

/// memcached's reply to a data block larger than -I.
pub const TOO_LARGE: &[u8] = b"SERVER_ERROR object too large for cache\r\n";
