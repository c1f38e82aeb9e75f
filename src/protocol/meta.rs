//! Meta commands (mg, ms, md, ma, mn, me): line and data-block parsing with memcached 1.6.18's
//! exact validation order and error strings.
//!
//! The parser checks everything memcached checks before it touches the cache (token counts, key
//! length, flag syntax, duplicate flags, base64 keys, ms data length and data block). Checks that
//! memcached only makes while building a reply (an over-long opaque in mg/ma) are left to the
//! executor, because memcached has already changed the item by then and so must we.

use super::reply::ErrorKind;
use super::tokens::{split_line, Tokens as LineTokens};
use super::{Effect, Limits, Parsed, Request};
use crate::numbers::{safe_strtol, safe_strtoul, safe_strtoull};
use std::borrow::Cow;

/// memcached's MFLAG_MAX_OPT_LENGTH: more tokens than this (counting memcached's terminal token)
/// is refused.
const MAX_OPT_TOKENS: usize = 20;
/// memcached's MFLAG_MAX_OPAQUE_LENGTH, including the leading `O`.
pub const MAX_OPAQUE_LEN: usize = 32;
/// Bytes memcached charges for an item besides key and data: the item header (48), the key's
/// NUL, the data's "\r\n" and the CAS id (8); client flags add 4 more when non-zero.
const ITEM_HEADER: usize = 48 + 1 + 2 + 8;

/// Which meta command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaCommand {
    Get,
    Set,
    Delete,
    Arithmetic,
}

/// ms `M` modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetMode {
    Set,
    Add,
    Append,
    Prepend,
    Replace,
}

/// Flags understood by memcached's meta flag pre-parser, with their values.
///
/// Times are raw client values already truncated to 32 bits like memcached's `safe_strtol`;
/// negative ones mean "already expired".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MetaFlags {
    /// `b`: the key was base64 and has been decoded.
    pub key_binary: bool,
    /// `q`
    pub no_reply: bool,
    /// `u`
    pub no_update: bool,
    /// `v`
    pub value: bool,
    /// `I`
    pub set_stale: bool,
    /// `T`: new TTL.
    pub ttl: Option<i64>,
    /// `N`: vivify on miss with this TTL.
    pub vivify: Option<i64>,
    /// `R`: recache threshold.
    pub recache: Option<i64>,
    /// `F`: client flags (ms).
    pub client_flags: u32,
    /// `C`: compare CAS.
    pub cas: Option<u64>,
    /// `M`: the raw mode character.
    pub mode: Option<u8>,
    /// `D` (ma), default 1.
    pub delta: u64,
    /// `J` (ma), default 0.
    pub initial: u64,
}

/// One mg/ms/md/ma command. The flag tokens are kept raw because memcached builds replies by
/// walking them in the order the client sent them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaCmd<'a> {
    pub command: MetaCommand,
    /// The key as stored: decoded when `flags.key_binary`.
    pub key: Cow<'a, [u8]>,
    pub flags: MetaFlags,
    /// The flag tokens, space separated, as received.
    pub raw_flags: &'a [u8],
    /// ms only: the data block without its "\r\n".
    pub data: &'a [u8],
    /// ms only: the storage mode after `M`.
    pub set_mode: SetMode,
    /// ma only: true to increment.
    pub incr: bool,
    /// ms only: the data block did not end in "\r\n". memcached still counts the set, so
    /// the executor answers "CLIENT_ERROR bad data chunk" rather than the parser.
    pub bad_chunk: bool,
}

impl<'a> MetaCmd<'a> {
    /// The flag tokens in the order sent.
    pub fn tokens(&self) -> impl Iterator<Item = &'a [u8]> {
        self.raw_flags
            .split(|b| *b == b' ')
            .filter(|t| !t.is_empty())
    }
}

