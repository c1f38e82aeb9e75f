//! Attacks on the replication port, tried against real repcached processes on loopback: a relay
//! between two nodes' listeners, a capture of a link's bytes, a flood of half-open handshakes,
//! a peer certified by another CA. (The clock-poisoning peer is in replication_lib.rs: it needs
//! the library's channel to speak as an authenticated peer.)

mod repl_common;

use repl_common::process::*;
use repl_common::write_secret;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Copies bytes from `from` to `to` until either side closes, appending them to `log`.
fn pipe(mut from: TcpStream, mut to: TcpStream, log: Option<Arc<Mutex<Vec<u8>>>>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if let Some(l) = &log {
                        l.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Both);
        let _ = from.shutdown(std::net::Shutdown::Both);
    });
}

/// Joins two connections into one: what arrives on either is sent out of the other.
fn relay(a: TcpStream, b: TcpStream) {
    pipe(a.try_clone().unwrap(), b.try_clone().unwrap(), None);
    pipe(b, a, None);
}

#[test]
fn a_relay_between_two_nodes_listeners_is_refused() {
    let secret = write_secret("relay", "relay-test-secret-that-the-attacker-lacks");
    let s = secret.to_str().unwrap();
    let a = spawn(free_port(), &[], &["--repl-secret-file", s]);
    let b = spawn(free_port(), &[], &["--repl-secret-file", s]);
    assert_eq!(a.client().set("from-a", "1"), "STORED");
    assert_eq!(b.client().set("from-b", "1"), "STORED");

    // The attacker knows no secret: it connects to both replication ports and joins them, so
    // each node's handshake reaches the other. It also reflects a node onto itself.
    let to_a = TcpStream::connect(a.repl_addr()).unwrap();
    let to_b = TcpStream::connect(b.repl_addr()).unwrap();
    relay(to_a, to_b);
    let a1 = TcpStream::connect(a.repl_addr()).unwrap();
    let a2 = TcpStream::connect(a.repl_addr()).unwrap();
    relay(a1, a2);

    // Nothing may cross, at any moment, until the nodes give up on these connections at the
    // handshake deadline (3 s): the relayed pair times out on whichever node's deadline comes
    // first (the other sees the relay close).
    let stat = |p: &Proc, k: &str| p.client().stat_u64("", k);
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut ca, mut cb) = (a.client(), b.client());
    loop {
        assert_eq!(ca.get("from-b"), None, "a key crossed the relay");
        assert_eq!(cb.get("from-a"), None, "a key crossed the relay");
        assert_eq!(
            stat(&a, "repl_peers") + stat(&b, "repl_peers"),
            0,
            "a relayed peer was admitted"
        );
        let timeouts = stat(&a, "repl_handshake_timeouts") + stat(&b, "repl_handshake_timeouts");
        let pending = stat(&a, "repl_handshakes_pending") + stat(&b, "repl_handshakes_pending");
        if timeouts >= 2 && pending == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the relayed handshakes did not end: {timeouts} timeouts, {pending} pending"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        stat(&a, "repl_records_applied") + stat(&b, "repl_records_applied"),
        0
    );
}

/// A TCP proxy that keeps a copy of every byte it forwards (both directions).
struct Recorder {
    addr: SocketAddr,
    bytes: Arc<Mutex<Vec<u8>>>,
}

fn recorder(target: String) -> Recorder {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let bytes = Arc::new(Mutex::new(Vec::new()));
    let log = bytes.clone();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(c) = c else { continue };
            let Ok(s) = TcpStream::connect(&target) else {
                continue;
            };
            pipe(
                c.try_clone().unwrap(),
                s.try_clone().unwrap(),
                Some(log.clone()),
            );
            pipe(s, c, Some(log.clone()));
        }
    });
    Recorder { addr, bytes }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Runs a pair whose only link goes through a recorder (B dials A), writes a distinctive value
