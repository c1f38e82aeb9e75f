//! Master-master replication: the peer links of one node, their listener and dialers, the
//! backlog of this node's own writes, and the stats the server shows for them.
//!
//! Every local mutation goes from the store's sink into the [`backlog`], encoded once as a frame;
//! each link copies ranges of the backlog to its peer (after a chunked snapshot when the peer
//! cannot resume) and applies what the peer streams back in batches with
//! `Store::apply_remote_batch`, which, like `Store::apply_remote`, never republishes. Each node therefore sends only
//! its own writes, and any mesh of nodes naming each other works without loops. The wire format
//! lives in [`frame`], the encrypted and authenticated channel under it in `secure`, what
//! unauthenticated sockets may hold in `budget`, one connection's life in `link`.

mod backlog;
mod budget;
pub mod frame;
mod link;
mod peers;
mod random;
pub mod secure;
mod shared;

pub use random::random_node_id;
use shared::{canonical_ip, Totals};
pub(crate) use shared::{now_millis, Shared};
pub use shared::{parse_peer, ReplError, DEFAULT_PORT};

use crate::config::Config;
use crate::store::Store;
use backlog::{Backlog, BacklogSink};
use link::{Dir, LinkError};
use parking_lot::Mutex;
use peers::{LinkState, PeerSlot, Slot};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::task::{JoinHandle, JoinSet};

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(3);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long `shutdown` waits for links to send what is queued.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(3);
async fn resolve(host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    Ok(tokio::net::lookup_host((host, port)).await?.collect())
}

/// The address the replication listener binds: --repl-listen, else the first -l, else any.
async fn listen_ip(config: &Config) -> Result<IpAddr, ReplError> {
    let name = config
        .repl_listen
        .clone()
        .or_else(|| config.listen.first().cloned())
        .unwrap_or_else(|| "0.0.0.0".to_string());
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(ip);
    }
    if let Ok(sa) = name.parse::<SocketAddr>() {
        return Ok(sa.ip());
    }
    let host = name.trim_start_matches('[').trim_end_matches(']');
    resolve(host, 0)
        .await
        .ok()
        .and_then(|v| v.first().map(|a| a.ip()))
        .ok_or(ReplError::BadListen(name))
}

pub struct Replicator {
    sh: Arc<Shared>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// The dial loop of each configured peer, by its name as given with -x (for set_peers).
    dialers: Mutex<HashMap<String, JoinHandle<()>>>,
    local_addr: Option<SocketAddr>,
    /// --repl-insecure: peers off loopback allowed without a secret.
    insecure_ok: bool,
}

/// What [`Replicator::set_peers`] changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PeerChanges {
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

impl Replicator {
    /// Binds the listener (prints `repcached: listening on repl <addr>` to stderr once bound), installs
    /// the store's mutation sink, starts the peer links. Must be called inside the tokio runtime.
    pub async fn start(config: &Config, store: Arc<Store>) -> Result<Replicator, ReplError> {
        let listener = if config.repl_port == 0 {
            None
        } else {
            let ip = listen_ip(config).await?;
            let addr = SocketAddr::new(ip, config.repl_port);
            let l = std::net::TcpListener::bind(addr).map_err(|source| ReplError::Bind {
                addr: addr.to_string(),
                source,
            })?;
            Some(l)
        };
        Self::start_with_listener(config, store, listener).await
    }

