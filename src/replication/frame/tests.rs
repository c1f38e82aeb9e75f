//! Frame codec tests: round trips, limits, malformed input.
use super::format::T_BYE;
use super::*;
use crate::store::{Contribution, Counter, Mutation, MutationKind, Version};
use bytes::{Bytes, BytesMut};

const LIM: FrameLimits = FrameLimits {
    item_size_max: 1024,
};

fn roundtrip(f: Frame, now: u32) -> Frame {
    let mut out = BytesMut::new();
    encode(&f, now, &mut out);
    let (g, n) = decode(&out, &LIM, now).unwrap().unwrap();
    assert_eq!(n, out.len());
    g
}

#[test]
fn frames_roundtrip() {
    let v = Version::new(77 << 16, 3);
    let frames = vec![
        Frame::Hello {
            version: 1,
            node: 9,
            listen_port: 11212,
            listen_ip: Some("10.0.0.2".parse().unwrap()),
        },
        Frame::Hello {
            version: 2,
            node: 9,
            listen_port: 1,
            listen_ip: Some("fe80::1".parse().unwrap()),
        },
        Frame::Hello {
            version: 2,
            node: 9,
            listen_port: 1,
            listen_ip: None,
        },
        Frame::Psync {
            run: 1,
            next: 2,
            want_run: 3,
            want_offset: 4,
        },
        Frame::FullSync { run: 5, start: 6 },
        Frame::Continue { run: 5, from: 6 },
        Frame::SnapTomb {
            key: Bytes::from_static(b"k"),
            version: v,
            touched: v,
            exptime: 0,
        },
        Frame::SnapEnd { items: 12 },
        Frame::SnapFlush { at: 0, version: v },
        Frame::SyncMode { full: true },
        Frame::Heartbeat {
            ack: 1,
            last: 2,
            now_ms: 3,
        },
        Frame::Bye { last: 9 },
        Frame::Record {
            offset: 1,
            mutation: Mutation {
                key: Bytes::from_static(b"k"),
                version: v,
                kind: MutationKind::Delete,
            },
        },
        Frame::Record {
            offset: 2,
            mutation: Mutation {
                key: Bytes::from_static(b"n"),
                version: v,
                kind: MutationKind::Delta {
                    base: v,
                    incr: true,
                    delta: 5,
                    value: 10,
                    seq: 7,
                    net: -(1 << 70),
                },
            },
        },
        Frame::SnapItem {
            key: Bytes::from_static(b"c"),
            value: Bytes::from_static(b"12"),
            flags: 1,
            exptime: 0,
            version: v,
            base: v,
            touched: Version::ZERO,
            counter: Some(Counter::from_parts(
                3,
                [Contribution::new(9, 2, -4), Contribution::new(2, 5, 13)],
            )),
        },
        Frame::SnapItem {
            key: Bytes::from_static(b"p"),
            value: Bytes::from_static(b"plain"),
            flags: 0,
            exptime: 0,
            version: v,
            base: v,
            touched: v,
            counter: None,
        },
    ];
    for f in frames {
        assert_eq!(roundtrip(f.clone(), 1000), f);
    }
}

#[test]
fn expiry_travels_as_remaining_time() {
    let v = Version::new(1, 1);
    let put = |exptime| Frame::Record {
        offset: 1,
        mutation: Mutation {
            key: Bytes::from_static(b"k"),
            version: v,
            kind: MutationKind::Put {
                flags: 5,
                exptime,
                value: Bytes::from_static(b"v"),
            },
        },
    };
    let mut out = BytesMut::new();
    encode(&put(1_000_100), 1_000_000, &mut out);
    // Receiver's clock is 500 s behind: the item still has 100 s to live there.
    let (f, _) = decode(&out, &LIM, 999_500).unwrap().unwrap();
    assert_eq!(f, put(999_600));
    let mut out = BytesMut::new();
    encode(&put(0), 1_000_000, &mut out);
    assert_eq!(decode(&out, &LIM, 5).unwrap().unwrap().0, put(0));
    let mut out = BytesMut::new();
    encode(&put(999_999), 1_000_000, &mut out);
    assert_eq!(
        decode(&out, &LIM, 5).unwrap().unwrap().0,
        put(1),
        "already expired stays expired"
    );
}

#[test]
fn hostile_input_is_refused_not_trusted() {
    // Huge length prefix: refused before buffering.
    assert!(matches!(
        decode(&[0xff, 0xff, 0xff, 0xff, 1], &LIM, 0),
        Err(FrameError::TooLarge(_))
    ));
    // Incomplete frames wait for more bytes.
    assert_eq!(decode(&[0, 0, 0, 9, T_BYE, 0], &LIM, 0), Ok(None));
    // Unknown type, trailing garbage, short payload.
    assert!(decode(&[0, 0, 0, 1, 99], &LIM, 0).is_err());
    assert!(decode(&[0, 0, 0, 10, T_BYE, 0, 0, 0, 0, 0, 0, 0, 0, 1], &LIM, 0).is_err());
    assert!(decode(&[0, 0, 0, 3, T_BYE, 0, 0], &LIM, 0).is_err());
    // A record without a key (not a flush) and a value over the item size.
    let mut out = BytesMut::new();
    encode(
        &Frame::Record {
            offset: 1,
            mutation: Mutation {
                key: Bytes::new(),
                version: Version::ZERO,
                kind: MutationKind::Delete,
            },
        },
        0,
        &mut out,
    );
    assert!(decode(&out, &LIM, 0).is_err());
    let mut out = BytesMut::new();
    encode(
        &Frame::Record {
            offset: 1,
            mutation: Mutation {
                key: Bytes::from_static(b"k"),
                version: Version::ZERO,
                kind: MutationKind::Put {
                    flags: 0,
                    exptime: 0,
                    value: Bytes::from(vec![0u8; 1025]),
                },
            },
        },
        0,
        &mut out,
    );
    assert!(matches!(
        decode(&out, &LIM, 0),
        Err(FrameError::ValueTooLarge(1025))
    ));
}
