//! Certificate mode: TLS 1.3 with certificates on both sides (rustls). The configurations built
//! from the PEM files, the handshake (the dialer is the TLS client and checks the name it
//! dialed), and the check after it that the peer's certificate carries both extended key usages
//! ([`PeerCert`], whose names the link maps to a peer).

use super::error::SecureError;
use super::preamble::Role;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, TrustAnchor, UnixTime};
use std::io;
use std::path::Path;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::TlsStream;

const ALPN: &[u8] = b"repcached-repl/2";
/// id-kp-serverAuth and id-kp-clientAuth (RFC 5280 4.2.1.12), DER-encoded OID contents.
const EKU_SERVER_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];
const EKU_CLIENT_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02];

/// What certificate mode needs on every link: both rustls configurations, and what the
/// extended-key-usage check after the handshake verifies against (the same CA and algorithms
/// rustls used).
pub(super) struct TlsConfigs {
    pub(super) client: Arc<rustls::ClientConfig>,
    pub(super) server: Arc<rustls::ServerConfig>,
    pub(super) anchors: Arc<Vec<TrustAnchor<'static>>>,
    pub(super) algs: &'static [&'static dyn rustls::pki_types::SignatureVerificationAlgorithm],
}

impl TlsConfigs {
    /// From PEM files: our chain and key, and the CA the peers chain to.
    pub(super) fn from_files(cert: &Path, key: &Path, ca: &Path) -> Result<TlsConfigs, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = load_certs(cert)?;
        let key = load_key(key)?;
        let mut roots = rustls::RootCertStore::empty();
        let mut anchors = Vec::new();
        for c in load_certs(ca)? {
            let anchor = webpki::anchor_from_trusted_cert(&c)
                .map_err(|e| format!("{}: not a usable CA certificate: {e}", ca.display()))?
                .to_owned();
            anchors.push(anchor);
            roots
                .add(c)
                .map_err(|e| format!("{}: not a usable CA certificate: {e}", ca.display()))?;
        }
        let algs = provider.signature_verification_algorithms.all;
        let roots = Arc::new(roots);
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.clone(),
            provider.clone(),
        )
        .build()
        .map_err(|e| format!("{}: {e}", ca.display()))?;
        let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| e.to_string())?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| format!("{}: {e}", cert.display()))?;
        server.alpn_protocols = vec![ALPN.to_vec()];
        let mut client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("{}: {e}", cert.display()))?;
        client.alpn_protocols = vec![ALPN.to_vec()];
        Ok(TlsConfigs {
            client: Arc::new(client),
            server: Arc::new(server),
            anchors: Arc::new(anchors),
            algs,
        })
    }
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let data = crate::config::read_secret_file(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut &data[..])
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: bad PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in PEM file", path.display()));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let data = crate::config::read_secret_file(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    rustls_pemfile::private_key(&mut &data[..])
        .map_err(|e| format!("{}: bad PEM: {e}", path.display()))?
        .ok_or_else(|| format!("{}: no private key in PEM file", path.display()))
}

/// The end-entity certificate a TLS peer presented, checked to chain to our CA and to carry
/// both extended key usages.
pub struct PeerCert(CertificateDer<'static>);

impl PeerCert {
    /// Whether the certificate names `host` (a DNS name or an IP address) in its subject
    /// alternative names, by the same rules as rustls' server name check.
    pub fn is_valid_for(&self, host: &str) -> bool {
        let host = host.trim().trim_start_matches('[').trim_end_matches(']');
        let Ok(name) = ServerName::try_from(host) else {
            return false;
        };
        webpki::EndEntityCert::try_from(&self.0)
            .is_ok_and(|c| c.verify_is_valid_for_subject_name(&name).is_ok())
    }
}

/// Checks that the peer's certificate (`chain[0]`, intermediates after it) chains to `anchors`
/// for serverAuth and for clientAuth, both required to be listed: every peer both dials and
/// accepts, and rustls alone accepts a certificate that lists only the usage of its own role.
fn check_peer_chain(
    chain: Option<&[CertificateDer<'static>]>,
    anchors: &[TrustAnchor<'static>],
    algs: &[&'static dyn rustls::pki_types::SignatureVerificationAlgorithm],
) -> Result<PeerCert, SecureError> {
    let refused = |why: String| SecureError::NotAPeerCertificate(why);
    let Some((leaf, intermediates)) = chain.and_then(|c| c.split_first()) else {
        return Err(refused("no certificate".into()));
    };
    let ee = webpki::EndEntityCert::try_from(leaf).map_err(|e| refused(e.to_string()))?;
    let now = UnixTime::now();
    for (oid, name) in [
        (EKU_SERVER_AUTH, "serverAuth"),
        (EKU_CLIENT_AUTH, "clientAuth"),
    ] {
        ee.verify_for_usage(
            algs,
            anchors,
            intermediates,
            now,
            webpki::KeyUsage::required(oid),
            None,
            None,
        )
        .map_err(|e| {
            refused(format!(
                "a replication peer's certificate needs both serverAuth and clientAuth \
                 extended key usage ({name}: {e})"
            ))
        })?;
    }
    Ok(PeerCert(leaf.clone()))
}

/// The TLS handshake on `stream` (after the preambles) and the peer certificate's checks.
pub(super) async fn tls_handshake(
    stream: TcpStream,
    role: Role,
    server_name: &str,
    client: &Arc<rustls::ClientConfig>,
    server: &Arc<rustls::ServerConfig>,
    anchors: &[TrustAnchor<'static>],
    algs: &[&'static dyn rustls::pki_types::SignatureVerificationAlgorithm],
) -> Result<(TlsStream<TcpStream>, PeerCert), SecureError> {
    let tls: TlsStream<TcpStream> = match role {
        Role::Dialer => {
            let name = ServerName::try_from(server_name.to_string())
                .map_err(|_| SecureError::ServerName(server_name.to_string()))?;
            tokio_rustls::TlsConnector::from(client.clone())
                .connect(name, stream)
                .await
                .map_err(tls_error)?
                .into()
        }
        Role::Acceptor => tokio_rustls::TlsAcceptor::from(server.clone())
            .accept(stream)
            .await
            .map_err(tls_error)?
            .into(),
    };
    let (_, conn) = tls.get_ref();
    let cert = check_peer_chain(conn.peer_certificates(), anchors, algs)?;
    Ok((tls, cert))
}

fn tls_error(e: io::Error) -> SecureError {
    // rustls reports handshake failures (bad certificate, unknown CA, ...) as InvalidData;
    // anything else is the network.
    if e.kind() == io::ErrorKind::InvalidData {
        SecureError::Tls(e.to_string())
    } else {
        SecureError::Io(e)
    }
}