    /// Like [`Replicator::start`], with the replication listener already bound by the caller
    /// (socket activation, or tests that bind port 0); `config.repl_port` is then ignored.
    pub async fn start_with_listener(
        config: &Config,
        store: Arc<Store>,
        listener: Option<std::net::TcpListener>,
    ) -> Result<Replicator, ReplError> {
        let secret = match &config.repl_secret_file {
            Some(path) => {
                let s = secure::load_secret(path).map_err(|source| ReplError::Secret {
                    path: path.display().to_string(),
                    source,
                })?;
                if s.is_empty() {
                    return Err(ReplError::EmptySecret(path.display().to_string()));
                }
                let bits = crate::config::secret_bits(&s);
                if bits < crate::config::MIN_SECRET_BITS {
                    return Err(ReplError::WeakSecret {
                        path: path.display().to_string(),
                        bits,
                    });
                }
                Some(s)
            }
            None => None,
        };
        let listener = match listener {
            Some(l) => {
                let addr = l.local_addr().map_err(|source| ReplError::Bind {
                    addr: "?".into(),
                    source,
                })?;
                l.set_nonblocking(true).map_err(|source| ReplError::Bind {
                    addr: addr.to_string(),
                    source,
                })?;
                let l = TcpListener::from_std(l).map_err(|source| ReplError::Bind {
                    addr: addr.to_string(),
                    source,
                })?;
                Some((l, addr))
            }
            None => None,
        };
        // Peers: parse and resolve now, both to fail early on typos and for the loopback check.
        let mut peers = Vec::new();
        for p in &config.peers {
            let (host, port) = parse_peer(p)?;
            let addrs = resolve(&host, port).await.unwrap_or_default();
            peers.push((p.trim().to_string(), host, port, addrs));
        }
        let security = match (
            &config.repl_tls_cert,
            &config.repl_tls_key,
            &config.repl_tls_ca,
        ) {
            (Some(cert), Some(key), Some(ca)) => {
                secure::Security::from_tls_files(cert, key, ca).map_err(ReplError::Tls)?
            }
            _ => match &secret {
                Some(s) => secure::Security::from_secret(s),
                None => secure::Security::Plain,
            },
        };
        if !config.repl_tls_peer_names.is_empty()
            && !matches!(security, secure::Security::MutualTls { .. })
        {
            return Err(ReplError::Tls(
                "--repl-tls-peer-name needs certificates (--repl-tls-cert, --repl-tls-key, \
                 --repl-tls-ca)"
                    .into(),
            ));
        }
        for name in &config.repl_tls_peer_names {
            if rustls::pki_types::ServerName::try_from(name.as_str()).is_err() {
                return Err(ReplError::Tls(format!(
                    "--repl-tls-peer-name {name:?} is neither a DNS name nor an IP address"
                )));
            }
        }
        if matches!(security, secure::Security::Plain) && !config.repl_insecure {
            if let Some((_, addr)) = &listener {
                if !addr.ip().is_loopback() {
                    return Err(ReplError::Insecure(addr.to_string()));
                }
            }
            for (name, _, _, addrs) in &peers {
                if addrs.is_empty() || addrs.iter().any(|a| !a.ip().is_loopback()) {
                    return Err(ReplError::Insecure(name.clone()));
                }
            }
        }

        let run = random::random_u64();
        let backlog = Arc::new(Backlog::new(run, config.repl_backlog_size.max(64 * 1024)));
        let (shutdown, _) = watch::channel(false);
        let sh = Arc::new(Shared {
            store: store.clone(),
            node_id: store.node_id(),
            plain_loopback_only: matches!(security, secure::Security::Plain)
                && !config.repl_insecure,
            security,
            tls_peer_names: config.repl_tls_peer_names.clone(),
            budget: Arc::new(budget::HandshakeBudget::default()),
            failure_log: budget::FailureLog::default(),
            max_skew_ms: config.repl_max_clock_skew.as_millis() as u64,
            limits: frame::Limits {
                item_size_max: store.item_size_max(),
            },
            backlog: backlog.clone(),
            listen_port: listener.as_ref().map(|(_, a)| a.port()).unwrap_or(0),
            listen_ip: listener
                .as_ref()
                .map(|(_, a)| a.ip())
                .filter(|ip| !ip.is_unspecified()),
            inbound: Mutex::new(HashMap::new()),
            links: Mutex::new(HashMap::new()),
            slots: Mutex::new(Vec::new()),
            synced_nodes: Mutex::new(HashSet::new()),
            shutdown,
            next_link_id: AtomicU64::new(1),
            live: AtomicUsize::new(0),
            live_changed: Notify::new(),
            totals: Totals::default(),
        });
        store.set_mutation_sink(Arc::new(BacklogSink(backlog)));
        store.set_tombstone_secs(config.repl_tombstone_time.as_secs().min(u32::MAX as u64) as u32);

        let mut tasks = Vec::new();
        let local_addr = listener.as_ref().map(|(_, a)| *a);
        if let Some((l, addr)) = listener {
            eprintln!("repcached: listening on repl {addr}");
            tasks.push(tokio::spawn(accept_loop(sh.clone(), l)));
        }
        let mut dialers = HashMap::new();
        for (name, host, port, addrs) in peers {
            let slot = Arc::new(PeerSlot::new(name.clone(), true));
            *slot.resolved.lock() = addrs;
            sh.slots.lock().push(slot.clone());
            dialers.insert(name, tokio::spawn(dial_loop(sh.clone(), slot, host, port)));
        }
        Ok(Replicator {
            sh,
            tasks: Mutex::new(tasks),
            dialers: Mutex::new(dialers),
            local_addr,
            insecure_ok: config.repl_insecure,
        })
    }

