//! Shared helpers for the black-box tests: start a real server process on a free loopback port
//! (repcached, or the reference memcached), talk to it over TCP, and check exact reply bytes with a
//! deadline. Everything polls with a deadline; nothing sleeps a fixed time to "let it start".

#![allow(dead_code)]

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a server may take to start, and a reply to arrive.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// The reference server the expected bytes come from.
pub const MEMCACHED: &str = "/usr/bin/memcached";

/// A server process killed when dropped.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    /// Every stderr line the server printed so far, for failure messages.
    stderr: mpsc::Receiver<String>,
    pub name: String,
}

impl Server {
    /// Starts the repcached binary built by cargo with `-p -1 -U 0 -l 127.0.0.1 -X 0` plus `extra`,
    /// and learns its port from the line `repcached: listening on tcp 127.0.0.1:PORT`.
    pub fn repcached(extra: &[&str]) -> Server {
        let bin = env!("CARGO_BIN_EXE_repcached");
        let mut cmd = Command::new(bin);
        // -X 0: no replication listener, so parallel tests never fight over port 11212.
        cmd.args(["-p", "-1", "-U", "0", "-l", "127.0.0.1", "-X", "0"])
            .args(extra);
        let (child, lines) = spawn(cmd);
        let deadline = Instant::now() + DEADLINE;
        let mut seen = Vec::new();
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = line
                        .strip_prefix("repcached: listening on tcp ")
                        .and_then(|a| a.trim().parse::<SocketAddr>().ok())
                    {
                        break addr;
                    }
                    seen.push(line);
                }
                Err(_) => {
                    let mut child = child;
                    let _ = child.kill();
                    let status = child.wait().ok();
                    panic!(
                        "{bin} never printed its tcp listening line (exit: {status:?}); stderr:\n{}",
                        seen.join("\n")
                    );
                }
            }
        };
        let server = Server {
            child,
            addr,
            stderr: lines,
            name: "repcached".into(),
        };
        server.wait_ready();
        server
    }

    /// Starts /usr/bin/memcached on a free port, or returns None when it is not installed.
    /// Its LRU maintainer and crawler are off: they make incr/decr padding nondeterministic
    /// (see tests/interop/test_differential.py).
    pub fn memcached(extra: &[&str]) -> Option<Server> {
        if !Path::new(MEMCACHED).exists() {
            return None;
        }
        // A port picked here may be taken by someone else before memcached binds it: retry.
        for _ in 0..5 {
            let port = free_port();
            let mut cmd = Command::new(MEMCACHED);
            cmd.args(["-U", "0", "-l", "127.0.0.1", "-p", &port.to_string()])
                .args(["-o", "no_lru_crawler,no_lru_maintainer"])
                .args(extra);
            // SAFETY: geteuid has no preconditions, touches no memory and cannot fail.
            #[allow(unsafe_code)]
            let root = unsafe { libc::geteuid() } == 0;
            if root {
                cmd.args(["-u", "root"]);
            }
            let (child, lines) = spawn(cmd);
            let mut server = Server {
                child,
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                stderr: lines,
                name: "memcached".into(),
            };
            if server.try_ready() {
                return Some(server);
            }
            let _ = server.child.kill();
        }
        panic!("memcached did not start on any of 5 free ports");
    }

    fn try_ready(&mut self) -> bool {
        let deadline = Instant::now() + DEADLINE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if let Ok(mut c) = Client::try_connect(self.addr) {
                // With -Y memcached answers everything with this until a client logs in.
                let reply = if c.send(b"version\r\n").is_ok() {
                    c.read_some()
                } else {
                    Vec::new()
                };
                if reply.starts_with(b"VERSION ") || reply == b"CLIENT_ERROR unauthenticated\r\n" {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if TcpStream::connect(self.addr).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} at {} does not accept connections",
                self.name,
                self.addr
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    /// The process id (for signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True while the process runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The stderr lines printed since the last call.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.try_iter().collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns `cmd` with stderr piped into a channel of lines, drained by a thread for the whole life
/// of the process so that a chatty server never blocks on a full pipe.
fn spawn(mut cmd: Command) -> (Child, mpsc::Receiver<String>) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let stderr = child.stderr.take().expect("stderr is piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// A port that was free a moment ago, taken below the kernel's ephemeral range (32768 and up
/// here) so that no outgoing connection of a parallel test can be given it before the server
/// binds it; spread by process id and a counter so parallel tests do not pick the same one.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(6151);
    for _ in 0..10_000 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20_000 + (start.wrapping_add(n.wrapping_mul(13)) % 12_000) as u16;
        let free = |ip: &str| TcpListener::bind((ip, port)).is_ok();
        if free("127.0.0.1") && free("0.0.0.0") {
            return port;
        }
    }
    panic!("no free port found below the ephemeral range")
}

/// One client connection with deadline-bounded reads.
pub struct Client {
    stream: TcpStream,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        Client::try_connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"))
    }

    fn try_connect(addr: SocketAddr) -> std::io::Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, DEADLINE)?;
        stream.set_nodelay(true)?;
        Ok(Client { stream })
    }

    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Whatever arrives within a short while (used for the start-up probe only).
    fn read_some(&mut self) -> Vec<u8> {
        let _ = self.stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut buf = [0u8; 1024];
        match self.stream.read(&mut buf) {
            Ok(n) => buf[..n].to_vec(),
            Err(_) => Vec::new(),
        }
    }

    /// Reads exactly `n` bytes, or fewer if the peer closes or the deadline passes.
    pub fn read_n(&mut self, n: usize) -> Vec<u8> {
        let deadline = Instant::now() + DEADLINE;
        let mut out = vec![0u8; n];
        let mut got = 0;
        while got < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let _ = self.stream.set_read_timeout(Some(left));
            match self.stream.read(&mut out[got..]) {
                Ok(0) => break,
                Ok(k) => got += k,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        out.truncate(got);
        out
    }

    /// Reads one line including its `\r\n` (bounded by the deadline).
    pub fn read_line(&mut self) -> Vec<u8> {
        let mut line = Vec::new();
        while !line.ends_with(b"\r\n") {
            let b = self.read_n(1);
            if b.is_empty() {
                break;
            }
            line.extend_from_slice(&b);
        }
        line
    }

    /// Reads exactly the expected bytes and panics, showing both, if they differ.
    pub fn expect(&mut self, expected: &[u8], context: &str) {
        let got = self.read_n(expected.len());
        assert!(
            got == expected,
            "{context}: expected {:?}\n got {:?}",
            String::from_utf8_lossy(expected),
            String::from_utf8_lossy(&got)
        );
    }

    /// True when the peer closes the connection (EOF or reset) before the deadline and sends
    /// nothing more.
    pub fn closed(&mut self) -> Result<(), Vec<u8>> {
        let deadline = Instant::now() + DEADLINE;
        let mut extra = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                extra.extend_from_slice(b"<still open>");
                return Err(extra);
            }
            let _ = self.stream.set_read_timeout(Some(left));
            match self.stream.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => extra.extend_from_slice(&buf[..k]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
                Err(_) => {}
            }
        }
        if extra.is_empty() {
            Ok(())
        } else {
            Err(extra)
        }
    }
}
