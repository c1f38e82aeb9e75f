//! SIGHUP: the node re-reads --config and applies added and removed -x peers without a restart
//! or a dropped client; a configuration that no longer parses is not applied. Real processes.

use crate::harness::*;
use std::time::Duration;

fn hup(pid: u32) {
    signal(pid, libc::SIGHUP);
}

fn peer_rows(p: &Proc) -> Vec<(String, String)> {
    let s = p.client().stats("replication");
    let mut rows: Vec<(String, String)> = s
        .iter()
        .filter(|(k, _)| k.ends_with(":addr"))
        .map(|(k, v)| {
            let n = k.trim_end_matches(":addr");
            (v.clone(), s[&format!("{n}:state")].clone())
        })
        .collect();
    rows.sort();
    rows
}

#[test]
fn sighup_adds_and_removes_peers_without_a_restart() {
    let b = spawn(free_port(), &[], &[]);
    let mut cb = b.client();
    for i in 0..200 {
        assert_eq!(cb.set(&format!("b{i}"), "x"), "STORED");
    }
    let dir = std::env::temp_dir().join(format!("repcached-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("repcached.conf");
    std::fs::write(&conf, "# no peers yet\n-m 64\n").unwrap();
    let a = spawn(free_port(), &[], &["--config", conf.to_str().unwrap()]);
    let mut ca = a.client();
    assert_eq!(ca.set("a0", "1"), "STORED");
    assert!(peer_rows(&a).is_empty());

    // Add B: a full sync both ways, the client connection opened before stays usable.
    std::fs::write(&conf, format!("-m 64\n-x {}\n", b.repl_addr())).unwrap();
    hup(a.pid());
    assert!(
        wait_for(10, || peer_rows(&a)
            == vec![(b.repl_addr(), "synced".to_string())]),
        "{:?}",
        peer_rows(&a)
    );
    assert!(
        wait_for(10, || ca.get("b199").is_some()),
        "B's data did not arrive"
    );
    assert!(
        wait_for(10, || cb.get("a0").is_some()),
        "A's data did not reach B"
    );
    assert_eq!(ca.set("a1", "1"), "STORED");
    assert!(wait_for(10, || cb.get("a1").is_some()));

    // A file that no longer parses changes nothing.
    std::fs::write(&conf, "-m sixty-four\n").unwrap();
    hup(a.pid());
    assert!(wait_for(5, || a.stderr_contains("does not parse")));
    assert_eq!(peer_rows(&a), vec![(b.repl_addr(), "synced".to_string())]);

    // Remove B: its row and its link go; writes stay local.
    std::fs::write(&conf, "-m 64\n").unwrap();
    hup(a.pid());
    assert!(
        wait_for(10, || peer_rows(&a).is_empty()),
        "{:?}",
        peer_rows(&a)
    );
    assert!(
        wait_for(10, || peer_rows(&b)
            .iter()
            .all(|(_, state)| state == "down")),
        "B still sees a link: {:?}",
        peer_rows(&b)
    );
    assert_eq!(ca.set("a2", "1"), "STORED");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(cb.get("a2"), None, "a removed peer still receives writes");
    // The same client connection served throughout.
    assert_eq!(ca.get("a1").as_deref(), Some("1"));
    let _ = std::fs::remove_dir_all(&dir);
}
