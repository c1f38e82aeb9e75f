//! The dialers: one task per configured peer keeps a link to it up (resolve its name, connect,
//! run the link, back off, again), and the name resolution the start-up checks share.

use super::link::{self, Dir, LinkError};
use super::peers::{LinkState, PeerSlot, Slot};
use super::random;
use super::shared::{parse_peer, ReplError, Shared};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(3);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

pub(super) async fn resolve(host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    Ok(tokio::net::lookup_host((host, port)).await?.collect())
}

/// A configured peer (-x, or the list SIGHUP reloads): its name as given, host and port, and
/// the addresses the name resolved to (none if it did not resolve now).
pub(super) struct ResolvedPeer {
    pub(super) name: String,
    host: String,
    port: u16,
    pub(super) addrs: Vec<SocketAddr>,
}

impl ResolvedPeer {
    /// Parses `HOST[:PORT]` (an error if invalid) and resolves it (no addresses if that fails).
    pub(super) async fn resolve(name: &str) -> Result<ResolvedPeer, ReplError> {
        let (host, port) = parse_peer(name)?;
        let addrs = resolve(&host, port).await.unwrap_or_default();
        Ok(ResolvedPeer {
            name: name.trim().to_string(),
            host,
            port,
            addrs,
        })
    }

    /// Whether the name resolved, and only to loopback addresses (a plaintext link may go there).
    pub(super) fn on_loopback(&self) -> bool {
        !self.addrs.is_empty() && self.addrs.iter().all(|a| a.ip().is_loopback())
    }
}

/// Gives `peer` a slot (a `stats replication` row) and starts its dial loop.
pub(super) fn spawn(sh: &Arc<Shared>, peer: ResolvedPeer) -> JoinHandle<()> {
    let slot = Arc::new(PeerSlot::new(peer.name, true));
    *slot.resolved.lock() = peer.addrs;
    sh.slots.lock().push(slot.clone());
    tokio::spawn(dial_loop(sh.clone(), slot, peer.host, peer.port))
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
}
