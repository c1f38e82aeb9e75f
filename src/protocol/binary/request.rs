//! Request frames: [`parse`] checks a frame in the order memcached's `try_read_command_binary`
//! and `dispatch_bin_command` do and answers with a typed [`Command`] or a [`BinError`] that
//! carries what memcached does about it.

use super::{item_too_large, opcode as op, Header, ParseLimits, Status, HEADER_LEN, MAX_BODY_LEN};
use super::{MAX_SASL_MECH_LEN, REQUEST_MAGIC};
use crate::protocol::StoreMode;

/// The connection's SASL state, which memcached checks between the framing checks and the
/// per-command ones (so it decides, for instance, whether an unknown opcode gets "Unknown
/// command" or "Auth failure.").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sasl {
    /// Started without `-S`: the SASL opcodes are unknown commands.
    Disabled,
    /// `-S` and this connection has not authenticated: only SASL and version are served.
    Required,
    /// `-S` and this connection has authenticated.
    Authenticated,
}

/// A request memcached would execute. Keys, values and SASL data borrow from the input.
///
/// `quiet` marks the `…Q` opcodes: memcached then suppresses the success reply, and for
/// get/gat also the miss, but still sends every error and every get/gat hit.
/// Expiration times are the raw unsigned 32-bit values (relative up to 30 days, else absolute
/// unix time; never negative in this protocol).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    /// get, getq, getk, getkq.
    Get {
        key: &'a [u8],
        quiet: bool,
        with_key: bool,
    },
    /// touch: the hit reply carries the flags but no value.
    Touch {
        key: &'a [u8],
        exptime: u32,
    },
    /// gat, gatq, gatk, gatkq.
    Gat {
        key: &'a [u8],
        exptime: u32,
        quiet: bool,
        with_key: bool,
    },
    /// set, add, replace and their quiet forms (the CAS is in [`BinRequest::cas`]); `mode` is
    /// only ever Set, Add or Replace here (the header CAS rule is `lower::store`'s).
    Store {
        mode: StoreMode,
        key: &'a [u8],
        flags: u32,
        exptime: u32,
        value: &'a [u8],
        quiet: bool,
    },
    /// append, prepend and their quiet forms (memcached checks a non-zero CAS here too).
    Concat {
        append: bool,
        key: &'a [u8],
        value: &'a [u8],
        quiet: bool,
    },
    /// delete, deleteq (a non-zero CAS must match).
    Delete {
        key: &'a [u8],
        quiet: bool,
    },
    /// increment, decrement and their quiet forms.
    Counter {
        incr: bool,
        key: &'a [u8],
        delta: u64,
        /// The value a miss creates; `None` when the expiration was 0xffffffff, memcached's
        /// "don't create" mark, and a miss is answered "Not found".
        initial: Option<u64>,
        /// Expiration of an item created by a miss.
        exptime: u32,
        quiet: bool,
    },
    /// quit, quitq: reply (unless quiet), then close.
    Quit {
        quiet: bool,
    },
    /// flush, flushq; `delay` 0 means now.
    Flush {
        delay: u32,
        quiet: bool,
    },
    /// Answered with an empty success; memcached flushes its pending replies on it.
    Noop,
    Version,
    /// `key` is the stats group (empty for the general stats), e.g. "settings", "items",
    /// "slabs", "conns", "reset", "detail on".
    Stat {
        key: &'a [u8],
    },
    /// Only parsed when SASL is enabled (otherwise memcached answers "Unknown command").
    SaslListMechs,
    SaslAuth {
        mech: &'a [u8],
        data: &'a [u8],
    },
    SaslStep {
        mech: &'a [u8],
        data: &'a [u8],
    },
}

/// A parsed request and the header fields the executor needs for the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BinRequest<'a> {
    /// The request's own opcode (quiet forms included): replies echo it.
    pub opcode: u8,
    /// Echoed in every reply to this request.
    pub opaque: u32,
    /// CAS from the header; 0 means none.
    pub cas: u64,
    pub command: Command<'a>,
}

