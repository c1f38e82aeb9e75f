//! The replication flags (`-x`, `-X`, `--repl-*`) and `--metrics-listen`, which sits among
//! them in the flag table and is checked in their order: peers, port, metrics address,
//! replication listener, backlog, sync wait, tombstone time, clock skew, and the one way
//! (secret file or mutual TLS) a link is secured.

use super::cli::Cli;
use super::error::{invalid, ConfigError};
use super::network::{check_host_port, check_listen, metrics_addr, parse_port, split_list};
use super::resources::parse_size;
use super::types::Config;
use std::time::Duration;

/// The checked replication and monitoring values that are not copied from [`Cli`] as they are.
/// The backlog size stays `u64` until the `Config` is assembled.
pub(super) struct Replication {
    pub(super) peers: Vec<String>,
    pub(super) repl_port: u16,
    pub(super) metrics_listen: Option<String>,
    pub(super) repl_backlog_size: u64,
    pub(super) repl_sync_wait: Duration,
    pub(super) repl_tombstone_time: Duration,
    pub(super) repl_max_clock_skew: Duration,
    pub(super) repl_tls_peer_names: Vec<String>,
}

impl Cli {
    pub(super) fn replication(&self, defaults: &Config) -> Result<Replication, ConfigError> {
        let peers = split_list(&self.peer);
        for peer in &peers {
            check_host_port(peer)
                .map_err(|why| invalid(format!("invalid peer '{peer}' for -x: {why}")))?;
        }
        let repl_port = match &self.repl_port {
            Some(v) => parse_port(v, "-X")?,
            None => defaults.repl_port,
        };
        let metrics_listen = match &self.metrics_listen {
            Some(v) => Some(metrics_addr(v)?),
            None => None,
        };
        if let Some(addr) = &self.repl_listen {
            check_listen(addr)?;
        }
        let repl_backlog_size = match &self.repl_backlog_size {
            Some(v) => match parse_size(v, 1) {
                Some(n) if n > 0 => n,
                _ => {
                    return Err(invalid(format!(
                        "invalid size '{v}' for --repl-backlog-size: expected a size like 64m"
                    )))
                }
            },
            None => defaults.repl_backlog_size as u64,
        };
        let repl_sync_wait = match &self.repl_sync_wait {
            Some(v) => Duration::from_secs(v.trim().parse::<u64>().map_err(|_| {
                invalid(format!(
                    "invalid value '{v}' for --repl-sync-wait: expected whole seconds"
                ))
            })?),
            None => defaults.repl_sync_wait,
        };
        let repl_tombstone_time = match &self.repl_tombstone_time {
            Some(v) => match v.trim().parse::<u32>() {
                Ok(s) if s > 0 => Duration::from_secs(s as u64),
                _ => {
                    return Err(invalid(format!(
                        "invalid value '{v}' for --repl-tombstone-time: expected whole seconds > 0"
                    )))
                }
            },
            None => defaults.repl_tombstone_time,
        };
        let repl_max_clock_skew = match &self.repl_max_clock_skew {
            Some(v) => match v.trim().parse::<u64>() {
                Ok(s) if s > 0 => Duration::from_secs(s),
                _ => {
                    return Err(invalid(format!(
                        "invalid value '{v}' for --repl-max-clock-skew: expected whole seconds > 0"
                    )))
                }
            },
            None => defaults.repl_max_clock_skew,
        };
        let repl_tls_peer_names = self.link_security()?;
        Ok(Replication {
            peers,
            repl_port,
            metrics_listen,
            repl_backlog_size,
            repl_sync_wait,
            repl_tombstone_time,
            repl_max_clock_skew,
            repl_tls_peer_names,
        })
    }

    /// `--repl-tls-cert`, `--repl-tls-key` and `--repl-tls-ca` all or none, and not with
    /// `--repl-secret-file`; returns the `--repl-tls-peer-name` list.
    fn link_security(&self) -> Result<Vec<String>, ConfigError> {
        let tls_files = [&self.repl_tls_cert, &self.repl_tls_key, &self.repl_tls_ca];
        let tls_given = tls_files.iter().filter(|f| f.is_some()).count();
        if tls_given != 0 && tls_given != 3 {
            return Err(invalid(
                "--repl-tls-cert, --repl-tls-key and --repl-tls-ca go together: give all three"
                    .to_string(),
            ));
        }
        let repl_tls_peer_names = split_list(&self.repl_tls_peer_name);
        if tls_given == 3 && self.repl_secret_file.is_some() {
            return Err(invalid(
                "choose one way to secure replication: --repl-secret-file or --repl-tls-*"
                    .to_string(),
            ));
        }
        Ok(repl_tls_peer_names)
    }
}
