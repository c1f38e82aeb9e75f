//! The memcached text protocol parser, faithful to memcached 1.6.18's proto_text.c.
//!
//! Byte-level quirks are reproduced on purpose because clients (and a differential fuzzer)
//! observe them: tokens are split on spaces only, a line ends at "\n" with one optional "\r"
//! before it, an embedded NUL ends the command (memcached runs `strlen` on it), numbers are
//! read with C `strtol`/`strtoul` semantics and then truncated to 32 bits where memcached
//! stores them in 32-bit variables, and `noreply` is honoured only where memcached looks for
//! it. Keys and data borrow from the input; nothing is allocated per request.

pub use super::reply::TOO_LARGE;
use super::reply::{
    BAD_CHUNK, BAD_DELTA, BAD_EXPTIME, BAD_FORMAT, BAD_LINE, DELETE_USAGE, DETAIL_USAGE, ERROR,
    ILLEGAL_SLAB, MEMLIMIT_NOT_BYTES, MEMLIMIT_TOO_SMALL,
};
use super::tokens::{split_line, Tokens as LineTokens};
use super::{AfterError, Limits, Parsed, Request, ShutdownMode, StatsGroup, StoreMode};
use crate::numbers::{
    safe_strtol as strtol32, safe_strtoul as strtoul32, safe_strtoull as strtoull,
};

/// memcached's read buffer: a line whose "\n" is not within this many bytes never completes
/// there (the connection is closed) unless it is a multiget.
const READ_BUFFER_SIZE: usize = 16384;
/// Our cap on a multiget line still waiting for its "\n" (memcached has none).
pub const MAX_MULTIGET_LINE: usize = 4 << 20;
/// memcached's tokenizer stops after this many tokens; the rest stays unsplit.
const MAX_TOKENS: usize = 23;
/// A text command line split the way memcached's tokenize_command does.
type Tokens<'a> = LineTokens<'a, MAX_TOKENS>;
/// Leading spaces tolerated before "get " when a long line has no newline yet.
const MAX_LEADING_SPACES: usize = 100;
/// sizeof(item) on 64-bit memcached plus the CAS field: the overhead item_size_ok counts.
const ITEM_OVERHEAD: usize = 48 + 8;
/// Slab class count: `stats cachedump` refuses ids at or above it.
const MAX_SLAB_CLASSES: u32 = 64;

