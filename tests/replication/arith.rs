//! Numbers a peer controls (stream offsets, a counter's sequence numbers and nets, the number of
//! increments waiting for their base write) must not wrap, panic a link task, freeze a local
//! `incr`, or grow memory past -m. Store-level cases drive the store's public API as the links
//! do; the wire cases speak as an authenticated but hostile peer (it holds the secret) to an
//! in-process node and watch its `repl_protocol_errors`.

use crate::harness::peer::{security, PeerLink};
use crate::harness::*;
use bytes::{Bytes, BytesMut};
use repcached::replication::frame::{self, Frame, FrameLimits};
use repcached::replication::secure::Security;
use repcached::store::{
    unix_now, ApplyOutcome, Contribution, Counter, Expiry, Mutation, MutationKind, MutationSink,
    Store, StoreConfig, Version, MAX_SEQ,
};
use std::sync::Arc;

/// What the store published: for a delta its seq, for anything else None.
#[derive(Default)]
struct Sink(parking_lot::Mutex<Vec<Option<u64>>>);

impl MutationSink for Sink {
    fn publish(&self, m: Mutation) {
        let seq = match m.kind {
            MutationKind::Delta { seq, .. } => Some(seq),
            _ => None,
        };
        self.0.lock().push(seq);
    }
}

/// A replicating store (a sink set, so that incr keeps PN-counter state) of node `id`.
fn store_with_sink(id: u32, mem_limit: usize) -> (Store, Arc<Sink>) {
    let s = Store::new(StoreConfig {
        node_id: id,
        shards: 4,
        mem_limit,
        ..Default::default()
    });
    let sink = Arc::new(Sink::default());
    s.set_mutation_sink(sink.clone());
    // The peers these tests play (as the replication link admits them on authentication).
    for peer in 1..=9 {
        assert!(s.admit_node(peer));
    }
    (s, sink)
}

fn store(id: u32, mem_limit: usize) -> Store {
    store_with_sink(id, mem_limit).0
}

fn set(s: &Store, key: &str, value: &str) -> Version {
    let mut e = s.entry(key.as_bytes());
    e.put(&[value.as_bytes()], 0, Expiry::Never, None)
        .expect("put");
    e.item().expect("item").version()
}

fn incr(s: &Store, key: &str) -> u64 {
    s.entry(key.as_bytes()).arith(true, 1).expect("incr").0
}

fn delta(key: &str, origin: u32, base: Version, hlc: u64, seq: u64, net: i128) -> Mutation {
    Mutation {
        key: Bytes::copy_from_slice(key.as_bytes()),
        version: Version::new(hlc, origin),
        kind: MutationKind::Delta {
            base,
            incr: true,
            delta: 1,
            value: 0,
            seq,
            net,
        },
    }
}

#[test]
fn a_delta_at_seq_u64_max_from_a_peer_does_not_freeze_local_incr() {
    let (a, sent) = store_with_sink(1, 64 << 20);
    let base = set(&a, "ctr", "10");
    assert_eq!(incr(&a, "ctr"), 11);
    // A record naming this node's own contribution at the top of the range: its local
    // `seq + 1` wrapped to 0 and every later incr of this node on the key was lost (release),
    // or panicked (debug).
    let hlc = a.clock().tick().hlc;
    let forged = delta("ctr", 1, base, hlc, u64::MAX, 100);
    assert_eq!(a.apply_remote(&forged), ApplyOutcome::Rejected);
    assert_eq!(incr(&a, "ctr"), 12);
    assert_eq!(incr(&a, "ctr"), 13);

    // The same through a snapshot of the same write: refused whole.
    let c = Counter::from_parts(10, [Contribution::new(1, u64::MAX, 1)]);
    let it_version = a.entry(b"ctr").item().unwrap().version();
    let out = a.apply_snapshot_item(
        b"ctr",
        b"11",
        0,
        0,
        it_version,
        base,
        Version::ZERO,
        Some(&c),
    );
    assert_eq!(out, ApplyOutcome::Rejected);
    assert_eq!(incr(&a, "ctr"), 14);

    // At MAX_SEQ (the largest a peer may send) it is taken (net 10 instead of our 4), and
    // local incr keeps counting: the next one goes out as a full write (a new base), so that
    // this node never sends a seq past MAX_SEQ (honest peers would refuse it), then deltas
    // start again from seq 1.
    let hlc = a.clock().tick().hlc;
    let edge = delta("ctr", 1, base, hlc, MAX_SEQ, 10);
    assert_eq!(a.apply_remote(&edge), ApplyOutcome::Applied);
    assert_eq!(a.entry(b"ctr").item().unwrap().value(), b"20");
    sent.0.lock().clear();
    assert_eq!(incr(&a, "ctr"), 21);
    assert_eq!(incr(&a, "ctr"), 22, "local incr froze");
    assert_eq!(*sent.0.lock(), vec![None, Some(1)]);
}

