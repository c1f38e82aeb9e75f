//! memcached's port flags against the real binary: `-p 0` turns TCP off, `-p -1`/`-U -1` pick a
//! free port, MEMCACHED_PORT_FILENAME lists the client listeners (memcached's t/issue_67.t), and a
//! second instance on one host serves when the default replication port is taken.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Proc {
    child: Child,
    port_file: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.port_file);
    }
}

fn spawn(name: &str, args: &[&str]) -> Proc {
    let port_file =
        std::env::temp_dir().join(format!("repcached-ports-{}-{name}", std::process::id()));
    let _ = std::fs::remove_file(&port_file);
    let child = Command::new(env!("CARGO_BIN_EXE_repcached"))
        .args(["-l", "127.0.0.1"])
        .args(args)
        .env("MEMCACHED_PORT_FILENAME", &port_file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn repcached");
    Proc { child, port_file }
}

/// The port file's lines (`TCP INET: 1234`), once the server has written it.
fn port_lines(p: &mut Proc) -> Vec<(String, u16)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(text) = std::fs::read_to_string(&p.port_file) {
            return text
                .lines()
                .map(|l| {
                    let (kind, port) = l.split_once(": ").expect("KIND: PORT");
                    (kind.to_string(), port.parse().expect("port number"))
                })
                .collect();
        }
        if let Ok(Some(status)) = p.child.try_wait() {
            let mut err = String::new();
            let _ = p
                .child
                .stderr
                .take()
                .map(|mut s| s.read_to_string(&mut err));
            panic!("server exited ({status}) before writing the port file: {err}");
        }
        assert!(Instant::now() < deadline, "no port file");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn version(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"version\r\n").unwrap();
    let mut buf = [0u8; 256];
    let n = s.read(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn kinds(lines: &[(String, u16)]) -> Vec<&str> {
    lines.iter().map(|(k, _)| k.as_str()).collect()
}

#[test]
fn tcp_ephemeral_port_is_written_to_the_port_file() {
    let mut p = spawn("tcp", &["-p", "-1", "-X", "0"]);
    let lines = port_lines(&mut p);
    assert_eq!(kinds(&lines), ["TCP INET"]);
    assert_ne!(lines[0].1, 0);
    assert!(version(lines[0].1).starts_with("VERSION "));
}

#[test]
fn p_zero_turns_tcp_off() {
    // memcached's "udp port ephemeral, tcp port disabled" case: UDP alone.
    let mut p = spawn("udp-only", &["-p", "0", "-U", "-1", "-X", "0"]);
    let lines = port_lines(&mut p);
    assert_eq!(kinds(&lines), ["UDP INET"]);
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut frame = vec![0, 1, 0, 0, 0, 1, 0, 0];
    frame.extend_from_slice(b"version\r\n");
    sock.send_to(&frame, ("127.0.0.1", lines[0].1)).unwrap();
    let mut buf = [0u8; 256];
    let n = sock.recv(&mut buf).unwrap();
    assert!(buf[8..n].starts_with(b"VERSION "), "{:?}", &buf[..n]);
}

#[test]
fn udp_ephemeral_without_p_moves_tcp_too() {
    // memcached: -U without -p gives TCP the same setting.
    let mut p = spawn("both", &["-U", "-1", "-X", "0"]);
    let lines = port_lines(&mut p);
    assert_eq!(kinds(&lines), ["TCP INET", "UDP INET"]);
    assert!(version(lines[0].1).starts_with("VERSION "));
}

#[test]
fn a_peerless_node_whose_client_port_is_the_replication_port_serves_on_it() {
    // `repcached -p 11212` as a second instance on a host: the client port wins.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port().to_string()
    };
    let mut p = spawn("same-port", &["-p", &port, "-X", &port]);
    let lines = port_lines(&mut p);
    assert_eq!(lines[0].1.to_string(), port);
    assert!(version(lines[0].1).starts_with("VERSION "));
    let _ = p.child.kill();
}

#[test]
fn second_instance_serves_when_the_replication_port_is_taken() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let repl_port = taken.local_addr().unwrap().port().to_string();
    let mut p = spawn("second", &["-p", "-1", "-X", &repl_port]);
    let lines = port_lines(&mut p);
    assert!(version(lines[0].1).starts_with("VERSION "));
    let _ = p.child.kill();
    let mut err = String::new();
    let _ = p
        .child
        .stderr
        .take()
        .map(|mut s| s.read_to_string(&mut err));
    assert!(
        err.contains("replication listener disabled") && err.contains("in use"),
        "{err}"
    );

    // A node that names peers needs its listener: it still refuses to start.
    let mut p = spawn(
        "with-peer",
        &["-p", "-1", "-X", &repl_port, "-x", "127.0.0.1:1"],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = p.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "kept running with a taken port");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success());
    drop(taken);
}
