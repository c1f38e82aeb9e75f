//! The TCP connection loop, one task per client on the worker thread that adopted it: read into
//! a buffer, run the pipeline over every complete request, answer a whole pipelined batch with
//! one write. While it waits for input the task can be woken to stop (server shutdown) or to
//! close an idle connection (`-o idle_timeout`). The loop is generic over the transport, so a
//! plaintext socket costs what it did before TLS (a TLS session, see tls.rs) existed.

use super::counters::Stats;
use super::pipeline::{process, read_limit};
use super::session::{Flow, Proto, Session};
use super::shared::{forget, is_idle, ConnInfo, ServerState};
use super::tls;
use bytes::{BufMut, BytesMut};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

const READ_CHUNK: usize = 16 * 1024;
/// Buffers that grew for a large item are given back once idle.
const SHRINK_ABOVE: usize = 256 * 1024;

/// Runs one client connection on the worker that adopted it.
pub async fn handle(shared: Arc<ServerState>, mut stream: TcpStream, info: Arc<ConnInfo>, fd: i32) {
    let flow = serve(&shared, &mut stream, &info).await;
    drop(stream);
    forget(&shared, fd);
    if flow == Flow::Shutdown {
        shared.request_shutdown();
    }
}

/// [`handle`] for a TLS session whose handshake is done.
pub async fn handle_tls(
    shared: Arc<ServerState>,
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

/// Serves one connection until the client leaves, an I/O error, a closing request, the
/// server stopping or the idle timeout.
async fn serve<S>(shared: &ServerState, stream: &mut S, info: &ConnInfo) -> Flow
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut rbuf = BytesMut::with_capacity(READ_CHUNK);
    let mut out: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut session = Session::default();
    if shared.config.auth_file.is_some() || shared.config.sasl.is_some() {
        session.peer = info.peer.clone();
    }
    let mut nread = false;
    loop {
        if shared.is_stopping() {
            // Executed requests are answered (and replicated by the drain that follows);
            // the ones still buffered were never acknowledged and are dropped.
            if !out.is_empty() {
                let _ = stream.write_all(&out).await;
            }
            return Flow::Close;
        }
        // One wake-up of the replication links for the records of the whole batch.
        let (flow, drained) = shared
            .store
            .batch(|| process(shared, &mut session, &mut rbuf, &mut out));
        // memcached holds its replies while it waits for the rest of a data block (one being
        // stored or one being swallowed); a partial command line, like an empty buffer, lets
        // them go.
        // A binary request holds them while the rest of its frame is read (past its header).
        // Before -Y authentication memcached reads the credentials block into its buffer like
        // a line, not from the socket: nothing is held for it.
        let mid_block = session.swallow > 0
            || if session.proto == Proto::Binary {
                session.block_from_socket
            } else if shared.config.auth_file.is_some() && !session.authenticated {
                false
            } else {
                memchr::memchr(b'\n', &rbuf).is_some()
            };
        if mid_block != nread {
            nread = mid_block;
            info.nread.store(nread, Ordering::Relaxed);
        }
        let hold = flow == Flow::Continue && drained && mid_block;
        if !out.is_empty() && !hold {
            Stats::add(&shared.stats.bytes_written, out.len() as u64);
            // A TLS stream may keep part of a write in its buffer; flushing a TcpStream is a
            // no-op.
            if stream.write_all(&out).await.is_err() || stream.flush().await.is_err() {
                return Flow::Close;
            }
            out.clear();
            session.flushed();
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
        // Text reads take what memcached's would (see `read_limit`); the buffer always has room
        // for that much, so the read size never depends on what the buffer held before.
        let authenticating = shared.config.auth_file.is_some() && !session.authenticated;
        let limit = read_limit(&session, &rbuf, authenticating);
        // Room for at most a chunk: a data block announced but not yet sent reserves no more.
        let want = limit.unwrap_or(READ_CHUNK).min(READ_CHUNK);
        if rbuf.capacity() - rbuf.len() < want.max(READ_CHUNK / 4) {
            rbuf.reserve(want.max(rbuf.len()));
        }
        let mut limited = (&mut rbuf).limit(limit.unwrap_or(usize::MAX));
        let read = loop {
            tokio::select! {
                // Input first: a busy connection never pays for the wake-up (the stop flag
                // above still ends it).
                biased;
                r = stream.read_buf(&mut limited) => break Some(r),
                () = info.kick.notified() => {
                    if shared.is_stopping() {
                        break None;
                    }
                    let timeout = shared.config.idle_timeout;
                    if is_idle(info, crate::store::unix_now(), timeout) {
                        Stats::incr(&shared.stats.idle_kicks);
                        return Flow::Close;
                    }
                }
            }
        };
        match read {
            // Stopping: the top of the loop writes what is held and leaves.
            None => continue,
            Some(Ok(0) | Err(_)) => return Flow::Close,
            Some(Ok(n)) => {
                Stats::add(&shared.stats.bytes_read, n as u64);
                info.last_cmd
                    .store(crate::store::unix_now(), Ordering::Relaxed);
            }
        }
    }
}
