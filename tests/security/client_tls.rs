//! Client TLS (-Z) against the real binary: `openssl s_client` and a rustls client talk to it,
//! plaintext and silent clients on the TLS port fail cleanly and hold nothing up, client
//! certificates per ssl_verify_mode, refresh_certs, and memcached's TLS stats and start-up
//! errors. Certificates are made fresh by each test (rcgen) in its own temporary directory.

use crate::harness::pki::Ca;
use crate::harness::{run_to_exit, Client, Server, DEADLINE};
use rcgen::ExtendedKeyUsagePurpose;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A CA with a server certificate (localhost, 127.0.0.1) and a client certificate, as PEM files.
struct Pki {
    ca: Ca,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let pki = Pki {
            ca: Ca::new(&format!("tls-{name}")),
        };
        pki.issue(
            "server",
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        pki.issue("client", &[], ExtendedKeyUsagePurpose::ClientAuth);
        pki
    }

    /// Writes NAME.pem and NAME.key (and NAME.der) signed by this CA.
    fn issue(&self, name: &str, sans: &[&str], usage: ExtendedKeyUsagePurpose) {
        self.ca
            .issue(name, &format!("repcached test {name}"), sans, &[usage]);
    }

    fn path(&self, file: &str) -> PathBuf {
        self.ca.path(file)
    }

    fn arg(&self, file: &str) -> String {
        self.path(file).display().to_string()
    }

    /// `-o` list naming the server certificate and key, plus `extra` sub-options.
    fn server_opts(&self, extra: &str) -> String {
        let mut opts = format!(
            "ssl_chain_cert={},ssl_key={}",
            self.arg("server.pem"),
            self.arg("server.key")
        );
        if !extra.is_empty() {
            opts.push(',');
            opts.push_str(extra);
        }
        opts
    }

    /// Starts repcached with -Z and this PKI's server certificate.
    fn server(&self, extra_opts: &str, extra_args: &[&str]) -> Server {
        let opts = self.server_opts(extra_opts);
        let mut args = vec!["-Z", "-o", &opts];
        args.extend_from_slice(extra_args);
        Server::repcached(&args)
    }

    fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.cert.der().clone()).unwrap();
        roots
    }

    /// A rustls client trusting this CA, without a client certificate.
    fn client_config(&self) -> Arc<ClientConfig> {
        Arc::new(
            ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(self.roots())
                .with_no_client_auth(),
        )
    }

    /// A rustls client presenting NAME.pem/NAME.key.
    fn client_config_with_cert(&self, name: &str) -> Arc<ClientConfig> {
        self.client_config_presenting(self, name)
    }

    /// A rustls client trusting this CA and presenting `owner`'s NAME.pem/NAME.key.
    fn client_config_presenting(&self, owner: &Pki, name: &str) -> Arc<ClientConfig> {
        let chain = read_certs(&owner.path(&format!("{name}.pem")));
        let key = PrivateKeyDer::from_pem_file(owner.path(&format!("{name}.key"))).unwrap();
        Arc::new(
            ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(self.roots())
                .with_client_auth_cert(chain, key)
                .unwrap(),
        )
    }
}

use rustls::pki_types::pem::PemObject;

