//! Client TLS (-Z), memcached 1.6 style: the rustls server configuration built from the ssl_*
//! options, the handshake with its deadline, `refresh_certs`, and the TLS fields of `stats`.
//!
//! The handshake runs on the main runtime, which has timers, so that a client that connects and
//! then sends nothing (or plaintext that never forms a TLS record) is dropped after
//! [`HANDSHAKE_TIMEOUT`]; the worker runtimes have no timer driver (see workers.rs). Once the
//! session is up, its socket is moved to a worker's reactor ([`Socket::rehome`]) and the
//! connection is served there like a plaintext one.

use crate::config::{TlsSettings, TlsVersion, VerifyMode, KEY_FORMAT_DER};
use parking_lot::RwLock;
use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{
    NoServerSessionStorage, ServerSessionMemoryCache, StoresServerSessions, WebPkiClientVerifier,
};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{CipherSuite, RootCertStore, ServerConfig, SupportedCipherSuite};
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// How long a client has from its TCP connect to a finished TLS handshake. memcached has no such
/// limit; without one a silent client would hold a connection slot (-c) for good.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// OpenSSL's default server session cache size (SSL_SESSION_CACHE_MAX_SIZE_DEFAULT).
const SESSION_CACHE_SIZE: usize = 20 * 1024;

/// A TLS session served by a worker.
pub type TlsStream = tokio_rustls::server::TlsStream<Socket>;

/// Why TLS could not be set up; the texts start with memcached's own words where it has them.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("Error loading the certificate chain: {} : {why}", shown(.path))]
    Chain { path: Option<PathBuf>, why: String },
    #[error("Error loading the key: {} : {why}", shown(.path))]
    Key { path: Option<PathBuf>, why: String },
    #[error("Error loading the CA certificate: {} : {why}", shown(.path))]
    Ca { path: Option<PathBuf>, why: String },
    #[error("Error setting the provided cipher(s): {list} ({why})")]
    Ciphers { list: String, why: String },
    #[error("TLS set-up failed: {0}")]
    Rustls(#[from] rustls::Error),
}

/// memcached prints an unset path with printf's "%s", which glibc shows as "(null)".
fn shown(path: &Option<PathBuf>) -> String {
    match path {
        Some(p) => p.display().to_string(),
        None => "(null)".to_string(),
    }
}

/// Everything client TLS needs while the server runs.
pub struct ClientTls {
    settings: TlsSettings,
    provider: Arc<CryptoProvider>,
    /// Replaced as a whole by `refresh_certs`; connections already up keep the one they got.
    config: RwLock<Arc<ServerConfig>>,
    handshake_errors: AtomicU64,
    new_sessions: Arc<AtomicU64>,
    /// Unix time of the last successful load, for `time_since_server_cert_refresh`.
    refreshed_at: AtomicU32,
}

impl ClientTls {
    /// Reads the certificate, key and CA files named by the ssl_* options. `None` without -Z.
    /// The binary calls this before it drops privileges, as memcached reads its key as root.
    pub fn load(settings: &TlsSettings) -> Result<Option<ClientTls>, TlsError> {
        if !settings.enabled {
            return Ok(None);
        }
        let provider = Arc::new(provider(settings)?);
        let new_sessions = Arc::new(AtomicU64::new(0));
        let config = server_config(settings, &provider, &new_sessions)?;
        Ok(Some(ClientTls {
            settings: settings.clone(),
            provider,
            config: RwLock::new(Arc::new(config)),
            handshake_errors: AtomicU64::new(0),
            new_sessions,
            refreshed_at: AtomicU32::new(crate::store::unix_now()),
        }))
    }

    /// `refresh_certs`: reads the files again. New connections use them; on failure the old
    /// ones stay in use and the error is memcached's text for the client.
    pub fn refresh(&self) -> Result<(), TlsError> {
        let config = server_config(&self.settings, &self.provider, &self.new_sessions)?;
        *self.config.write() = Arc::new(config);
        self.refreshed_at
            .store(crate::store::unix_now(), Ordering::Relaxed);
        Ok(())
    }

