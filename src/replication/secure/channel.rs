//! The two halves a link uses once the handshake is done: [`LinkReader`] and [`LinkWriter`],
//! over plaintext TCP, Noise transport messages or a TLS stream. Every byte a link reads or
//! writes passes here, after the frames are encoded and before they are decoded.

use super::noise::{NoiseReader, NoiseWriter};
use super::tls::PeerCert;
use bytes::BytesMut;
use std::io;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::TlsStream;

/// The receiving half of a link's channel.
pub struct LinkReader {
    inner: Reader,
    /// Certificate mode: the peer's certificate, which decides the peer the link speaks for.
    peer_cert: Option<PeerCert>,
}

pub(super) enum Reader {
    Plain(OwnedReadHalf),
    Noise(NoiseReader),
    Tls(ReadHalf<TlsStream<TcpStream>>),
}

impl LinkReader {
    pub(super) fn new(inner: Reader, peer_cert: Option<PeerCert>) -> LinkReader {
        LinkReader { inner, peer_cert }
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
            Reader::Noise(rd) => rd.read_buf(buf).await,
        }
    }
}

/// The sending half of a link's channel.
pub struct LinkWriter(Writer);

pub(super) enum Writer {
    Plain(OwnedWriteHalf),
    Noise(NoiseWriter),
    Tls(WriteHalf<TlsStream<TcpStream>>),
}

impl LinkWriter {
    pub(super) fn new(inner: Writer) -> LinkWriter {
        LinkWriter(inner)
    }

    pub async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match &mut self.0 {
            Writer::Plain(wr) => wr.write_all(data).await,
            Writer::Tls(wr) => {
                wr.write_all(data).await?;
                wr.flush().await
            }
            Writer::Noise(wr) => wr.write_all(data).await,
        }
    }

    pub async fn shutdown(&mut self) -> io::Result<()> {
        match &mut self.0 {
            Writer::Plain(wr) => wr.shutdown().await,
            Writer::Noise(wr) => wr.shutdown().await,
            Writer::Tls(wr) => wr.shutdown().await,
        }
    }
}
