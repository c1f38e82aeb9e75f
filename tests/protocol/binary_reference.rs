//! Replays `tests/data/binary_reference.txt` (memcached 1.6.18's replies to a table of binary
//! requests, recorded by `tests/interop/binary_reference.py`) against a real repcached process
//! over TCP: the same reply frames step by step, and the same closes.
//!
//! Two things legitimately differ and are compared by rule rather than by byte: CAS ids (ours
//! derive from the hybrid logical clock, so that every node gives a write the same id; the test
//! keeps a one-to-one map from memcached's ids to ours, and rewrites the ids it sends in requests
//! through it) and the version string. Everything else in every frame must be identical.
//! The SASL cases were recorded on a server started with -S whose users the table never names
//! (every attempt fails); they run against repcached -S with a password file of another user.

use crate::harness::Server;
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const TABLE: &str = include_str!("../data/binary_reference.txt");

struct Step {
    send: Vec<u8>,
    recv: Vec<u8>,
}

struct Case {
    name: String,
    sasl: bool,
    steps: Vec<Step>,
    closed: bool,
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

fn load() -> (String, Vec<Case>) {
    let mut item_size_max = String::new();
    let mut cases: Vec<Case> = Vec::new();
    let mut sasl = false;
    for line in TABLE.lines().filter(|l| !l.starts_with('#')) {
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        match word {
            "item_size_max" => item_size_max = rest.to_string(),
            "server" => sasl = rest == "sasl",
            "case" => cases.push(Case {
                name: rest.to_string(),
                sasl,
                steps: Vec::new(),
                closed: false,
            }),
            "send" => cases.last_mut().expect("case").steps.push(Step {
                send: hex(rest),
                recv: Vec::new(),
            }),
            "recv" => {
                let case = cases.last_mut().expect("case");
                case.steps.last_mut().expect("step").recv = hex(rest);
            }
            "end" => cases.last_mut().expect("case").closed = rest == "closed",
            other => panic!("unexpected line {other:?}"),
        }
    }
    (item_size_max, cases)
}

/// A response frame split into its header fields and body.
#[derive(Debug, Clone, PartialEq)]
struct Frame {
    head: Vec<u8>,
    cas: u64,
    body: Vec<u8>,
}

fn frames(mut b: &[u8]) -> Vec<Frame> {
    let mut out = Vec::new();
    while b.len() >= 24 {
        let len = u32::from_be_bytes([b[8], b[9], b[10], b[11]]) as usize;
        let end = (24 + len).min(b.len());
        let mut cas = [0u8; 8];
        cas.copy_from_slice(&b[16..24]);
        out.push(Frame {
            head: b[..16].to_vec(),
            cas: u64::from_be_bytes(cas),
            body: b[24..end].to_vec(),
        });
        b = &b[end..];
    }
    out
}

/// Recorded CAS ids to ours, one to one.
#[derive(Default)]
struct CasMap {
    ours: HashMap<u64, u64>,
    theirs: HashMap<u64, u64>,
}

impl CasMap {
    fn matches(&mut self, recorded: u64, got: u64) -> bool {
        if recorded == 0 || got == 0 {
            return recorded == got;
        }
        match (self.ours.get(&recorded), self.theirs.get(&got)) {
            (Some(&o), _) => o == got,
            (None, Some(_)) => false,
            (None, None) => {
                self.ours.insert(recorded, got);
                self.theirs.insert(got, recorded);
                true
            }
        }
    }

