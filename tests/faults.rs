//! Faults, as an operator meets them, against real processes on loopback: SIGTERM during the
//! initial sync wait and under pipelined write load (no acknowledged write may be lost), idle
//! clients, a multi-get past the connection's output limit, clients that never read, and the
//! listening sockets in `stats conns`. Every wait polls with a deadline.

mod repl_common;

use repl_common::process::*;
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn sigterm(pid: u32) {
    // SAFETY: plain kill(2) on a child this test spawned.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
}

fn synced(p: &Proc) -> bool {
    let s = p.client().stats("replication");
    let n = s.keys().filter(|k| k.ends_with(":state")).count();
    n > 0
        && s.iter()
            .filter(|(k, v)| k.ends_with(":state") && *v == "synced")
            .count()
            == n
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
        assert_eq!(c.read_line(), "ok");
        first = c.read_line();
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
        .args(["-p", "0", "-U", "0", "-l", "127.0.0.1", "-X"])
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

#[allow(dead_code)]
fn read_some(s: &mut TcpStream) -> Vec<u8> {
    let mut buf = vec![0u8; 65536];
    match s.read(&mut buf) {
        Ok(n) => buf[..n].to_vec(),
        Err(_) => Vec::new(),
    }
}
