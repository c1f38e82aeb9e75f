//! [`Replicator`], what the server holds of replication: it starts the listener and the dialers
//! over the shared state, applies a new peer list (SIGHUP), waits for the initial sync before
//! the server answers clients, hands out the stats lines, and shuts the links down.

use super::backlog::{Backlog, BacklogSink};
use super::budget;
use super::dialer::{self, ResolvedPeer};
use super::frame;
use super::listener::accept_loop;
use super::peers::{LinkState, Slot};
use super::random;
use super::report;
use super::secure::Security;
use super::setup;
use super::shared::{ReplError, Shared, Totals};
use crate::config::Config;
use crate::store::Store;
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

/// How long `shutdown` waits for links to send what is queued.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(3);

/// This node's replication: the listener, a dial loop per configured peer, and the state every
/// link shares.
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
            Some(setup::bind_listener(config).await?)
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
        let secret = setup::read_secret(config)?;
        let listener = listener.map(setup::adopt_listener).transpose()?;
        // Peers: parse and resolve now, both to fail early on typos and for the loopback check.
        let mut peers = Vec::new();
        for p in &config.peers {
            peers.push(ResolvedPeer::resolve(p).await?);
        }
        let security = setup::channel_security(config, secret.as_deref())?;
        setup::check_plaintext(
            &security,
            config.repl_insecure,
            listener.as_ref().map(|(_, a)| *a),
            &peers,
        )?;

        let run = random::random_u64();
        let backlog = Arc::new(Backlog::new(run, config.repl_backlog_size.max(64 * 1024)));
        let (shutdown, _) = watch::channel(false);
        let sh = Arc::new(Shared {
            store: store.clone(),
            node_id: store.node_id(),
            plain_loopback_only: matches!(security, Security::Plain) && !config.repl_insecure,
            security,
            tls_peer_names: config.repl_tls_peer_names.clone(),
            budget: Arc::new(budget::HandshakeBudget::default()),
            failure_log: budget::FailureLog::default(),
            max_skew_ms: config.repl_max_clock_skew.as_millis() as u64,
            limits: frame::FrameLimits {
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
        for peer in peers {
            dialers.insert(peer.name.clone(), dialer::spawn(&sh, peer));
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
        let mut wanted: Vec<ResolvedPeer> = Vec::new();
        for p in peers {
            let name = p.trim();
            if wanted.iter().any(|w| w.name == name) {
                continue;
            }
            let peer = ResolvedPeer::resolve(name).await?;
            if matches!(self.sh.security, Security::Plain)
                && !self.insecure_ok
                && !peer.on_loopback()
            {
                return Err(ReplError::Insecure(peer.name));
            }
            wanted.push(peer);
        }
        let mut changes = PeerChanges::default();
        let mut dialers = self.dialers.lock();
        let current: Vec<String> = dialers.keys().cloned().collect();
        for name in current {
            if wanted.iter().any(|w| w.name == name) {
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
        for peer in wanted {
            if dialers.contains_key(&peer.name) {
                continue;
            }
            let name = peer.name.clone();
            dialers.insert(name.clone(), dialer::spawn(&self.sh, peer));
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
    pub fn general_stats(&self) -> Vec<(String, report::ReportValue)> {
        report::general_stats(&self.sh)
    }

    /// `stats replication`: one group of `peerN:` lines per peer.
    pub fn replication_stats(&self) -> Vec<(String, report::ReportValue)> {
        report::replication_stats(&self.sh)
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
