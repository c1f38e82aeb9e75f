//! The one fake replication peer: built from the library's own channel (`replication::secure`)
//! and frame codec (`replication::frame`), because a real peer never lies in HELLO, never forges
//! an origin and never sends out-of-range offsets. [`PeerLink`] is one authenticated link a
//! test drives frame by frame; [`FakePeer`] is the scripted peer on top of it (HELLO, a full sync
//! of a given snapshot, given records).

use bytes::{Bytes, BytesMut};
use repcached::replication::frame::{self, Frame, FrameLimits, PROTO_VERSION};
use repcached::replication::secure::{self, LinkReader, LinkWriter, Role, Security};
use repcached::store::{unix_now, Counter, Mutation, MutationKind, Version};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// The channel keys of a `--repl-secret-file`.
pub fn security(secret_file: &Path) -> Security {
    Security::from_secret(&secure::load_secret(secret_file).unwrap())
}

/// Milliseconds since the epoch, the wall-clock part of a version (`now_ms() << 16`).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A write of "injected" to `key`, stamped now by node `origin`.
pub fn put(key: &str, origin: u32) -> Mutation {
    Mutation {
        key: Bytes::copy_from_slice(key.as_bytes()),
        version: Version::new(now_ms() << 16, origin),
        kind: MutationKind::Put {
            flags: 0,
            exptime: 0,
            value: Bytes::from_static(b"injected"),
        },
    }
}

/// A snapshot entry: `key` = `value`, no flags, no expiry, written at `version`.
pub fn snap_item(
    key: impl Into<Bytes>,
    value: &'static [u8],
    version: Version,
    counter: Option<Counter>,
) -> Frame {
    Frame::SnapItem {
        key: key.into(),
        value: Bytes::from_static(value),
        flags: 0,
        exptime: 0,
        version,
        base: version,
        touched: Version::ZERO,
        counter,
    }
}

/// One authenticated link to a node, driven by the test.
pub struct PeerLink {
    rd: LinkReader,
    wr: LinkWriter,
    buf: BytesMut,
}

impl PeerLink {
    /// Connects to `target` and runs the channel handshake as the dialer; None when the node
    /// refuses it.
    pub async fn dial(target: &str, sec: &Security, server_name: &str) -> Option<PeerLink> {
        let stream = tokio::net::TcpStream::connect(target).await.unwrap();
        let (rd, wr) = secure::establish(stream, Role::Dialer, sec, server_name)
            .await
            .ok()?;
        Some(PeerLink {
            rd,
            wr,
            buf: BytesMut::new(),
        })
    }

    /// Sends HELLO as `node` (advertising `listen`); false when the node closed the link.
    pub async fn hello(&mut self, node: u32, listen: Option<SocketAddr>) -> bool {
        self.send(Frame::Hello {
            version: PROTO_VERSION,
            node,
            listen_port: listen.map(|a| a.port()).unwrap_or(0),
            listen_ip: listen.map(|a| a.ip()),
        })
        .await
    }

    /// Sends `frames` in one write; false when the node closed the link.
    pub async fn send_all(&mut self, frames: impl IntoIterator<Item = Frame>) -> bool {
        let mut out = BytesMut::new();
        for f in frames {
            frame::encode(&f, unix_now(), &mut out);
        }
        self.wr.write_all(&out).await.is_ok()
    }

    /// Sends one frame; false when the node closed the link.
    pub async fn send(&mut self, f: Frame) -> bool {
        self.send_all([f]).await
    }

    /// The node's next frame; None once it closed the link or sent nothing for 10 s.
    pub async fn next(&mut self) -> Option<Frame> {
        self.next_until(tokio::time::Instant::now() + Duration::from_secs(10))
            .await
    }

    /// The node's next frame; None once it closed the link or `deadline` passed.
    pub async fn next_until(&mut self, deadline: tokio::time::Instant) -> Option<Frame> {
        let limits = FrameLimits {
            item_size_max: 1 << 20,
        };
        loop {
            match frame::decode(&self.buf, &limits, unix_now()) {
                Ok(Some((f, n))) => {
                    let _ = self.buf.split_to(n);
                    return Some(f);
                }
                Ok(None) => {}
                Err(e) => panic!("the node sent a frame that does not decode: {e:?}"),
            }
            match tokio::time::timeout_at(deadline, self.rd.read_buf(&mut self.buf)).await {
                Ok(Ok(1..)) => {}
                _ => return None,
            }
        }
    }

