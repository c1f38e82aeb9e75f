//! State shared by every connection of one server ([`ServerState`]) and what `stats conns` knows of
//! each connection ([`ConnInfo`]). Below everything else in the server: it knows the store, the
//! configuration, the counters and TLS, and nothing of connections, workers or executors.

use super::auth_guard;
use super::counters::Stats;
use super::session;
use super::tls;
use crate::config::{Config, Users};
use crate::protocol::ParseLimits;
use crate::replication::Replicator;
use crate::store::{Store, StoreConfig};
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use tokio::sync::Notify;

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
pub(super) struct Listener {
    pub(super) fd: i32,
    pub(super) addr: String,
    pub(super) udp: bool,
}

/// State shared by every connection of one server.
pub struct ServerState {
    pub store: Arc<Store>,
    pub stats: Stats,
    pub config: Config,
    pub limits: ParseLimits,
    pub started_unix: u32,
    /// Replies a connection may queue unwritten (`-o read_buf_mem_limit`); None: no limit.
    pub reply_slots: Option<usize>,
    pub verbosity: AtomicU32,
    pub tcp_port: AtomicU16,
    pub udp_port: AtomicU16,
    /// Open client connections by id (the socket's fd, as memcached reports them).
    pub conns: Mutex<HashMap<i32, Arc<ConnInfo>>>,
    pub(super) listeners: Mutex<Vec<Listener>>,
    /// Client TLS, with -Z.
    pub tls: Option<Arc<tls::ClientTls>>,
    pub(super) replicator: OnceLock<Replicator>,
    pub(super) shutdown: Notify,
    /// Set once the server stops: connections read no more requests.
    stopping: AtomicBool,
    /// The users of -S and -Y: the configuration's, replaced when SIGHUP reads the files again
    /// (a connection that has authenticated stays so, as in memcached).
    sasl_users: RwLock<Users>,
    ascii_users: RwLock<Users>,
    /// Failed logins by source, and the rate limits of their log lines.
    pub auth_guard: auth_guard::Guard,
    /// Run-time settings (`lru_crawler ...`, `slabs automove`).
    pub tunables: super::tunables::Tunables,
    /// `stats detail`.
    pub detail: super::detail::Detail,
}

impl ServerState {
    pub(super) fn new(config: Config, tls: Option<tls::ClientTls>) -> ServerState {
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
        ServerState {
            store: Arc::new(store),
            stats: Stats::default(),
            limits: ParseLimits {
                item_size_max: config.item_size_max,
                ..ParseLimits::default()
            },
            started_unix: crate::store::unix_now(),
            reply_slots: session::reply_slots(config.read_buf_mem_limit, config.threads),
            verbosity: AtomicU32::new(config.verbosity as u32),
            tcp_port: AtomicU16::new(0),
            udp_port: AtomicU16::new(0),
            conns: Mutex::new(HashMap::new()),
            listeners: Mutex::new(Vec::new()),
            tls: tls.map(Arc::new),
            replicator: OnceLock::new(),
            shutdown: Notify::new(),
            stopping: AtomicBool::new(false),
            sasl_users: RwLock::new(config.sasl.clone().unwrap_or_default()),
            ascii_users: RwLock::new(
                config
                    .auth_file
                    .as_ref()
                    .map(|f| f.users.clone())
                    .unwrap_or_default(),
            ),
            auth_guard: auth_guard::Guard::default(),
            tunables: super::tunables::Tunables::new(config.lru_crawler),
            detail: Default::default(),
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

    /// Whether `user`/`password` may log in with SASL PLAIN (-S).
    pub fn check_sasl(&self, user: &[u8], password: &[u8]) -> bool {
        self.config.sasl.is_some() && self.sasl_users.read().check(user, password)
    }

    /// Whether `user`/`password` may log in with ascii authentication (-Y).
    pub fn check_ascii(&self, user: &[u8], password: &[u8]) -> bool {
        self.config.auth_file.is_some() && self.ascii_users.read().check(user, password)
    }

    /// SIGHUP: the users of a freshly read configuration replace the running ones, for the
    /// mechanisms this server started with (turning one on or off needs a restart). Returns
    /// what was replaced, for the log.
    pub(super) fn replace_users(&self, fresh: &Config) -> Vec<String> {
        let mut replaced = Vec::new();
        if let (Some(_), Some(users)) = (&self.config.sasl, &fresh.sasl) {
            *self.sasl_users.write() = users.clone();
            replaced.push(format!("SASL users ({})", users.len()));
        }
        if let (Some(_), Some(file)) = (&self.config.auth_file, &fresh.auth_file) {
            *self.ascii_users.write() = file.users.clone();
            replaced.push(format!(
                "ascii auth users from {} ({})",
                file.path.display(),
                file.users.len()
            ));
        }
        replaced
    }

    /// Tells every connection to stop reading requests. A connection registered after this
    /// sees the flag before it executes anything; one registered before is woken here.
    pub(super) fn stop_clients(&self) {
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

/// A connection is gone: drop it from `stats conns` and the connection count.
pub fn forget(shared: &ServerState, fd: i32) {
    shared.conns.lock().remove(&fd);
    shared.stats.curr_connections.sub(1);
}

/// Whether `-o idle_timeout` closes this connection now: it waits for a command (not for the
/// rest of a data block, as in memcached) and ran none for longer than the timeout.
pub fn is_idle(info: &ConnInfo, now: u32, timeout: u32) -> bool {
    timeout > 0
        && !info.nread.load(Ordering::Relaxed)
        && now.saturating_sub(info.last_cmd.load(Ordering::Relaxed)) > timeout
}