fn read_certs(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A blocking TLS client with deadline-bounded reads.
struct TlsClient {
    stream: StreamOwned<ClientConnection, TcpStream>,
}

impl TlsClient {
    /// Connects and completes the handshake (as far as the client can tell: with TLS 1.3 a
    /// server's refusal of the client certificate only shows on the first read).
    fn connect(addr: SocketAddr, config: Arc<ClientConfig>) -> std::io::Result<TlsClient> {
        let mut sock = TcpStream::connect_timeout(&addr, DEADLINE)?;
        sock.set_read_timeout(Some(DEADLINE))?;
        sock.set_nodelay(true)?;
        let name = ServerName::try_from("localhost").unwrap();
        let mut conn = ClientConnection::new(config, name).map_err(std::io::Error::other)?;
        while conn.is_handshaking() {
            conn.complete_io(&mut sock)?;
        }
        Ok(TlsClient {
            stream: StreamOwned::new(conn, sock),
        })
    }

    /// Sends `request` and reads until the reply ends with `end`; an error if the server
    /// closes, fails the session or the deadline passes first.
    fn call(&mut self, request: &[u8], end: &[u8]) -> std::io::Result<Vec<u8>> {
        self.call_until(request, |reply| reply.ends_with(end))
    }

    fn call_until(
        &mut self,
        request: &[u8],
        done: impl Fn(&[u8]) -> bool,
    ) -> std::io::Result<Vec<u8>> {
        self.stream.write_all(request)?;
        self.stream.flush()?;
        let deadline = Instant::now() + DEADLINE;
        let mut reply = Vec::new();
        let mut buf = [0u8; 64 * 1024];
        while !done(&reply) {
            if Instant::now() > deadline {
                return Err(std::io::Error::new(
                    ErrorKind::TimedOut,
                    format!("got {:?}", String::from_utf8_lossy(&reply)),
                ));
            }
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    return Err(std::io::Error::new(
                        ErrorKind::UnexpectedEof,
                        format!("closed after {:?}", String::from_utf8_lossy(&reply)),
                    ))
                }
                Ok(n) => reply.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(reply)
    }

    fn stat(&mut self, group: &str, name: &str) -> String {
        let reply = self
            .call(format!("stats {group}\r\n").as_bytes(), b"END\r\n")
            .unwrap();
        stat_value(&reply, name).unwrap_or_else(|| panic!("no {name} in stats {group}"))
    }
}

impl TlsClient {
    /// Polls a general stat until it has `want`: counters of other connections are updated by
    /// their own tasks, a moment after the client sees the effect.
    fn wait_stat(&mut self, name: &str, want: &str) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let got = self.stat("", name);
            if got == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name} is {got}, expected {want}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn stat_value(reply: &[u8], name: &str) -> Option<String> {
    String::from_utf8_lossy(reply).lines().find_map(|l| {
        let mut w = l.split(' ');
        (w.next() == Some("STAT") && w.next() == Some(name))
            .then(|| w.collect::<Vec<_>>().join(" "))
    })
}

/// A set and a get of a fresh key over `client`.
fn set_get(client: &mut TlsClient, key: &str) -> std::io::Result<()> {
    let stored = client.call(format!("set {key} 5 0 2\r\nhi\r\n").as_bytes(), b"\r\n")?;
    assert_eq!(stored, b"STORED\r\n");
    let got = client.call(format!("get {key}\r\n").as_bytes(), b"END\r\n")?;
    assert_eq!(got, format!("VALUE {key} 5 2\r\nhi\r\nEND\r\n").as_bytes());
    Ok(())
}

#[test]
fn openssl_s_client_sets_and_gets() {
    let pki = Pki::new("s_client");
    let server = pki.server("", &[]);
    let mut child = Command::new("openssl")
        .args(["s_client", "-quiet", "-verify_return_error", "-connect"])
        .arg(server.addr.to_string())
        .arg("-CAfile")
        .arg(pki.path("ca.pem"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the openssl command line tool (scripts/install-test-deps installs it)");
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"set greeting 0 0 5\r\nhello\r\nget greeting\r\nquit\r\n")
        .unwrap();
    // s_client exits when the server closes the session after `quit`; bounded by a watchdog.
    let pid = child.id();
    let watchdog = std::thread::spawn(move || {
        let deadline = Instant::now() + DEADLINE;
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            if !Path::new(&format!("/proc/{pid}")).exists() {
                return;
            }
        }
        // SAFETY: kill(2) has no memory effects; the pid is one we spawned (at worst the
        // process is already gone).
        #[allow(unsafe_code)]
        let _ = unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    });
    let mut out = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    drop(stdin);
    let _ = child.wait();
    let _ = watchdog.join();
    assert_eq!(
        String::from_utf8_lossy(&out),
        "STORED\r\nVALUE greeting 0 5\r\nhello\r\nEND\r\n"
    );
}

#[test]
fn rustls_client_pipelines_large_values_and_sees_tls_stats() {
    let pki = Pki::new("pipeline");
    let server = pki.server("", &["-t", "1"]);
    let mut c = TlsClient::connect(server.addr, pki.client_config()).unwrap();
    set_get(&mut c, "k1").unwrap();
    // A value larger than a TLS record and than one write: exercises partial writes + flush.
    let big = vec![b'x'; 900 * 1024];
    let mut req = format!("set big 0 0 {}\r\n", big.len()).into_bytes();
    req.extend_from_slice(&big);
    req.extend_from_slice(b"\r\n");
    assert_eq!(c.call(&req, b"\r\n").unwrap(), b"STORED\r\n");
    let mut expected = format!("VALUE big 0 {}\r\n", big.len()).into_bytes();
    expected.extend_from_slice(&big);
    expected.extend_from_slice(b"\r\nEND\r\n");
    // Pipelined: three gets of the big value in one write.
    let reply = c
        .call_until(b"get big\r\nget big\r\nget big\r\n", |r| {
            r.len() >= expected.len() * 3
        })
        .unwrap();
    assert_eq!(reply, expected.repeat(3));

    assert_eq!(c.stat("settings", "ssl_enabled"), "yes");
    assert_eq!(c.stat("settings", "ssl_verify_mode"), "0");
    assert_eq!(c.stat("settings", "ssl_min_version"), "tlsv1.2");
    // Server::repcached's readiness probe connects and closes without a word: one error.
    c.wait_stat("ssl_handshake_errors", "1");
    assert!(
        c.stat("", "time_since_server_cert_refresh")
            .parse::<u32>()
            .unwrap()
            < 60
    );
    // Resettable, as in memcached.
    assert_eq!(c.call(b"stats reset\r\n", b"\r\n").unwrap(), b"RESET\r\n");
    c.wait_stat("ssl_handshake_errors", "0");
}

/// `-Y` over TLS: the same login as in plaintext (tests/security/ascii_auth.rs has the byte table).
#[test]
fn ascii_authentication_over_tls() {
    let pki = Pki::new("asciiauth");
    let auth = pki.path("authfile");
    std::fs::write(&auth, "foo:bar\n").unwrap();
    let server = pki.server("", &["-Y", auth.to_str().unwrap()]);
    let mut c = TlsClient::connect(server.addr, pki.client_config()).unwrap();
    let refused = c.call(b"get a\r\n", b"\r\n").unwrap();
    assert_eq!(refused, b"CLIENT_ERROR unauthenticated\r\n");
    let failed = c.call(b"set a 0 0 7\r\nfoo baz\r\n", b"\r\n").unwrap();
    assert_eq!(failed, b"CLIENT_ERROR authentication failure\r\n");
    let login = c.call(b"set a 0 0 7\r\nfoo bar\r\n", b"\r\n").unwrap();
    assert_eq!(login, b"STORED\r\n");
    set_get(&mut c, "after-login").unwrap();
    assert_eq!(c.stat("", "auth_cmds"), "2");
}

#[test]
fn plaintext_client_on_tls_port_is_refused_quickly() {
    let pki = Pki::new("plaintext");
    let server = pki.server("", &[]);
    let started = Instant::now();
    let mut plain = Client::connect(server.addr);
    plain.send(b"set k 0 0 1\r\nx\r\nget k\r\n").unwrap();
    // rustls answers the non-TLS bytes with an alert and closes; nothing of memcached's.
    let rest = plain.closed().err().unwrap_or_default();
    assert!(
        rest.is_empty() || rest[0] == 0x15,
        "expected nothing or a TLS alert, got {:?}",
        String::from_utf8_lossy(&rest)
    );
    assert!(
        !rest.windows(6).any(|w| w == b"STORED"),
        "a plaintext request was executed"
    );
    // Well before the handshake deadline: refused as soon as the bytes are not TLS.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let mut c = TlsClient::connect(server.addr, pki.client_config()).unwrap();
    // One for the readiness probe of Server::repcached, one for the plaintext client.
    c.wait_stat("ssl_handshake_errors", "2");
    assert_eq!(c.call(b"get k\r\n", b"END\r\n").unwrap(), b"END\r\n");
}

#[test]
fn silent_tls_clients_neither_block_others_nor_stay_forever() {
    let pki = Pki::new("silent");
    // One worker and a small -c: silent sockets must not starve either.
    let server = pki.server("", &["-t", "1", "-c", "64"]);
    let silent: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(server.addr).unwrap())
        .collect();
    // Half a ClientHello: a handshake that started and stalls.
    let mut stalled = TcpStream::connect(server.addr).unwrap();
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .unwrap();

    let started = Instant::now();
    let mut c = TlsClient::connect(server.addr, pki.client_config()).unwrap();
    set_get(&mut c, "busy").unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "a TLS client waited {:?} behind silent ones",
        started.elapsed()
    );

    // The handshake deadline (10 s) closes the silent ones.
    for mut s in silent.into_iter().chain([stalled]) {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut buf = [0u8; 64];
        let t = Instant::now();
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
                // Other tests' child processes exiting (SIGCHLD).
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("silent socket still open after {:?}: {e}", t.elapsed()),
            }
        }
    }
    assert!(started.elapsed() < Duration::from_secs(25));
    c.wait_stat("curr_connections", "1");
    // 21 + Server::repcached's readiness probe.
    c.wait_stat("ssl_handshake_errors", "22");
}

