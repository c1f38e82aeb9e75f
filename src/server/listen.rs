//! Where the server listens: the `-l` specs (a port inside one wins over `-p`/`-U`) resolved
//! and bound, an accept loop or a UDP server started on each listener, the Prometheus
//! endpoint's listener (`--metrics-listen`), and memcached's MEMCACHED_PORT_FILENAME file that
//! names the ports bound.

use super::error::ServerError;
use super::shared::{Listener, ServerState};
use super::workers::Workers;
use super::{acceptor, metrics, udp};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpSocket, UdpSocket};
use tokio::task::JoinHandle;

/// The client listeners bound: their addresses, and the tasks that own the sockets.
pub(super) struct ClientListeners {
    pub(super) tcp_addrs: Vec<SocketAddr>,
    pub(super) udp_addrs: Vec<SocketAddr>,
    pub(super) tasks: Vec<JoinHandle<()>>,
}

/// Binds a TCP (`-p`) and a UDP (`-U`) listener on every `-l` address, each announced on
/// stderr and recorded in `shared` (ports for `stats`, sockets for `stats conns`), and starts
/// their accept loops (handing connections to `workers`) and UDP servers.
pub(super) async fn bind_clients(
    shared: &Arc<ServerState>,
    workers: &Arc<Workers>,
) -> Result<ClientListeners, ServerError> {
    let config = &shared.config;
    let mut bound = ClientListeners {
        tcp_addrs: Vec::new(),
        udp_addrs: Vec::new(),
        tasks: Vec::new(),
    };
    for host in listen_addrs(&config.listen) {
        // memcached's -p/-U: 0 = no listener, -1 = any free port (bind port 0).
        if config.port != 0 {
            let addr = socket_addr(&host, listen_port(config.port))?;
            let listener = bind_tcp(addr, config.backlog)?;
            let local = listener.local_addr()?;
            eprintln!("repcached: listening on tcp {local}");
            shared.tcp_port.store(local.port(), Ordering::Relaxed);
            bound.tcp_addrs.push(local);
            shared.listeners.lock().push(Listener {
                fd: listener.as_raw_fd(),
                addr: format!("tcp:{local}"),
                udp: false,
            });
            bound.tasks.push(tokio::spawn(acceptor::accept_loop(
                shared.clone(),
                listener,
                workers.clone(),
            )));
        }
        if config.udp_port != 0 {
            let udp_addr = socket_addr(&host, listen_port(config.udp_port))?;
            let sock = UdpSocket::bind(udp_addr)
                .await
                .map_err(|e| ServerError::Bind {
                    addr: udp_addr.to_string(),
                    source: e,
                })?;
            let local = sock.local_addr()?;
            eprintln!("repcached: listening on udp {local}");
            shared.udp_port.store(local.port(), Ordering::Relaxed);
            bound.udp_addrs.push(local);
            shared.listeners.lock().push(Listener {
                fd: sock.as_raw_fd(),
                addr: format!("udp:{local}"),
                udp: true,
            });
            bound
                .tasks
                .push(tokio::spawn(udp::serve(shared.clone(), sock)));
        }
    }
    Ok(bound)
}

/// With `--metrics-listen`: binds the Prometheus endpoint and starts serving it; its address
/// and task.
pub(super) async fn bind_metrics(
    shared: &Arc<ServerState>,
) -> Result<Option<(SocketAddr, JoinHandle<()>)>, ServerError> {
    let Some(addr) = &shared.config.metrics_listen else {
        return Ok(None);
    };
    let listener = TcpListener::bind(addr.as_str())
        .await
        .map_err(|source| ServerError::Bind {
            addr: addr.clone(),
            source,
        })?;
    let local = listener.local_addr()?;
    eprintln!("repcached: metrics on http://{local}/metrics");
    let task = tokio::spawn(metrics::serve(shared.clone(), listener));
    Ok(Some((local, task)))
}

/// The `-l` addresses, `0.0.0.0` when none is given.
fn listen_addrs(listen: &[String]) -> Vec<String> {
    if listen.is_empty() {
        vec!["0.0.0.0".to_string()]
    } else {
        listen.to_vec()
    }
}

/// Splits `HOST`, `HOST:PORT`, `[V6]` or `[V6]:PORT` (memcached's -l accepts a port too).
pub(super) fn split_host_port(spec: &str) -> (&str, Option<u16>) {
    if let Some(rest) = spec.strip_prefix('[') {
        if let Some((host, tail)) = rest.split_once(']') {
            return (host, tail.strip_prefix(':').and_then(|p| p.parse().ok()));
        }
    }
    match spec.split_once(':') {
        Some((host, port)) if !port.contains(':') => (host, port.parse().ok()),
        _ => (spec, None),
    }
}

/// Resolves a listen spec; a port inside the spec wins over `default_port`.
fn socket_addr(spec: &str, default_port: u16) -> Result<SocketAddr, ServerError> {
    use std::net::ToSocketAddrs;
    let (host, port) = split_host_port(spec);
    let port = port.unwrap_or(default_port);
    (host, port)
        .to_socket_addrs()
        .map_err(|e| ServerError::Bind {
            addr: format!("{host}:{port}"),
            source: e,
        })?
        .next()
        .ok_or_else(|| ServerError::Config(format!("cannot resolve listen address {host}")))
}

/// The port to bind for memcached's -p/-U value (not 0): -1 = any free port.
fn listen_port(port: i32) -> u16 {
    u16::try_from(port).unwrap_or(0)
}

fn bind_tcp(addr: SocketAddr, backlog: u32) -> Result<TcpListener, ServerError> {
    let err = |source| ServerError::Bind {
        addr: addr.to_string(),
        source,
    };
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(err)?;
    socket.set_reuseaddr(true).map_err(err)?;
    socket.bind(addr).map_err(err)?;
    socket.listen(backlog.max(1)).map_err(err)
}

/// memcached's MEMCACHED_PORT_FILENAME: once every listener is bound, one line per listener,
/// `TCP INET: PORT` (`UDP`, `INET6` as the case is), written to FILE.lck and renamed to FILE so
/// that a reader never sees half of it (tests and scripts start the server with -p -1 and read
/// the port it got from there).
pub(super) fn write_port_file(
    path: &std::path::Path,
    tcp: &[SocketAddr],
    udp: &[SocketAddr],
) -> std::io::Result<()> {
    let mut text = String::new();
    for (kind, addrs) in [("TCP", tcp), ("UDP", udp)] {
        for a in addrs {
            let family = if a.is_ipv4() { "INET" } else { "INET6" };
            text.push_str(&format!("{kind} {family}: {}\n", a.port()));
        }
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".lck");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}
