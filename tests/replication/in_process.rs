//! Library-level replication tests: several Store + Replicator pairs in one process, talking over
//! real loopback TCP (through a cuttable proxy where a test needs to break the link).

use crate::harness::*;
use repcached::store::{parse_counter, Expiry};
use std::time::Duration;

fn opts_peer(peer: &Node) -> NodeOpts {
    NodeOpts {
        peers: vec![peer.peer_name()],
        ..Default::default()
    }
}

async fn synced(a: &Node, b: &Node) {
    for n in [a, b] {
        assert!(
            eventually(10, || n.stat("peer0:state").as_deref() == Some("synced")).await,
            "link never synced: {:?}",
            n.repl.replication_stats()
        );
    }
}

/// A pair whose link runs through a proxy the test can cut or freeze: B listens, A dials B
/// through the proxy; returns once both ends are synced.
async fn pair_through_proxy(backlog: usize) -> (Node, Node, Proxy) {
    let b = start_node(NodeOpts {
        backlog,
        ..Default::default()
    })
    .await;
    let proxy = Proxy::start(b.addr).await;
    let a = start_node(NodeOpts {
        peers: vec![proxy.addr.to_string()],
        backlog,
        ..Default::default()
    })
    .await;
    synced(&a, &b).await;
    (a, b, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_write_reaches_the_other_node() {
    let a = start_node(NodeOpts::default()).await;
    let b = start_node(opts_peer(&a)).await;
    b.repl.wait_initial_sync(Duration::from_secs(10)).await;
    synced(&a, &b).await;

    a.set("k1", "v1");
    assert!(eventually(5, || b.get("k1").as_deref() == Some("v1")).await);
    b.set("k2", "v2");
    assert!(eventually(5, || a.get("k2").as_deref() == Some("v2")).await);

    // flags and remaining TTL travel with the value
    a.store
        .entry(b"ttl")
        .put(
            &[b"x"],
            42,
            Expiry::At(repcached::store::unix_now() + 100),
            None,
        )
        .unwrap();
    assert!(eventually(5, || b.get("ttl").is_some()).await);
    {
        let e = b.store.entry(b"ttl");
        let it = e.item().unwrap();
        assert_eq!(it.flags(), 42);
        let left = it.exptime() as i64 - repcached::store::unix_now() as i64;
        assert!((98..=101).contains(&left), "remaining ttl {left}");
    }
    // the same write has the same CAS id on both nodes
    let cas_a = a.store.entry(b"ttl").item().unwrap().cas();
    assert_eq!(b.store.entry(b"ttl").item().unwrap().cas(), cas_a);

    // append, incr, touch, delete
    a.set("n", "10");
    assert!(eventually(5, || b.get("n").as_deref() == Some("10")).await);
    b.store.entry(b"n").arith(true, 5).unwrap();
    assert!(eventually(5, || a.get("n").as_deref() == Some("15")).await);
    a.store.entry(b"k1").store(
        repcached::store::WriteMode::Append,
        0,
        Expiry::Never,
        b"+",
        None,
        false,
    );
    assert!(eventually(5, || b.get("k1").as_deref() == Some("v1+")).await);
    b.store
        .entry(b"k2")
        .touch(Expiry::At(repcached::store::unix_now() + 1000));
    assert!(
        eventually(5, || a
            .store
            .entry(b"k2")
            .item()
            .is_some_and(|it| it.exptime() != 0))
        .await
    );
    a.delete("k1");
    assert!(eventually(5, || b.get("k1").is_none()).await);

    // flush_all on one node empties both; writes after it survive
    b.store.flush_all(0);
    assert!(eventually(5, || a.get("k2").is_none() && a.get("n").is_none()).await);
    a.set("after", "1");
    assert!(eventually(5, || b.get("after").as_deref() == Some("1")).await);
    converge(&a, &b, 5).await;
    assert!(a.stat_u64("repl_records_sent") > 0 && b.stat_u64("repl_records_applied") > 0);
    // Quiet: the peer has acked everything, lag is zero.
    assert!(
        eventually(3, || a.stat_u64("peer0:lag_records") == 0
            && b.stat_u64("peer0:lag_records") == 0)
        .await
    );
    assert_eq!(a.stat_u64("peer0:lag_ms"), 0);
    a.repl.shutdown().await;
    b.repl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_naming_each_other_keep_one_link_and_replicate_both_ways() {
    let (la, lb) = (bind_free(), bind_free());
    let (aa, ab) = (la.local_addr().unwrap(), lb.local_addr().unwrap());
    let a = start_node_on(
        NodeOpts {
            peers: vec![ab.to_string()],
            ..Default::default()
        },
        la,
    )
    .await;
    let b = start_node_on(
        NodeOpts {
            peers: vec![aa.to_string()],
            ..Default::default()
        },
        lb,
    )
    .await;
    tokio::join!(
        a.repl.wait_initial_sync(Duration::from_secs(10)),
        b.repl.wait_initial_sync(Duration::from_secs(10))
    );
    for i in 0..200 {
        a.set(&format!("a{i}"), "x");
        b.set(&format!("b{i}"), "y");
    }
    converge(&a, &b, 10).await;
    assert_eq!(a.dump().len(), 400);
    // One live link per pair, and each node lists the other once.
    for n in [&a, &b] {
        assert!(
            eventually(5, || n.stat_u64("repl_peers_connected") == 1).await,
            "{:?} {:?}",
            n.repl.general_stats(),
            n.repl.replication_stats()
        );
        assert_eq!(
            n.stat_u64("repl_peers"),
            1,
            "{:?}",
            n.repl.replication_stats()
        );
    }
    a.repl.shutdown().await;
    b.repl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_increments_on_both_nodes_add_up() {
    let a = start_node(NodeOpts::default()).await;
    let b = start_node(opts_peer(&a)).await;
    synced(&a, &b).await;
    a.set("counter", "0");
    assert!(eventually(5, || b.get("counter").is_some()).await);
    const PER_NODE: u64 = 500;
    let (sa, sb) = (a.store.clone(), b.store.clone());
    let ta = tokio::spawn(async move {
        for i in 0..PER_NODE {
            sa.entry(b"counter").arith(true, 1).unwrap();
            if i % 50 == 0 {
                tokio::task::yield_now().await;
            }
        }
    });
    let tb = tokio::spawn(async move {
        for i in 0..PER_NODE {
            sb.entry(b"counter").arith(true, 1).unwrap();
            if i % 50 == 0 {
                tokio::task::yield_now().await;
            }
        }
    });
    ta.await.unwrap();
    tb.await.unwrap();
    let want = 2 * PER_NODE;
    let count = |n: &Node| n.get("counter").and_then(|v| parse_counter(v.as_bytes()));
    let ok = eventually(10, || count(&a) == Some(want) && count(&b) == Some(want)).await;
    assert!(
        ok,
        "counters: a={:?} b={:?}, want {want}",
        count(&a),
        count(&b)
    );
    a.repl.shutdown().await;
    b.repl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_link_catches_up_from_the_backlog() {
    let (a, b, proxy) = pair_through_proxy(NodeOpts::default().backlog).await;
    for i in 0..100 {
        a.set(&format!("pre{i}"), "1");
    }
    converge(&a, &b, 5).await;
    let full_before = (
        a.stat_u64("peer0:full_syncs"),
        b.stat_u64("peer0:full_syncs"),
    );

    proxy.cut();
    assert!(eventually(5, || a.stat("peer0:state").as_deref() != Some("synced")).await);
    for i in 0..300 {
        a.set(&format!("a{i}"), "from-a");
        b.set(&format!("b{i}"), "from-b");
        a.store
            .entry(format!("c{}", i % 10).as_bytes())
            .put(&[b"1"], 0, Expiry::Never, None)
            .unwrap();
    }
    a.delete("pre1");
    b.delete("pre2");
    proxy.restore();

    converge(&a, &b, 10).await;
    assert!(a.get("pre1").is_none() && b.get("pre2").is_none());
    assert!(
        eventually(5, || a.stat_u64("peer0:partial_syncs") >= 1
            && b.stat_u64("peer0:partial_syncs") >= 1)
        .await
    );
    assert_eq!(
        (
            a.stat_u64("peer0:full_syncs"),
            b.stat_u64("peer0:full_syncs")
        ),
        full_before,
        "no full resync after a short break"
    );
    a.repl.shutdown().await;
    b.repl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_peer_is_noticed_by_heartbeat_and_rejoins() {
    let (a, b, proxy) = pair_through_proxy(NodeOpts::default().backlog).await;
    proxy.freeze();
    let t0 = tokio::time::Instant::now();
    let noticed = eventually(8, || {
        a.stat("peer0:state").as_deref() != Some("synced")
            && b.stat("peer0:state").as_deref() != Some("synced")
    })
    .await;
    assert!(
        noticed,
        "dead link not noticed: {:?}",
        a.repl.replication_stats()
    );
    assert!(t0.elapsed() < Duration::from_secs(6));
    a.set("while-frozen", "1");
    proxy.cut();
    proxy.restore();
    assert!(eventually(10, || b.get("while-frozen").is_some()).await);
    converge(&a, &b, 5).await;
    a.repl.shutdown().await;
    b.repl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_gets_everything_back_by_full_resync() {
    let a = start_node(NodeOpts::default()).await;
    let b = start_node(opts_peer(&a)).await;
    synced(&a, &b).await;
    for i in 0..500 {
        a.set(&format!("a{i}"), &format!("value-{i}"));
        b.set(&format!("b{i}"), &format!("value-{i}"));
    }
    a.delete("a7");
    converge(&a, &b, 10).await;

    let b_addr = b.addr;
    b.repl.shutdown().await;
    drop(b);
    // Writes while B is down.
    a.set("while-down", "1");
    a.delete("a8");

    let b = start_node(NodeOpts {
        peers: vec![a.peer_name()],
        bind: Some(b_addr),
        ..Default::default()
    })
    .await;
    b.repl.wait_initial_sync(Duration::from_secs(10)).await;
    // The initial sync is complete before the node would serve clients.
    assert_eq!(b.get("b499").as_deref(), Some("value-499"));
    assert_eq!(b.get("while-down").as_deref(), Some("1"));
    assert!(b.get("a7").is_none() && b.get("a8").is_none());
    converge(&a, &b, 10).await;
    assert!(b.stat_u64("peer0:full_syncs") >= 1);
    assert!(
        eventually(5, || a.stat_u64("repl_full_syncs") >= 2).await,
        "A also resynced from B"
    );
    a.repl.shutdown().await;
    b.repl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_is_rejected_and_nothing_is_applied() {
    let good = write_secret(
        "good",
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    );
    let bad = write_secret(
        "bad",
        "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210",
    );
    let a = start_node(NodeOpts {
        secret: Some(good.clone()),
        ..Default::default()
    })
    .await;
    let b = start_node(NodeOpts {
        peers: vec![a.peer_name()],
        secret: Some(bad),
        ..Default::default()
    })
    .await;
    b.set("from-b", "1");
    a.set("from-a", "1");
    assert!(
        eventually(5, || b
            .stat("peer0:last_error")
            .is_some_and(|e| e.contains("authentication")))
        .await,
        "{:?}",
        b.repl.replication_stats()
    );
    // The acceptor keeps no peer slot for a connection that never authenticated; it counts it.
    assert!(
        eventually(5, || a.stat_u64("repl_auth_failures") > 0).await,
        "{:?}",
        a.repl.general_stats()
    );
    assert_eq!(a.stat("peer0:state"), None);
    assert!(b.stat_u64("peer0:auth_failures") > 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(a.get("from-b").is_none() && b.get("from-a").is_none());
    assert_eq!(
        a.stat_u64("repl_records_applied") + b.stat_u64("repl_records_applied"),
        0
    );
    // The right secret works.
    let c = start_node(NodeOpts {
        peers: vec![a.peer_name()],
        secret: Some(good),
        ..Default::default()
    })
    .await;
    assert!(eventually(5, || c.get("from-a").is_some()).await);
    a.repl.shutdown().await;
    b.repl.shutdown().await;
    c.repl.shutdown().await;
}

/// Conflicting writes and deletes on both sides of a partition: after healing, every key has the
/// same, latest-version value on both nodes and nothing deleted comes back.
async fn partition_then_heal(backlog: usize) -> (Node, Node) {
    let (a, b, proxy) = pair_through_proxy(backlog).await;
    for k in ["x", "y", "z", "w", "v"] {
        a.set(k, "orig");
    }
    for k in ["ctr1", "ctr2", "ctr3"] {
        a.set(k, "10");
    }
    converge(&a, &b, 5).await;
    proxy.cut();
    assert!(eventually(5, || a.stat("peer0:state").as_deref() != Some("synced")).await);
    let pause = || tokio::time::sleep(Duration::from_millis(5));
    a.set("x", "a-old");
    pause().await;
    b.set("x", "b-new"); // later: wins
    b.delete("y");
    pause().await;
    a.set("y", "a-after-delete"); // later than the delete: wins
    a.delete("z"); // nobody writes z again: stays deleted
    b.set("w", "b-before-delete");
    pause().await;
    a.delete("w"); // later delete wins over the set
    b.delete("v");
    b.set("ctr1", "100"); // a set newer than the counter's base...
    b.delete("ctr2"); // ...and a delete...
    pause().await;
    for _ in 0..3 {
        // ...win over increments of the older value made later on the other side.
        a.store.entry(b"ctr1").arith(true, 1).unwrap();
        a.store.entry(b"ctr2").arith(true, 1).unwrap();
        a.store.entry(b"ctr3").arith(true, 1).unwrap();
    }
    for _ in 0..4 {
        b.store.entry(b"ctr3").arith(true, 1).unwrap();
    }
    // Enough traffic to overflow a small backlog.
    let filler = "f".repeat(1000);
    for i in 0..200 {
        a.set(&format!("fill-a{i}"), &filler);
        b.set(&format!("fill-b{i}"), &filler);
    }
    proxy.restore();
    converge(&a, &b, 15).await;
    for n in [&a, &b] {
        assert_eq!(n.get("x").as_deref(), Some("b-new"));
        assert_eq!(n.get("y").as_deref(), Some("a-after-delete"));
        assert_eq!(n.get("z"), None);
        assert_eq!(n.get("w"), None);
        assert_eq!(n.get("v"), None);
        assert_eq!(n.get("ctr1").as_deref(), Some("100"));
        assert_eq!(n.get("ctr2"), None);
    }
    // Quiet again: still identical, nothing resurrected.
    tokio::time::sleep(Duration::from_millis(500)).await;
    same_contents(&a, &b).unwrap();
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_with_conflicts_heals_by_partial_sync() {
    let (a, b) = partition_then_heal(16 * 1024 * 1024).await;
    // Increments of the same value on both sides add up when the backlog carries them.
    assert_eq!(
        a.get("ctr3").map(|v| v.trim().to_string()).as_deref(),
        Some("17")
    );
    assert!(a.stat_u64("peer0:partial_syncs") >= 1);
    assert_eq!(
        a.stat_u64("peer0:full_syncs"),
        1,
        "only the initial sync was full"
    );
    a.repl.shutdown().await;
    b.repl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_with_conflicts_heals_by_full_resync_when_the_backlog_overflowed() {
    let (a, b) = partition_then_heal(64 * 1024).await;
    assert!(
        a.stat_u64("peer0:full_syncs") >= 2,
        "{:?}",
        a.repl.replication_stats()
    );
    assert!(
        b.stat_u64("peer0:full_syncs") >= 2,
        "{:?}",
        b.repl.replication_stats()
    );
    a.repl.shutdown().await;
    b.repl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_node_mesh_replicates_every_write_everywhere() {
    let ls = [bind_free(), bind_free(), bind_free()];
    let addrs: Vec<String> = ls
        .iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect();
    let mut nodes = Vec::new();
    for (i, l) in ls.into_iter().enumerate() {
        let peers = addrs
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, a)| a.clone())
            .collect();
        nodes.push(
            start_node_on(
                NodeOpts {
                    peers,
                    ..Default::default()
                },
                l,
            )
            .await,
        );
    }
    for n in &nodes {
        n.repl.wait_initial_sync(Duration::from_secs(10)).await;
    }
    for (i, n) in nodes.iter().enumerate() {
        for k in 0..100 {
            n.set(&format!("n{i}-{k}"), &format!("{i}"));
        }
        n.set("shared", &format!("from-{i}"));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    nodes[0].set("counter", "0");
    assert!(eventually(5, || nodes.iter().all(|n| n.get("counter").is_some())).await);
    for n in &nodes {
        for _ in 0..10 {
            n.store.entry(b"counter").arith(true, 1).unwrap();
        }
    }
    let count = |n: &Node| n.get("counter").and_then(|v| parse_counter(v.as_bytes()));
    let all30 = eventually(10, || nodes.iter().all(|n| count(n) == Some(30))).await;
    assert!(
        all30,
        "counters {:?}",
        nodes.iter().map(count).collect::<Vec<_>>()
    );
    converge(&nodes[0], &nodes[1], 10).await;
    converge(&nodes[1], &nodes[2], 10).await;
    assert_eq!(nodes[2].dump().len(), 302);
    assert_eq!(
        nodes[0].get("shared").as_deref(),
        Some("from-2"),
        "latest write wins everywhere"
    );
    for n in &nodes {
        assert!(
            eventually(5, || n.stat_u64("repl_peers_connected") == 2).await,
            "{:?}",
            n.repl.replication_stats()
        );
    }
    for n in nodes {
        n.repl.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_to_run_unauthenticated_off_loopback() {
    let store = std::sync::Arc::new(repcached::store::Store::new(Default::default()));
    let config = repcached::config::Config {
        peers: vec!["192.0.2.1:11212".into()],
        repl_port: 0,
        ..Default::default()
    };
    let err = repcached::replication::Replicator::start(&config, store.clone())
        .await
        .err();
    assert!(err.is_some_and(|e| e.to_string().contains("secret")));
    let config = repcached::config::Config {
        repl_insecure: true,
        ..config
    };
    let r = repcached::replication::Replicator::start(&config, store)
        .await
        .expect("insecure allowed");
    r.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_resync_under_load_keeps_every_write() {
    let a = start_node(NodeOpts::default()).await;
    for i in 0..20_000 {
        a.set(
            &format!("old{i}"),
            "0123456789012345678901234567890123456789",
        );
    }
    a.set("counter", "0");
    let sa = a.store.clone();
    // Writes and increments on A while B's snapshot is being streamed.
    let load = tokio::spawn(async move {
        for i in 0..2000 {
            sa.entry(b"counter").arith(true, 1).unwrap();
            sa.entry(format!("new{i}").as_bytes())
                .put(&[b"n"], 0, Expiry::Never, None)
                .unwrap();
            if i % 20 == 0 {
                tokio::task::yield_now().await;
            }
        }
    });
    let b = start_node(opts_peer(&a)).await;
    load.await.unwrap();
    let count = |n: &Node| n.get("counter").and_then(|v| parse_counter(v.as_bytes()));
    assert!(
        eventually(20, || count(&b) == Some(2000)).await,
        "counter on b: {:?}",
        count(&b)
    );
    converge(&a, &b, 20).await;
    assert_eq!(b.dump().len(), 22_001);
    a.repl.shutdown().await;
    b.repl.shutdown().await;
}

/// The snapshot is streamed in small chunks with the shard lock released in between, so the
/// clients keep changing a shard while it is being walked: overwrites, deletes and increments of
/// keys before and after the walk's position, and new keys. Whatever the walk missed or saw
/// half-way arrives as a record after it; merging by version is idempotent, so B ends up equal
/// to A, with every delete holding and every increment counted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_resync_of_many_items_converges_under_writes_deletes_and_increments() {
    let a = start_node(NodeOpts::default()).await;
    const N: usize = 60_000;
    for i in 0..N {
        a.set(
            &format!("item{i}"),
            "0123456789012345678901234567890123456789",
        );
    }
    for c in 0..50 {
        a.set(&format!("ctr{c}"), "100");
    }
    // B starts first: the load below runs while its link comes up and the snapshot streams.
    let b = start_node(opts_peer(&a)).await;
    let sa = a.store.clone();
    let load = tokio::spawn(async move {
        for round in 0..3000usize {
            let i = (round * 7919) % N;
            sa.entry(format!("item{i}").as_bytes())
                .put(&[b"over"], 0, Expiry::Never, None)
                .unwrap();
            sa.entry(format!("item{}", (i + N / 2) % N).as_bytes())
                .delete();
            sa.entry(format!("ctr{}", round % 50).as_bytes())
                .arith(true, 1)
                .unwrap();
            sa.entry(format!("fresh{round}").as_bytes())
                .put(&[b"f"], 0, Expiry::Never, None)
                .unwrap();
            if round % 10 == 0 {
                tokio::task::yield_now().await;
            }
        }
    });
    load.await.unwrap();
    let ctr = |n: &Node, c: usize| {
        n.get(&format!("ctr{c}"))
            .and_then(|v| parse_counter(v.as_bytes()))
    };
    assert!(
        eventually(30, || (0..50).all(|c| ctr(&b, c) == Some(160))).await,
        "counters on b: {:?}",
        (0..50).map(|c| ctr(&b, c)).collect::<Vec<_>>()
    );
    converge(&a, &b, 30).await;
    assert_eq!(
        b.stat_u64("peer0:full_syncs"),
        1,
        "{:?}",
        b.repl.replication_stats()
    );
    a.repl.shutdown().await;
    b.repl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_50ms_delay_on_the_link_still_converges() {
    let b = start_node(NodeOpts::default()).await;
    let proxy = Proxy::start_with_delay(b.addr, Duration::from_millis(50)).await;
    let a = start_node(NodeOpts {
        peers: vec![proxy.addr.to_string()],
        ..Default::default()
    })
    .await;
    a.repl.wait_initial_sync(Duration::from_secs(10)).await;
    synced(&a, &b).await;
    a.set("counter", "0");
    assert!(eventually(5, || b.get("counter").is_some()).await);
    for i in 0..300 {
        a.set(&format!("k{}", i % 50), &format!("a{i}"));
        b.set(&format!("k{}", (i + 25) % 50), &format!("b{i}"));
        a.store.entry(b"counter").arith(true, 1).unwrap();
        b.store.entry(b"counter").arith(true, 1).unwrap();
    }
    let count = |n: &Node| n.get("counter").and_then(|v| parse_counter(v.as_bytes()));
    assert!(eventually(10, || count(&a) == Some(600) && count(&b) == Some(600)).await);
    converge(&a, &b, 10).await;
    a.repl.shutdown().await;
    b.repl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_over_the_receivers_item_size_is_rejected_without_breaking_the_link() {
    let b = start_node(NodeOpts::default()).await; // -I 1m
    let a = start_node(NodeOpts {
        peers: vec![b.peer_name()],
        item_size_max: 4 * 1024 * 1024,
        ..Default::default()
    })
    .await;
    synced(&a, &b).await;
    let big = "x".repeat(3 * 1024 * 1024);
    a.set("big", &big);
    a.set("small", "after");
    assert!(eventually(5, || b.get("small").as_deref() == Some("after")).await);
    assert!(b.get("big").is_none());
    assert_eq!(b.stat_u64("peer0:records_rejected"), 1);
    assert_eq!(b.stat("peer0:state").as_deref(), Some("synced"));
    assert_eq!(b.stat_u64("peer0:full_syncs"), 1, "the link never dropped");
    a.repl.shutdown().await;
    b.repl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_naming_itself_does_not_wait_or_loop() {
    let l = bind_free();
    let me = l.local_addr().unwrap().to_string();
    let a = start_node_on(
        NodeOpts {
            peers: vec![me],
            ..Default::default()
        },
        l,
    )
    .await;
    let t0 = tokio::time::Instant::now();
    a.repl.wait_initial_sync(Duration::from_secs(10)).await;
    assert!(t0.elapsed() < Duration::from_secs(3));
    assert!(
        eventually(3, || a
            .stat("peer0:last_error")
            .is_some_and(|e| e.contains("itself")))
        .await
    );
    a.set("k", "v");
    assert_eq!(a.stat_u64("repl_records_applied"), 0);
    a.repl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_replication_port_is_dropped_and_nothing_applied() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let a = start_node(NodeOpts::default()).await;
    for junk in [
        vec![0xff, 0xff, 0xff, 0xff, 1, 2, 3],         // absurd length
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), // wrong protocol
        vec![0, 0, 0, 5, 16, 0, 0, 0, 1],              // a record before any handshake
        vec![0, 0, 0, 45, 1, b'R', b'P', b'C', b'D', 0, 1, 0, 0, 0, 9], // truncated hello
    ] {
        let mut s = tokio::net::TcpStream::connect(a.addr).await.unwrap();
        s.write_all(&junk).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let closed = tokio::time::timeout(Duration::from_secs(8), async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(
            closed.is_ok(),
            "connection with junk {junk:?} was not closed"
        );
    }
    assert_eq!(a.stat_u64("repl_records_applied"), 0);
    assert_eq!(a.dump().len(), 0);
    // None of these was a repcached peer: each is counted.
    assert_eq!(a.stat_u64("repl_auth_failures"), 4);

    // Past the handshake, a malformed or out-of-order frame closes that link and is counted;
    // the node goes on. (A frame over this node's -I from an authenticated peer is skipped and
    // counted as rejected instead: see a_value_over_the_receivers_item_size_...)
    use repcached::replication::frame::{self, Frame, PROTO_VERSION};
    use repcached::replication::secure::{self, Role, Security};
    let short_heartbeat = vec![0, 0, 0, 5, 32, 0, 0, 0, 1];
    let unknown_type = vec![0, 0, 0, 1, 99];
    let record_before_psync = {
        let mut out = bytes::BytesMut::new();
        frame::encode(
            &Frame::Heartbeat {
                ack: 0,
                last: 0,
                now_ms: 0,
            },
            0,
            &mut out,
        );
        out[4] = 16; // a RECORD type with a heartbeat's body
        out.to_vec()
    };
    for junk in [short_heartbeat, unknown_type, record_before_psync] {
        let stream = tokio::net::TcpStream::connect(a.addr).await.unwrap();
        let (mut rd, mut wr) = secure::establish(stream, Role::Dialer, &Security::Plain, "")
            .await
            .unwrap();
        let mut out = bytes::BytesMut::new();
        frame::encode(
            &Frame::Hello {
                version: PROTO_VERSION,
                node: 77,
                listen_port: 0,
                listen_ip: None,
            },
            0,
            &mut out,
        );
        out.extend_from_slice(&junk);
        wr.write_all(&out).await.unwrap();
        let mut buf = bytes::BytesMut::new();
        let closed = tokio::time::timeout(Duration::from_secs(8), async {
            while let Ok(1..) = rd.read_buf(&mut buf).await {}
        })
        .await;
        assert!(
            closed.is_ok(),
            "link with junk frame {junk:?} was not closed"
        );
    }
    assert!(eventually(5, || a.stat_u64("repl_protocol_errors") == 3).await);
    assert_eq!(a.stat_u64("repl_records_applied"), 0);
    a.repl.shutdown().await;
}

/// Touches on one side of a partition racing writes, deletes and increments on the other: value
/// and expiry merge field by field, the same way on both nodes.
async fn touch_races(backlog: usize) -> (Node, Node) {
    let (a, b, proxy) = pair_through_proxy(backlog).await;
    for k in ["s", "d", "x", "c"] {
        a.set(k, "old");
    }
    converge(&a, &b, 5).await;
    proxy.cut();
    assert!(eventually(5, || a.stat("peer0:state").as_deref() != Some("synced")).await);
    let now = repcached::store::unix_now();
    a.set("s", "new"); // a write on A...
    a.delete("d");
    a.set("x", "new");
    a.set("c", "7");
    tokio::time::sleep(Duration::from_millis(5)).await;
    b.store.entry(b"s").touch(Expiry::At(now + 500)); // ...then a touch of the old value on B
    b.store.entry(b"d").touch(Expiry::At(now + 500));
    b.store.entry(b"x").touch(Expiry::Expired); // touch to the past: like a delete
    b.store.entry(b"c").touch(Expiry::At(now + 500));
    a.store.entry(b"c").arith(true, 1).unwrap();
    let filler = "f".repeat(1000);
    for i in 0..200 {
        a.set(&format!("fill-a{i}"), &filler);
        b.set(&format!("fill-b{i}"), &filler);
    }
    proxy.restore();
    converge(&a, &b, 10).await;
    for n in [&a, &b] {
        // The newer value wins, with the newer expiry (field by field); deletes stay deleted.
        let e = n.store.entry(b"s");
        let it = e.item().expect("s present");
        assert_eq!(it.value(), b"new");
        assert!(it.exptime() >= now + 499, "touched expiry kept");
        drop(e);
        assert_eq!(n.get("d"), None);
        assert_eq!(n.get("x"), None);
        assert_eq!(
            n.get("c").map(|v| v.trim().to_string()).as_deref(),
            Some("8")
        );
    }
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_touch_racing_writes_on_the_other_node_converges_by_partial_sync() {
    let (a, b) = touch_races(16 * 1024 * 1024).await;
    assert_eq!(a.stat_u64("peer0:full_syncs"), 1);
    a.repl.shutdown().await;
    b.repl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_touch_racing_writes_on_the_other_node_converges_by_full_resync() {
    let (a, b) = touch_races(64 * 1024).await;
    assert!(a.stat_u64("peer0:full_syncs") >= 2);
    a.repl.shutdown().await;
    b.repl.shutdown().await;
}

/// A peer that holds the secret (a compromised or broken node) sends a record stamped at the
/// top of the clock range. Adopting it would wrap the receiver's hybrid clock (its next write
/// got CAS 0 and lost to everything); it must be refused, counted, and leave the clock alone,
/// while the peer's sane records still apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_from_the_far_future_is_refused_and_leaves_the_clock_alone() {
    use crate::harness::peer::{now_ms, security, PeerLink};
    use bytes::Bytes;
    use repcached::replication::frame::Frame;
    use repcached::store::{Mutation, MutationKind, Version};

    let secret = write_secret("clock", "clock-test-secret-0123456789abcdef");
    let a = start_node(NodeOpts {
        secret: Some(secret.clone()),
        ..Default::default()
    })
    .await;
    let mut link = PeerLink::dial(&a.addr.to_string(), &security(&secret), "127.0.0.1")
        .await
        .expect("the hostile peer holds the secret");
    let me = 4242;
    assert!(link.hello(me, None).await);
    let frame = link.next().await.expect("node closed the link");
    assert!(matches!(frame, Frame::Hello { .. }));
    assert!(
        link.send(Frame::Psync {
            run: 7,
            next: 3,
            want_run: 0,
            want_offset: 0,
        })
        .await
    );
    let frame = link.next().await.expect("node closed the link");
    assert!(matches!(frame, Frame::Psync { .. }));
    assert!(link.send(Frame::SyncMode { full: true }).await);
    let frame = link.next().await.expect("node closed the link");
    assert!(matches!(frame, Frame::SyncMode { .. }));
    assert!(link.send(Frame::FullSync { run: 7, start: 1 }).await);
    assert!(link.send(Frame::SnapEnd { items: 0 }).await);
    let now_ms = now_ms();
    let put = |key: &'static str, hlc: u64| Mutation {
        key: Bytes::from_static(key.as_bytes()),
        version: Version::new(hlc, me),
        kind: MutationKind::Put {
            flags: 0,
            exptime: 0,
            value: Bytes::from_static(b"v"),
        },
    };
    for (offset, m) in [
        (1, put("fine", now_ms << 16)),
        // A flush_all delayed by two hours is stamped at its flush time: that is not skew.
        (
            2,
            Mutation {
                key: Bytes::new(),
                version: Version::new(((now_ms / 1000 + 7200) * 1000) << 16, me),
                kind: MutationKind::Flush {
                    at: (now_ms / 1000 + 7200) as u32,
                },
            },
        ),
        (3, put("poison-max", u64::MAX)),
        // Ten minutes ahead: over the default 60 s limit.
        (4, put("poison-10min", (now_ms + 600_000) << 16)),
        (5, put("after", now_ms << 16)),
    ] {
        assert!(
            link.send(Frame::Record {
                offset,
                mutation: m,
            })
            .await
        );
    }
    assert!(
        eventually(10, || a.get("fine").is_some()).await,
        "the sane record was not applied"
    );
    assert!(
        eventually(10, || !a.store.flush_marks().is_empty()).await,
        "delayed flush refused"
    );
    // The first record stamped beyond the bound stops the stream there: it is refused and
    // counted, nothing after it is applied, and the link leaves for state clock_skew instead
    // of acknowledging it as held.
    assert!(
        eventually(10, || a.stat("peer0:state").as_deref()
            == Some("clock_skew"))
        .await,
        "{:?}",
        a.stat("peer0:state")
    );
    assert_eq!(a.get("poison-max"), None);
    assert_eq!(a.get("poison-10min"), None);
    assert_eq!(a.get("after"), None);
    assert_eq!(a.stat("repl_clock_rejected").as_deref(), Some("1"));
    assert_eq!(a.stat("peer0:applied_offset").as_deref(), Some("2"));
    let skew: i64 = a.stat("peer0:max_clock_skew_ms").unwrap().parse().unwrap();
    assert!(skew > 1 << 40, "the largest skew seen is shown: {skew}");
    assert!(
        a.stat("peer0:last_error").unwrap().contains("clock skew"),
        "{:?}",
        a.stat("peer0:last_error")
    );
    // The clock did not move: a local write now is stamped with the wall clock.
    let v = a.store.clock().tick();
    assert!(
        v.millis() >= now_ms && v.millis() < now_ms + 60_000,
        "{}",
        v.millis()
    );
    assert_ne!(a.store.cas_for(v), 0);
}
