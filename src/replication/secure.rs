//! The secure channel under a replication link: a short preamble, then one of three transports,
//! and the reader/writer halves the link uses afterwards.
//!
//! No cryptography is made here; it comes from two vetted protocols:
//! - **Secret-file mode**: `Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s` (the `snow` crate). Both sides
//!   use fresh ephemeral keys (forward secrecy) and mix in a 32-byte key derived from the secret
//!   file with HKDF-SHA256, so a side that lacks the secret cannot finish the handshake nor read
//!   or forge a single byte after it. Roles are fixed by who dialed: the dialer is the Noise
//!   initiator, the acceptor the responder, so a relay that connects to two nodes' listeners
//!   finds two responders waiting for each other and nothing happens.
//! - **Certificate mode**: TLS 1.3 with certificates on both sides (rustls), both chaining to the
//!   operator's CA; the dialer also checks the name it dialed against the acceptor's certificate
//!   (rustls' server name check: DNS or IP subject alternative names). Each side then requires
//!   the other's certificate to name both extended key usages, serverAuth and clientAuth: a
//!   client-only certificate from the same CA (what a `-Z` client holds) is not a peer. Which
//!   peer a certificate speaks for is decided by the link ([`PeerCert::is_valid_for`]).
//! - **Plain**: no secret, only allowed on loopback or with `--repl-insecure`.
//!
//! The preamble (`RCRPL`, protocol version, mode) lets both ends report a mode mismatch
//! clearly. Both sides bind what they sent and what they received of it into the Noise
//! prologue (dialer's first), so a relay that rewrites either preamble breaks the handshake
//! even where the preamble checks would let the change through.
//! Every message is bounded before it is buffered; the caller bounds the whole handshake in time.

use bytes::{Buf, BufMut, BytesMut};
use hkdf::Hkdf;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, TrustAnchor, UnixTime};
use sha2::Sha256;
use std::io;
use std::path::Path;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::TlsStream;

pub(crate) const PREAMBLE_MAGIC: &[u8; 5] = b"RCRPL";
/// Version of the secure channel (the frame protocol inside has its own).
const CHANNEL_VERSION: u8 = 2;
pub(crate) const PREAMBLE_LEN: usize = 7;
const NOISE_PARAMS: &str = "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s";
/// Start of the Noise prologue; the two preambles follow it (see [`noise_prologue`]). Also the
/// HKDF salt of the pre-shared key.
const NOISE_PROLOGUE: &[u8] = b"repcached replication channel v2, noise-psk";
/// HKDF info: the derived key is used for this protocol and nothing else.
const PSK_INFO: &[u8] = b"repcached replication noise psk v2";
const ALPN: &[u8] = b"repcached-repl/2";
/// Noise's largest message, and the plaintext that fits in it with the 16-byte tag.
const NOISE_MAX_MSG: usize = 65535;
const NOISE_TAG: usize = 16;
const NOISE_MAX_PLAIN: usize = NOISE_MAX_MSG - NOISE_TAG;
/// Handshake messages of NNpsk0 are 48 bytes; anything far larger is not a peer.
const NOISE_MAX_HANDSHAKE_MSG: usize = 1024;
/// id-kp-serverAuth and id-kp-clientAuth (RFC 5280 4.2.1.12), DER-encoded OID contents.
const EKU_SERVER_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];
const EKU_CLIENT_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    Plain = 0,
    NoisePsk = 1,
    MutualTls = 2,
}

impl Mode {
    fn from_u8(v: u8) -> Option<Mode> {
        match v {
            0 => Some(Mode::Plain),
            1 => Some(Mode::NoisePsk),
            2 => Some(Mode::MutualTls),
            _ => None,
        }
    }

    /// For `stats`: none, secret, tls.
    pub fn short_name(self) -> &'static str {
        match self {
            Mode::Plain => "none",
            Mode::NoisePsk => "secret",
            Mode::MutualTls => "tls",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Plain => "no secret (plaintext)",
            Mode::NoisePsk => "shared secret (noise-psk)",
            Mode::MutualTls => "certificates (mutual tls)",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecureError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("not a repcached replication peer (bad preamble)")]
    NotAPeer,
    #[error("peer speaks secure channel version {0}, this node {CHANNEL_VERSION}")]
    Version(u8),
    #[error("peer secures replication with {peer}, this node with {mine}")]
    ModeMismatch {
        mine: &'static str,
        peer: &'static str,
    },
    #[error("authentication failed (wrong or missing shared secret)")]
    Noise,
    #[error("TLS handshake failed: {0}")]
    Tls(String),
    #[error("peer name {0:?} is not usable as a TLS server name")]
    ServerName(String),
    /// The certificate chains to our CA but is not a peer certificate.
    #[error("peer certificate refused: {0}")]
    NotAPeerCertificate(String),
}

