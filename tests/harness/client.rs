//! The one blocking text-protocol client of the tests: raw bytes with deadline-bounded reads
//! (`send`, `read_n`, `read_line`, `expect`, `closed`) for the byte-exact tables, and the
//! command helpers (`cmd`, `set`, `gets`, `stats`, ...) for the tests that only need answers.
//! Every read is bounded by [`DEADLINE`]; reads go through one buffer so that both styles can
//! be mixed on one connection.

use super::DEADLINE;
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Where a client connects: a socket address, or a port on 127.0.0.1.
pub trait Target {
    fn socket_addr(self) -> SocketAddr;
}

impl Target for SocketAddr {
    fn socket_addr(self) -> SocketAddr {
        self
    }
}

impl Target for u16 {
    fn socket_addr(self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self))
    }
}

/// One client connection.
pub struct Client {
    stream: TcpStream,
    /// Bytes read from the socket and not handed out yet.
    pending: Vec<u8>,
}

/// What one read from the socket gave.
enum Fill {
    Data,
    Eof,
    Failed(std::io::Error),
}

impl Client {
    pub fn connect(to: impl Target) -> Client {
        let addr = to.socket_addr();
        Client::try_connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"))
    }

    pub fn try_connect(addr: SocketAddr) -> std::io::Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, DEADLINE)?;
        stream.set_nodelay(true)?;
        Ok(Client {
            stream,
            pending: Vec::new(),
        })
    }

    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// One read from the socket into `pending`, waiting at most until `deadline`.
    fn fill(&mut self, deadline: Instant) -> Fill {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Fill::Failed(ErrorKind::TimedOut.into());
        }
        let _ = self.stream.set_read_timeout(Some(left));
        let mut buf = [0u8; 16 * 1024];
        match self.stream.read(&mut buf) {
            Ok(0) => Fill::Eof,
            Ok(k) => {
                self.pending.extend_from_slice(&buf[..k]);
                Fill::Data
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => Fill::Data,
            Err(e) => Fill::Failed(e),
        }
    }

    fn take(&mut self, n: usize) -> Vec<u8> {
        let n = n.min(self.pending.len());
        self.pending.drain(..n).collect()
    }

    /// Whatever arrives within a short while (used for the start-up probe only).
    pub(super) fn read_some(&mut self) -> Vec<u8> {
        if self.pending.is_empty() {
            let _ = self.fill(Instant::now() + Duration::from_secs(1));
        }
        self.take(usize::MAX)
    }

    /// Reads exactly `n` bytes, or fewer if the peer closes or the deadline passes.
    pub fn read_n(&mut self, n: usize) -> Vec<u8> {
        let deadline = Instant::now() + DEADLINE;
        while self.pending.len() < n {
            if !matches!(self.fill(deadline), Fill::Data) {
                break;
            }
        }
        self.take(n)
    }

    /// The bytes up to and including the first `end`; on EOF or at the deadline what arrived
    /// (and the reason it stopped).
    fn read_to(&mut self, end: &[u8]) -> (Vec<u8>, Option<Fill>) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(pos) = self.pending.windows(end.len()).position(|w| w == end) {
                return (self.take(pos + end.len()), None);
            }
            match self.fill(deadline) {
                Fill::Data => {}
                stop => return (self.take(usize::MAX), Some(stop)),
            }
        }
    }

    /// Reads one line including its `\r\n` (bounded by the deadline).
    pub fn read_line(&mut self) -> Vec<u8> {
        self.read_to(b"\r\n").0
    }

    /// Reads exactly the expected bytes and panics, showing both, if they differ.
    pub fn expect(&mut self, expected: &[u8], context: &str) {
        let got = self.read_n(expected.len());
        assert!(
            got == expected,
            "{context}: expected {:?}\n got {:?}",
            String::from_utf8_lossy(expected),
            String::from_utf8_lossy(&got)
        );
    }

    /// True when the peer closes the connection (EOF or reset) before the deadline and sends
    /// nothing more.
    pub fn closed(&mut self) -> Result<(), Vec<u8>> {
        let deadline = Instant::now() + DEADLINE;
        let mut extra = self.take(usize::MAX);
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                extra.extend_from_slice(b"<still open>");
                return Err(extra);
            }
            let _ = self.stream.set_read_timeout(Some(left));
            match self.stream.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => extra.extend_from_slice(&buf[..k]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
                Err(_) => {}
            }
        }
        if extra.is_empty() {
            Ok(())
        } else {
            Err(extra)
        }
    }

    /// Reads one reply line without its line end; "" once the server closed. Panics when no
    /// line arrives before the deadline.
    pub fn reply_line(&mut self) -> String {
        let (line, stop) = self.read_to(b"\n");
        if let Some(Fill::Failed(e)) = stop {
            panic!("read reply: {e}");
        }
        String::from_utf8_lossy(&line).trim_end().to_string()
    }

    /// Reads reply lines until one equals `end`.
    pub fn line_until(&mut self, end: &str) {
        while self.reply_line() != end {}
    }

    /// Sends one command line and returns the one-line reply.
    pub fn cmd(&mut self, c: &str) -> String {
        self.send(format!("{c}\r\n").as_bytes()).unwrap();
        self.reply_line()
    }

    pub fn store(
        &mut self,
        verb: &str,
        key: &str,
        flags: u32,
        exptime: i64,
        value: &str,
    ) -> String {
        self.send(
            format!(
                "{verb} {key} {flags} {exptime} {}\r\n{value}\r\n",
                value.len()
            )
            .as_bytes(),
        )
        .unwrap();
        self.reply_line()
    }

    pub fn set(&mut self, key: &str, value: &str) -> String {
        self.store("set", key, 0, 0, value)
    }

    /// `gets key`: (value, flags, cas).
    pub fn gets(&mut self, key: &str) -> Option<(String, u32, u64)> {
        self.send(format!("gets {key}\r\n").as_bytes()).unwrap();
        let head = self.reply_line();
        if head == "END" {
            return None;
        }
        let parts: Vec<&str> = head.split(' ').collect();
        assert_eq!(parts[0], "VALUE", "unexpected reply {head}");
        let flags = parts[2].parse().unwrap();
        let len: usize = parts[3].parse().unwrap();
        let cas = parts[4].parse().unwrap();
        let mut data = self.read_n(len + 2);
        assert_eq!(data.len(), len + 2, "short value for {key}");
        data.truncate(len);
        assert_eq!(self.reply_line(), "END");
        Some((String::from_utf8_lossy(&data).into_owned(), flags, cas))
    }

    pub fn get(&mut self, key: &str) -> Option<String> {
        self.gets(key).map(|(v, _, _)| v)
    }

    /// `stats GROUP` ("" for plain `stats`) as a map of name to value.
    pub fn stats(&mut self, group: &str) -> HashMap<String, String> {
        let c = if group.is_empty() {
            "stats".to_string()
        } else {
            format!("stats {group}")
        };
        self.send(format!("{c}\r\n").as_bytes()).unwrap();
        let mut out = HashMap::new();
        loop {
            let l = self.reply_line();
            if l == "END" || l.is_empty() {
                return out;
            }
            let mut it = l.splitn(3, ' ');
            let (_, k, v) = (it.next(), it.next().unwrap_or(""), it.next().unwrap_or(""));
            out.insert(k.to_string(), v.to_string());
        }
    }

    /// One counter of `stats GROUP`, 0 when absent.
    pub fn stat_u64(&mut self, group: &str, name: &str) -> u64 {
        self.stats(group)
            .get(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// One value of `stats GROUP`; panics when the server does not list it.
    pub fn stat(&mut self, group: &str, name: &str) -> String {
        self.stats(group)
            .remove(name)
            .unwrap_or_else(|| panic!("no STAT {name}"))
    }
}

/// Raw reads (each bounded by [`DEADLINE`]), for `read_exact` and the binary frames.
impl Read for Client {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pending.is_empty() {
            match self.fill(Instant::now() + DEADLINE) {
                Fill::Data | Fill::Eof => {}
                Fill::Failed(e) => return Err(e),
            }
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending[..n]);
        self.pending.drain(..n);
        Ok(n)
    }
}
