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
//!
//! Files: `preamble` (the first bytes, modes, roles), `security` (this node's [`Security`],
//! built from its files), `handshake` ([`establish`]: the preamble checks, then the
//! transport's handshake), `noise` and `tls` (each transport's handshake and checks),
//! `channel` (the [`LinkReader`]/[`LinkWriter`] halves: every byte a link reads or writes
//! passes there), `error`. An option both ends must agree on before any frame (a channel
//! version, a compressed transport) belongs in the preamble and `handshake`.

mod channel;
mod error;
mod handshake;
mod noise;
mod preamble;
mod security;
mod tls;

pub use channel::{LinkReader, LinkWriter};
pub use error::SecureError;
pub use handshake::establish;
pub use preamble::{Mode, Role};
pub(crate) use preamble::{PREAMBLE_LEN, PREAMBLE_MAGIC};
pub use security::{load_secret, Security};
pub use tls::PeerCert;

#[cfg(test)]
mod tests;
