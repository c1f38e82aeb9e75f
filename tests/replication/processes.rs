//! Process-level replication tests: real repcached processes on loopback, replication ports
//! given with -X, peers with -x, clients speaking the text protocol.

use crate::harness::*;
use crate::harness::{write_secret, Proxy};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn pair() -> (Proc, Proc) {
    crate::harness::pair(Link::Mutual, &[], 10)
}

/// Sets a key on `from` and returns how long until `to` answers it.
fn visible_after(from: &mut Client, to: &mut Client, key: &str, value: &str) -> Duration {
    assert_eq!(from.set(key, value), "STORED");
    let t0 = Instant::now();
    while to.get(key).as_deref() != Some(value) {
        assert!(t0.elapsed() < Duration::from_secs(5), "{key} never arrived");
        std::thread::sleep(Duration::from_millis(1));
    }
    t0.elapsed()
}

#[test]
fn two_processes_replicate_each_write_within_100ms() {
    let (a, b) = pair();
    let (mut ca, mut cb) = (a.client(), b.client());
    let mut slow = Vec::new();
    for i in 0..20 {
        let d1 = visible_after(&mut ca, &mut cb, &format!("ab{i}"), "x");
        let d2 = visible_after(&mut cb, &mut ca, &format!("ba{i}"), "y");
        slow.extend(
            [d1, d2]
                .into_iter()
                .filter(|d| *d > Duration::from_millis(100)),
        );
    }
    // A loaded CI machine may stall once; a systematic delay fails.
    assert!(slow.len() <= 1, "writes slower than 100 ms: {slow:?}");

    // flags, TTL, delete, incr, touch, flush_all travel too
    assert_eq!(ca.store("set", "f", 77, 100, "v"), "STORED");
    assert!(wait_for(5, || cb
        .gets("f")
        .is_some_and(|(_, f, _)| f == 77)));
    assert_eq!(ca.cmd("delete f"), "DELETED");
    assert!(wait_for(5, || cb.get("f").is_none()));
    assert_eq!(ca.set("n", "5"), "STORED");
    assert!(wait_for(5, || cb.get("n").is_some()));
    assert_eq!(cb.cmd("incr n 10"), "15");
    assert!(wait_for(5, || ca.get("n").as_deref() == Some("15")));
    assert_eq!(cb.cmd("flush_all"), "OK");
    assert!(wait_for(5, || ca.get("n").is_none() && ca.get("ab3").is_none()));

    let s = ca.stats("");
    assert_eq!(s.get("repl_peers").map(String::as_str), Some("1"));
    assert!(s
        .get("repl_records_sent")
        .is_some_and(|v| v.parse::<u64>().unwrap() > 0));
}

#[test]
fn cas_ids_are_shared_across_nodes() {
    let (a, b) = pair();
    let (mut ca, mut cb) = (a.client(), b.client());
    assert_eq!(ca.set("k", "v1"), "STORED");
    assert!(wait_for(5, || cb.get("k").is_some()));
    let (_, _, cas_a) = ca.gets("k").unwrap();
    let (_, _, cas_b) = cb.gets("k").unwrap();
    assert_eq!(
        cas_a, cas_b,
        "the same write has the same CAS id on both nodes"
    );
    // gets on A, cas on B: stored, because B holds the same write
    assert_eq!(cb.cmd(&format!("cas k 0 0 2 {cas_a}\r\nv2")), "STORED");
    assert!(wait_for(5, || ca.get("k").as_deref() == Some("v2")));
    // the old id is now stale everywhere
    let reply = ca.cmd(&format!("cas k 0 0 1 {cas_a}\r\nz"));
    assert_eq!(reply, "EXISTS");
}

