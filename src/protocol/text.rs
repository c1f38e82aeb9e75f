//! The memcached text protocol parser, faithful to memcached 1.6.18's proto_text.c.
//!
//! Byte-level quirks are reproduced on purpose because clients (and a differential fuzzer)
//! observe them: tokens are split on spaces only, a line ends at "\n" with one optional "\r"
//! before it, an embedded NUL ends the command (memcached runs `strlen` on it), numbers are
//! read with C `strtol`/`strtoul` semantics and then truncated to 32 bits where memcached
//! stores them in 32-bit variables, and `noreply` is honoured only where memcached looks for
//! it. Keys and data borrow from the input; nothing is allocated per request.

use super::reply::ErrorKind;
use super::tokens::{split_line, Tokens as LineTokens};
use super::{
    Effect, LruCrawlerCommand, MetadumpScope, ParseLimits, Parsed, Request, ShutdownMode,
    SlabsCommand, StatsGroup, StoreMode,
};
use crate::numbers::{
    safe_strtol as strtol32, safe_strtoul as strtoul32, safe_strtoull as strtoull,
};
use std::borrow::Cow;

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
pub fn parse<'a>(input: &'a [u8], limits: &ParseLimits) -> Parsed<'a> {
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
        return error(ErrorKind::Error, consumed, false);
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
            b'g' | b's' | b'd' | b'n' | b'a' | b'e' => {
                super::meta::parse_line(input, line, consumed, limits)
            }
            _ => error(ErrorKind::Error, consumed, false),
        },
        b'g' => {
            if ntokens < 3 {
                return error(ErrorKind::Error, consumed, false);
            }
            match cmd {
                b"get" => l.get(false, false),
                b"gets" => l.get(true, false),
                b"gat" => l.get(false, true),
                b"gats" => l.get(true, true),
                _ => error(ErrorKind::Error, consumed, false),
            }
        }
        b's' => match cmd {
            b"set" => l.update(StoreKind::Set, ntokens),
            b"stats" => l.stats(),
            b"slabs" => l.slabs(),
            b"shutdown" => {
                let mode = match (ntokens, toks.get(1)) {
                    (2, _) => ShutdownMode::Immediate,
                    (3, Some(b"graceful")) => ShutdownMode::Graceful,
                    _ => ShutdownMode::Invalid,
                };
                Parsed::Request(Request::Shutdown(mode), consumed)
            }
            _ => error(ErrorKind::Error, consumed, false),
        },
        b'a' => match cmd {
            b"add" => l.update(StoreKind::Add, ntokens),
            b"append" => l.update(StoreKind::Append, ntokens),
            _ => error(ErrorKind::Error, consumed, false),
        },
        b'c' => match cmd {
            b"cas" => l.update(StoreKind::Cas, ntokens),
            b"cache_memlimit" => l.memlimit(),
            _ => error(ErrorKind::Error, consumed, false),
        },
        b'i' if cmd == b"incr" => l.arith(true),
        b'd' => match cmd {
            b"delete" => l.delete(),
            b"decr" => l.arith(false),
            _ => error(ErrorKind::Error, consumed, false),
        },
        b't' if cmd == b"touch" => l.touch(),
        b'i' | b't' => error(ErrorKind::Error, consumed, false),
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
            b"lru_crawler" if ntokens == 4 && toks.get(1) == Some(b"metadump") => {
                l.req(Request::Metadump(metadump_scope(toks.at(2))))
            }
            b"lru_crawler" => l.lru_crawler(),
            // Known to memcached but not offered here; they still escape the HTTP check below.
            b"bget" | b"watch" | b"lru" | b"extstore" => error(ErrorKind::Error, consumed, false),
            // A browser talking to the cache port: memcached hangs up without a word.
            _ if toks.last().starts_with(b"HTTP/") => close(),
            _ => error(ErrorKind::Error, consumed, false),
        },
    }
}

pub use super::tokens::keys;

