//! tokio listeners, one task per connection, stats and shutdown.

pub mod meta_exec;
pub mod stats;

use crate::config::Config;

/// Why the server could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("failed to listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Runs the server until SIGTERM/SIGINT or `shutdown`: builds the tokio runtime with
/// `config.threads` workers, binds every listener, serves. Each listener prints one line to
/// stderr when bound, `repcached: listening on <tcp|udp|repl> <addr>`, so that tests started
/// with port 0 learn the port.
pub fn run(config: Config) -> Result<(), ServerError> {
    let _ = config;
    Err(ServerError::Config("server not implemented yet".into()))
}
