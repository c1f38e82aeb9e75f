//! Establishing a link's channel: the preambles exchanged and checked, then the handshake of
//! this node's transport (Noise, TLS, or none), giving the link its reader and writer halves.

use super::channel::{LinkReader, LinkWriter, Reader, Writer};
use super::error::SecureError;
use super::noise::{noise_handshake, noise_prologue};
use super::preamble::{preamble, Mode, Role, CHANNEL_VERSION, PREAMBLE_LEN, PREAMBLE_MAGIC};
use super::security::Security;
use super::tls::tls_handshake;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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
                LinkReader::new(Reader::Plain(rd), None),
                LinkWriter::new(Writer::Plain(wr)),
            ))
        }
        Security::NoisePsk { key } => {
            let (rd, wr) = noise_handshake(stream, role, key, &prologue).await?;
            Ok((
                LinkReader::new(Reader::Noise(rd), None),
                LinkWriter::new(Writer::Noise(wr)),
            ))
        }
        Security::MutualTls {
            client,
            server,
            anchors,
            algs,
        } => {
            let (tls, cert) =
                tls_handshake(stream, role, server_name, client, server, anchors, algs).await?;
            let (rd, wr) = tokio::io::split(tls);
            Ok((
                LinkReader::new(Reader::Tls(rd), Some(cert)),
                LinkWriter::new(Writer::Tls(wr)),
            ))
        }
    }
}
