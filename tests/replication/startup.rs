//! A starting node next to a peer that cannot sync: refused, accepting then closing, accepting
//! and never answering (blackholed), or lost in the middle of the snapshot. Each must let the
//! node serve clients within 5 s (the initial-sync wait is 30 s by default); next to a healthy
//! peer it still syncs first. Real processes on loopback; the broken peers are in-test sockets.

use crate::harness::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Starts a node whose only peer is `peer` and returns it with the time until its client port
/// opened.
fn start_next_to(peer: &str) -> (Proc, Duration) {
    let t0 = Instant::now();
    let p = spawn(
        free_port(),
        &[peer.to_string()],
        &["--repl-sync-wait", "30"],
    );
    (p, t0.elapsed())
}

/// A broken peer: a listener whose accepted connections go to `on_accept`, until the returned
/// flag is set (or a minute passes).
fn broken_peer(on_accept: impl Fn(TcpStream) + Send + 'static) -> (String, Arc<AtomicBool>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    l.set_nonblocking(true).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !s2.load(Ordering::Relaxed) && Instant::now() < deadline {
            match l.accept() {
                Ok((c, _)) => on_accept(c),
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    (addr, stop)
}

fn outcome(p: &Proc) -> String {
    p.client()
        .stats("replication")
        .get("peer0:initial_sync")
        .cloned()
        .unwrap_or_default()
}

#[test]
fn next_to_a_refused_peer_the_node_serves_at_once() {
    let (p, took) = start_next_to(&format!("127.0.0.1:{}", free_port()));
    println!("refused peer: first request served after {took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(
        outcome(&p).starts_with("gave up: connect"),
        "{}",
        outcome(&p)
    );
}

#[test]
fn next_to_a_peer_that_accepts_then_closes_the_node_serves_within_5s() {
    let (addr, stop) = broken_peer(drop);
    let (p, took) = start_next_to(&addr);
    stop.store(true, Ordering::Relaxed);
    println!("accept-then-close peer: first request served after {took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(outcome(&p).starts_with("gave up"), "{}", outcome(&p));
}

#[test]
fn next_to_a_blackholed_peer_the_node_serves_within_5s() {
    // Accepts and holds every connection, never reading or writing.
    let held = Arc::new(Mutex::new(Vec::new()));
    let h2 = held.clone();
    let (addr, stop) = broken_peer(move |c| h2.lock().unwrap().push(c));
    let (p, took) = start_next_to(&addr);
    stop.store(true, Ordering::Relaxed);
    println!("blackholed peer: first request served after {took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(outcome(&p).contains("timed out"), "{}", outcome(&p));
    assert!(!held.lock().unwrap().is_empty());
}

#[test]
fn a_snapshot_lost_halfway_lets_the_node_serve_and_the_rest_arrives_later() {
    // Peer A holds ~4 MB; B reaches it through a proxy that cuts the connection after 1 MB of
    // A's stream and then closes every new connection (as if A died halfway and its address
    // stayed dead), until the test lets B reconnect.
    let a = spawn(free_port(), &[], &[]);
    let mut ca = a.client();
    let value = "v".repeat(1000);
    for i in 0..4000 {
        assert_eq!(ca.set(&format!("key:{i:05}"), &value), "STORED");
    }
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = l.local_addr().unwrap();
    let target = a.repl_addr();
    let cuts = Arc::new(AtomicUsize::new(0));
    let c2 = cuts.clone();
    let back = Arc::new(AtomicBool::new(false));
    let back2 = back.clone();
    std::thread::spawn(move || {
        for (i, conn) in l.incoming().enumerate().take(500) {
            let Ok(client) = conn else { continue };
            if i > 0 && !back2.load(Ordering::Relaxed) {
                continue; // dropped: closed at once
            }
            let Ok(server) = TcpStream::connect(&target) else {
                continue;
            };
            // The first connection dies after 1 MB from A; later ones are whole.
            let limit = if i == 0 { 1 << 20 } else { usize::MAX };
            let (c_r, s_w) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let (mut from, mut to) = (c_r, s_w);
                let mut buf = [0u8; 16384];
                while let Ok(n @ 1..) = from.read(&mut buf) {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = to.shutdown(std::net::Shutdown::Both);
            });
            let c2 = c2.clone();
            std::thread::spawn(move || {
                let (mut from, mut to) = (server, client);
                let mut buf = [0u8; 16384];
                let mut sent = 0usize;
                while let Ok(n @ 1..) = from.read(&mut buf) {
                    let n = n.min(limit - sent);
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    sent += n;
                    if sent >= limit {
                        c2.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
                let _ = to.shutdown(std::net::Shutdown::Both);
                let _ = from.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    let (b, took) = start_next_to(&proxy.to_string());
    println!("snapshot lost halfway: first request served after {took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(
        cuts.load(Ordering::Relaxed),
        1,
        "the proxy cut the first snapshot"
    );
    // The wait ended because the link was lost, not because it completed.
    assert!(outcome(&b).starts_with("gave up"), "{}", outcome(&b));
    // Everything arrives once A is reachable again.
    back.store(true, Ordering::Relaxed);
    let mut cb = b.client();
    assert!(
        wait_for(20, || cb.stat_u64("", "curr_items") == 4000),
        "the rest of the data never arrived: {} items",
        cb.stat_u64("", "curr_items")
    );
    assert!(cb.get("key:03999").is_some() && cb.get("key:00000").is_some());
}

#[test]
fn next_to_a_healthy_peer_the_node_still_syncs_before_serving() {
    let a = spawn(free_port(), &[], &[]);
    let mut ca = a.client();
    for i in 0..2000 {
        assert_eq!(ca.set(&format!("k{i}"), "x"), "STORED");
    }
    let (b, _) = start_next_to(&a.repl_addr());
    // The first request already sees everything.
    assert_eq!(b.client().stat_u64("", "curr_items"), 2000);
    assert_eq!(outcome(&b), "synced");
}
