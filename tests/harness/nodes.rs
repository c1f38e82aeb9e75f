//! In-process replication nodes (a Store and a Replicator over loopback TCP), a TCP proxy that
//! can cut, freeze or delay a link, content dumps, and async polling with a deadline.

use parking_lot::Mutex;
use repcached::config::Config;
use repcached::replication::{random_node_id, Replicator};
use repcached::store::{unix_now, SnapshotEntry, Store, StoreConfig};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// One in-process node: its store and replicator.
pub struct Node {
    pub store: Arc<Store>,
    pub repl: Replicator,
    pub addr: SocketAddr,
}

pub struct NodeOpts {
    pub peers: Vec<String>,
    pub secret: Option<PathBuf>,
    pub backlog: usize,
    /// Bind this address (e.g. to restart a node on the same port); None = 127.0.0.1:0.
    pub bind: Option<SocketAddr>,
    /// -I of this node.
    pub item_size_max: usize,
    /// -m of this node.
    pub mem_limit: usize,
}

impl Default for NodeOpts {
    fn default() -> Self {
        NodeOpts {
            peers: Vec::new(),
            secret: None,
            backlog: 16 * 1024 * 1024,
            bind: None,
            item_size_max: 1024 * 1024,
            mem_limit: 64 * 1024 * 1024,
        }
    }
}

pub fn bind_free() -> std::net::TcpListener {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0")
}

pub async fn start_node(opts: NodeOpts) -> Node {
    let listener = match opts.bind {
        Some(a) => bind_retry(a).await,
        None => bind_free(),
    };
    start_node_on(opts, listener).await
}

