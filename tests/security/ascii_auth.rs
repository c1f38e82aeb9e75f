//! memcached's ascii authentication (`-Y FILE`) over real sockets: a byte table of exchanges
//! replayed against repcached and, when it is installed, the reference memcached 1.6.18 started
//! with the same auth file (same bytes, same close); the counters and settings in `stats`;
//! the auth file read again on SIGHUP (and kept when the new one is bad); bad files at start;
//! SASL PLAIN (`-S`) attempts in the same counters.

use crate::harness::{ascii_login, binary, run_to_exit, signal, Server, DEADLINE};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long a silence must last to count as "nothing more to say" after the expected bytes.
const QUIET: Duration = Duration::from_millis(150);

const AUTH: &str = "foo:bar\nbaaaz:quux\n";

/// A file in a fresh temporary directory, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, text: &[u8]) -> TempFile {
        let dir = std::env::temp_dir().join(format!("repcached-ascii-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        TempFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// What came back for one step: the bytes, and whether the server closed.
#[derive(Debug, PartialEq)]
struct Answer {
    bytes: Vec<u8>,
    closed: bool,
}

/// Sends `step` and reads until `want` bytes arrived (or a close), then waits for a short
/// silence so that extra bytes are seen too. Bounded by [`DEADLINE`].
fn exchange(stream: &mut TcpStream, step: &[u8], want: usize) -> Answer {
    let mut bytes = Vec::new();
    let _ = stream.write_all(step);
    let deadline = Instant::now() + DEADLINE;
    let mut buf = [0u8; 4096];
    let mut quiet_until: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if now >= deadline || quiet_until.is_some_and(|q| now >= q) {
            return Answer {
                bytes,
                closed: false,
            };
        }
        if bytes.len() >= want && quiet_until.is_none() {
            quiet_until = Some(now + QUIET);
        }
        let until = quiet_until.unwrap_or(deadline).min(deadline);
        let left = until
            .saturating_duration_since(now)
            .max(Duration::from_millis(1));
        let _ = stream.set_read_timeout(Some(left));
        match stream.read(&mut buf) {
            Ok(0) => {
                return Answer {
                    bytes,
                    closed: true,
                }
            }
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                return Answer {
                    bytes,
                    closed: true,
                }
            }
            Err(_) => {}
        }
    }
}

/// One case: steps sent in order on one connection, each with the bytes memcached answers and
/// whether it then closes.
type Case = (&'static str, Vec<(Vec<u8>, &'static [u8], bool)>);

fn step(send: &[u8], reply: &'static [u8]) -> (Vec<u8>, &'static [u8], bool) {
    (send.to_vec(), reply, false)
}

fn closes(send: Vec<u8>) -> (Vec<u8>, &'static [u8], bool) {
    (send, b"", true)
}

const UNAUTH: &[u8] = b"CLIENT_ERROR unauthenticated\r\n";
const FAILURE: &[u8] = b"CLIENT_ERROR authentication failure\r\n";
const BAD_FORMAT: &[u8] = b"CLIENT_ERROR bad authentication token format\r\n";
const UNAUTH_TWICE: [u8; 60] = *b"CLIENT_ERROR unauthenticated\r\nCLIENT_ERROR unauthenticated\r\n";
const BAD_TERM: &[u8] = b"CLIENT_ERROR bad command line termination\r\n";

