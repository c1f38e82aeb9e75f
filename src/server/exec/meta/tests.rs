use super::debug::slab_class;
use super::*;
use crate::protocol::{meta, ParseLimits, Parsed, Request};
use crate::server::counters::Stats;
use crate::server::session::HeldItems;
use crate::store::Store;
use crate::store::StoreConfig;

fn store() -> Store {
    Store::new(StoreConfig {
        shards: 4,
        ..StoreConfig::default()
    })
}

/// Parses and executes each request in `input` in turn, returning all reply bytes.
fn run(store: &Store, stats: &Stats, input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        match meta::parse(rest, &ParseLimits::default()) {
            Parsed::Request(Request::Meta(req), used) => {
                execute(store, stats, &req, &mut out, &mut HeldItems::default());
                rest = &rest[used..];
            }
            Parsed::Error {
                kind,
                consumed,
                swallow,
                ..
            } => {
                out.extend_from_slice(kind.reply());
                rest = &rest[(consumed + swallow).min(rest.len())..];
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    out
}

/// Runs each (request, expected reply) pair on one fresh store.
fn table(cases: &[(&str, &str)]) {
    let s = store();
    let st = Stats::default();
    for (req, want) in cases {
        let got = run(&s, &st, req.as_bytes());
        assert_eq!(String::from_utf8_lossy(&got), *want, "request {req:?}");
    }
}

#[test]
fn meta_noop_and_miss() {
    table(&[
        ("mn\r\n", "MN\r\n"),
        ("mg foo v\r\n", "EN\r\n"),
        ("mg foo k Oabc v\r\n", "EN kfoo Oabc\r\n"),
        ("mg foo q v\r\nmn\r\n", "MN\r\n"),
        ("md foo\r\n", "NF\r\n"),
        ("md foo q Ox k\r\n", "NF Ox kfoo\r\n"),
        ("ma foo\r\n", "NF\r\n"),
        ("ma foo q\r\n", "NF\r\n"),
        ("me foo\r\n", "EN\r\n"),
    ]);
}

#[test]
fn meta_set_get_flags() {
    let s = store();
    let st = Stats::default();
    let got = run(&s, &st, b"ms foo 2 T0 F5 c k Oab\r\nhi\r\n");
    let cas = s.entry(b"foo").item().map(|i| i.cas()).unwrap_or(0);
    assert_eq!(got, format!("HD c{cas} kfoo Oab\r\n").into_bytes());
    let got = run(&s, &st, b"mg foo v c k s f t h l Oxy\r\nmg foo h l q\r\n");
    assert_eq!(
        String::from_utf8_lossy(&got),
        format!("VA 2 c{cas} kfoo s2 f5 t-1 h0 l0 Oxy\r\nhi\r\nHD h1 l0\r\n")
    );
    assert_eq!(st.get_hits.load(std::sync::atomic::Ordering::Relaxed), 2);
    assert_eq!(st.cmd_set.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[test]
fn meta_set_modes_and_cas() {
    table(&[
        ("ms foo 1 MR\r\na\r\n", "NS\r\n"),
        ("ms foo 1 MA\r\na\r\n", "NS\r\n"),
        ("ms foo 1 ME\r\na\r\n", "HD\r\n"),
        ("ms foo 1 ME\r\nb\r\n", "NS\r\n"),
        ("ms foo 1 MA\r\nc\r\n", "HD\r\n"),
        ("ms foo 1 MP\r\nz\r\n", "HD\r\n"),
        ("mg foo v\r\n", "VA 3\r\nzac\r\n"),
        ("ms foo 1 C99999\r\nx\r\n", "EX\r\n"),
        ("ms bar 1 C1\r\nx\r\n", "NF\r\n"),
        ("ms foo 1 q\r\nx\r\nmn\r\n", "MN\r\n"),
        ("ms foo 1 q C1 c\r\nx\r\n", "EX c0\r\n"),
        (
            "ms foo 1 MX\r\nx\r\n",
            "CLIENT_ERROR invalid mode for ms M token\r\n",
        ),
        (
            "ms foo 1 Mxx\r\nx\r\n",
            "CLIENT_ERROR incorrect length for M token\r\n",
        ),
        ("ms foo 1 S\r\nx\r\n", "CLIENT_ERROR invalid flag\r\n"),
        // The "\r\n" left after the 3-byte block is an empty command line.
        (
            "ms foo 1\r\nxyz\r\n",
            "CLIENT_ERROR bad data chunk\r\nERROR\r\n",
        ),
    ]);
}

#[test]
fn meta_cas_match_and_stale() {
    let s = store();
    let st = Stats::default();
    run(&s, &st, b"ms k 1\r\na\r\n");
    let cas = s.entry(b"k").item().map(|i| i.cas()).unwrap_or(0);
    let got = run(&s, &st, format!("ms k 1 C{cas}\r\nb\r\n").as_bytes());
    assert_eq!(got, b"HD\r\n");
    // I with an older CAS stores but marks the item stale; the next mg wins the token.
    let got = run(&s, &st, b"ms k 1 I C1\r\nc\r\nmg k v\r\nmg k v\r\n");
    assert_eq!(
        String::from_utf8_lossy(&got),
        "HD\r\nVA 1 X W\r\nc\r\nVA 1 Z X\r\nc\r\n"
    );
}

#[test]
fn meta_vivify_and_recache() {
    table(&[
        ("mg foo N30 t s v\r\n", "VA 0 t30 s0 W\r\n\r\n"),
        ("mg foo N30 t v\r\n", "VA 0 t30 Z\r\n\r\n"),
        ("ms bar 1 T100\r\nx\r\n", "HD\r\n"),
        ("mg bar R30 t\r\n", "HD t100\r\n"),
        ("mg bar R200 t\r\n", "HD t100 W\r\n"),
        ("mg bar R200 t\r\n", "HD t100 Z\r\n"),
        ("mg bar t T50\r\n", "HD t100 Z\r\n"),
        ("mg bar t\r\n", "HD t50 Z\r\n"),
    ]);
}

#[test]
fn meta_delete() {
    table(&[
        ("ms foo 1\r\nx\r\n", "HD\r\n"),
        ("md foo C99999 Oo k\r\n", "EX Oo kfoo\r\n"),
        ("md foo I T30\r\n", "HD\r\n"),
        ("mg foo t v\r\n", "VA 1 t30 X W\r\nx\r\n"),
        ("md foo q\r\nmn\r\n", "MN\r\n"),
        ("md foo\r\n", "NF\r\n"),
        ("md foo x\r\n", "CLIENT_ERROR invalid or duplicate flag\r\n"),
    ]);
}

#[test]
fn meta_arith() {
    table(&[
        ("ma n N0 J10 v\r\n", "VA 2\r\n10\r\n"),
        ("ma n v\r\n", "VA 2\r\n11\r\n"),
        ("ma n MD D20 v\r\n", "VA 1\r\n0\r\n"),
        ("ma n D5 q\r\nmn\r\n", "MN\r\n"),
        ("ma n v t T100\r\n", "VA 1 t-1\r\n6\r\n"),
        ("mg n t v\r\n", "VA 2 t100\r\n6 \r\n"),
        // A result longer than the old value is a new item: memcached loses the TTL.
        ("ms g 1\r\n9\r\n", "HD\r\n"),
        ("ma g T100 t v\r\n", "VA 2 t100\r\n10\r\n"),
        ("mg g t\r\n", "HD t-1\r\n"),
        ("ma g T200 t\r\n", "HD t200\r\n"),
        ("mg g t\r\n", "HD t200\r\n"),
        ("ma n C1 Oz\r\n", "EX Oz\r\n"),
        (
            "ma n Mx\r\n",
            "CLIENT_ERROR invalid mode for ma M token\r\n",
        ),
        (
            "ma n Dabc\r\n",
            "CLIENT_ERROR invalid or duplicate flag\r\n",
        ),
        ("ms s 1\r\nx\r\n", "HD\r\n"),
        (
            "ma s\r\n",
            "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n",
        ),
        ("ma q N0 q\r\n", "HD\r\n"),
    ]);
}

#[test]
fn meta_base64_keys() {
    table(&[
        ("ms Zm9v 1 b k\r\nx\r\n", "HD kZm9v b\r\n"),
        ("mg foo k v\r\n", "VA 1 kZm9v b\r\nx\r\n"),
        ("mg Zm9v b k s\r\n", "HD kZm9v b s1\r\n"),
        ("mg Zm9 b k\r\n", "CLIENT_ERROR error decoding key\r\n"),
        ("md Zm9v b k\r\n", "HD kZm9v b\r\n"),
    ]);
}

#[test]
fn meta_opaque_too_long_after_touch() {
    let long = format!("O{}", "x".repeat(32));
    table(&[
        ("ms foo 1\r\nx\r\n", "HD\r\n"),
        (
            &format!("mg foo T100 {long}\r\n"),
            "CLIENT_ERROR opaque token too long\r\n",
        ),
        ("mg foo t\r\n", "HD t100\r\n"),
        (
            &format!("ms foo 1 {long}\r\nx\r\n"),
            "CLIENT_ERROR opaque token too long\r\n",
        ),
        (
            &format!("mg nope {long}\r\n"),
            "CLIENT_ERROR opaque token too long\r\n",
        ),
    ]);
}

proptest::proptest! {
    /// Random meta lines (valid flags with random values, and junk) never panic the parser
    /// or the executor, and every request gets a reply unless it asked for quiet mode.
    #[test]
    fn meta_exec_random_lines_never_panic(
        lines in proptest::collection::vec(
            (
                proptest::sample::select(vec!["mg", "ms", "md", "ma", "mn", "me"]),
                proptest::sample::select(vec!["a", "b", "Zm9v", "YQ==", "n"]),
                proptest::collection::vec("[bcfhklOqstuvNRTCFIMDJSExP][0-9a-zA-Z+-]{0,3}", 0..6),
                "[0-9a-z]{0,4}",
            ),
            1..30,
        )
    ) {
        let s = store();
        let st = Stats::default();
        for (cmd, key, flags, data) in lines {
            let line = if cmd == "ms" {
                format!("ms {key} {} {}\r\n{data}\r\n", data.len(), flags.join(" "))
            } else {
                format!("{cmd} {key} {}\r\n", flags.join(" "))
            };
            let _ = run(&s, &st, line.as_bytes());
        }
    }
}

#[test]
fn meta_slab_class_like_memcached() {
    // (ITEM_ntotal, cls) pairs printed by memcached 1.6.18 `me` with default settings.
    let seen = [
        (61, 1),
        (91, 1),
        (161, 4),
        (261, 6),
        (1061, 12),
        (5061, 19),
        (10061, 22),
        (100061, 32),
        (400061, 39),
        (600061, 39),
        (1000061, 39),
    ];
    for (ntotal, cls) in seen {
        assert_eq!(slab_class(ntotal), cls, "ntotal {ntotal}");
    }
}

#[test]
fn meta_debug_dump() {
    let s = store();
    let st = Stats::default();
    run(&s, &st, b"ms foo 2\r\nhi\r\n");
    let cas = s.entry(b"foo").item().map(|i| i.cas()).unwrap_or(0);
    let got = run(&s, &st, b"me foo\r\n");
    assert_eq!(
        String::from_utf8_lossy(&got),
        format!("ME foo exp=-1 la=0 cas={cas} fetch=no cls=1 size=64\r\n")
    );
    assert_eq!(st.cmd_meta.load(std::sync::atomic::Ordering::Relaxed), 1);
}