/// A parsed meta request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetaRequest<'a> {
    Cmd(MetaCmd<'a>),
    /// mn
    Noop,
    /// me: debug dump of one item.
    Debug {
        key: Cow<'a, [u8]>,
    },
}

impl MetaRequest<'_> {
    /// `mn`: memcached flushes its queued replies after it.
    pub fn is_noop(&self) -> bool {
        matches!(self, MetaRequest::Noop)
    }
}

fn error(kind: ErrorKind, consumed: usize) -> Parsed<'static> {
    Parsed::Error {
        kind,
        noreply: false,
        consumed,
        swallow: 0,
        effect: Effect::None,
    }
}

/// Parses one meta request from the front of `input` (which starts at a line whose command is
/// mg/ms/md/ma/mn/me).
pub fn parse<'a>(input: &'a [u8], limits: &Limits) -> Parsed<'a> {
    let Some((line, consumed)) = split_line(input) else {
        if input.len() > limits.max_line_len {
            // memcached closes a connection sending a long line that is not a get.
            return Parsed::Error {
                kind: ErrorKind::Hangup,
                noreply: false,
                consumed: input.len(),
                swallow: 0,
                effect: Effect::Close,
            };
        }
        return Parsed::Incomplete;
    };
    parse_line(input, line, consumed, limits)
}

/// [`parse`] for a line already cut by the caller ([`split_line`] of `input`, `consumed` bytes).
pub fn parse_line<'a>(
    input: &'a [u8],
    line: &'a [u8],
    consumed: usize,
    limits: &Limits,
) -> Parsed<'a> {
    let tokens = Tokens::new(line);
    let cmd = tokens.at(0);
    if cmd.len() != 2 || cmd[0] != b'm' {
        return error(ErrorKind::Error, consumed);
    }
    match cmd[1] {
        b'n' => Parsed::Request(Request::Meta(MetaRequest::Noop), consumed),
        b'e' => parse_debug(&tokens, limits, consumed),
        b'g' => parse_cmd(MetaCommand::Get, &tokens, input, consumed, limits),
        b's' => parse_cmd(MetaCommand::Set, &tokens, input, consumed, limits),
        b'd' => parse_cmd(MetaCommand::Delete, &tokens, input, consumed, limits),
        b'a' => parse_cmd(MetaCommand::Arithmetic, &tokens, input, consumed, limits),
        _ => error(ErrorKind::Error, consumed),
    }
}

/// More tokens than any accepted meta line has; counting stops here.
const MAX_SPANS: usize = MAX_OPT_TOKENS + 4;
/// A meta command line split on spaces.
type Tokens<'a> = LineTokens<'a, MAX_SPANS>;

fn parse_debug<'a>(tokens: &Tokens<'a>, limits: &Limits, consumed: usize) -> Parsed<'a> {
    const BAD: ErrorKind = ErrorKind::BadFormat;
    let key = tokens.at(1);
    if tokens.ntokens() < 3 || key.len() > limits.max_key_len {
        return error(BAD, consumed);
    }
    // me only honours a `b` given as the very first flag.
    if tokens.ntokens() >= 4 && tokens.at(2) == b"b" {
        return match base64_decode(key) {
            Some(k) => Parsed::Request(
                Request::Meta(MetaRequest::Debug { key: Cow::Owned(k) }),
                consumed,
            ),
            None => error(BAD, consumed),
        };
    }
    Parsed::Request(
        Request::Meta(MetaRequest::Debug {
            key: Cow::Borrowed(key),
        }),
        consumed,
    )
}

