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
/// cache_memlimit that the cache cannot take (beyond what was reserved, or the OS refused).
pub const MEMLIMIT_ADJUST_FAILED: &[u8] =
    b"MEMLIMIT_ADJUST_FAILED out of bounds or unable to adjust\r\n";
/// A storage command whose value can never fit (memcached counts `store_too_large`).
pub const TOO_LARGE: &[u8] = b"SERVER_ERROR object too large for cache\r\n";
pub const OPTIONS_TOO_LONG_MG: &[u8] = b"CLIENT_ERROR options flags are too long\r\n";
pub const OPTIONS_TOO_LONG: &[u8] = b"CLIENT_ERROR options flags too long\r\n";
pub const INVALID_OR_DUPLICATE_FLAG: &[u8] = b"CLIENT_ERROR invalid or duplicate flag\r\n";
pub const OPAQUE_TOO_LONG: &[u8] = b"CLIENT_ERROR opaque token too long\r\n";
pub const BAD_MS_MODE: &[u8] = b"CLIENT_ERROR invalid mode for ms M token\r\n";
pub const BAD_MA_MODE: &[u8] = b"CLIENT_ERROR invalid mode for ma M token\r\n";
pub const BAD_TOKEN: &[u8] = b"CLIENT_ERROR bad token in command line format\r\n";
pub const DUPLICATE_FLAG: &[u8] = b"CLIENT_ERROR duplicate flag\r\n";
pub const KEY_DECODE: &[u8] = b"CLIENT_ERROR error decoding key\r\n";
pub const M_TOKEN_LENGTH: &[u8] = b"CLIENT_ERROR incorrect length for M token\r\n";
pub const BAD_INITIAL: &[u8] = b"CLIENT_ERROR invalid numeric initial value\r\n";
pub const BAD_DELTA_VALUE: &[u8] = b"CLIENT_ERROR invalid numeric delta value\r\n";
pub const INVALID_FLAG: &[u8] = b"CLIENT_ERROR invalid flag\r\n";
/// `-Y`: any command but the credentials' `set` before the connection has authenticated.
pub const UNAUTHENTICATED: &[u8] = b"CLIENT_ERROR unauthenticated\r\n";
/// `-Y`: credentials that no entry of the auth file matches.
pub const AUTH_FAILURE: &[u8] = b"CLIENT_ERROR authentication failure\r\n";
/// `-Y`: a credentials block that is not `user password`.
pub const AUTH_BAD_FORMAT: &[u8] = b"CLIENT_ERROR bad authentication token format\r\n";
/// `-Y`: a credentials block not followed by "\r\n".
pub const BAD_TERMINATION: &[u8] = b"CLIENT_ERROR bad command line termination\r\n";

/// Why a parser refused its input. [`ErrorKind::reply`] is the one place that maps a kind to
/// memcached's bytes; what the refusal does besides answering is the error's
/// `Effect` (defined next to `Parsed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// `ERROR`: unknown command or wrong token count.
    Error,
    BadFormat,
    BadChunk,
    BadExptime,
    BadDelta,
    DeleteUsage,
    DetailUsage,
    BadLine,
    IllegalSlab,
    MemlimitTooSmall,
    MemlimitNotBytes,
    TooLarge,
    /// mg's wording for too many flag tokens.
    OptionsTooLongMg,
    /// ms/md/ma's wording for too many flag tokens.
    OptionsTooLong,
    InvalidOrDuplicateFlag,
    OpaqueTooLong,
    BadMsMode,
    BadMaMode,
    BadToken,
    DuplicateFlag,
    KeyDecode,
    MTokenLength,
    BadInitial,
    BadDeltaValue,
    InvalidFlag,
    /// memcached hangs up without a word (a line too long, an HTTP request).
    Hangup,
}

impl ErrorKind {
    /// Every kind, for tables.
    pub const ALL: [ErrorKind; 26] = [
        ErrorKind::Error,
        ErrorKind::BadFormat,
        ErrorKind::BadChunk,
        ErrorKind::BadExptime,
        ErrorKind::BadDelta,
        ErrorKind::DeleteUsage,
        ErrorKind::DetailUsage,
        ErrorKind::BadLine,
        ErrorKind::IllegalSlab,
        ErrorKind::MemlimitTooSmall,
        ErrorKind::MemlimitNotBytes,
        ErrorKind::TooLarge,
        ErrorKind::OptionsTooLongMg,
        ErrorKind::OptionsTooLong,
        ErrorKind::InvalidOrDuplicateFlag,
        ErrorKind::OpaqueTooLong,
        ErrorKind::BadMsMode,
        ErrorKind::BadMaMode,
        ErrorKind::BadToken,
        ErrorKind::DuplicateFlag,
        ErrorKind::KeyDecode,
        ErrorKind::MTokenLength,
        ErrorKind::BadInitial,
        ErrorKind::BadDeltaValue,
        ErrorKind::InvalidFlag,
        ErrorKind::Hangup,
    ];

