//! A listen-only node (the repcached 2.x way: only one side names the other) must let its real
//! peer in while silent sockets flood its replication port, from the peer's own address and
//! from others: a handshake that makes progress wins over one that sends nothing.

use crate::harness::write_secret;
use crate::harness::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Raises this process's open-file limit to its hard limit (the flood holds ~1000 sockets).
fn raise_nofile() {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    #[allow(unsafe_code)]
    // SAFETY: getrlimit and setrlimit only write/read the local struct passed by reference.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

/// Holds `per_source` sockets from `src` to `target` that never send more than `partial` (a
/// piece of a preamble, or nothing) on every second slot. A slot the server
/// closed is reopened at once when it had been held a while (the server timed it out), after
/// 1 s when it was closed at once (evicted or refused), so the flood keeps its pressure for as
/// long as `stop` is unset (at most 60 s).
fn silent_flood(
    target: SocketAddr,
    src: String,
    per_source: usize,
    partial: &'static [u8],
    stop: Arc<AtomicBool>,
    connects: Arc<AtomicUsize>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let connect = |i: usize| -> Option<TcpStream> {
            let s =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
            let from: SocketAddr = format!("{src}:0").parse().ok()?;
            s.bind(&from.into()).ok()?;
            s.connect_timeout(&target.into(), Duration::from_secs(1))
                .ok()?;
            let mut t: TcpStream = s.into();
            if i % 2 == 1 {
                let _ = t.write_all(partial);
            }
            t.set_nonblocking(true).ok()?;
            Some(t)
        };
        struct Slot {
            conn: Option<TcpStream>,
            opened: Instant,
            next_try: Instant,
        }
        let now = Instant::now();
        let mut slots: Vec<Slot> = (0..per_source)
            .map(|_| Slot {
                conn: None,
                opened: now,
                next_try: now,
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            let now = Instant::now();
            for (i, slot) in slots.iter_mut().enumerate() {
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
                    let held = now.duration_since(slot.opened) >= Duration::from_millis(900);
                    slot.next_try = if held {
                        now
                    } else {
                        now + Duration::from_secs(1)
                    };
                }
                if now >= slot.next_try {
                    slot.conn = connect(i);
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
}

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
    let mut threads = vec![silent_flood(
        target,
        "127.0.0.1".into(),
        500,
        b"RCRP",
        stop.clone(),
        connects.clone(),
    )];
    for n in 2..18 {
        threads.push(silent_flood(
            target,
            format!("127.0.0.{n}"),
            32,
            b"",
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