    /// Applies a new list of configured peers (SIGHUP): new names get a slot and a dial loop
    /// (their first link is a full sync), names no longer listed lose their dial loop, their
    /// link and their `stats replication` row. Nothing changes if any name is invalid, or is
    /// off loopback while the node has neither a secret nor certificates (and no
    /// --repl-insecure). A removed peer that still names this node can dial in again; it is
    /// then an unconfigured peer like any other authenticated one.
    pub async fn set_peers(&self, peers: &[String]) -> Result<PeerChanges, ReplError> {
        let mut wanted = Vec::new();
        for p in peers {
            let name = p.trim().to_string();
            if wanted
                .iter()
                .any(|(n, ..): &(String, String, u16, Vec<SocketAddr>)| *n == name)
            {
                continue;
            }
            let (host, port) = parse_peer(&name)?;
            let addrs = resolve(&host, port).await.unwrap_or_default();
            if matches!(self.sh.security, secure::Security::Plain)
                && !self.insecure_ok
                && (addrs.is_empty() || addrs.iter().any(|a| !a.ip().is_loopback()))
            {
                return Err(ReplError::Insecure(name));
            }
            wanted.push((name, host, port, addrs));
        }
        let mut changes = PeerChanges::default();
        let mut dialers = self.dialers.lock();
        let current: Vec<String> = dialers.keys().cloned().collect();
        for name in current {
            if wanted.iter().any(|(n, ..)| *n == name) {
                continue;
            }
            if let Some(task) = dialers.remove(&name) {
                task.abort();
            }
            let gone: Vec<Slot> = {
                let mut slots = self.sh.slots.lock();
                let (gone, keep) = slots
                    .drain(..)
                    .partition(|s| s.configured && *s.addr.lock() == name);
                *slots = keep;
                gone
            };
            for slot in gone {
                // Its link, whichever side dialed, stops now.
                let nid = slot.node_id.load(Ordering::Relaxed);
                if let Some(link) = self.sh.links.lock().get(&nid) {
                    let _ = link.cancel.send(true);
                }
                slot.set_state(LinkState::Down);
            }
            tracing::info!("replication: peer {name} removed");
            changes.removed.push(name);
        }
        for (name, host, port, addrs) in wanted {
            if dialers.contains_key(&name) {
                continue;
            }
            let slot = Arc::new(PeerSlot::new(name.clone(), true));
            *slot.resolved.lock() = addrs;
            self.sh.slots.lock().push(slot.clone());
            let task = tokio::spawn(dial_loop(self.sh.clone(), slot, host, port));
            dialers.insert(name.clone(), task);
            tracing::info!("replication: peer {name} added");
            changes.added.push(name);
        }
        Ok(changes)
    }

