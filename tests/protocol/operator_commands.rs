//! memcached's operator commands against the real binary, with memcached 1.6.18's replies:
//! `lru_crawler enable|disable|crawl|sleep|tocrawl` (t/lru-crawler.t), `slabs automove`
//! (t/strtol-testing.t), `slabs reassign`, and `stats detail on|off|dump` with real per-prefix
//! counters (t/stats-detail.t); `conn_yields` under -R (t/issue_61.t).

use crate::harness::{Client, Server};
use std::time::{Duration, Instant};

fn ask(c: &mut Client, cmd: &str) -> String {
    c.send(cmd.as_bytes()).unwrap();
    String::from_utf8_lossy(&c.read_line()).into_owned()
}

#[test]
fn lru_crawler_commands_answer_as_memcached_and_change_the_settings() {
    let server = Server::repcached(&[]);
    let mut c = server.client();
    let s = c.stats("settings");
    assert_eq!(s["lru_crawler"], "yes");
    assert_eq!(s["lru_crawler_sleep"], "100", "memcached's default");
    assert_eq!(s["lru_crawler_tocrawl"], "0", "memcached's default");

    assert_eq!(
        ask(&mut c, "lru_crawler sleep 2000000\r\n"),
        "CLIENT_ERROR sleep must be one second or less\r\n"
    );
    assert_eq!(
        ask(&mut c, "lru_crawler sleep x\r\n"),
        "CLIENT_ERROR bad command line format\r\n"
    );
    assert_eq!(ask(&mut c, "lru_crawler sleep 50\r\n"), "OK\r\n");
    assert_eq!(
        ask(&mut c, "lru_crawler tocrawl -\r\n"),
        "CLIENT_ERROR bad command line format\r\n"
    );
    assert_eq!(ask(&mut c, "lru_crawler tocrawl 7\r\n"), "OK\r\n");
    assert_eq!(ask(&mut c, "lru_crawler bogus\r\n"), "ERROR\r\n");
    assert_eq!(
        ask(&mut c, "lru_crawler crawl 64\r\n"),
        "BADCLASS invalid class id\r\n"
    );
    assert_eq!(
        ask(&mut c, "lru_crawler crawl ,\r\n"),
        "NOTSTARTED no items to crawl\r\n"
    );
    assert_eq!(
        ask(&mut c, "lru_crawler crawl hash\r\n"),
        "ERROR an unknown error happened\r\n"
    );
    assert_eq!(
        ask(&mut c, "lru_crawler enable\r\n"),
        "ERROR failed to start lru crawler thread\r\n"
    );
    let s = c.stats("settings");
    assert_eq!(
        (
            s["lru_crawler_sleep"].as_str(),
            s["lru_crawler_tocrawl"].as_str()
        ),
        ("50", "7")
    );

    assert_eq!(ask(&mut c, "lru_crawler disable\r\n"), "OK\r\n");
    assert_eq!(c.stats("settings")["lru_crawler"], "no");
    assert_eq!(
        ask(&mut c, "lru_crawler crawl all\r\n"),
        "CLIENT_ERROR lru crawler disabled\r\n"
    );
    assert_eq!(
        ask(&mut c, "lru_crawler metadump all\r\n"),
        "CLIENT_ERROR lru crawler disabled\r\n"
    );
    assert_eq!(ask(&mut c, "lru_crawler enable\r\n"), "OK\r\n");
    assert_eq!(c.stats("settings")["lru_crawler"], "yes");
}