/// on each side, and returns what crossed the wire.
fn captured_link_bytes(extra_a: &[&str], extra_b: &[&str]) -> Vec<u8> {
    let pa = free_port();
    let rec = recorder(format!("127.0.0.1:{pa}"));
    let a = spawn(pa, &[], extra_a);
    let b = spawn(free_port(), &[rec.addr.to_string()], extra_b);
    assert!(wait_for(10, || synced(&b)), "pair never synced");
    let (mut ca, mut cb) = (a.client(), b.client());
    assert_eq!(
        ca.set("session:capture-a", "DISTINCTIVE-SESSION-VALUE-4242-from-a"),
        "STORED"
    );
    assert_eq!(
        cb.set("session:capture-b", "DISTINCTIVE-SESSION-VALUE-4242-from-b"),
        "STORED"
    );
    assert!(wait_for(10, || cb.get("session:capture-a").is_some()
        && ca.get("session:capture-b").is_some()));
    let bytes = rec.bytes.lock().unwrap().clone();
    assert!(bytes.len() > 100, "the recorder saw the link");
    bytes
}

#[test]
fn a_captured_link_shows_no_key_or_value_in_cleartext() {
    // Control: without a secret (loopback) the recorder does see the values, so the capture
    // itself works.
    let plain = captured_link_bytes(&[], &[]);
    assert!(contains(&plain, b"DISTINCTIVE-SESSION-VALUE-4242-from-a"));

    let secret = write_secret("capture", "capture-test-secret-0123456789abcdef");
    let s = secret.to_str().unwrap();
    let sealed = captured_link_bytes(&["--repl-secret-file", s], &["--repl-secret-file", s]);
    for needle in [
        &b"DISTINCTIVE-SESSION-VALUE"[..],
        b"session:capture",
        b"capture-test-secret",
    ] {
        assert!(
            !contains(&sealed, needle),
            "{} in cleartext on the wire",
            String::from_utf8_lossy(needle)
        );
    }
}

/// Test certificates: a CA, and per node a certificate for 127.0.0.1 signed by it.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("repcached-pki-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("repcached test CA {name}"),
        );
        let ca = params.self_signed(&ca_key).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        for node in ["a", "b"] {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut p =
                rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".into()])
                    .unwrap();
            p.distinguished_name
                .push(rcgen::DnType::CommonName, format!("node {node}"));
            p.extended_key_usages = vec![
                rcgen::ExtendedKeyUsagePurpose::ServerAuth,
                rcgen::ExtendedKeyUsagePurpose::ClientAuth,
            ];
            let cert = p.signed_by(&key, &ca, &ca_key).unwrap();
            std::fs::write(dir.join(format!("{node}.pem")), cert.pem()).unwrap();
            std::fs::write(dir.join(format!("{node}.key")), key.serialize_pem()).unwrap();
        }
        Pki { dir }
    }

    /// The --repl-tls-* arguments of `node`, trusting `ca_of`'s CA.
    fn args(&self, node: &str, ca_of: &Pki) -> Vec<String> {
        let p = |f: &str, d: &Path| d.join(f).to_str().unwrap().to_string();
        vec![
            "--repl-tls-cert".into(),
            p(&format!("{node}.pem"), &self.dir),
            "--repl-tls-key".into(),
            p(&format!("{node}.key"), &self.dir),
            "--repl-tls-ca".into(),
            p("ca.pem", &ca_of.dir),
        ]
    }
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn mutual_tls_links_peers_of_one_ca_encrypts_and_refuses_others() {
    let pki = Pki::new("good");
    let (aa, ba) = (pki.args("a", &pki), pki.args("b", &pki));
    let sealed = captured_link_bytes(&strs(&aa), &strs(&ba));
    assert!(!contains(&sealed, b"DISTINCTIVE-SESSION-VALUE"));

    // A node whose certificate comes from another CA is refused, and counted, on both ends.
    let rogue = Pki::new("rogue");
    let a = spawn(free_port(), &[], &strs(&aa));
    let r = spawn(
        free_port(),
        &[a.repl_addr()],
        &strs(&rogue.args("b", &rogue)),
    );
    assert_eq!(a.client().set("tls-a", "1"), "STORED");
    assert_eq!(r.client().set("tls-r", "1"), "STORED");
    assert!(
        wait_for(10, || a.client().stat_u64("", "repl_auth_failures") >= 1
            && r.client().stat_u64("", "repl_auth_failures") >= 1),
        "the rogue certificate was not counted as an authentication failure"
    );
    assert!(a.stderr_contains("rejected peer"));
    assert_eq!(a.client().get("tls-r"), None);
    assert_eq!(r.client().get("tls-a"), None);
}

