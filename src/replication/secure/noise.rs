//! Secret-file mode: `Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s` (snow). The pre-shared key
//! derived from the secret (HKDF-SHA256), the prologue that binds both preambles, the
//! handshake (the dialer initiates), and the transport: each message a u16 length then the
//! ciphertext with its 16-byte tag, read by [`NoiseReader`] and written by [`NoiseWriter`].

use super::error::SecureError;
use super::preamble::{Role, PREAMBLE_LEN};
use bytes::{Buf, BufMut, BytesMut};
use hkdf::Hkdf;
use sha2::Sha256;
use std::io;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

const NOISE_PARAMS: &str = "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s";
/// Start of the Noise prologue; the two preambles follow it (see [`noise_prologue`]). Also the
/// HKDF salt of the pre-shared key.
const NOISE_PROLOGUE: &[u8] = b"repcached replication channel v2, noise-psk";
/// HKDF info: the derived key is used for this protocol and nothing else.
const PSK_INFO: &[u8] = b"repcached replication noise psk v2";
/// Noise's largest message, and the plaintext that fits in it with the 16-byte tag.
const NOISE_MAX_MSG: usize = 65535;
const NOISE_TAG: usize = 16;
const NOISE_MAX_PLAIN: usize = NOISE_MAX_MSG - NOISE_TAG;
/// Handshake messages of NNpsk0 are 48 bytes; anything far larger is not a peer.
const NOISE_MAX_HANDSHAKE_MSG: usize = 1024;

/// The Noise pre-shared key of a secret: HKDF-SHA256 with the prologue's label as salt.
pub(super) fn psk(secret: &[u8]) -> [u8; 32] {
    let hk = Hkdf::<Sha256>::new(Some(NOISE_PROLOGUE), secret);
    let mut key = [0u8; 32];
    hk.expand(PSK_INFO, &mut key)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    key
}

/// The Noise prologue: a fixed label, then the dialer's preamble and the acceptor's, as each
/// side sent or received them. Both sides must compute the same bytes, so any byte a relay
/// changed in either direction makes the first authenticated message fail.
pub(super) fn noise_prologue(
    dialer: &[u8; PREAMBLE_LEN],
    acceptor: &[u8; PREAMBLE_LEN],
) -> [u8; NOISE_PROLOGUE.len() + 2 * PREAMBLE_LEN] {
    let mut p = [0u8; NOISE_PROLOGUE.len() + 2 * PREAMBLE_LEN];
    p[..NOISE_PROLOGUE.len()].copy_from_slice(NOISE_PROLOGUE);
    p[NOISE_PROLOGUE.len()..NOISE_PROLOGUE.len() + PREAMBLE_LEN].copy_from_slice(dialer);
    p[NOISE_PROLOGUE.len() + PREAMBLE_LEN..].copy_from_slice(acceptor);
    p
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

/// The Noise handshake on `stream` (after the preambles), and the two transport halves.
pub(super) async fn noise_handshake(
    mut stream: TcpStream,
    role: Role,
    key: &[u8; 32],
    prologue: &[u8],
) -> Result<(NoiseReader, NoiseWriter), SecureError> {
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
    // it sends anything of its own (see `link::handshake`).
    let state = Arc::new(
        hs.into_stateless_transport_mode()
            .map_err(|_| SecureError::Noise)?,
    );
    let (rd, wr) = stream.into_split();
    Ok((
        NoiseReader {
            rd,
            raw: BytesMut::new(),
            state: state.clone(),
            nonce: 0,
        },
        NoiseWriter {
            wr,
            state,
            nonce: 0,
            out: Vec::new(),
        },
    ))
}

/// The receiving half of a Noise transport.
pub(super) struct NoiseReader {
    rd: OwnedReadHalf,
    /// Ciphertext not yet decrypted (at most one message plus a read's worth).
    raw: BytesMut,
    state: Arc<snow::StatelessTransportState>,
    nonce: u64,
}

fn decrypt_failed() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "replication message failed authentication (tampered or not from the peer)",
    )
}

impl NoiseReader {
    /// Appends the plaintext of the next whole message(s) to `buf`; `Ok(0)` is the end of the
    /// stream.
    pub(super) async fn read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        let NoiseReader {
            rd,
            raw,
            state,
            nonce,
        } = self;
        loop {
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
        }
    }
}

/// The sending half of a Noise transport.
pub(super) struct NoiseWriter {
    wr: OwnedWriteHalf,
    state: Arc<snow::StatelessTransportState>,
    nonce: u64,
    /// Reused ciphertext buffer.
    out: Vec<u8>,
}

impl NoiseWriter {
    /// Encrypts `data` in messages of at most NOISE_MAX_PLAIN bytes and writes them.
    pub(super) async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        let NoiseWriter {
            wr,
            state,
            nonce,
            out,
        } = self;
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

    pub(super) async fn shutdown(&mut self) -> io::Result<()> {
        self.wr.shutdown().await
    }
}