#[test]
fn pending_deltas_are_bounded_by_a_sixteenth_of_m() {
    // Increments for writes this node never saw wait for them: a peer (or a mesh whose third
    // node never delivers) could grow that until the 24 h purge.
    let m = 4 << 20;
    let a = store(1, m);
    let mut refused_seen = false;
    for i in 0..200_000u64 {
        let key = format!("pending-{i:06}");
        let base = Version::new((i + 1_000) << 16, 2);
        let out = a.apply_remote(&delta(&key, 2, base, (i + 2_000) << 16, 1, 1));
        if out == ApplyOutcome::Rejected {
            refused_seen = true;
        }
    }
    let st = a.stats();
    assert!(refused_seen, "no delta was ever refused");
    assert!(st.pending_deltas_refused > 0);
    assert!(
        st.heap_bytes as usize <= m / 16,
        "pending deltas hold {} bytes, over -m/16 = {}",
        st.heap_bytes,
        m / 16
    );
    // Those that were kept still apply when their write arrives.
    let key = "pending-000000";
    let put = Mutation {
        key: Bytes::from_static(b"pending-000000"),
        version: Version::new(1_000 << 16, 2),
        kind: MutationKind::Put {
            flags: 0,
            exptime: 0,
            value: Bytes::from_static(b"5"),
        },
    };
    assert_eq!(a.apply_remote(&put), ApplyOutcome::Applied);
    let v = a.entry(key.as_bytes()).item().unwrap().value().to_vec();
    assert_eq!(v, b"6");
}

#[test]
fn frames_with_a_sequence_number_past_max_seq_are_malformed() {
    let limits = FrameLimits {
        item_size_max: 1 << 20,
    };
    let now = unix_now();
    let decode = |f: &Frame| {
        let mut out = BytesMut::new();
        frame::encode(f, now, &mut out);
        frame::decode(&out, &limits, now).map(|r| r.map(|(f, _)| f))
    };
    let base = Version::new(5 << 16, 2);
    for (seq, ok) in [(MAX_SEQ, true), (MAX_SEQ + 1, false), (u64::MAX, false)] {
        let rec = Frame::Record {
            offset: 1,
            mutation: delta("k", 2, base, 6 << 16, seq, 1),
        };
        assert_eq!(decode(&rec).is_ok(), ok, "record seq {seq}");
        let item = Frame::SnapItem {
            key: Bytes::from_static(b"k"),
            value: Bytes::from_static(b"1"),
            flags: 0,
            exptime: 0,
            version: base,
            base,
            touched: Version::ZERO,
            counter: Some(Counter::from_parts(0, [Contribution::new(2, seq, 1)])),
        };
        assert_eq!(decode(&item).is_ok(), ok, "snapshot seq {seq}");
    }
}

const SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const ME: u32 = 4242;

/// A hostile but authenticated peer's end of one link to `node`, past HELLO.
async fn connect(node: &Node, sec: &Security) -> PeerLink {
    let mut p = PeerLink::dial(&node.addr.to_string(), sec, "127.0.0.1")
        .await
        .expect("the hostile peer holds the secret");
    p.hello(ME, None).await;
    assert!(matches!(p.next().await, Some(Frame::Hello { .. })));
    p
}

