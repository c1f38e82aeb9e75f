//! Server behaviour over real sockets against the real binary: connection limit, UDP framing,
//! shutdown paths, large values, data swallowed across reads, numeric stats, idle timeout,
//! listeners in `stats conns`.

use crate::harness::{signal, Server};
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::{Duration, Instant};

/// Starts the binary on port 0 (UDP only if `extra` asks) and reads the bound ports from its
/// stderr.
fn start(extra: &[&str]) -> Server {
    Server::launch(&["-p", "-1", "-l", "127.0.0.1", "-X", "0"], extra)
}

fn connect(node: &Server) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", node.port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Reads until the reply ends with `terminator` (or the deadline passes).
fn read_until(s: &mut TcpStream, terminator: &[u8]) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    let deadline = Instant::now() + Duration::from_secs(10);
    while !buf.ends_with(terminator) && Instant::now() < deadline {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => break,
        }
    }
    buf
}

fn ask(s: &mut TcpStream, req: &[u8], terminator: &[u8]) -> Vec<u8> {
    s.write_all(req).unwrap();
    read_until(s, terminator)
}

#[test]
fn connection_limit_rejects_with_memcached_error() {
    let node = start(&["-c", "2"]);
    let mut a = connect(&node);
    let mut b = connect(&node);
    assert_eq!(ask(&mut a, b"version\r\n", b"\r\n")[..8], *b"VERSION ");
    assert_eq!(ask(&mut b, b"version\r\n", b"\r\n")[..8], *b"VERSION ");
    let mut c = connect(&node);
    assert_eq!(
        read_until(&mut c, b"\r\n"),
        b"ERROR Too many open connections\r\n"
    );
    drop(a);
    // once a slot is free, new clients are served again
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut d = connect(&node);
        let reply = ask(&mut d, b"version\r\n", b"\r\n");
        if reply.starts_with(b"VERSION ") {
            break;
        }
        assert!(Instant::now() < deadline, "never accepted again: {reply:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let stats = ask(&mut b, b"stats\r\n", b"END\r\n");
    let text = String::from_utf8_lossy(&stats);
    assert!(!text.contains("STAT rejected_connections 0\r\n"), "{text}");
}

#[test]
fn udp_requests_get_framed_replies() {
    let udp_port = {
        let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let node = start(&["-U", &udp_port.to_string()]);
    let port = node.udp_port.expect("udp port reported");
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut frame = vec![0x12, 0x34, 0, 0, 0, 1, 0, 0];
    frame.extend_from_slice(b"set u 3 0 2\r\nhi\r\nget u\r\n");
    sock.send_to(&frame, ("127.0.0.1", port)).unwrap();
    let mut buf = [0u8; 2048];
    let n = sock.recv(&mut buf).unwrap();
    assert_eq!(&buf[..8], &[0x12, 0x34, 0, 0, 0, 1, 0, 0]);
    assert_eq!(&buf[8..n], b"STORED\r\nVALUE u 3 2\r\nhi\r\nEND\r\n");

    // a reply larger than one datagram is split into numbered datagrams
    let mut frame = vec![0, 7, 0, 0, 0, 1, 0, 0];
    frame.extend_from_slice(b"set big 0 0 3000 noreply\r\n");
    frame.extend_from_slice(&[b'z'; 3000]);
    frame.extend_from_slice(b"\r\nget big\r\n");
    sock.send_to(&frame, ("127.0.0.1", port)).unwrap();
    let mut body = Vec::new();
    let mut total = 0;
    let mut seen = 0;
    while seen == 0 || seen < total {
        let n = sock.recv(&mut buf).unwrap();
        assert_eq!(&buf[..2], &[0, 7]);
        assert_eq!(
            u16::from_be_bytes([buf[2], buf[3]]) as usize,
            seen,
            "in-order on loopback"
        );
        total = u16::from_be_bytes([buf[4], buf[5]]) as usize;
        assert!(n <= 1400);
        body.extend_from_slice(&buf[8..n]);
        seen += 1;
    }
    assert!(total >= 3);
    assert!(body.starts_with(b"VALUE big 0 3000\r\n") && body.ends_with(b"\r\nEND\r\n"));
}

#[test]
fn shutdown_command_needs_dash_a() {
    let node = start(&[]);
    let mut s = connect(&node);
    assert_eq!(
        ask(&mut s, b"shutdown\r\n", b"\r\n"),
        b"ERROR: shutdown not enabled\r\n"
    );

    let mut node = start(&["-A"]);
    let mut s = connect(&node);
    s.write_all(b"shutdown\r\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while node.try_wait().is_none() {
        assert!(
            Instant::now() < deadline,
            "server did not exit after shutdown"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let mut node = start(&[]);
    let mut s = connect(&node);
    assert_eq!(ask(&mut s, b"set k 0 0 1\r\nv\r\n", b"\r\n"), b"STORED\r\n");
    signal(node.pid(), libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = node.try_wait() {
            assert!(status.success(), "exit status {status:?}");
            break;
        }
        assert!(Instant::now() < deadline, "server did not exit on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn large_values_and_swallowing_across_reads() {
    let node = start(&["-I", "2m"]);
    let mut s = connect(&node);
    let value = vec![b'q'; 2 * 1024 * 1024 - 512];
    let mut req = format!("set big 1 0 {}\r\n", value.len()).into_bytes();
    req.extend_from_slice(&value);
    req.extend_from_slice(b"\r\n");
    assert_eq!(ask(&mut s, &req, b"\r\n"), b"STORED\r\n");
    let reply = ask(&mut s, b"get big\r\n", b"END\r\n");
    assert_eq!(
        reply.len(),
        format!("VALUE big 1 {}\r\n", value.len()).len() + value.len() + 7
    );

    // a too-large block arriving in pieces is swallowed, then the connection goes on
    let huge = 3 * 1024 * 1024;
    s.write_all(format!("set big 0 0 {huge}\r\n").as_bytes())
        .unwrap();
    let piece = vec![b'x'; 64 * 1024];
    let mut sent = 0;
    while sent < huge {
        let n = piece.len().min(huge - sent);
        s.write_all(&piece[..n]).unwrap();
        sent += n;
    }
    s.write_all(b"\r\nget big\r\n").unwrap();
    let reply = read_until(&mut s, b"END\r\n");
    assert_eq!(
        reply, b"SERVER_ERROR object too large for cache\r\nEND\r\n",
        "a failed set unlinks the old value"
    );
}

#[test]
fn stats_values_are_numeric_where_memcached_s_are() {
    let node = start(&[]);
    let mut s = connect(&node);
    ask(
        &mut s,
        b"set a 0 0 1\r\n1\r\nget a\r\ngets a b\r\n",
        b"END\r\nEND\r\n",
    );
    let reply = String::from_utf8(ask(&mut s, b"stats\r\n", b"END\r\n")).unwrap();
    let text_fields = ["version", "libevent"];
    let mut seen = 0;
    for line in reply.lines().filter(|l| l.starts_with("STAT ")) {
        let mut parts = line.splitn(3, ' ');
        let (_, name, value) = (parts.next(), parts.next().unwrap(), parts.next().unwrap());
        seen += 1;
        if text_fields.contains(&name) {
            continue;
        }
        assert!(
            value.parse::<f64>().is_ok(),
            "{name} is not numeric: {value}"
        );
        if name.starts_with("rusage_") {
            let (sec, usec) = value.split_once('.').expect("sec.usec");
            assert!(
                sec.parse::<u64>().is_ok() && usec.len() == 6,
                "{name}={value}"
            );
        }
    }
    assert!(seen > 40);
    for field in [
        "cmd_get 3",
        "get_hits 2",
        "get_misses 1",
        "cmd_set 1",
        "curr_items 1",
    ] {
        assert!(
            reply.contains(&format!("STAT {field}\r\n")),
            "missing {field} in {reply}"
        );
    }
    for group in ["settings", "items", "slabs", "conns", "sizes"] {
        let r = ask(&mut s, format!("stats {group}\r\n").as_bytes(), b"END\r\n");
        assert!(r.ends_with(b"END\r\n"), "stats {group}: {r:?}");
    }
    assert_eq!(ask(&mut s, b"stats reset\r\n", b"\r\n"), b"RESET\r\n");
}

fn stat_value(s: &mut TcpStream, group: &str, name: &str) -> Option<String> {
    let cmd = if group.is_empty() {
        "stats\r\n".to_string()
    } else {
        format!("stats {group}\r\n")
    };
    let reply = String::from_utf8_lossy(&ask(s, cmd.as_bytes(), b"END\r\n")).into_owned();
    let prefix = format!("STAT {name} ");
    reply
        .lines()
        .find_map(|l| l.strip_prefix(&prefix).map(str::to_string))
}

/// Whether the server closed `s`: a read returns EOF (or a reset) before `limit`.
fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = [0u8; 64];
    while t0.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) => return Some(t0.elapsed()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Some(t0.elapsed()),
        }
    }
    None
}

/// memcached's t/idle-timeout.t: an idle client is closed after the timeout and counted in
/// `idle_kicks`; an active one and one in the middle of a data block are not.
#[test]
fn idle_timeout_closes_idle_clients_only() {
    let node = start(&["-o", "idle_timeout=1"]);
    let mut stats = connect(&node);
    assert_eq!(
        stat_value(&mut stats, "", "idle_kicks").as_deref(),
        Some("0")
    );
    assert_eq!(
        stat_value(&mut stats, "settings", "idle_timeout").as_deref(),
        Some("1")
    );
    let mut idle = connect(&node);
    assert_eq!(ask(&mut idle, b"version\r\n", b"\r\n")[..8], *b"VERSION ");
    let mut mid_block = connect(&node);
    mid_block.write_all(b"set k 0 0 10\r\nab").unwrap();
    // `stats` keeps this one busy; the idle one must go within timeout + 2 check periods.
    let mut active = connect(&node);
    let keep_busy = std::thread::spawn(move || {
        for _ in 0..30 {
            if !ask(&mut active, b"version\r\n", b"\r\n").starts_with(b"VERSION ") {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        true
    });
    let took = closed_within(&mut idle, Duration::from_secs(6));
    println!("idle_timeout=1: idle client closed after {took:?}");
    assert!(took.is_some(), "idle client never closed");
    assert!(keep_busy.join().unwrap(), "an active client was closed");
    assert_eq!(
        closed_within(&mut mid_block, Duration::from_millis(300)),
        None,
        "a client in the middle of a data block was closed"
    );
    assert_eq!(ask(&mut mid_block, b"cdefghij\r\n", b"\r\n"), b"STORED\r\n");
    // The idle client and the first stats client (idle since) are both kicked; each counts
    // its own kick on its worker, so poll briefly.
    let mut fresh = connect(&node);
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut kicks = stat_value(&mut fresh, "", "idle_kicks");
    while kicks.as_deref() != Some("2") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        kicks = stat_value(&mut fresh, "", "idle_kicks");
    }
    assert_eq!(kicks.as_deref(), Some("2"));
}

/// memcached's t/stats-conns.t: the listening sockets are listed with their state, next to
/// clients (one waiting for a data block is in conn_nread).
#[test]
fn stats_conns_lists_listeners() {
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp_port = udp.local_addr().unwrap().port();
    drop(udp);
    let node = start(&["-U", &udp_port.to_string()]);
    let mut a = connect(&node);
    a.write_all(b"set foo 0 0 6\r\n").unwrap();
    let mut s = connect(&node);
    let deadline = Instant::now() + Duration::from_secs(5);
    let text = loop {
        let text =
            String::from_utf8_lossy(&ask(&mut s, b"stats conns\r\n", b"END\r\n")).into_owned();
        // The UDP socket is bound (and listed) just after the TCP listener's line is printed.
        let udp_listed = text.contains(&format!(":addr udp:127.0.0.1:{udp_port}\r\n"));
        if (text.contains(":state conn_nread\r\n") && udp_listed) || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let fd_of = |needle: &str| {
        text.lines()
            .find(|l| l.ends_with(needle))
            .and_then(|l| l.strip_prefix("STAT "))
            .and_then(|l| l.split(':').next())
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no {needle:?} in {text}"))
    };
    let tcp_fd = fd_of(&format!(":addr tcp:127.0.0.1:{}", node.port));
    assert!(
        text.contains(&format!("STAT {tcp_fd}:state conn_listening\r\n")),
        "{text}"
    );
    let udp_fd = fd_of(&format!(":addr udp:127.0.0.1:{udp_port}"));
    assert!(
        text.contains(&format!("STAT {udp_fd}:UDP UDP\r\n")),
        "{text}"
    );
    assert!(
        text.contains(&format!("STAT {udp_fd}:state conn_read\r\n")),
        "{text}"
    );
    assert!(text.contains(":state conn_nread\r\n"), "{text}");
    assert!(text.contains(":state conn_parse_cmd\r\n"), "{text}");
    drop(a);
}

/// Values of random sizes (10 B to 100 KB) from four writers into -m 8: the last 100 sets
/// acknowledged, over all writers, are all still readable and intact. Eviction takes the oldest
/// data of the whole cache, never a writer's own recent writes, and -m bounds the items of any
/// mix of sizes.
#[test]
fn the_last_sets_of_mixed_sizes_survive_a_small_memory_limit() {
    let node = start(&["-m", "8", "-t", "2"]);
    let value = |i: u64, len: usize| -> Vec<u8> {
        (0..len)
            .map(|j| b'a' + ((i as usize * 7 + j) % 26) as u8)
            .collect()
    };
    let seq = std::sync::atomic::AtomicU64::new(0);
    let acked = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for w in 0..4u64 {
            let (node, seq, acked, value) = (&node, &seq, &acked, &value);
            scope.spawn(move || {
                let mut s = connect(node);
                let mut rng = (w + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                let mut mine = Vec::new();
                for n in 0..300u64 {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let len = 10 + (rng % (100 * 1024 - 10)) as usize;
                    let i = n * 4 + w;
                    let mut req = format!("set mix:{i} 0 0 {len}\r\n").into_bytes();
                    req.extend_from_slice(&value(i, len));
                    req.extend_from_slice(b"\r\n");
                    let reply = ask(&mut s, &req, b"\r\n");
                    assert_eq!(reply, b"STORED\r\n", "set mix:{i}");
                    mine.push((
                        seq.fetch_add(1, std::sync::atomic::Ordering::SeqCst),
                        i,
                        len,
                    ));
                }
                acked.lock().unwrap().extend(mine);
            });
        }
    });
    let mut all = acked.into_inner().unwrap();
    all.sort_unstable_by_key(|a| std::cmp::Reverse(a.0));
    let mut s = connect(&node);
    let mut lost = Vec::new();
    for &(_, i, len) in all.iter().take(100) {
        let reply = ask(&mut s, format!("get mix:{i}\r\n").as_bytes(), b"END\r\n");
        let mut want = format!("VALUE mix:{i} 0 {len}\r\n").into_bytes();
        want.extend_from_slice(&value(i, len));
        want.extend_from_slice(b"\r\nEND\r\n");
        if reply != want {
            lost.push(i);
        }
    }
    assert!(
        lost.is_empty(),
        "{} of the last 100 sets lost: {lost:?}",
        lost.len()
    );
    let stats = ask(&mut s, b"stats\r\n", b"END\r\n");
    let stats = String::from_utf8_lossy(&stats);
    let stat = |name: &str| -> u64 {
        stats
            .lines()
            .find_map(|l| l.strip_prefix(&format!("STAT {name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    assert!(stat("evictions") > 0, "the run must have evicted");
    assert!(stat("bytes") <= 8 << 20, "bytes {} over -m", stat("bytes"));
}