/// The table, recorded from memcached 1.6.18 (`memcached -Y FILE -U 0`).
fn cases() -> Vec<Case> {
    let mut big_ok = b"set k 0 0 16382\r\n".to_vec();
    big_ok.extend(std::iter::repeat_n(b'a', 16382));
    big_ok.extend_from_slice(b"\r\n");
    let mut big_bad = b"set k 0 0 16383\r\n".to_vec();
    big_bad.extend(std::iter::repeat_n(b'a', 16383));
    big_bad.extend_from_slice(b"\r\n");
    vec![
        // t/ascii-auth.t
        (
            "ascii-auth.t",
            vec![
                step(b"set foo 0 0 2\r\nhi\r\n", BAD_FORMAT),
                step(b"get foo\r\n", UNAUTH),
                step(b"set foo 0 0 7\r\nfoo bab\r\n", FAILURE),
                step(b"set foo 0 0 7\r\nfoo bar\r\n", b"STORED\r\n"),
                step(b"set toast 0 0 2\r\nhi\r\n", b"STORED\r\n"),
                step(b"get toast\r\n", b"VALUE toast 0 2\r\nhi\r\nEND\r\n"),
            ],
        ),
        (
            "second user",
            vec![
                step(b"set foo 0 0 10\r\nbaaaz quux\r\n", b"STORED\r\n"),
                // The credentials were not stored.
                step(b"get foo\r\n", b"END\r\n"),
            ],
        ),
        (
            "every command is refused",
            vec![
                step(b"quit\r\n", UNAUTH),
                step(b"mg foo v\r\n", UNAUTH),
                step(b"stats\r\n", UNAUTH),
                step(b"SET foo 0 0 7\r\n", UNAUTH),
                step(b"set foo 0 7\r\n", UNAUTH),
                step(b"set foo 0 0\r\n", UNAUTH),
                step(b"set foo 0 0 abc\r\n", UNAUTH),
                step(b"set foo 0 0 -1\r\n", UNAUTH),
                step(b"set\tk 0 0 7\r\n", UNAUTH),
                step(b"\r\n", UNAUTH),
            ],
        ),
        // memcached reuses one unwritten reply object for the steps before authentication: of
        // several answered in one go only the last reply is sent.
        (
            "pipelined",
            vec![step(
                b"get a\r\nset x 0 0 7\r\nfoo bar\r\nget a\r\n",
                b"STORED\r\nEND\r\n",
            )],
        ),
        (
            "pipelined refusals",
            vec![
                step(b"get a\r\nget b\r\nquit\r\n", UNAUTH),
                step(
                    b"get a\r\nset k 0 0 7\r\nfoo bad\r\nset k 0 0 2\r\nhi\r\n",
                    BAD_FORMAT,
                ),
                step(&b"get a\r\n".repeat(25), &UNAUTH_TWICE),
                step(&b"get a\r\n".repeat(41), &UNAUTH_TWICE),
            ],
        ),
        (
            "line forms",
            vec![
                step(b"set foo 0 0 7\nfoo bar\r\n", b"STORED\r\n"),
                step(b"get foo\r\n", b"END\r\n"),
            ],
        ),
        (
            "noreply still answers",
            vec![step(b"set foo 0 0 7 noreply\r\nfoo bar\r\n", b"STORED\r\n")],
        ),
        (
            "spaces",
            vec![step(b"  set k 0 0 10 \r\n foo  bar \r\n", b"STORED\r\n")],
        ),
        (
            "extra words",
            vec![step(b"set k 0 0 9\r\nfoo bar x\r\n", b"STORED\r\n")],
        ),
        (
            "cr in size token",
            vec![step(b"set k 0 0 7\r\r\nfoo bar\r\n", b"STORED\r\n")],
        ),
        (
            "32-bit size",
            vec![step(b"set k 0 0 4294967303\r\nfoo bar\r\n", b"STORED\r\n")],
        ),
        (
            "bad termination",
            vec![
                step(b"set foo 0 0 7\r\nfoo barXY", BAD_TERM),
                step(b"get a\r\n", UNAUTH),
            ],
        ),
        (
            "cr belongs to the password",
            vec![step(b"set foo 0 0 8\r\nfoo bar\r\r\n", FAILURE)],
        ),
        (
            "nul",
            vec![
                step(b"set k 0 0 9\r\nfoo\0bar x\r\n", BAD_FORMAT),
                step(b"set k 0 0 9\r\nfoo bar\0x\r\n", b"STORED\r\n"),
            ],
        ),
        (
            "tab and empty",
            vec![
                step(b"set foo 0 0 7\r\nfoo\tbar\r\n", BAD_FORMAT),
                step(b"set k 0 0 0\r\n\r\n", BAD_FORMAT),
            ],
        ),
        (
            "in pieces",
            vec![
                step(b"set foo 0 0 7\r\n", b""),
                step(b"foo ", b""),
                step(b"bar\r\n", b"STORED\r\n"),
            ],
        ),
        (
            "lone newline waits for a second byte",
            vec![step(b"\n", b""), step(b"x", UNAUTH)],
        ),
        (
            "long line",
            vec![step(&[b'x'; 2000], b""), step(b"\r\n", UNAUTH)],
        ),
        ("too long a line", vec![closes(vec![b'x'; 3000])]),
        (
            "block that fills the buffer",
            vec![step(&big_ok, BAD_FORMAT)],
        ),
        ("block too large", vec![closes(big_bad)]),
        (
            "stats after",
            vec![
                step(b"set foo 0 0 7\r\nfoo bar\r\n", b"STORED\r\n"),
                step(b"verbosity 0\r\n", b"OK\r\n"),
            ],
        ),
    ]
}

