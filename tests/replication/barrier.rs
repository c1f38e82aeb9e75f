//! The failover barrier: `scripts/wait-synced` returns only once the peer holds every write the
//! node acknowledged before it was started, and times out (naming the peer) while the link is
//! frozen. Real processes; the link runs through a proxy the test can freeze.

use crate::harness::*;

#[test]
fn the_barrier_returns_only_once_the_peer_has_the_writes() {
    let ProxiedPair {
        rt: _rt,
        proxy,
        a,
        b,
    } = proxied_pair(&[]);
    let (mut ca, mut cb) = (a.client(), b.client());

    // Quiet pair: the barrier holds at once.
    assert_eq!(ca.set("before", "1"), "STORED");
    let (ok, err, took) = wait_synced(a.port, 10);
    assert!(ok, "{err}");
    assert_eq!(
        cb.get("before").as_deref(),
        Some("1"),
        "barrier passed without the write"
    );
    println!("quiet pair: barrier in {took:?}");

    // A silent network: writes acknowledged on A cannot reach B; the barrier times out and
    // names the peer.
    proxy.freeze();
    for i in 0..100 {
        assert_eq!(ca.set(&format!("during{i}"), "x"), "STORED");
    }
    let (ok, err, _) = wait_synced(a.port, 1);
    assert!(!ok, "the barrier passed while the link was frozen");
    assert!(err.contains("behind") && err.contains("peer0"), "{err}");
    assert_eq!(cb.get("during99"), None);

    // Link back (the frozen connection is declared dead and replaced): once the barrier
    // returns, B has every write A acknowledged before it was called.
    proxy.restore();
    let (ok, err, took) = wait_synced(a.port, 20);
    assert!(ok, "{err}");
    for i in 0..100 {
        assert_eq!(
            cb.get(&format!("during{i}")).as_deref(),
            Some("x"),
            "during{i}"
        );
    }
    println!("after the freeze: barrier in {took:?}");
    let repl = ca.stats("replication");
    assert!(repl["peer0:acked_through_ms"].parse::<u64>().unwrap() > 0);
    let repl_b = cb.stats("replication");
    assert!(repl_b["peer0:applied_through_ms"].parse::<u64>().unwrap() > 0);
    // Byte counters: what A sent is what B received (frames, before encryption).
    assert!(repl["peer0:bytes_sent"].parse::<u64>().unwrap() > 100 * 10);
    assert!(repl_b["peer0:bytes_received"].parse::<u64>().unwrap() > 100 * 10);
    drop(proxy);
}
