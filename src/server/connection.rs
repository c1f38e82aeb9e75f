//! One task per TCP client: read into a buffer, parse and execute every complete request,
//! answer a whole pipelined batch with one write. The loop is generic over the transport, so
//! a plaintext socket costs what it did before TLS (a TLS session, see tls.rs) existed.

use super::commands::{self, Flow};
use super::stats::Stats;
use super::tls;
use super::workers::Workers;
use super::{ConnInfo, Shared};
use crate::protocol::{text, AfterError, Parsed, Request};
use bytes::{Buf, BytesMut};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const READ_CHUNK: usize = 16 * 1024;
/// Replies are written early once this much is pending (huge multi-gets), so memory per
/// connection stays bounded.
const FLUSH_AT: usize = 256 * 1024;
/// Buffers that grew for a large item are given back once idle.
const SHRINK_ABOVE: usize = 256 * 1024;

pub async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, workers: Arc<Workers>) {
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
        match &shared.tls {
            None => workers.dispatch(&shared, stream, info, fd),
            Some(tls) => {
                // Here, not on a worker: this runtime has the timer the handshake deadline
                // needs, and a slow handshake must not hold up the accept loop.
                let (shared, tls, workers) = (shared.clone(), tls.clone(), workers.clone());
                tokio::spawn(async move {
                    match tls.accept(stream).await {
                        Some(stream) => workers.dispatch_tls(&shared, stream, info, fd),
                        None => forget(&shared, fd),
                    }
                });
            }
        }
    }
}

/// Runs one client connection on the worker that adopted it.
pub async fn handle(shared: Arc<Shared>, mut stream: TcpStream, info: Arc<ConnInfo>, fd: i32) {
    let flow = serve(&shared, &mut stream, &info).await;
    drop(stream);
    forget(&shared, fd);
    if flow == Flow::Shutdown {
        shared.request_shutdown();
    }
}

/// [`handle`] for a TLS session whose handshake is done.
pub async fn handle_tls(
    shared: Arc<Shared>,
    mut stream: tls::TlsStream,
    info: Arc<ConnInfo>,
    fd: i32,
) {
    let flow = serve(&shared, &mut stream, &info).await;
    tls::close(&mut stream).await;
    drop(stream);
    forget(&shared, fd);
    if flow == Flow::Shutdown {
        shared.request_shutdown();
    }
}

/// A connection is gone: drop it from `stats conns` and the connection count.
pub fn forget(shared: &Shared, fd: i32) {
    shared.conns.lock().remove(&fd);
    shared.stats.curr_connections.sub(1);
}

