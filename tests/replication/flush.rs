//! A delayed `flush_all` replicates as a delayed flush: it holds back no write before its time
//! (writes on both nodes keep crossing), and at its time it removes, on both nodes, what was
//! written before it and nothing written after. Real processes.

use crate::harness::*;

fn pair() -> (Proc, Proc) {
    crate::harness::pair(Link::AToB, &[], 10)
}

/// A write on each node is readable on the other, and nothing was counted stale.
fn writes_cross(a: &Proc, b: &Proc, tag: &str) {
    let (mut ca, mut cb) = (a.client(), b.client());
    assert_eq!(ca.set(&format!("{tag}_a"), "from_a"), "STORED");
    assert_eq!(cb.set(&format!("{tag}_b"), "from_b"), "STORED");
    assert!(
        wait_for(10, || {
            cb.get(&format!("{tag}_a")).as_deref() == Some("from_a")
                && ca.get(&format!("{tag}_b")).as_deref() == Some("from_b")
        }),
        "{tag}: writes do not cross (A: {:?}, B: {:?})",
        ca.stats("replication"),
        cb.stats("replication")
    );
    for c in [&mut ca, &mut cb] {
        assert_eq!(c.stat_u64("", "repl_records_stale"), 0, "{tag}");
    }
}

#[test]
fn a_delayed_flush_does_not_stop_replication() {
    let (a, b) = pair();
    let mut ca = a.client();
    assert_eq!(ca.set("old", "1"), "STORED");
    assert!(wait_for(10, || b.client().get("old").is_some()));
    assert_eq!(ca.cmd("flush_all 600"), "OK");
    writes_cross(&a, &b, "after600");
    // Before its time, a delayed flush leaves everything readable, locally too.
    assert_eq!(ca.get("old").as_deref(), Some("1"));
    assert_eq!(ca.get("after600_a").as_deref(), Some("from_a"));
    // An absolute flush time years ahead.
    assert_eq!(b.client().cmd("flush_all 2000000000"), "OK");
    writes_cross(&a, &b, "after2033");
    assert_eq!(b.client().get("old").as_deref(), Some("1"));
}

#[test]
fn a_delayed_flush_takes_effect_on_both_nodes_at_its_time() {
    let (a, b) = pair();
    let (mut ca, mut cb) = (a.client(), b.client());
    assert_eq!(ca.set("pre_a", "1"), "STORED");
    assert_eq!(cb.set("pre_b", "1"), "STORED");
    assert!(wait_for(10, || ca.get("pre_b").is_some()
        && cb.get("pre_a").is_some()));
    assert_eq!(cb.cmd("flush_all 3"), "OK");
    // Written after the command, before its time: replicated, then flushed with the rest.
    writes_cross(&a, &b, "mid");
    let keys = ["pre_a", "pre_b", "mid_a", "mid_b"];
    assert!(
        wait_for(10, || keys
            .iter()
            .all(|k| ca.get(k).is_none() && cb.get(k).is_none())),
        "the flush did not take effect on both nodes: A {:?} B {:?}",
        keys.map(|k| ca.get(k)),
        keys.map(|k| cb.get(k))
    );
    // Written after its time: survives on both.
    writes_cross(&a, &b, "post");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    for c in [&mut ca, &mut cb] {
        assert_eq!(c.get("post_a").as_deref(), Some("from_a"));
        assert_eq!(c.get("post_b").as_deref(), Some("from_b"));
    }
}
