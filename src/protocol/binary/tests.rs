//! Table tests: request bytes to parse outcomes (the refusals as memcached 1.6.18 answered
//! them over a socket; the recorded bytes of `tests/data/binary_reference.txt` are replayed
//! against the server by `tests/binary_reference.rs`), reply helpers to exact bytes (`encode`),
//! and no-panic / bounded-body properties over random input (`props`).

use super::opcode as op;
use super::*;
use crate::protocol::StoreMode;

mod encode;
mod props;

pub(super) const OPAQUE: u32 = 0xdead_beef;

/// A request frame with lengths taken from the parts unless overridden.
#[derive(Clone, Copy, Default)]
struct Frame<'a> {
    opcode: u8,
    extras: &'a [u8],
    key: &'a [u8],
    value: &'a [u8],
    cas: u64,
    key_len: Option<u16>,
    extras_len: Option<u8>,
    body_len: Option<u32>,
    magic: Option<u8>,
}

impl Frame<'_> {
    fn bytes(&self) -> Vec<u8> {
        let body = self.extras.len() + self.key.len() + self.value.len();
        let h = Header {
            magic: self.magic.unwrap_or(REQUEST_MAGIC),
            opcode: self.opcode,
            key_len: self.key_len.unwrap_or(self.key.len() as u16),
            extras_len: self.extras_len.unwrap_or(self.extras.len() as u8),
            data_type: 0,
            vbucket: 0,
            body_len: self.body_len.unwrap_or(body as u32),
            opaque: OPAQUE,
            cas: self.cas,
        };
        let mut v = h.to_bytes().to_vec();
        v.extend_from_slice(self.extras);
        v.extend_from_slice(self.key);
        v.extend_from_slice(self.value);
        v
    }
}

pub(super) fn frame(
    opcode: u8,
    extras: &'static [u8],
    key: &'static [u8],
    value: &'static [u8],
) -> Vec<u8> {
    Frame {
        opcode,
        extras,
        key,
        value,
        ..Frame::default()
    }
    .bytes()
}

fn parse_default(buf: &[u8]) -> Result<Option<(BinRequest<'_>, usize)>, BinError<'_>> {
    parse(buf, &ParseLimits::default(), Sasl::Disabled)
}

/// Parses a complete frame that must be accepted, consuming `consumed` bytes.
fn accepted(buf: &[u8], sasl: Sasl) -> (Command<'_>, usize) {
    match parse(buf, &ParseLimits::default(), sasl) {
        Ok(Some((r, n))) => {
            assert_eq!(r.opaque, OPAQUE);
            assert_eq!(r.opcode, buf[1]);
            (r.command, n)
        }
        other => panic!("{buf:02x?} -> {other:?}"),
    }
}

pub(super) fn refused(buf: &[u8], sasl: Sasl) -> BinError<'_> {
    match parse(buf, &ParseLimits::default(), sasl) {
        Err(e) => e,
        other => panic!("{buf:02x?} -> {other:?}"),
    }
}

const EXT8: &[u8] = &[0, 0, 0, 7, 0, 0, 0, 60]; // flags 7, exptime 60
const EXT4: &[u8] = &[0, 0, 1, 0]; // exptime 256
const EXT20: &[u8] = &[
    0, 0, 0, 0, 0, 0, 0, 5, // delta 5
    0, 0, 0, 0, 0, 0, 0, 9, // initial 9
    0, 0, 0, 0, // exptime 0
];
const EXT20_NOCREATE: &[u8] = &[
    0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 9, 0xff, 0xff, 0xff, 0xff,
];