/// Serves one connection until the client leaves, an I/O error, or a closing request.
async fn serve<S>(shared: &Shared, stream: &mut S, info: &ConnInfo) -> Flow
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut rbuf = BytesMut::with_capacity(READ_CHUNK);
    let mut out: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    // Bytes of a refused data block still to be discarded as they arrive.
    let mut swallow = 0usize;
    let mut queue = ReplyQueue::default();
    loop {
        let (flow, drained) = process(shared, &mut rbuf, &mut out, &mut swallow, &mut queue);
        // memcached holds its replies while it waits for the rest of a data block (one being
        // stored or one being swallowed); a partial command line, like an empty buffer, lets
        // them go.
        let mid_block = swallow > 0 || memchr::memchr(b'\n', &rbuf).is_some();
        let hold = flow == Flow::Continue && drained && mid_block;
        if !out.is_empty() && !hold {
            Stats::add(&shared.stats.bytes_written, out.len() as u64);
            // A TLS stream may keep part of a write in its buffer; flushing a TcpStream is a
            // no-op.
            if stream.write_all(&out).await.is_err() || stream.flush().await.is_err() {
                return Flow::Close;
            }
            out.clear();
            queue = ReplyQueue::default();
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
///
/// memcached queues replies and writes them only at certain points (after each successful get,
/// after `mn`, every 20 requests, when input runs out); a get refused for an over-long key and a
/// silent close throw away what is queued but unwritten. `written` tracks where the last such
/// point was in `out`, so pipelined clients see exactly memcached's bytes.
pub fn process(
    shared: &Shared,
    rbuf: &mut BytesMut,
    out: &mut Vec<u8>,
    swallow: &mut usize,
    queue: &mut ReplyQueue,
) -> (Flow, bool) {
    let ReplyQueue {
        written,
        held,
        block_from_socket,
    } = queue;
    let mut requests = 0usize;
    loop {
        if *swallow > 0 {
            let n = (*swallow).min(rbuf.len());
            rbuf.advance(n);
            *swallow -= n;
            if *swallow > 0 {
                *block_from_socket = true;
                return (Flow::Continue, true);
            }
            if std::mem::take(block_from_socket) {
                *written = out.len();
                held.release_all();
            }
        }
        if rbuf.is_empty() {
            return (Flow::Continue, true);
        }
        let (consumed, flow) = match text::parse(rbuf, &shared.limits) {
            Parsed::Request(req, n) => {
                let flow = commands::execute(shared, &req, out, held);
                let from_socket = std::mem::take(block_from_socket) || n > MEMCACHED_READ_BUFFER;
                if is_write_point(&req) || from_socket {
                    *written = out.len();
                    held.release_all();
                }
                (n, flow)
            }
            Parsed::Incomplete => {
                // A complete line still waiting means its data block is being read.
                if memchr::memchr(b'\n', rbuf).is_some() {
                    *block_from_socket = true;
                }
                return (Flow::Continue, true);
            }
            Parsed::Error {
                reply,
                consumed,
                swallow: s,
                then,
            } => {
                if s > 0 {
                    refused_store(shared, rbuf);
                }
                if let Some(prefix) = text::refused_get_prefix(rbuf, &shared.limits) {
                    // The keys before the bad one were fetched and touched; only the replies go.
                    commands::execute(shared, &prefix, &mut Vec::new(), held);
                    out.truncate(*written);
                } else if then == AfterError::Close {
                    out.truncate(*written);
                }
                out.extend_from_slice(reply);
                *swallow = s;
                if consumed + s > MEMCACHED_READ_BUFFER {
                    *block_from_socket = true;
                }
                // A bad data chunk read from the socket ends its read like a stored one.
                if s == 0 && std::mem::take(block_from_socket) {
                    *written = out.len();
                    held.release_all();
                }
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
        requests += 1;
        if requests > shared.config.reqs_per_event
            && (requests - 1) % shared.config.reqs_per_event.max(1) == 0
        {
            *written = out.len();
            held.release_all();
        }
        if flow != Flow::Continue {
            return (flow, true);
        }
        if out.len() >= FLUSH_AT {
            // Let the caller write before more replies pile up.
            return (Flow::Continue, false);
        }
    }
}

/// memcached's read buffer: a command line and data block larger than this cannot have been
/// buffered whole, so memcached read the block straight from the socket.
const MEMCACHED_READ_BUFFER: usize = 16 * 1024;

/// What memcached has queued but not written: where in `out` its last write point was, and the
/// items those unwritten replies still reference. Reset whenever `out` is really written.
#[derive(Debug, Default)]
pub struct ReplyQueue {
    written: usize,
    held: commands::HeldItems,
    /// A data block (stored or swallowed) did not fit in what had been read when its command
    /// line was parsed. memcached reads such a block straight from the socket, so its buffer
    /// is empty when the block ends: a write point once the command completes.
    block_from_socket: bool,
}

/// Requests after which memcached writes its queued replies.
fn is_write_point(req: &Request<'_>) -> bool {
    match req {
        Request::Get { .. } | Request::GetAndTouch { .. } => true,
        Request::Meta(m) => m.is_noop(),
        _ => false,
    }
}

/// A storage command whose data block is being swallowed: count it, and unlink the old value
/// where memcached does (a too-large text `set`; a too-large `ms` in any mode), so no stale data
/// survives the failed write. Swallowing after a meta flag error counts nothing.
fn refused_store(shared: &Shared, input: &[u8]) {
    let is_meta = input.trim_ascii_start().starts_with(b"ms ");
    if is_meta {
        if let Some(key) = crate::protocol::meta::too_large_key(input, &shared.limits) {
            Stats::incr(&shared.stats.store_too_large);
            shared.store.entry(&key).delete();
        }
        return;
    }
    Stats::incr(&shared.stats.store_too_large);
    Stats::incr(&shared.stats.cmd_set);
    if let Some(key) = text::too_large_unlink_key(input) {
        if key.len() <= shared.limits.max_key_len {
            shared.store.entry(key).delete();
        }
    }
}
