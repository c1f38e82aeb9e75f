//! Clock skew between two nodes, with real processes and libfaketime on one of them: beyond
//! the bound (--repl-max-clock-skew, 60 s by default) the link goes to state `clock_skew` on
//! both nodes, nothing of the stream is applied in part, and the failover barrier
//! (scripts/wait-synced) fails and says why; inside the bound the pair converges and the barrier
//! holds. Needs libfaketime (Debian `libfaketime`, installed by scripts/install-test-deps).

use crate::harness::*;

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// Environment that runs a process `offset` (libfaketime syntax: "+1h", "+30s") from the real
/// wall clock. Only CLOCK_REALTIME is faked (what the hybrid clock and unix_now read); the
/// monotonic clock tokio's timers use is left alone.
fn faked(offset: &'static str) -> [(&'static str, &'static str); 3] {
    assert!(
        std::path::Path::new(LIBFAKETIME).exists(),
        "{LIBFAKETIME} is missing: run scripts/install-test-deps (Debian package libfaketime)"
    );
    [
        ("LD_PRELOAD", LIBFAKETIME),
        ("FAKETIME", offset),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
    ]
}

/// A started with B's clock `offset` off: (A, B, A's metrics port), A dialing B.
fn pair(offset: &'static str) -> (Proc, Proc, u16) {
    let pb = free_port();
    let b = spawn_env(pb, &[], &[], &faked(offset));
    let metrics = free_port();
    let listen = format!("127.0.0.1:{metrics}");
    let a = spawn(
        free_port(),
        &[b.repl_addr()],
        &["--metrics-listen", &listen],
    );
    (a, b, metrics)
}

/// The metrics endpoint's body.
fn scrape(port: u16) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn peer_stat(p: &Proc, name: &str) -> String {
    p.client()
        .stats("replication")
        .get(&format!("peer0:{name}"))
        .cloned()
        .unwrap_or_default()
}

fn offset_ms(p: &Proc) -> i64 {
    peer_stat(p, "clock_offset_ms").parse().unwrap_or(0)
}

#[test]
fn a_clock_an_hour_ahead_takes_the_link_to_clock_skew_and_the_barrier_fails() {
    let (a, b, metrics) = pair("+1h");
    // B's process really runs an hour ahead.
    let b_time: u64 = b.client().stats("")["time"].parse().unwrap();
    let a_time: u64 = a.client().stats("")["time"].parse().unwrap();
    assert!(
        b_time >= a_time + 3500,
        "libfaketime did not move B's clock"
    );
    assert!(
        wait_for(15, || peer_stat(&a, "state") == "clock_skew"
            && peer_stat(&b, "state") == "clock_skew"),
        "A: {:?}\nB: {:?}",
        a.client().stats("replication"),
        b.client().stats("replication")
    );
    // Each side measured the other's clock from its heartbeats.
    assert!(
        (3_500_000..3_700_000).contains(&offset_ms(&a)),
        "{}",
        offset_ms(&a)
    );
    assert!(
        (-3_700_000..-3_500_000).contains(&offset_ms(&b)),
        "{}",
        offset_ms(&b)
    );
    assert_eq!(a.client().stat_u64("", "repl_peers_clock_skew"), 1);
    let m = scrape(metrics);
    assert!(
        m.lines()
            .any(|l| l.starts_with("repcached_repl_peer_state{")
                && l.contains("state=\"clock_skew\"")
                && l.ends_with(" 1")),
        "{m}"
    );
    assert!(m.contains("repcached_repl_peers_clock_skew 1"), "{m}");
    assert!(
        m.contains("repcached_repl_peer_clock_offset_milliseconds{"),
        "{m}"
    );
    assert_eq!(a.client().stat_u64("", "repl_peers_synced"), 0);

    // Writes on either side are held, not applied in part, and the barrier says so.
    let (mut ca, mut cb) = (a.client(), b.client());
    assert_eq!(cb.set("from_b", "1"), "STORED");
    assert_eq!(ca.set("from_a", "1"), "STORED");
    for (p, name) in [(&b, "B"), (&a, "A")] {
        let (ok, err, _) = wait_synced(p.port, 2);
        assert!(
            !ok,
            "the barrier on {name} passed while the peer's clock is an hour off"
        );
        assert!(err.contains("clock skew"), "{name}: {err}");
    }
    assert_eq!(ca.get("from_b"), None);
    assert_eq!(cb.get("from_a"), None);
    // B's write is not acknowledged as held by A.
    let last = cb.stat_u64("", "repl_backlog_last");
    let acked: u64 = peer_stat(&b, "acked_offset").parse().unwrap();
    assert!(acked < last, "acked {acked} of {last}");
    // One warning per node (at most one a minute), however often the link was tried again.
    for p in [&a, &b] {
        let lines = p.stderr.lock().unwrap().clone();
        let skew: Vec<&String> = lines.iter().filter(|l| l.contains("clock")).collect();
        assert_eq!(skew.len(), 1, "{skew:#?}");
        assert!(skew[0].contains("state clock_skew"), "{skew:#?}");
    }
}