/// What the connection does once an error reply (if any) is queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// Keep serving the connection.
    No,
    /// Write every queued reply including this one, then close (memcached's
    /// `close_after_write`).
    AfterReply,
    /// Close at once, without a reply; replies queued but not yet flushed are lost, as in
    /// memcached (`conn_closing`).
    Now,
}

/// Why a frame was refused. Each kind fixes the status memcached sends and what follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    #[error("first byte is not the request magic 0x80")]
    BadMagic,
    #[error("key and extras are longer than the declared body")]
    BodyShorterThanKey,
    #[error("declared body is over the 1 GiB upper limit")]
    BodyTooLong,
    #[error("authentication required")]
    AuthRequired,
    #[error("key longer than the key length limit")]
    KeyTooLong,
    #[error("extras, key or body lengths not allowed for this opcode")]
    BadLayout,
    #[error("unknown opcode")]
    UnknownCommand,
    #[error("value too large for an item")]
    TooLarge,
    #[error("SASL mechanism name too long")]
    SaslMechTooLong,
    #[error("SASL data does not fit in an item")]
    SaslNoMemory,
}

impl ErrorKind {
    /// The status memcached replies with (`None`: it closes without a reply).
    pub const fn status(self) -> Option<Status> {
        Some(match self {
            ErrorKind::BadMagic => return None,
            ErrorKind::BodyShorterThanKey | ErrorKind::UnknownCommand => Status::UnknownCommand,
            ErrorKind::BodyTooLong
            | ErrorKind::KeyTooLong
            | ErrorKind::BadLayout
            | ErrorKind::SaslMechTooLong => Status::InvalidArguments,
            ErrorKind::AuthRequired => Status::AuthError,
            ErrorKind::TooLarge => Status::TooLarge,
            ErrorKind::SaslNoMemory => Status::OutOfMemory,
        })
    }
}

/// A refused frame and exactly what memcached does about it: reply with [`Self::status`]
/// and its standard text (see [`BinError::encode`]), drop `consumed` bytes from the input, then
/// discard `swallow` more bytes as they arrive (some may already be in the buffer), then
/// [`Close`] or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BinError<'a> {
    pub kind: ErrorKind,
    /// The request's opcode, echoed in the reply.
    pub opcode: u8,
    /// The request's opaque, echoed in the reply.
    pub opaque: u32,
    pub consumed: usize,
    /// Bytes to discard after `consumed`. For an unknown opcode memcached discards the whole
    /// declared body length *after* having read the extras and key, so it eats that many bytes
    /// of whatever follows; reproduced because the next request's framing depends on it.
    pub swallow: usize,
    pub close: Close,
    /// A set refused as too large also unlinks the key's current item (memcached will not
    /// leave a stale value behind a failed set).
    pub unlink: Option<&'a [u8]>,
}

impl BinError<'_> {
    /// The reply status, `None` when memcached closes silently.
    pub const fn status(&self) -> Option<Status> {
        self.kind.status()
    }

    /// Appends memcached's reply for this error (nothing for a silent close).
    pub fn encode(&self, out: &mut impl bytes::BufMut) {
        if let Some(status) = self.status() {
            super::encode_error(self.opcode, self.opaque, status, out);
        }
    }
}

/// What [`parse`] answers: see there.
pub type ParseResult<'a> = Result<Option<(BinRequest<'a>, usize)>, BinError<'a>>;