/// Rebinding a port that a stopped node just closed can briefly fail; retry for a while.
async fn bind_retry(a: SocketAddr) -> std::net::TcpListener {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match std::net::TcpListener::bind(a) {
            Ok(l) => return l,
            Err(e) if Instant::now() > deadline => panic!("bind {a}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

pub async fn start_node_on(opts: NodeOpts, listener: std::net::TcpListener) -> Node {
    let store = Arc::new(Store::new(StoreConfig {
        node_id: random_node_id(),
        item_size_max: opts.item_size_max,
        mem_limit: opts.mem_limit,
        ..Default::default()
    }));
    let config = Config {
        peers: opts.peers,
        repl_secret_file: opts.secret,
        repl_backlog_size: opts.backlog,
        ..Default::default()
    };
    let addr = listener.local_addr().expect("local addr");
    let repl = Replicator::start_with_listener(&config, store.clone(), Some(listener))
        .await
        .expect("start replicator");
    Node { store, repl, addr }
}

impl Node {
    pub fn peer_name(&self) -> String {
        self.addr.to_string()
    }

    pub fn set(&self, key: &str, value: &str) {
        self.store
            .entry(key.as_bytes())
            .put(
                &[value.as_bytes()],
                0,
                repcached::store::Expiry::Never,
                None,
            )
            .expect("put");
    }

    pub fn get(&self, key: &str) -> Option<String> {
        self.store
            .entry(key.as_bytes())
            .item()
            .map(|it| String::from_utf8_lossy(it.value()).into_owned())
    }

    pub fn delete(&self, key: &str) -> bool {
        self.store.entry(key.as_bytes()).delete()
    }

    pub fn stat(&self, name: &str) -> Option<String> {
        self.repl
            .general_stats()
            .into_iter()
            .chain(self.repl.replication_stats())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.to_string())
    }

    pub fn stat_u64(&self, name: &str) -> u64 {
        self.stat(name).and_then(|v| v.parse().ok()).unwrap_or(0)
    }

    /// Every live item: key -> (value, flags, exptime).
    pub fn dump(&self) -> BTreeMap<Vec<u8>, (Vec<u8>, u32, u32)> {
        dump(&self.store)
    }
}

pub fn dump(store: &Store) -> BTreeMap<Vec<u8>, (Vec<u8>, u32, u32)> {
    let mut out = BTreeMap::new();
    for i in 0..store.shard_count() {
        store.snapshot_shard(i, |e| {
            if let SnapshotEntry::Item(it, _) = e {
                out.insert(
                    it.key().to_vec(),
                    (it.value().to_vec(), it.flags(), it.exptime()),
                );
            }
        });
    }
    out
}

/// Compares two dumps key by key; expiry times may differ by the second the transfer took.
pub fn same_contents(a: &Node, b: &Node) -> Result<(), String> {
    let (da, db) = (a.dump(), b.dump());
    for (k, (va, fa, ea)) in &da {
        match db.get(k) {
            None => {
                return Err(format!(
                    "{} only on the first node",
                    String::from_utf8_lossy(k)
                ))
            }
            Some((vb, fb, eb)) => {
                if va != vb || fa != fb || ea.abs_diff(*eb) > 2 || (*ea == 0) != (*eb == 0) {
                    return Err(format!(
                        "{} differs: {:?}/{fa}/{ea} vs {:?}/{fb}/{eb}",
                        String::from_utf8_lossy(k),
                        String::from_utf8_lossy(va),
                        String::from_utf8_lossy(vb)
                    ));
                }
            }
        }
    }
    if let Some(k) = db.keys().find(|k| !da.contains_key(*k)) {
        return Err(format!(
            "{} only on the second node",
            String::from_utf8_lossy(k)
        ));
    }
    Ok(())
}

/// Polls `f` until it holds or `secs` pass; returns whether it held.
pub async fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until both nodes hold the same contents (and `secs` pass without it = panic).
pub async fn converge(a: &Node, b: &Node, secs: u64) {
    let mut last = String::new();
    let ok = eventually(secs, || match same_contents(a, b) {
        Ok(()) => true,
        Err(e) => {
            last = e;
            false
        }
    })
    .await;
    assert!(ok, "nodes did not converge: {last}");
}

pub fn write_secret(name: &str, secret: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "repcached-test-{}-{}",
        std::process::id(),
        unix_now()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, format!("{secret}\n")).expect("write secret");
    path
}

/// A TCP proxy between two nodes that a test can cut (close every connection and refuse new
/// ones), freeze (stop forwarding but keep connections open: a silent network) and restore.
pub struct Proxy {
    pub addr: SocketAddr,
    enabled: Arc<AtomicBool>,
    frozen: Arc<AtomicBool>,
    pipes: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Proxy {
        Self::start_with_delay(target, Duration::ZERO).await
    }

    /// A proxy that delays every byte by `delay` in each direction (a long-distance link).
    pub async fn start_with_delay(target: SocketAddr, delay: Duration) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let enabled = Arc::new(AtomicBool::new(true));
        let frozen = Arc::new(AtomicBool::new(false));
        let pipes: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::new(Mutex::new(Vec::new()));
        let (en, fr, ps) = (enabled.clone(), frozen.clone(), pipes.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                if !en.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(target).await else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                let mut ps = ps.lock();
                ps.retain(|h| !h.is_finished());
                for (r, w) in [(cr, sw), (sr, cw)] {
                    if delay.is_zero() {
                        ps.push(tokio::spawn(pipe(r, w, fr.clone())));
                    } else {
                        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                        ps.push(tokio::spawn(delay_in(r, tx, delay)));
                        ps.push(tokio::spawn(delay_out(rx, w)));
                    }
                }
            }
        });
        Proxy {
            addr,
            enabled,
            frozen,
            pipes,
            accept,
        }
    }

    /// Closes every proxied connection and refuses new ones.
    pub fn cut(&self) {
        self.enabled.store(false, Ordering::SeqCst);
        for p in self.pipes.lock().drain(..) {
            p.abort();
        }
    }

    /// Stops forwarding without closing anything, like a network that silently drops packets.
    pub fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }

    pub fn restore(&self) {
        self.frozen.store(false, Ordering::SeqCst);
        self.enabled.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        for p in self.pipes.lock().drain(..) {
            p.abort();
        }
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        while frozen.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        while frozen.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

async fn delay_in(
    mut from: tokio::net::tcp::OwnedReadHalf,
    tx: tokio::sync::mpsc::UnboundedSender<(Instant, Vec<u8>)>,
    delay: Duration,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tx
                    .send((Instant::now() + delay, buf[..n].to_vec()))
                    .is_err()
                {
                    break;
                }
            }
        }
    }
}

async fn delay_out(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<(Instant, Vec<u8>)>,
    mut to: tokio::net::tcp::OwnedWriteHalf,
) {
    while let Some((due, bytes)) = rx.recv().await {
        tokio::time::sleep_until(due).await;
        if to.write_all(&bytes).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