#[test]
fn a_clock_thirty_seconds_ahead_is_inside_the_bound_and_converges() {
    let (a, b, _) = pair("+30s");
    assert!(wait_for(15, || synced(&a) && synced(&b)), "no sync");
    let (mut ca, mut cb) = (a.client(), b.client());
    for i in 0..50 {
        assert_eq!(ca.set(&format!("a{i}"), &format!("va{i}")), "STORED");
        assert_eq!(cb.set(&format!("b{i}"), &format!("vb{i}")), "STORED");
    }
    // The same key written on both: the later write (B's clock is ahead) wins everywhere.
    assert_eq!(ca.set("both", "from_a"), "STORED");
    assert_eq!(cb.set("both", "from_b"), "STORED");
    for p in [&a, &b] {
        let (ok, err, _) = wait_synced(p.port, 10);
        assert!(ok, "{err}");
    }
    let keys: Vec<String> = (0..50)
        .flat_map(|i| [format!("a{i}"), format!("b{i}")])
        .chain(["both".to_string()])
        .collect();
    assert!(
        wait_for(10, || contents(&mut ca, &keys) == contents(&mut cb, &keys)),
        "the pair did not converge"
    );
    assert_eq!(ca.get("a7").as_deref(), Some("va7"));
    assert_eq!(ca.get("b7").as_deref(), Some("vb7"));
    assert_eq!(ca.get("both"), cb.get("both"));
    assert!(
        (25_000..35_000).contains(&offset_ms(&a)),
        "{}",
        offset_ms(&a)
    );
    assert_eq!(peer_stat(&a, "state"), "synced");
    assert_eq!(a.client().stat_u64("", "repl_clock_rejected"), 0);
    assert_eq!(b.client().stat_u64("", "repl_clock_rejected"), 0);
}

#[test]
fn once_the_clock_is_back_inside_the_bound_the_link_recovers_and_resyncs() {
    // B's clock offset read from a file it re-reads on every clock call (libfaketime).
    let file = std::env::temp_dir().join(format!("repcached-faketime-{}", std::process::id()));
    std::fs::write(&file, "+1h\n").unwrap();
    let mut env = faked("+1h").to_vec();
    env.retain(|(k, _)| *k != "FAKETIME");
    let path = file.to_str().unwrap().to_string();
    env.push(("FAKETIME_TIMESTAMP_FILE", &path));
    env.push(("FAKETIME_NO_CACHE", "1"));
    let pb = free_port();
    let b = spawn_env(pb, &[], &[], &env);
    let a = spawn(free_port(), &[b.repl_addr()], &[]);
    assert!(
        wait_for(15, || peer_stat(&a, "state") == "clock_skew"
            && peer_stat(&b, "state") == "clock_skew"),
        "A: {:?}",
        a.client().stats("replication")
    );
    // Written on A while B's clock is off: not applied by B.
    let mut ca = a.client();
    assert_eq!(ca.set("during", "1"), "STORED");
    let (ok, err, _) = wait_synced(a.port, 1);
    assert!(!ok && err.contains("clock skew"), "{err}");
    assert_eq!(b.client().get("during"), None);

    // The clock is fixed: the link comes back by itself and B gets what it missed.
    std::fs::write(&file, "+0\n").unwrap();
    assert!(
        wait_for(20, || synced(&a) && synced(&b)),
        "no recovery: A {:?} B {:?}",
        a.client().stats("replication"),
        b.client().stats("replication")
    );
    let (ok, err, _) = wait_synced(a.port, 10);
    assert!(ok, "{err}");
    assert_eq!(b.client().get("during").as_deref(), Some("1"));
    let mut cb = b.client();
    assert_eq!(cb.set("after", "2"), "STORED");
    let (ok, err, _) = wait_synced(b.port, 10);
    assert!(ok, "{err}");
    assert_eq!(ca.get("after").as_deref(), Some("2"));
    assert!(offset_ms(&a).abs() < 5_000, "{}", offset_ms(&a));
    let _ = std::fs::remove_file(&file);
}
