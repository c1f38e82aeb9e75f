//! Command line and configuration file: memcached-compatible flags plus the replication flags.

use std::path::PathBuf;
use std::time::Duration;

/// Everything the server needs to start; built from the command line and `--config FILE`.
#[derive(Debug, Clone)]
pub struct Config {
    /// -p: TCP port (0 = pick a free one, used by tests).
    pub port: u16,
    /// -U: UDP port, 0 = off.
    pub udp_port: u16,
    /// -l: interfaces to listen on (already split on commas).
    pub listen: Vec<String>,
    /// -m: memory limit in bytes.
    pub memory_limit: usize,
    /// -c: max simultaneous connections.
    pub max_connections: usize,
    /// -t: worker threads.
    pub threads: usize,
    /// -I: largest item value in bytes.
    pub item_size_max: usize,
    /// -M: answer "SERVER_ERROR out of memory" instead of evicting.
    pub no_evict: bool,
    /// -A: allow the `shutdown` command.
    pub enable_shutdown: bool,
    /// -F: disable flush_all.
    pub disable_flush: bool,
    /// -C: disable CAS (cas ids are 0).
    pub disable_cas: bool,
    /// -v count (0..=3).
    pub verbosity: u8,
    /// -d: run as a daemon.
    pub daemonize: bool,
    /// -u: user to drop privileges to.
    pub user: Option<String>,
    /// -P: pid file.
    pub pid_file: Option<PathBuf>,
    /// -b: listen backlog.
    pub backlog: u32,
    /// -R: max requests handled per event before yielding to other connections.
    pub reqs_per_event: usize,
    /// -x/--peer: replication peers as HOST[:PORT].
    pub peers: Vec<String>,
    /// -X/--repl-port: replication listener port (0 = no listener).
    pub repl_port: u16,
    /// --repl-listen: address the replication listener binds (defaults to the first -l address).
    pub repl_listen: Option<String>,
    /// --repl-secret-file.
    pub repl_secret_file: Option<PathBuf>,
    /// --repl-insecure: allow unauthenticated replication off loopback.
    pub repl_insecure: bool,
    /// --repl-backlog-size in bytes.
    pub repl_backlog_size: usize,
    /// --repl-sync-wait: how long a starting node waits for its initial sync before serving.
    pub repl_sync_wait: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            port: 11211,
            udp_port: 0,
            listen: Vec::new(),
            memory_limit: 64 * 1024 * 1024,
            max_connections: 1024,
            threads: 4,
            item_size_max: 1024 * 1024,
            no_evict: false,
            enable_shutdown: false,
            disable_flush: false,
            disable_cas: false,
            verbosity: 0,
            daemonize: false,
            user: None,
            pid_file: None,
            backlog: 1024,
            reqs_per_event: 20,
            peers: Vec::new(),
            repl_port: 11212,
            repl_listen: None,
            repl_secret_file: None,
            repl_insecure: false,
            repl_backlog_size: 64 * 1024 * 1024,
            repl_sync_wait: Duration::from_secs(30),
        }
    }
}