/// memcached's lru_crawler_crawl: `all`, `hash`, or class ids separated by commas, each a
/// number (safe_strtoul) from 1 (POWER_SMALLEST) to 63 (below MAX_NUMBER_OF_SLAB_CLASSES).
fn metadump_scope(arg: &[u8]) -> MetadumpScope {
    match arg {
        b"all" => MetadumpScope::All,
        b"hash" => MetadumpScope::Hash,
        list => {
            let mut set = 0u64;
            for class in list.split(|&b| b == b',').filter(|c| !c.is_empty()) {
                match strtoul32(class) {
                    Some(id) if (1..MAX_SLAB_CLASSES).contains(&id) => set |= 1 << id,
                    _ => return MetadumpScope::BadClass,
                }
            }
            MetadumpScope::Classes(set)
        }
    }
}

/// For input whose first line is a storage command (text or `ms`) waiting for its data block
/// (`parse` said `Incomplete` with the line complete): how many bytes the line and its block
/// take. memcached reads such a block straight from the socket and no further, so a server that
/// wants to buffer exactly what memcached does reads no more than this.
pub fn block_end(input: &[u8]) -> Option<usize> {
    let (line, consumed) = split_line(input)?;
    let toks = Tokens::new(line);
    let len_at = match toks.get(0)? {
        b"set" | b"add" | b"replace" | b"append" | b"prepend" | b"cas" => 4,
        b"ms" => 2,
        _ => return None,
    };
    let vlen = strtol32(toks.get(len_at)?)?;
    if !(0..=i32::MAX - 2).contains(&vlen) {
        return None;
    }
    // vlen is in 0..=i32::MAX - 2 here, so the cast is lossless.
    Some(consumed + vlen as usize + 2)
}

/// Finds the first command line (see [`split_line`]) and the bytes it occupies. `None` while
/// memcached would still wait.
fn find_line<'a>(input: &'a [u8], limits: &ParseLimits) -> Option<(&'a [u8], usize)> {
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
        kind: ErrorKind::Hangup,
        noreply: false,
        consumed: 0,
        swallow: 0,
        effect: Effect::Close,
    }
}

