//! Sans-IO wire protocols: bytes in, `Request` out; nothing here touches a socket or the store.
//!
//! Every parser takes the unread part of a connection's input buffer and answers with a
//! [`Parsed`]: a complete request borrowing from that buffer and how many bytes it used, a
//! request for more bytes, or an error: its [`ErrorKind`] (whose `reply()` is memcached's exact
//! bytes, in [`reply`]) and its [`Effect`], the side effects memcached applies for it, as data
//! for the executor. One `Request` type serves the text and meta formats; every protocol lowers
//! the requests that touch an item to the typed commands of [`command`], which one executor
//! runs. `tokens` is the one line splitter and tokenizer; the C number rules
//! live in [`crate::numbers`]. Nothing here imports the server or the store.

pub use command::StoreMode;
pub use reply::ErrorKind;
use std::borrow::Cow;

pub mod auth;
pub mod binary;
pub mod command;
pub mod meta;
pub mod reply;
pub mod text;
pub mod tokens;

/// Limits on client input, applied by the text, meta and binary parsers. Replicated frames have
/// their own, `replication::frame::FrameLimits`.
#[derive(Debug, Clone, Copy)]
pub struct ParseLimits {
    /// Longest key in bytes (memcached: KEY_MAX_LENGTH = 250).
    pub max_key_len: usize,
    /// Largest value accepted (-I); larger data blocks are swallowed and refused.
    pub item_size_max: usize,
    /// A command line longer than this without a newline closes the connection (2048), except
    /// for get/gets, whose key lists may be longer.
    pub max_line_len: usize,
}

impl Default for ParseLimits {
    fn default() -> Self {
        ParseLimits {
            max_key_len: 250,
            item_size_max: 1024 * 1024,
            max_line_len: 2048,
        }
    }
}

/// Outcome of parsing from the front of the input buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A complete request and the number of input bytes it used (line and data block).
    Request(Request<'a>, usize),
    /// Not enough input yet; call again with more bytes.
    Incomplete,
    /// Bad input: answer `kind.reply()` unless `noreply` (memcached mutes some errors of a
    /// command that asked for noreply), drop `consumed` bytes, discard a further `swallow`
    /// bytes as they arrive (a refused data block), and apply `effect`.
    Error {
        kind: ErrorKind,
        noreply: bool,
        consumed: usize,
        swallow: usize,
        effect: Effect<'a>,
    },
}

/// What memcached does on a refusal besides answering it: data the executor applies, so that
/// it never has to look at reply bytes or the input again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect<'a> {
    None,
    /// Hang up: memcached throws away the replies it queued and has not written, and closes.
    Close,
    /// A storage command refused as too large: memcached counts `store_too_large` (the text
    /// protocol also `cmd_set`) and unlinks the key's current value, so that no stale copy
    /// outlives the failed write (text `set` only; `ms` in every mode, key decoded).
    TooLarge {
        unlink: Option<Cow<'a, [u8]>>,
        counts_set: bool,
    },
    /// A get/gets/gat/gats/bget refused for an over-long key. memcached walks the keys in order
    /// and only notices the bad one when it reaches it: `keys` (those before it) were fetched
    /// (LRU, stats) and, with `touch`, touched; then it discards every reply it had queued and
    /// not written (conn_release_items culls the whole response chain) before the error.
    RefusedGet {
        keys: &'a [u8],
        with_cas: bool,
        touch: Option<i64>,
    },
}