#[test]
fn accepted_commands() {
    use op::*;
    let set = |mode, quiet| Command::Store {
        mode,
        key: b"k",
        flags: 7,
        exptime: 60,
        value: b"val",
        quiet,
    };
    let get = |quiet, with_key| Command::Get {
        key: b"key",
        quiet,
        with_key,
    };
    let gat = |quiet, with_key| Command::Gat {
        key: b"key",
        exptime: 256,
        quiet,
        with_key,
    };
    let counter = |incr, quiet, initial| Command::Counter {
        incr,
        key: b"n",
        delta: 5,
        initial,
        exptime: if initial.is_some() { 0 } else { u32::MAX },
        quiet,
    };
    let cases: Vec<(Vec<u8>, Command<'static>)> = vec![
        (frame(GET, b"", b"key", b""), get(false, false)),
        (frame(GETQ, b"", b"key", b""), get(true, false)),
        (frame(GETK, b"", b"key", b""), get(false, true)),
        (frame(GETKQ, b"", b"key", b""), get(true, true)),
        (frame(GAT, EXT4, b"key", b""), gat(false, false)),
        (frame(GATQ, EXT4, b"key", b""), gat(true, false)),
        (frame(GATK, EXT4, b"key", b""), gat(false, true)),
        (frame(GATKQ, EXT4, b"key", b""), gat(true, true)),
        (
            frame(TOUCH, EXT4, b"key", b""),
            Command::Touch {
                key: b"key",
                exptime: 256,
            },
        ),
        (frame(SET, EXT8, b"k", b"val"), set(StoreMode::Set, false)),
        (frame(SETQ, EXT8, b"k", b"val"), set(StoreMode::Set, true)),
        (frame(ADD, EXT8, b"k", b"val"), set(StoreMode::Add, false)),
        (frame(ADDQ, EXT8, b"k", b"val"), set(StoreMode::Add, true)),
        (
            frame(REPLACE, EXT8, b"k", b"val"),
            set(StoreMode::Replace, false),
        ),
        (
            frame(REPLACEQ, EXT8, b"k", b"val"),
            set(StoreMode::Replace, true),
        ),
        (
            frame(SET, EXT8, b"k", b""),
            Command::Store {
                mode: StoreMode::Set,
                key: b"k",
                flags: 7,
                exptime: 60,
                value: b"",
                quiet: false,
            },
        ),
        (
            frame(APPEND, b"", b"k", b"tail"),
            Command::Concat {
                append: true,
                key: b"k",
                value: b"tail",
                quiet: false,
            },
        ),
        (
            frame(PREPENDQ, b"", b"k", b""),
            Command::Concat {
                append: false,
                key: b"k",
                value: b"",
                quiet: true,
            },
        ),
        (
            frame(DELETE, b"", b"k", b""),
            Command::Delete {
                key: b"k",
                quiet: false,
            },
        ),
        (
            frame(DELETEQ, b"", b"k", b""),
            Command::Delete {
                key: b"k",
                quiet: true,
            },
        ),
        (
            frame(INCREMENT, EXT20, b"n", b""),
            counter(true, false, Some(9)),
        ),
        (
            frame(INCREMENTQ, EXT20, b"n", b""),
            counter(true, true, Some(9)),
        ),
        (
            frame(DECREMENT, EXT20_NOCREATE, b"n", b""),
            counter(false, false, None),
        ),
        (
            frame(DECREMENTQ, EXT20_NOCREATE, b"n", b""),
            counter(false, true, None),
        ),
        (frame(QUIT, b"", b"", b""), Command::Quit { quiet: false }),
        (frame(QUITQ, b"", b"", b""), Command::Quit { quiet: true }),
        (
            frame(FLUSH, b"", b"", b""),
            Command::Flush {
                delay: 0,
                quiet: false,
            },
        ),
        (
            frame(FLUSHQ, EXT4, b"", b""),
            Command::Flush {
                delay: 256,
                quiet: true,
            },
        ),
        (frame(NOOP, b"", b"", b""), Command::Noop),
        (frame(VERSION, b"", b"", b""), Command::Version),
        (frame(STAT, b"", b"", b""), Command::Stat { key: b"" }),
        (
            frame(STAT, b"", b"settings", b""),
            Command::Stat { key: b"settings" },
        ),
    ];
    for (buf, want) in &cases {
        let (got, n) = accepted(buf, Sasl::Disabled);
        assert_eq!(&got, want, "{buf:02x?}");
        assert_eq!(n, buf.len(), "{want:?}");
        // Same answer once authenticated.
        assert_eq!(accepted(buf, Sasl::Authenticated), (got, n));
    }
}

#[test]
fn header_fields_reach_the_request() {
    let buf = Frame {
        opcode: op::SET,
        extras: EXT8,
        key: b"k",
        value: b"v",
        cas: 0x0102_0304_0506_0708,
        ..Frame::default()
    }
    .bytes();
    let Ok(Some((r, _))) = parse_default(&buf) else {
        panic!()
    };
    assert_eq!(
        (r.opcode, r.opaque, r.cas),
        (op::SET, OPAQUE, 0x0102_0304_0506_0708)
    );
}