impl SecureError {
    /// Failures that mean "the other side could not prove it is one of ours" (as opposed to a
    /// network error): counted as authentication failures.
    pub fn is_auth_failure(&self) -> bool {
        !matches!(self, SecureError::Io(_))
    }
}

/// How this node secures its links, built once at start.
pub enum Security {
    Plain,
    NoisePsk {
        key: [u8; 32],
    },
    MutualTls {
        client: Arc<rustls::ClientConfig>,
        server: Arc<rustls::ServerConfig>,
        /// What the extended-key-usage check after the handshake verifies against (the same
        /// CA and algorithms rustls used).
        anchors: Arc<Vec<TrustAnchor<'static>>>,
        algs: &'static [&'static dyn rustls::pki_types::SignatureVerificationAlgorithm],
    },
}

impl Security {
    pub fn mode(&self) -> Mode {
        match self {
            Security::Plain => Mode::Plain,
            Security::NoisePsk { .. } => Mode::NoisePsk,
            Security::MutualTls { .. } => Mode::MutualTls,
        }
    }

    /// Secret-file mode: the Noise pre-shared key is HKDF-SHA256 of the file's content, so any
    /// length of secret works and the key is never the raw secret.
    pub fn from_secret(secret: &[u8]) -> Security {
        let hk = Hkdf::<Sha256>::new(Some(NOISE_PROLOGUE), secret);
        let mut key = [0u8; 32];
        hk.expand(PSK_INFO, &mut key)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        Security::NoisePsk { key }
    }

    /// Certificate mode from PEM files: our chain and key, and the CA the peers chain to.
    pub fn from_tls_files(cert: &Path, key: &Path, ca: &Path) -> Result<Security, String> {
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
        Ok(Security::MutualTls {
            client: Arc::new(client),
            server: Arc::new(server),
            anchors: Arc::new(anchors),
            algs,
        })
    }
}

/// Reads the shared secret: the file's content without trailing line breaks and spaces (the
/// binary's copy read before dropping privileges, see `config::read_secret_file`).
pub fn load_secret(path: &Path) -> io::Result<Vec<u8>> {
    let mut s = crate::config::read_secret_file(path)?;
    while s.last().is_some_and(|b| b.is_ascii_whitespace()) {
        s.pop();
    }
    Ok(s)
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

/// Which end of the TCP connection this node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Dialed the peer: Noise initiator, TLS client. `server_name` is the host it dialed.
    Dialer,
    Acceptor,
}

fn preamble(mode: Mode) -> [u8; PREAMBLE_LEN] {
    let mut p = [0u8; PREAMBLE_LEN];
    p[..5].copy_from_slice(PREAMBLE_MAGIC);
    p[5] = CHANNEL_VERSION;
    p[6] = mode as u8;
    p
}

fn check_preamble(p: &[u8; PREAMBLE_LEN], mine: Mode) -> Result<(), SecureError> {
    if &p[..5] != PREAMBLE_MAGIC {
        return Err(SecureError::NotAPeer);
    }
    if p[5] != CHANNEL_VERSION {
        return Err(SecureError::Version(p[5]));
    }
    match Mode::from_u8(p[6]) {
        Some(m) if m == mine => Ok(()),
        Some(m) => Err(SecureError::ModeMismatch {
            mine: mine.name(),
            peer: m.name(),
        }),
        None => Err(SecureError::NotAPeer),
    }
}

