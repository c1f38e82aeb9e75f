//! tokio listeners, one task per connection, stats and shutdown.
//!
//! [`start`] binds everything and returns a handle (tests bind port 0 and read the addresses
//! from it); [`run`] is the binary's entry point: runtime, signals, graceful stop. With -Z the
//! TCP listeners speak TLS (see [`tls`]).
//!
//! A graceful stop ([`ServerHandle::stop`]) goes in the order that loses no acknowledged
//! write: close the listeners, make every connection stop reading requests and write the
//! replies of what it executed, then drain replication to the peers (which acknowledge it),
//! then end the worker threads.

pub mod commands;
pub mod connection;
pub mod meta_exec;
pub mod stats;
mod stats_report;
pub mod tls;
mod udp;
mod workers;

use crate::config::Config;
use crate::protocol::Limits;
use crate::replication::Replicator;
use crate::store::{Store, StoreConfig};
use parking_lot::Mutex;
use stats::Stats;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket, UdpSocket};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// How long a stopping server waits for its clients to take the replies of the requests it
/// executed (a client that does not read must not hold the shutdown).
const CLIENT_DRAIN: Duration = Duration::from_secs(2);

/// Why the server could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("failed to listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
    #[error("replication: {0}")]
    Replication(String),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// What `stats conns` shows for one client connection, and how to wake it.
pub struct ConnInfo {
    pub peer: String,
    pub listen: String,
    pub last_cmd: AtomicU32,
    /// Waiting for the rest of a data block (memcached's conn_nread): never idle-kicked.
    pub nread: AtomicBool,
    /// Wakes the connection's task while it waits for input, to make it look at the server's
    /// stop flag and its idle time. Connections run on worker loops without timers, so the
    /// main runtime does the timing and only pokes them.
    pub kick: Notify,
}

impl ConnInfo {
    pub fn new(peer: String, listen: String) -> ConnInfo {
        ConnInfo {
            peer,
            listen,
            last_cmd: AtomicU32::new(crate::store::unix_now()),
            nread: AtomicBool::new(false),
            kick: Notify::new(),
        }
    }
}

/// A listening socket, for `stats conns`.
struct Listener {
    fd: i32,
    addr: String,
    udp: bool,
}

/// State shared by every connection of one server.
pub struct Shared {
    pub store: Arc<Store>,
    pub stats: Stats,
    pub config: Config,
    pub limits: Limits,
    pub started_unix: u32,
    /// Replies a connection may queue unwritten (`-o read_buf_mem_limit`); None: no limit.
    pub reply_slots: Option<usize>,
    pub verbosity: AtomicU32,
    pub tcp_port: AtomicU16,
    pub udp_port: AtomicU16,
    /// Open client connections by id (the socket's fd, as memcached reports them).
    pub conns: Mutex<HashMap<i32, Arc<ConnInfo>>>,
    listeners: Mutex<Vec<Listener>>,
    /// Client TLS, with -Z.
    pub tls: Option<Arc<tls::ClientTls>>,
    replicator: OnceLock<Replicator>,
    shutdown: Notify,
    /// Set once the server stops: connections read no more requests.
    stopping: AtomicBool,
}

impl Shared {
    fn new(config: Config, tls: Option<tls::ClientTls>) -> Shared {
        let node_id = random_node_id();
        let store = Store::new(StoreConfig {
            mem_limit: config.memory_limit,
            item_size_max: config.item_size_max,
            evict: !config.no_evict,
            cas_enabled: !config.disable_cas,
            shards: (config.threads * 16).clamp(16, 1024),
            node_id,
            ..StoreConfig::default()
        });
        Shared {
            store: Arc::new(store),
            stats: Stats::default(),
            limits: Limits {
                item_size_max: config.item_size_max,
                ..Limits::default()
            },
            started_unix: crate::store::unix_now(),
            reply_slots: connection::reply_slots(config.read_buf_mem_limit, config.threads),
            verbosity: AtomicU32::new(config.verbosity as u32),
            tcp_port: AtomicU16::new(0),
            udp_port: AtomicU16::new(0),
            conns: Mutex::new(HashMap::new()),
            listeners: Mutex::new(Vec::new()),
            tls: tls.map(Arc::new),
            replicator: OnceLock::new(),
            shutdown: Notify::new(),
            stopping: AtomicBool::new(false),
            config,
        }
    }