    /// memcached's exact reply, "\r\n" included (empty for [`ErrorKind::Hangup`]).
    pub const fn reply(self) -> &'static [u8] {
        match self {
            ErrorKind::Error => ERROR,
            ErrorKind::BadFormat => BAD_FORMAT,
            ErrorKind::BadChunk => BAD_CHUNK,
            ErrorKind::BadExptime => BAD_EXPTIME,
            ErrorKind::BadDelta => BAD_DELTA,
            ErrorKind::DeleteUsage => DELETE_USAGE,
            ErrorKind::DetailUsage => DETAIL_USAGE,
            ErrorKind::BadLine => BAD_LINE,
            ErrorKind::IllegalSlab => ILLEGAL_SLAB,
            ErrorKind::MemlimitTooSmall => MEMLIMIT_TOO_SMALL,
            ErrorKind::MemlimitNotBytes => MEMLIMIT_NOT_BYTES,
            ErrorKind::TooLarge => TOO_LARGE,
            ErrorKind::OptionsTooLongMg => OPTIONS_TOO_LONG_MG,
            ErrorKind::OptionsTooLong => OPTIONS_TOO_LONG,
            ErrorKind::InvalidOrDuplicateFlag => INVALID_OR_DUPLICATE_FLAG,
            ErrorKind::OpaqueTooLong => OPAQUE_TOO_LONG,
            ErrorKind::BadMsMode => BAD_MS_MODE,
            ErrorKind::BadMaMode => BAD_MA_MODE,
            ErrorKind::BadToken => BAD_TOKEN,
            ErrorKind::DuplicateFlag => DUPLICATE_FLAG,
            ErrorKind::KeyDecode => KEY_DECODE,
            ErrorKind::MTokenLength => M_TOKEN_LENGTH,
            ErrorKind::BadInitial => BAD_INITIAL,
            ErrorKind::BadDeltaValue => BAD_DELTA_VALUE,
            ErrorKind::InvalidFlag => INVALID_FLAG,
            ErrorKind::Hangup => b"",
        }
    }
}

pub const STORED: &[u8] = b"STORED\r\n";
pub const NOT_STORED: &[u8] = b"NOT_STORED\r\n";
pub const EXISTS: &[u8] = b"EXISTS\r\n";
pub const NOT_FOUND: &[u8] = b"NOT_FOUND\r\n";
pub const DELETED: &[u8] = b"DELETED\r\n";
pub const TOUCHED: &[u8] = b"TOUCHED\r\n";
pub const OK: &[u8] = b"OK\r\n";
pub const END: &[u8] = b"END\r\n";
pub const OUT_OF_MEMORY_STORING: &[u8] = b"SERVER_ERROR out of memory storing object\r\n";
pub const OUT_OF_MEMORY: &[u8] = b"SERVER_ERROR out of memory\r\n";
pub const NON_NUMERIC: &[u8] = b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n";
/// `-o read_buf_mem_limit` refusing a get (memcached's response object allocation failed).
pub const OUT_OF_MEMORY_GET: &[u8] = b"SERVER_ERROR out of memory writing get response\r\n";
/// The accept loop's answer when `-c` connections are open.
pub const TOO_MANY_CONNECTIONS: &[u8] = b"ERROR Too many open connections\r\n";

/// Appends a decimal number without going through `fmt`.
#[inline]
pub fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// One hit of a get: `VALUE <key> <flags> <bytes> [<cas>]\r\n<data>\r\n`.
#[inline]
pub fn write_value(out: &mut Vec<u8>, key: &[u8], flags: u32, value: &[u8], cas: Option<u64>) {
    out.extend_from_slice(b"VALUE ");
    out.extend_from_slice(key);
    out.push(b' ');
    push_u64(out, flags as u64);
    out.push(b' ');
    push_u64(out, value.len() as u64);
    if let Some(cas) = cas {
        out.push(b' ');
        push_u64(out, cas);
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The version we answer `version` with: memcached's, so clients that parse it keep working,
/// tagged like repcached 2.x tagged its own.
pub const VERSION: &str = concat!("1.6.18-repcached-", env!("CARGO_PKG_VERSION"));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_own_reply() {
        for (i, a) in ErrorKind::ALL.iter().enumerate() {
            let r = a.reply();
            assert!(r.is_empty() == (*a == ErrorKind::Hangup), "{a:?}");
            assert!(r.is_empty() || r.ends_with(b"\r\n"), "{a:?}");
            for b in &ErrorKind::ALL[i + 1..] {
                assert_ne!(r, b.reply(), "{a:?} and {b:?}");
            }
        }
    }
}