#[test]
fn sasl_commands_when_enabled() {
    let buf = frame(op::SASL_AUTH, b"", b"PLAIN", b"\0user\0pass");
    let want = Command::SaslAuth {
        mech: b"PLAIN",
        data: b"\0user\0pass",
    };
    assert_eq!(accepted(&buf, Sasl::Required), (want, buf.len()));
    let buf = frame(op::SASL_STEP, b"", b"PLAIN", b"x");
    let want = Command::SaslStep {
        mech: b"PLAIN",
        data: b"x",
    };
    assert_eq!(accepted(&buf, Sasl::Authenticated), (want, buf.len()));
    let buf = frame(op::SASL_LIST_MECHS, b"", b"", b"");
    assert_eq!(accepted(&buf, Sasl::Required), (Command::SaslListMechs, 24));
    // version is served before authentication, nothing else is.
    let buf = frame(op::VERSION, b"", b"", b"");
    assert_eq!(accepted(&buf, Sasl::Required), (Command::Version, 24));
    for buf in [
        frame(op::NOOP, b"", b"", b""),
        frame(op::QUIT, b"", b"", b""),
        frame(op::GET, b"", b"k", b""),
        frame(0x50, b"", b"k", b""),
        frame(op::GET, b"x", b"k", b""),
    ] {
        let e = refused(&buf, Sasl::Required);
        assert_eq!(e.kind, ErrorKind::AuthRequired);
        assert_eq!(
            (e.close, e.status()),
            (Close::AfterReply, Some(Status::AuthError))
        );
    }
    // Mechanism names over 32 bytes: refused, the data discarded, the connection kept.
    let long = [b'M'; 33];
    let buf = Frame {
        opcode: op::SASL_AUTH,
        key: &long,
        value: b"abcd",
        ..Frame::default()
    }
    .bytes();
    let e = refused(&buf, Sasl::Required);
    assert_eq!(
        (e.kind, e.consumed, e.swallow),
        (ErrorKind::SaslMechTooLong, 57, 4)
    );
    assert_eq!(e.close, Close::No);
    // SASL data that cannot fit a (non-chunked) item: out of memory, discarded.
    let buf = Frame {
        opcode: op::SASL_AUTH,
        key: b"PLAIN",
        body_len: Some(5 + 600_000),
        ..Frame::default()
    }
    .bytes();
    let e = refused(&buf, Sasl::Required);
    assert_eq!(
        (e.kind, e.swallow, e.close),
        (ErrorKind::SaslNoMemory, 600_000, Close::No)
    );
    assert_eq!(e.status(), Some(Status::OutOfMemory));
}