/// Parses one request from the front of `input` (the unread bytes of a connection).
pub fn parse<'a>(input: &'a [u8], limits: &Limits) -> Parsed<'a> {
    let Some((line, consumed)) = find_line(input, limits) else {
        return if input.len() > limits.max_line_len && !may_wait(input) {
            close()
        } else {
            Parsed::Incomplete
        };
    };
    let toks = Tokens::new(line);
    // Every command has at least two bytes; an empty line or a one-byte token is ERROR.
    let Some(cmd) = toks.get(0).filter(|c| c.len() >= 2) else {
        return error(ERROR, consumed, false);
    };
    let ntokens = toks.ntokens();
    let l = Line {
        input,
        consumed,
        toks: &toks,
        limits,
    };
    match cmd[0] {
        b'm' if cmd.len() == 2 => match cmd[1] {
            b'g' | b's' | b'd' | b'n' | b'a' | b'e' => super::meta::parse(input, limits),
            _ => error(ERROR, consumed, false),
        },
        b'g' => {
            if ntokens < 3 {
                return error(ERROR, consumed, false);
            }
            match cmd {
                b"get" => l.get(false, false),
                b"gets" => l.get(true, false),
                b"gat" => l.get(false, true),
                b"gats" => l.get(true, true),
                _ => error(ERROR, consumed, false),
            }
        }
        b's' => match cmd {
            b"set" => l.update(StoreKind::Set, ntokens),
            b"stats" => l.stats(),
            b"shutdown" => {
                let mode = match (ntokens, toks.get(1)) {
                    (2, _) => ShutdownMode::Immediate,
                    (3, Some(b"graceful")) => ShutdownMode::Graceful,
                    _ => ShutdownMode::Invalid,
                };
                Parsed::Request(Request::Shutdown(mode), consumed)
            }
            _ => error(ERROR, consumed, false),
        },
        b'a' => match cmd {
            b"add" => l.update(StoreKind::Add, ntokens),
            b"append" => l.update(StoreKind::Append, ntokens),
            _ => error(ERROR, consumed, false),
        },
        b'c' => match cmd {
            b"cas" => l.update(StoreKind::Cas, ntokens),
            b"cache_memlimit" => l.memlimit(),
            _ => error(ERROR, consumed, false),
        },
        b'i' if cmd == b"incr" => l.arith(true),
        b'd' => match cmd {
            b"delete" => l.delete(),
            b"decr" => l.arith(false),
            _ => error(ERROR, consumed, false),
        },
        b't' if cmd == b"touch" => l.touch(),
        b'i' | b't' => error(ERROR, consumed, false),
        _ => match cmd {
            b"replace" => l.update(StoreKind::Replace, ntokens),
            b"prepend" => l.update(StoreKind::Prepend, ntokens),
            // The ancient "binary get": a plain get for compatibility.
            b"bget" if ntokens >= 3 => l.get(false, false),
            b"flush_all" => l.flush_all(),
            b"version" => Parsed::Request(Request::Version, consumed),
            b"quit" => Parsed::Request(Request::Quit, consumed),
            b"verbosity" => l.verbosity(),
            b"refresh_certs" => l.req(Request::RefreshCerts {
                noreply: toks.noreply(),
            }),
            // Known to memcached but not offered here; they still escape the HTTP check below.
            b"bget" | b"lru_crawler" | b"watch" | b"lru" | b"extstore" | b"slabs" => {
                error(ERROR, consumed, false)
            }
            // A browser talking to the cache port: memcached hangs up without a word.
            _ if toks.last().starts_with(b"HTTP/") => close(),
            _ => error(ERROR, consumed, false),
        },
    }
}

pub use super::tokens::keys;

/// Whether the error [`parse`] returned for `input` is a get/gets/gat/gats/bget refused for a
/// key over the length limit. memcached answers that by discarding every reply it had queued
/// and not yet written (conn_release_items culls the whole response chain, so earlier
/// pipelined replies since the last flush vanish) before sending the error.
pub fn discards_pending_replies(input: &[u8], limits: &Limits) -> bool {
    let Some((line, _)) = find_line(input, limits) else {
        return false;
    };
    let is_get = matches!(
        Tokens::new(line).get(0),
        Some(b"get" | b"gets" | b"gat" | b"gats" | b"bget")
    );
    let refused =
        matches!(parse(input, limits), Parsed::Error { reply, .. } if reply == BAD_FORMAT);
    is_get && refused
}

/// For a get-family line refused for an over-long key: the same request cut just before that
/// key. memcached walks the keys in order and only notices the bad one when it reaches it, so the
/// earlier keys were fetched (LRU, stats) and, for gat/gats, touched; only their replies are
/// thrown away. The connection executes this to reproduce those side effects.
pub fn refused_get_prefix<'a>(input: &'a [u8], limits: &Limits) -> Option<Request<'a>> {
    if !discards_pending_replies(input, limits) {
        return None;
    }
    let (line, _) = find_line(input, limits)?;
    let toks = Tokens::new(line);
    let (with_cas, touch) = match toks.get(0)? {
        b"get" | b"bget" => (false, false),
        b"gets" => (true, false),
        b"gat" => (false, true),
        b"gats" => (true, true),
        _ => return None,
    };
    let (skip, exptime) = if touch {
        (2, i64::from(strtol32(toks.get(1)?)?))
    } else {
        (1, 0)
    };
    let keys = toks.after(skip);
    let cut = keys
        .split(|b| *b == b' ')
        .scan(0usize, |pos, k| {
            let start = *pos;
            *pos += k.len() + 1;
            Some((start, k))
        })
        .find(|(_, k)| k.len() > limits.max_key_len)
        .map(|(start, _)| start)?;
    let keys = &keys[..cut];
    Some(if touch {
        Request::GetAndTouch {
            exptime,
            keys,
            with_cas,
        }
    } else {
        Request::Get { keys, with_cas }
    })
}

