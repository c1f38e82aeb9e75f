//! memcached's reply bytes, each defined once: the error replies of the parsers and the
//! constants and encoders the executors answer with.

/// A command memcached does not know, or a known one with the wrong token count.
pub const ERROR: &[u8] = b"ERROR\r\n";
pub const BAD_FORMAT: &[u8] = b"CLIENT_ERROR bad command line format\r\n";
pub const BAD_CHUNK: &[u8] = b"CLIENT_ERROR bad data chunk\r\n";
pub const BAD_EXPTIME: &[u8] = b"CLIENT_ERROR invalid exptime argument\r\n";
pub const BAD_DELTA: &[u8] = b"CLIENT_ERROR invalid numeric delta argument\r\n";
pub const DELETE_USAGE: &[u8] =
    b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n";
pub const DETAIL_USAGE: &[u8] = b"CLIENT_ERROR usage: stats detail on|off|dump\r\n";
pub const BAD_LINE: &[u8] = b"CLIENT_ERROR bad command line\r\n";
pub const ILLEGAL_SLAB: &[u8] = b"CLIENT_ERROR Illegal slab id\r\n";
pub const MEMLIMIT_TOO_SMALL: &[u8] = b"MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m\r\n";
pub const MEMLIMIT_NOT_BYTES: &[u8] =
    b"MEMLIMIT_ADJUST_FAILED input value is megabytes not bytes\r\n";
/// A storage command whose value can never fit (memcached counts `store_too_large`).
pub const TOO_LARGE: &[u8] = b"SERVER_ERROR object too large for cache\r\n";
