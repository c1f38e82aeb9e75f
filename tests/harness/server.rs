//! Real server processes: repcached (alone with `Server::repcached`, or with replication with
//! [`spawn`] and [`pair`]) and the reference memcached, killed when dropped; a free port; a
//! signal; polling with a deadline. Everything polls with a deadline; nothing sleeps a fixed
//! time to "let it start".

use super::{Client, DEADLINE};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// The reference server the expected bytes come from.
pub const MEMCACHED: &str = "/usr/bin/memcached";

/// How long a repcached process may take to print its listening line (with peers that is after
/// the initial sync).
const START: Duration = Duration::from_secs(40);

/// A server process killed when dropped.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    /// `addr`'s port.
    pub port: u16,
    /// The replication port given with -X (0: none).
    pub repl_port: u16,
    /// The UDP port the server reported, when it serves UDP.
    pub udp_port: Option<u16>,
    /// Every stderr line the server printed so far.
    pub stderr: Arc<Mutex<Vec<String>>>,
    /// The stderr lines not yet taken by [`Server::stderr_lines`].
    new_lines: Mutex<mpsc::Receiver<String>>,
    pub name: String,
}

/// The name the process-level replication tests use for a server.
pub type Proc = Server;

impl Server {
    /// Starts the repcached binary built by cargo with `-p -1 -U 0 -l 127.0.0.1 -X 0` plus
    /// `extra`, learns its port from its `listening on tcp` line, and waits until it accepts a
    /// connection (one connection that closes without a word).
    pub fn repcached(extra: &[&str]) -> Server {
        // -X 0: no replication listener, so parallel tests never fight over port 11212.
        let server = Server::launch(
            &["-p", "-1", "-U", "0", "-l", "127.0.0.1", "-X", "0"],
            extra,
        );
        server.wait_ready();
        server
    }

    /// Starts the repcached binary with `base` and then `extra` arguments and returns once it
    /// printed its `listening on tcp` line (and its `listening on udp` line when `extra` asks
    /// for UDP with `-U`).
    pub fn launch(base: &[&str], extra: &[&str]) -> Server {
        Server::try_launch(base, extra).unwrap_or_else(|err| panic!("{err}"))
    }

    /// [`Server::launch`], or the stderr lines of a process that exited without serving.
    pub fn try_launch(base: &[&str], extra: &[&str]) -> Result<Server, String> {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_repcached"));
        cmd.args(base).args(extra);
        let wants_udp = extra.contains(&"-U");
        Server::wait_listening(cmd, 0, wants_udp)
    }

    /// Waits for the listening lines; Err(stderr) when the process exits first. Panics when it
    /// neither serves nor exits in time.
    fn wait_listening(cmd: Command, repl_port: u16, wants_udp: bool) -> Result<Server, String> {
        let (mut child, stderr, lines) = spawn_logged(cmd);
        let deadline = Instant::now() + START;
        let port_of = |l: &str| {
            l.rsplit(':')
                .next()
                .and_then(|p| p.trim().parse::<u16>().ok())
        };
        let (mut addr, mut udp_port) = (None, None);
        while addr.is_none() || (wants_udp && udp_port.is_none()) {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(a) = line
                        .strip_prefix("repcached: listening on tcp ")
                        .and_then(|a| a.trim().parse::<SocketAddr>().ok())
                    {
                        addr = Some(a);
                    } else if line.starts_with("repcached: listening on udp") {
                        udp_port = port_of(&line);
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = child.wait().ok();
                    return Err(format!(
                        "repcached exited ({status:?}) before it served; stderr:\n{}",
                        stderr.lock().unwrap().join("\n")
                    ));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "repcached neither served nor exited; stderr:\n{}",
                        stderr.lock().unwrap().join("\n")
                    );
                }
            }
        }
        let addr = addr.expect("tcp address");
        Ok(Server {
            child,
            addr,
            port: addr.port(),
            repl_port,
            udp_port,
            stderr,
            new_lines: Mutex::new(lines),
            name: "repcached".into(),
        })
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
            if is_root() {
                cmd.args(["-u", "root"]);
            }
            let (child, stderr, lines) = spawn_logged(cmd);
            let mut server = Server {
                child,
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                port,
                repl_port: 0,
                udp_port: None,
                stderr,
                new_lines: Mutex::new(lines),
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

    /// The exit status once the process has exited.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// True while the process runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The stderr lines printed since the last call (lines read while waiting for the
    /// listening line are not among them).
    pub fn stderr_lines(&self) -> Vec<String> {
        self.new_lines.lock().unwrap().try_iter().collect()
    }

    /// Whether any stderr line so far contains `needle`.
    pub fn stderr_contains(&self, needle: &str) -> bool {
        self.stderr
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(needle))
    }

    /// The replication address, `127.0.0.1:<repl_port>`.
    pub fn repl_addr(&self) -> String {
        format!("127.0.0.1:{}", self.repl_port)
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
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns `cmd` with stderr piped to a thread that drains it for the whole life of the process
/// (so that a chatty server never blocks on a full pipe), keeping every line and sending each
/// on the returned channel.
fn spawn_logged(mut cmd: Command) -> (Child, Arc<Mutex<Vec<String>>>, mpsc::Receiver<String>) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let stderr = child.stderr.take().expect("stderr is piped");
    let all = Arc::new(Mutex::new(Vec::new()));
    let sink = all.clone();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line.clone());
            let _ = tx.send(line);
        }
    });
    (child, all, rx)
}

