//! Reply encoders to exact bytes, the header codec, protocol detection.

use super::super::opcode as op;
use super::super::*;
use super::{frame, refused, OPAQUE};
use bytes::BytesMut;

fn bytes_of(f: impl FnOnce(&mut BytesMut)) -> Vec<u8> {
    let mut out = BytesMut::new();
    f(&mut out);
    out.to_vec()
}

/// A response header as hex, then the body.
fn resp(opcode: u8, status: u16, key_len: u16, ext_len: u8, cas: u64, body: &[u8]) -> Vec<u8> {
    let mut v = Header {
        magic: RESPONSE_MAGIC,
        opcode,
        key_len,
        extras_len: ext_len,
        data_type: 0,
        vbucket: status,
        body_len: body.len() as u32,
        opaque: OPAQUE,
        cas,
    }
    .to_bytes()
    .to_vec();
    v.extend_from_slice(body);
    v
}

#[test]
fn response_bytes() {
    let o = OPAQUE;
    // A literal frame first, so the header layout itself is pinned.
    assert_eq!(
        bytes_of(|b| encode_success(op::SET, o, 0x0102, b)),
        [
            0x81, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0, 0, 0, 1,
            2
        ]
    );
    let errors: &[(Status, &[u8])] = &[
        (Status::KeyNotFound, b"Not found"),
        (Status::KeyExists, b"Data exists for key."),
        (Status::TooLarge, b"Too large."),
        (Status::InvalidArguments, b"Invalid arguments"),
        (Status::NotStored, b"Not stored."),
        (
            Status::DeltaBadValue,
            b"Non-numeric server-side value for incr or decr",
        ),
        (Status::AuthError, b"Auth failure."),
        (Status::UnknownCommand, b"Unknown command"),
        (Status::OutOfMemory, b"Out of memory"),
    ];
    for &(status, text) in errors {
        assert_eq!(Status::from_code(status.code()), Some(status));
        assert_eq!(
            bytes_of(|b| encode_error(op::SETQ, o, status, b)),
            resp(op::SETQ, status.code(), 0, 0, 0, text)
        );
    }
    let flags = 7u32.to_be_bytes();
    let mut hit = flags.to_vec();
    hit.extend_from_slice(b"val");
    let mut hitk = flags.to_vec();
    hitk.extend_from_slice(b"keyval");
    for (opcode, want) in [
        (op::GET, resp(op::GET, 0, 0, 4, 9, &hit)),
        (op::GETQ, resp(op::GETQ, 0, 0, 4, 9, &hit)),
        (op::GAT, resp(op::GAT, 0, 0, 4, 9, &hit)),
        (op::GETK, resp(op::GETK, 0, 3, 4, 9, &hitk)),
        (op::GETKQ, resp(op::GETKQ, 0, 3, 4, 9, &hitk)),
        (op::GATKQ, resp(op::GATKQ, 0, 3, 4, 9, &hitk)),
        (op::TOUCH, resp(op::TOUCH, 0, 0, 4, 9, &flags)),
    ] {
        assert_eq!(
            bytes_of(|b| encode_hit(opcode, o, 9, 7, b"key", b"val", b)),
            want
        );
    }
    for (opcode, want) in [
        (op::GET, resp(op::GET, 1, 0, 0, 0, b"Not found")),
        (op::TOUCH, resp(op::TOUCH, 1, 0, 0, 0, b"Not found")),
        (op::GAT, resp(op::GAT, 1, 0, 0, 0, b"Not found")),
        (op::GETK, resp(op::GETK, 1, 3, 0, 0, b"key")),
        (op::GATK, resp(op::GATK, 1, 3, 0, 0, b"key")),
    ] {
        assert_eq!(bytes_of(|b| encode_miss(opcode, o, b"key", b)), want);
    }
    assert_eq!(
        bytes_of(|b| encode_counter(op::INCREMENT, o, 4, 0x0102, b)),
        resp(op::INCREMENT, 0, 0, 0, 4, &[0, 0, 0, 0, 0, 0, 1, 2])
    );
    assert_eq!(
        bytes_of(|b| encode_version(o, b"1.6.18", b)),
        resp(op::VERSION, 0, 0, 0, 0, b"1.6.18")
    );
    assert_eq!(
        bytes_of(|b| {
            encode_stat(o, b"pid", b"42", b);
            encode_stats_end(o, b);
        }),
        [
            resp(op::STAT, 0, 3, 0, 0, b"pid42"),
            resp(op::STAT, 0, 0, 0, 0, b"")
        ]
        .concat()
    );
    assert_eq!(
        bytes_of(|b| encode_sasl_mechs(o, b"PLAIN", b)),
        resp(op::SASL_LIST_MECHS, 0, 0, 0, 0, b"PLAIN")
    );
    assert_eq!(
        bytes_of(|b| encode_sasl_ok(op::SASL_AUTH, o, b)),
        resp(op::SASL_AUTH, 0, 0, 0, 0, b"Authenticated")
    );
    assert_eq!(
        bytes_of(|b| encode_sasl_continue(op::SASL_STEP, o, b"more", b)),
        resp(op::SASL_STEP, 0x21, 0, 0, 0, b"more")
    );
    // A refusal encodes its own reply; a bad magic none.
    let e = refused(&[0u8; 24], Sasl::Disabled);
    assert_eq!(bytes_of(|b| e.encode(b)), b"");
    let unknown = frame(0x50, b"", b"", b"");
    let e = refused(&unknown, Sasl::Disabled);
    assert_eq!(
        bytes_of(|b| e.encode(b)),
        resp(0x50, 0x81, 0, 0, 0, b"Unknown command")
    );
}

#[test]
fn header_round_trip() {
    let h = Header {
        magic: 0x80,
        opcode: 1,
        key_len: 0x0203,
        extras_len: 4,
        data_type: 5,
        vbucket: 0x0607,
        body_len: 0x0809_0a0b,
        opaque: 0x0c0d_0e0f,
        cas: 0x1011_1213_1415_1617,
    };
    assert_eq!(Header::decode(&h.to_bytes()), Some(h));
    assert_eq!(Header::decode(&h.to_bytes()[..23]), None);
}

#[test]
fn auto_detection_by_first_byte() {
    assert!(is_binary_start(0x80));
    for b in [b'g', b's', b'm', 0x81, 0x00, b'\r'] {
        assert!(!is_binary_start(b));
    }
}
