//! The replication listener: accepts connections, charges each to the unauthenticated budget
//! (never refused: a full budget evicts the least advanced pending handshake), waits for its
//! first bytes, and runs it as an incoming link.

use super::budget;
use super::link::{self, Dir};
use super::shared::{canonical_ip, Shared};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

pub(super) async fn accept_loop(sh: Arc<Shared>, listener: TcpListener) {
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
