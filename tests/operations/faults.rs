//! Faults, as an operator meets them, against real processes on loopback: SIGTERM during the
//! initial sync wait and under pipelined write load (no acknowledged write may be lost), idle
//! clients, a multi-get past the connection's output limit, clients that never read, and the
//! listening sockets in `stats conns`. Every wait polls with a deadline.

use crate::harness::*;
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn sigterm(pid: u32) {
    signal(pid, libc::SIGTERM);
}

/// One pipelining writer: batches of `set` without waiting, then reads the batch's replies.
/// Returns the keys the server answered STORED for; stops when the connection ends.
fn pipelined_writer(port: u16, prefix: String, stop: Arc<AtomicBool>) -> Vec<String> {
    const BATCH: usize = 50;
    let mut acked = Vec::new();
    let Ok(s) = TcpStream::connect(("127.0.0.1", port)) else {
        return acked;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let mut w = s.try_clone().expect("clone");
    let mut r = BufReader::new(s);
    let mut next = 0usize;
    // Bounded: the server is SIGTERMed within seconds; the cap only guards a broken server.
    while !stop.load(Ordering::Relaxed) && next < 2_000_000 {
        let keys: Vec<String> = (next..next + BATCH)
            .map(|i| format!("{prefix}{i}"))
            .collect();
        next += BATCH;
        let mut req = Vec::with_capacity(BATCH * 40);
        for k in &keys {
            req.extend_from_slice(format!("set {k} 0 0 2\r\nok\r\n").as_bytes());
        }
        if w.write_all(&req).is_err() {
            break;
        }
        for k in keys {
            let mut line = String::new();
            match r.read_line(&mut line) {
                Ok(n) if n > 0 && line == "STORED\r\n" => acked.push(k),
                _ => return acked,
            }
        }
    }
    acked
}

/// The keys of `keys` that `port` does not hold, asked 100 at a time with multi-gets.
fn missing_on(port: u16, keys: &[String]) -> Vec<String> {
    let mut c = Client::connect(port);
    let mut missing = Vec::new();
    for chunk in keys.chunks(100) {
        let found = multi_get(&mut c, chunk);
        missing.extend(chunk.iter().filter(|k| !found.contains(*k)).cloned());
    }
    missing
}

fn multi_get(c: &mut Client, keys: &[String]) -> HashSet<String> {
    let line = format!("get {}", keys.join(" "));
    let mut found = HashSet::new();
    let mut first = c.cmd(&line);
    loop {
        if first == "END" {
            return found;
        }
        let parts: Vec<&str> = first.split(' ').collect();
        assert_eq!(parts[0], "VALUE", "unexpected reply {first}");
        found.insert(parts[1].to_string());
        // Values are "ok": one data line, then the next header.
        assert_eq!(c.reply_line(), "ok");
        first = c.reply_line();
    }
}

/// SIGTERM on a node under pipelined write load: it stops reading requests, answers what it
/// executed, drains replication, then exits; every write it answered STORED for is on the peer.
#[test]
fn sigterm_under_pipelined_load_loses_no_acknowledged_write() {
    let b = spawn(free_port(), &[], &[]);
    let mut lost_total = 0;
    for round in 0..5 {
        let mut a = spawn(free_port(), &[b.repl_addr()], &[]);
        // B also lists the A of earlier rounds (down), so only A's view counts.
        assert!(wait_for(10, || synced(&a)), "round {round}: A never synced");
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let (port, stop) = (a.port, stop.clone());
                std::thread::spawn(move || pipelined_writer(port, format!("r{round}w{w}k"), stop))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        let t0 = Instant::now();
        sigterm(a.pid());
        a.wait_exit(Duration::from_secs(10));
        let exit = t0.elapsed();
        stop.store(true, Ordering::Relaxed);
        let acked: Vec<String> = writers
            .into_iter()
            .flat_map(|w| w.join().expect("writer"))
            .collect();
        assert!(acked.len() > 1000, "round {round}: too little load");
        // A's drain is acknowledged by B before A exits, so B already holds everything.
        let missing = missing_on(b.port, &acked);
        println!(
            "round {round}: {} writes acknowledged by A, {} missing on B, A exited {:?} after SIGTERM",
            acked.len(),
            missing.len(),
            exit
        );
        lost_total += missing.len();
        assert!(
            missing.is_empty(),
            "round {round}: {} acknowledged writes lost, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
    }
    println!("acknowledged writes lost over 5 SIGTERM rounds: {lost_total}");
}

/// A node waiting for its initial sync (its peer accepts and never answers) still answers
/// SIGTERM at once instead of when the wait ends.
#[test]
fn sigterm_during_the_initial_sync_wait_exits_within_3s() {
    let blackhole = TcpListener::bind("127.0.0.1:0").expect("bind");
    let peer = blackhole.local_addr().expect("addr").to_string();
    // Accepts and holds every connection without a byte; ends with the test process.
    let held = Arc::new(Mutex::new(Vec::new()));
    {
        let held = held.clone();
        std::thread::spawn(move || {
            for s in blackhole.incoming().flatten() {
                held.lock().unwrap().push(s);
            }
        });
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_repcached"))
        .args(["-p", "-1", "-U", "0", "-l", "127.0.0.1", "-X"])
        .arg(free_port().to_string())
        .args(["-x", &peer, "--repl-sync-wait", "30"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let lines = stderr_lines(&mut child);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|l: &String| l.contains("listening on repl"))
    {
        assert!(Instant::now() < deadline, "no repl listener: {seen:?}");
        if let Ok(l) = lines.recv_timeout(Duration::from_millis(50)) {
            seen.push(l);
        }
    }
    // Let it reach the wait (the peer has been dialled and holds the link).
    assert!(
        wait_for(5, || !held.lock().unwrap().is_empty()),
        "never dialled the peer"
    );
    std::thread::sleep(Duration::from_millis(200));
    seen.extend(lines.try_iter());
    let waiting = !seen.iter().any(|l| l.contains("listening on tcp"));
    let t0 = Instant::now();
    sigterm(child.id());
    let status = wait_child(&mut child, Duration::from_secs(40));
    let took = t0.elapsed();
    println!(
        "SIGTERM during the initial sync wait (still waiting: {waiting}): exited after {took:?}"
    );
    assert!(status.is_some(), "did not exit within 40 s");
    assert!(took < Duration::from_secs(3), "exit took {took:?}");
}

fn stderr_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

/// Waits at most `limit` for the child to exit; kills it otherwise.
fn wait_child(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Reads until `terminator`, EOF or the deadline; true if the server closed the connection.
fn read_reply(s: &mut TcpStream, terminator: &[u8], limit: Duration) -> (Vec<u8>, bool) {
    let deadline = Instant::now() + limit;
    let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 1 << 16];
    while !buf.ends_with(terminator) && Instant::now() < deadline {
        match s.read(&mut chunk) {
            Ok(0) => return (buf, true),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (buf, true),
        }
    }
    (buf, false)
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_nodelay(true).unwrap();
    s
}

/// memcached's t/conn-limits.t, same options: a multi-get needing more reply objects than
/// the connection's budget gets `SERVER_ERROR out of memory writing get response` and the
/// connection carries on (as in memcached 1.6.18); pipelined meta gets past the budget close
/// the connection. Both count in `response_obj_oom`.
#[test]
fn multi_get_past_the_output_limit_gets_memcacheds_out_of_memory_reply() {
    let node = spawn(
        free_port(),
        &[],
        &["-o", "read_buf_mem_limit=1", "-t", "32", "-R", "500"],
    );
    let mut c = node.client();
    assert_eq!(c.stat_u64("", "response_obj_oom"), 0);
    assert_eq!(
        c.stats("settings")
            .get("read_buf_mem_limit")
            .map(String::as_str),
        Some("1048576")
    );
    let mut s = connect(node.port);
    let keys = vec!["foo"; 500].join(" ");
    s.write_all(format!("get {keys}\r\n").as_bytes()).unwrap();
    let (reply, closed) = read_reply(&mut s, b"\r\n", Duration::from_secs(10));
    assert_eq!(
        String::from_utf8_lossy(&reply),
        "SERVER_ERROR out of memory writing get response\r\n"
    );
    assert!(!closed);
    // memcached 1.6.18 with these options serves 13 keys and refuses 14 (measured).
    assert_eq!(c.set("foo", "bar"), "STORED");
    for (n, fits) in [(13, true), (14, false)] {
        let keys = vec!["foo"; n].join(" ");
        s.write_all(format!("get {keys}\r\n").as_bytes()).unwrap();
        let (reply, _) = read_reply(&mut s, b"\r\n", Duration::from_secs(10));
        let reply = if fits {
            read_reply_after(&mut s, reply, b"END\r\n")
        } else {
            reply
        };
        let reply = String::from_utf8_lossy(&reply).into_owned();
        if fits {
            assert_eq!(reply.matches("VALUE foo 0 3").count(), n, "{reply}");
        } else {
            assert_eq!(reply, "SERVER_ERROR out of memory writing get response\r\n");
        }
    }
    s.write_all(b"version\r\n").unwrap();
    let (reply, _) = read_reply(&mut s, b"\r\n", Duration::from_secs(10));
    assert!(reply.starts_with(b"VERSION "), "{reply:?}");
    let oom = c.stat_u64("", "response_obj_oom");
    assert_eq!(oom, 2);

    // Stacked meta replies past the budget: memcached closes without a word.
    let mut m = connect(node.port);
    m.write_all("mg foo v\r\n".repeat(500).as_bytes()).unwrap();
    let (reply, closed) = read_reply(&mut m, b"\r\n\r\n", Duration::from_secs(10));
    assert!(closed, "not closed after {} bytes", reply.len());
    assert!(reply.is_empty(), "{:?}", String::from_utf8_lossy(&reply));
    assert_eq!(c.stat_u64("", "response_obj_oom"), 3);
    println!(
        "read_buf_mem_limit=1 -t 32: 13 keys served, 14 refused, 500 mg closed; response_obj_oom 3"
    );
}

fn read_reply_after(s: &mut TcpStream, mut have: Vec<u8>, terminator: &[u8]) -> Vec<u8> {
    if !have.ends_with(terminator) {
        let (more, _) = read_reply(s, terminator, Duration::from_secs(10));
        have.extend_from_slice(&more);
    }
    have
}

fn rss_mb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

/// Clients that never read their replies, or send endless lines, cost bounded memory: a
/// multi-get of 400 x 500 KB (200 MB of reply) and 400 pipelined gets of it, both unread,
/// leave the server's RSS within a few MB; a 3 MB line without a newline and a multi-get line
/// past 4 MiB are closed.
#[test]
fn clients_that_do_not_read_cost_bounded_memory() {
    let node = spawn(free_port(), &[], &[]);
    let mut c = node.client();
    let value = "x".repeat(500_000);
    assert_eq!(c.set("big", &value), "STORED");
    let before = rss_mb(node.pid());
    let mut multi = connect(node.port);
    multi
        .write_all(format!("get {}\r\n", vec!["big"; 400].join(" ")).as_bytes())
        .unwrap();
    let mut pipelined = connect(node.port);
    pipelined
        .write_all("get big\r\n".repeat(400).as_bytes())
        .unwrap();
    // Give the server time to fill whatever it would buffer (polling the RSS for growth).
    let mut peak = before;
    let deadline = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < deadline {
        peak = peak.max(rss_mb(node.pid()));
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("RSS with 2 x 200 MB of unread replies: {before} MB before, {peak} MB peak");
    assert!(peak < before + 48, "RSS grew from {before} MB to {peak} MB");
    // The whole reply still arrives once the client reads.
    let (reply, _) = read_reply(&mut multi, b"END\r\n", Duration::from_secs(30));
    assert_eq!(
        reply.len(),
        400 * (value.len() + 2 + "VALUE big 0 500000\r\n".len()) + 5
    );
    assert_eq!(reply.windows(5).filter(|w| w == b"VALUE").count(), 400);

    let mut long = connect(node.port);
    let _ = long.write_all(&vec![b'x'; 3 << 20]);
    let (_, closed) = read_reply(&mut long, b"\r\n", Duration::from_secs(10));
    assert!(closed, "a 3 MB line without newline was kept");
    let mut long_get = connect(node.port);
    let mut line = b"get ".to_vec();
    line.extend(std::iter::repeat_n(b"k ".as_slice(), 2_500_000).flatten());
    let _ = long_get.write_all(&line);
    let (_, closed) = read_reply(&mut long_get, b"\r\n", Duration::from_secs(10));
    assert!(closed, "a 5 MB multi-get line without newline was kept");
}
