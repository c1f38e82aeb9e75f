//! How this node secures its links, decided once at start from its files: [`Security`] (plain,
//! a Noise pre-shared key derived from the secret file, or TLS configurations from certificate
//! files) and the secret file's reader.

use super::noise;
use super::preamble::Mode;
use super::tls;
use rustls::pki_types::TrustAnchor;
use std::io;
use std::path::Path;
use std::sync::Arc;

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
        Security::NoisePsk {
            key: noise::psk(secret),
        }
    }

    /// Certificate mode from PEM files: our chain and key, and the CA the peers chain to.
    pub fn from_tls_files(cert: &Path, key: &Path, ca: &Path) -> Result<Security, String> {
        let tls::TlsConfigs {
            client,
            server,
            anchors,
            algs,
        } = tls::TlsConfigs::from_files(cert, key, ca)?;
        Ok(Security::MutualTls {
            client,
            server,
            anchors,
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