/// (frame, kind, consumed, swallow, close) as memcached 1.6.18 does it.
#[test]
fn refusals() {
    use op::*;
    use Close::*;
    use ErrorKind::*;
    let f = |opcode, extras: &'static [u8], key: &'static [u8], value: &'static [u8]| Frame {
        opcode,
        extras,
        key,
        value,
        ..Frame::default()
    };
    let long_key = [b'k'; 251];
    let ok_key = [b'k'; 250];
    let cases: Vec<(Frame<'_>, ErrorKind, usize, usize, Close)> = vec![
        (
            Frame {
                magic: Some(0x81),
                ..f(GET, b"", b"k", b"")
            },
            BadMagic,
            0,
            0,
            Now,
        ),
        (
            Frame {
                magic: Some(b'g'),
                ..f(GET, b"", b"k", b"")
            },
            BadMagic,
            0,
            0,
            Now,
        ),
        // Key or extras overrunning the body: read, then refused and closed.
        (
            Frame {
                body_len: Some(2),
                ..f(GET, b"", b"abc", b"")
            },
            BodyShorterThanKey,
            27,
            0,
            AfterReply,
        ),
        (
            Frame {
                body_len: Some(10),
                ..f(SET, EXT8, b"abc", b"")
            },
            BodyShorterThanKey,
            35,
            0,
            AfterReply,
        ),
        (
            Frame {
                body_len: Some(MAX_BODY_LEN + 1),
                ..f(SET, EXT8, b"a", b"")
            },
            BodyTooLong,
            33,
            0,
            AfterReply,
        ),
        (
            Frame {
                key: &long_key,
                ..f(GET, b"", b"", b"")
            },
            KeyTooLong,
            275,
            0,
            AfterReply,
        ),
        // An unknown opcode with a long key is still a key error first.
        (
            Frame {
                key: &long_key,
                ..f(0x50, b"", b"", b"")
            },
            KeyTooLong,
            275,
            0,
            AfterReply,
        ),
        // Layouts each opcode refuses.
        (f(GET, b"", b"", b""), BadLayout, 24, 0, AfterReply),
        (f(GET, b"x", b"k", b""), BadLayout, 26, 0, AfterReply),
        (f(GET, b"", b"k", b"v"), BadLayout, 25, 0, AfterReply),
        (f(GETKQ, b"", b"", b""), BadLayout, 24, 0, AfterReply),
        (f(DELETE, b"", b"k", b"v"), BadLayout, 25, 0, AfterReply),
        (f(DELETEQ, EXT4, b"k", b""), BadLayout, 29, 0, AfterReply),
        (f(SET, b"", b"k", b"v"), BadLayout, 25, 0, AfterReply),
        (f(SET, EXT4, b"k", b"v"), BadLayout, 29, 0, AfterReply),
        (f(ADD, EXT8, b"", b"v"), BadLayout, 32, 0, AfterReply),
        (f(REPLACEQ, EXT20, b"k", b""), BadLayout, 45, 0, AfterReply),
        (f(APPEND, EXT4, b"k", b"v"), BadLayout, 29, 0, AfterReply),
        (f(PREPEND, b"", b"", b"v"), BadLayout, 24, 0, AfterReply),
        (f(INCREMENT, EXT8, b"k", b""), BadLayout, 33, 0, AfterReply),
        (f(INCREMENT, EXT20, b"", b""), BadLayout, 44, 0, AfterReply),
        (
            f(DECREMENTQ, EXT20, b"k", b"v"),
            BadLayout,
            45,
            0,
            AfterReply,
        ),
        (f(TOUCH, b"", b"k", b""), BadLayout, 25, 0, AfterReply),
        (f(GAT, EXT4, b"", b""), BadLayout, 28, 0, AfterReply),
        (f(GATKQ, EXT8, b"k", b""), BadLayout, 33, 0, AfterReply),
        (f(FLUSH, b"", b"k", b""), BadLayout, 25, 0, AfterReply),
        (f(FLUSH, EXT8, b"", b""), BadLayout, 32, 0, AfterReply),
        (f(FLUSHQ, b"", b"", b"v"), BadLayout, 24, 0, AfterReply),
        (f(NOOP, b"", b"", b"v"), BadLayout, 24, 0, AfterReply),
        (f(VERSION, b"", b"k", b""), BadLayout, 25, 0, AfterReply),
        (f(QUIT, EXT4, b"", b""), BadLayout, 28, 0, AfterReply),
        (f(QUITQ, b"", b"", b"v"), BadLayout, 24, 0, AfterReply),
        (f(STAT, EXT4, b"", b""), BadLayout, 28, 0, AfterReply),
        (
            f(SASL_LIST_MECHS, b"", b"", b"x"),
            BadLayout,
            24,
            0,
            AfterReply,
        ),
        (f(SASL_AUTH, b"", b"", b"x"), BadLayout, 24, 0, AfterReply),
        (
            f(SASL_STEP, EXT4, b"PLAIN", b""),
            BadLayout,
            33,
            0,
            AfterReply,
        ),
        // SASL off: unknown command, the value discarded.
        (f(SASL_LIST_MECHS, b"", b"", b""), UnknownCommand, 24, 0, No),
        (
            f(SASL_AUTH, b"", b"PLAIN", b"abcd"),
            UnknownCommand,
            29,
            4,
            No,
        ),
        (f(SASL_STEP, b"", b"PLAIN", b""), UnknownCommand, 29, 0, No),
        // Unknown opcodes: the whole body length discarded after extras and key.
        (f(VERBOSITY, EXT4, b"", b""), UnknownCommand, 28, 4, No),
        (f(0x50, b"ee", b"kk", b"vvv"), UnknownCommand, 28, 7, No),
        (f(0xff, b"", b"", b""), UnknownCommand, 24, 0, No),
        // The 250-byte key is fine; the value is what is too large.
        (
            Frame {
                key: &ok_key,
                body_len: Some(8 + 250 + 2_000_000),
                ..f(SETQ, EXT8, b"", b"")
            },
            TooLarge,
            282,
            2_000_000,
            No,
        ),
        (
            Frame {
                body_len: Some(1 + 2_000_000),
                ..f(APPEND, b"", b"k", b"")
            },
            TooLarge,
            25,
            2_000_000,
            No,
        ),
    ];
    for (fr, kind, consumed, swallow, close) in cases {
        let buf = fr.bytes();
        let e = refused(&buf, Sasl::Disabled);
        assert_eq!(
            (e.kind, e.consumed, e.swallow, e.close),
            (kind, consumed, swallow, close),
            "{buf:02x?}"
        );
        assert_eq!((e.opcode, e.opaque), (fr.opcode, OPAQUE));
        let unlink = (kind == TooLarge && matches!(fr.opcode, SET | SETQ)).then(|| &buf[32..282]);
        assert_eq!(e.unlink, unlink);
    }
}