    /// Rewrites the CAS of every request frame in `send` that carries a recorded id.
    fn rewrite(&self, send: &mut [u8]) {
        let mut at = 0;
        while at + 24 <= send.len() && send[at] == 0x80 {
            let mut cas = [0u8; 8];
            cas.copy_from_slice(&send[at + 16..at + 24]);
            if let Some(ours) = self.ours.get(&u64::from_be_bytes(cas)) {
                send[at + 16..at + 24].copy_from_slice(&ours.to_be_bytes());
            }
            let len = u32::from_be_bytes([send[at + 8], send[at + 9], send[at + 10], send[at + 11]])
                as usize;
            at += 24 + len;
        }
    }
}

/// A version reply: the body is the server's own version string.
fn is_version(f: &Frame) -> bool {
    f.head[1] == 0x0b && f.head[6] == 0 && f.head[7] == 0
}

/// Reads until `want` frames have arrived (or the deadline), then whatever follows within a
/// short while; returns the bytes and whether the peer closed.
fn read_frames(s: &mut TcpStream, want: usize) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 65536];
    loop {
        let complete = frames(&got).len() >= want && {
            let f = frames(&got);
            let total: usize = f.iter().map(|f| 24 + f.body.len()).sum();
            total == got.len()
        };
        let now = Instant::now();
        let wait = if complete {
            Duration::from_millis(30)
        } else if now >= deadline {
            return (got, false);
        } else {
            deadline - now
        };
        s.set_read_timeout(Some(wait)).expect("timeout");
        match s.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if complete {
                    return (got, false);
                }
            }
            Err(_) => return (got, true),
        }
    }
}

