//! Real repcached processes for the process-level replication tests, and a minimal blocking
//! text-protocol client to talk to them.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A free loopback port for a server the test starts later. Taken below the kernel's ephemeral
/// range (32768 and up here), so that no outgoing connection of a parallel test can be given the
/// same port between this check and the server's bind (a port from `bind(0)` could); spread by
/// process id and a counter so that parallel tests and test binaries do not pick the same one.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(7919);
    for _ in 0..10_000 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20_000 + (start.wrapping_add(n.wrapping_mul(17)) % 12_000) as u16;
        let free = |ip: &str| std::net::TcpListener::bind((ip, port)).is_ok();
        if free("127.0.0.1") && free("0.0.0.0") {
            return port;
        }
    }
    panic!("no free port found below the ephemeral range")
}

pub struct Proc {
    child: Child,
    pub port: u16,
    pub repl_port: u16,
    pub stderr: Arc<Mutex<Vec<String>>>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `repcached -p -1 -l 127.0.0.1 -X repl_port -x peer... extra...` and waits until it
/// reports its client port (which, with peers, is after the initial sync).
pub fn spawn(repl_port: u16, peers: &[String], extra: &[&str]) -> Proc {
    spawn_env(repl_port, peers, extra, &[])
}

/// [`spawn`] with extra environment variables (say LD_PRELOAD and FAKETIME for libfaketime).
pub fn spawn_env(repl_port: u16, peers: &[String], extra: &[&str], env: &[(&str, &str)]) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_repcached"));
    cmd.envs(env.iter().copied());
    cmd.args([
        "-p",
        "-1",
        "-U",
        "0",
        "-l",
        "127.0.0.1",
        "-X",
        &repl_port.to_string(),
    ]);
    for p in peers {
        cmd.args(["-x", p]);
    }
    let mut child = cmd
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn repcached");
    let stderr = child.stderr.take().expect("stderr");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line.clone());
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut port = None;
    while port.is_none() && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            if line.starts_with("repcached: listening on tcp") {
                port = line.rsplit(':').next().and_then(|p| p.parse::<u16>().ok());
            }
        }
    }
    let port = port.unwrap_or_else(|| panic!("no tcp port reported: {:?}", lines.lock().unwrap()));
    Proc {
        child,
        port,
        repl_port,
        stderr: lines,
    }
}

impl Proc {
    pub fn repl_addr(&self) -> String {
        format!("127.0.0.1:{}", self.repl_port)
    }

    pub fn client(&self) -> Client {
        Client::connect(self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the process to exit by itself; panics after `limit`.
    pub fn wait_exit(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("process did not exit within {limit:?}");
    }

    /// SIGKILL, no goodbye.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn stderr_contains(&self, needle: &str) -> bool {
        self.stderr
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(needle))
    }
}

pub struct Client {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Client {
    pub fn connect(port: u16) -> Client {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_nodelay(true).unwrap();
        Client {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        }
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.r.read_line(&mut l).expect("read reply");
        l.trim_end().to_string()
    }

    /// Reads one reply line (without its "\r\n").
    pub fn read_line(&mut self) -> String {
        self.line()
    }

    /// Reads reply lines until one equals `end`.
    pub fn line_until(&mut self, end: &str) {
        while self.line() != end {}
    }

    /// Writes `bytes` in one go (a pipelined batch); read the replies with `read_line`.
    pub fn send(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).unwrap();
    }

    /// Sends one command line and returns the one-line reply.
    pub fn cmd(&mut self, c: &str) -> String {
        self.w.write_all(format!("{c}\r\n").as_bytes()).unwrap();
        self.line()
    }

    pub fn store(
        &mut self,
        verb: &str,
        key: &str,
        flags: u32,
        exptime: i64,
        value: &str,
    ) -> String {
        self.w
            .write_all(
                format!(
                    "{verb} {key} {flags} {exptime} {}\r\n{value}\r\n",
                    value.len()
                )
                .as_bytes(),
            )
            .unwrap();
        self.line()
    }

    pub fn set(&mut self, key: &str, value: &str) -> String {
        self.store("set", key, 0, 0, value)
    }

    /// `gets key`: (value, flags, cas).
    pub fn gets(&mut self, key: &str) -> Option<(String, u32, u64)> {
        self.w
            .write_all(format!("gets {key}\r\n").as_bytes())
            .unwrap();
        let head = self.line();
        if head == "END" {
            return None;
        }
        let parts: Vec<&str> = head.split(' ').collect();
        assert_eq!(parts[0], "VALUE", "unexpected reply {head}");
        let flags = parts[2].parse().unwrap();
        let len: usize = parts[3].parse().unwrap();
        let cas = parts[4].parse().unwrap();
        let mut data = vec![0u8; len + 2];
        self.r.read_exact(&mut data).unwrap();
        data.truncate(len);
        assert_eq!(self.line(), "END");
        Some((String::from_utf8_lossy(&data).into_owned(), flags, cas))
    }

    pub fn get(&mut self, key: &str) -> Option<String> {
        self.gets(key).map(|(v, _, _)| v)
    }

    pub fn stats(&mut self, group: &str) -> HashMap<String, String> {
        let c = if group.is_empty() {
            "stats".to_string()
        } else {
            format!("stats {group}")
        };
        self.w.write_all(format!("{c}\r\n").as_bytes()).unwrap();
        let mut out = HashMap::new();
        loop {
            let l = self.line();
            if l == "END" || l.is_empty() {
                return out;
            }
            let mut it = l.splitn(3, ' ');
            let (_, k, v) = (it.next(), it.next().unwrap_or(""), it.next().unwrap_or(""));
            out.insert(k.to_string(), v.to_string());
        }
    }

    pub fn stat_u64(&mut self, group: &str, name: &str) -> u64 {
        self.stats(group)
            .get(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

/// Whether every peer row of the node's `stats replication` says `synced` (and there is one).
pub fn synced(p: &Proc) -> bool {
    let s = p.client().stats("replication");
    let n = s.keys().filter(|k| k.ends_with(":state")).count();
    n > 0
        && s.iter()
            .filter(|(k, v)| k.ends_with(":state") && *v == "synced")
            .count()
            == n
}

/// Polls `f` until it holds or `secs` pass.
pub fn wait_for(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Every key of `keys` with its value and flags, as the node at `port` returns them.
pub fn contents(c: &mut Client, keys: &[String]) -> Vec<Option<(String, u32)>> {
    keys.iter()
        .map(|k| c.gets(k).map(|(v, f, _)| (v, f)))
        .collect()
}