#[test]
fn too_large_boundary_follows_item_size() {
    // 56 bytes of item overhead, key + NUL, value + "\r\n", 4 for non-zero flags.
    let limits = ParseLimits {
        item_size_max: 1000,
        ..ParseLimits::default()
    };
    let fits_flags0 = 1000 - 56 - 2 - 2; // key "k"
    for (flags, value_len, too_large) in [
        (0u32, fits_flags0, false),
        (0, fits_flags0 + 1, true),
        (1, fits_flags0 - 4, false),
        (1, fits_flags0 - 3, true),
    ] {
        let mut ext = [0u8; 8];
        ext[..4].copy_from_slice(&flags.to_be_bytes());
        let buf = Frame {
            opcode: op::SET,
            extras: &ext,
            key: b"k",
            body_len: Some(9 + value_len as u32),
            ..Frame::default()
        }
        .bytes();
        let r = parse(&buf, &limits, Sasl::Disabled);
        if too_large {
            assert!(
                matches!(
                    r,
                    Err(BinError {
                        kind: ErrorKind::TooLarge,
                        ..
                    })
                ),
                "{value_len}"
            );
        } else {
            // Not refused: waiting for the value.
            assert_eq!(r, Ok(None), "{value_len}");
        }
    }
}

#[test]
fn short_bodies_leave_the_rest_for_the_next_request() {
    // stat, touch and gat read only extras and key, like memcached.
    let noop = frame(op::NOOP, b"", b"", b"");
    for (opcode, extras) in [(op::STAT, &b""[..]), (op::TOUCH, EXT4), (op::GATQ, EXT4)] {
        let mut buf = Frame {
            opcode,
            extras,
            key: b"key",
            value: &noop,
            ..Frame::default()
        }
        .bytes();
        buf.extend_from_slice(&noop);
        let (_, n) = accepted(&buf, Sasl::Disabled);
        assert_eq!(n, 24 + extras.len() + 3);
        assert!(matches!(
            parse_default(&buf[n..]),
            Ok(Some((
                BinRequest {
                    command: Command::Noop,
                    ..
                },
                24
            )))
        ));
    }
}

#[test]
fn every_prefix_is_incomplete() {
    let frames = [
        frame(op::SET, EXT8, b"key", b"value"),
        frame(op::GETK, b"", b"key", b""),
        frame(op::INCREMENT, EXT20, b"n", b""),
        frame(op::APPENDQ, b"", b"k", b"abc"),
        frame(op::FLUSH, EXT4, b"", b""),
    ];
    for buf in &frames {
        for cut in 0..buf.len() {
            assert_eq!(
                parse_default(&buf[..cut]),
                Ok(None),
                "{buf:02x?} cut at {cut}"
            );
        }
        assert!(matches!(parse_default(buf), Ok(Some((_, n))) if n == buf.len()));
    }
    // Extras and key are awaited even when they overrun the body (memcached reads them first).
    let buf = Frame {
        opcode: op::GET,
        key: b"abc",
        body_len: Some(1),
        ..Frame::default()
    }
    .bytes();
    assert_eq!(parse_default(&buf[..26]), Ok(None));
    // A wrong magic needs only the header.
    let mut bad = frame(op::GET, b"", b"k", b"");
    bad[0] = 0x00;
    assert_eq!(parse_default(&bad[..23]), Ok(None));
    assert!(parse_default(&bad[..24]).is_err());
}