fn run_case(server: &Server, case: &Case) -> Vec<Answer> {
    let mut stream = TcpStream::connect_timeout(&server.addr, DEADLINE).expect("connect");
    stream.set_nodelay(true).unwrap();
    let mut answers = Vec::new();
    for (send, reply, closes) in &case.1 {
        let want = if *closes { usize::MAX } else { reply.len() };
        let a = exchange(&mut stream, send, want);
        let closed = a.closed;
        answers.push(a);
        if closed {
            break;
        }
    }
    answers
}

#[test]
fn byte_table_against_memcached() {
    let file = TempFile::new("table", AUTH.as_bytes());
    let sut = Server::repcached(&["-Y", file.path()]);
    let reference = Server::memcached(&["-Y", file.path()]);
    for case in cases() {
        let got = run_case(&sut, &case);
        let expected: Vec<Answer> = case
            .1
            .iter()
            .map(|(_, reply, closed)| Answer {
                bytes: reply.to_vec(),
                closed: *closed,
            })
            .collect();
        assert_eq!(got, expected, "repcached, case {:?}", case.0);
        if let Some(reference) = &reference {
            let theirs = run_case(reference, &case);
            assert_eq!(got, theirs, "repcached vs memcached, case {:?}", case.0);
        }
    }
}

/// Deliberately not memcached's: a binary request on the ascii-only port of -Y is closed at
/// once (as with `-B ascii`), where memcached reads it as a text line and usually waits.
#[test]
fn binary_request_is_closed() {
    let file = TempFile::new("binary", AUTH.as_bytes());
    let sut = Server::repcached(&["-Y", file.path()]);
    let mut c = sut.client();
    let mut noop = vec![0x80, 0x0a];
    noop.resize(24, 0);
    c.send(&noop).unwrap();
    c.closed().expect("closed");
}

#[test]
fn stats_count_attempts_and_failures() {
    let file = TempFile::new("stats", AUTH.as_bytes());
    let sut = Server::repcached(&["-Y", file.path()]);
    let mut c = sut.client();
    // Neither an unauthenticated command nor a malformed block is an attempt.
    c.send(b"get a\r\n").unwrap();
    c.expect(UNAUTH, "unauth");
    c.send(b"set k 0 0 2\r\nhi\r\n").unwrap();
    c.expect(BAD_FORMAT, "format");
    for _ in 0..2 {
        c.send(b"set k 0 0 7\r\nfoo bad\r\n").unwrap();
        c.expect(FAILURE, "failure");
    }
    c.send(b"set k 0 0 7\r\nfoo bar\r\n").unwrap();
    c.expect(b"STORED\r\n", "login");
    assert_eq!(c.stat("", "auth_cmds"), "3");
    assert_eq!(c.stat("", "auth_errors"), "2");
    assert_eq!(c.stat("settings", "auth_enabled_ascii"), file.path());
    assert_eq!(c.stat("settings", "auth_enabled_sasl"), "no");
    assert_eq!(c.stat("settings", "binding_protocol"), "ascii");
}

