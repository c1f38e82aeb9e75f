//! What [`Replicator::start`](super::Replicator::start) takes from the configuration, checked
//! before anything runs: the listen address, the secret file (readable, not empty, enough key
//! material), the channel's security (secret or certificates) and its TLS peer names, and the
//! rule that a plaintext link stays on loopback unless --repl-insecure says otherwise.

use super::dialer::{resolve, ResolvedPeer};
use super::secure::{self, Security};
use super::shared::ReplError;
use crate::config::Config;
use std::net::{IpAddr, SocketAddr};
use tokio::net::TcpListener;

/// The address the replication listener binds: --repl-listen, else the first -l, else any.
async fn listen_ip(config: &Config) -> Result<IpAddr, ReplError> {
    let name = config
        .repl_listen
        .clone()
        .or_else(|| config.listen.first().cloned())
        .unwrap_or_else(|| "0.0.0.0".to_string());
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(ip);
    }
    if let Ok(sa) = name.parse::<SocketAddr>() {
        return Ok(sa.ip());
    }
    let host = name.trim_start_matches('[').trim_end_matches(']');
    resolve(host, 0)
        .await
        .ok()
        .and_then(|v| v.first().map(|a| a.ip()))
        .ok_or(ReplError::BadListen(name))
}

/// Binds the replication listener of -X (and --repl-listen or -l).
pub(super) async fn bind_listener(config: &Config) -> Result<std::net::TcpListener, ReplError> {
    let ip = listen_ip(config).await?;
    let addr = SocketAddr::new(ip, config.repl_port);
    std::net::TcpListener::bind(addr).map_err(|source| ReplError::Bind {
        addr: addr.to_string(),
        source,
    })
}

/// A listener bound by the caller (or [`bind_listener`]), handed to tokio.
pub(super) fn adopt_listener(
    l: std::net::TcpListener,
) -> Result<(TcpListener, SocketAddr), ReplError> {
    let addr = l.local_addr().map_err(|source| ReplError::Bind {
        addr: "?".into(),
        source,
    })?;
    l.set_nonblocking(true).map_err(|source| ReplError::Bind {
        addr: addr.to_string(),
        source,
    })?;
    let l = TcpListener::from_std(l).map_err(|source| ReplError::Bind {
        addr: addr.to_string(),
        source,
    })?;
    Ok((l, addr))
}

/// --repl-secret-file's content: readable, not empty, and with enough key material.
pub(super) fn read_secret(config: &Config) -> Result<Option<Vec<u8>>, ReplError> {
    let Some(path) = &config.repl_secret_file else {
        return Ok(None);
    };
    let s = secure::load_secret(path).map_err(|source| ReplError::Secret {
        path: path.display().to_string(),
        source,
    })?;
    if s.is_empty() {
        return Err(ReplError::EmptySecret(path.display().to_string()));
    }
    let bits = crate::config::secret_bits(&s);
    if bits < crate::config::MIN_SECRET_BITS {
        return Err(ReplError::WeakSecret {
            path: path.display().to_string(),
            bits,
        });
    }
    Ok(Some(s))
}

/// How links are secured: certificates when all three files are given, else the secret, else
/// plaintext; --repl-tls-peer-name needs certificates and must be usable as a TLS name.
pub(super) fn channel_security(
    config: &Config,
    secret: Option<&[u8]>,
) -> Result<Security, ReplError> {
    let security = match (
        &config.repl_tls_cert,
        &config.repl_tls_key,
        &config.repl_tls_ca,
    ) {
        (Some(cert), Some(key), Some(ca)) => {
            Security::from_tls_files(cert, key, ca).map_err(ReplError::Tls)?
        }
        _ => match secret {
            Some(s) => Security::from_secret(s),
            None => Security::Plain,
        },
    };
    if !config.repl_tls_peer_names.is_empty() && !matches!(security, Security::MutualTls { .. }) {
        return Err(ReplError::Tls(
            "--repl-tls-peer-name needs certificates (--repl-tls-cert, --repl-tls-key, \
             --repl-tls-ca)"
                .into(),
        ));
    }
    for name in &config.repl_tls_peer_names {
        if rustls::pki_types::ServerName::try_from(name.as_str()).is_err() {
            return Err(ReplError::Tls(format!(
                "--repl-tls-peer-name {name:?} is neither a DNS name nor an IP address"
            )));
        }
    }
    Ok(security)
}

/// Without encryption (and without --repl-insecure) the listener and every configured peer
/// must be on loopback: a plaintext link would carry the whole cache in clear.
pub(super) fn check_plaintext(
    security: &Security,
    insecure: bool,
    listen: Option<SocketAddr>,
    peers: &[ResolvedPeer],
) -> Result<(), ReplError> {
    if !matches!(security, Security::Plain) || insecure {
        return Ok(());
    }
    if let Some(addr) = listen {
        if !addr.ip().is_loopback() {
            return Err(ReplError::Insecure(addr.to_string()));
        }
    }
    for p in peers {
        if !p.on_loopback() {
            return Err(ReplError::Insecure(p.name.clone()));
        }
    }
    Ok(())
}