    pub fn replicator(&self) -> Option<&Replicator> {
        self.replicator.get()
    }

    /// Asks the server to stop (the `shutdown` command).
    pub fn request_shutdown(&self) {
        self.shutdown.notify_one();
    }

    /// Whether the server is stopping: a connection executes no further request.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Tells every connection to stop reading requests. A connection registered after this
    /// sees the flag before it executes anything; one registered before is woken here.
    fn stop_clients(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        for info in self.conns.lock().values() {
            info.kick.notify_one();
        }
    }
}

fn random_node_id() -> u32 {
    let mut b = [0u8; 4];
    let _ = getrandom::getrandom(&mut b);
    u32::from_le_bytes(b).max(1)
}

/// A running server: its bound addresses and a way to stop it.
pub struct ServerHandle {
    pub shared: Arc<Shared>,
    pub tcp_addrs: Vec<SocketAddr>,
    pub udp_addrs: Vec<SocketAddr>,
    workers: Arc<workers::Workers>,
    /// Acceptors, UDP servers and timers on this runtime; they own the listening sockets.
    tasks: Vec<JoinHandle<()>>,
}

impl ServerHandle {
    /// Resolves when a client sends `shutdown` (with -A).
    pub async fn shutdown_requested(&self) {
        self.shared.shutdown.notified().await
    }

    /// Stops gracefully, in the order that loses no acknowledged write: no new connections or
    /// datagrams; connections stop reading requests and write the replies of what they
    /// executed (bounded by [`CLIENT_DRAIN`]); replication drains every write to the peers and
    /// waits for their acknowledgement (bounded); the worker threads end.
    pub async fn stop(self) {
        let ServerHandle {
            shared,
            workers,
            tasks,
            ..
        } = self;
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
        shared.stop_clients();
        let deadline = tokio::time::Instant::now() + CLIENT_DRAIN;
        // Connections leave the table as their tasks end; the poll is on the main runtime
        // because worker loops have no timers.
        while !shared.conns.lock().is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let stuck = shared.conns.lock().len();
        if stuck > 0 {
            // They are blocked writing to clients that do not read; they execute nothing more.
            tracing::info!("{stuck} client connections still writing at shutdown; closing them");
        }
        if let Some(repl) = shared.replicator.get() {
            repl.shutdown().await;
        }
        workers.shutdown().await;
    }
}

fn listen_addrs(config: &Config) -> Vec<String> {
    if config.listen.is_empty() {
        vec!["0.0.0.0".to_string()]
    } else {
        config.listen.clone()
    }
}

/// Splits `HOST`, `HOST:PORT`, `[V6]` or `[V6]:PORT` (memcached's -l accepts a port too).
fn split_host_port(spec: &str) -> (&str, Option<u16>) {
    if let Some(rest) = spec.strip_prefix('[') {
        if let Some((host, tail)) = rest.split_once(']') {
            return (host, tail.strip_prefix(':').and_then(|p| p.parse().ok()));
        }
    }
    match spec.split_once(':') {
        Some((host, port)) if !port.contains(':') => (host, port.parse().ok()),
        _ => (spec, None),
    }
}

/// Resolves a listen spec; a port inside the spec wins over `default_port`.
fn socket_addr(spec: &str, default_port: u16) -> Result<SocketAddr, ServerError> {
    use std::net::ToSocketAddrs;
    let (host, port) = split_host_port(spec);
    let port = port.unwrap_or(default_port);
    (host, port)
        .to_socket_addrs()
        .map_err(|e| ServerError::Bind {
            addr: format!("{host}:{port}"),
            source: e,
        })?
        .next()
        .ok_or_else(|| ServerError::Config(format!("cannot resolve listen address {host}")))
}

/// Whether replication may run without a secret: every address involved is loopback
/// (127.0.0.0/8 or ::1, with or without a port or brackets).
fn replication_is_local(config: &Config) -> bool {
    use std::net::ToSocketAddrs;
    let resolves_to_loopback = |host: &str, port: u16| {
        (host, port)
            .to_socket_addrs()
            .map(|mut addrs| addrs.all(|a| a.ip().is_loopback()))
            .unwrap_or(false)
    };
    let listen = config
        .repl_listen
        .clone()
        .or_else(|| config.listen.first().cloned())
        .unwrap_or_else(|| "0.0.0.0".into());
    let (listen_host, _) = split_host_port(&listen);
    let listener_local = config.repl_port == 0 || resolves_to_loopback(listen_host, 0);
    listener_local
        && config.peers.iter().all(|p| {
            crate::replication::parse_peer(p)
                .map(|(host, port)| resolves_to_loopback(&host, port))
                .unwrap_or(false)
        })
}

