//! The replication side of start-up: whether this node may run a replication link at all
//! (an unauthenticated listener off loopback that nobody asked for is turned off; clients that
//! must log in require an authenticated link), and starting [`Replicator`] with its initial
//! sync, or serving without the listener when its port is this node's client port or taken.

use super::error::ServerError;
use super::listen::split_host_port;
use super::shared::ServerState;
use crate::config::Config;
use crate::replication::Replicator;

/// Refuses or adjusts the replication settings before anything starts: a listener nobody
/// configured that would listen off loopback without a secret is turned off (`repl_port` 0,
/// with a warning), and a plain link is refused when clients must authenticate (unless
/// `--repl-insecure`, which is warned about).
pub(super) fn check_link_security(config: &mut Config) -> Result<(), ServerError> {
    let secured =
        config.repl_secret_file.is_some() || config.repl_tls_cert.is_some() || config.repl_insecure;
    if !secured && !replication_is_local(config) && config.peers.is_empty() && config.repl_port != 0
    {
        // Nobody configured replication: don't expose an unauthenticated listener by default.
        tracing::warn!(
            "replication listener disabled: it would listen off loopback without \
             --repl-secret-file (give a secret, --repl-insecure, or -X 0 to silence this)"
        );
        config.repl_port = 0;
    }
    let replicates = !config.peers.is_empty() || config.repl_port != 0;
    let plain = config.repl_secret_file.is_none() && config.repl_tls_cert.is_none();
    if replicates && plain {
        if let Some(why) = client_auth_required(config) {
            if !config.repl_insecure {
                return Err(ServerError::Config(format!(
                    "clients must authenticate ({why}), so the replication link must too, on \
                     loopback as well: give it a secret (--repl-secret-file FILE; make one with \
                     `{}`) or certificates (--repl-tls-cert, --repl-tls-key, --repl-tls-ca), or \
                     run without a replication listener and peers (-X 0); --repl-insecure \
                     accepts an unauthenticated link anyway",
                    crate::config::MAKE_SECRET
                )));
            }
        }
        if config.repl_insecure {
            tracing::warn!(
                "--repl-insecure: the replication link is neither authenticated nor encrypted; \
                 whoever reaches the replication port reads and writes the whole cache"
            );
        }
    }
    Ok(())
}

/// Starts replication when there are peers or a replication port, waits for the initial sync
/// (`--repl-sync-wait`) and hands the [`Replicator`] to `shared`.
pub(super) async fn start_replication(shared: &ServerState) -> Result<(), ServerError> {
    let config = &shared.config;
    // A peerless node whose client port is the replication port (a second instance started
    // with -p 11212, say) serves its clients on it: the listener nobody asked for gives way.
    let repl_clashes = config.peers.is_empty()
        && config.repl_port != 0
        && [config.port, config.udp_port].contains(&i32::from(config.repl_port));
    if repl_clashes {
        tracing::warn!(
            "replication listener disabled: port {} is this node's client port and no peer is \
             named; give -X PORT for another port",
            config.repl_port
        );
    } else if !config.peers.is_empty() || config.repl_port != 0 {
        match Replicator::start(config, shared.store.clone()).await {
            Ok(repl) => {
                repl.wait_initial_sync(config.repl_sync_wait).await;
                let _ = shared.replicator.set(repl);
            }
            // A node that names no peer only waits for peers to call: when its replication
            // port is taken (another instance on this host has the default 11212), it serves
            // its clients without the listener instead of not starting, as a second memcached
            // on another -p would.
            Err(crate::replication::ReplError::Bind { addr, source })
                if config.peers.is_empty() && source.kind() == std::io::ErrorKind::AddrInUse =>
            {
                tracing::warn!(
                    "replication listener disabled: {addr} is in use ({source}); serving \
                     without replication (give -X PORT for a free port, or -X 0)"
                );
            }
            Err(e) => return Err(ServerError::Replication(e.to_string())),
        }
    }
    Ok(())
}

/// Whether replication may run without a secret: every address involved is loopback
/// (127.0.0.0/8 or ::1, with or without a port or brackets).
fn replication_is_local(config: &Config) -> bool {
    use std::net::ToSocketAddrs;
    let resolves_to_loopback = |host: &str, port: u16| {
        (host, port)
            .to_socket_addrs()
            .map(|mut addrs| addrs.all(|a| a.ip().is_loopback()))
            .unwrap_or(false)
    };
    let listen = config
        .repl_listen
        .clone()
        .or_else(|| config.listen.first().cloned())
        .unwrap_or_else(|| "0.0.0.0".into());
    let (listen_host, _) = split_host_port(&listen);
    let listener_local = config.repl_port == 0 || resolves_to_loopback(listen_host, 0);
    listener_local
        && config.peers.iter().all(|p| {
            crate::replication::parse_peer(p)
                .map(|(host, port)| resolves_to_loopback(&host, port))
                .unwrap_or(false)
        })
}

/// Why clients must authenticate, if they must: -Y, -S, or -Z with client certificates
/// required (`ssl_verify_mode` 2 or 3). -Z alone only encrypts: any local process may use the
/// client port, so a loopback replication link gives it nothing more.
fn client_auth_required(config: &Config) -> Option<&'static str> {
    use crate::config::VerifyMode;
    if config.auth_file.is_some() {
        Some("-Y")
    } else if config.sasl.is_some() {
        Some("-S")
    } else if config.tls.enabled
        && matches!(
            config.tls.verify_mode,
            VerifyMode::Require | VerifyMode::Once
        )
    {
        Some("-Z with ssl_verify_mode 2 or 3")
    } else {
        None
    }
}
