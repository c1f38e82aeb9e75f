//! What a parsed meta command looks like (shared by the parser, the request type and the
//! executor).

use crate::protocol::tokens::Tokens as LineTokens;
use std::borrow::Cow;

/// memcached's MFLAG_MAX_OPT_LENGTH: more tokens than this (counting memcached's terminal token)
/// is refused.
pub(super) const MAX_OPT_TOKENS: usize = 20;
/// More tokens than any accepted meta line has; counting stops here.
const MAX_SPANS: usize = MAX_OPT_TOKENS + 4;
/// A meta command line split on spaces.
pub(super) type Tokens<'a> = LineTokens<'a, MAX_SPANS>;

/// memcached's MFLAG_MAX_OPAQUE_LENGTH, including the leading `O`.
pub const MAX_OPAQUE_LEN: usize = 32;

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