#[test]
fn three_process_mesh_replicates_everywhere() {
    let ports = [free_port(), free_port(), free_port()];
    let peers = |i: usize| -> Vec<String> {
        (0..3)
            .filter(|j| *j != i)
            .map(|j| format!("127.0.0.1:{}", ports[j]))
            .collect()
    };
    let nodes: Vec<Proc> = (0..3).map(|i| spawn(ports[i], &peers(i), &[])).collect();
    assert!(wait_for(10, || nodes.iter().all(synced)));
    let mut clients: Vec<Client> = nodes.iter().map(|n| n.client()).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        for k in 0..50 {
            assert_eq!(c.set(&format!("n{i}-{k}"), &format!("{i}")), "STORED");
        }
    }
    assert_eq!(clients[0].set("c", "0"), "STORED");
    assert!(wait_for(5, || clients
        .iter_mut()
        .all(|c| c.get("c").is_some())));
    for c in clients.iter_mut() {
        for _ in 0..20 {
            c.cmd("incr c 1");
        }
    }
    let keys: Vec<String> = (0..3)
        .flat_map(|i| (0..50).map(move |k| format!("n{i}-{k}")))
        .collect();
    assert!(wait_for(10, || clients.iter_mut().all(|c| c
        .get("c")
        .as_deref()
        .map(str::trim)
        == Some("60"))));
    let want = contents(&mut clients[0], &keys);
    assert!(want.iter().all(Option::is_some));
    for c in clients.iter_mut().skip(1) {
        assert!(wait_for(5, || contents(c, &keys) == want));
    }
    for c in clients.iter_mut() {
        let s = c.stats("");
        assert_eq!(
            s.get("repl_peers_connected").map(String::as_str),
            Some("2"),
            "{s:?}"
        );
    }
}

#[test]
fn overlapping_writers_end_identical_and_increments_add_up() {
    let (a, b) = pair();
    let keys: Vec<String> = (0..200).map(|i| format!("key{i}")).collect();
    assert_eq!(a.client().set("counter", "0"), "STORED");
    assert!(wait_for(5, || b.client().get("counter").is_some()));
    let mut writers = Vec::new();
    for (node, port) in [("a", a.port), ("b", b.port)] {
        let keys = keys.clone();
        writers.push(std::thread::spawn(move || {
            let mut c = Client::connect(port);
            for i in 0..1000usize {
                let k = &keys[(i * 7 + if node == "a" { 0 } else { 3 }) % keys.len()];
                match i % 10 {
                    0 => {
                        c.cmd(&format!("delete {k}"));
                    }
                    1 => {
                        c.store("append", k, 0, 0, node);
                    }
                    _ => {
                        c.store("set", k, i as u32, 0, &format!("{node}{i}"));
                    }
                }
                assert!(c.cmd("incr counter 1").parse::<u64>().is_ok());
            }
        }));
    }
    for w in writers {
        w.join().unwrap();
    }
    let (mut ca, mut cb) = (a.client(), b.client());
    assert!(wait_for(10, || ca.get("counter").as_deref().map(str::trim)
        == Some("2000")
        && cb.get("counter").as_deref().map(str::trim) == Some("2000")));
    assert!(
        wait_for(10, || contents(&mut ca, &keys) == contents(&mut cb, &keys)),
        "contents differ after the writers stopped"
    );
}

#[test]
fn a_starting_node_syncs_before_it_serves() {
    let pa = free_port();
    let a = spawn(pa, &[], &[]);
    let mut ca = a.client();
    for i in 0..3000 {
        assert_eq!(ca.set(&format!("k{i}"), "v"), "STORED");
    }
    let b = spawn(free_port(), &[a.repl_addr()], &[]);
    // No polling: the client port is only opened after the initial sync.
    let mut cb = b.client();
    for i in (0..3000).step_by(97) {
        assert_eq!(
            cb.get(&format!("k{i}")).as_deref(),
            Some("v"),
            "k{i} missing right after start"
        );
    }
    assert_eq!(cb.stat_u64("", "curr_items"), 3000);
}