/// When [`parse`] refused a `set` as too large (an `Error` with `swallow > 0`, which in the
/// text protocol only a too-large storage command produces), memcached also unlinks the key's
/// current value so that a stale copy does not outlive the failed set. Given the same input,
/// this returns that key; `None` for add/replace/append/prepend/cas, which leave it alone.
pub fn too_large_unlink_key(input: &[u8]) -> Option<&[u8]> {
    let (line, _) = find_line(input, &Limits::default())?;
    let toks = Tokens::new(line);
    match (toks.get(0), toks.get(1)) {
        (Some(b"set"), Some(key)) => Some(key),
        _ => None,
    }
}

/// Finds the first command line (see [`split_line`]) and the bytes it occupies. `None` while
/// memcached would still wait.
fn find_line<'a>(input: &'a [u8], limits: &Limits) -> Option<(&'a [u8], usize)> {
    let (line, consumed) = split_line(input)?;
    // memcached never holds more than its read buffer of a line unless it is a multiget.
    if consumed > READ_BUFFER_SIZE.max(limits.max_line_len) && !is_multiget(input) {
        return None;
    }
    Some((line, consumed))
}

/// Whether a line without its newline may keep growing past `max_line_len`.
fn may_wait(input: &[u8]) -> bool {
    is_multiget(input) && input.len() <= MAX_MULTIGET_LINE
}

/// memcached lets only lines starting with "get " or "gets " (after at most 100 spaces) grow.
fn is_multiget(input: &[u8]) -> bool {
    let spaces = input.iter().take_while(|b| **b == b' ').count();
    if spaces > MAX_LEADING_SPACES {
        return false;
    }
    let rest = &input[spaces..];
    rest.starts_with(b"get ") || rest.starts_with(b"gets ")
}

fn close<'a>() -> Parsed<'a> {
    Parsed::Error {
        reply: b"",
        consumed: 0,
        swallow: 0,
        then: AfterError::Close,
    }
}

/// An error reply that consumes the line; with noreply memcached suppresses the reply too.
fn error<'a>(reply: &'static [u8], consumed: usize, noreply: bool) -> Parsed<'a> {
    let reply = if noreply { &b""[..] } else { reply };
    Parsed::Error {
        reply,
        consumed,
        swallow: 0,
        then: AfterError::Continue,
    }
}

#[derive(Clone, Copy, PartialEq)]
enum StoreKind {
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    Cas,
}

/// One complete command line being interpreted.
struct Line<'a, 'b> {
    input: &'a [u8],
    consumed: usize,
    toks: &'b Tokens<'a>,
    limits: &'b Limits,
}

