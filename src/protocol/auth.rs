//! memcached 1.6's ascii authentication (`-Y`, proto_text.c `try_read_command_asciiauth`): until
//! a text connection has authenticated, the only thing it may send is
//! `set <any key> <flags> <exptime> <bytes>\r\n` whose data block is `user password\r\n`.
//! [`parse`] reads one such step from the input; checking the credentials and answering is
//! the server's (memcached's replies are in `reply`: STORED, [`reply::AUTH_FAILURE`], ...).
//!
//! memcached's rules, measured against 1.6.18: the line is cut at its first NUL and split on
//! spaces (a trailing `\r` stays in the last token); it is the credentials line when the first
//! token is exactly `set` and there are at least five tokens, the fifth a `safe_strtoul` number
//! (32-bit, so 2^32 + 7 reads as 7). Anything else is answered `CLIENT_ERROR unauthenticated`
//! and the line is dropped, the connection stays open. The block must end in "\r\n"; its
//! content, cut at a NUL, split on spaces, must hold two tokens (more are ignored).
//!
//! Bounds: memcached closes a connection whose buffered input holds no newline after 2048
//! bytes, and one whose credentials block does not fit in its 16 KiB read buffer (it closes
//! once that buffer is full). The same limits here mean the input a connection buffers before
//! it authenticates never exceeds about 16 KiB past a line, whatever `<bytes>` says.
//!
//! One deliberate difference: memcached reads memory outside its buffer for a declared size
//! within 2 of 2^32 or above 2^31 (its `int` length wraps); here such a block is simply too
//! large, and the connection is closed once 16 KiB of it are buffered.

use crate::numbers::safe_strtoul;

/// A line longer than this without a newline closes the connection (memcached: 2048).
pub const MAX_LINE: usize = 2048;
/// memcached's read buffer: a credentials block larger than this can never complete.
pub const MAX_BLOCK: usize = 16 * 1024;

/// One step of the authentication exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step<'a> {
    /// More input is needed.
    Incomplete,
    /// A line that is not the credentials' `set` (answer [`reply::UNAUTHENTICATED`]).
    ///
    /// [`reply::UNAUTHENTICATED`]: super::reply::UNAUTHENTICATED
    Unauthenticated { consumed: usize },
    /// Credentials to check (answer STORED or [`reply::AUTH_FAILURE`]).
    ///
    /// [`reply::AUTH_FAILURE`]: super::reply::AUTH_FAILURE
    Credentials {
        user: &'a [u8],
        password: &'a [u8],
        consumed: usize,
    },
    /// The block did not end in "\r\n" (answer [`reply::BAD_TERMINATION`]).
    ///
    /// [`reply::BAD_TERMINATION`]: super::reply::BAD_TERMINATION
    BadTermination { consumed: usize },
    /// The block did not hold two tokens (answer [`reply::AUTH_BAD_FORMAT`]).
    ///
    /// [`reply::AUTH_BAD_FORMAT`]: super::reply::AUTH_BAD_FORMAT
    BadFormat { consumed: usize },
    /// Close the connection without a word.
    Close,
}

/// Reads one authentication step from the start of `input`.
pub fn parse(input: &[u8]) -> Step<'_> {
    // memcached waits for two bytes: a lone "\n" is not yet a line to it.
    if input.len() < 2 {
        return Step::Incomplete;
    }
    let Some(nl) = memchr::memchr(b'\n', input) else {
        return if input.len() > MAX_LINE {
            Step::Close
        } else {
            Step::Incomplete
        };
    };
    let line = cut_at_nul(&input[..nl]);
    let after_line = nl + 1;
    let mut tokens = line.split(|&b| b == b' ').filter(|t| !t.is_empty());
    let size = match (tokens.next(), tokens.nth(3)) {
        (Some(b"set"), Some(size)) => safe_strtoul(size),
        _ => None,
    };
    let Some(size) = size else {
        return Step::Unauthenticated {
            consumed: after_line,
        };
    };
    // u64: the declared size is the client's, and may be anything up to 2^32 - 1.
    let block_len = size as u64 + 2;
    let buffered = (input.len() - after_line) as u64;
    if block_len > MAX_BLOCK as u64 {
        // Never fits memcached's buffer: it fills up and memcached closes.
        return if buffered >= MAX_BLOCK as u64 {
            Step::Close
        } else {
            Step::Incomplete
        };
    }
    if buffered < block_len {
        return Step::Incomplete;
    }
    // Fits: block_len <= buffered, a usize.
    let block = &input[after_line..after_line + block_len as usize];
    let consumed = after_line + block.len();
    let Some(data) = block.strip_suffix(b"\r\n") else {
        return Step::BadTermination { consumed };
    };
    let mut words = cut_at_nul(data)
        .split(|&b| b == b' ')
        .filter(|t| !t.is_empty());
    match (words.next(), words.next()) {
        (Some(user), Some(password)) => Step::Credentials {
            user,
            password,
            consumed,
        },
        _ => Step::BadFormat { consumed },
    }
}