    /// Runs the server side of a handshake within [`HANDSHAKE_TIMEOUT`]. Failures (bad
    /// records, a plaintext client, a refused certificate, the deadline) are counted and end
    /// the connection; rustls has already queued an alert where TLS has one.
    pub async fn accept(&self, stream: TcpStream) -> Option<TlsStream> {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.config.read().clone());
        let peer = stream.peer_addr().ok();
        let outcome =
            tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(Socket::new(stream))).await;
        let why = match outcome {
            Ok(Ok(tls)) => return Some(tls),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no handshake within {}s", HANDSHAKE_TIMEOUT.as_secs()),
        };
        self.handshake_errors.fetch_add(1, Ordering::Relaxed);
        // Info, not warn: anyone can open the port and send junk.
        tracing::info!("TLS handshake with {peer:?} failed: {why}");
        None
    }

    /// `stats` lines, in memcached's order (only printed with -Z); all counts, so plain numbers
    /// (tls sits below stats in the module graph and cannot name its `Value`).
    pub fn general_stats(&self, now: u32) -> Vec<(&'static str, u64)> {
        let mut out = Vec::new();
        if self.settings.session_cache {
            out.push((
                "ssl_new_sessions",
                self.new_sessions.load(Ordering::Relaxed),
            ));
        }
        out.push((
            "ssl_handshake_errors",
            self.handshake_errors.load(Ordering::Relaxed),
        ));
        out.push((
            "time_since_server_cert_refresh",
            u64::from(now.saturating_sub(self.refreshed_at.load(Ordering::Relaxed))),
        ));
        out
    }

    /// `stats reset` zeroes these in memcached too (they live in its resettable `stats`).
    pub fn reset_stats(&self) {
        self.handshake_errors.store(0, Ordering::Relaxed);
        self.new_sessions.store(0, Ordering::Relaxed);
    }
}

/// `stats settings` lines, in memcached's order; printed with and without -Z, as a TLS build of
/// memcached does.
pub fn settings_stats(tls: &TlsSettings) -> Vec<(&'static str, String)> {
    let yes_no = |b: bool| if b { "yes" } else { "no" }.to_string();
    // memcached prints unset certificate paths with "%s" ("(null)") but unset CA and ciphers
    // as "NULL".
    let or = |p: &Option<PathBuf>, none: &str| {
        p.as_ref()
            .map_or(none.to_string(), |p| p.display().to_string())
    };
    vec![
        ("ssl_enabled", yes_no(tls.enabled)),
        ("ssl_chain_cert", or(&tls.chain_cert, "(null)")),
        ("ssl_key", or(&tls.key, "(null)")),
        (
            "ssl_verify_mode",
            tls.verify_mode.openssl_flags().to_string(),
        ),
        ("ssl_keyformat", tls.key_format.to_string()),
        (
            "ssl_ciphers",
            tls.ciphers.clone().unwrap_or_else(|| "NULL".into()),
        ),
        ("ssl_ca_cert", or(&tls.ca_cert, "NULL")),
        ("ssl_wbuf_size", tls.wbuf_size.to_string()),
        ("ssl_session_cache", yes_no(tls.session_cache)),
        ("ssl_kernel_tls", yes_no(tls.kernel_tls)),
        ("ssl_min_version", tls.min_version.name().to_string()),
    ]
}

/// OpenSSL's names for the TLS 1.2 suites rustls offers; ssl_ciphers is an OpenSSL cipher list.
const OPENSSL_NAMES: &[(&str, CipherSuite)] = &[
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "ECDHE-RSA-AES128-GCM-SHA256",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "ECDHE-RSA-AES256-GCM-SHA384",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "ECDHE-RSA-CHACHA20-POLY1305",
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
];