    /// The bound replication listener, if any.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    pub fn node_id(&self) -> u32 {
        self.sh.node_id
    }

    /// Resolves when every configured peer that was reachable has finished its initial sync, or after
    /// `timeout`, or immediately when there are no peers.
    pub async fn wait_initial_sync(&self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        let names: Vec<String> = self
            .sh
            .slots
            .lock()
            .iter()
            .filter(|s| s.configured)
            .map(|s| s.addr.lock().clone())
            .collect();
        if !names.is_empty() && !timeout.is_zero() {
            tracing::info!(
                "replication: waiting up to {} s for the initial sync with {} before serving",
                timeout.as_secs(),
                names.join(", ")
            );
        }
        loop {
            let pending = {
                let synced = self.sh.synced_nodes.lock();
                self.sh
                    .slots
                    .lock()
                    .iter()
                    .filter(|s| s.configured)
                    .any(|s| {
                        !s.initial_done.load(Ordering::Acquire)
                            && !synced.contains(&s.node_id.load(Ordering::Relaxed))
                    })
            };
            if !pending {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                let slots = self.sh.slots.lock().clone();
                for s in slots.iter().filter(|s| s.configured) {
                    if !s.initial_done.load(Ordering::Acquire) {
                        tracing::warn!(
                            "replication: serving before the initial sync with {} finished \
                             (--repl-sync-wait {} s passed); the rest arrives in the background",
                            s.addr.lock(),
                            timeout.as_secs()
                        );
                        s.end_initial_wait("gave up: --repl-sync-wait passed");
                    }
                }
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Lines for `stats` (name, value).
    pub fn general_stats(&self) -> Vec<(String, String)> {
        let sh = &self.sh;
        let (first, next, bytes) = sh.backlog.range();
        let slots = sh.slots.lock().clone();
        let up = |s: &&Slot| matches!(s.state(), LinkState::Syncing | LinkState::Synced);
        let t = &sh.totals;
        let l = |v: &AtomicU64| v.load(Ordering::Relaxed).to_string();
        let st = sh.store.stats();
        vec![
            ("repl_role".into(), "master".into()),
            ("repl_node_id".into(), sh.node_id.to_string()),
            ("repl_run_id".into(), sh.backlog.run().to_string()),
            ("repl_port".into(), sh.listen_port.to_string()),
            ("repl_peers".into(), slots.len().to_string()),
            (
                "repl_peers_connected".into(),
                slots.iter().filter(up).count().to_string(),
            ),
            (
                "repl_peers_synced".into(),
                slots
                    .iter()
                    .filter(|s| s.state() == LinkState::Synced)
                    .count()
                    .to_string(),
            ),
            (
                "repl_peers_clock_skew".into(),
                slots
                    .iter()
                    .filter(|s| s.state() == LinkState::ClockSkew)
                    .count()
                    .to_string(),
            ),
            (
                "repl_backlog_size".into(),
                sh.backlog.capacity().to_string(),
            ),
            ("repl_backlog_bytes".into(), bytes.to_string()),
            ("repl_backlog_first".into(), first.to_string()),
            ("repl_backlog_last".into(), (next - 1).to_string()),
            ("repl_records_sent".into(), l(&t.sent)),
            ("repl_records_applied".into(), l(&t.applied)),
            ("repl_records_stale".into(), l(&t.stale)),
            ("repl_records_rejected".into(), l(&t.rejected)),
            ("repl_bytes_sent".into(), l(&t.bytes_sent)),
            ("repl_bytes_received".into(), l(&t.bytes_received)),
            ("repl_full_syncs".into(), l(&t.full_syncs)),
            ("repl_partial_syncs".into(), l(&t.partial_syncs)),
            (
                "repl_security".into(),
                sh.security.mode().short_name().into(),
            ),
            ("repl_auth_failures".into(), l(&t.auth_failures)),
            ("repl_handshakes_refused".into(), l(&t.handshakes_refused)),
            ("repl_handshake_timeouts".into(), l(&t.handshake_timeouts)),
            (
                "repl_handshakes_pending".into(),
                sh.budget.pending().to_string(),
            ),
            ("repl_clock_rejected".into(), l(&t.clock_rejected)),
            ("repl_protocol_errors".into(), l(&t.protocol_errors)),
            ("repl_identity_refused".into(), l(&t.identity_refused)),
            ("repl_origin_rejected".into(), l(&t.origin_rejected)),
            ("repl_max_clock_skew_ms".into(), sh.max_skew_ms.to_string()),
            // Tombstones (also `curr_tombstones`): kept until every peer has the delete, at most
            // --repl-tombstone-time, their bytes counted in `bytes` against -m.
            ("repl_tombstones".into(), st.tombstones.to_string()),
            (
                "repl_tombstone_bytes".into(),
                st.tombstone_bytes.to_string(),
            ),
            (
                "repl_tombstone_time".into(),
                sh.store.tombstone_secs().to_string(),
            ),
            (
                "repl_tombstones_acked".into(),
                st.tombstones_acked.to_string(),
            ),
            (
                "repl_tombstones_timed_out".into(),
                st.tombstones_timed_out.to_string(),
            ),
            (
                "repl_tombstones_over_cap".into(),
                st.tombstones_over_cap.to_string(),
            ),
            (
                "repl_pending_deltas_refused".into(),
                st.pending_deltas_refused.to_string(),
            ),
        ]
    }

    /// `stats replication`: one group of `peerN:` lines per peer.
    pub fn replication_stats(&self) -> Vec<(String, String)> {
        let sh = &self.sh;
        let (first, next, _) = sh.backlog.range();
        let last = next - 1;
        let now = now_millis();
        let mut out = Vec::new();
        for (i, s) in sh.slots.lock().iter().enumerate() {
            let l = |v: &AtomicU64| v.load(Ordering::Relaxed).to_string();
            let ack = s.peer_ack.load(Ordering::Relaxed).min(last);
            let lag = last - ack;
            let lag_ms = if lag == 0 {
                0
            } else {
                sh.backlog
                    .millis_at(ack + 1)
                    .map(|m| now.saturating_sub(m))
                    .unwrap_or(0)
            };
            let err = s.last_error.lock().replace(['\r', '\n'], " ");
            let skew = s.max_clock_skew_ms.load(Ordering::Relaxed);
            let applied = self
                .sh
                .progress(s.node_id.load(Ordering::Relaxed))
                .map(|(_, o)| o)
                .unwrap_or(0);
            let offset = s.clock_offset_ms.load(Ordering::Relaxed);
            let rows: [(&str, String); 28] = [
                ("addr", s.addr.lock().clone()),
                ("node_id", s.node_id.load(Ordering::Relaxed).to_string()),
                ("state", s.state().name().to_string()),
                ("configured", (s.configured as u8).to_string()),
                ("records_sent", l(&s.records_sent)),
                ("records_applied", l(&s.records_applied)),
                ("records_stale", l(&s.records_stale)),
                ("records_rejected", l(&s.records_rejected)),
                ("bytes_sent", l(&s.bytes_sent)),
                ("bytes_received", l(&s.bytes_received)),
                ("lag_records", lag.to_string()),
                // The failover barrier (scripts/wait-synced): our writes up to this offset of
                // our backlog are on the peer; theirs up to `applied_offset` of their stream
                // are here.
                ("acked_offset", ack.to_string()),
                ("acked_through_ms", l(&s.acked_through_ms)),
                ("applied_offset", applied.to_string()),
                ("applied_through_ms", l(&s.applied_through_ms)),
                ("lag_ms", lag_ms.to_string()),
                ("backlog_first", first.to_string()),
                ("backlog_last", last.to_string()),
                ("full_syncs", l(&s.full_syncs)),
                ("partial_syncs", l(&s.partial_syncs)),
                ("full_syncs_sent", l(&s.full_syncs_sent)),
                ("partial_syncs_sent", l(&s.partial_syncs_sent)),
                ("auth_failures", l(&s.auth_failures)),
                ("clock_rejected", l(&s.clock_rejected)),
                (
                    "max_clock_skew_ms",
                    if skew == i64::MIN {
                        "-".into()
                    } else {
                        skew.to_string()
                    },
                ),
                // The peer's clock minus ours at its latest heartbeat; beyond
                // repl_max_clock_skew_ms either way the state is clock_skew.
                (
                    "clock_offset_ms",
                    if offset == i64::MIN {
                        "-".into()
                    } else {
                        offset.to_string()
                    },
                ),
                ("initial_sync", s.initial_outcome.lock().clone()),
                ("last_error", if err.is_empty() { "-".into() } else { err }),
            ];
            out.extend(rows.into_iter().map(|(k, v)| (format!("peer{i}:{k}"), v)));
        }
        out
    }

    /// Stops links after sending what is queued (bounded wait). Takes `&self` so that a server
    /// holding the replicator in a shared place can stop it; calling it twice is harmless.
    pub async fn shutdown(&self) {
        let sh = self.sh.clone();
        let _ = sh.shutdown.send(true);
        let deadline = tokio::time::Instant::now() + SHUTDOWN_WAIT;
        loop {
            let notified = sh.live_changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if sh.live.load(Ordering::Acquire) == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                break;
            }
        }
        for l in sh.links.lock().values() {
            let _ = l.cancel.send(true);
        }
        let mut tasks = std::mem::take(&mut *self.tasks.lock());
        tasks.extend(self.dialers.lock().drain().map(|(_, t)| t));
        for t in tasks {
            t.abort();
            let _ = t.await;
        }
    }
}

impl Drop for Replicator {
    fn drop(&mut self) {
        for t in self.dialers.lock().values() {
            t.abort();
        }
        for t in self.tasks.lock().iter() {
            t.abort();
        }
    }
}

async fn accept_loop(sh: Arc<Shared>, listener: TcpListener) {
    // Incoming links live in this set, so that stopping the listener stops them too.
    let mut links = JoinSet::new();
    let mut shutdown = sh.shutdown.subscribe();
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, remote)) => {
                    if *shutdown.borrow() {
                        drop(stream);
                        continue;
                    }
                    let ip = canonical_ip(remote.ip());
                    let from_peer = sh.is_peer_ip(ip);
                    // Never refused: a full budget evicts the least advanced pending handshake.
                    let (permit, evicted) = sh.budget.acquire(ip, from_peer);
                    if evicted {
                        sh.totals.handshakes_refused.fetch_add(1, Ordering::Relaxed);
                    }
                    links.spawn(incoming(sh.clone(), stream, permit));
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!("replication: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = links.join_next(), if !links.is_empty() => {}
            _ = shutdown.changed() => {
                // Keep running the links (they drain), but accept nothing new.
                while links.join_next().await.is_some() {}
                return;
            }
        }
    }
}