/// memcached works on C strings here: a NUL ends them.
fn cut_at_nul(s: &[u8]) -> &[u8] {
    match memchr::memchr(0, s) {
        Some(at) => &s[..at],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(input: &[u8]) -> (Vec<u8>, Vec<u8>, usize) {
        match parse(input) {
            Step::Credentials {
                user,
                password,
                consumed,
            } => (user.to_vec(), password.to_vec(), consumed),
            other => panic!("{other:?} for {input:?}"),
        }
    }

    #[test]
    fn credentials() {
        let t = b"set foo 0 0 7\r\nfoo bar\r\nget a\r\n";
        assert_eq!(creds(t), (b"foo".to_vec(), b"bar".to_vec(), 24));
        // Key, flags and exptime are not looked at; noreply changes nothing.
        assert_eq!(creds(b"set k x y 7 noreply\r\nfoo bar\r\n").2, 30);
        // A bare "\n", leading and doubled spaces, a "\r" left in the size token.
        assert_eq!(creds(b"set foo 0 0 7\nfoo bar\r\n").2, 23);
        assert_eq!(creds(b"  set  k 0 0 7 \r\nfoo bar\r\n").0, b"foo");
        assert_eq!(creds(b"set k 0 0 7\r\r\nfoo bar\r\n").0, b"foo");
        // Extra words and spaces in the block; a NUL ends it.
        assert_eq!(creds(b"set k 0 0 11\r\n foo  bar x\r\n").1, b"bar");
        assert_eq!(creds(b"set k 0 0 9\r\nfoo bar\0x\r\n").1, b"bar");
        // The "\r" of a "\r\r\n" ending belongs to the password, as in memcached.
        assert_eq!(creds(b"set k 0 0 8\r\nfoo bar\r\r\n").1, b"bar\r");
        // 32-bit sizes: 2^32 + 7 is 7.
        assert_eq!(creds(b"set k 0 0 4294967303\r\nfoo bar\r\n").1, b"bar");
    }

    #[test]
    fn anything_else_is_unauthenticated() {
        for line in [
            &b"get foo\r\n"[..],
            b"quit\r\n",
            b"mg foo v\r\n",
            b"SET foo 0 0 7\r\n",
            b"set foo 0 0\r\n",
            b"set foo 0 7\r\n",
            b"set foo 0 0 abc\r\n",
            b"set foo 0 0 -1\r\n",
            b"set\tk 0 0 7\r\n",
            b"set k 0 0 \r\n",
            b"set\0 k 0 0 7\r\n",
            b"\r\n",
            b"\nx",
        ] {
            let n = memchr::memchr(b'\n', line).unwrap() + 1;
            assert_eq!(
                parse(line),
                Step::Unauthenticated { consumed: n },
                "{line:?}"
            );
        }
    }

    #[test]
    fn bad_blocks() {
        assert_eq!(
            parse(b"set foo 0 0 2\r\nhi\r\n"),
            Step::BadFormat { consumed: 19 }
        );
        assert_eq!(
            parse(b"set k 0 0 0\r\n\r\n"),
            Step::BadFormat { consumed: 15 }
        );
        assert_eq!(
            parse(b"set k 0 0 9\r\nfoo\0bar x\r\n"),
            Step::BadFormat { consumed: 24 }
        );
        assert_eq!(
            parse(b"set k 0 0 7\r\nfoo\tbar\r\n"),
            Step::BadFormat { consumed: 22 }
        );
        assert_eq!(
            parse(b"set foo 0 0 7\r\nfoo barXYget"),
            Step::BadTermination { consumed: 24 }
        );
    }

    #[test]
    fn waits_and_bounds() {
        assert_eq!(parse(b""), Step::Incomplete);
        assert_eq!(parse(b"\n"), Step::Incomplete);
        assert_eq!(parse(b"set foo 0 0 7\r\nfoo "), Step::Incomplete);
        assert_eq!(parse(&[b'x'; MAX_LINE]), Step::Incomplete);
        assert_eq!(parse(&[b'x'; MAX_LINE + 1]), Step::Close);
        // A block that fits memcached's 16 KiB buffer exactly completes...
        let mut t = b"set k 0 0 16382\r\n".to_vec();
        t.resize(t.len() + 16382, b'a');
        assert_eq!(parse(&t), Step::Incomplete);
        t.extend_from_slice(b"\r\n");
        assert!(matches!(parse(&t), Step::BadFormat { .. }));
        // ... one byte more closes once the buffer is full, and not before.
        let mut t = b"set k 0 0 16383\r\n".to_vec();
        t.resize(t.len() + MAX_BLOCK - 1, b'a');
        assert_eq!(parse(&t), Step::Incomplete);
        t.push(b'a');
        assert_eq!(parse(&t), Step::Close);
        // Even when the whole block has arrived.
        t.extend_from_slice(b"a\r\n");
        assert_eq!(parse(&t), Step::Close);
        // The largest declared size asks for nothing it cannot hold.
        let mut t = b"set k 0 0 4294967295\r\n".to_vec();
        assert_eq!(parse(&t), Step::Incomplete);
        t.resize(t.len() + MAX_BLOCK, b'a');
        assert_eq!(parse(&t), Step::Close);
    }
}