/// The Noise prologue: a fixed label, then the dialer's preamble and the acceptor's, as each
/// side sent or received them. Both sides must compute the same bytes, so any byte a relay
/// changed in either direction makes the first authenticated message fail.
fn noise_prologue(
    dialer: &[u8; PREAMBLE_LEN],
    acceptor: &[u8; PREAMBLE_LEN],
) -> [u8; NOISE_PROLOGUE.len() + 2 * PREAMBLE_LEN] {
    let mut p = [0u8; NOISE_PROLOGUE.len() + 2 * PREAMBLE_LEN];
    p[..NOISE_PROLOGUE.len()].copy_from_slice(NOISE_PROLOGUE);
    p[NOISE_PROLOGUE.len()..NOISE_PROLOGUE.len() + PREAMBLE_LEN].copy_from_slice(dialer);
    p[NOISE_PROLOGUE.len() + PREAMBLE_LEN..].copy_from_slice(acceptor);
    p
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

/// Runs the preamble and the transport's handshake. The caller bounds it in time.
pub async fn establish(
    mut stream: TcpStream,
    role: Role,
    security: &Security,
    server_name: &str,
) -> Result<(LinkReader, LinkWriter), SecureError> {
    let mode = security.mode();
    let mine = preamble(mode);
    let mut theirs = [0u8; PREAMBLE_LEN];
    match role {
        Role::Dialer => {
            stream.write_all(&mine).await?;
            stream.read_exact(&mut theirs).await?;
            check_preamble(&theirs, mode)?;
        }
        Role::Acceptor => {
            // The acceptor answers only a well-formed preamble; on a mode mismatch it still
            // sends its own so that the dialer can log what is wrong.
            stream.read_exact(&mut theirs).await?;
            if &theirs[..5] != PREAMBLE_MAGIC {
                return Err(SecureError::NotAPeer);
            }
            stream.write_all(&mine).await?;
            check_preamble(&theirs, mode)?;
        }
    }
    let prologue = match role {
        Role::Dialer => noise_prologue(&mine, &theirs),
        Role::Acceptor => noise_prologue(&theirs, &mine),
    };
    match security {
        Security::Plain => {
            let (rd, wr) = stream.into_split();
            Ok((
                LinkReader::new(Reader::Plain(rd)),
                LinkWriter(Writer::Plain(wr)),
            ))
        }
        Security::NoisePsk { key } => noise_handshake(stream, role, key, &prologue).await,
        Security::MutualTls {
            client,
            server,
            anchors,
            algs,
        } => {
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
            let (rd, wr) = tokio::io::split(tls);
            let mut reader = LinkReader::new(Reader::Tls(rd));
            reader.peer_cert = Some(cert);
            Ok((reader, LinkWriter(Writer::Tls(wr))))
        }
    }
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

async fn read_u16_msg(
    stream: &mut TcpStream,
    max: usize,
    buf: &mut Vec<u8>,
) -> Result<(), SecureError> {
    let len = stream.read_u16().await? as usize;
    // 0 is the acceptor's "your handshake did not verify" before it closes.
    if len == 0 || len > max {
        return Err(SecureError::Noise);
    }
    buf.resize(len, 0);
    stream.read_exact(buf).await?;
    Ok(())
}

async fn noise_handshake(
    mut stream: TcpStream,
    role: Role,
    key: &[u8; 32],
    prologue: &[u8],
) -> Result<(LinkReader, LinkWriter), SecureError> {
    let params = NOISE_PARAMS.parse().expect("valid noise parameters");
    let builder = snow::Builder::new(params).prologue(prologue).psk(0, key);
    let mut hs = match role {
        Role::Dialer => builder.build_initiator(),
        Role::Acceptor => builder.build_responder(),
    }
    .map_err(|_| SecureError::Noise)?;
    let mut msg = vec![0u8; NOISE_MAX_HANDSHAKE_MSG];
    let mut inbound = Vec::new();
    let mut scratch = vec![0u8; NOISE_MAX_HANDSHAKE_MSG];
    // NNpsk0: -> psk, e   <- e, ee. The initiator writes first, the responder second.
    let mut my_turn = role == Role::Dialer;
    while !hs.is_handshake_finished() {
        if my_turn {
            let n = hs
                .write_message(&[], &mut msg)
                .map_err(|_| SecureError::Noise)?;
            let mut out = Vec::with_capacity(2 + n);
            out.extend_from_slice(&(n as u16).to_be_bytes());
            out.extend_from_slice(&msg[..n]);
            stream.write_all(&out).await?;
        } else {
            read_u16_msg(&mut stream, NOISE_MAX_HANDSHAKE_MSG, &mut inbound).await?;
            if hs.read_message(&inbound, &mut scratch).is_err() {
                if role == Role::Acceptor {
                    // Tell the dialer why we close (an empty message: it reveals nothing a
                    // closed connection would not), so that its operator sees a wrong secret
                    // rather than a network error.
                    let _ = stream.write_all(&[0, 0]).await;
                }
                return Err(SecureError::Noise);
            }
        }
        my_turn = !my_turn;
    }
    // The responder has not yet seen proof that the initiator holds the key (its first message
    // can be a replay): that proof is the first transport message, which the link reads before
    // it sends anything of its own (see link.rs).
    let state = Arc::new(
        hs.into_stateless_transport_mode()
            .map_err(|_| SecureError::Noise)?,
    );
    let (rd, wr) = stream.into_split();
    Ok((
        LinkReader::new(Reader::Noise {
            rd,
            raw: BytesMut::new(),
            state: state.clone(),
            nonce: 0,
        }),
        LinkWriter(Writer::Noise {
            wr,
            state,
            nonce: 0,
            out: Vec::new(),
        }),
    ))
}

/// The receiving half of a link's channel.
pub struct LinkReader {
    inner: Reader,
    /// Certificate mode: the peer's certificate, which decides the peer the link speaks for.
    peer_cert: Option<PeerCert>,
}

enum Reader {
    Plain(OwnedReadHalf),
    Noise {
        rd: OwnedReadHalf,
        /// Ciphertext not yet decrypted (at most one message plus a read's worth).
        raw: BytesMut,
        state: Arc<snow::StatelessTransportState>,
        nonce: u64,
    },
    Tls(ReadHalf<TlsStream<TcpStream>>),
}

fn decrypt_failed() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "replication message failed authentication (tampered or not from the peer)",
    )
}

