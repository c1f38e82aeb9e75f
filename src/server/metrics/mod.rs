//! The built-in Prometheus endpoint (`--metrics-listen ADDR:PORT`, off by default): the
//! listener, the scrape slots, the lag sampler, and what a scrape renders.
//!
//! It serves the metric names of prometheus memcached_exporter v0.11 (`memcached_*`, see
//! `exporter`), made from the same typed snapshots (`server::stats`) that `stats` prints, so
//! the endpoint and a real exporter scraping the cache port can never disagree; replication
//! metrics (`repcached_repl_*`, see `replication`) from `stats` and `stats replication`, plus a
//! histogram of each peer's lag sampled once a second (`lag`). The HTTP side (`http`) is
//! deliberately tiny. At most [`MAX_CONNS`] scrapes at once; it all runs on the main runtime,
//! never on the workers.

mod exporter;
mod http;
mod lag;
mod prometheus;
mod replication;

pub use http::{MAX_REQUEST, READ_DEADLINE};
pub use lag::LAG_BUCKETS_MS;
pub use replication::PEER_STATES;

use crate::server::shared::ServerState;
use crate::server::stats;
use lag::Lag;
use prometheus::Families;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Scrapes served at once; connections beyond are closed at once.
pub const MAX_CONNS: usize = 16;

/// Accepts scrapes until the task is aborted; samples the replication lag once a second.
pub async fn serve(shared: Arc<ServerState>, listener: TcpListener) {
    let lag = Arc::new(Lag::default());
    let sampler = tokio::spawn(sample_lag(shared.clone(), lag.clone()));
    let _abort = AbortOnDrop(sampler);
    let slots = Arc::new(Semaphore::new(MAX_CONNS));
    loop {
        let sock = match listener.accept().await {
            Ok((sock, _)) => sock,
            Err(e) => {
                tracing::debug!("metrics: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue; // dropped: closed
        };
        let shared = shared.clone();
        let lag = lag.clone();
        tokio::spawn(async move {
            http::handle(sock, || render(&shared, &lag)).await;
            drop(permit);
        });
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn sample_lag(shared: Arc<ServerState>, lag: Arc<Lag>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        if shared.replicator().is_none() {
            return;
        }
        let rows = stats::replication(&shared);
        for p in replication::peer_rows(&rows).values() {
            if let (Some(addr), Some(ms)) = (p.get("addr"), p.get("lag_ms")) {
                if let Ok(ms) = ms.text().parse::<u64>() {
                    lag.observe(&addr.text(), ms);
                }
            }
        }
    }
}

/// Every family, as the endpoint serves them.
fn families(shared: &ServerState, lag: &Lag) -> Families {
    let general = stats::general(shared);
    let slabs = stats::slabs(shared);
    let items = stats::items(shared);
    let settings = stats::settings(shared);
    let grouped = exporter::Grouped::new(&[&general, &slabs, &items]);
    let mut f = Families::default();
    exporter::families(&grouped, &exporter::settings_fields(&settings), &mut f);
    if shared.replicator().is_some() {
        replication::families(&grouped.stats, &stats::replication(shared), &mut f);
        lag.families(&mut f);
    }
    f
}

fn render(shared: &ServerState, lag: &Lag) -> String {
    let mut out = String::with_capacity(16 * 1024);
    families(shared, lag).write(&mut out);
    out
}