#[test]
fn binary_table_through_the_server() {
    let (item_size_max, cases) = load();
    let dir = std::env::temp_dir().join(format!("repcached-binref-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let pwdb = dir.join("pwdb").display().to_string();
    std::fs::write(&pwdb, "someone-else:not-in-the-table\n").expect("pwdb");
    let mut server: Option<Server> = None;
    let mut cas = CasMap::default();
    let (mut ran, mut steps) = (0, 0);
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        if server.is_none() || (i > 0 && cases[i - 1].sasl != case.sasl) {
            let mut args = vec!["-m", "64", "-I", &item_size_max];
            if case.sasl {
                args.extend(["-S", "--sasl-pwdb", &pwdb]);
            } else {
                args.extend(["-B", "binary"]);
            }
            server = Some(Server::repcached(&args));
            cas = CasMap::default();
        }
        let addr = server.as_ref().expect("server").addr;
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_nodelay(true).expect("nodelay");
        let mut closed = false;
        for (n, step) in case.steps.iter().enumerate() {
            let mut send = step.send.clone();
            cas.rewrite(&mut send);
            let _ = s.write_all(&send);
            let want = frames(&step.recv);
            let (got, eof) = read_frames(&mut s, want.len());
            closed |= eof;
            let got = frames(&got);
            let same = want.len() == got.len()
                && want.iter().zip(&got).all(|(w, g)| {
                    let body_ok = if is_version(w) {
                        is_version(g) && g.body == repcached::protocol::reply::VERSION.as_bytes()
                    } else {
                        w.head == g.head && w.body == g.body
                    };
                    body_ok && cas.matches(w.cas, g.cas)
                });
            steps += 1;
            if !same {
                failures.push(format!(
                    "case {:?} step {n}: sent {}\n  want {want:02x?}\n  got  {got:02x?}",
                    case.name,
                    hexs(&step.send)
                ));
                break;
            }
        }
        if !closed {
            // Still open? Nothing more may arrive, and no EOF within a while (a probe request
            // could land in the middle of bytes the server is still discarding).
            s.set_read_timeout(Some(Duration::from_millis(200)))
                .expect("timeout");
            let mut buf = [0u8; 1024];
            match s.read(&mut buf) {
                Ok(0) => closed = true,
                Ok(n) => failures.push(format!(
                    "case {:?}: unexpected trailing bytes {}",
                    case.name,
                    hexs(&buf[..n])
                )),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => closed = true,
            }
        }
        if closed != case.closed {
            failures.push(format!(
                "case {:?}: closed {closed}, memcached closed {}",
                case.name, case.closed
            ));
        }
        ran += 1;
    }
    assert!(ran >= 66, "only {ran} cases ran");
    assert!(
        failures.is_empty(),
        "{} of {ran} cases ({steps} steps) differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn hexs(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// One binary request on `s`; returns (status, body).
fn call(s: &mut TcpStream, opcode: u8, extras: &[u8], key: &[u8], value: &[u8]) -> (u16, Vec<u8>) {
    let req = crate::harness::binary::request_with(opcode, extras, key, value, 0, 0);
    s.write_all(&req).expect("write");
    let mut h = [0u8; 24];
    s.read_exact(&mut h).expect("header");
    let mut b = vec![0u8; u32::from_be_bytes([h[8], h[9], h[10], h[11]]) as usize];
    s.read_exact(&mut b).expect("body");
    (u16::from_be_bytes([h[6], h[7]]), b)
}

#[test]
fn sasl_plain_with_a_password_file() {
    let dir = std::env::temp_dir().join(format!("repcached-sasl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let pwdb = dir.join("pwdb");
    std::fs::write(&pwdb, "alice:s3cret\nbob:other\n").expect("pwdb");
    let pwdb = pwdb.display().to_string();
    let server = Server::repcached(&["-S", "--sasl-pwdb", &pwdb]);
    let connect = || {
        let s = TcpStream::connect(server.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    };
    let set_extras = [0u8; 8];

    // Unauthenticated: refused and closed, as memcached does.
    let mut s = connect();
    assert_eq!(
        call(&mut s, 0x00, &[], b"k", &[]),
        (0x20, b"Auth failure.".to_vec())
    );
    let mut rest = Vec::new();
    assert_eq!(s.read_to_end(&mut rest).ok(), Some(0));

    // A wrong password keeps the connection; the right one opens it.
    let mut s = connect();
    assert_eq!(call(&mut s, 0x20, &[], &[], &[]), (0, b"PLAIN".to_vec()));
    let bad = call(&mut s, 0x21, &[], b"PLAIN", b"\0alice\0wrong");
    assert_eq!(bad, (0x20, b"Auth failure.".to_vec()));
    let bad = call(&mut s, 0x21, &[], b"PLAIN", b"\0bob\0s3cret");
    assert_eq!(bad.0, 0x20);
    let ok = call(&mut s, 0x21, &[], b"PLAIN", b"\0alice\0s3cret");
    assert_eq!(ok, (0, b"Authenticated".to_vec()));
    assert_eq!(call(&mut s, 0x01, &set_extras, b"k", b"v").0, 0);
    let (status, body) = call(&mut s, 0x00, &[], b"k", &[]);
    assert_eq!((status, &body[4..]), (0, &b"v"[..]));

    // The authorization id, when given, must be the user.
    let mut s = connect();
    assert_eq!(
        call(&mut s, 0x21, &[], b"PLAIN", b"bob\0alice\0s3cret").0,
        0x20
    );
    assert_eq!(
        call(&mut s, 0x21, &[], b"PLAIN", b"alice\0alice\0s3cret").0,
        0
    );

    // -S makes the port binary only: a text client is closed at once.
    let mut s = connect();
    s.write_all(b"version\r\n").unwrap();
    assert_eq!(s.read_to_end(&mut rest).ok(), Some(0));
}

/// `-B`: auto serves both by the first byte; ascii and binary hang up at once on the other.
#[test]
fn binding_protocol_modes() {
    let noop = [
        0x80u8, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let exchange = |server: &Server, bytes: &[u8]| {
        let mut s = TcpStream::connect(server.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(bytes).unwrap();
        let mut buf = [0u8; 64];
        match s.read(&mut buf) {
            Ok(n) => buf[..n].to_vec(),
            Err(e) => panic!("no answer and no close: {e}"),
        }
    };
    let auto = Server::repcached(&[]);
    assert_eq!(exchange(&auto, &noop)[..2], [0x81, 0x0a]);
    assert!(exchange(&auto, b"version\r\n").starts_with(b"VERSION "));
    let ascii = Server::repcached(&["-B", "ascii"]);
    assert_eq!(exchange(&ascii, &noop), b"");
    assert!(exchange(&ascii, b"version\r\n").starts_with(b"VERSION "));
    let binary = Server::repcached(&["-B", "binary"]);
    assert_eq!(exchange(&binary, b"version\r\n"), b"");
    assert_eq!(exchange(&binary, &noop)[..2], [0x81, 0x0a]);
}
