//! Rough replication measurements, run by hand (they are `#[ignore]`d and print their results):
//! `cargo test --release --test replication_bench -- --ignored --nocapture`.
//! Library level: two Store + Replicator pairs in one process over loopback TCP.

use crate::harness::*;
use repcached::store::Expiry;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, run by hand"]
async fn full_resync_of_one_million_100_byte_items() {
    let big = || NodeOpts {
        mem_limit: 1 << 30,
        ..Default::default()
    };
    let a = start_node(big()).await;
    let value = [b'v'; 100];
    for i in 0..1_000_000u32 {
        a.store
            .entry(format!("key:{i:08}").as_bytes())
            .put(&[&value], 0, Expiry::Never, None)
            .unwrap();
    }
    let t0 = Instant::now();
    let b = start_node(NodeOpts {
        peers: vec![a.peer_name()],
        ..big()
    })
    .await;
    b.repl.wait_initial_sync(Duration::from_secs(600)).await;
    let took = t0.elapsed();
    assert_eq!(b.store.stats().curr_items, 1_000_000);
    println!(
        "full resync of 1M x 100 B items: {:.2} s",
        took.as_secs_f64()
    );
    a.repl.shutdown().await;
    b.repl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, run by hand"]
async fn replication_lag_percentiles_under_load() {
    let a = start_node(NodeOpts::default()).await;
    let b = start_node(NodeOpts {
        peers: vec![a.peer_name()],
        ..Default::default()
    })
    .await;
    b.repl.wait_initial_sync(Duration::from_secs(10)).await;
    // Background load: a steady 5000 sets/s on A (below what a debug build can replicate).
    let sa = a.store.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let st = stop.clone();
    let load = tokio::spawn(async move {
        let mut i = 0u64;
        let t0 = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        while !st.load(std::sync::atomic::Ordering::Relaxed) {
            tick.tick().await;
            for _ in 0..50 {
                sa.entry(format!("load{}", i % 100_000).as_bytes())
                    .put(&[&[b'x'; 100]], 0, Expiry::Never, None)
                    .unwrap();
                i += 1;
            }
        }
        i as f64 / t0.elapsed().as_secs_f64()
    });
    let mut lags = Vec::new();
    for i in 0..500 {
        let key = format!("probe{i}");
        a.set(&key, "1");
        let t0 = Instant::now();
        while b.get(&key).is_none() {
            assert!(t0.elapsed() < Duration::from_secs(10));
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        lags.push(t0.elapsed());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let rate = load.await.unwrap();
    lags.sort();
    let p = |q: f64| lags[((lags.len() as f64 - 1.0) * q) as usize];
    println!(
        "lag under {rate:.0} sets/s: p50 {:?} p90 {:?} p99 {:?} max {:?}",
        p(0.5),
        p(0.9),
        p(0.99),
        lags[lags.len() - 1]
    );
    a.repl.shutdown().await;
    b.repl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, run by hand"]
async fn set_throughput_with_and_without_a_peer() {
    const N: u32 = 300_000;
    let run = |store: std::sync::Arc<repcached::store::Store>| {
        let t0 = Instant::now();
        for i in 0..N {
            store
                .entry(format!("k{}", i % 50_000).as_bytes())
                .put(&[&[b'x'; 100]], 0, Expiry::Never, None)
                .unwrap();
        }
        N as f64 / t0.elapsed().as_secs_f64()
    };
    let alone = std::sync::Arc::new(repcached::store::Store::new(Default::default()));
    let without = tokio::task::spawn_blocking(move || run(alone))
        .await
        .unwrap();
    let a = start_node(NodeOpts::default()).await;
    let sa = a.store.clone();
    let backlog_only = tokio::task::spawn_blocking(move || run(sa)).await.unwrap();
    let b = start_node(NodeOpts {
        peers: vec![a.peer_name()],
        ..Default::default()
    })
    .await;
    b.repl.wait_initial_sync(Duration::from_secs(10)).await;
    let sa = a.store.clone();
    let with = tokio::task::spawn_blocking(move || run(sa)).await.unwrap();
    converge(&a, &b, 60).await;
    println!(
        "sets/s, one writer thread: without replication {without:.0}, \
         publishing to the backlog with no peer {backlog_only:.0}, \
         with a peer attached (in the same process) {with:.0}"
    );
    a.repl.shutdown().await;
    b.repl.shutdown().await;
}
