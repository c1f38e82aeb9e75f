use super::*;
use crate::protocol::reply::ErrorKind;
use crate::protocol::{Effect, ParseLimits, Parsed, Request};
use proptest::prelude::*;
use std::borrow::Cow;

fn p(input: &[u8]) -> Parsed<'_> {
    parse(input, &ParseLimits::default())
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
        let _ = parse(&line, &ParseLimits::default());
        for cut in 0..line.len() {
            let _ = parse(&line[..cut], &ParseLimits::default());
        }
    }

    #[test]
    fn meta_parse_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let mut input = b"m".to_vec();
        input.extend_from_slice(&bytes);
        let _ = parse(&input, &ParseLimits::default());
    }
}