fn login(server: &Server, user_pass: &str) -> Vec<u8> {
    let mut c = server.client();
    c.send(&ascii_login(user_pass)).unwrap();
    c.read_line()
}

fn hangup(server: &Server) {
    signal(server.pid(), libc::SIGHUP);
}

/// Polls `login` until it answers `want` or the deadline passes.
fn eventually(server: &Server, user_pass: &str, want: &[u8]) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let got = login(server, user_pass);
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{user_pass:?}: still {:?}",
            String::from_utf8_lossy(&got)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sighup_reloads_the_file_and_keeps_it_when_bad() {
    let file = TempFile::new("hup", AUTH.as_bytes());
    let sut = Server::repcached(&["-Y", file.path()]);
    assert_eq!(login(&sut, "new pwd"), FAILURE);
    // A connection that logged in before the reload stays logged in.
    let mut before = sut.client();
    before.send(b"set a 0 0 7\r\nfoo bar\r\n").unwrap();
    before.expect(b"STORED\r\n", "login before reload");

    std::fs::write(&file.0, "new:pwd\n").unwrap();
    hangup(&sut);
    eventually(&sut, "new pwd", b"STORED\r\n");
    assert_eq!(login(&sut, "foo bar"), FAILURE);
    before.send(b"get a\r\n").unwrap();
    before.expect(b"END\r\n", "still logged in");

    // A bad file is refused and the running users stay.
    std::fs::write(&file.0, "new:pwd\nhunter2\n").unwrap();
    hangup(&sut);
    let deadline = Instant::now() + DEADLINE;
    let lines = loop {
        let lines: Vec<String> = sut.stderr_lines();
        if lines.iter().any(|l| l.contains("line 2")) {
            break lines;
        }
        assert!(Instant::now() < deadline, "no reload error logged");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(lines.iter().all(|l| !l.contains("hunter2")), "{lines:?}");
    assert_eq!(login(&sut, "new pwd"), b"STORED\r\n");
}

#[test]
fn bad_files_stop_the_start() {
    let bad = TempFile::new("bad", b"foo:bar\nsupersecret\n");
    for (file, words) in [
        (bad.path(), vec![bad.path(), "line 2"]),
        ("/nonexistent/auth", vec!["/nonexistent/auth"]),
    ] {
        let out = run_to_exit(&["-p", "-1", "-U", "0", "-X", "0", "-Y", file]);
        assert!(out.code != Some(0), "{file}: started");
        let err = out.stderr;
        for w in words {
            assert!(err.contains(w), "{file}: {err}");
        }
        assert!(!err.contains("supersecret"), "{err}");
    }
}

/// SASL PLAIN (-S) attempts count in the same `auth_cmds`/`auth_errors` as memcached's.
#[test]
fn sasl_attempts_are_counted() {
    let file = TempFile::new("pwdb", b"alice:secret\n");
    let opt = format!("sasl_pwdb={}", file.path());
    let sut = Server::repcached(&["-S", "-o", &opt]);
    let mut c = sut.client();
    for (data, status) in [(&b"\0alice\0wrong"[..], 0x20), (b"\0alice\0secret", 0)] {
        c.send(&binary::request(0x21, b"PLAIN", data)).unwrap();
        assert_eq!(binary::read_frame(&mut c).0, status);
    }
    // A step with nothing to continue is a failed exchange too.
    c.send(&binary::request(0x22, b"PLAIN", b"x")).unwrap();
    assert_eq!(binary::read_frame(&mut c).0, 0x20);
    c.send(&binary::request(0x10, b"", b"")).unwrap();
    let mut stats = std::collections::HashMap::new();
    for _ in 0..1000 {
        let (status, key, value) = binary::read_frame(&mut c);
        assert_eq!(status, 0);
        if key.is_empty() {
            break;
        }
        stats.insert(
            String::from_utf8(key).unwrap(),
            String::from_utf8(value).unwrap(),
        );
    }
    assert_eq!(stats["auth_cmds"], "3");
    assert_eq!(stats["auth_errors"], "2");
}
