//! The server: binds the listeners, starts the -t connection workers (each a thread with its
//! own single-threaded event loop, see workers.rs), replication, the sweeper and the idle
//! check on the main runtime, and stops them in order.
//!
//! Module graph (each imports only modules listed after it): mod.rs -> acceptor -> workers ->
//! connection -> pipeline -> exec/text -> exec/{meta,stats} -> shared -> auth_guard -> session,
//! stats, tls; udp -> pipeline. Everything below depends on `protocol` and `store`, never the
//! reverse.
//!
//! [`start`] binds everything and returns a handle (tests bind port 0 and read the addresses
//! from it); [`run`] is the binary's entry point: runtime, signals, graceful stop. With -Z the
//! TCP listeners speak TLS (see [`tls`]).
//!
//! A graceful stop ([`ServerHandle::stop`]) goes in the order that loses no acknowledged
//! write: close the listeners, make every connection stop reading requests and write the
//! replies of what it executed, then drain replication to the peers (which acknowledge it),
//! then end the worker threads.

mod acceptor;
pub mod auth_guard;
pub mod connection;
pub mod counters;
pub mod detail;
pub mod exec;
pub mod metrics;
pub mod pipeline;
pub mod session;
pub mod shared;
pub mod stats;
pub mod tls;
pub mod tunables;
mod udp;
mod workers;

use shared::Listener;
pub use shared::{ConnInfo, ServerState};

use crate::config::Config;
use crate::replication::Replicator;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket, UdpSocket};
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

/// A running server: its bound addresses and a way to stop it.
pub struct ServerHandle {
    pub shared: Arc<ServerState>,
    pub tcp_addrs: Vec<SocketAddr>,
    pub udp_addrs: Vec<SocketAddr>,
    /// Where the Prometheus endpoint listens (`--metrics-listen`), if on.
    pub metrics_addr: Option<SocketAddr>,
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

/// Why clients must authenticate, if they must: -Y, -S, or -Z with client certificates
/// required (`ssl_verify_mode` 2 or 3). -Z alone only encrypts: any local process may use the
/// client port, so a loopback replication link gives it nothing more.
fn client_auth_required(config: &Config) -> Option<&'static str> {
    use crate::config::VerifyMode;
    if config.auth_file.is_some() {
        Some("-Y")
    } else if config.sasl.is_some() {
        Some("-S")
    } else if config.tls.enabled
        && matches!(
            config.tls.verify_mode,
            VerifyMode::Require | VerifyMode::Once
        )
    {
        Some("-Z with ssl_verify_mode 2 or 3")
    } else {
        None
    }
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
    let replicates = !config.peers.is_empty() || config.repl_port != 0;
    let plain = config.repl_secret_file.is_none() && config.repl_tls_cert.is_none();
    if replicates && plain {
        if let Some(why) = client_auth_required(&config) {
            if !config.repl_insecure {
                return Err(ServerError::Config(format!(
                    "clients must authenticate ({why}), so the replication link must too, on \
                     loopback as well: give it a secret (--repl-secret-file FILE; make one with \
                     `{}`) or certificates (--repl-tls-cert, --repl-tls-key, --repl-tls-ca), or \
                     run without a replication listener and peers (-X 0); --repl-insecure \
                     accepts an unauthenticated link anyway",
                    crate::config::MAKE_SECRET
                )));
            }
        }
        if config.repl_insecure {
            tracing::warn!(
                "--repl-insecure: the replication link is neither authenticated nor encrypted; \
                 whoever reaches the replication port reads and writes the whole cache"
            );
        }
    }
    crate::store::start_coarse_clock();
    let shared = Arc::new(ServerState::new(config, tls));
    let config = &shared.config;

    // A peerless node whose client port is the replication port (a second instance started
    // with -p 11212, say) serves its clients on it: the listener nobody asked for gives way.
    let repl_clashes = config.peers.is_empty()
        && config.repl_port != 0
        && [config.port, config.udp_port].contains(&i32::from(config.repl_port));
    if repl_clashes {
        tracing::warn!(
            "replication listener disabled: port {} is this node's client port and no peer is \
             named; give -X PORT for another port",
            config.repl_port
        );
    } else if !config.peers.is_empty() || config.repl_port != 0 {
        match Replicator::start(config, shared.store.clone()).await {
            Ok(repl) => {
                repl.wait_initial_sync(config.repl_sync_wait).await;
                let _ = shared.replicator.set(repl);
            }
            // A node that names no peer only waits for peers to call: when its replication
            // port is taken (another instance on this host has the default 11212), it serves
            // its clients without the listener instead of not starting, as a second memcached
            // on another -p would.
            Err(crate::replication::ReplError::Bind { addr, source })
                if config.peers.is_empty() && source.kind() == std::io::ErrorKind::AddrInUse =>
            {
                tracing::warn!(
                    "replication listener disabled: {addr} is in use ({source}); serving \
                     without replication (give -X PORT for a free port, or -X 0)"
                );
            }
            Err(e) => return Err(ServerError::Replication(e.to_string())),
        }
    }

