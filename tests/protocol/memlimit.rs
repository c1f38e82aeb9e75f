//! cache_memlimit that the cache cannot take, against a real server process: a limit beyond the
//! address space reserved at start, and a growth the kernel refuses (mprotect failing under an
//! RLIMIT_DATA set on the running server with prlimit(2)). Each answers memcached's
//! MEMLIMIT_ADJUST_FAILED, changes nothing, and the server goes on serving, writes included.

use crate::harness::*;

const ADJUST_FAILED: &[u8] = b"MEMLIMIT_ADJUST_FAILED out of bounds or unable to adjust\r\n";

/// One general stat, read with `stats` on `c`.
fn stat(c: &mut Client, name: &str) -> u64 {
    c.stat("", name).parse().unwrap()
}

/// `n` sets pipelined in batches, every reply STORED (enough keys to grow the hash index,
/// which makes the next write fit the ring to the memory limit again).
fn fill(c: &mut Client, prefix: &str, n: usize) {
    for batch in (0..n).collect::<Vec<_>>().chunks(500) {
        let mut req = Vec::new();
        for i in batch {
            req.extend_from_slice(format!("set {prefix}{i} 0 0 1 noreply\r\nv\r\n").as_bytes());
        }
        req.extend_from_slice(b"mn\r\n");
        c.send(&req).expect("send sets");
        c.expect(b"MN\r\n", "a batch of sets");
    }
    c.send(format!("get {prefix}{}\r\n", n - 1).as_bytes())
        .expect("send get");
    c.expect(
        format!("VALUE {prefix}{} 0 1\r\nv\r\nEND\r\n", n - 1).as_bytes(),
        "the last set",
    );
}

#[test]
fn cache_memlimit_beyond_the_reservation_is_refused_and_changes_nothing() {
    let mut server = Server::repcached(&["-m", "64"]);
    let mut c = server.client();
    // The most the parser takes (just under 1 PB), and 40 GiB: both past the 32 GiB reserved.
    for mb in ["1000000000", "40960"] {
        c.send(format!("cache_memlimit {mb}\r\n").as_bytes())
            .unwrap();
        c.expect(ADJUST_FAILED, &format!("cache_memlimit {mb}"));
    }
    assert_eq!(
        stat(&mut c, "limit_maxbytes"),
        64 << 20,
        "the limit is unchanged"
    );
    fill(&mut c, "a", 20_000);
    c.send(b"cache_memlimit 128\r\n").unwrap();
    c.expect(b"OK\r\n", "a limit within the reservation");
    assert_eq!(stat(&mut c, "limit_maxbytes"), 128 << 20);
    let mut other = server.client();
    other.send(b"version\r\n").unwrap();
    assert!(other.read_line().starts_with(b"VERSION "));
    assert!(server.alive());
}

/// The server's data segment so far (VmData, bytes): what RLIMIT_DATA counts.
fn vm_data(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmData:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmData");
    kb * 1024
}

#[test]
fn cache_memlimit_that_mprotect_refuses_answers_an_error_and_the_server_goes_on() {
    let mut server = Server::repcached(&["-m", "64"]);
    let pid = server.pid();
    let mut c = server.client();
    // Room for 48 MiB more private writable memory: the server's heap and stacks go on, but
    // opening 960 MiB more of the ring (mprotect to read-write) fails with ENOMEM.
    let limit = libc::rlimit {
        rlim_cur: vm_data(pid) + (48 << 20),
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: prlimit(2) reads `limit` (a valid rlimit) and writes nothing (null old-limit
    // pointer); the pid is our own child, alive (`server` owns it until the end of the test).
    #[allow(unsafe_code)]
    let rc = unsafe { libc::prlimit(pid as i32, libc::RLIMIT_DATA, &limit, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());

    c.send(b"cache_memlimit 1024\r\n").unwrap();
    c.expect(ADJUST_FAILED, "cache_memlimit 1024 under RLIMIT_DATA");
    assert_eq!(
        stat(&mut c, "limit_maxbytes"),
        64 << 20,
        "the limit is unchanged"
    );
    // Writes that grow the index refit the ring to the limit: still the old one, no growth.
    fill(&mut c, "b", 40_000);
    c.send(b"cache_memlimit 32\r\n").unwrap();
    c.expect(b"OK\r\n", "shrinking needs no mprotect");
    assert_eq!(stat(&mut c, "limit_maxbytes"), 32 << 20);
    let mut other = server.client();
    fill(&mut other, "c", 1000);
    assert!(server.alive());
}