impl<'a> Line<'a, '_> {
    fn req(&self, req: Request<'a>) -> Parsed<'a> {
        Parsed::Request(req, self.consumed)
    }

    fn err(&self, reply: &'static [u8], noreply: bool) -> Parsed<'a> {
        error(reply, self.consumed, noreply)
    }

    fn key_too_long(&self, key: &[u8]) -> bool {
        key.len() > self.limits.max_key_len
    }

    /// set/add/replace/append/prepend/cas (process_update_command).
    fn update(&self, kind: StoreKind, ntokens: usize) -> Parsed<'a> {
        let cas = kind == StoreKind::Cas;
        let want = if cas { 7 } else { 6 };
        if ntokens != want && ntokens != want + 1 {
            return self.err(ERROR, false);
        }
        let t = self.toks;
        let noreply = t.noreply();
        let key = t.at(1);
        if self.key_too_long(key) {
            return self.err(BAD_FORMAT, noreply);
        }
        let (Some(flags), Some(exptime), Some(vlen)) =
            (strtoul32(t.at(2)), strtol32(t.at(3)), strtol32(t.at(4)))
        else {
            return self.err(BAD_FORMAT, noreply);
        };
        let mode = match kind {
            StoreKind::Set => StoreMode::Set,
            StoreKind::Add => StoreMode::Add,
            StoreKind::Replace => StoreMode::Replace,
            StoreKind::Append => StoreMode::Append,
            StoreKind::Prepend => StoreMode::Prepend,
            StoreKind::Cas => match strtoull(t.at(5)) {
                Some(unique) => StoreMode::Cas(unique),
                None => return self.err(BAD_FORMAT, noreply),
            },
        };
        if !(0..=i32::MAX - 2).contains(&vlen) {
            return self.err(BAD_FORMAT, noreply);
        }
        // vlen is in 0..=i32::MAX - 2 here, so the cast is lossless.
        let block = vlen as usize + 2;
        // item_size_ok: header, key + NUL, client flags (stored only when non-zero), data.
        let flags_size = if flags == 0 { 0 } else { 4 };
        let total = ITEM_OVERHEAD + key.len() + 1 + flags_size + block;
        if total > self.limits.item_size_max {
            let reply = if noreply { &b""[..] } else { TOO_LARGE };
            return Parsed::Error {
                reply,
                consumed: self.consumed,
                swallow: block,
                then: AfterError::Continue,
            };
        }
        let Some(chunk) = self.input.get(self.consumed..self.consumed + block) else {
            return Parsed::Incomplete;
        };
        let used = self.consumed + block;
        let (data, end) = chunk.split_at(vlen as usize);
        if end != b"\r\n" {
            // memcached read the whole block into the item, then rejects it; the next
            // command starts right after it.
            return error(BAD_CHUNK, used, noreply);
        }
        let exptime = i64::from(exptime);
        Parsed::Request(
            Request::Store {
                mode,
                key,
                flags,
                exptime,
                data,
                noreply,
            },
            used,
        )
    }

    /// get/gets/gat/gats/bget (process_get_command).
    fn get(&self, with_cas: bool, touch: bool) -> Parsed<'a> {
        let t = self.toks;
        let mut skip = 1;
        let mut exptime = 0;
        if touch {
            match strtol32(t.at(1)) {
                Some(e) => exptime = i64::from(e),
                None => return self.err(BAD_EXPTIME, false),
            }
            skip = 2;
        }
        let keys = t.after(skip);
        // memcached answers a too-long key anywhere in the list with this error alone,
        // dropping the hits it had already gathered.
        if self::keys(keys).any(|k| self.key_too_long(k)) {
            return self.err(BAD_FORMAT, false);
        }
        if touch {
            self.req(Request::GetAndTouch {
                exptime,
                keys,
                with_cas,
            })
        } else {
            self.req(Request::Get { keys, with_cas })
        }
    }

    /// incr/decr (process_arithmetic_command).
    fn arith(&self, incr: bool) -> Parsed<'a> {
        let t = self.toks;
        if !matches!(t.ntokens(), 4 | 5) {
            return self.err(ERROR, false);
        }
        let noreply = t.noreply();
        let key = t.at(1);
        if self.key_too_long(key) {
            return self.err(BAD_FORMAT, noreply);
        }
        match strtoull(t.at(2)) {
            Some(delta) => self.req(Request::Arith {
                key,
                incr,
                delta,
                noreply,
            }),
            None => self.err(BAD_DELTA, noreply),
        }
    }

    /// delete <key> [0] [noreply] (process_delete_command).
    fn delete(&self) -> Parsed<'a> {
        let t = self.toks;
        let ntokens = t.ntokens();
        if !(3..=5).contains(&ntokens) {
            return self.err(ERROR, false);
        }
        let mut noreply = false;
        if ntokens > 3 {
            // The legacy hold time is accepted only as "0".
            let hold_is_zero = t.at(2) == b"0";
            noreply = t.noreply();
            let valid = (ntokens == 4 && (hold_is_zero || noreply))
                || (ntokens == 5 && hold_is_zero && noreply);
            if !valid {
                return self.err(DELETE_USAGE, noreply);
            }
        }
        let key = t.at(1);
        if self.key_too_long(key) {
            return self.err(BAD_FORMAT, noreply);
        }
        self.req(Request::Delete { key, noreply })
    }

    /// touch <key> <exptime> [noreply] (process_touch_command).
    fn touch(&self) -> Parsed<'a> {
        let t = self.toks;
        if !matches!(t.ntokens(), 4 | 5) {
            return self.err(ERROR, false);
        }
        let noreply = t.noreply();
        let key = t.at(1);
        if self.key_too_long(key) {
            return self.err(BAD_FORMAT, noreply);
        }
        match strtol32(t.at(2)) {
            Some(e) => self.req(Request::Touch {
                key,
                exptime: i64::from(e),
                noreply,
            }),
            None => self.err(BAD_EXPTIME, noreply),
        }
    }

    /// flush_all [delay] [noreply] (process_flush_all_command).
    fn flush_all(&self) -> Parsed<'a> {
        let t = self.toks;
        let ntokens = t.ntokens();
        if !(2..=4).contains(&ntokens) {
            return self.err(ERROR, false);
        }
        let noreply = t.noreply();
        let mut delay = 0;
        // The delay is token 1 whenever there is more than "noreply" (extra tokens ignored).
        if ntokens != if noreply { 3 } else { 2 } {
            match strtol32(t.at(1)) {
                Some(d) => delay = i64::from(d),
                None => return self.err(BAD_EXPTIME, noreply),
            }
        }
        self.req(Request::FlushAll { delay, noreply })
    }

    /// verbosity <level> [noreply].
    fn verbosity(&self) -> Parsed<'a> {
        let t = self.toks;
        if !matches!(t.ntokens(), 3 | 4) {
            return self.err(ERROR, false);
        }
        let noreply = t.noreply();
        match strtoul32(t.at(1)) {
            Some(level) => self.req(Request::Verbosity { level, noreply }),
            None => self.err(BAD_FORMAT, noreply),
        }
    }

    /// cache_memlimit <megabytes> [noreply]; the range checks that need no server state are
    /// answered here.
    fn memlimit(&self) -> Parsed<'a> {
        let t = self.toks;
        if !matches!(t.ntokens(), 3 | 4) {
            return self.err(ERROR, false);
        }
        let noreply = t.noreply();
        match strtoul32(t.at(1)) {
            None => self.err(ERROR, noreply),
            Some(mb) if mb < 8 => self.err(MEMLIMIT_TOO_SMALL, noreply),
            Some(mb) if mb > 1_000_000_000 => self.err(MEMLIMIT_NOT_BYTES, noreply),
            Some(mb) => self.req(Request::CacheMemlimit {
                megabytes: u64::from(mb),
                noreply,
            }),
        }
    }

    /// stats [group] (process_stat); extra tokens after a group are ignored.
    fn stats(&self) -> Parsed<'a> {
        let t = self.toks;
        let ntokens = t.ntokens();
        let Some(sub) = t.get(1) else {
            return self.req(Request::Stats(StatsGroup::General));
        };
        let group = match sub {
            b"reset" => StatsGroup::Reset,
            b"detail" => match t.get(2) {
                Some(arg @ (b"on" | b"off" | b"dump")) => StatsGroup::Detail(arg),
                _ => return self.err(DETAIL_USAGE, false),
            },
            b"settings" => StatsGroup::Settings,
            b"cachedump" => {
                if ntokens < 5 {
                    return self.err(BAD_LINE, false);
                }
                let (Some(class), Some(limit)) = (strtoul32(t.at(2)), strtoul32(t.at(3))) else {
                    return self.err(BAD_FORMAT, false);
                };
                if class >= MAX_SLAB_CLASSES {
                    return self.err(ILLEGAL_SLAB, false);
                }
                StatsGroup::CacheDump { class, limit }
            }
            b"conns" => StatsGroup::Conns,
            b"items" => StatsGroup::Items,
            b"slabs" => StatsGroup::Slabs,
            b"sizes" => StatsGroup::Sizes,
            b"replication" => StatsGroup::Replication,
            other => StatsGroup::Other(other),
        };
        self.req(Request::Stats(group))
    }
}

#[cfg(test)]
mod tests;