#[test]
fn lru_crawler_crawl_runs_a_pass_and_reports_it() {
    let server = Server::repcached(&[]);
    let mut c = server.client();
    for i in 0..30 {
        assert_eq!(
            ask(&mut c, &format!("set keep{i} 0 0 2\r\nok\r\n")),
            "STORED\r\n"
        );
        assert_eq!(
            ask(&mut c, &format!("set gone{i} 0 1 2\r\nok\r\n")),
            "STORED\r\n"
        );
    }
    // Wait (bounded) until the 1-second items have expired, without touching them.
    let deadline = Instant::now() + Duration::from_secs(10);
    let start = c.stats("")["time"].parse::<u64>().unwrap();
    while c.stats("")["time"].parse::<u64>().unwrap() < start + 3 {
        assert!(Instant::now() < deadline, "server clock stands still");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(ask(&mut c, "lru_crawler crawl 1\r\n"), "OK\r\n");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = c.stats("");
        if s["lru_crawler_running"] == "0" {
            // The periodic sweep (once a second, counted in `reclaimed` like memcached's LRU
            // maintainer) may have been first; the crawl counts in `crawler_reclaimed`. Each
            // reclaim is counted once, as in memcached (exporters add both).
            let n = |k: &str| s[k].parse::<u64>().unwrap();
            assert_eq!(n("reclaimed") + n("crawler_reclaimed"), 30, "{s:?}");
            assert_eq!(s["curr_items"], "30");
            break;
        }
        assert!(Instant::now() < deadline, "crawl never finished");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn slabs_commands_answer_as_memcached() {
    let server = Server::repcached(&[]);
    let mut c = server.client();
    assert_eq!(c.stats("settings")["slab_automove"], "0");
    assert_eq!(
        ask(&mut c, "slabs automove invalid\r\n"),
        "CLIENT_ERROR bad command line format\r\n"
    );
    assert_eq!(ask(&mut c, "slabs automove 3\r\n"), "ERROR\r\n");
    assert_eq!(ask(&mut c, "slabs automove ratio\r\n"), "ERROR\r\n");
    assert_eq!(ask(&mut c, "slabs automove ratio 0.5\r\n"), "OK\r\n");
    assert_eq!(ask(&mut c, "slabs automove 2\r\n"), "OK\r\n");
    assert_eq!(c.stats("settings")["slab_automove"], "2");
    c.send(b"slabs automove 1 noreply\r\n").unwrap();
    assert_eq!(c.stats("settings")["slab_automove"], "1");
    // A ring has no slab pages: memcached's reply with slab reassignment off.
    assert_eq!(c.stats("settings")["slab_reassign"], "no");
    for cmd in ["slabs reassign 1 2\r\n", "slabs reassign x y\r\n"] {
        assert_eq!(
            ask(&mut c, cmd),
            "CLIENT_ERROR slab reassignment disabled\r\n"
        );
    }
    assert_eq!(ask(&mut c, "slabs reassign 1\r\n"), "ERROR\r\n");
    assert_eq!(ask(&mut c, "slabs bogus\r\n"), "ERROR\r\n");
}

#[test]
fn stats_detail_counts_per_prefix() {
    let server = Server::repcached(&[]);
    let mut c = server.client();
    let dump = |c: &mut Client| {
        c.send(b"stats detail dump\r\n").unwrap();
        let mut lines = Vec::new();
        loop {
            let l = String::from_utf8_lossy(&c.read_line()).into_owned();
            if l == "END\r\n" {
                return lines;
            }
            lines.push(l);
        }
    };
    assert!(dump(&mut c).is_empty());
    assert_eq!(ask(&mut c, "stats detail on\r\n"), "OK\r\n");
    assert_eq!(c.stats("settings")["detail_enabled"], "yes");
    assert_eq!(ask(&mut c, "set foo:123 0 0 6\r\nfooval\r\n"), "STORED\r\n");
    assert_eq!(ask(&mut c, "set nodelimiter 0 0 1\r\nx\r\n"), "STORED\r\n");
    assert_eq!(dump(&mut c), ["PREFIX foo get 0 hit 0 set 1 del 0\r\n"]);
    c.send(b"get foo:123 foo:124 bar:1\r\n").unwrap();
    assert_eq!(c.read_line(), b"VALUE foo:123 0 6\r\n");
    c.read_line();
    assert_eq!(c.read_line(), b"END\r\n");
    assert_eq!(ask(&mut c, "delete foo:125\r\n"), "NOT_FOUND\r\n");
    assert_eq!(
        dump(&mut c),
        [
            "PREFIX bar get 1 hit 0 set 0 del 0\r\n",
            "PREFIX foo get 2 hit 1 set 1 del 1\r\n"
        ]
    );
    assert_eq!(ask(&mut c, "stats reset\r\n"), "RESET\r\n");
    assert!(dump(&mut c).is_empty());
    assert_eq!(ask(&mut c, "stats detail off\r\n"), "OK\r\n");
    assert_eq!(c.stats("settings")["detail_enabled"], "no");
    assert_eq!(ask(&mut c, "delete foo:123\r\n"), "DELETED\r\n");
    assert!(dump(&mut c).is_empty(), "nothing counted while off");
}

#[test]
fn conn_yields_counts_spent_request_budgets() {
    let server = Server::repcached(&["-R", "1"]);
    let mut c = server.client();
    c.send("set foobar 0 0 5\r\nBubba\r\n".repeat(6).as_bytes())
        .unwrap();
    for _ in 0..6 {
        assert_eq!(c.read_line(), b"STORED\r\n");
    }
    let yields: u64 = c.stats("")["conn_yields"].parse().unwrap();
    assert!(yields >= 5, "{yields}");
}

#[test]
fn no_lru_crawler_and_no_modern_start_with_the_crawler_off() {
    for opt in ["no_lru_crawler", "no_modern"] {
        let server = Server::repcached(&["-o", opt]);
        let mut c = server.client();
        assert_eq!(c.stats("settings")["lru_crawler"], "no", "{opt}");
        // memcached lists the crawler's stats only while it is enabled.
        assert!(!c.stats("").contains_key("lru_crawler_starts"));
        assert_eq!(
            ask(&mut c, "lru_crawler crawl 1\r\n"),
            "CLIENT_ERROR lru crawler disabled\r\n"
        );
        assert_eq!(ask(&mut c, "lru_crawler enable\r\n"), "OK\r\n");
        assert_eq!(c.stats("settings")["lru_crawler"], "yes");
        assert!(c.stats("").contains_key("lru_crawler_starts"));
    }
}

#[test]
fn stats_has_memcached_fields_that_are_true_zeros_here() {
    let server = Server::repcached(&[]);
    let mut c = server.client();
    let s = c.stats("");
    for name in [
        "hash_is_expanding",
        "malloc_fails",
        "log_worker_dropped",
        "log_worker_written",
        "log_watcher_skipped",
        "log_watcher_sent",
        "log_watchers",
        "unexpected_napi_ids",
        "round_robin_fallback",
    ] {
        assert_eq!(s.get(name).map(String::as_str), Some("0"), "{name}");
    }
}
