//! Binary-protocol writes replicate exactly like their text equivalents (issue 11, item 3): on
//! a replicated pair of real processes, what a binary client writes on one node is read in text
//! on the other with the same value, flags, CAS id and TTL, and the other way round.

use crate::harness::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const SET: u8 = 0x01;
const GET: u8 = 0x00;
const DELETE: u8 = 0x04;
const INCREMENT: u8 = 0x05;
const APPEND: u8 = 0x0e;
const TOUCH: u8 = 0x1c;

/// A reply: (status, cas, extras, value).
type Reply = (u16, u64, Vec<u8>, Vec<u8>);

struct Bin(TcpStream);

impl Bin {
    fn connect(port: u16) -> Bin {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Bin(s)
    }

    fn call(&mut self, opcode: u8, extras: &[u8], key: &[u8], value: &[u8], cas: u64) -> Reply {
        let req = binary::request_with(opcode, extras, key, value, 0x1234, cas);
        self.0.write_all(&req).unwrap();
        let mut h = [0u8; 24];
        self.0.read_exact(&mut h).unwrap();
        assert_eq!((h[0], h[1]), (0x81, opcode));
        let klen = u16::from_be_bytes([h[2], h[3]]) as usize;
        let elen = h[4] as usize;
        let blen = u32::from_be_bytes([h[8], h[9], h[10], h[11]]) as usize;
        let mut b = vec![0u8; blen];
        self.0.read_exact(&mut b).unwrap();
        let cas = u64::from_be_bytes(h[16..24].try_into().unwrap());
        let status = u16::from_be_bytes([h[6], h[7]]);
        (status, cas, b[..elen].to_vec(), b[elen + klen..].to_vec())
    }

    fn set(&mut self, key: &str, value: &str, flags: u32, exptime: u32) -> u64 {
        let mut ext = flags.to_be_bytes().to_vec();
        ext.extend_from_slice(&exptime.to_be_bytes());
        let (status, cas, _, _) = self.call(SET, &ext, key.as_bytes(), value.as_bytes(), 0);
        assert_eq!(status, 0);
        cas
    }

    /// (value, flags, cas)
    fn get(&mut self, key: &str) -> Option<(String, u32, u64)> {
        let (status, cas, extras, value) = self.call(GET, &[], key.as_bytes(), &[], 0);
        if status == 1 {
            return None;
        }
        assert_eq!(status, 0);
        let flags = u32::from_be_bytes(extras[..4].try_into().unwrap());
        Some((String::from_utf8(value).unwrap(), flags, cas))
    }
}

/// `mg key t`: the remaining TTL (-1 for none), or None on a miss.
fn ttl(c: &mut Client, key: &str) -> Option<i64> {
    let line = c.cmd(&format!("mg {key} t"));
    let t = line.strip_prefix("HD t")?;
    Some(t.trim().parse().unwrap())
}

fn pair() -> (Proc, Proc) {
    crate::harness::pair(Link::AToB, &[], 20)
}

#[test]
fn binary_writes_read_in_text_on_the_peer_and_back() {
    let (a, b) = pair();
    let mut bin_a = Bin::connect(a.port);
    let mut text_b = b.client();

    // set: value, flags, CAS and TTL arrive as they were written.
    let cas = bin_a.set("bk", "hello", 7, 1000);
    assert!(
        wait_for(10, || text_b.gets("bk").is_some()),
        "bk never reached B"
    );
    assert_eq!(text_b.gets("bk"), Some(("hello".into(), 7, cas)));
    let t = ttl(&mut text_b, "bk").expect("ttl");
    assert!((990..=1000).contains(&t), "ttl {t}");

    // append keeps flags and TTL, as in text.
    let (status, cas, _, _) = bin_a.call(APPEND, &[], b"bk", b" world", 0);
    assert_eq!(status, 0);
    assert!(wait_for(10, || text_b.gets("bk").map(|g| g.2) == Some(cas)));
    assert_eq!(text_b.gets("bk"), Some(("hello world".into(), 7, cas)));

    // incr creating with its initial value, then incrementing.
    let mut ext = 3u64.to_be_bytes().to_vec();
    ext.extend_from_slice(&40u64.to_be_bytes());
    ext.extend_from_slice(&0u32.to_be_bytes());
    let (status, _, _, v) = bin_a.call(INCREMENT, &ext, b"ctr", &[], 0);
    assert_eq!((status, v), (0, 40u64.to_be_bytes().to_vec()));
    let (status, _, _, v) = bin_a.call(INCREMENT, &ext, b"ctr", &[], 0);
    assert_eq!((status, v), (0, 43u64.to_be_bytes().to_vec()));
    assert!(wait_for(10, || text_b.get("ctr").as_deref() == Some("43")));
    // ... and incremented further in text on B, read in binary on A.
    assert_eq!(text_b.cmd("incr ctr 7"), "50");
    assert!(wait_for(10, || bin_a
        .get("ctr")
        .is_some_and(|(v, _, _)| v.trim() == "50")));

    // touch replicates the new TTL.
    let (status, _, _, _) = bin_a.call(TOUCH, &5000u32.to_be_bytes(), b"bk", &[], 0);
    assert_eq!(status, 0);
    assert!(wait_for(10, || ttl(&mut text_b, "bk")
        .is_some_and(|t| (4990..=5000).contains(&t))));

    // delete.
    let (status, _, _, _) = bin_a.call(DELETE, &[], b"bk", &[], 0);
    assert_eq!(status, 0);
    assert!(wait_for(10, || text_b.gets("bk").is_none()));

    // The other way: text on B, binary on A, with the same CAS id.
    assert_eq!(text_b.store("set", "tk", 9, 0, "from-text"), "STORED");
    let (_, _, cas_b) = text_b.gets("tk").expect("tk on B");
    assert!(wait_for(10, || bin_a.get("tk").is_some()));
    assert_eq!(bin_a.get("tk"), Some(("from-text".into(), 9, cas_b)));

    // And binary on B read in text on A.
    let mut bin_b = Bin::connect(b.port);
    let mut text_a = a.client();
    let cas = bin_b.set("bb", "from-b", 3, 0);
    assert!(wait_for(10, || text_a.gets("bb").is_some()));
    assert_eq!(text_a.gets("bb"), Some(("from-b".into(), 3, cas)));
    assert_eq!(ttl(&mut text_a, "bb"), Some(-1));
}
