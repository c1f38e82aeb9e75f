//! Connection workers, as in memcached: each of the -t threads runs its own single-threaded event
//! loop and owns the connections handed to it. A connection's reads, parsing and replies never
//! wake another thread, which a work-stealing pool does on every readiness event; on a small
//! machine those extra wake-ups cost more than the requests themselves.

use super::connection;
use super::shared::{forget, ConnInfo, ServerState};
use super::tls;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

/// A connection on its way to a worker: the socket (detached from the acceptor's event loop)
/// and what `stats conns` knows of it.
struct Handoff {
    stream: Transport,
    info: Arc<ConnInfo>,
    fd: i32,
}

enum Transport {
    Plain(std::net::TcpStream),
    /// A session past its handshake, still registered with the main runtime's reactor.
    Tls(Box<tls::TlsStream>),
}

pub struct Workers {
    lanes: Vec<mpsc::UnboundedSender<Handoff>>,
    next: AtomicUsize,
    /// Ends every worker's loop (and with it the connections left on it).
    stop: watch::Sender<bool>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl Workers {
    /// Starts `n` worker threads. They stop on [`Workers::shutdown`], or when the `Workers`
    /// is dropped (with the server).
    pub fn spawn(n: usize, shared: &Arc<ServerState>) -> std::io::Result<Workers> {
        let mut lanes = Vec::with_capacity(n.max(1));
        let mut threads = Vec::with_capacity(n.max(1));
        let (stop, _) = watch::channel(false);
        for i in 0..n.max(1) {
            let mut stopped = stop.subscribe();
            let (tx, mut rx) = mpsc::unbounded_channel::<Handoff>();
            // I/O only: nothing on a worker uses tokio's timers (the sweeper, the acceptor's
            // back-off and replication run on the main runtime), and the timer driver cost ~7%
            // of the instructions of a get (callgrind, BENCHMARKS.md).
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()?;
            let shared = shared.clone();
            let thread = std::thread::Builder::new()
                .name(format!("repcached-worker-{i}"))
                .spawn(move || {
                    runtime.block_on(async move {
                        loop {
                            let job = tokio::select! {
                                job = rx.recv() => match job {
                                    Some(job) => job,
                                    None => break,
                                },
                                _ = stopped.changed() => break,
                            };
                            let stream = match job.stream {
                                Transport::Plain(stream) => stream,
                                Transport::Tls(stream) => {
                                    adopt_tls(&shared, *stream, job.info, job.fd);
                                    continue;
                                }
                            };
                            match tokio::net::TcpStream::from_std(stream) {
                                Ok(stream) => {
                                    tokio::spawn(connection::handle(
                                        shared.clone(),
                                        stream,
                                        job.info,
                                        job.fd,
                                    ));
                                }
                                Err(e) => {
                                    tracing::warn!("cannot adopt a connection: {e}");
                                    forget(&shared, job.fd);
                                }
                            }
                        }
                    });
                    // Dropping the runtime here drops the connections still on it.
                })?;
            lanes.push(tx);
            threads.push(thread);
        }
        Ok(Workers {
            lanes,
            next: AtomicUsize::new(0),
            stop,
            threads: Mutex::new(threads),
        })
    }

    /// Ends the worker loops and waits for their threads (the last step of a graceful stop:
    /// by then no connection executes requests any more).
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let threads = std::mem::take(&mut *self.threads.lock());
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }

    /// Hands a connection to the next worker, round robin (memcached does the same).
    pub fn dispatch(
        &self,
        shared: &ServerState,
        stream: tokio::net::TcpStream,
        info: Arc<ConnInfo>,
        fd: i32,
    ) {
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("cannot hand a connection over: {e}");
                forget(shared, fd);
                return;
            }
        };
        self.send(shared, Transport::Plain(stream), info, fd);
    }

    /// [`Workers::dispatch`] for a TLS session whose handshake is done.
    pub fn dispatch_tls(
        &self,
        shared: &ServerState,
        stream: tls::TlsStream,
        info: Arc<ConnInfo>,
        fd: i32,
    ) {
        self.send(shared, Transport::Tls(Box::new(stream)), info, fd);
    }

    fn send(&self, shared: &ServerState, stream: Transport, info: Arc<ConnInfo>, fd: i32) {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.lanes.len();
        if self.lanes[i].send(Handoff { stream, info, fd }).is_err() {
            forget(shared, fd);
        }
    }
}

/// Moves a TLS session's socket to this worker's reactor and serves it here. Must run on the
/// worker's runtime.
fn adopt_tls(shared: &Arc<ServerState>, mut stream: tls::TlsStream, info: Arc<ConnInfo>, fd: i32) {
    match stream.get_mut().0.rehome() {
        Ok(()) => {
            tokio::spawn(connection::handle_tls(shared.clone(), stream, info, fd));
        }
        Err(e) => {
            tracing::warn!("cannot adopt a connection: {e}");
            forget(shared, fd);
        }
    }
}
