//! The secure channel's errors: which say a peer failed to prove it is one of ours (counted
//! as authentication failures) and which are the network.

use super::preamble::CHANNEL_VERSION;
use std::io;

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
