//! Tables of inputs and the outcome memcached 1.6.18 produced for them (each error reply
//! below was observed on the real server over a socket), plus split and fuzz properties.

use super::*;
use crate::protocol::reply::*;
use proptest::prelude::*;

fn p(input: &[u8]) -> Parsed<'_> {
    parse(input, &ParseLimits::default())
}

fn req(input: &[u8]) -> Request<'_> {
    match p(input) {
        Parsed::Request(r, n) => {
            assert_eq!(
                n,
                input.len(),
                "consumed for {:?}",
                String::from_utf8_lossy(input)
            );
            r
        }
        other => panic!("{:?} -> {other:?}", String::from_utf8_lossy(input)),
    }
}

/// The error kind whose reply is `reply`.
fn kind(reply: &[u8]) -> ErrorKind {
    match ErrorKind::ALL.iter().find(|k| k.reply() == reply) {
        Some(k) => *k,
        None => panic!("no error kind replies {:?}", String::from_utf8_lossy(reply)),
    }
}

/// An error answered with `reply` (empty: one muted by noreply) that consumes `consumed` bytes
/// and has no other effect.
fn err(reply: &'static [u8], consumed: usize) -> Parsed<'static> {
    Parsed::Error {
        kind: kind(reply),
        noreply: false,
        consumed,
        swallow: 0,
        effect: Effect::None,
    }
}

/// What the client sees: (reply bytes as sent, consumed, swallow) of an error.
fn seen(p: Parsed<'_>) -> (Vec<u8>, usize, usize) {
    match p {
        Parsed::Error {
            kind,
            noreply,
            consumed,
            swallow,
            ..
        } => (
            if noreply {
                vec![]
            } else {
                kind.reply().to_vec()
            },
            consumed,
            swallow,
        ),
        other => panic!("not an error: {other:?}"),
    }
}

fn closed() -> Parsed<'static> {
    Parsed::Error {
        kind: ErrorKind::Hangup,
        noreply: false,
        consumed: 0,
        swallow: 0,
        effect: Effect::Close,
    }
}