/// An error reply that consumes the line; with noreply memcached suppresses the reply too.
fn error<'a>(kind: ErrorKind, consumed: usize, noreply: bool) -> Parsed<'a> {
    Parsed::Error {
        kind,
        noreply,
        consumed,
        swallow: 0,
        effect: Effect::None,
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
    limits: &'b ParseLimits,
}

impl<'a> Line<'a, '_> {
    fn req(&self, req: Request<'a>) -> Parsed<'a> {
        Parsed::Request(req, self.consumed)
    }

    fn err(&self, kind: ErrorKind, noreply: bool) -> Parsed<'a> {
        error(kind, self.consumed, noreply)
    }

    fn key_too_long(&self, key: &[u8]) -> bool {
        key.len() > self.limits.max_key_len
    }

    /// set/add/replace/append/prepend/cas (process_update_command).
    fn update(&self, kind: StoreKind, ntokens: usize) -> Parsed<'a> {
        let cas = kind == StoreKind::Cas;
        let want = if cas { 7 } else { 6 };
        if ntokens != want && ntokens != want + 1 {
            return self.err(ErrorKind::Error, false);
        }
        let t = self.toks;
        let noreply = t.noreply();
        let key = t.at(1);
        if self.key_too_long(key) {
            return self.err(ErrorKind::BadFormat, noreply);
        }
        let (Some(flags), Some(exptime), Some(vlen)) =
            (strtoul32(t.at(2)), strtol32(t.at(3)), strtol32(t.at(4)))
        else {
            return self.err(ErrorKind::BadFormat, noreply);
        };
        let mode = match kind {
            StoreKind::Set => StoreMode::Set,
            StoreKind::Add => StoreMode::Add,
            StoreKind::Replace => StoreMode::Replace,
            StoreKind::Append => StoreMode::Append,
            StoreKind::Prepend => StoreMode::Prepend,
            StoreKind::Cas => match strtoull(t.at(5)) {
                Some(unique) => StoreMode::Cas(unique),
                None => return self.err(ErrorKind::BadFormat, noreply),
            },
        };
        if !(0..=i32::MAX - 2).contains(&vlen) {
            return self.err(ErrorKind::BadFormat, noreply);
        }
        // vlen is in 0..=i32::MAX - 2 here, so the cast is lossless.
        let block = vlen as usize + 2;
        // item_size_ok: header, key + NUL, client flags (stored only when non-zero), data.
        let flags_size = if flags == 0 { 0 } else { 4 };
        let total = ITEM_OVERHEAD + key.len() + 1 + flags_size + block;
        if total > self.limits.item_size_max {
            // Only a failed `set` drops the old value; add/replace/... leave it alone.
            let unlink = (kind == StoreKind::Set).then_some(Cow::Borrowed(key));
            return Parsed::Error {
                kind: ErrorKind::TooLarge,
                noreply,
                consumed: self.consumed,
                swallow: block,
                effect: Effect::TooLarge {
                    unlink,
                    counts_set: true,
                },
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
            return error(ErrorKind::BadChunk, used, noreply);
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
                None => return self.err(ErrorKind::BadExptime, false),
            }
            skip = 2;
        }
        let keys = t.after(skip);
        // memcached answers a too-long key anywhere in the list with this error alone,
        // dropping the hits it had already gathered (but not their side effects).
        let mut start = 0;
        for k in keys.split(|b| *b == b' ') {
            if self.key_too_long(k) {
                return Parsed::Error {
                    kind: ErrorKind::BadFormat,
                    noreply: false,
                    consumed: self.consumed,
                    swallow: 0,
                    effect: Effect::RefusedGet {
                        keys: &keys[..start],
                        with_cas,
                        touch: touch.then_some(exptime),
                    },
                };
            }
            start += k.len() + 1;
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
            return self.err(ErrorKind::Error, false);
        }
        let noreply = t.noreply();
        let key = t.at(1);
        if self.key_too_long(key) {
            return self.err(ErrorKind::BadFormat, noreply);
        }
        match strtoull(t.at(2)) {
            Some(delta) => self.req(Request::Arith {
                key,
                incr,
                delta,
                noreply,
            }),
            None => self.err(ErrorKind::BadDelta, noreply),
        }
    }

    /// delete <key> [0] [noreply] (process_delete_command).
    fn delete(&self) -> Parsed<'a> {
        let t = self.toks;
        let ntokens = t.ntokens();
        if !(3..=5).contains(&ntokens) {
            return self.err(ErrorKind::Error, false);
        }
        let mut noreply = false;
        if ntokens > 3 {
            // The legacy hold time is accepted only as "0".
            let hold_is_zero = t.at(2) == b"0";
            noreply = t.noreply();
            let valid = (ntokens == 4 && (hold_is_zero || noreply))
                || (ntokens == 5 && hold_is_zero && noreply);
            if !valid {
                return self.err(ErrorKind::DeleteUsage, noreply);
            }
        }
        let key = t.at(1);
        if self.key_too_long(key) {
            return self.err(ErrorKind::BadFormat, noreply);
        }
        self.req(Request::Delete { key, noreply })
    }

    /// touch <key> <exptime> [noreply] (process_touch_command).
    fn touch(&self) -> Parsed<'a> {
        let t = self.toks;
        if !matches!(t.ntokens(), 4 | 5) {
            return self.err(ErrorKind::Error, false);
        }
        let noreply = t.noreply();
        let key = t.at(1);
        if self.key_too_long(key) {
            return self.err(ErrorKind::BadFormat, noreply);
        }
        match strtol32(t.at(2)) {
            Some(e) => self.req(Request::Touch {
                key,
                exptime: i64::from(e),
                noreply,
            }),
            None => self.err(ErrorKind::BadExptime, noreply),
        }
    }

    /// flush_all [delay] [noreply] (process_flush_all_command).
    fn flush_all(&self) -> Parsed<'a> {
        let t = self.toks;
        let ntokens = t.ntokens();
        if !(2..=4).contains(&ntokens) {
            return self.err(ErrorKind::Error, false);
        }
        let noreply = t.noreply();
        let mut delay = 0;
        // The delay is token 1 whenever there is more than "noreply" (extra tokens ignored).
        if ntokens != if noreply { 3 } else { 2 } {
            match strtol32(t.at(1)) {
                Some(d) => delay = i64::from(d),
                None => return self.err(ErrorKind::BadExptime, noreply),
            }
        }
        self.req(Request::FlushAll { delay, noreply })
    }

    /// verbosity <level> [noreply].
    fn verbosity(&self) -> Parsed<'a> {
        let t = self.toks;
        if !matches!(t.ntokens(), 3 | 4) {
            return self.err(ErrorKind::Error, false);
        }
        let noreply = t.noreply();
        match strtoul32(t.at(1)) {
            Some(level) => self.req(Request::Verbosity { level, noreply }),
            None => self.err(ErrorKind::BadFormat, noreply),
        }
    }

    /// cache_memlimit <megabytes> [noreply]; the range checks that need no server state are
    /// answered here.
    fn memlimit(&self) -> Parsed<'a> {
        let t = self.toks;
        if !matches!(t.ntokens(), 3 | 4) {
            return self.err(ErrorKind::Error, false);
        }
        let noreply = t.noreply();
        match strtoul32(t.at(1)) {
            None => self.err(ErrorKind::Error, noreply),
            Some(mb) if mb < 8 => self.err(ErrorKind::MemlimitTooSmall, noreply),
            Some(mb) if mb > 1_000_000_000 => self.err(ErrorKind::MemlimitNotBytes, noreply),
            Some(mb) => self.req(Request::CacheMemlimit {
                megabytes: u64::from(mb),
                noreply,
            }),
        }
    }

    /// lru_crawler crawl|tocrawl|sleep <arg>, lru_crawler enable|disable (metadump is
    /// parsed before this).
    fn lru_crawler(&self) -> Parsed<'a> {
        let t = self.toks;
        let cmd = match (t.ntokens(), t.get(1)) {
            (4, Some(b"crawl")) => LruCrawlerCommand::Crawl(metadump_scope(t.at(2))),
            (4, Some(sub @ (b"tocrawl" | b"sleep"))) => match strtoul32(t.at(2)) {
                Some(n) if sub == b"sleep" => LruCrawlerCommand::Sleep(n),
                Some(n) => LruCrawlerCommand::Tocrawl(n),
                None => return self.err(ErrorKind::BadFormat, false),
            },
            (3, Some(b"enable")) => LruCrawlerCommand::Enable,
            (3, Some(b"disable")) => LruCrawlerCommand::Disable,
            _ => return self.err(ErrorKind::Error, false),
        };
        self.req(Request::LruCrawler(cmd))
    }

    /// slabs reassign <src> <dst>, slabs automove <0|1|2> | ratio <r> [noreply].
    fn slabs(&self) -> Parsed<'a> {
        let t = self.toks;
        let ntokens = t.ntokens();
        match t.get(1) {
            Some(b"reassign") if ntokens == 5 => {
                let classes = strtol32(t.at(2)).zip(strtol32(t.at(3)));
                self.req(Request::Slabs(SlabsCommand::Reassign { classes }))
            }
            Some(b"automove") if ntokens >= 4 => {
                let noreply = t.noreply();
                if t.at(2) == b"ratio" {
                    let ratio = (ntokens >= 5)
                        .then(|| std::str::from_utf8(t.at(3)).ok())
                        .flatten()
                        .and_then(|r| r.parse::<f64>().ok());
                    return match ratio {
                        Some(r) => self.req(Request::Slabs(SlabsCommand::AutomoveRatio {
                            bits: r.to_bits(),
                            noreply,
                        })),
                        None => self.err(ErrorKind::Error, noreply),
                    };
                }
                match strtoul32(t.at(2)) {
                    Some(level @ 0..=2) => {
                        self.req(Request::Slabs(SlabsCommand::Automove { level, noreply }))
                    }
                    Some(_) => self.err(ErrorKind::Error, noreply),
                    None => self.err(ErrorKind::BadFormat, noreply),
                }
            }
            _ => self.err(ErrorKind::Error, false),
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
                _ => return self.err(ErrorKind::DetailUsage, false),
            },
            b"settings" => StatsGroup::Settings,
            b"cachedump" => {
                if ntokens < 5 {
                    return self.err(ErrorKind::BadLine, false);
                }
                let (Some(class), Some(limit)) = (strtoul32(t.at(2)), strtoul32(t.at(3))) else {
                    return self.err(ErrorKind::BadFormat, false);
                };
                if class >= MAX_SLAB_CLASSES {
                    return self.err(ErrorKind::IllegalSlab, false);
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