/// Holds `per_source` connections from each source address to `target` open until `stop`;
/// each sends a partial preamble and then nothing. Like a patient attacker, it reopens a
/// connection at once when the server timed it out (it was held a while), after 200 ms when
/// the server closed it at once, and every 10 ms while the port is closed (so that a restarted
/// node's listener is flooded as soon as it opens). `connects` counts the handshakes opened.
fn flood(
    target: SocketAddr,
    sources: Vec<&'static str>,
    per_source: usize,
    stop: Arc<AtomicBool>,
    connects: Arc<AtomicUsize>,
) -> Vec<std::thread::JoinHandle<()>> {
    struct Slot {
        conn: Option<TcpStream>,
        opened: Instant,
        next_try: Instant,
    }
    sources
        .into_iter()
        .map(|src| {
            let (stop, connects) = (stop.clone(), connects.clone());
            std::thread::spawn(move || {
                let connect = || -> Option<TcpStream> {
                    let s =
                        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                            .ok()?;
                    let from: SocketAddr = format!("{src}:0").parse().ok()?;
                    s.bind(&from.into()).ok()?;
                    s.connect_timeout(&target.into(), Duration::from_secs(1))
                        .ok()?;
                    let mut t: TcpStream = s.into();
                    let _ = t.write_all(b"RCR");
                    t.set_nonblocking(true).ok()?;
                    Some(t)
                };
                let now = Instant::now();
                let mut slots: Vec<Slot> = (0..per_source)
                    .map(|_| Slot {
                        conn: None,
                        opened: now,
                        next_try: now,
                    })
                    .collect();
                // Bounded in time as well as by `stop`.
                let deadline = Instant::now() + Duration::from_secs(60);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let now = Instant::now();
                    for slot in slots.iter_mut() {
                        if let Some(c) = &mut slot.conn {
                            let mut b = [0u8; 64];
                            let alive = match c.read(&mut b) {
                                Ok(0) => false,
                                Ok(_) => true,
                                Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
                            };
                            if alive {
                                continue;
                            }
                            slot.conn = None;
                            let held = now.duration_since(slot.opened) > Duration::from_secs(1);
                            slot.next_try = if held {
                                now
                            } else {
                                now + Duration::from_millis(200)
                            };
                        }
                        if now >= slot.next_try {
                            slot.conn = connect();
                            slot.opened = now;
                            match slot.conn {
                                Some(_) => {
                                    connects.fetch_add(1, Ordering::Relaxed);
                                }
                                None => slot.next_try = now + Duration::from_millis(10),
                            }
                        }
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
        })
        .collect()
}

#[test]
fn a_pair_relinks_within_5s_of_a_restart_under_a_half_open_handshake_flood() {
    let secret = write_secret("flood", "flood-test-secret-0123456789abcdef");
    let s = secret.to_str().unwrap();
    let (pa, pb) = (free_port(), free_port());
    let a = spawn(pa, &[format!("127.0.0.1:{pb}")], &["--repl-secret-file", s]);
    let mut b = spawn(pb, &[format!("127.0.0.1:{pa}")], &["--repl-secret-file", s]);
    assert!(
        wait_for(10, || synced(&a) && synced(&b)),
        "pair never synced"
    );

    // 10 attacker addresses x 30 connections against each node (600 in all), plus 10 from
    // the peers' own address: far beyond every budget, held open and reopened when closed.
    let stop = Arc::new(AtomicBool::new(false));
    let connects = Arc::new(AtomicUsize::new(0));
    let mut threads = Vec::new();
    for port in [pa, pb] {
        let target: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let attackers = vec![
            "127.0.0.2",
            "127.0.0.3",
            "127.0.0.4",
            "127.0.0.5",
            "127.0.0.6",
            "127.0.0.7",
            "127.0.0.8",
            "127.0.0.9",
            "127.0.0.10",
            "127.0.0.11",
        ];
        threads.extend(flood(target, attackers, 30, stop.clone(), connects.clone()));
        threads.extend(flood(
            target,
            vec!["127.0.0.1"],
            10,
            stop.clone(),
            connects.clone(),
        ));
    }
    let total = || connects.load(Ordering::Relaxed);
    assert!(
        wait_for(20, || total() >= 500),
        "the flood opened only {} sockets",
        total()
    );

    b.kill9();
    let t0 = Instant::now();
    let b = spawn(pb, &[format!("127.0.0.1:{pa}")], &["--repl-secret-file", s]);
    let (mut ca, mut cb) = (a.client(), b.client());
    assert_eq!(ca.set("after-restart", "1"), "STORED");
    let relinked = wait_for(10, || {
        synced(&a) && synced(&b) && cb.get("after-restart").is_some()
    });
    let took = t0.elapsed();
    let refused =
        ca.stat_u64("", "repl_handshakes_refused") + cb.stat_u64("", "repl_handshakes_refused");
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    println!(
        "flood of {} half-open handshakes: pair relinked in {:?}, {refused} refused",
        total(),
        took
    );
    assert!(relinked, "the pair did not relink under the flood");
    assert!(took < Duration::from_secs(5), "relinking took {took:?}");
    assert!(refused > 0, "the flood never hit the budget");
}

#[test]
fn ipv6_loopback_counts_as_loopback() {
    // A listener-only node on ::1 without a secret is local: its listener must stay enabled
    // (it used to be disabled as "off loopback"), and a peer on ::1 links to it.
    let pa = free_port();
    let a = spawn(pa, &[], &["--repl-listen", "::1"]);
    let b = spawn(
        free_port(),
        &[format!("[::1]:{pa}")],
        &["--repl-listen", "::1"],
    );
    assert!(!a.stderr_contains("replication listener disabled"));
    assert!(wait_for(10, || synced(&b)), "no link over ::1");
    assert_eq!(a.client().set("v6", "1"), "STORED");
    let mut cb = b.client();
    assert!(wait_for(10, || cb.get("v6").is_some()));
}

#[test]
fn peers_whose_links_leave_from_another_source_address_are_matched_to_their_slot() {
    // Each node listens for peers on its own loopback address, but its outgoing connections
    // leave from 127.0.0.1: the peer must still file the link under the configured slot (from
    // the listen address in the authenticated HELLO), not as a second, unconfigured peer.
    let (pa, pb) = (free_port(), free_port());
    let a = spawn(
        pa,
        &[format!("127.0.0.21:{pb}")],
        &["--repl-listen", "127.0.0.11"],
    );
    let b = spawn(
        pb,
        &[format!("127.0.0.11:{pa}")],
        &["--repl-listen", "127.0.0.21"],
    );
    for node in [&a, &b] {
        assert!(
            wait_for(10, || {
                let s = node.client().stats("replication");
                s.get("peer0:state").map(String::as_str) == Some("synced")
                    && s.get("peer0:configured").map(String::as_str) == Some("1")
            }),
            "{:?}",
            node.client().stats("replication")
        );
        let s = node.client().stats("replication");
        assert!(
            !s.contains_key("peer1:state"),
            "the link was filed as a second peer: {s:?}"
        );
    }
}
