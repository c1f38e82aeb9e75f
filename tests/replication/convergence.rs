//! Exact convergence with real processes: counters incremented on both sides of a partition long
//! enough to force a full resync end at the exact sum; incr and decr crossing zero converge; a
//! key deleted during a partition stays deleted; tombstones go once the peer has them. The link
//! runs through a proxy the test cuts; `--repl-backlog-size 64k` (the minimum) makes a few
//! hundred kilobytes of writes during the cut overflow the backlog.

use crate::harness::*;

fn pair(extra: &[&str]) -> ProxiedPair {
    let mut args = vec!["--repl-backlog-size", "64k"];
    args.extend_from_slice(extra);
    proxied_pair(&args)
}

/// Enough writes to push every earlier record out of a 64k backlog.
fn overflow_backlog(c: &mut Client, tag: &str) {
    let filler = "x".repeat(1000);
    for i in 0..300 {
        assert_eq!(c.set(&format!("fill-{tag}-{i}"), &filler), "STORED");
    }
}

fn full_syncs(p: &Proc) -> u64 {
    p.client().stat_u64("", "repl_full_syncs")
}

fn number(c: &mut Client, key: &str) -> Option<u64> {
    c.get(key).map(|v| v.trim().parse().expect("a number"))
}

#[test]
fn increments_on_both_sides_of_a_full_resync_add_up() {
    let p = pair(&[]);
    let (mut ca, mut cb) = (p.a.client(), p.b.client());
    assert_eq!(ca.set("hits", "100"), "STORED");
    assert!(wait_for(5, || number(&mut cb, "hits") == Some(100)));
    // Before the cut, both sides count: backlog catch-up.
    for _ in 0..10 {
        ca.cmd("incr hits 1");
        cb.cmd("incr hits 2");
    }
    let syncs = (full_syncs(&p.a), full_syncs(&p.b));
    p.proxy.cut();
    assert!(wait_for(10, || !synced(&p.a)));
    let mut expect = 100 + 10 * 3;
    for i in 0..50u64 {
        assert!(ca.cmd("incr hits 3").parse::<u64>().is_ok());
        cb.cmd(&format!("incr hits {}", i + 1));
        expect += 3 + i + 1;
    }
    cb.cmd("decr hits 7");
    expect -= 7;
    overflow_backlog(&mut ca, "a");
    overflow_backlog(&mut cb, "b");
    p.proxy.restore();
    assert!(
        wait_for(20, || synced(&p.a) && synced(&p.b)),
        "link never came back"
    );
    assert!(
        full_syncs(&p.a) > syncs.0 && full_syncs(&p.b) > syncs.1,
        "the partition did not force a full resync"
    );
    assert!(
        wait_for(10, || number(&mut ca, "hits") == Some(expect)
            && number(&mut cb, "hits") == Some(expect)),
        "expected {expect} on both: a {:?}, b {:?}",
        number(&mut ca, "hits"),
        number(&mut cb, "hits")
    );
    // And the counter keeps counting on both sides afterwards.
    ca.cmd("incr hits 1");
    cb.cmd("incr hits 1");
    expect += 2;
    assert!(wait_for(10, || number(&mut ca, "hits") == Some(expect)
        && number(&mut cb, "hits") == Some(expect)));
}

#[test]
fn incr_and_decr_crossing_zero_converge() {
    let p = pair(&[]);
    let (mut ca, mut cb) = (p.a.client(), p.b.client());
    // Connected: a decr on each side of a small counter, concurrently with an incr.
    assert_eq!(ca.set("q", "5"), "STORED");
    assert!(wait_for(5, || number(&mut cb, "q") == Some(5)));
    p.proxy.cut();
    assert!(wait_for(10, || !synced(&p.a)));
    // A takes 4 and gives back 2; B takes all 5 (floored at 0 locally) then asks for more.
    assert_eq!(ca.cmd("decr q 4"), "1");
    assert_eq!(ca.cmd("incr q 2"), "3");
    assert_eq!(cb.cmd("decr q 5"), "0");
    assert_eq!(cb.cmd("decr q 9"), "0", "memcached's floor, locally");
    overflow_backlog(&mut ca, "a");
    p.proxy.restore();
    assert!(wait_for(20, || synced(&p.a) && synced(&p.b)));
    // 5 - 4 + 2 - 5 = -2: both show 0 (the floor applies to the merged sum).
    assert!(
        wait_for(10, || number(&mut ca, "q") == Some(0)
            && number(&mut cb, "q") == Some(0)),
        "a {:?}, b {:?}",
        number(&mut ca, "q"),
        number(&mut cb, "q")
    );
    // The next incr shows exactly its delta on the node that made it, and everywhere after.
    assert_eq!(cb.cmd("incr q 3"), "3");
    assert!(wait_for(10, || number(&mut ca, "q") == Some(3)));
    // Crossing zero while connected: incr on one side, decr on the other, many times.
    for _ in 0..50 {
        ca.cmd("incr q 1");
        cb.cmd("decr q 2");
    }
    assert!(wait_for(10, || {
        let (x, y) = (number(&mut ca, "q"), number(&mut cb, "q"));
        x.is_some() && x == y
    }));
}