fn protocol_errors(n: &Node) -> u64 {
    n.stat("repl_protocol_errors").unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_at_the_top_of_the_range_never_wrap_and_close_the_link_as_a_protocol_error() {
    let secret = write_secret("arith", SECRET);
    let a = start_node(NodeOpts {
        secret: Some(secret.clone()),
        ..Default::default()
    })
    .await;
    let sec = security(&secret);
    let put = |key: &'static str| Mutation {
        key: Bytes::from_static(key.as_bytes()),
        version: Version::new(a.store.clock().tick().hlc, ME),
        kind: MutationKind::Put {
            flags: 0,
            exptime: 0,
            value: Bytes::from_static(b"v"),
        },
    };

    // 1. PSYNC asking to resume A's own run after offset u64::MAX: `offset + 1` in the backlog
    //    panicked the link (debug) or wrapped (release). A must just answer "full sync".
    let mut p = connect(&a, &sec).await;
    let Some(Frame::Psync { run, .. }) = p.next().await else {
        panic!("no PSYNC from the node");
    };
    p.send(Frame::Psync {
        run: 7,
        next: 1,
        want_run: run,
        want_offset: u64::MAX,
    })
    .await;
    assert_eq!(
        p.next().await,
        Some(Frame::SyncMode { full: true }),
        "the node did not answer a PSYNC for offset u64::MAX"
    );
    // Then a record at the largest offset: taken (nothing wraps), it becomes our progress.
    p.send(Frame::SyncMode { full: true }).await;
    p.send(Frame::FullSync { run: 7, start: 1 }).await;
    p.send(Frame::SnapEnd { items: 0 }).await;
    p.send(Frame::Record {
        offset: u64::MAX,
        mutation: put("at-the-top"),
    })
    .await;
    assert!(
        eventually(10, || a.get("at-the-top").is_some()).await,
        "the record was not applied"
    );
    assert_eq!(protocol_errors(&a), 0);
    drop(p);

    // 2. A new link resumes "from u64::MAX + 1": `have + 1` wrapped to 0 in release, so a
    //    CONTINUE from 0 was taken (and panicked the link in debug). It is a protocol error.
    let mut p = connect(&a, &sec).await;
    let Some(Frame::Psync { want_offset, .. }) = p.next().await else {
        panic!("no PSYNC from the node");
    };
    assert_eq!(want_offset, u64::MAX, "the node's progress on our run");
    p.send(Frame::Psync {
        run: 7,
        next: 1,
        want_run: 0,
        want_offset: 0,
    })
    .await;
    assert!(matches!(p.next().await, Some(Frame::SyncMode { .. })));
    p.send(Frame::SyncMode { full: false }).await;
    p.send(Frame::Continue { run: 7, from: 0 }).await;
    assert!(p.closed().await, "the node kept the link");
    assert!(
        eventually(10, || protocol_errors(&a) == 1).await,
        "not counted as a protocol error: {}",
        protocol_errors(&a)
    );

    // 3. A delta whose seq is past MAX_SEQ: refused at decode, a protocol error too.
    let mut p = connect(&a, &sec).await;
    assert!(matches!(p.next().await, Some(Frame::Psync { .. })));
    p.send(Frame::Psync {
        run: 8,
        next: 1,
        want_run: 0,
        want_offset: 0,
    })
    .await;
    assert!(matches!(p.next().await, Some(Frame::SyncMode { .. })));
    p.send(Frame::SyncMode { full: true }).await;
    p.send(Frame::FullSync { run: 8, start: 1 }).await;
    p.send(Frame::SnapEnd { items: 0 }).await;
    a.set("ctr", "1");
    let base = a.store.entry(b"ctr").item().unwrap().version();
    let hlc = a.store.clock().tick().hlc;
    p.send(Frame::Record {
        offset: 1,
        mutation: delta("ctr", ME, base, hlc, u64::MAX, 5),
    })
    .await;
    assert!(p.closed().await, "the node kept the link");
    assert!(
        eventually(10, || protocol_errors(&a) == 2).await,
        "not counted as a protocol error: {}",
        protocol_errors(&a)
    );
    assert_eq!(a.get("ctr").as_deref(), Some("1"));
}
