//! One task per TCP client: read into a buffer, parse and execute every complete request,
//! answer a whole pipelined batch with one write. While it waits for input the task can be
//! woken to stop (server shutdown) or to close an idle connection (`-o idle_timeout`). The loop
//! is generic over the transport, so a plaintext socket costs what it did before TLS (a TLS
//! session, see tls.rs) existed.

use super::commands::{self, Flow};
use super::stats::Stats;
use super::tls;
use super::workers::Workers;
use super::{ConnInfo, Shared};
use crate::protocol::{text, Effect, Parsed, Request};
use bytes::{Buf, BytesMut};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
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
        let info = Arc::new(ConnInfo::new(format!("tcp:{peer}"), listen.clone()));
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

/// Whether `-o idle_timeout` closes this connection now: it waits for a command (not for the
/// rest of a data block, as in memcached) and ran none for longer than the timeout.
pub fn is_idle(info: &ConnInfo, now: u32, timeout: u32) -> bool {
    timeout > 0
        && !info.nread.load(Ordering::Relaxed)
        && now.saturating_sub(info.last_cmd.load(Ordering::Relaxed)) > timeout
}

/// Serves one connection until the client leaves, an I/O error, a closing request, the
/// server stopping or the idle timeout.
async fn serve<S>(shared: &Shared, stream: &mut S, info: &ConnInfo) -> Flow
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut rbuf = BytesMut::with_capacity(READ_CHUNK);
    let mut out: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    // Bytes of a refused data block still to be discarded as they arrive.
    let mut swallow = 0usize;
    let mut queue = ReplyQueue::default();
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
        let (flow, drained) = process(shared, &mut rbuf, &mut out, &mut swallow, &mut queue);
        // memcached holds its replies while it waits for the rest of a data block (one being
        // stored or one being swallowed); a partial command line, like an empty buffer, lets
        // them go.
        let mid_block = swallow > 0 || memchr::memchr(b'\n', &rbuf).is_some();
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
        let read = loop {
            tokio::select! {
                // Input first: a busy connection never pays for the wake-up (the stop flag
                // above still ends it).
                biased;
                r = stream.read_buf(&mut rbuf) => break Some(r),
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
        replies,
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
                *replies = 0;
            }
        }
        if rbuf.is_empty() {
            return (Flow::Continue, true);
        }
        let mut resume = None;
        let (consumed, flow) = match text::parse(rbuf, &shared.limits) {
            Parsed::Request(req, n) => {
                let flow = match over_reply_limit(shared, &req, replies) {
                    Some(Flow::Continue) => {
                        out.extend_from_slice(
                            b"SERVER_ERROR out of memory writing get response\r\n",
                        );
                        Flow::Continue
                    }
                    Some(flow) => {
                        // memcached has no room for even an error: it drops what it queued.
                        out.truncate(*written);
                        flow
                    }
                    None => {
                        let (flow, rest) = execute_bounded(shared, &req, out, held);
                        if let Some(rest) = rest {
                            resume = resumed_get(&req, rest, rbuf);
                            if resume.is_none() {
                                // No room to rewrite the line: finish it in one piece.
                                get_slice(shared, &req, rest, out, usize::MAX);
                            }
                        }
                        flow
                    }
                };
                let from_socket = std::mem::take(block_from_socket) || n > MEMCACHED_READ_BUFFER;
                if is_write_point(&req) || from_socket {
                    *written = out.len();
                    held.release_all();
                    *replies = 0;
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
                kind,
                noreply,
                consumed,
                swallow: s,
                effect,
            } => {
                let close = effect == Effect::Close;
                match effect {
                    Effect::None => {}
                    Effect::Close => out.truncate(*written),
                    Effect::TooLarge { unlink, counts_set } => {
                        Stats::incr(&shared.stats.store_too_large);
                        if counts_set {
                            Stats::incr(&shared.stats.cmd_set);
                        }
                        if let Some(key) = unlink {
                            shared.store.entry(&key).delete();
                        }
                    }
                    Effect::RefusedGet {
                        keys,
                        with_cas,
                        touch,
                    } => {
                        // The keys before the bad one were fetched and touched; only the
                        // replies go, with everything queued and not yet written.
                        let mut scratch = Vec::new();
                        let mut rest = Some(keys);
                        while let Some(keys) = rest {
                            scratch.clear();
                            rest = commands::get_until(
                                shared,
                                keys,
                                with_cas,
                                touch,
                                &mut scratch,
                                FLUSH_AT,
                            );
                        }
                        out.truncate(*written);
                    }
                }
                if !noreply {
                    out.extend_from_slice(kind.reply());
                }
                *swallow = s;
                if consumed + s > MEMCACHED_READ_BUFFER {
                    *block_from_socket = true;
                }
                // A bad data chunk read from the socket ends its read like a stored one.
                if s == 0 && std::mem::take(block_from_socket) {
                    *written = out.len();
                    held.release_all();
                    *replies = 0;
                }
                (consumed, if close { Flow::Close } else { Flow::Continue })
            }
        };
        if let Some((at, line)) = resume {
            // The rest of a multi-get, rewritten in place as a get of the remaining keys (it
            // fits: at least one key and its space were before them). The caller writes what
            // is pending, then comes back for it.
            rbuf[at - line.len()..at].copy_from_slice(&line);
            rbuf.advance(at - line.len());
            return (Flow::Continue, false);
        }
        rbuf.advance(consumed);
        requests += 1;
        if requests > shared.config.reqs_per_event
            && (requests - 1) % shared.config.reqs_per_event.max(1) == 0
        {
            *written = out.len();
            held.release_all();
            *replies = 0;
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
/// memcached takes reply objects from READ_BUFFER_SIZE pages, 13 to a page.
const MEMCACHED_REPLIES_PER_PAGE: usize = 13;

/// `-o read_buf_mem_limit`: how many replies a connection may have queued and unwritten.
/// memcached splits the limit between its worker threads in 16 KiB pages; one page is the
/// connection's read buffer, each other holds 13 reply objects (a get takes one per key). We
/// give that budget to each connection rather than share it per thread (measured against
/// memcached 1.6.18: -t 32 allows 13 keys, -t 16 39, -t 8 91, -t 4 195).
pub fn reply_slots(read_buf_mem_limit: u64, threads: usize) -> Option<usize> {
    if read_buf_mem_limit == 0 {
        return None;
    }
    let per_thread = read_buf_mem_limit / threads.max(1) as u64;
    let pages = (per_thread / MEMCACHED_READ_BUFFER as u64) as usize;
    Some(pages.saturating_sub(1) * MEMCACHED_REPLIES_PER_PAGE)
}

/// Whether `req` would queue more replies than the connection's budget allows, and then what
/// memcached does: a get is answered `SERVER_ERROR out of memory writing get response`
/// (`Continue`), anything else closes the connection. Counted in `response_obj_oom`.
fn over_reply_limit(shared: &Shared, req: &Request<'_>, replies: &mut usize) -> Option<Flow> {
    let slots = shared.reply_slots?;
    let (cost, is_get) = match req {
        Request::Get { keys, .. } | Request::GetAndTouch { keys, .. } => {
            (text::keys(keys).count(), true)
        }
        _ => (1, false),
    };
    if *replies + cost <= slots {
        *replies += cost;
        return None;
    }
    Stats::incr(&shared.stats.response_obj_oom);
    if is_get {
        // The get's own replies are released; its error takes one.
        *replies += 1;
        Some(Flow::Continue)
    } else {
        Some(Flow::Close)
    }
}

/// Executes `req`; a multi-get stops once `out` reaches [`FLUSH_AT`] and returns the keys it
/// has not fetched yet, so that no single request makes a reply larger than that plus one item.
fn execute_bounded<'r>(
    shared: &Shared,
    req: &Request<'r>,
    out: &mut Vec<u8>,
    held: &mut commands::HeldItems,
) -> (Flow, Option<&'r [u8]>) {
    match req {
        Request::Get { keys, .. } | Request::GetAndTouch { keys, .. } => {
            (Flow::Continue, get_slice(shared, req, keys, out, FLUSH_AT))
        }
        _ => (commands::execute(shared, req, out, held), None),
    }
}

/// Fetches `keys` of the get-family request `req` until `out` reaches `until` bytes.
fn get_slice<'k>(
    shared: &Shared,
    req: &Request<'_>,
    keys: &'k [u8],
    out: &mut Vec<u8>,
    until: usize,
) -> Option<&'k [u8]> {
    let (with_cas, touch) = match req {
        Request::Get { with_cas, .. } => (*with_cas, None),
        Request::GetAndTouch {
            with_cas, exptime, ..
        } => (*with_cas, Some(*exptime)),
        _ => return None,
    };
    commands::get_until(shared, keys, with_cas, touch, out, until)
}

/// Where the unfetched keys `rest` of `req` start in `rbuf`, and the command line prefix
/// (`get `, `gats <exptime> `, ...) to put just before them. `None` if it would not fit.
fn resumed_get(req: &Request<'_>, rest: &[u8], rbuf: &[u8]) -> Option<(usize, Vec<u8>)> {
    let at = (rest.as_ptr() as usize).checked_sub(rbuf.as_ptr() as usize)?;
    let line = match req {
        Request::Get { with_cas, .. } => {
            if *with_cas {
                b"gets ".to_vec()
            } else {
                b"get ".to_vec()
            }
        }
        Request::GetAndTouch {
            with_cas, exptime, ..
        } => format!("{} {exptime} ", if *with_cas { "gats" } else { "gat" }).into_bytes(),
        _ => return None,
    };
    (line.len() <= at && at <= rbuf.len()).then_some((at, line))
}

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
    /// Replies queued since the last write point, for `-o read_buf_mem_limit`.
    replies: usize,
}

/// Requests after which memcached writes its queued replies.
fn is_write_point(req: &Request<'_>) -> bool {
    match req {
        Request::Get { .. } | Request::GetAndTouch { .. } => true,
        Request::Meta(m) => m.is_noop(),
        _ => false,
    }
}