#[test]
fn verify_mode_require_refuses_clients_without_a_good_certificate() {
    let pki = Pki::new("require");
    let ca = pki.arg("ca.pem");
    let server = pki.server(&format!("ssl_verify_mode=2,ssl_ca_cert={ca}"), &[]);

    // With a certificate from the CA: served.
    let mut c = TlsClient::connect(server.addr, pki.client_config_with_cert("client")).unwrap();
    set_get(&mut c, "mtls").unwrap();
    assert_eq!(c.stat("settings", "ssl_verify_mode"), "3");
    assert_eq!(c.stat("settings", "ssl_ca_cert"), ca);

    // Without one: refused (in TLS 1.3 the client learns it on its first read).
    let refused = TlsClient::connect(server.addr, pki.client_config())
        .and_then(|mut c| c.call(b"version\r\n", b"\r\n"));
    assert!(
        refused.is_err(),
        "served without a certificate: {refused:?}"
    );

    // With one from another CA: refused.
    let other = Pki::new("require-other");
    let foreign = pki.client_config_presenting(&other, "client");
    let refused =
        TlsClient::connect(server.addr, foreign).and_then(|mut c| c.call(b"version\r\n", b"\r\n"));
    assert!(
        refused.is_err(),
        "served with a foreign certificate: {refused:?}"
    );

    // 2 + Server::repcached's readiness probe.
    c.wait_stat("ssl_handshake_errors", "3");
}