fn parse_cmd<'a>(
    command: MetaCommand,
    tokens: &Tokens<'a>,
    input: &'a [u8],
    consumed: usize,
    limits: &Limits,
) -> Parsed<'a> {
    const BAD: ErrorKind = ErrorKind::BadFormat;
    let n = tokens.ntokens();
    if n < 3 {
        return error(ErrorKind::Error, consumed);
    }
    let raw_key = tokens.at(1);
    if raw_key.len() > limits.max_key_len {
        return error(BAD, consumed);
    }
    let is_set = command == MetaCommand::Set;
    if is_set && n == 3 {
        return error(BAD, consumed);
    }
    if n > MAX_OPT_TOKENS {
        return error(
            if command == MetaCommand::Get {
                ErrorKind::OptionsTooLongMg
            } else {
                ErrorKind::OptionsTooLong
            },
            consumed,
        );
    }
    // ms: the data length comes before the flags; once it is known, every later error also
    // swallows the data block.
    let mut swallow = 0;
    let first_flag = if is_set { 3 } else { 2 };
    if is_set {
        let vlen = match safe_strtol(tokens.at(2)) {
            // safe_strtol stores into an int32_t: the low 32 bits are range-checked.
            Some(v) if (0..=i32::MAX - 2).contains(&v) => v as usize,
            _ => return error(BAD, consumed),
        };
        swallow = vlen + 2;
    }
    let fail = |kind: ErrorKind| Parsed::Error {
        kind,
        noreply: false,
        consumed,
        swallow,
        effect: Effect::None,
    };
    let (flags, key) = match preparse(tokens, first_flag, raw_key) {
        Ok(v) => v,
        Err(msg) => {
            // md and ma report every pre-parse failure the same way.
            return fail(match command {
                MetaCommand::Delete | MetaCommand::Arithmetic => ErrorKind::InvalidOrDuplicateFlag,
                _ => msg,
            });
        }
    };
    let raw_flags = tokens.from(first_flag);
    let mut cmd = MetaCmd {
        command,
        key,
        flags,
        raw_flags,
        data: &[],
        set_mode: SetMode::Set,
        incr: true,
        bad_chunk: false,
    };
    match command {
        MetaCommand::Get => {}
        MetaCommand::Delete => {
            if long_opaque(&cmd) {
                return fail(ErrorKind::OpaqueTooLong);
            }
        }
        MetaCommand::Arithmetic => {
            cmd.incr = match flags.mode {
                None | Some(b'I') | Some(b'+') => true,
                Some(b'D') | Some(b'-') => false,
                Some(_) => return fail(ErrorKind::BadMaMode),
            };
        }
        MetaCommand::Set => {
            // memcached notes an over-long opaque but reports a bad mode first.
            cmd.set_mode = match flags.mode {
                None | Some(b'S') => SetMode::Set,
                Some(b'E') => SetMode::Add,
                Some(b'A') => SetMode::Append,
                Some(b'P') => SetMode::Prepend,
                Some(b'R') => SetMode::Replace,
                Some(_) => return fail(ErrorKind::BadMsMode),
            };
            if long_opaque(&cmd) {
                return fail(ErrorKind::OpaqueTooLong);
            }
            let vlen = swallow - 2;
            let nsuffix = if flags.client_flags == 0 { 0 } else { 4 };
            if ITEM_HEADER + cmd.key.len() + nsuffix + vlen > limits.item_size_max {
                // memcached unlinks the key (decoded) in every mode; it counts no cmd_set.
                return Parsed::Error {
                    kind: ErrorKind::TooLarge,
                    noreply: false,
                    consumed,
                    swallow,
                    effect: Effect::TooLarge {
                        unlink: Some(cmd.key),
                        counts_set: false,
                    },
                };
            }
            let Some(block) = input.get(consumed..consumed + swallow) else {
                return Parsed::Incomplete;
            };
            cmd.bad_chunk = &block[vlen..] != b"\r\n";
            cmd.data = &block[..vlen];
            return Parsed::Request(Request::Meta(MetaRequest::Cmd(cmd)), consumed + swallow);
        }
    }
    Parsed::Request(Request::Meta(MetaRequest::Cmd(cmd)), consumed)
}

fn long_opaque(cmd: &MetaCmd<'_>) -> bool {
    cmd.tokens()
        .any(|t| t[0] == b'O' && t.len() > MAX_OPAQUE_LEN)
}