/// ring's provider, with the TLS 1.2 suites cut down to ssl_ciphers when given. As with
/// OpenSSL's SSL_CTX_set_cipher_list (what memcached calls), the list only governs TLS 1.2;
/// the TLS 1.3 suites stay. Only plain suite names are understood: OpenSSL's keywords and
/// operators (HIGH, !aNULL, @STRENGTH, ...) are refused rather than guessed at.
fn provider(settings: &TlsSettings) -> Result<CryptoProvider, TlsError> {
    let mut provider = ring::default_provider();
    let Some(list) = &settings.ciphers else {
        return Ok(provider);
    };
    let mut wanted = Vec::new();
    for name in list.split([':', ' ']).filter(|n| !n.is_empty()) {
        let suite = OPENSSL_NAMES
            .iter()
            .find(|(openssl, _)| openssl.eq_ignore_ascii_case(name))
            .map(|(_, suite)| *suite)
            .or_else(|| {
                // The IANA name (TLS_ECDHE_RSA_WITH_...) is accepted too.
                provider
                    .cipher_suites
                    .iter()
                    .map(SupportedCipherSuite::suite)
                    .find(|s| s.as_str() == Some(name))
            });
        match suite {
            Some(suite) if !wanted.contains(&suite) => wanted.push(suite),
            Some(_) => {}
            None => {
                let known: Vec<&str> = OPENSSL_NAMES.iter().map(|(n, _)| *n).collect();
                return Err(TlsError::Ciphers {
                    list: list.clone(),
                    why: format!(
                        "'{name}' is not a TLS 1.2 cipher suite repcached offers; use a \
                         colon-separated list of: {}",
                        known.join(":")
                    ),
                });
            }
        }
    }
    if wanted.is_empty() {
        return Err(TlsError::Ciphers {
            list: list.clone(),
            why: "no cipher suite named".into(),
        });
    }
    provider.cipher_suites.retain(|s| match s {
        SupportedCipherSuite::Tls13(_) => true,
        SupportedCipherSuite::Tls12(_) => wanted.contains(&s.suite()),
    });
    Ok(provider)
}

fn server_config(
    settings: &TlsSettings,
    provider: &Arc<CryptoProvider>,
    new_sessions: &Arc<AtomicU64>,
) -> Result<ServerConfig, TlsError> {
    // Loaded and checked in memcached's order: chain, key, key against chain, CA.
    let chain = load_chain(settings.chain_cert.as_deref()).map_err(|why| TlsError::Chain {
        path: settings.chain_cert.clone(),
        why,
    })?;
    let key_error = |why: String| TlsError::Key {
        path: settings.key.clone(),
        why,
    };
    let key = load_key(settings.key.as_deref(), settings.key_format).map_err(key_error)?;
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| key_error(e.to_string()))?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        // OpenSSL's words for it.
        Err(_) => return Err(key_error("key values mismatch".into())),
    }
    let roots = match &settings.ca_cert {
        Some(path) => Some(load_roots(path).map_err(|why| TlsError::Ca {
            path: Some(path.clone()),
            why,
        })?),
        None => None,
    };

    let versions: &[&rustls::SupportedProtocolVersion] = match settings.min_version {
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
        // Config refuses 1.0 and 1.1 before we get here; 1.2 is rustls' floor anyway.
        _ => &[&rustls::version::TLS12, &rustls::version::TLS13],
    };
    let builder =
        ServerConfig::builder_with_provider(provider.clone()).with_protocol_versions(versions)?;
    let builder = match (settings.verify_mode, roots) {
        (VerifyMode::None, _) => builder.with_no_client_auth(),
        (mode, Some(roots)) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            // "Request" lets clients without a certificate in; one that sends a certificate
            // must still chain to the CA, as with OpenSSL's SSL_VERIFY_PEER alone. "Once" only
            // differs from "require" on renegotiation, which rustls never does.
            let verifier = if mode == VerifyMode::Request {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier.build().map_err(|e| TlsError::Ca {
                path: settings.ca_cert.clone(),
                why: e.to_string(),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
        (_, None) => {
            return Err(TlsError::Ca {
                path: None,
                why: "ssl_verify_mode needs ssl_ca_cert".into(),
            })
        }
    };
    let mut config = builder.with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
    if settings.session_cache {
        config.session_storage = Arc::new(CountingSessionCache {
            inner: ServerSessionMemoryCache::new(SESSION_CACHE_SIZE),
            new_sessions: new_sessions.clone(),
        });
    } else {
        // memcached's default: SSL_SESS_CACHE_OFF, every connection does a full handshake.
        config.session_storage = Arc::new(NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
    }
    Ok(config)
}

fn read(path: Option<&Path>, what: &str) -> Result<Vec<u8>, String> {
    let path = path.ok_or_else(|| format!("no {what} given"))?;
    std::fs::read(path).map_err(|e| e.to_string())
}

fn load_chain(path: Option<&Path>) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read(path, "ssl_chain_cert")?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    if chain.is_empty() {
        return Err("no PEM certificate in it".into());
    }
    Ok(chain)
}

fn load_key(path: Option<&Path>, format: i32) -> Result<PrivateKeyDer<'static>, String> {
    let bytes = read(path, "ssl_key")?;
    if format == KEY_FORMAT_DER {
        return PrivateKeyDer::try_from(bytes.as_slice())
            .map(|k| k.clone_key())
            .map_err(|e| format!("not a DER private key: {e}"));
    }
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| e.to_string())
}