fn tombstones(p: &Proc) -> u64 {
    p.client().stat_u64("", "curr_tombstones")
}

#[test]
fn tombstones_go_once_the_peer_has_them() {
    let p = pair(&[]);
    let (mut ca, mut cb) = (p.a.client(), p.b.client());
    for i in 0..200 {
        assert_eq!(ca.set(&format!("t{i}"), "v"), "STORED");
    }
    assert!(wait_for(10, || cb.get("t199").is_some()));
    for i in 0..100 {
        assert_eq!(ca.cmd(&format!("delete t{i}")), "DELETED");
        assert_eq!(cb.cmd(&format!("delete t{}", 100 + i)), "DELETED");
    }
    assert!(tombstones(&p.a) > 0 || tombstones(&p.b) > 0);
    // A healthy pair: every tombstone goes within a few seconds (heartbeats every 500 ms,
    // sweeps every second), on both nodes, own deletes and received ones alike.
    let t0 = std::time::Instant::now();
    assert!(
        wait_for(10, || tombstones(&p.a) == 0 && tombstones(&p.b) == 0),
        "tombstones left: a {}, b {}",
        tombstones(&p.a),
        tombstones(&p.b)
    );
    println!("tombstones gone in {:?}", t0.elapsed());
    assert!(p.a.client().stat_u64("", "repl_tombstones_acked") >= 100);
    assert_eq!(p.a.client().stat_u64("", "repl_tombstones_timed_out"), 0);
    for i in 0..200 {
        assert_eq!(ca.get(&format!("t{i}")), None);
        assert_eq!(cb.get(&format!("t{i}")), None);
    }
}

/// A partition of several seconds, healed by a full resync: the key deleted on one side while
/// the other still held it stays deleted (the tombstone waits for the peer's acknowledgement,
/// well within --repl-tombstone-time), and goes once the peer has it.
#[test]
fn a_key_deleted_during_a_partition_stays_deleted() {
    let p = pair(&["--repl-tombstone-time", "120"]);
    let (mut ca, mut cb) = (p.a.client(), p.b.client());
    assert_eq!(ca.set("gone", "old"), "STORED");
    assert_eq!(cb.set("gone-b", "old"), "STORED");
    assert!(wait_for(10, || cb.get("gone").is_some()
        && ca.get("gone-b").is_some()));
    p.proxy.cut();
    assert!(wait_for(10, || !synced(&p.a)));
    assert_eq!(ca.cmd("delete gone"), "DELETED");
    assert_eq!(cb.cmd("delete gone-b"), "DELETED");
    overflow_backlog(&mut ca, "a");
    overflow_backlog(&mut cb, "b");
    std::thread::sleep(std::time::Duration::from_secs(5));
    // Unacknowledged: still there after several sweeps.
    assert!(tombstones(&p.a) >= 1 && tombstones(&p.b) >= 1);
    let syncs = full_syncs(&p.a);
    p.proxy.restore();
    assert!(wait_for(20, || synced(&p.a) && synced(&p.b)));
    assert!(full_syncs(&p.a) > syncs, "expected a full resync");
    assert!(wait_for(10, || tombstones(&p.a) == 0 && tombstones(&p.b) == 0));
    for c in [&mut ca, &mut cb] {
        assert_eq!(c.get("gone"), None, "the deleted key came back");
        assert_eq!(c.get("gone-b"), None, "the deleted key came back");
    }
}

/// The limit, shown with a short --repl-tombstone-time: a partition longer than it can bring a
/// deleted key back (the guarantee holds within that time).
#[test]
fn a_partition_longer_than_the_tombstone_time_can_bring_a_key_back() {
    let p = pair(&["--repl-tombstone-time", "1"]);
    let (mut ca, mut cb) = (p.a.client(), p.b.client());
    assert_eq!(ca.set("back", "old"), "STORED");
    assert!(wait_for(10, || cb.get("back").is_some()));
    p.proxy.cut();
    assert!(wait_for(10, || !synced(&p.a)));
    assert_eq!(ca.cmd("delete back"), "DELETED");
    overflow_backlog(&mut ca, "a");
    assert!(wait_for(10, || p
        .a
        .client()
        .stat_u64("", "repl_tombstones_timed_out")
        >= 1));
    p.proxy.restore();
    assert!(wait_for(20, || synced(&p.a) && synced(&p.b)));
    assert!(wait_for(10, || ca.get("back").as_deref() == Some("old")));
    assert_eq!(cb.get("back").as_deref(), Some("old"));
}