/// Lines answered with an error that consumes exactly the line.
#[test]
fn error_lines() {
    let cases: &[(&[u8], &[u8])] = &[
        (b"\r\n", ERROR),
        (b"\n", ERROR),
        (b"a\r\n", ERROR),
        (b"   \r\n", ERROR),
        (b"Get foo\r\n", ERROR),
        (b"GET foo\r\n", ERROR),
        (b"get\r\n", ERROR),
        (b"get \r\n", ERROR),
        (b"gets\r\n", ERROR),
        (b"gx foo\r\n", ERROR),
        (b"set / HTTP/1.1\r\n", ERROR),
        (b"mx\r\n", ERROR),
        (b"bget\r\n", ERROR),
        (b"foo\r\n", ERROR),
        (b"set foo 0 0\r\n", ERROR),
        (b"set foo 0 0 1 noreply x\r\n", ERROR),
        (b"cas foo 0 0 1\r\n", ERROR),
        (b"incr foo\r\n", ERROR),
        (b"incr foo 1 2 3\r\n", ERROR),
        (b"touch foo\r\n", ERROR),
        (b"delete\r\n", ERROR),
        (b"delete foo bar baz qux\r\n", ERROR),
        (b"flush_all 1 2 3\r\n", ERROR),
        (b"verbosity\r\n", ERROR),
        (b"cache_memlimit\r\n", ERROR),
        (b"cache_memlimit x\r\n", ERROR),
        (b"set foo -1 0 1\r\n", BAD_FORMAT),
        (b"set foo 0 0 -1\r\n", BAD_FORMAT),
        (b"set foo 0 0 x\r\n", BAD_FORMAT),
        (b"set foo 0 x 1\r\n", BAD_FORMAT),
        (b"set foo 0 0 1x\r\n", BAD_FORMAT),
        (b"set foo 0 0 2147483646\r\n", BAD_FORMAT),
        (b"set foo 0 0 99999999999999999999\r\n", BAD_FORMAT),
        (b"cas foo 0 0 1 x\r\n", BAD_FORMAT),
        (b"cas foo 0 0 1 -1\r\n", BAD_FORMAT),
        (b"gat x foo\r\n", BAD_EXPTIME),
        (b"touch foo x\r\n", BAD_EXPTIME),
        (b"flush_all x\r\n", BAD_EXPTIME),
        (b"flush_all noreply 10\r\n", BAD_EXPTIME),
        (b"incr foo x\r\n", BAD_DELTA),
        (b"incr foo -1\r\n", BAD_DELTA),
        (b"decr foo 18446744073709551616\r\n", BAD_DELTA),
        (b"delete foo 1\r\n", DELETE_USAGE),
        (b"delete foo 0 0\r\n", DELETE_USAGE),
        (b"verbosity x\r\n", BAD_FORMAT),
        (b"cache_memlimit 5\r\n", MEMLIMIT_TOO_SMALL),
        (b"cache_memlimit 2000000000\r\n", MEMLIMIT_NOT_BYTES),
        (b"stats detail\r\n", DETAIL_USAGE),
        (b"stats detail x\r\n", DETAIL_USAGE),
        (b"stats cachedump\r\n", BAD_LINE),
        (b"stats cachedump 1\r\n", BAD_LINE),
        (b"stats cachedump x 1\r\n", BAD_FORMAT),
        (b"stats cachedump 64 1\r\n", ILLEGAL_SLAB),
    ];
    for (input, reply) in cases {
        assert_eq!(
            p(input),
            err(reply, input.len()),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

/// With noreply memcached still parses, but every error reply after noreply was seen is muted.
#[test]
fn noreply_mutes_errors() {
    let cases: &[&[u8]] = &[
        b"set foo 0 0 noreply\r\n",
        b"set foo x 0 1 noreply\r\n",
        b"cas foo 0 0 1 noreply\r\n",
        b"delete foo noreply noreply\r\n",
        b"delete foo 1 noreply\r\n",
        b"flush_all noreply noreply\r\n",
        b"verbosity noreply\r\n",
        b"cache_memlimit 5 noreply\r\n",
        b"cache_memlimit noreply\r\n",
        b"incr foo x noreply\r\n",
        b"touch foo x noreply\r\n",
    ];
    for input in cases {
        assert_eq!(
            seen(p(input)),
            (vec![], input.len(), 0),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
    // Token-count errors come before noreply is looked at.
    assert_eq!(p(b"set foo 0 noreply\r\n"), err(ERROR, 19));
}

#[test]
fn key_length_limit() {
    let long = vec![b'k'; 251];
    let ok = vec![b'k'; 250];
    let line = |cmd: &str, key: &[u8], tail: &str| {
        let mut v = cmd.as_bytes().to_vec();
        v.extend_from_slice(key);
        v.extend_from_slice(tail.as_bytes());
        v
    };
    for (cmd, tail) in [
        ("set ", " 0 0 5\r\n"),
        ("incr ", " 1\r\n"),
        ("touch ", " 1\r\n"),
        ("delete ", "\r\n"),
        ("get a ", " b\r\n"),
        ("gat 1 a ", "\r\n"),
    ] {
        let bad = line(cmd, &long, tail);
        assert_eq!(seen(p(&bad)), (BAD_FORMAT.to_vec(), bad.len(), 0), "{cmd}");
        let good = line(cmd, &ok, tail);
        assert!(!matches!(p(&good), Parsed::Error { .. }), "{cmd}");
    }
    // delete checks its usage before the key.
    let bad = line("delete ", &long, " 1\r\n");
    assert_eq!(p(&bad), err(DELETE_USAGE, bad.len()));
    // A long key in a long multiget, past memcached's 24-token window.
    let mut get = b"get".to_vec();
    for _ in 0..40 {
        get.extend_from_slice(b" a");
    }
    get.push(b' ');
    get.extend_from_slice(&long);
    get.extend_from_slice(b"\r\n");
    assert_eq!(seen(p(&get)), (BAD_FORMAT.to_vec(), get.len(), 0));
}

#[test]
fn storage_requests() {
    assert_eq!(
        req(b"set foo 5 100 3\r\nbar\r\n"),
        Request::Store {
            mode: StoreMode::Set,
            key: b"foo",
            flags: 5,
            exptime: 100,
            data: b"bar",
            noreply: false
        }
    );
    assert_eq!(
        req(b"cas foo 0 -1 0 42 noreply\r\n\r\n"),
        Request::Store {
            mode: StoreMode::Cas(42),
            key: b"foo",
            flags: 0,
            exptime: -1,
            data: b"",
            noreply: true
        }
    );
    // C number quirks: 32-bit truncation, "-0", trailing whitespace, a ignored 7th token.
    type Quirk = (&'static [u8], u32, i64, &'static [u8], bool);
    let quirks: &[Quirk] = &[
        (b"set k 4294967296 0 1\r\na\r\n", 0, 0, b"a", false),
        (
            b"set k 18446744073709551615 0 1\r\na\r\n",
            u32::MAX,
            0,
            b"a",
            false,
        ),
        (b"set k -0 0 1\r\na\r\n", 0, 0, b"a", false),
        (
            b"set k +7 2147483648 1\r\na\r\n",
            7,
            -2147483648,
            b"a",
            false,
        ),
        (b"set k 0 0 1\t\r\na\r\n", 0, 0, b"a", false),
        (b"set k 0 0 1\tjunk\r\na\r\n", 0, 0, b"a", false),
        (b"set k 0 0 1 junk\r\na\r\n", 0, 0, b"a", false),
        (b"set k 0 0 4294967297\r\na\r\n", 0, 0, b"a", false),
        (b"set k 0 0 1 noreply\na\r\n", 0, 0, b"a", true),
        (b"  set   k 0 0 1 \r\na\r\n", 0, 0, b"a", false),
    ];
    for (input, f, e, d, nr) in quirks {
        match req(input) {
            Request::Store {
                flags,
                exptime,
                data,
                noreply,
                key,
                ..
            } => {
                assert_eq!(
                    (flags, exptime, data, noreply, key),
                    (*f, *e, *d, *nr, &b"k"[..])
                )
            }
            other => panic!("{other:?}"),
        }
    }
    for (cmd, mode) in [
        ("add", StoreMode::Add),
        ("replace", StoreMode::Replace),
        ("append", StoreMode::Append),
        ("prepend", StoreMode::Prepend),
    ] {
        let input = format!("{cmd} k 0 0 1\r\nx\r\n");
        assert!(matches!(req(input.as_bytes()), Request::Store { mode: m, .. } if m == mode));
    }
}

#[test]
fn bad_data_chunk_consumes_the_block() {
    // memcached reads len+2 bytes, rejects them, and parses on right after them.
    let input = b"set foo 0 0 3\r\nabcde\r\n";
    assert_eq!(p(input), err(BAD_CHUNK, 20));
    assert_eq!(p(&input[20..]), err(ERROR, 2));
    assert_eq!(
        seen(p(b"set foo 0 0 3 noreply\r\nabcde\r\n")),
        (vec![], 28, 0)
    );
    // Bare "\n" does not end a data block.
    assert_eq!(p(b"set foo 0 0 1\r\na\n\r\n"), err(BAD_CHUNK, 18));
}

#[test]
fn too_large_swallows() {
    let lim = ParseLimits::default();
    // Thresholds observed on memcached -I 1m: 48-byte header + 8 CAS + key + 1 + flags + data.
    for (flags, max_ok) in [(0u32, 1048516usize), (1, 1048512)] {
        let ok = format!("set a {flags} 0 {max_ok}\r\n");
        assert_eq!(parse(ok.as_bytes(), &lim), Parsed::Incomplete);
        let big = format!("set a {flags} 0 {}\r\n", max_ok + 1);
        assert_eq!(
            parse(big.as_bytes(), &lim),
            Parsed::Error {
                kind: ErrorKind::TooLarge,
                noreply: false,
                consumed: big.len(),
                swallow: max_ok + 3,
                effect: Effect::TooLarge {
                    unlink: Some(Cow::Borrowed(b"a")),
                    counts_set: true
                }
            }
        );
    }
    // Muted by noreply, but the key is still unlinked and the refusal counted.
    let huge = b"set a 0 0 2147483645 noreply\r\n";
    assert_eq!(
        p(huge),
        Parsed::Error {
            kind: ErrorKind::TooLarge,
            noreply: true,
            consumed: huge.len(),
            swallow: 2147483647,
            effect: Effect::TooLarge {
                unlink: Some(Cow::Borrowed(b"a")),
                counts_set: true
            }
        }
    );
    // Only set unlinks.
    assert!(matches!(
        p(b"add a 0 0 2000000\r\n"),
        Parsed::Error {
            effect: Effect::TooLarge {
                unlink: None,
                counts_set: true
            },
            ..
        }
    ));
}

#[test]
fn retrieval_requests() {
    assert_eq!(
        req(b"get a b\r\n"),
        Request::Get {
            keys: b" a b",
            with_cas: false
        }
    );
    assert_eq!(
        req(b"gets a\n"),
        Request::Get {
            keys: b" a",
            with_cas: true
        }
    );
    assert_eq!(
        req(b"bget a\r\n"),
        Request::Get {
            keys: b" a",
            with_cas: false
        }
    );
    assert_eq!(
        req(b"get a\0junk\r\n"),
        Request::Get {
            keys: b" a",
            with_cas: false
        }
    );
    assert_eq!(
        req(b"get a\rb\r\n"),
        Request::Get {
            keys: b" a\rb",
            with_cas: false
        }
    );
    assert_eq!(
        req(b"gat 10\r\n"),
        Request::GetAndTouch {
            exptime: 10,
            keys: b"",
            with_cas: false
        }
    );
    assert_eq!(
        req(b"gats -1 a  b \r\n"),
        Request::GetAndTouch {
            exptime: -1,
            keys: b" a  b ",
            with_cas: true
        }
    );
    // "noreply" is just a key for get.
    let Request::Get { keys: raw, .. } = req(b"get a noreply\r\n") else {
        panic!()
    };
    assert_eq!(keys(raw).collect::<Vec<_>>(), vec![&b"a"[..], b"noreply"]);
    // Long key lists go past memcached's 24 tokens.
    let mut line = b"get".to_vec();
    for i in 0..100 {
        line.extend_from_slice(format!(" k{i}").as_bytes());
    }
    line.extend_from_slice(b"\r\n");
    let Request::Get { keys: raw, .. } = req(&line) else {
        panic!()
    };
    assert_eq!(keys(raw).count(), 100);
}

#[test]
fn other_requests() {
    let cases: &[(&[u8], Request)] = &[
        (
            b"delete k\r\n",
            Request::Delete {
                key: b"k",
                noreply: false,
            },
        ),
        (
            b"delete k 0\r\n",
            Request::Delete {
                key: b"k",
                noreply: false,
            },
        ),
        (
            b"delete k noreply\r\n",
            Request::Delete {
                key: b"k",
                noreply: true,
            },
        ),
        (
            b"delete k 0 noreply\r\n",
            Request::Delete {
                key: b"k",
                noreply: true,
            },
        ),
        (
            b"incr k 5\r\n",
            Request::Arith {
                key: b"k",
                incr: true,
                delta: 5,
                noreply: false,
            },
        ),
        (
            b"incr k 1 2\r\n",
            Request::Arith {
                key: b"k",
                incr: true,
                delta: 1,
                noreply: false,
            },
        ),
        (
            b"decr k 18446744073709551615 noreply\r\n",
            Request::Arith {
                key: b"k",
                incr: false,
                delta: u64::MAX,
                noreply: true,
            },
        ),
        (
            b"decr k -18446744073709551615\r\n",
            Request::Arith {
                key: b"k",
                incr: false,
                delta: 1,
                noreply: false,
            },
        ),
        (
            b"touch k 10 x\r\n",
            Request::Touch {
                key: b"k",
                exptime: 10,
                noreply: false,
            },
        ),
        (
            b"touch k -5 noreply\r\n",
            Request::Touch {
                key: b"k",
                exptime: -5,
                noreply: true,
            },
        ),
        (
            b"flush_all\r\n",
            Request::FlushAll {
                delay: 0,
                noreply: false,
            },
        ),
        (
            b"flush_all noreply\r\n",
            Request::FlushAll {
                delay: 0,
                noreply: true,
            },
        ),
        (
            b"flush_all 10 20\r\n",
            Request::FlushAll {
                delay: 10,
                noreply: false,
            },
        ),
        (
            b"flush_all -5 noreply\r\n",
            Request::FlushAll {
                delay: -5,
                noreply: true,
            },
        ),
        (b"version\r\n", Request::Version),
        (b"version foo bar\r\n", Request::Version),
        (b"quit\r\n", Request::Quit),
        (b"quit now\r\n", Request::Quit),
        (b"shutdown\r\n", Request::Shutdown(ShutdownMode::Immediate)),
        (
            b"shutdown graceful\r\n",
            Request::Shutdown(ShutdownMode::Graceful),
        ),
        (
            b"shutdown foo\r\n",
            Request::Shutdown(ShutdownMode::Invalid),
        ),
        (
            b"verbosity 1 2\r\n",
            Request::Verbosity {
                level: 1,
                noreply: false,
            },
        ),
        (
            b"verbosity 5 noreply\r\n",
            Request::Verbosity {
                level: 5,
                noreply: true,
            },
        ),
        (
            b"cache_memlimit 100\r\n",
            Request::CacheMemlimit {
                megabytes: 100,
                noreply: false,
            },
        ),
        (b"stats\r\n", Request::Stats(StatsGroup::General)),
        (b"stats \r\n", Request::Stats(StatsGroup::General)),
        (b"stats reset x\r\n", Request::Stats(StatsGroup::Reset)),
        (b"stats  items\r\n", Request::Stats(StatsGroup::Items)),
        (b"stats slabs\r\n", Request::Stats(StatsGroup::Slabs)),
        (b"stats sizes\r\n", Request::Stats(StatsGroup::Sizes)),
        (b"stats settings\r\n", Request::Stats(StatsGroup::Settings)),
        (b"stats conns\r\n", Request::Stats(StatsGroup::Conns)),
        (
            b"stats replication\r\n",
            Request::Stats(StatsGroup::Replication),
        ),
        (
            b"stats detail dump\r\n",
            Request::Stats(StatsGroup::Detail(b"dump")),
        ),
        (
            b"stats cachedump 63 1\r\n",
            Request::Stats(StatsGroup::CacheDump {
                class: 63,
                limit: 1,
            }),
        ),
        (
            b"stats bogus\r\n",
            Request::Stats(StatsGroup::Other(b"bogus")),
        ),
        (
            b"lru_crawler metadump all\r\n",
            Request::Metadump(MetadumpScope::All),
        ),
        (
            b"lru_crawler  metadump hash\r\n",
            Request::Metadump(MetadumpScope::Hash),
        ),
        // Observed: "1,", "+1", "1,,2" and "2,1" all dump class 1; "," is NOTSTARTED;
        // 0, 64, "foo", "1,x" and "ALL" are BADCLASS.
        (
            b"lru_crawler metadump 1,,2\r\n",
            Request::Metadump(MetadumpScope::Classes(0b110)),
        ),
        (
            b"lru_crawler metadump +1\r\n",
            Request::Metadump(MetadumpScope::Classes(0b10)),
        ),
        (
            b"lru_crawler metadump 63\r\n",
            Request::Metadump(MetadumpScope::Classes(1 << 63)),
        ),
        (
            b"lru_crawler metadump ,\r\n",
            Request::Metadump(MetadumpScope::Classes(0)),
        ),
        (
            b"lru_crawler metadump 64\r\n",
            Request::Metadump(MetadumpScope::BadClass),
        ),
        (
            b"lru_crawler metadump 0\r\n",
            Request::Metadump(MetadumpScope::BadClass),
        ),
        (
            b"lru_crawler metadump 1,x\r\n",
            Request::Metadump(MetadumpScope::BadClass),
        ),
        (
            b"lru_crawler metadump ALL\r\n",
            Request::Metadump(MetadumpScope::BadClass),
        ),
    ];
    for (input, want) in cases {
        assert_eq!(&req(input), want, "{:?}", String::from_utf8_lossy(input));
    }
}

#[test]
fn meta_is_delegated() {
    // The placeholder meta parser answers ERROR for the whole line.
    assert_eq!(
        p(b"mn\r\nget a\r\n"),
        super::super::meta::parse(b"mn\r\nget a\r\n", &ParseLimits::default())
    );
    assert!(matches!(
        p(b"mg foo v\r\n"),
        Parsed::Error { consumed: 10, .. } | Parsed::Request(..)
    ));
    // "mget" is not a meta command.
    assert_eq!(p(b"mget a\r\n"), err(ERROR, 8));
}

#[test]
fn closes_silently() {
    // Last token starting with "HTTP/" on an otherwise unknown command.
    assert_eq!(p(b"GET / HTTP/1.1\r\n"), closed());
    assert_eq!(p(b"HTTP/1.0\r\n"), closed());
    assert_eq!(p(b"foo HTTP/x\n"), closed());
    // memcached looks at the 23rd token when a line has more (its tokenizer stops there).
    let mut many = b"foo".to_vec();
    for _ in 0..21 {
        many.extend_from_slice(b" x");
    }
    many.extend_from_slice(b" HTTP/1.1 y z\r\n");
    assert_eq!(p(&many), closed());
    assert_eq!(p(b"foo bar HTTP/1.1 baz\r\n"), err(ERROR, 22));
    assert_eq!(p(b"lru_crawler HTTP/1.1\r\n"), err(ERROR, 22));
    // metadump takes exactly one argument.
    assert_eq!(p(b"lru_crawler metadump\r\n"), err(ERROR, 22));
    assert_eq!(p(b"lru_crawler metadump all x\r\n"), err(ERROR, 28));
    assert_eq!(p(b"lru_crawler crawl all x\r\n"), err(ERROR, 25));
    // ... but not on known command families.
    assert_eq!(p(b"set / HTTP/1.1\r\n"), err(ERROR, 16));
    // Over 2048 bytes without a newline.
    let lim = ParseLimits::default();
    assert_eq!(p(&[b'x'; 2048]), Parsed::Incomplete);
    assert_eq!(p(&[b'x'; 2049]), closed());
    // ... unless it is a multiget (after at most 100 spaces), up to our 4 MiB cap.
    let mut get = vec![b' '; 100];
    get.extend_from_slice(b"get ");
    get.resize(3000, b'a');
    assert_eq!(parse(&get, &lim), Parsed::Incomplete);
    get.insert(0, b' ');
    assert_eq!(parse(&get, &lim), closed());
    let mut gets = b"gets ".to_vec();
    gets.resize(MAX_MULTIGET_LINE, b'a');
    assert_eq!(parse(&gets, &lim), Parsed::Incomplete);
    gets.push(b'a');
    assert_eq!(parse(&gets, &lim), closed());
    // A non-get line whose newline lies beyond memcached's 16 KiB read buffer never completes.
    let mut long = vec![b'x'; 3000];
    long.extend_from_slice(b"\r\n");
    assert_eq!(p(&long), err(ERROR, 3002));
    let mut long = vec![b'x'; 16382];
    long.extend_from_slice(b"\r\n");
    assert_eq!(p(&long), err(ERROR, 16384));
    let mut long = vec![b'x'; 16383];
    long.extend_from_slice(b"\r\n");
    assert_eq!(p(&long), closed());
    // A multiget may be longer.
    let mut get = b"get".to_vec();
    for _ in 0..10_000 {
        get.extend_from_slice(b" a");
    }
    get.extend_from_slice(b"\r\n");
    assert!(matches!(p(&get), Parsed::Request(Request::Get { .. }, n) if n == get.len()));
    let mut tab = b"get\t".to_vec();
    tab.resize(3000, b'a');
    assert_eq!(p(&tab), closed());
}

#[test]
fn pipelined() {
    let input = b"set a 0 0 1\r\n1\r\nget a\r\nbogus\r\nincr a 1 noreply\r\ndelete a\nversion\r\n";
    let mut rest = &input[..];
    let mut kinds = Vec::new();
    while !rest.is_empty() {
        match p(rest) {
            Parsed::Request(r, n) => {
                kinds.push(
                    format!("{r:?}")
                        .split([' ', '('])
                        .next()
                        .unwrap_or("")
                        .to_string(),
                );
                rest = &rest[n..];
            }
            Parsed::Error { kind, consumed, .. } => {
                kinds.push(String::from_utf8_lossy(kind.reply()).trim().to_string());
                rest = &rest[consumed..];
            }
            Parsed::Incomplete => panic!("incomplete at {rest:?}"),
        }
    }
    assert_eq!(
        kinds,
        ["Store", "Get", "ERROR", "Arith", "Delete", "Version"]
    );
}

#[test]
fn incomplete_at_every_split() {
    let input = b"set foo 1 2 10 noreply\r\n0123456789\r\n";
    for cut in 0..input.len() {
        assert_eq!(p(&input[..cut]), Parsed::Incomplete, "cut at {cut}");
    }
    assert!(matches!(
        p(input),
        Parsed::Request(Request::Store { .. }, 36)
    ));
    let get = b"gets a b c\r\n";
    for cut in 0..get.len() {
        assert_eq!(p(&get[..cut]), Parsed::Incomplete, "cut at {cut}");
    }
}

#[test]
fn c_numbers() {
    assert_eq!(strtol32(b"-2147483649"), Some(2147483647));
    assert_eq!(strtol32(b"9223372036854775807"), Some(-1));
    assert_eq!(strtol32(b"9223372036854775808"), None);
    assert_eq!(strtol32(b"-9223372036854775808"), Some(0));
    assert_eq!(strtol32(b"\t12"), Some(12));
    assert_eq!(strtol32(b"12\x0b"), Some(12));
    assert_eq!(strtol32(b"-"), None);
    assert_eq!(strtol32(b""), None);
    assert_eq!(strtoull(b"-0"), Some(0));
    assert_eq!(strtoull(b"-1"), None);
    assert_eq!(strtoull(b"18446744073709551615"), Some(u64::MAX));
    assert_eq!(strtoull(b"9223372036854775808\t-"), None);
    assert_eq!(strtoul32(b"-4294967295"), None);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Arbitrary bytes parsed in a loop from arbitrary prefixes never panic and always make
    /// progress or ask for more.
    #[test]
    fn never_panics(
        data in proptest::collection::vec(any::<u8>(), 0..300),
        cut in 0usize..300,
    ) {
        let lim = ParseLimits { max_line_len: 64, item_size_max: 4096, ..ParseLimits::default() };
        let cut = cut.min(data.len());
        for input in [&data[..cut], &data[..]] {
            let mut rest = input;
            loop {
                match parse(rest, &lim) {
                    Parsed::Request(_, n) => {
                        prop_assert!(n > 0 && n <= rest.len());
                        rest = &rest[n..];
                    }
                    Parsed::Error { consumed, swallow, effect, .. } => {
                        prop_assert!(consumed <= rest.len());
                        if effect == Effect::Close {
                            break;
                        }
                        prop_assert!(consumed > 0);
                        rest = &rest[(consumed + swallow).min(rest.len())..];
                    }
                    Parsed::Incomplete => break,
                }
            }
        }
    }

    /// Command-shaped input with random numbers and splits: a declared huge length is only
    /// swallowed, never waited for or buffered.
    #[test]
    fn huge_lengths_only_swallow(
        cmd in prop::sample::select(vec!["set", "add", "replace", "append", "prepend"]),
        len in 1_048_517u64..u32::MAX as u64,
        cut in 0usize..40,
    ) {
        let line = format!("{cmd} k 0 0 {len}\r\n");
        let parsed = parse(line.as_bytes(), &ParseLimits::default());
        let vlen = len as u32 as i32;
        if !(0..=i32::MAX - 2).contains(&vlen) {
            prop_assert_eq!(parsed, err(BAD_FORMAT, line.len()));
        } else if vlen as usize + 59 > 1 << 20 {
            let is_error = matches!(parsed, Parsed::Error { swallow, kind: ErrorKind::TooLarge, .. } if swallow == vlen as usize + 2);
            prop_assert!(is_error);
        }
        let cut = cut.min(line.len() - 1);
        prop_assert_eq!(parse(&line.as_bytes()[..cut], &ParseLimits::default()), Parsed::Incomplete);
    }
}

/// The effect memcached's refusal of `input` has, if it is an error.
fn effect(input: &[u8]) -> Option<Effect<'_>> {
    match p(input) {
        Parsed::Error { effect, .. } => Some(effect),
        _ => None,
    }
}

#[test]
fn get_with_long_key_discards_pending() {
    let mut bad = b"get a ".to_vec();
    bad.extend_from_slice(&[b'k'; 251]);
    bad.extend_from_slice(b"\r\n");
    assert_eq!(seen(p(&bad)), (BAD_FORMAT.to_vec(), bad.len(), 0));
    assert!(matches!(effect(&bad), Some(Effect::RefusedGet { .. })));
    assert_eq!(effect(b"get a\r\n"), None);
    assert_eq!(effect(b"set a x 0 1\r\n"), Some(Effect::None));
    // An invalid exptime is reported before the keys are looked at.
    let mut gat = b"gat x ".to_vec();
    gat.extend_from_slice(&[b'k'; 251]);
    gat.extend_from_slice(b"\r\n");
    assert_eq!(effect(&gat), Some(Effect::None));
}

#[test]
fn refused_get_prefix_keeps_the_keys_before_the_bad_one() {
    let mut line = b"gats -1 k8 num1 ".to_vec();
    line.extend_from_slice(&[b'n'; 251]);
    line.extend_from_slice(b" a\r\n");
    assert_eq!(
        effect(&line),
        Some(Effect::RefusedGet {
            keys: b" k8 num1 ",
            with_cas: true,
            touch: Some(-1),
        })
    );
    let mut line = b"bget ".to_vec();
    line.extend_from_slice(&[b'n'; 251]);
    line.extend_from_slice(b"\r\n");
    assert_eq!(
        effect(&line),
        Some(Effect::RefusedGet {
            keys: b" ",
            with_cas: false,
            touch: None,
        })
    );
}

#[test]
fn lru_crawler_and_slabs_commands() {
    use crate::protocol::{LruCrawlerCommand as L, SlabsCommand as S};
    let lim = ParseLimits::default();
    let req = |line: &'static [u8]| match parse(line, &lim) {
        Parsed::Request(r, n) if n == line.len() => r,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(line)),
    };
    let p = |line: &'static [u8]| parse(line, &lim);
    let crawler = |c| Request::LruCrawler(c);
    assert_eq!(
        req(b"lru_crawler crawl all\r\n"),
        crawler(L::Crawl(MetadumpScope::All))
    );
    assert_eq!(
        req(b"lru_crawler crawl 1,2\r\n"),
        crawler(L::Crawl(MetadumpScope::Classes(0b110)))
    );
    assert_eq!(
        req(b"lru_crawler crawl 64\r\n"),
        crawler(L::Crawl(MetadumpScope::BadClass))
    );
    assert_eq!(
        req(b"lru_crawler sleep 2000000\r\n"),
        crawler(L::Sleep(2_000_000))
    );
    assert_eq!(req(b"lru_crawler tocrawl 5\r\n"), crawler(L::Tocrawl(5)));
    assert_eq!(req(b"lru_crawler enable\r\n"), crawler(L::Enable));
    assert_eq!(req(b"lru_crawler disable\r\n"), crawler(L::Disable));
    assert_eq!(
        p(b"lru_crawler sleep x\r\n"),
        err(BAD_FORMAT, b"lru_crawler sleep x\r\n".len())
    );
    assert_eq!(
        p(b"lru_crawler tocrawl -1\r\n"),
        err(BAD_FORMAT, b"lru_crawler tocrawl -1\r\n".len())
    );
    assert_eq!(
        p(b"lru_crawler enable x\r\n"),
        err(ERROR, b"lru_crawler enable x\r\n".len())
    );
    assert_eq!(
        p(b"lru_crawler crawl\r\n"),
        err(ERROR, b"lru_crawler crawl\r\n".len())
    );
    assert_eq!(
        req(b"slabs reassign 1 -1\r\n"),
        Request::Slabs(S::Reassign {
            classes: Some((1, -1))
        })
    );
    assert_eq!(
        req(b"slabs reassign a 1\r\n"),
        Request::Slabs(S::Reassign { classes: None })
    );
    assert_eq!(
        req(b"slabs automove 2\r\n"),
        Request::Slabs(S::Automove {
            level: 2,
            noreply: false
        })
    );
    assert_eq!(
        req(b"slabs automove 0 noreply\r\n"),
        Request::Slabs(S::Automove {
            level: 0,
            noreply: true
        })
    );
    assert_eq!(
        req(b"slabs automove ratio 0.5\r\n"),
        Request::Slabs(S::AutomoveRatio {
            bits: 0.5f64.to_bits(),
            noreply: false
        })
    );
    assert_eq!(
        p(b"slabs automove invalid\r\n"),
        err(BAD_FORMAT, b"slabs automove invalid\r\n".len())
    );
    assert_eq!(
        p(b"slabs automove 3\r\n"),
        err(ERROR, b"slabs automove 3\r\n".len())
    );
    assert_eq!(
        p(b"slabs automove ratio\r\n"),
        err(ERROR, b"slabs automove ratio\r\n".len())
    );
    assert_eq!(
        p(b"slabs reassign 1\r\n"),
        err(ERROR, b"slabs reassign 1\r\n".len())
    );
    assert_eq!(p(b"slabs\r\n"), err(ERROR, b"slabs\r\n".len()));
}

#[test]
fn block_end_covers_line_and_data_block() {
    assert_eq!(block_end(b"set a 0 0 5\r\nab"), Some(13 + 7));
    assert_eq!(block_end(b"cas a 0 0 0 1 noreply\r\n"), Some(23 + 2));
    assert_eq!(block_end(b"ms a 10 T0\r\n"), Some(12 + 12));
    assert_eq!(block_end(b"set a 0 0 -1\r\n"), None);
    assert_eq!(block_end(b"get a\r\n"), None);
    assert_eq!(block_end(b"set a 0 0 5"), None);
}
