//! A flood of half-open handshakes on a replication port: sockets from chosen loopback source
//! addresses that send at most a piece of a preamble and then nothing, held open and reopened
//! when the node closes them, bounded by a stop flag and 60 s.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How each flooding socket behaves.
#[derive(Clone, Copy)]
pub struct Flood {
    /// What a socket sends once connected, and then nothing.
    pub partial: &'static [u8],
    /// Only every second socket sends `partial` (the others send nothing).
    pub partial_on_odd_slots_only: bool,
    /// A socket the node closed after it was held at least this long (timed out) is reopened at
    /// once ...
    pub held: Duration,
    /// ... one it closed sooner (refused or evicted) after this pause.
    pub retry: Duration,
}

/// Raises this process's open-file limit to its hard limit (a flood holds ~1000 sockets).
pub fn raise_nofile() {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    #[allow(unsafe_code)]
    // SAFETY: getrlimit and setrlimit only write/read the local struct passed by reference.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

/// Holds `per_source` sockets from `src` to `target` as `how` says until `stop` is set (at most
/// 60 s); a closed port is retried every 10 ms, so that a restarted node's listener is flooded
/// as soon as it opens. `connects` counts the sockets opened.
pub fn flood(
    target: SocketAddr,
    src: String,
    per_source: usize,
    how: Flood,
    stop: Arc<AtomicBool>,
    connects: Arc<AtomicUsize>,
) -> std::thread::JoinHandle<()> {
    struct Slot {
        conn: Option<TcpStream>,
        opened: Instant,
        next_try: Instant,
    }
    std::thread::spawn(move || {
        let connect = |i: usize| -> Option<TcpStream> {
            let s =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
            let from: SocketAddr = format!("{src}:0").parse().ok()?;
            s.bind(&from.into()).ok()?;
            s.connect_timeout(&target.into(), Duration::from_secs(1))
                .ok()?;
            let mut t: TcpStream = s.into();
            if !how.partial_on_odd_slots_only || i % 2 == 1 {
                let _ = t.write_all(how.partial);
            }
            t.set_nonblocking(true).ok()?;
            Some(t)
        };
        let now = Instant::now();
        let mut slots: Vec<Slot> = (0..per_source)
            .map(|_| Slot {
                conn: None,
                opened: now,
                next_try: now,
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            let now = Instant::now();
            for (i, slot) in slots.iter_mut().enumerate() {
                if let Some(c) = &mut slot.conn {
                    let mut b = [0u8; 64];
                    let alive = match c.read(&mut b) {
                        Ok(0) => false,
                        Ok(_) => true,
                        Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
                    };
                    if alive {
                        continue;
                    }
                    slot.conn = None;
                    let held = now.duration_since(slot.opened) >= how.held;
                    slot.next_try = if held { now } else { now + how.retry };
                }
                if now >= slot.next_try {
                    slot.conn = connect(i);
                    slot.opened = now;
                    match slot.conn {
                        Some(_) => {
                            connects.fetch_add(1, Ordering::Relaxed);
                        }
                        None => slot.next_try = now + Duration::from_millis(10),
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    })
}