/// Parses one request from the front of `buf`.
///
/// `Ok(None)`: more bytes are needed (never more than [`super::max_frame_len`] in all).
/// `Ok(Some((request, consumed)))`: execute `request`, then drop `consumed` bytes; `consumed`
/// can be less than the frame's declared length (stat, touch and gat read only extras and key).
/// `Err(e)`: a refusal, see [`BinError`].
pub fn parse<'a>(buf: &'a [u8], limits: &ParseLimits, sasl: Sasl) -> ParseResult<'a> {
    let Some(h) = Header::decode(buf) else {
        return Ok(None);
    };
    let mut refuse = Refuse {
        h: &h,
        consumed: 0,
        swallow: 0,
    };
    if h.magic != REQUEST_MAGIC {
        return Err(refuse.err(ErrorKind::BadMagic, Close::Now));
    }
    let ext_len = usize::from(h.extras_len);
    let key_len = usize::from(h.key_len);
    // memcached reads extras and key before looking at any length, even when they overrun the
    // body: at most 24 + 255 + 65535 bytes.
    let fixed = HEADER_LEN + ext_len + key_len;
    let Some(frame) = buf.get(HEADER_LEN..fixed) else {
        return Ok(None);
    };
    let (extras, key) = frame.split_at(ext_len);
    refuse.consumed = fixed;
    // u32 -> usize is lossless on every platform we build for; saturate rather than assume.
    let body_len = usize::try_from(h.body_len).unwrap_or(usize::MAX);
    if key_len + ext_len > body_len {
        return Err(refuse.err(ErrorKind::BodyShorterThanKey, Close::AfterReply));
    }
    if h.body_len > MAX_BODY_LEN {
        return Err(refuse.err(ErrorKind::BodyTooLong, Close::AfterReply));
    }
    if sasl == Sasl::Required && !auth_exempt(h.opcode) {
        return Err(refuse.err(ErrorKind::AuthRequired, Close::AfterReply));
    }
    if key_len > limits.max_key_len {
        return Err(refuse.err(ErrorKind::KeyTooLong, Close::AfterReply));
    }
    let f = Frame {
        h: &h,
        buf,
        extras,
        key,
        fixed,
        value_len: body_len - ext_len - key_len,
        quiet: is_quiet(h.opcode),
        refuse,
    };
    let bad_layout = f.refuse.err(ErrorKind::BadLayout, Close::AfterReply);
    // Commands that read nothing past the key: done here.
    let done = |command| accept(&h, command, fixed);
    let empty = ext_len == 0 && key_len == 0 && body_len == 0;
    let key_only = ext_len == 0 && key_len > 0 && f.value_len == 0;
    let quiet = f.quiet;
    match h.opcode {
        op::VERSION | op::NOOP | op::QUIT | op::QUITQ | op::SASL_LIST_MECHS if !empty => {
            Err(bad_layout)
        }
        op::VERSION => done(Command::Version),
        op::NOOP => done(Command::Noop),
        op::QUIT | op::QUITQ => done(Command::Quit { quiet }),
        op::FLUSH | op::FLUSHQ => match extras {
            [] if key_len == 0 && f.value_len == 0 => done(Command::Flush { delay: 0, quiet }),
            &[a, b, c, d] if key_len == 0 && f.value_len == 0 => done(Command::Flush {
                delay: u32::from_be_bytes([a, b, c, d]),
                quiet,
            }),
            _ => Err(bad_layout),
        },
        op::GET | op::GETQ | op::GETK | op::GETKQ if key_only => done(Command::Get {
            key,
            quiet,
            with_key: matches!(h.opcode, op::GETK | op::GETKQ),
        }),
        op::DELETE | op::DELETEQ if key_only => done(Command::Delete { key, quiet }),
        op::GET | op::GETQ | op::GETK | op::GETKQ | op::DELETE | op::DELETEQ => Err(bad_layout),
        op::INCREMENT | op::INCREMENTQ | op::DECREMENT | op::DECREMENTQ => f.counter(),
        op::TOUCH | op::GAT | op::GATQ | op::GATK | op::GATKQ => f.touch(),
        // Only the key (the group name, possibly empty) is read: a longer body is left in the
        // input and read as the next request, as memcached does.
        op::STAT if ext_len == 0 => done(Command::Stat { key }),
        op::STAT => Err(bad_layout),
        op::SET | op::SETQ | op::ADD | op::ADDQ | op::REPLACE | op::REPLACEQ => f.store(limits),
        op::APPEND | op::APPENDQ | op::PREPEND | op::PREPENDQ => f.concat(limits),
        op::SASL_LIST_MECHS | op::SASL_AUTH | op::SASL_STEP if sasl == Sasl::Disabled => {
            f.sasl_disabled()
        }
        op::SASL_LIST_MECHS => done(Command::SaslListMechs),
        op::SASL_AUTH | op::SASL_STEP => f.sasl(limits),
        _ => {
            // Unknown opcode: memcached swallows the whole declared body on top of the extras
            // and key it has already read.
            let mut refuse = f.refuse;
            refuse.swallow = body_len;
            Err(refuse.err(ErrorKind::UnknownCommand, Close::No))
        }
    }
}