/// memcached's `_meta_flag_preparse`: validates every flag token from `start`, refusing
/// duplicates and unknown flags at once, and otherwise reporting the last value error.
fn preparse<'a>(
    tokens: &Tokens<'a>,
    start: usize,
    raw_key: &'a [u8],
) -> Result<(MetaFlags, Cow<'a, [u8]>), ErrorKind> {
    const BAD_TOKEN: ErrorKind = ErrorKind::BadToken;
    let mut f = MetaFlags {
        delta: 1,
        ..MetaFlags::default()
    };
    let mut key = Cow::Borrowed(raw_key);
    let mut seen = [false; 128];
    let mut err: Option<ErrorKind> = None;
    let mut i = start;
    loop {
        let t = tokens.at(i);
        if t.is_empty() {
            break;
        }
        i += 1;
        let o = t[0];
        if o >= 127 || seen[o as usize] {
            return Err(ErrorKind::DuplicateFlag);
        }
        seen[o as usize] = true;
        let arg = &t[1..];
        match o {
            b'b' => {
                f.key_binary = true;
                match base64_decode(raw_key) {
                    Some(k) => key = Cow::Owned(k),
                    None => {
                        key = Cow::Borrowed(&[]);
                        err = Some(ErrorKind::KeyDecode);
                    }
                }
            }
            b'N' | b'T' | b'R' => match safe_strtol(arg) {
                // safe_strtol stores a long into an int32_t: the low 32 bits.
                Some(v) => {
                    let v = Some(i64::from(v));
                    match o {
                        b'N' => f.vivify = v,
                        b'T' => f.ttl = v,
                        _ => f.recache = v,
                    }
                }
                None => err = Some(BAD_TOKEN),
            },
            b'l' | b'O' | b'P' | b'L' | b'k' | b's' | b't' | b'c' | b'f' | b'h' => {}
            b'v' => f.value = true,
            b'u' => f.no_update = true,
            b'q' => f.no_reply = true,
            b'F' => match safe_strtoul(arg) {
                Some(v) => f.client_flags = v,
                // memcached does not set its error string here: an earlier flag's message (or
                // the default) is what the client sees.
                None => {
                    err.get_or_insert(ErrorKind::BadFormat);
                }
            },
            b'C' => match safe_strtoull(arg) {
                Some(v) => f.cas = Some(v),
                None => err = Some(BAD_TOKEN),
            },
            b'M' => {
                if t.len() != 2 {
                    err = Some(ErrorKind::MTokenLength);
                } else {
                    f.mode = Some(t[1]);
                }
            }
            b'J' => match safe_strtoull(arg) {
                Some(v) => f.initial = v,
                None => err = Some(ErrorKind::BadInitial),
            },
            b'D' => match safe_strtoull(arg) {
                Some(v) => f.delta = v,
                None => err = Some(ErrorKind::BadDeltaValue),
            },
            b'I' => f.set_stale = true,
            _ => return Err(ErrorKind::InvalidFlag),
        }
    }
    match err {
        Some(e) => Err(e),
        None => Ok((f, key)),
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn b64_value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        b'=' => Some(0),
        _ => None,
    }
}

/// memcached's base64_decode: characters outside the alphabet are skipped, the rest must come
/// in groups of four, and decoding stops after the first group holding padding. None where
/// memcached returns 0 (which it treats as a failure even for an empty result).
pub fn base64_decode(src: &[u8]) -> Option<Vec<u8>> {
    let count = src.iter().filter(|c| b64_value(**c).is_some()).count();
    if count == 0 || count % 4 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(count / 4 * 3);
    let mut block = [0u8; 4];
    let mut n = 0;
    let mut pad = 0;
    for &c in src {
        let Some(v) = b64_value(c) else { continue };
        if c == b'=' {
            pad += 1;
        }
        block[n] = v;
        n += 1;
        if n == 4 {
            out.push((block[0] << 2) | (block[1] >> 4));
            out.push((block[1] << 4) | (block[2] >> 2));
            out.push((block[2] << 6) | block[3]);
            n = 0;
            if pad > 0 {
                match pad {
                    1 => out.truncate(out.len() - 1),
                    2 => out.truncate(out.len() - 2),
                    _ => return None,
                }
                break;
            }
        }
    }
    if out.is_empty() {
        None
    } else {
        Some(out)
    }
}