/// Binds every listener, starts replication and the background sweeper, and serves until the
/// runtime is dropped. Must be called inside a tokio runtime.
pub async fn start(config: Config) -> Result<ServerHandle, ServerError> {
    let tls = tls::ClientTls::load(&config.tls)?;
    start_with_tls(config, tls).await
}

/// [`start`] with the TLS files already read (the binary reads them before dropping
/// privileges).
pub async fn start_with_tls(
    config: Config,
    tls: Option<tls::ClientTls>,
) -> Result<ServerHandle, ServerError> {
    let mut config = config;
    let secured =
        config.repl_secret_file.is_some() || config.repl_tls_cert.is_some() || config.repl_insecure;
    if !secured
        && !replication_is_local(&config)
        && config.peers.is_empty()
        && config.repl_port != 0
    {
        // Nobody configured replication: don't expose an unauthenticated listener by default.
        tracing::warn!(
            "replication listener disabled: it would listen off loopback without \
             --repl-secret-file (give a secret, --repl-insecure, or -X 0 to silence this)"
        );
        config.repl_port = 0;
    }
    crate::store::start_coarse_clock();
    let shared = Arc::new(Shared::new(config, tls));
    let config = &shared.config;

    if !config.peers.is_empty() || config.repl_port != 0 {
        let repl = Replicator::start(config, shared.store.clone())
            .await
            .map_err(|e| ServerError::Replication(e.to_string()))?;
        repl.wait_initial_sync(config.repl_sync_wait).await;
        let _ = shared.replicator.set(repl);
    }

    let workers = Arc::new(workers::Workers::spawn(config.threads, &shared)?);
    let mut tcp_addrs = Vec::new();
    let mut udp_addrs = Vec::new();
    let mut tasks = Vec::new();
    for host in listen_addrs(config) {
        let addr = socket_addr(&host, config.port)?;
        let listener = bind_tcp(addr, config.backlog)?;
        let local = listener.local_addr()?;
        eprintln!("repcached: listening on tcp {local}");
        shared
            .tcp_port
            .store(local.port(), std::sync::atomic::Ordering::Relaxed);
        tcp_addrs.push(local);
        shared.listeners.lock().push(Listener {
            fd: listener.as_raw_fd(),
            addr: format!("tcp:{local}"),
            udp: false,
        });
        tasks.push(tokio::spawn(connection::accept_loop(
            shared.clone(),
            listener,
            workers.clone(),
        )));
        if config.udp_port != 0 {
            let udp_addr = socket_addr(&host, config.udp_port)?;
            let sock = UdpSocket::bind(udp_addr)
                .await
                .map_err(|e| ServerError::Bind {
                    addr: udp_addr.to_string(),
                    source: e,
                })?;
            let local = sock.local_addr()?;
            eprintln!("repcached: listening on udp {local}");
            shared
                .udp_port
                .store(local.port(), std::sync::atomic::Ordering::Relaxed);
            udp_addrs.push(local);
            shared.listeners.lock().push(Listener {
                fd: sock.as_raw_fd(),
                addr: format!("udp:{local}"),
                udp: true,
            });
            tasks.push(tokio::spawn(udp::serve(shared.clone(), sock)));
        }
    }
    tasks.push(tokio::spawn(sweeper(shared.clone())));
    if config.idle_timeout > 0 {
        tasks.push(tokio::spawn(idle_checker(shared.clone())));
    }
    Ok(ServerHandle {
        shared,
        tcp_addrs,
        udp_addrs,
        workers,
        tasks,
    })
}

fn bind_tcp(addr: SocketAddr, backlog: u32) -> Result<TcpListener, ServerError> {
    let err = |source| ServerError::Bind {
        addr: addr.to_string(),
        source,
    };
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(err)?;
    socket.set_reuseaddr(true).map_err(err)?;
    socket.bind(addr).map_err(err)?;
    socket.listen(backlog.max(1)).map_err(err)
}

/// Reclaims expired items and old tombstones in the background, a bounded slice per tick.
async fn sweeper(shared: Arc<Shared>) {
    let mut cursors = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        shared.store.sweep(&mut cursors, 2048);
    }
}

