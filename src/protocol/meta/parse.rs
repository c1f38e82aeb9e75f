//! The meta command line: token counts, key length, ms data length and block, in memcached's
//! order.

use super::base64::base64_decode;
use super::flags::preparse;
use super::types::{
    MetaCmd, MetaCommand, MetaRequest, SetMode, Tokens, MAX_OPAQUE_LEN, MAX_OPT_TOKENS,
};
use crate::numbers::safe_strtol;
use crate::protocol::reply::ErrorKind;
use crate::protocol::tokens::split_line;
use crate::protocol::{Effect, ParseLimits, Parsed, Request};
use std::borrow::Cow;

/// Bytes memcached charges for an item besides key and data: the item header (48), the key's
/// NUL, the data's "\r\n" and the CAS id (8); client flags add 4 more when non-zero.
const ITEM_HEADER: usize = 48 + 1 + 2 + 8;

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
pub fn parse<'a>(input: &'a [u8], limits: &ParseLimits) -> Parsed<'a> {
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
    limits: &ParseLimits,
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

fn parse_debug<'a>(tokens: &Tokens<'a>, limits: &ParseLimits, consumed: usize) -> Parsed<'a> {
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
    limits: &ParseLimits,
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