    /// Reads until the node closes the link (bounded: 10 s without a byte ends it too).
    pub async fn closed(&mut self) -> bool {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::time::Instant::now() < deadline {
            if self.next().await.is_none() {
                return true;
            }
        }
        false
    }
}

/// A scripted peer: it dials a node with `sec`, says HELLO as `node` (advertising `listen`),
/// and if the node answers, completes a full sync of `snapshot` and sends `records` (offsets
/// from 1). [`FakePeer::run`] returns the frames the node sent it, by name, until the node
/// closed the link or `hold` passed.
pub struct FakePeer {
    pub sec: Security,
    /// The name the node's TLS certificate is checked against ("" with a secret).
    pub server_name: String,
    pub node: u32,
    pub listen: Option<SocketAddr>,
    pub snapshot: Vec<Frame>,
    pub records: Vec<Mutation>,
    pub hold: Duration,
}

impl FakePeer {
    /// Node `node` with `sec`, server name "", no listen address, an empty snapshot, no
    /// records, held 2 s.
    pub fn new(sec: Security, node: u32) -> FakePeer {
        FakePeer {
            sec,
            server_name: String::new(),
            node,
            listen: None,
            snapshot: Vec::new(),
            records: Vec::new(),
            hold: Duration::from_secs(2),
        }
    }

    pub fn server_name(mut self, name: &str) -> FakePeer {
        self.server_name = name.to_string();
        self
    }

    pub fn listen(mut self, addr: &str) -> FakePeer {
        self.listen = Some(addr.parse().unwrap());
        self
    }

    pub fn snapshot(mut self, frames: Vec<Frame>) -> FakePeer {
        self.snapshot = frames;
        self
    }

    pub fn records(mut self, records: Vec<Mutation>) -> FakePeer {
        self.records = records;
        self
    }

    pub fn hold(mut self, hold: Duration) -> FakePeer {
        self.hold = hold;
        self
    }

    /// [`FakePeer::run`] on a thread of its own.
    pub fn spawn(self, target: String) -> std::thread::JoinHandle<Vec<String>> {
        std::thread::spawn(move || self.run(&target))
    }

    /// Runs the script against the node at `target` (blocking, on a runtime of its own).
    pub fn run(self, target: &str) -> Vec<String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(self.script(target))
    }

    async fn script(self, target: &str) -> Vec<String> {
        let mut got = Vec::new();
        let Some(mut link) = PeerLink::dial(target, &self.sec, &self.server_name).await else {
            return got;
        };
        let deadline = tokio::time::Instant::now() + self.hold;
        if !link.hello(self.node, self.listen).await {
            return got;
        }
        // Every frame answered as a peer would.
        while let Some(f) = link.next_until(deadline).await {
            let name = format!("{f:?}");
            let name = name.split([' ', '{', '(']).next().unwrap_or("").to_string();
            let mut out = Vec::new();
            match f {
                Frame::Hello { .. } => out.push(Frame::Psync {
                    run: 7,
                    next: self.records.len() as u64 + 1,
                    want_run: 0,
                    want_offset: 0,
                }),
                Frame::Psync { .. } => out.push(Frame::SyncMode { full: true }),
                Frame::SyncMode { .. } => {
                    out.push(Frame::FullSync { run: 7, start: 1 });
                    out.extend(self.snapshot.iter().cloned());
                    out.push(Frame::SnapEnd {
                        items: self.snapshot.len() as u64,
                    });
                    out.extend(self.records.iter().enumerate().map(|(i, m)| Frame::Record {
                        offset: i as u64 + 1,
                        mutation: m.clone(),
                    }));
                }
                _ => {}
            }
            got.push(name);
            if !out.is_empty() && !link.send_all(out).await {
                return got;
            }
        }
        got
    }
}