/// Standard base64 with padding, as memcached prints binary keys.
pub fn base64_encode(src: &[u8], out: &mut Vec<u8>) {
    for chunk in src.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        out.push(B64[(b[0] >> 2) as usize]);
        out.push(B64[(((b[0] & 0x03) << 4) | (b[1] >> 4)) as usize]);
        if chunk.len() > 1 {
            out.push(B64[(((b[1] & 0x0f) << 2) | (b[2] >> 6)) as usize]);
        } else {
            out.push(b'=');
        }
        if chunk.len() > 2 {
            out.push(B64[(b[2] & 0x3f) as usize]);
        } else {
            out.push(b'=');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(input: &[u8]) -> Parsed<'_> {
        parse(input, &Limits::default())
    }

    fn err(input: &[u8]) -> (String, usize, usize) {
        match p(input) {
            Parsed::Error {
                kind,
                consumed,
                swallow,
                ..
            } => (
                String::from_utf8_lossy(kind.reply()).into_owned(),
                consumed,
                swallow,
            ),
            other => panic!("expected error for {input:?}, got {other:?}"),
        }
    }

    fn cmd(input: &[u8]) -> (MetaCmd<'_>, usize) {
        match p(input) {
            Parsed::Request(Request::Meta(MetaRequest::Cmd(c)), n) => (c, n),
            other => panic!("expected command for {input:?}, got {other:?}"),
        }
    }

    #[test]
    fn meta_parse_errors_table() {
        let bad = "CLIENT_ERROR bad command line format\r\n";
        let cases: &[(&[u8], &str, usize, usize)] = &[
            (b"mg\r\n", "ERROR\r\n", 4, 0),
            (b"ms\r\n", "ERROR\r\n", 4, 0),
            (b"mx foo\r\n", "ERROR\r\n", 8, 0),
            (b"me\r\n", bad, 4, 0),
            (b"ms foo\r\n", bad, 8, 0),
            (b"ms foo bar\r\n", bad, 12, 0),
            (b"ms foo -1\r\n", bad, 11, 0),
            (b"mg foo zz\r\n", "CLIENT_ERROR invalid flag\r\n", 11, 0),
            (b"mg foo v v\r\n", "CLIENT_ERROR duplicate flag\r\n", 12, 0),
            (
                b"mg foo Tx\r\n",
                "CLIENT_ERROR bad token in command line format\r\n",
                11,
                0,
            ),
            (
                b"mg foo T\r\n",
                "CLIENT_ERROR bad token in command line format\r\n",
                10,
                0,
            ),
            (
                b"md foo T\r\n",
                "CLIENT_ERROR invalid or duplicate flag\r\n",
                10,
                0,
            ),
            (
                b"ma foo Jx\r\n",
                "CLIENT_ERROR invalid or duplicate flag\r\n",
                11,
                0,
            ),
            (b"ms foo 3 Fx\r\n", bad, 13, 5),
            (b"ms foo 3 F-1\r\n", bad, 14, 5),
            (
                b"ms foo 3 C-1\r\n",
                "CLIENT_ERROR bad token in command line format\r\n",
                14,
                5,
            ),
            (b"ms foo 3 x\r\n", "CLIENT_ERROR invalid flag\r\n", 12, 5),
            (
                b"ms foo 3 b\r\n",
                "CLIENT_ERROR error decoding key\r\n",
                12,
                5,
            ),
            (
                b"ms foo 3 MZ\r\n",
                "CLIENT_ERROR invalid mode for ms M token\r\n",
                13,
                5,
            ),
            (
                b"ms foo 2000000\r\n",
                "SERVER_ERROR object too large for cache\r\n",
                16,
                2000002,
            ),
        ];
        for (input, reply, consumed, swallow) in cases {
            assert_eq!(
                err(input),
                (reply.to_string(), *consumed, *swallow),
                "{input:?}"
            );
        }
        let long_key = format!("mg {} v\r\n", "k".repeat(251));
        assert_eq!(err(long_key.as_bytes()).0, bad);
        let many = format!("mg foo{}\r\n", " O1".repeat(18));
        assert_eq!(
            err(many.as_bytes()).0,
            "CLIENT_ERROR options flags are too long\r\n"
        );
        let many = format!("md foo{}\r\n", " O1".repeat(18));
        assert_eq!(
            err(many.as_bytes()).0,
            "CLIENT_ERROR options flags too long\r\n"
        );
        let dup = format!("mg foo{}\r\n", " v".repeat(30));
        assert_eq!(
            err(dup.as_bytes()).0,
            "CLIENT_ERROR options flags are too long\r\n"
        );
    }

    #[test]
    fn meta_parse_flags() {
        let (c, n) = cmd(b"mg foo v T-1 N30 R5 q u k Oxx\r\nrest");
        assert_eq!(n, 31);
        assert_eq!(c.command, MetaCommand::Get);
        assert_eq!(&*c.key, b"foo");
        assert!(c.flags.value && c.flags.no_reply && c.flags.no_update);
        assert_eq!(
            (c.flags.ttl, c.flags.vivify, c.flags.recache),
            (Some(-1), Some(30), Some(5))
        );
        assert_eq!(c.tokens().collect::<Vec<_>>().len(), 8);
        // safe_strtol truncates to 32 bits.
        let (c, _) = cmd(b"mg foo T4294967297\r\n");
        assert_eq!(c.flags.ttl, Some(1));
        let (c, n) = cmd(b"ms foo 3 F7 C9 I MA T10\r\nabc\r\n");
        assert_eq!(n, 30);
        assert_eq!(c.data, b"abc");
        assert_eq!(
            (c.flags.client_flags, c.flags.cas, c.set_mode),
            (7, Some(9), SetMode::Append)
        );
        assert!(c.flags.set_stale);
        // A data length of 2^32 + 2 is 2 after memcached's int32 truncation.
        let (c, _) = cmd(b"ms foo 4294967298\r\nab\r\n");
        assert_eq!(c.data, b"ab");
        let (c, n) = cmd(b"ms foo 1\r\nabc\r\n");
        assert!(c.bad_chunk);
        assert_eq!(n, 13);
        let (c, _) = cmd(b"ma foo MD D7 J3 N0\r\n");
        assert!(!c.incr);
        assert_eq!(
            (c.flags.delta, c.flags.initial, c.flags.vivify),
            (7, 3, Some(0))
        );
        let (c, _) = cmd(b"ma foo M-\r\n");
        assert!(!c.incr);
        // Bare \n and leading spaces are accepted; a NUL ends the line.
        let (c, n) = cmd(b"  mg  foo   v\n");
        assert_eq!((&*c.key, n), (&b"foo"[..], 14));
        let (c, _) = cmd(b"mg foo\0junk\r\n");
        assert_eq!(c.tokens().count(), 0);
    }

    #[test]
    fn meta_parse_incomplete_and_other() {
        assert_eq!(p(b"mg foo v"), Parsed::Incomplete);
        assert_eq!(p(b"ms foo 5\r\nab"), Parsed::Incomplete);
        assert_eq!(p(b"ms foo 5\r\nabcde\r"), Parsed::Incomplete);
        assert_eq!(
            p(b"mn\r\n"),
            Parsed::Request(Request::Meta(MetaRequest::Noop), 4)
        );
        assert_eq!(
            p(b"me Zm9v b\r\n"),
            Parsed::Request(
                Request::Meta(MetaRequest::Debug {
                    key: Cow::Owned(b"foo".to_vec())
                }),
                11
            )
        );
        assert_eq!(
            err(b"me Zm9 b\r\n").0,
            "CLIENT_ERROR bad command line format\r\n"
        );
        let long = vec![b'a'; 3000];
        assert!(matches!(
            p(&long),
            Parsed::Error {
                effect: Effect::Close,
                ..
            }
        ));
    }

    #[test]
    fn meta_too_large_key() {
        let unlinked = |input: &'static [u8]| match p(input) {
            Parsed::Error {
                effect: Effect::TooLarge { unlink, counts_set },
                kind: ErrorKind::TooLarge,
                ..
            } => {
                assert!(!counts_set);
                unlink
            }
            _ => None,
        };
        assert_eq!(
            unlinked(b"ms foo 2000000 ME\r\n").as_deref(),
            Some(&b"foo"[..])
        );
        assert_eq!(
            unlinked(b"ms Zm9v 2000000 b\r\n").as_deref(),
            Some(&b"foo"[..])
        );
        assert_eq!(unlinked(b"ms foo 2000000 zz\r\n"), None);
        assert_eq!(unlinked(b"ms foo 2 zz\r\n"), None);
        assert_eq!(unlinked(b"mg foo v\r\n"), None);
        assert!(p(b"mn\r\n") == Parsed::Request(Request::Meta(MetaRequest::Noop), 4));
        assert!(MetaRequest::Noop.is_noop());
    }

    #[test]
    fn meta_base64_round_trip_and_quirks() {
        assert_eq!(base64_decode(b"Zm9v").as_deref(), Some(&b"foo"[..]));
        assert_eq!(base64_decode(b"Zm8=").as_deref(), Some(&b"fo"[..]));
        assert_eq!(base64_decode(b"Zg==").as_deref(), Some(&b"f"[..]));
        // Characters outside the alphabet are skipped; data after padding is ignored.
        assert_eq!(base64_decode(b"Zm*9v").as_deref(), Some(&b"foo"[..]));
        assert_eq!(base64_decode(b"Zg==Zm9v").as_deref(), Some(&b"f"[..]));
        assert_eq!(base64_decode(b"Zm9"), None);
        assert_eq!(base64_decode(b"Z==="), None);
        assert_eq!(base64_decode(b"***"), None);
        for len in 0..20 {
            let data: Vec<u8> = (0..len as u8).map(|b| b.wrapping_mul(37)).collect();
            let mut enc = Vec::new();
            base64_encode(&data, &mut enc);
            if len > 0 {
                assert_eq!(base64_decode(&enc), Some(data));
            }
        }
    }

    proptest! {
        #[test]
        fn meta_parse_never_panics(
            cmd in prop::sample::select(vec!["mg", "ms", "md", "ma", "mn", "me", "mz"]),
            key in "[a-zA-Z0-9=+/]{0,12}",
            toks in prop::collection::vec("[a-zA-Z0-9+=/ -]{0,6}", 0..24),
            tail in prop::collection::vec(any::<u8>(), 0..40),
        ) {
            let mut line = format!("{cmd} {key} {}", toks.join(" ")).into_bytes();
            line.extend_from_slice(b"\r\n");
            line.extend_from_slice(&tail);
            let _ = parse(&line, &Limits::default());
            for cut in 0..line.len() {
                let _ = parse(&line[..cut], &Limits::default());
            }
        }

        #[test]
        fn meta_parse_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let mut input = b"m".to_vec();
            input.extend_from_slice(&bytes);
            let _ = parse(&input, &Limits::default());
        }
    }
}
