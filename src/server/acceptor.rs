//! The accept loop (main runtime): refuses connections over `-c`, registers the rest for
//! `stats conns`, does the TLS handshake off the workers, and hands each connection to a worker.

use super::counters::Stats;
use super::shared::{forget, ConnInfo, ServerState};
use super::workers::Workers;
use crate::protocol::reply::TOO_MANY_CONNECTIONS;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

pub async fn accept_loop(shared: Arc<ServerState>, listener: TcpListener, workers: Arc<Workers>) {
    let listen = listener
        .local_addr()
        .map(|a| format!("tcp:{a}"))
        .unwrap_or_default();
    loop {
        let (mut stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let stats = &shared.stats;
        if stats.curr_connections.load(Ordering::Relaxed) as usize >= shared.config.max_connections
        {
            Stats::incr(&stats.rejected_connections);
            tokio::spawn(async move {
                let _ = stream.write_all(TOO_MANY_CONNECTIONS).await;
            });
            continue;
        }
        let _ = stream.set_nodelay(true);
        Stats::incr(&stats.curr_connections);
        Stats::incr(&stats.total_connections);
        let fd = stream.as_raw_fd();
        let info = Arc::new(ConnInfo::new(format!("tcp:{peer}"), listen.clone()));
        shared.conns.lock().insert(fd, info.clone());
        match &shared.tls {
            None => workers.dispatch(&shared, stream, info, fd),
            Some(tls) => {
                // Here, not on a worker: this runtime has the timer the handshake deadline
                // needs, and a slow handshake must not hold up the accept loop.
                let (shared, tls, workers) = (shared.clone(), tls.clone(), workers.clone());
                tokio::spawn(async move {
                    match tls.accept(stream).await {
                        Some(stream) => workers.dispatch_tls(&shared, stream, info, fd),
                        None => forget(&shared, fd),
                    }
                });
            }
        }
    }
}