/// `-o idle_timeout`: once a second, wakes the connections idle for longer than the timeout
/// (memcached's conn_timeout thread does the same); each decides and closes itself, so that
/// a request arriving meanwhile wins. Nothing of this runs on the workers' hot path.
async fn idle_checker(shared: Arc<Shared>) {
    let timeout = shared.config.idle_timeout;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let now = crate::store::unix_now();
        for info in shared.conns.lock().values() {
            if connection::is_idle(info, now, timeout) {
                info.kick.notify_one();
            }
        }
    }
}

/// The binary's entry point: runtimes and `config.threads` connection workers, serve until SIGTERM,
/// SIGINT or `shutdown`, then stop gracefully. `tls` is what [`tls::ClientTls::load`] read for
/// `config.tls`.
pub fn run(config: Config, tls: Option<tls::ClientTls>) -> Result<(), ServerError> {
    run_notify(config, tls, || {}, None)
}

/// What SIGHUP does, provided by the binary (which knows the command line and the logger):
/// read the configuration again, and set the log level.
pub struct Reload {
    pub read_config: Box<dyn Fn() -> Result<Config, String> + Send>,
    pub set_verbosity: Box<dyn Fn(u8) + Send>,
}

/// SIGHUP: applies the -x peers and -v of a freshly read configuration; a configuration that
/// no longer parses leaves everything as it is.
async fn reload(shared: &Shared, reload: Option<&Reload>) {
    let Some(reload) = reload else {
        tracing::info!("SIGHUP: nothing to reload");
        return;
    };
    let config = match (reload.read_config)() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(
                "SIGHUP: the configuration does not parse, keeping the running one: {e}"
            );
            return;
        }
    };
    (reload.set_verbosity)(config.verbosity);
    match shared.replicator() {
        Some(repl) => match repl.set_peers(&config.peers).await {
            Ok(c) => tracing::info!(
                "SIGHUP: configuration reloaded: peers added {:?}, removed {:?}; other options \
                 apply at the next restart",
                c.added,
                c.removed
            ),
            Err(e) => tracing::warn!("SIGHUP: peers unchanged: {e}"),
        },
        None if !config.peers.is_empty() => tracing::warn!(
            "SIGHUP: replication is not running in this process (started without peers and \
             with -X 0): peers need a restart"
        ),
        None => tracing::info!("SIGHUP: configuration reloaded"),
    }
}

/// [`run`], calling `ready` once every listener is bound and the server serves (the parent of
/// a daemon waits for that); SIGHUP applies `reload`.
pub fn run_notify(
    config: Config,
    tls: Option<tls::ClientTls>,
    ready: impl FnOnce(),
    reloader: Option<Reload>,
) -> Result<(), ServerError> {
    // Client connections run on their own -t worker threads (see workers.rs); this runtime
    // only accepts, replicates, sweeps and serves UDP.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads((config.threads / 2).max(1))
        .enable_all()
        .build()?;
    let result = runtime.block_on(async move {
        // Installed before anything is bound, so a SIGTERM right after the listening lines
        // still stops the server gracefully instead of killing it.
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
        // Handled (not the default: exit) from the start; before the server serves it has
        // nothing to apply and is ignored.
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        // The initial sync wait inside `start` can last --repl-sync-wait: a signal ends it
        // (dropping the half-started server closes its sockets and replication tasks).
        let starting = start_with_tls(config, tls);
        tokio::pin!(starting);
        let handle = loop {
            tokio::select! {
                handle = &mut starting => break handle?,
                _ = term.recv() => {
                    tracing::info!("SIGTERM while starting: stopping");
                    return Ok(());
                }
                _ = int.recv() => {
                    tracing::info!("SIGINT while starting: stopping");
                    return Ok(());
                }
                _ = hup.recv() => tracing::info!("SIGHUP while starting: ignored"),
            }
        };
        ready();
        loop {
            tokio::select! {
                _ = term.recv() => {
                    tracing::info!("SIGTERM: shutting down");
                    break;
                }
                _ = int.recv() => {
                    tracing::info!("SIGINT: shutting down");
                    break;
                }
                _ = handle.shutdown_requested() => {
                    tracing::info!("shutdown command: shutting down");
                    break;
                }
                _ = hup.recv() => reload(&handle.shared, reloader.as_ref()).await,
            }
        }
        handle.stop().await;
        Ok::<(), ServerError>(())
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}