/// A frame whose header, extras and key are in and passed the checks every opcode shares:
/// the per-command layout checks.
struct Frame<'a, 'h> {
    h: &'h Header,
    buf: &'a [u8],
    extras: &'a [u8],
    key: &'a [u8],
    /// Where the key ends in `buf`.
    fixed: usize,
    /// Bytes of the body after extras and key (the value, for the commands that have one).
    value_len: usize,
    quiet: bool,
    refuse: Refuse<'h>,
}

impl<'a> Frame<'a, '_> {
    fn bad_layout(&self) -> ParseResult<'a> {
        Err(self.refuse.err(ErrorKind::BadLayout, Close::AfterReply))
    }

    /// The value after extras and key, `None` until it is all in.
    fn value(&self) -> Option<&'a [u8]> {
        self.buf.get(self.fixed..self.fixed + self.value_len)
    }

    /// A refusal that discards the value first.
    fn refuse_value(&self, kind: ErrorKind) -> BinError<'a> {
        let mut refuse = self.refuse;
        refuse.swallow = self.value_len;
        refuse.err(kind, Close::No)
    }

    fn counter(&self) -> ParseResult<'a> {
        let Ok(ext) = <&[u8; 20]>::try_from(self.extras) else {
            return self.bad_layout();
        };
        if self.key.is_empty() || self.value_len != 0 {
            return self.bad_layout();
        }
        let [d0, d1, d2, d3, d4, d5, d6, d7, i0, i1, i2, i3, i4, i5, i6, i7, e0, e1, e2, e3] = *ext;
        let initial = u64::from_be_bytes([i0, i1, i2, i3, i4, i5, i6, i7]);
        let exptime = u32::from_be_bytes([e0, e1, e2, e3]);
        let command = Command::Counter {
            incr: matches!(self.h.opcode, op::INCREMENT | op::INCREMENTQ),
            key: self.key,
            delta: u64::from_be_bytes([d0, d1, d2, d3, d4, d5, d6, d7]),
            initial: (exptime != u32::MAX).then_some(initial),
            exptime,
            quiet: self.quiet,
        };
        accept(self.h, command, self.fixed)
    }

    /// touch and gat: only the extras and a key are required; a longer body is left in the
    /// input and read as the next request, as memcached does.
    fn touch(&self) -> ParseResult<'a> {
        let &[a, b, c, d] = self.extras else {
            return self.bad_layout();
        };
        if self.key.is_empty() {
            return self.bad_layout();
        }
        let exptime = u32::from_be_bytes([a, b, c, d]);
        let key = self.key;
        let command = if self.h.opcode == op::TOUCH {
            Command::Touch { key, exptime }
        } else {
            Command::Gat {
                key,
                exptime,
                quiet: self.quiet,
                with_key: matches!(self.h.opcode, op::GATK | op::GATKQ),
            }
        };
        accept(self.h, command, self.fixed)
    }

    fn store(&self, limits: &ParseLimits) -> ParseResult<'a> {
        let &[f0, f1, f2, f3, e0, e1, e2, e3] = self.extras else {
            return self.bad_layout();
        };
        if self.key.is_empty() {
            return self.bad_layout();
        }
        let flags = u32::from_be_bytes([f0, f1, f2, f3]);
        let mode = match self.h.opcode {
            op::SET | op::SETQ => StoreMode::Set,
            op::ADD | op::ADDQ => StoreMode::Add,
            _ => StoreMode::Replace,
        };
        if item_too_large(limits, self.key.len(), flags, self.value_len) {
            let mut e = self.refuse_value(ErrorKind::TooLarge);
            e.unlink = (mode == StoreMode::Set).then_some(self.key);
            return Err(e);
        }
        let Some(value) = self.value() else {
            return Ok(None);
        };
        let command = Command::Store {
            mode,
            key: self.key,
            flags,
            exptime: u32::from_be_bytes([e0, e1, e2, e3]),
            value,
            quiet: self.quiet,
        };
        accept(self.h, command, self.fixed + self.value_len)
    }

    fn concat(&self, limits: &ParseLimits) -> ParseResult<'a> {
        if !self.extras.is_empty() || self.key.is_empty() {
            return self.bad_layout();
        }
        if item_too_large(limits, self.key.len(), 0, self.value_len) {
            return Err(self.refuse_value(ErrorKind::TooLarge));
        }
        let Some(value) = self.value() else {
            return Ok(None);
        };
        let command = Command::Concat {
            append: matches!(self.h.opcode, op::APPEND | op::APPENDQ),
            key: self.key,
            value,
            quiet: self.quiet,
        };
        accept(self.h, command, self.fixed + self.value_len)
    }

    /// memcached checks the layout first, then finds SASL off and discards the value.
    fn sasl_disabled(&self) -> ParseResult<'a> {
        if self.h.opcode != op::SASL_LIST_MECHS && (!self.extras.is_empty() || self.key.is_empty())
        {
            return self.bad_layout();
        }
        Err(self.refuse_value(ErrorKind::UnknownCommand))
    }

    fn sasl(&self, limits: &ParseLimits) -> ParseResult<'a> {
        if !self.extras.is_empty() || self.key.is_empty() {
            return self.bad_layout();
        }
        if self.key.len() > MAX_SASL_MECH_LEN {
            return Err(self.refuse_value(ErrorKind::SaslMechTooLong));
        }
        // memcached reads the data into an item and refuses chunked ones, i.e. anything
        // past half an item page; we apply the same bound.
        let half = ParseLimits {
            item_size_max: limits.item_size_max / 2,
            ..*limits
        };
        if item_too_large(&half, self.key.len(), 0, self.value_len) {
            return Err(self.refuse_value(ErrorKind::SaslNoMemory));
        }
        let Some(data) = self.value() else {
            return Ok(None);
        };
        let mech = self.key;
        let command = if self.h.opcode == op::SASL_AUTH {
            Command::SaslAuth { mech, data }
        } else {
            Command::SaslStep { mech, data }
        };
        accept(self.h, command, self.fixed + self.value_len)
    }
}

