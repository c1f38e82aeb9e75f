//! Master-master replication: peer links, handshake and authentication, frame codec, backlog,
//! full and incremental sync. (Placeholder until the replication issue lands.)

use crate::config::Config;
use crate::store::Store;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ReplError {
    #[error("replication is not implemented yet")]
    NotImplemented,
}

pub struct Replicator;

impl Replicator {
    pub async fn start(_config: &Config, _store: Arc<Store>) -> Result<Replicator, ReplError> {
        Ok(Replicator)
    }
    pub async fn wait_initial_sync(&self, _timeout: Duration) {}
    pub fn general_stats(&self) -> Vec<(String, String)> {
        Vec::new()
    }
    pub fn replication_stats(&self) -> Vec<(String, String)> {
        Vec::new()
    }
    pub async fn shutdown(&self) {}
}