/// One accepted connection: its first bytes (which rank it above silent sockets in the
/// budget), then the link.
async fn incoming(sh: Arc<Shared>, stream: TcpStream, permit: budget::Permit) {
    match permit.wait_first_bytes(&stream).await {
        Ok(()) => {
            // run_link counts and logs its own failures.
            let _ = link::run_link(sh, stream, Dir::Incoming, None, Some(permit)).await;
        }
        Err(budget::Silent::Timeout) => {
            sh.totals.handshake_timeouts.fetch_add(1, Ordering::Relaxed);
        }
        Err(_) => {}
    }
}

fn jitter(d: Duration) -> Duration {
    let r = (random::random_u64() % 1000) as u32;
    d + d * r / 4000
}

/// Keeps a link to one configured peer up: connect, run, back off, again.
async fn dial_loop(sh: Arc<Shared>, slot: Slot, host: String, port: u16) {
    let mut shutdown = sh.shutdown.subscribe();
    let mut backoff = BACKOFF_MIN;
    loop {
        if *shutdown.borrow() {
            return;
        }
        // While another link to the same node is up (the duplicate rule kept that one), wait.
        let nid = slot.node_id.load(Ordering::Relaxed);
        let other = if nid != 0 {
            sh.links.lock().get(&nid).map(|l| l.done.clone())
        } else {
            None
        };
        if let Some(mut done) = other {
            tokio::select! {
                _ = done.wait_for(|d| *d) => {}
                _ = shutdown.changed() => return,
            }
            continue;
        }
        slot.set_state(LinkState::Connecting);
        let syncs_before =
            slot.full_syncs.load(Ordering::Relaxed) + slot.partial_syncs.load(Ordering::Relaxed);
        match connect(&slot, &host, port, sh.plain_loopback_only).await {
            Err(e) => {
                slot.set_error(format!("connect: {e}"));
                slot.set_state(LinkState::Down);
                // Not reachable now: a starting node does not wait for it.
                slot.end_initial_wait(&format!("gave up: connect: {e}"));
            }
            Ok(stream) => {
                let (_, res) =
                    link::run_link(sh.clone(), stream, Dir::Outgoing, Some(slot.clone()), None)
                        .await;
                // A link ended by clock skew syncs before it finds out: not a working link.
                let skewed = matches!(res, Err(LinkError::ClockSkew(..)));
                match res {
                    Err(LinkError::Duplicate(_)) => {
                        // The other link between the same nodes carries the sync.
                        backoff = BACKOFF_MIN;
                        continue;
                    }
                    Err(LinkError::SelfConnect) => {
                        // Keep trying (slowly): a reflected handshake looks the same.
                        slot.set_error("this address is the node itself");
                        slot.end_initial_wait("gave up: this address is the node itself");
                        backoff = BACKOFF_MAX;
                    }
                    // Any other end before the first sync completed (refused handshake, a
                    // peer that accepts and closes or never answers, a link lost in the middle
                    // of the snapshot) ends the wait: what arrived stays, the rest comes when
                    // the link is back.
                    Err(e) => slot.end_initial_wait(&format!("gave up: {e}")),
                    Ok(()) => slot.end_initial_wait("gave up: link closed"),
                }
                let syncs_after = slot.full_syncs.load(Ordering::Relaxed)
                    + slot.partial_syncs.load(Ordering::Relaxed);
                if syncs_after > syncs_before && !skewed {
                    // The link worked: reconnect quickly after a break.
                    backoff = BACKOFF_MIN;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(jitter(backoff)) => {}
            _ = shutdown.changed() => return,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

async fn connect(
    slot: &Slot,
    host: &str,
    port: u16,
    loopback_only: bool,
) -> std::io::Result<TcpStream> {
    let addrs = dialable(host, resolve(host, port).await?, loopback_only)?;
    if !addrs.is_empty() {
        *slot.resolved.lock() = addrs.clone();
    }
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "name resolved to no address");
    for a in addrs {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(a)).await {
            Ok(Ok(s)) => return Ok(s),
            Ok(Err(e)) => last = e,
            Err(_) => last = std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"),
        }
    }
    Err(last)
}

/// The addresses a dialer may use. Without encryption (no secret, no certificates, no
/// --repl-insecure) only loopback ones: the start-up check saw the name on loopback, but a name
/// is resolved again at every dial and may point elsewhere by then, and a plaintext link would
/// carry the whole cache in clear.
fn dialable(
    host: &str,
    addrs: Vec<SocketAddr>,
    loopback_only: bool,
) -> std::io::Result<Vec<SocketAddr>> {
    if !loopback_only {
        return Ok(addrs);
    }
    let total = addrs.len();
    let kept: Vec<SocketAddr> = addrs.into_iter().filter(|a| a.ip().is_loopback()).collect();
    if kept.is_empty() && total > 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "{host} now resolves off loopback; a plaintext link stays on loopback \
                 (give a secret or certificates, or --repl-insecure)"
            ),
        ));
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plaintext_dialer_uses_only_loopback_addresses() {
        let lo: SocketAddr = "127.0.0.1:11212".parse().unwrap();
        let lo6: SocketAddr = "[::1]:11212".parse().unwrap();
        let off: SocketAddr = "192.0.2.7:11212".parse().unwrap();
        assert_eq!(dialable("h", vec![off, lo], true).unwrap(), vec![lo]);
        assert_eq!(dialable("h", vec![lo6], true).unwrap(), vec![lo6]);
        let e = dialable("peer.example", vec![off], true).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied);
        assert!(e
            .to_string()
            .contains("peer.example now resolves off loopback"));
        // Encrypted (or --repl-insecure): every address.
        assert_eq!(dialable("h", vec![off, lo], false).unwrap(), vec![off, lo]);
    }

    #[test]
    fn peer_addresses() {
        assert_eq!(parse_peer("host").unwrap(), ("host".into(), 11212));
        assert_eq!(parse_peer("host:1234").unwrap(), ("host".into(), 1234));
        assert_eq!(parse_peer("[::1]:99").unwrap(), ("::1".into(), 99));
        assert_eq!(parse_peer("[::1]").unwrap(), ("::1".into(), 11212));
        assert_eq!(parse_peer("::1").unwrap(), ("::1".into(), 11212));
        assert!(parse_peer("host:x").is_err());
        assert!(parse_peer("").is_err());
        assert!(parse_peer(":5").is_err());
    }
}
