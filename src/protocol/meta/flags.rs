//! memcached's meta flag pre-parser.

use super::base64::base64_decode;
use super::types::{MetaFlags, Tokens};
use crate::numbers::{safe_strtol, safe_strtoul, safe_strtoull};
use crate::protocol::reply::ErrorKind;
use std::borrow::Cow;

/// memcached's `_meta_flag_preparse`: validates every flag token from `start`, refusing
/// duplicates and unknown flags at once, and otherwise reporting the last value error.
pub(super) fn preparse<'a>(
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