    let workers = Arc::new(workers::Workers::spawn(config.threads, &shared)?);
    let mut tcp_addrs = Vec::new();
    let mut udp_addrs = Vec::new();
    let mut tasks = Vec::new();
    for host in listen_addrs(config) {
        // memcached's -p/-U: 0 = no listener, -1 = any free port (bind port 0).
        if config.port != 0 {
            let addr = socket_addr(&host, listen_port(config.port))?;
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
            tasks.push(tokio::spawn(acceptor::accept_loop(
                shared.clone(),
                listener,
                workers.clone(),
            )));
        }
        if config.udp_port != 0 {
            let udp_addr = socket_addr(&host, listen_port(config.udp_port))?;
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
    let mut metrics_addr = None;
    if let Some(addr) = &config.metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr.as_str())
            .await
            .map_err(|source| ServerError::Bind {
                addr: addr.clone(),
                source,
            })?;
        let local = listener.local_addr()?;
        eprintln!("repcached: metrics on http://{local}/metrics");
        metrics_addr = Some(local);
        tasks.push(tokio::spawn(metrics::serve(shared.clone(), listener)));
    }
    tasks.push(tokio::spawn(sweeper(shared.clone())));
    if config.idle_timeout > 0 {
        tasks.push(tokio::spawn(idle_checker(shared.clone())));
    }
    Ok(ServerHandle {
        shared,
        tcp_addrs,
        udp_addrs,
        metrics_addr,
        workers,
        tasks,
    })
}

/// The port to bind for memcached's -p/-U value (not 0): -1 = any free port.
fn listen_port(port: i32) -> u16 {
    u16::try_from(port).unwrap_or(0)
}

/// memcached's MEMCACHED_PORT_FILENAME: once every listener is bound, one line per listener,
/// `TCP INET: PORT` (`UDP`, `INET6` as the case is), written to FILE.lck and renamed to FILE so
/// that a reader never sees half of it (tests and scripts start the server with -p -1 and read
/// the port it got from there).
fn write_port_file(
    path: &std::path::Path,
    tcp: &[SocketAddr],
    udp: &[SocketAddr],
) -> std::io::Result<()> {
    let mut text = String::new();
    for (kind, addrs) in [("TCP", tcp), ("UDP", udp)] {
        for a in addrs {
            let family = if a.is_ipv4() { "INET" } else { "INET6" };
            text.push_str(&format!("{kind} {family}: {}\n", a.port()));
        }
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".lck");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
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
async fn sweeper(shared: Arc<ServerState>) {
    let mut cursors = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_micros(crate::store::SWEEP_INTERVAL_US));
    let tunables = &shared.tunables;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                shared.store.sweep(&mut cursors, crate::store::SWEEP_SLICE, false);
            }
            _ = tunables.crawl_request.notified() => {
                // `lru_crawler crawl`: one whole pass over every shard's index, a slice at a
                // time, yielding between slices.
                let mut pass = Vec::new();
                loop {
                    shared.store.sweep(&mut pass, crate::store::SWEEP_SLICE, true);
                    if pass.iter().all(|&(bucket, _)| bucket == 0) {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
                tunables.crawl_running.store(false, std::sync::atomic::Ordering::SeqCst);
            }
        }
    }
}

/// `-o idle_timeout`: once a second, wakes the connections idle for longer than the timeout
/// (memcached's conn_timeout thread does the same); each decides and closes itself, so that
/// a request arriving meanwhile wins. Nothing of this runs on the workers' hot path.
async fn idle_checker(shared: Arc<ServerState>) {
    let timeout = shared.config.idle_timeout;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let now = crate::store::unix_now();
        for info in shared.conns.lock().values() {
            if shared::is_idle(info, now, timeout) {
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

/// SIGHUP: applies the -x peers, -v and the -S/-Y users of a freshly read configuration; a
/// configuration that no longer parses (a bad password file included) leaves everything as it
/// is.
async fn reload(shared: &ServerState, reload: Option<&Reload>) {
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
    // memcached reads its -Y file again on SIGHUP; the SASL file goes along (memcached reads
    // it at every login). A file that no longer parses failed `read_config` above.
    for what in shared.replace_users(&config) {
        tracing::info!("SIGHUP: reloaded {what}");
    }
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
        if let Some(path) = std::env::var_os("MEMCACHED_PORT_FILENAME") {
            if let Err(e) = write_port_file(path.as_ref(), &handle.tcp_addrs, &handle.udp_addrs) {
                // memcached reports it and serves on.
                tracing::warn!(
                    "cannot write the port file {}: {e}",
                    std::path::Path::new(&path).display()
                );
            }
        }
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