/// What a run of the binary printed, and its exit code.
pub struct Exit {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs repcached with `args` and waits at most [`DEADLINE`] for it to exit on its own; a run
/// that does not exit is killed and fails the test (it would mean a bad command line started a
/// server).
pub fn run_to_exit(args: &[&str]) -> Exit {
    use std::io::Read;
    let mut child = Command::new(env!("CARGO_BIN_EXE_repcached"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn repcached");
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("repcached {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let (mut stdout, mut stderr) = (String::new(), String::new());
    let _ = child.stdout.take().unwrap().read_to_string(&mut stdout);
    let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
    Exit {
        code: status.code(),
        stdout,
        stderr,
    }
}

/// Starts `repcached -p -1 -U 0 -l 127.0.0.1 -X repl_port -x peer... extra...` and waits until
/// it reports its client port (which, with peers, is after the initial sync).
pub fn spawn(repl_port: u16, peers: &[String], extra: &[&str]) -> Server {
    spawn_env(repl_port, peers, extra, &[])
}

/// [`spawn`] with extra environment variables (say LD_PRELOAD and FAKETIME for libfaketime).
pub fn spawn_env(repl_port: u16, peers: &[String], extra: &[&str], env: &[(&str, &str)]) -> Server {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_repcached"));
    cmd.envs(env.iter().copied());
    cmd.args(["-p", "-1", "-U", "0", "-l", "127.0.0.1", "-X"])
        .arg(repl_port.to_string());
    for p in peers {
        cmd.args(["-x", p]);
    }
    cmd.args(extra);
    Server::wait_listening(cmd, repl_port, false).unwrap_or_else(|err| panic!("{err}"))
}

/// How the two nodes of a [`pair`] name each other.
#[derive(Clone, Copy)]
pub enum Link {
    /// Each node names the other with -x.
    Mutual,
    /// B only listens; A names B.
    AToB,
}

/// Two nodes `(A, B)` linked as `link` says, both with `extra`, synced within `secs`.
pub fn pair(link: Link, extra: &[&str], secs: u64) -> (Server, Server) {
    let (a, b) = match link {
        Link::Mutual => {
            let (pa, pb) = (free_port(), free_port());
            let a = spawn(pa, &[format!("127.0.0.1:{pb}")], extra);
            let b = spawn(pb, &[format!("127.0.0.1:{pa}")], extra);
            (a, b)
        }
        Link::AToB => {
            let b = spawn(free_port(), &[], extra);
            let a = spawn(free_port(), &[b.repl_addr()], extra);
            (a, b)
        }
    };
    assert!(
        wait_for(secs, || synced(&a) && synced(&b)),
        "pair never synced"
    );
    (a, b)
}

/// A pair whose only link runs through a [`super::Proxy`] the test can cut or freeze: B listens,
/// A dials B through the proxy.
pub struct ProxiedPair {
    /// The runtime the proxy runs on.
    pub rt: tokio::runtime::Runtime,
    pub proxy: super::Proxy,
    pub a: Server,
    pub b: Server,
}

/// Starts a [`ProxiedPair`], both nodes with `extra`, synced within 10 s.
pub fn proxied_pair(extra: &[&str]) -> ProxiedPair {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let pb = free_port();
    let b = spawn(pb, &[], extra);
    let proxy = rt.block_on(super::Proxy::start(
        format!("127.0.0.1:{pb}").parse().unwrap(),
    ));
    let a = spawn(free_port(), &[proxy.addr.to_string()], extra);
    assert!(
        wait_for(10, || synced(&a) && synced(&b)),
        "pair never synced"
    );
    ProxiedPair { rt, proxy, a, b }
}

/// Whether every peer row of the node's `stats replication` says `synced` (and there is one).
pub fn synced(p: &Server) -> bool {
    let s = p.client().stats("replication");
    let n = s.keys().filter(|k| k.ends_with(":state")).count();
    n > 0
        && s.iter()
            .filter(|(k, v)| k.ends_with(":state") && *v == "synced")
            .count()
            == n
}

/// Runs `scripts/wait-synced` (the failover barrier) against the node on `port`:
/// (passed, its stderr, how long it took).
pub fn wait_synced(port: u16, timeout_s: u32) -> (bool, String, Duration) {
    let t0 = Instant::now();
    let out = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/wait-synced"))
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .args(["-t", &timeout_s.to_string()])
        .output()
        .expect("run scripts/wait-synced");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        t0.elapsed(),
    )
}

/// Polls `f` until it holds or `secs` pass; returns whether it held.
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

/// Every key of `keys` with its value and flags, as the node behind `c` returns them.
pub fn contents(c: &mut Client, keys: &[String]) -> Vec<Option<(String, u32)>> {
    keys.iter()
        .map(|k| c.gets(k).map(|(v, f, _)| (v, f)))
        .collect()
}

/// A port that was free a moment ago, taken below the kernel's ephemeral range (32768 and up
/// here) so that no outgoing connection of a parallel test can be given it before the server
/// binds it (a port from `bind(0)` could); spread by process id and a counter so that parallel
/// tests and test binaries do not pick the same one.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(7919);
    for _ in 0..10_000 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20_000 + (start.wrapping_add(n.wrapping_mul(17)) % 12_000) as u16;
        let free = |ip: &str| TcpListener::bind((ip, port)).is_ok();
        if free("127.0.0.1") && free("0.0.0.0") {
            return port;
        }
    }
    panic!("no free port found below the ephemeral range")
}

/// Sends signal `sig` (libc::SIGHUP, SIGTERM, ...) to process `pid`, which must exist.
pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) has no memory effects; the pid is a child this test spawned and still
    // holds.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::kill(pid as i32, sig) };
    assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
}

/// Whether the tests run as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions, touches no memory and cannot fail.
    #[allow(unsafe_code)]
    let euid = unsafe { libc::geteuid() };
    euid == 0
}

/// A private temporary directory for one test's files: `repcached-<name>-<pid>`.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("repcached-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
