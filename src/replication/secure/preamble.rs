//! What both ends of a link say first, before any cryptography: the preamble (`RCRPL`, the
//! secure channel's version, the [`Mode`] the sender secures links with), and which end of the
//! connection this node is ([`Role`]). The preamble only lets both ends report a mismatch
//! clearly; with Noise it is also bound into the prologue (see `noise::noise_prologue`).

pub(crate) const PREAMBLE_MAGIC: &[u8; 5] = b"RCRPL";
/// Version of the secure channel (the frame protocol inside has its own).
pub(super) const CHANNEL_VERSION: u8 = 2;
pub(crate) const PREAMBLE_LEN: usize = 7;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    Plain = 0,
    NoisePsk = 1,
    MutualTls = 2,
}

impl Mode {
    pub(super) fn from_u8(v: u8) -> Option<Mode> {
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

/// Which end of the TCP connection this node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Dialed the peer: Noise initiator, TLS client. `server_name` is the host it dialed.
    Dialer,
    Acceptor,
}

pub(super) fn preamble(mode: Mode) -> [u8; PREAMBLE_LEN] {
    let mut p = [0u8; PREAMBLE_LEN];
    p[..5].copy_from_slice(PREAMBLE_MAGIC);
    p[5] = CHANNEL_VERSION;
    p[6] = mode as u8;
    p
}