/// memcached's `authenticated()`: these opcodes are served before SASL authentication.
fn auth_exempt(opcode: u8) -> bool {
    matches!(
        opcode,
        op::SASL_LIST_MECHS | op::SASL_AUTH | op::SASL_STEP | op::VERSION
    )
}

/// The `…Q` opcodes.
pub(super) fn is_quiet(opcode: u8) -> bool {
    matches!(
        opcode,
        op::GETQ
            | op::GETKQ
            | op::SETQ
            | op::ADDQ
            | op::REPLACEQ
            | op::DELETEQ
            | op::INCREMENTQ
            | op::DECREMENTQ
            | op::QUITQ
            | op::FLUSHQ
            | op::APPENDQ
            | op::PREPENDQ
            | op::GATQ
            | op::GATKQ
    )
}

fn accept<'a>(h: &Header, command: Command<'a>, consumed: usize) -> ParseResult<'a> {
    Ok(Some((
        BinRequest {
            opcode: h.opcode,
            opaque: h.opaque,
            cas: h.cas,
            command,
        },
        consumed,
    )))
}

/// Builds refusals for one header.
#[derive(Clone, Copy)]
struct Refuse<'h> {
    h: &'h Header,
    consumed: usize,
    swallow: usize,
}

impl Refuse<'_> {
    fn err<'a>(&self, kind: ErrorKind, close: Close) -> BinError<'a> {
        BinError {
            kind,
            opcode: self.h.opcode,
            opaque: self.h.opaque,
            consumed: self.consumed,
            swallow: self.swallow,
            close,
            unlink: None,
        }
    }
}