impl LinkReader {
    fn new(inner: Reader) -> LinkReader {
        LinkReader {
            inner,
            peer_cert: None,
        }
    }

    /// Certificate mode: the certificate the peer presented (chain and usages checked).
    pub fn peer_certificate(&self) -> Option<&PeerCert> {
        self.peer_cert.as_ref()
    }

    /// Appends plaintext to `buf`; `Ok(0)` is the end of the stream.
    pub async fn read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        match &mut self.inner {
            Reader::Plain(rd) => rd.read_buf(buf).await,
            Reader::Tls(rd) => rd.read_buf(buf).await,
            Reader::Noise {
                rd,
                raw,
                state,
                nonce,
            } => loop {
                if raw.len() >= 2 {
                    let len = u16::from_be_bytes([raw[0], raw[1]]) as usize;
                    if len < NOISE_TAG {
                        return Err(decrypt_failed());
                    }
                    if raw.len() >= 2 + len {
                        let start = buf.len();
                        buf.resize(start + len, 0);
                        let n = state
                            .read_message(*nonce, &raw[2..2 + len], &mut buf[start..])
                            .map_err(|_| decrypt_failed())?;
                        *nonce += 1;
                        buf.truncate(start + n);
                        raw.advance(2 + len);
                        if n > 0 {
                            return Ok(n);
                        }
                        continue;
                    }
                    raw.reserve(2 + len - raw.len());
                } else {
                    raw.reserve(64 * 1024);
                }
                if rd.read_buf(raw).await? == 0 {
                    if raw.is_empty() {
                        return Ok(0);
                    }
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed inside a message",
                    ));
                }
            },
        }
    }
}

/// The sending half of a link's channel.
pub struct LinkWriter(Writer);

enum Writer {
    Plain(OwnedWriteHalf),
    Noise {
        wr: OwnedWriteHalf,
        state: Arc<snow::StatelessTransportState>,
        nonce: u64,
        /// Reused ciphertext buffer.
        out: Vec<u8>,
    },
    Tls(WriteHalf<TlsStream<TcpStream>>),
}