#[test]
fn kill_9_under_load_then_restart_catches_up_by_full_resync() {
    let (pa, pb) = (free_port(), free_port());
    let a = spawn(pa, &[format!("127.0.0.1:{pb}")], &[]);
    let mut b = spawn(pb, &[format!("127.0.0.1:{pa}")], &[]);
    assert!(wait_for(10, || synced(&a) && synced(&b)));
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let worst = Arc::new(AtomicU64::new(0));
    let (st, wr, wo, port) = (stop.clone(), written.clone(), worst.clone(), a.port);
    let writer = std::thread::spawn(move || {
        let mut c = Client::connect(port);
        let mut i = 0u64;
        while !st.load(Ordering::Relaxed) && i < 200_000 {
            let t0 = Instant::now();
            assert_eq!(
                c.set(&format!("load{}", i % 2000), &format!("v{i}")),
                "STORED"
            );
            wo.fetch_max(t0.elapsed().as_millis() as u64, Ordering::Relaxed);
            i += 1;
            wr.store(i, Ordering::Relaxed);
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    b.kill9();
    let at_kill = written.load(Ordering::Relaxed);
    // A keeps answering while B is gone.
    assert!(wait_for(10, || written.load(Ordering::Relaxed) > at_kill + 500));
    assert!(wait_for(10, || a
        .client()
        .stats("replication")
        .values()
        .any(|v| v == "down" || v == "connecting")));
    let b = spawn(pb, &[format!("127.0.0.1:{pa}")], &[]);
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(
        worst.load(Ordering::Relaxed) < 1000,
        "a set on A took {} ms",
        worst.load(Ordering::Relaxed)
    );
    let keys: Vec<String> = (0..2000).map(|i| format!("load{i}")).collect();
    let (mut ca, mut cb) = (a.client(), b.client());
    assert!(
        wait_for(15, || contents(&mut ca, &keys) == contents(&mut cb, &keys)),
        "B did not catch up"
    );
    assert!(cb.stat_u64("", "repl_full_syncs") >= 1);
}

#[test]
fn a_cut_link_under_load_catches_up_from_the_backlog() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let pb = free_port();
    let b = spawn(pb, &[], &[]);
    let proxy = rt.block_on(Proxy::start(format!("127.0.0.1:{pb}").parse().unwrap()));
    let a = spawn(free_port(), &[proxy.addr.to_string()], &[]);
    assert!(wait_for(10, || synced(&a) && synced(&b)));
    let keys: Vec<String> = (0..500).map(|i| format!("k{i}")).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for port in [a.port, b.port] {
        let (keys, stop) = (keys.clone(), stop.clone());
        writers.push(std::thread::spawn(move || {
            let mut c = Client::connect(port);
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) && i < 100_000 {
                c.set(
                    &keys[(i * 13 + port as usize) % keys.len()],
                    &format!("{port}-{i}"),
                );
                i += 1;
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(200));
    let full_before = (
        a.client().stat_u64("", "repl_full_syncs"),
        b.client().stat_u64("", "repl_full_syncs"),
    );
    proxy.cut();
    assert!(wait_for(5, || !synced(&a)));
    std::thread::sleep(Duration::from_millis(500));
    proxy.restore();
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let (mut ca, mut cb) = (a.client(), b.client());
    assert!(
        wait_for(15, || contents(&mut ca, &keys) == contents(&mut cb, &keys)),
        "contents differ"
    );
    assert!(
        ca.stat_u64("", "repl_partial_syncs") >= 1 && cb.stat_u64("", "repl_partial_syncs") >= 1
    );
    assert_eq!(
        (
            ca.stat_u64("", "repl_full_syncs"),
            cb.stat_u64("", "repl_full_syncs")
        ),
        full_before,
        "the break was short: no full resync"
    );
    drop(proxy);
}

#[test]
fn a_wrong_secret_is_rejected_with_a_log_line() {
    let good = write_secret(
        "good",
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    );
    let bad = write_secret(
        "bad",
        "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210",
    );
    let pa = free_port();
    let a = spawn(pa, &[], &["--repl-secret-file", good.to_str().unwrap()]);
    let b = spawn(
        free_port(),
        &[a.repl_addr()],
        &["--repl-secret-file", bad.to_str().unwrap()],
    );
    let (mut ca, mut cb) = (a.client(), b.client());
    assert_eq!(cb.set("from-b", "1"), "STORED");
    assert_eq!(ca.set("from-a", "1"), "STORED");
    assert!(wait_for(10, || a.stderr_contains("rejected peer")
        && b.stderr_contains("rejected peer")));
    std::thread::sleep(Duration::from_millis(300));
    assert!(ca.get("from-b").is_none() && cb.get("from-a").is_none());
    // The same secret on both sides works.
    let c = spawn(
        free_port(),
        &[a.repl_addr()],
        &["--repl-secret-file", good.to_str().unwrap()],
    );
    assert_eq!(c.client().get("from-a").as_deref(), Some("1"));
}

#[test]
fn refuses_to_start_unauthenticated_off_loopback() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_repcached"))
        .args([
            "-p",
            "-1",
            "-U",
            "0",
            "-l",
            "127.0.0.1",
            "-X",
            "0",
            "-x",
            "192.0.2.1:11212",
        ])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("secret"), "{err}");
}

#[test]
fn sigterm_sends_what_is_queued_before_exiting() {
    let pb = free_port();
    let b = spawn(pb, &[], &[]);
    let mut a = spawn(free_port(), &[b.repl_addr()], &[]);
    assert!(wait_for(10, || synced(&a) && synced(&b)));
    let mut ca = a.client();
    for i in 0..2000 {
        assert_eq!(ca.set(&format!("last{i}"), "v"), "STORED");
    }
    signal(a.pid(), libc::SIGTERM);
    a.wait_exit(Duration::from_secs(10));
    let mut cb = b.client();
    for i in 0..2000 {
        assert_eq!(
            cb.get(&format!("last{i}")).as_deref(),
            Some("v"),
            "last{i} lost at shutdown"
        );
    }
}

/// Waits until `key` reads `want` on the client's node (space padding of counters ignored).
fn arrives(cb: &mut Client, key: &str, want: Option<&str>) {
    assert!(
        wait_for(5, || cb.get(key).as_deref().map(str::trim) == want),
        "{key}: want {want:?}, have {:?}",
        cb.get(key)
    );
}

#[test]
fn every_text_command_path_replicates() {
    let (a, b) = pair();
    let (mut ca, mut cb) = (a.client(), b.client());
    assert_eq!(ca.store("add", "add", 0, 0, "1"), "STORED");
    arrives(&mut cb, "add", Some("1"));
    assert_eq!(ca.store("replace", "add", 0, 0, "2"), "STORED");
    arrives(&mut cb, "add", Some("2"));
    assert_eq!(ca.store("prepend", "add", 0, 0, "<"), "STORED");
    arrives(&mut cb, "add", Some("<2"));
    let (_, _, cas) = ca.gets("add").unwrap();
    assert_eq!(ca.cmd(&format!("cas add 0 0 1 {cas}\r\n3")), "STORED");
    arrives(&mut cb, "add", Some("3"));
    assert_eq!(ca.cmd("decr add 1"), "2");
    arrives(&mut cb, "add", Some("2"));
    // touch and gat carry the new expiry: 1 s, then the item is gone on both nodes
    assert_eq!(ca.set("t1", "x"), "STORED");
    assert_eq!(ca.set("t2", "x"), "STORED");
    arrives(&mut cb, "t2", Some("x"));
    assert_eq!(ca.cmd("touch t1 1"), "TOUCHED");
    ca.cmd("gat 1 t2");
    ca.line_until("END");
    assert!(wait_for(5, || cb.get("t1").is_none() && cb.get("t2").is_none()));
    // delayed flush_all: both nodes drop the items once the delay passes
    assert_eq!(ca.set("late", "x"), "STORED");
    arrives(&mut cb, "late", Some("x"));
    assert_eq!(ca.cmd("flush_all 1"), "OK");
    assert!(wait_for(5, || cb.get("late").is_none()));
}

#[test]
fn evictions_are_not_replicated() {
    let (pa, pb) = (free_port(), free_port());
    let a = spawn(pa, &[format!("127.0.0.1:{pb}")], &["-m", "2"]);
    let b = spawn(pb, &[format!("127.0.0.1:{pa}")], &["-m", "64"]);
    assert!(wait_for(10, || synced(&a) && synced(&b)));
    let (mut ca, mut cb) = (a.client(), b.client());
    let v = "v".repeat(1000);
    for i in 0..5000 {
        assert_eq!(ca.set(&format!("e{i}"), &v), "STORED");
    }
    assert!(ca.stat_u64("", "evictions") > 0, "A should have evicted");
    assert!(
        wait_for(10, || cb.stat_u64("", "curr_items") == 5000),
        "B lost items A evicted"
    );
    assert!(cb.get("e0").is_some());
}

#[test]
fn every_meta_command_path_replicates() {
    let (a, b) = pair();
    let (mut ca, mut cb) = (a.client(), b.client());
    assert_eq!(ca.cmd("ms m1 2 F5\r\nhi"), "HD");
    assert!(wait_for(5, || cb
        .gets("m1")
        .is_some_and(|(v, f, _)| v == "hi" && f == 5)));
    assert_eq!(ca.cmd("ms m2 1\r\n7"), "HD");
    arrives(&mut cb, "m2", Some("7"));
    assert_eq!(ca.cmd("ma m2"), "HD");
    arrives(&mut cb, "m2", Some("8"));
    assert_eq!(ca.cmd("md m1"), "HD");
    arrives(&mut cb, "m1", None);
    assert_eq!(ca.cmd("mg m2 T1"), "HD");
    assert!(
        wait_for(5, || cb.get("m2").is_none()),
        "mg T did not replicate the new TTL"
    );
}

#[test]
fn a_50ms_delayed_link_between_processes_converges() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let pb = free_port();
    let b = spawn(pb, &[], &[]);
    let proxy = rt.block_on(Proxy::start_with_delay(
        format!("127.0.0.1:{pb}").parse().unwrap(),
        Duration::from_millis(50),
    ));
    let a = spawn(free_port(), &[proxy.addr.to_string()], &[]);
    assert!(wait_for(10, || synced(&a) && synced(&b)));
    let (mut ca, mut cb) = (a.client(), b.client());
    assert_eq!(ca.set("n", "0"), "STORED");
    assert!(wait_for(5, || cb.get("n").is_some()));
    let keys: Vec<String> = (0..100).map(|i| format!("k{i}")).collect();
    for i in 0..300 {
        ca.set(&keys[i % 100], &format!("a{i}"));
        cb.set(&keys[(i + 50) % 100], &format!("b{i}"));
        ca.cmd("incr n 1");
        cb.cmd("incr n 1");
    }
    assert!(wait_for(10, || ca.get("n").as_deref().map(str::trim)
        == Some("600")
        && cb.get("n").as_deref().map(str::trim) == Some("600")));
    assert!(wait_for(10, || contents(&mut ca, &keys) == contents(&mut cb, &keys)));
    drop(proxy);
}

/// A counter changed on one node holds the same bytes on its peer, padding included: a shrinking
/// result is space-padded in place on both nodes, also when the change comes in the same
/// pipelined batch as a read of the counter (where memcached itself would write the result
/// unpadded if the read's reply still held the item; README, "Limits").
#[test]
fn replicated_incr_decr_keep_both_nodes_byte_identical() {
    let (a, b) = pair();
    let (mut ca, mut cb) = (a.client(), b.client());
    let same = |ca: &mut Client, cb: &mut Client, want: &str| {
        wait_for(5, || {
            ca.get("ctr").as_deref() == Some(want) && cb.get("ctr").as_deref() == Some(want)
        })
    };
    assert_eq!(ca.set("ctr", "1000"), "STORED");
    assert_eq!(ca.cmd("decr ctr 1"), "999");
    assert!(
        same(&mut ca, &mut cb, "999 "),
        "decr alone: A {:?}, B {:?}",
        ca.get("ctr"),
        cb.get("ctr")
    );

    // A read and a decrement in one batch on B: the read's reply is not yet written when the
    // decrement runs.
    cb.send(b"get ctr\r\ndecr ctr 990\r\n").unwrap();
    assert_eq!(cb.reply_line(), "VALUE ctr 0 4");
    assert_eq!(cb.reply_line(), "999");
    assert_eq!(cb.reply_line(), "END");
    assert_eq!(cb.reply_line(), "9");
    assert!(
        same(&mut ca, &mut cb, "9   "),
        "get+decr in one batch on B: A {:?}, B {:?}",
        ca.get("ctr"),
        cb.get("ctr")
    );

    // The same on A, with a meta read holding the item.
    ca.send(b"mg ctr v\r\nincr ctr 5\r\n").unwrap();
    assert_eq!(ca.reply_line(), "VA 4");
    assert_eq!(ca.reply_line(), "9");
    assert_eq!(ca.reply_line(), "14");
    assert!(
        same(&mut ca, &mut cb, "14  "),
        "mg+incr in one batch on A: A {:?}, B {:?}",
        ca.get("ctr"),
        cb.get("ctr")
    );
}
