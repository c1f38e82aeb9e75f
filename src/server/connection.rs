//! One task per TCP client: read into a buffer, parse and execute every complete request,
//! answer a whole pipelined batch with one write.

use super::commands::{self, Flow};
use super::stats::Stats;
use super::{ConnInfo, Shared};
use crate::protocol::{text, AfterError, Parsed};
use bytes::{Buf, BytesMut};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const READ_CHUNK: usize = 16 * 1024;
/// Replies are written early once this much is pending (huge multi-gets), so memory per
/// connection stays bounded.
const FLUSH_AT: usize = 256 * 1024;
/// Buffers that grew for a large item are given back once idle.
const SHRINK_ABOVE: usize = 256 * 1024;

pub async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    let listen = listener
        .local_addr()
        .map(|a| format!("tcp:{a}"))
        .unwrap_or_default();
    loop {
        let (mut stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let stats = &shared.stats;
        if stats.curr_connections.load(Ordering::Relaxed) as usize >= shared.config.max_connections
        {
            Stats::incr(&stats.rejected_connections);
            tokio::spawn(async move {
                let _ = stream
                    .write_all(b"ERROR Too many open connections\r\n")
                    .await;
            });
            continue;
        }
        let _ = stream.set_nodelay(true);
        Stats::incr(&stats.curr_connections);
        Stats::incr(&stats.total_connections);
        let fd = stream.as_raw_fd();
        let info = Arc::new(ConnInfo {
            peer: format!("tcp:{peer}"),
            listen: listen.clone(),
            last_cmd: AtomicU32::new(crate::store::unix_now()),
        });
        shared.conns.lock().insert(fd, info.clone());
        let shared = shared.clone();
        tokio::spawn(async move {
            let flow = serve(&shared, stream, &info).await;
            shared.conns.lock().remove(&fd);
            shared
                .stats
                .curr_connections
                .fetch_sub(1, Ordering::Relaxed);
            if flow == Flow::Shutdown {
                shared.request_shutdown();
            }
        });
    }
}

/// Serves one connection until the client leaves, an I/O error, or a closing request.
async fn serve(shared: &Shared, mut stream: TcpStream, info: &ConnInfo) -> Flow {
    let mut rbuf = BytesMut::with_capacity(READ_CHUNK);
    let mut out: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    // Bytes of a refused data block still to be discarded as they arrive.
    let mut swallow = 0usize;
    loop {
        let (flow, drained) = process(shared, &mut rbuf, &mut out, &mut swallow);
        if !out.is_empty() {
            Stats::add(&shared.stats.bytes_written, out.len() as u64);
            if stream.write_all(&out).await.is_err() {
                return Flow::Close;
            }
            out.clear();
            if out.capacity() > SHRINK_ABOVE {
                out = Vec::with_capacity(READ_CHUNK);
            }
        }
        match flow {
            Flow::Continue => {}
            Flow::Close | Flow::Shutdown => return flow,
        }
        if !drained {
            // Stopped early to write a large reply: finish the buffered requests first.
            continue;
        }
        // Hand a big buffer back once a large item has passed through it.
        if rbuf.is_empty() && rbuf.capacity() > SHRINK_ABOVE {
            rbuf = BytesMut::with_capacity(READ_CHUNK);
        }
        if rbuf.capacity() - rbuf.len() < READ_CHUNK / 4 {
            rbuf.reserve(READ_CHUNK.max(rbuf.len()));
        }
        match stream.read_buf(&mut rbuf).await {
            Ok(0) | Err(_) => return Flow::Close,
            Ok(n) => {
                Stats::add(&shared.stats.bytes_read, n as u64);
                info.last_cmd
                    .store(crate::store::unix_now(), Ordering::Relaxed);
            }
        }
    }
}

/// Parses and executes the complete requests in `rbuf`, appending replies to `out`. Returns
/// the flow and whether it stopped for want of input (false: it paused because `out` is large).
/// Also used by the UDP front end for the requests of one datagram.
pub fn process(
    shared: &Shared,
    rbuf: &mut BytesMut,
    out: &mut Vec<u8>,
    swallow: &mut usize,
) -> (Flow, bool) {
    loop {
        if *swallow > 0 {
            let n = (*swallow).min(rbuf.len());
            rbuf.advance(n);
            *swallow -= n;
            if *swallow > 0 {
                return (Flow::Continue, true);
            }
        }
        if rbuf.is_empty() {
            return (Flow::Continue, true);
        }
        let (consumed, flow) = match text::parse(rbuf, &shared.limits) {
            Parsed::Request(req, n) => (n, commands::execute(shared, &req, out)),
            Parsed::Incomplete => return (Flow::Continue, true),
            Parsed::Error {
                reply,
                consumed,
                swallow: s,
                then,
            } => {
                if s > 0 {
                    refused_store(shared, &rbuf[..consumed]);
                }
                out.extend_from_slice(reply);
                *swallow = s;
                (
                    consumed,
                    if then == AfterError::Close {
                        Flow::Close
                    } else {
                        Flow::Continue
                    },
                )
            }
        };
        rbuf.advance(consumed);
        if flow != Flow::Continue {
            return (flow, true);
        }
        if out.len() >= FLUSH_AT {
            // Let the caller write before more replies pile up.
            return (Flow::Continue, false);
        }
    }
}

/// A storage command whose data block is being swallowed (too large for -I): count it, and for
/// `set` unlink the old value like memcached does, so that no stale data survives a failed set.
fn refused_store(shared: &Shared, line: &[u8]) {
    Stats::incr(&shared.stats.store_too_large);
    Stats::incr(&shared.stats.cmd_set);
    let mut tokens = line.split(|b| *b == b' ').filter(|t| !t.is_empty());
    if tokens.next() == Some(b"set") {
        if let Some(key) = tokens.next() {
            if key.len() <= shared.limits.max_key_len {
                shared.store.entry(key).delete();
            }
        }
    }
}
