//! The UDP front end (-U): memcached's 8-byte frame header (request id, sequence number,
//! datagram count, reserved) around the text protocol. A request must fit in one datagram;
//! replies are split into numbered datagrams of at most 1400 bytes.

use super::pipeline::process;
use super::session::{Flow, Session};
use super::shared::ServerState;
use bytes::BytesMut;
use std::sync::Arc;
use tokio::net::UdpSocket;

const HEADER: usize = 8;
const MAX_DATAGRAM: usize = 1400;

pub async fn serve(shared: Arc<ServerState>, socket: UdpSocket) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = Vec::new();
    loop {
        let (n, peer) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!("udp recv: {e}");
                continue;
            }
        };
        // Too short for a header, or a multi-datagram request: dropped, as memcached does.
        if n <= HEADER || buf[4] != 0 || buf[5] != 1 {
            continue;
        }
        let request_id = [buf[0], buf[1]];
        let mut rbuf = BytesMut::from(&buf[HEADER..n]);
        let mut session = Session::default();
        out.clear();
        loop {
            // Each pass starts with nothing queued, as if the previous one had been written.
            session.flushed();
            let (flow, drained) = process(&shared, &mut session, &mut rbuf, &mut out);
            if drained || flow != Flow::Continue {
                break;
            }
        }
        if out.is_empty() {
            continue;
        }
        let chunks: Vec<&[u8]> = out.chunks(MAX_DATAGRAM - HEADER).collect();
        let total = chunks.len().min(u16::MAX as usize) as u16;
        for (seq, chunk) in chunks.iter().take(total as usize).enumerate() {
            let mut dgram = Vec::with_capacity(HEADER + chunk.len());
            dgram.extend_from_slice(&request_id);
            dgram.extend_from_slice(&(seq as u16).to_be_bytes());
            dgram.extend_from_slice(&total.to_be_bytes());
            dgram.extend_from_slice(&[0, 0]);
            dgram.extend_from_slice(chunk);
            if socket.send_to(&dgram, peer).await.is_err() {
                break;
            }
        }
    }
}