#[test]
fn verify_mode_request_lets_anonymous_clients_in_but_checks_certificates_sent() {
    let pki = Pki::new("request");
    let server = pki.server(
        &format!("ssl_verify_mode=1,ssl_ca_cert={}", pki.arg("ca.pem")),
        &[],
    );
    let mut anonymous = TlsClient::connect(server.addr, pki.client_config()).unwrap();
    set_get(&mut anonymous, "anon").unwrap();
    let mut with_cert =
        TlsClient::connect(server.addr, pki.client_config_with_cert("client")).unwrap();
    set_get(&mut with_cert, "cert").unwrap();
    let other = Pki::new("request-other");
    let foreign = pki.client_config_presenting(&other, "client");
    let refused =
        TlsClient::connect(server.addr, foreign).and_then(|mut c| c.call(b"version\r\n", b"\r\n"));
    assert!(
        refused.is_err(),
        "served with a foreign certificate: {refused:?}"
    );
}

#[test]
fn refresh_certs_reloads_the_files_for_new_connections() {
    let pki = Pki::new("refresh");
    let server = pki.server("", &[]);
    let mut c = TlsClient::connect(server.addr, pki.client_config()).unwrap();
    let first = peer_cert(&c);
    assert_eq!(first, read_certs(&pki.path("server.pem"))[0]);

    // A new certificate in place: refresh_certs answers OK and new sessions get it.
    pki.issue(
        "server",
        &["localhost", "127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    assert_eq!(c.call(b"refresh_certs\r\n", b"\r\n").unwrap(), b"OK\r\n");
    assert_eq!(
        c.call(b"refresh_certs noreply\r\nmn\r\n", b"MN\r\n")
            .unwrap(),
        b"MN\r\n"
    );
    let second = peer_cert(&TlsClient::connect(server.addr, pki.client_config()).unwrap());
    assert_ne!(first, second);
    assert_eq!(second, read_certs(&pki.path("server.pem"))[0]);

    // A broken file: memcached's error text; the certificate in use stays.
    std::fs::write(pki.path("server.pem"), "not a certificate\n").unwrap();
    let reply = c.call(b"refresh_certs\r\n", b"\r\n").unwrap();
    let text = String::from_utf8_lossy(&reply);
    assert!(
        text.starts_with(&format!(
            "Error loading the certificate chain: {} : ",
            pki.arg("server.pem")
        )),
        "{text}"
    );
    let third = peer_cert(&TlsClient::connect(server.addr, pki.client_config()).unwrap());
    assert_eq!(third, second);
    // The old session still works.
    set_get(&mut c, "still").unwrap();
}

fn peer_cert(c: &TlsClient) -> CertificateDer<'static> {
    c.stream.conn.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

#[test]
fn min_version_tls13_refuses_tls12_clients() {
    let pki = Pki::new("tls13");
    let server = pki.server("ssl_min_version=3", &[]);
    let tls12_only = Arc::new(
        ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .with_root_certificates(pki.roots())
            .with_no_client_auth(),
    );
    assert!(TlsClient::connect(server.addr, tls12_only).is_err());
    let mut c = TlsClient::connect(server.addr, pki.client_config()).unwrap();
    assert_eq!(
        c.stream.conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    assert_eq!(c.stat("settings", "ssl_min_version"), "tlsv1.3");
}

#[test]
fn tls12_with_chosen_ciphers_der_key_and_session_cache() {
    let pki = Pki::new("tls12");
    let opts = format!(
        "ssl_key={},ssl_keyformat=2,ssl_ciphers=ECDHE-ECDSA-AES256-GCM-SHA384,ssl_session_cache",
        pki.arg("server.der")
    );
    // ssl_key given twice: the later one (DER) wins, as with getsubopt.
    let server = pki.server(&opts, &[]);
    let tls12 = Arc::new(
        ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .with_root_certificates(pki.roots())
            .with_no_client_auth(),
    );
    let mut c = TlsClient::connect(server.addr, tls12.clone()).unwrap();
    assert_eq!(
        c.stream.conn.negotiated_cipher_suite().map(|s| s.suite()),
        Some(rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384)
    );
    set_get(&mut c, "k12").unwrap();
    // The client's session cache lets the second connection resume.
    let again = TlsClient::connect(server.addr, tls12).unwrap();
    assert_eq!(
        again.stream.conn.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed)
    );
    assert_eq!(c.stat("settings", "ssl_session_cache"), "yes");
    assert_eq!(c.stat("settings", "ssl_keyformat"), "2");
    assert_eq!(c.stat("", "ssl_new_sessions"), "1");
}

#[test]
fn without_tls_stats_and_refresh_certs_answer_like_memcached() {
    let server = Server::repcached(&[]);
    let mut c = server.client();
    c.send(b"refresh_certs\r\nrefresh_certs noreply\r\n")
        .unwrap();
    c.expect(
        b"Error TLS not enabled\r\nError TLS not enabled\r\n",
        "refresh_certs",
    );
    let ssl_settings = |c: &mut Client| {
        c.send(b"stats settings\r\n").unwrap();
        let mut lines = Vec::new();
        loop {
            let line = String::from_utf8_lossy(&c.read_line()).into_owned();
            if line.is_empty() || line == "END\r\n" {
                break;
            }
            if line.starts_with("STAT ssl_") {
                lines.push(line);
            }
        }
        lines
    };
    let ours = ssl_settings(&mut c);
    assert_eq!(ours[0], "STAT ssl_enabled no\r\n");
    assert_eq!(ours.len(), 11);
    c.send(b"stats\r\n").unwrap();
    let mut general = Vec::new();
    while !general.ends_with(b"END\r\n") {
        let line = c.read_line();
        assert!(!line.is_empty(), "stats reply cut short");
        general.extend_from_slice(&line);
    }
    assert!(stat_value(&general, "ssl_handshake_errors").is_none());
    // The reference (Debian's memcached is built with TLS) prints the same ssl_ lines.
    if let Some(reference) = Server::memcached(&[]) {
        assert_eq!(ssl_settings(&mut reference.client()), ours);
    }
}

/// Runs the binary with `args` and returns (exit code, stderr); it must exit on its own.
/// Runs the binary on a free port; it must refuse to start: (exit code, stderr).
fn refused(args: &[&str]) -> (Option<i32>, String) {
    let base = ["-p", "-1", "-l", "127.0.0.1", "-X", "0"];
    let out = run_to_exit(&[&base[..], args].concat());
    (out.code, out.stderr)
}

#[test]
fn tls_start_up_errors_use_memcacheds_words() {
    let pki = Pki::new("errors");
    let (code, err) = refused(&["-Z"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("repcached: Error loading the certificate chain: (null) : "),
        "{err}"
    );
    let cert_only = format!("ssl_chain_cert={}", pki.arg("server.pem"));
    let (_, err) = refused(&["-Z", "-o", &cert_only]);
    assert!(err.contains("Error loading the key: (null) : "), "{err}");
    let (_, err) = refused(&["-Z", "-o", "ssl_chain_cert=/nonexistent,ssl_key=/x"]);
    assert!(
        err.contains("Error loading the certificate chain: /nonexistent : "),
        "{err}"
    );
    let wrong_key = format!(
        "ssl_chain_cert={},ssl_key={}",
        pki.arg("server.pem"),
        pki.arg("client.key")
    );
    let (_, err) = refused(&["-Z", "-o", &wrong_key]);
    assert!(err.contains("key values mismatch"), "{err}");
    let bad_ca = pki.server_opts("ssl_ca_cert=/nonexistent,ssl_verify_mode=2");
    let (_, err) = refused(&["-Z", "-o", &bad_ca]);
    assert!(
        err.contains("Error loading the CA certificate: /nonexistent : "),
        "{err}"
    );
    let bad_ciphers = pki.server_opts("ssl_ciphers=BOGUS");
    let (_, err) = refused(&["-Z", "-o", &bad_ciphers]);
    assert!(
        err.contains("Error setting the provided cipher(s): BOGUS"),
        "{err}"
    );
    let (_, err) = refused(&["-Z", "-o", &pki.server_opts("ssl_kernel_tls")]);
    assert!(err.contains("Kernel TLS offload is not available"), "{err}");
}

/// Pipelined get throughput of the same blocking client over TLS and over plaintext, on two
/// servers started alike. A measurement, not a check: run it with
/// `cargo test --release --test client_tls -- --ignored --nocapture`.
#[test]
#[ignore = "benchmark; run with --ignored --nocapture"]
fn throughput_tls_vs_plaintext() {
    const KEYS: usize = 1000;
    const THREADS: usize = 4;
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    };
    let secs = env("TLS_BENCH_SECS", 5);
    // Requests in flight per connection (1 = request/response, no pipelining).
    let depth = env("TLS_BENCH_DEPTH", 32) as usize;
    let pki = Pki::new("bench");
    let plain = Server::repcached(&["-t", "2"]);
    let tls = pki.server("", &["-t", "2"]);
    let value = [b'v'; 100];
    // Fixed-width keys: every reply has the same length.
    let reply_len = "VALUE k0000 0 100\r\n".len() + 100 + "\r\nEND\r\n".len();

    fn drive(stream: &mut (impl Read + Write), depth: usize, secs: u64, reply_len: usize) -> u64 {
        let mut batch = Vec::new();
        let mut next = 0usize;
        let mut buf = vec![0u8; reply_len * depth];
        let end = Instant::now() + Duration::from_secs(secs);
        let mut ops = 0u64;
        while Instant::now() < end {
            batch.clear();
            for _ in 0..depth {
                batch.extend_from_slice(format!("get k{:04}\r\n", next % KEYS).as_bytes());
                next += 1;
            }
            stream.write_all(&batch).unwrap();
            stream.flush().unwrap();
            stream.read_exact(&mut buf).unwrap();
            ops += depth as u64;
        }
        ops
    }

    let mut loader = TlsClient::connect(tls.addr, pki.client_config()).unwrap();
    let mut plain_loader = plain.client();
    for i in 0..KEYS {
        let mut req = format!("set k{i:04} 0 0 100\r\n").into_bytes();
        req.extend_from_slice(&value);
        req.extend_from_slice(b"\r\n");
        assert_eq!(loader.call(&req, b"\r\n").unwrap(), b"STORED\r\n");
        plain_loader.send(&req).unwrap();
        plain_loader.expect(b"STORED\r\n", "preload");
    }
    for rep in 1..=3 {
        for use_tls in [false, true] {
            let handles: Vec<_> = (0..THREADS)
                .map(|_| {
                    let config = pki.client_config();
                    let addr = if use_tls { tls.addr } else { plain.addr };
                    std::thread::spawn(move || {
                        if use_tls {
                            let mut c = TlsClient::connect(addr, config).unwrap();
                            drive(&mut c.stream, depth, secs, reply_len)
                        } else {
                            let mut s = TcpStream::connect(addr).unwrap();
                            s.set_nodelay(true).unwrap();
                            drive(&mut s, depth, secs, reply_len)
                        }
                    })
                })
                .collect();
            let ops: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
            println!(
                "rep {rep} {}: {} gets/s ({THREADS} connections, {depth} in flight, 100-byte values)",
                if use_tls { "tls      " } else { "plaintext" },
                ops / secs
            );
        }
    }
}
