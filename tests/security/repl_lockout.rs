//! A listen-only node (the repcached 2.x way: only one side names the other) must let its real
//! peer in while silent sockets flood its replication port, from the peer's own address and
//! from others: a handshake that makes progress wins over one that sends nothing.

use crate::harness::flood::{flood, raise_nofile, Flood};
use crate::harness::write_secret;
use crate::harness::*;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[test]
fn an_unconfigured_peer_links_within_5s_through_a_silent_flood_from_its_own_address_and_16_others()
{
    raise_nofile();
    let secret = write_secret("lockout", "lockout-test-secret-0123456789abcdef");
    let s = secret.to_str().unwrap();
    // A names no peer: B, which dials it, is unconfigured on A.
    let pa = free_port();
    let a = spawn(pa, &[], &["--repl-secret-file", s]);
    let target: SocketAddr = format!("127.0.0.1:{pa}").parse().unwrap();

    // 500 silent sockets from 127.0.0.1 (where B's link will come from; every second one sends
    // the first 4 bytes of a preamble, then nothing) and 32 from each of 16 other addresses
    // (512, eight times the shared pool), held and reopened when closed.
    let stop = Arc::new(AtomicBool::new(false));
    let connects = Arc::new(AtomicUsize::new(0));
    // A slot the server closed is reopened at once when it had been held a while (the server
    // timed it out), after 1 s when it was closed at once (evicted or refused).
    let silent = |partial| Flood {
        partial,
        partial_on_odd_slots_only: true,
        held: Duration::from_millis(900),
        retry: Duration::from_secs(1),
    };
    let mut threads = vec![flood(
        target,
        "127.0.0.1".into(),
        500,
        silent(b"RCRP"),
        stop.clone(),
        connects.clone(),
    )];
    for n in 2..18 {
        threads.push(flood(
            target,
            format!("127.0.0.{n}"),
            32,
            silent(b""),
            stop.clone(),
            connects.clone(),
        ));
    }
    let total = || connects.load(Ordering::Relaxed);
    assert!(
        wait_for(20, || total() >= 1000),
        "the flood opened only {} sockets",
        total()
    );

    let t0 = Instant::now();
    let b = spawn(
        free_port(),
        &[format!("127.0.0.1:{pa}")],
        &["--repl-secret-file", s],
    );
    let mut ca = a.client();
    assert_eq!(ca.set("through-the-flood", "1"), "STORED");
    let mut cb = b.client();
    let linked = wait_for(5, || {
        synced(&a) && synced(&b) && cb.get("through-the-flood").is_some()
    });
    let took = t0.elapsed();
    let evicted = ca.stat_u64("", "repl_handshakes_refused");
    let pending = ca.stat_u64("", "repl_handshakes_pending");
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    println!(
        "silent flood of {} sockets: unconfigured peer linked={linked} in {took:?}; \
         {evicted} handshakes turned away, {pending} pending at the end",
        total()
    );
    assert!(linked, "the peer did not link under the flood");
    assert!(took < Duration::from_secs(5), "linking took {took:?}");
    assert!(evicted > 0, "the flood never hit the budget");
}
