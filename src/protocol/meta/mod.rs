//! Meta commands (mg, ms, md, ma, mn, me): line and data-block parsing with memcached 1.6.18's
//! exact validation order and error strings.
//!
//! The parser checks everything memcached checks before it touches the cache (token counts, key
//! length, flag syntax, duplicate flags, base64 keys, ms data length and data block). Checks that
//! memcached only makes while building a reply (an over-long opaque in mg/ma) are left to the
//! executor, because memcached has already changed the item by then and so must we.
//!
//! `types` holds what a parsed command looks like, `parse` the command line rules, `flags` the
//! flag pre-parser, `base64` memcached's key encoding, `lower` the typed commands a meta
//! command means.

mod base64;
mod flags;
mod lower;
mod parse;
pub mod types;

pub use base64::{base64_decode, base64_encode};
pub use parse::{parse, parse_line};
pub use types::{MetaCmd, MetaCommand, MetaFlags, MetaRequest, SetMode, MAX_OPAQUE_LEN};

#[cfg(test)]
mod tests;