impl LinkWriter {
    pub async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match &mut self.0 {
            Writer::Plain(wr) => wr.write_all(data).await,
            Writer::Tls(wr) => {
                wr.write_all(data).await?;
                wr.flush().await
            }
            Writer::Noise {
                wr,
                state,
                nonce,
                out,
            } => {
                out.clear();
                for chunk in data.chunks(NOISE_MAX_PLAIN) {
                    let at = out.len();
                    out.put_u16((chunk.len() + NOISE_TAG) as u16);
                    out.resize(at + 2 + chunk.len() + NOISE_TAG, 0);
                    let n = state
                        .write_message(*nonce, chunk, &mut out[at + 2..])
                        .map_err(|e| io::Error::other(format!("noise encrypt: {e}")))?;
                    debug_assert_eq!(n, chunk.len() + NOISE_TAG);
                    *nonce += 1;
                }
                wr.write_all(out).await
            }
        }
    }

    pub async fn shutdown(&mut self) -> io::Result<()> {
        match &mut self.0 {
            Writer::Plain(wr) => wr.shutdown().await,
            Writer::Noise { wr, .. } => wr.shutdown().await,
            Writer::Tls(wr) => wr.shutdown().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn pair(
        a: Security,
        b: Security,
    ) -> (
        Result<(LinkReader, LinkWriter), SecureError>,
        Result<(LinkReader, LinkWriter), SecureError>,
    ) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let acc = tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            establish(s, Role::Acceptor, &b, "").await
        });
        let s = TcpStream::connect(addr).await.unwrap();
        let d = establish(s, Role::Dialer, &a, "localhost").await;
        (d, acc.await.unwrap())
    }

    #[tokio::test]
    async fn noise_with_the_same_secret_carries_data_both_ways() {
        let (d, a) = pair(
            Security::from_secret(b"s3cret"),
            Security::from_secret(b"s3cret"),
        )
        .await;
        let (mut dr, mut dw) = d.unwrap();
        let (mut ar, mut aw) = a.unwrap();
        let big = vec![7u8; 200_000];
        dw.write_all(&big).await.unwrap();
        let mut got = BytesMut::new();
        while got.len() < big.len() {
            assert!(ar.read_buf(&mut got).await.unwrap() > 0);
        }
        assert_eq!(&got[..], &big[..]);
        aw.write_all(b"back").await.unwrap();
        let mut got = BytesMut::new();
        dr.read_buf(&mut got).await.unwrap();
        assert_eq!(&got[..], b"back");
    }

    #[tokio::test]
    async fn noise_with_different_secrets_fails_on_both_sides() {
        let (d, a) = pair(Security::from_secret(b"one"), Security::from_secret(b"two")).await;
        assert!(
            matches!(a, Err(SecureError::Noise)),
            "acceptor: {:?}",
            a.err()
        );
        assert!(
            matches!(d, Err(SecureError::Noise)),
            "dialer: {:?}",
            d.err()
        );
    }

    #[tokio::test]
    async fn a_mode_mismatch_is_reported_to_both_ends() {
        let (d, a) = pair(Security::Plain, Security::from_secret(b"x")).await;
        assert!(matches!(a, Err(SecureError::ModeMismatch { .. })));
        assert!(matches!(d, Err(SecureError::ModeMismatch { .. })));
    }

    /// Noise handshake between two sides that saw the preambles as given (dialer's, acceptor's).
    async fn noise_pair(
        dialer_saw: ([u8; PREAMBLE_LEN], [u8; PREAMBLE_LEN]),
        acceptor_saw: ([u8; PREAMBLE_LEN], [u8; PREAMBLE_LEN]),
    ) -> (bool, bool) {
        let key = match Security::from_secret(b"prologue-test-secret") {
            Security::NoisePsk { key } => key,
            _ => unreachable!(),
        };
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let acc = tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            let p = noise_prologue(&acceptor_saw.0, &acceptor_saw.1);
            let (mut rd, _wr) = noise_handshake(s, Role::Acceptor, &key, &p).await?;
            // The responder's proof that the dialer agrees is the first transport message.
            let mut got = BytesMut::new();
            rd.read_buf(&mut got).await?;
            Ok::<_, SecureError>(got)
        });
        let s = TcpStream::connect(addr).await.unwrap();
        let p = noise_prologue(&dialer_saw.0, &dialer_saw.1);
        let d = noise_handshake(s, Role::Dialer, &key, &p).await;
        let dialer_ok = match d {
            Ok((_rd, mut wr)) => {
                let _ = wr.write_all(b"hello").await;
                true
            }
            Err(_) => false,
        };
        let acceptor_ok = matches!(acc.await.unwrap(), Ok(got) if &got[..] == b"hello");
        (dialer_ok, acceptor_ok)
    }

    #[tokio::test]
    async fn a_preamble_changed_in_transit_fails_the_noise_handshake() {
        let p = preamble(Mode::NoisePsk);
        assert_eq!(noise_pair((p, p), (p, p)).await, (true, true), "control");
        // A relay raised the dialer's version byte (or changed its mode): the preamble checks
        // refuse that today, but a later version that accepts older peers would be open to a
        // downgrade without the binding. Either direction, either byte: the handshake fails.
        for (at, value) in [(5, CHANNEL_VERSION + 1), (5, 1), (6, Mode::Plain as u8)] {
            let mut t = p;
            t[at] = value;
            let (_, acceptor_ok) = noise_pair((p, p), (t, p)).await;
            assert!(!acceptor_ok, "dialer's preamble byte {at} tampered");
            let (dialer_ok, acceptor_ok) = noise_pair((p, t), (p, p)).await;
            assert!(
                !(dialer_ok && acceptor_ok),
                "acceptor's preamble byte {at} tampered"
            );
        }
    }

    #[test]
    fn the_psk_depends_on_the_secret() {
        let k = |s: &[u8]| match Security::from_secret(s) {
            Security::NoisePsk { key } => key,
            _ => unreachable!(),
        };
        assert_ne!(k(b"a"), k(b"b"));
        assert_ne!(k(b"a"), [0u8; 32]);
    }
}