/// Which `stats` listing was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatsGroup<'a> {
    General,
    Settings,
    Items,
    Slabs,
    Sizes,
    Conns,
    Replication,
    Reset,
    /// `stats detail on|off|dump` (the argument, already validated).
    Detail(&'a [u8]),
    /// `stats cachedump <class> <limit>` (class already checked to be below 64).
    CacheDump {
        class: u32,
        limit: u32,
    },
    /// Anything else (the sub-command token): memcached answers `ERROR` for unknown groups,
    /// but also knows `sizes_enable`, `sizes_disable` and `extstore`.
    Other(&'a [u8]),
}

/// What `lru_crawler metadump` was asked to walk (memcached's lru_crawler_crawl argument).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadumpScope {
    /// `all`: every class's LRU.
    All,
    /// `hash`: the hash table (the same items, another order).
    Hash,
    /// A comma-separated list of slab class ids (1..=63), as a bit set; empty tokens are
    /// skipped as strtok does, so `,` is the empty set (memcached: NOTSTARTED).
    Classes(u64),
    /// A class that is not a number from 1 to 63 (memcached: BADCLASS).
    BadClass,
}

/// `lru_crawler` sub-commands other than metadump (memcached's process_lru_crawler_command);
/// the argument errors that need no server state are answered by the parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LruCrawlerCommand {
    Enable,
    Disable,
    /// `crawl <all|classes>`: reclaim expired items now.
    Crawl(MetadumpScope),
    /// `sleep <microseconds>` (the executor refuses more than a second, as memcached).
    Sleep(u32),
    /// `tocrawl <items>`.
    Tocrawl(u32),
}

/// `slabs reassign|automove` (memcached's process_slabs_command).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlabsCommand {
    /// `slabs reassign <src> <dst>`; None when they are not numbers (memcached looks at them
    /// only when slab reassignment is on).
    Reassign { classes: Option<(i32, i32)> },
    /// `slabs automove <0|1|2>`.
    Automove { level: u32, noreply: bool },
    /// `slabs automove ratio <ratio>`, the ratio as f64 bits (Request is Eq).
    AutomoveRatio { bits: u64, noreply: bool },
}

/// The form of a `shutdown` command; memcached refuses all of them unless started with `-A`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownMode {
    /// `shutdown`
    Immediate,
    /// `shutdown graceful`
    Graceful,
    /// Any other arguments: "CLIENT_ERROR invalid shutdown mode" when shutdown is enabled.
    Invalid,
}

/// One client request, borrowing keys and data from the input buffer.
///
/// Expiration times are raw client values (seconds, relative up to 30 days, else absolute unix
/// time, negative means already expired); the store converts them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request<'a> {
    Store {
        mode: StoreMode,
        key: &'a [u8],
        flags: u32,
        exptime: i64,
        /// The data block without its trailing "\r\n".
        data: &'a [u8],
        noreply: bool,
    },
    /// get/gets: `keys` is the raw, space-separated key list (see [`tokens::keys`]).
    Get {
        keys: &'a [u8],
        with_cas: bool,
    },
    /// gat/gats: get and touch.
    GetAndTouch {
        exptime: i64,
        keys: &'a [u8],
        with_cas: bool,
    },
    Delete {
        key: &'a [u8],
        noreply: bool,
    },
    /// incr/decr.
    Arith {
        key: &'a [u8],
        incr: bool,
        delta: u64,
        noreply: bool,
    },
    Touch {
        key: &'a [u8],
        exptime: i64,
        noreply: bool,
    },
    FlushAll {
        delay: i64,
        noreply: bool,
    },
    Version,
    Verbosity {
        level: u32,
        noreply: bool,
    },
    Quit,
    Shutdown(ShutdownMode),
    CacheMemlimit {
        megabytes: u64,
        noreply: bool,
    },
    Stats(StatsGroup<'a>),
    /// `lru_crawler metadump <all|hash|classes>`: one line of metadata per item.
    Metadump(MetadumpScope),
    LruCrawler(LruCrawlerCommand),
    Slabs(SlabsCommand),
    /// refresh_certs [noreply]: re-read the TLS certificate and key (memcached 1.6 with TLS).
    RefreshCerts {
        noreply: bool,
    },
    /// mg/ms/md/ma/mn/me: see [`meta`].
    Meta(meta::types::MetaRequest<'a>),
}