fn load_roots(path: &Path) -> Result<RootCertStore, String> {
    let pem = read(Some(path), "ssl_ca_cert")?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| e.to_string())?;
        roots.add(cert).map_err(|e| e.to_string())?;
    }
    if roots.is_empty() {
        return Err("no PEM certificate in it".into());
    }
    Ok(roots)
}

/// rustls' in-memory session cache, counting new sessions for `ssl_new_sessions` (memcached
/// counts them in OpenSSL's new-session callback).
#[derive(Debug)]
struct CountingSessionCache {
    inner: Arc<ServerSessionMemoryCache>,
    new_sessions: Arc<AtomicU64>,
}

impl StoresServerSessions for CountingSessionCache {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        self.new_sessions.fetch_add(1, Ordering::Relaxed);
        self.inner.put(key, value)
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.inner.get(key)
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.inner.take(key)
    }

    fn can_cache(&self) -> bool {
        self.inner.can_cache()
    }
}

/// The TCP socket under a TLS session. tokio ties a socket to the reactor that registered it,
/// and the session is set up on the main runtime but served on a worker's; this wrapper lets
/// the socket be registered again there without taking the session apart (tokio-rustls cannot
/// put a session back together from its pieces).
#[derive(Debug)]
pub struct Socket {
    /// `None` only after a failed [`Socket::rehome`], whose caller then drops the connection.
    inner: Option<TcpStream>,
}

impl Socket {
    fn new(stream: TcpStream) -> Socket {
        Socket {
            inner: Some(stream),
        }
    }

    /// Registers the socket with the reactor of the runtime this is called on. Must run inside
    /// that runtime.
    pub fn rehome(&mut self) -> io::Result<()> {
        let stream = self.inner.take().ok_or_else(gone)?;
        let std = stream.into_std()?;
        self.inner = Some(TcpStream::from_std(std)?);
        Ok(())
    }

    fn stream(self: Pin<&mut Self>) -> io::Result<Pin<&mut TcpStream>> {
        match self.get_mut().inner.as_mut() {
            Some(s) => Ok(Pin::new(s)),
            None => Err(gone()),
        }
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "socket lost while moving it")
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.stream() {
            Ok(s) => s.poll_read(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.stream() {
            Ok(s) => s.poll_write(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.stream() {
            Ok(s) => s.poll_write_vectored(cx, bufs),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.stream() {
            Ok(s) => s.poll_flush(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.stream() {
            Ok(s) => s.poll_shutdown(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

/// Sends close_notify if the socket takes it at once, as memcached's SSL_shutdown on a
/// non-blocking socket does. Never waits: the workers have no timer to bound a wait with.
pub async fn close(stream: &mut TlsStream) {
    use std::future::Future;
    use tokio::io::AsyncWriteExt;
    let mut shutdown = std::pin::pin!(stream.shutdown());
    let _ = std::future::poll_fn(|cx| Poll::Ready(shutdown.as_mut().poll(cx))).await;
}
