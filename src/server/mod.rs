//! The server: binds the listeners, starts the -t connection workers (each a thread with its
//! own single-threaded event loop, see workers.rs), replication, the sweeper and the idle
//! check on the main runtime, and stops them in order.
//!
//! Layers, each importing only from the layers below it: this file (start, stop, `run`; with
//! its start-up helpers `listen` and `repl_setup`) → the front ends (`acceptor` → `workers` →
//! `connection`; `udp`; beside them `metrics`) → `pipeline` → the executors (`exec/*`) → the
//! state every connection shares (`shared` over `auth_guard`, `session`, `stats`, `tls`,
//! `tunables`, `detail`). The server imports `protocol`, `store`, `replication` and `config`;
//! none of them imports the server. The file-level graph is in docs/ARCHITECTURE.md and
//! `python3 tools/modgraph.py` prints it.
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
mod error;
pub mod exec;
mod listen;
pub mod metrics;
pub mod pipeline;
mod repl_setup;
pub mod session;
pub mod shared;
pub mod stats;
pub mod tls;
pub mod tunables;
mod udp;
mod workers;

pub use error::ServerError;
pub use shared::{ConnInfo, ServerState};

use crate::config::Config;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// How long a stopping server waits for its clients to take the replies of the requests it
/// executed (a client that does not read must not hold the shutdown).
const CLIENT_DRAIN: Duration = Duration::from_secs(2);

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
    repl_setup::check_link_security(&mut config)?;
    crate::store::start_coarse_clock();
    let shared = Arc::new(ServerState::new(config, tls));
    repl_setup::start_replication(&shared).await?;

    let workers = Arc::new(workers::Workers::spawn(shared.config.threads, &shared)?);
    let listen::ClientListeners {
        tcp_addrs,
        udp_addrs,
        mut tasks,
    } = listen::bind_clients(&shared, &workers).await?;
    let mut metrics_addr = None;
    if let Some((addr, task)) = listen::bind_metrics(&shared).await? {
        metrics_addr = Some(addr);
        tasks.push(task);
    }
    tasks.push(tokio::spawn(sweeper(shared.clone())));
    if shared.config.idle_timeout > 0 {
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
            if let Err(e) =
                listen::write_port_file(path.as_ref(), &handle.tcp_addrs, &handle.udp_addrs)
            {
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
