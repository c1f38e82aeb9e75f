//! Convergence of the merge rules under random concurrent histories, without the network: two
//! stores, random writes on both, each node's records delivered to the other in origin order at
//! random moments (sometimes replaced by a full snapshot, as after a long break). Once every
//! record is delivered, both stores must hold exactly the same items.

use parking_lot::Mutex;
use repcached::store::{
    unix_now, Counter, Expiry, Mutation, MutationKind, MutationSink, SnapshotEntry, Store,
    StoreConfig, Version, WriteMode,
};
use std::collections::VecDeque;
use std::sync::Arc;

struct Queue(Mutex<VecDeque<Mutation>>);

impl MutationSink for Queue {
    fn publish(&self, m: Mutation) {
        self.0.lock().push_back(m);
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What the replication link does for the store, which these simulations bypass: it admits
/// every node that authenticates, and learns the origins snapshots name (earlier incarnations
/// of restarted nodes). The simulated nodes have ids 1..=`last`, restarted ones the next ids.
fn admit_peers(s: &Store, last: u32) {
    for id in 1..=last {
        assert!(s.admit_node(id));
    }
}

fn node(id: u32) -> (Arc<Store>, Arc<Queue>) {
    let s = Arc::new(Store::new(StoreConfig {
        node_id: id,
        shards: 4,
        ..Default::default()
    }));
    admit_peers(&s, 2);
    let q = Arc::new(Queue(Mutex::new(VecDeque::new())));
    s.set_mutation_sink(q.clone());
    (s, q)
}

fn deliver(from: &Queue, to: &Store, n: usize) {
    for _ in 0..n {
        let Some(m) = from.0.lock().pop_front() else {
            return;
        };
        to.apply_remote(&m);
    }
}

/// A node's full-resync snapshot: its flush horizon, then every item and tombstone.
fn snapshot(from: &Store) -> (Vec<(u32, Version)>, Vec<Snap>) {
    let mut frames = Vec::new();
    for i in 0..from.shard_count() {
        from.snapshot_shard(i, |e| match e {
            SnapshotEntry::Item(it, counter) => frames.push(Snap::Item {
                key: it.key().to_vec(),
                value: it.value().to_vec(),
                flags: it.flags(),
                exptime: it.exptime(),
                version: it.version(),
                base: it.base(),
                touched: it.touched(),
                counter: counter.cloned(),
            }),
            SnapshotEntry::Tombstone {
                key,
                version,
                touched,
                exptime,
            } => frames.push(Snap::Tomb {
                key: key.to_vec(),
                version,
                touched,
                exptime,
            }),
        });
    }
    (from.flush_marks(), frames)
}

/// Applies a snapshot as the link's receiver does.
fn apply_snapshot(to: &Store, (flushes, frames): (Vec<(u32, Version)>, Vec<Snap>)) {
    for (at, version) in flushes {
        to.apply_remote(&Mutation {
            key: Default::default(),
            version,
            kind: MutationKind::Flush { at },
        });
    }
    for f in frames {
        match f {
            Snap::Item {
                key,
                value,
                flags,
                exptime,
                version,
                base,
                touched,
                counter,
            } => {
                to.apply_snapshot_item(
                    &key,
                    &value,
                    flags,
                    exptime,
                    version,
                    base,
                    touched,
                    counter.as_ref(),
                );
            }
            Snap::Tomb {
                key,
                version,
                touched,
                exptime,
            } => {
                if version != Version::ZERO {
                    to.apply_remote(&Mutation {
                        key: key.clone().into(),
                        version,
                        kind: MutationKind::Delete,
                    });
                }
                if touched != Version::ZERO {
                    to.apply_remote(&Mutation {
                        key: key.into(),
                        version: touched,
                        kind: MutationKind::Touch { exptime },
                    });
                }
            }
        }
    }
}

/// A full resync between two nodes, both ways (as the link does): each snapshot replaces the
/// records not yet delivered in its direction.
fn full_sync(a: &Store, qa: &Mutex<VecDeque<Mutation>>, b: &Store, qb: &Mutex<VecDeque<Mutation>>) {
    let (sa, sb) = (snapshot(a), snapshot(b));
    qa.lock().clear();
    qb.lock().clear();
    apply_snapshot(b, sa);
    apply_snapshot(a, sb);
}

enum Snap {
    Item {
        key: Vec<u8>,
        value: Vec<u8>,
        flags: u32,
        exptime: u32,
        version: Version,
        base: Version,
        touched: Version,
        counter: Option<Counter>,
    },
    Tomb {
        key: Vec<u8>,
        version: Version,
        touched: Version,
        exptime: u32,
    },
}

fn random_op(s: &Store, rng: &mut Rng, now: u32, arith: bool) {
    let key = format!("k{}", rng.below(6));
    let mut e = s.entry(key.as_bytes());
    match rng.below(10) {
        0 | 1 => {
            let v = format!("v{}", rng.below(100));
            let exp = if rng.below(3) == 0 {
                Expiry::At(now + 1000 + rng.below(1000) as u32)
            } else {
                Expiry::Never
            };
            e.put(&[v.as_bytes()], rng.below(4) as u32, exp, None)
                .unwrap();
        }
        2 => {
            // Near 0 half of the time: concurrent decrements cross it.
            let v: &[u8] = if rng.below(2) == 0 { b"1000" } else { b"3" };
            e.put(&[v], 0, Expiry::Never, None).unwrap();
        }
        3 | 4 if arith => {
            let _ = e.arith(rng.below(2) != 0, rng.below(10));
        }
        5 => {
            e.delete();
        }
        6 => {
            let exp = match rng.below(4) {
                0 => Expiry::Expired,
                1 => Expiry::Never,
                _ => Expiry::At(now + 2000 + rng.below(1000) as u32),
            };
            e.touch(exp);
        }
        7 => {
            let _ = e.store(WriteMode::Append, 0, Expiry::Never, b"+", None, false);
        }
        8 => {
            let _ = e.store(WriteMode::Add, 1, Expiry::Never, b"added", None, false);
        }
        _ => {
            drop(e);
            if rng.below(8) == 0 {
                s.flush_all(0);
            }
        }
    }
}

fn contents(s: &Store) -> Vec<(Vec<u8>, Vec<u8>, u32, u32)> {
    let mut out = Vec::new();
    for i in 0..s.shard_count() {
        s.snapshot_shard(i, |e| {
            if let SnapshotEntry::Item(it, _) = e {
                // Counters are compared by number: memcached pads a shrinking counter with spaces
                // in place, so the bytes depend on the order increments were applied in.
                let v = it.value();
                let value = match repcached::store::parse_counter(v) {
                    Some(n) if v.first().is_some_and(u8::is_ascii_digit) => {
                        n.to_string().into_bytes()
                    }
                    _ => v.to_vec(),
                };
                out.push((it.key().to_vec(), value, it.flags(), it.exptime()));
            }
        });
    }
    out.sort();
    out
}

fn run_histories(seeds: std::ops::RangeInclusive<u64>, snapshots: bool, arith: bool) {
    let now = unix_now();
    for seed in seeds {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let (a, qa) = node(1);
        let (b, qb) = node(2);
        let use_snapshots = snapshots;
        for _ in 0..200 {
            match rng.below(10) {
                0..=3 => random_op(&a, &mut rng, now, arith),
                4..=7 => random_op(&b, &mut rng, now, arith),
                8 => deliver(&qa, &b, rng.below(5) as usize),
                _ => deliver(&qb, &a, rng.below(5) as usize),
            }
            if use_snapshots && rng.below(40) == 0 {
                full_sync(&a, &qa.0, &b, &qb.0);
            }
        }
        // Quiet: everything still queued arrives (both directions, any interleaving).
        while !qa.0.lock().is_empty() || !qb.0.lock().is_empty() {
            deliver(&qa, &b, 3);
            deliver(&qb, &a, 2);
        }
        let (ca, cb) = (contents(&a), contents(&b));
        assert_eq!(
            ca,
            cb,
            "seed {seed}: nodes differ\n a: {:?}\n b: {:?}",
            ca.iter()
                .map(|(k, v, f, e)| (String::from_utf8_lossy(k), String::from_utf8_lossy(v), f, e))
                .collect::<Vec<_>>(),
            cb.iter()
                .map(|(k, v, f, e)| (String::from_utf8_lossy(k), String::from_utf8_lossy(v), f, e))
                .collect::<Vec<_>>()
        );
    }
}

/// Records delivered in origin order, at random moments: values, flags and expiry times end
/// identical, counters included.
#[test]
fn random_concurrent_histories_converge() {
    run_histories(1..=3000, false, true);
}

/// With full resyncs (both ways, each snapshot replacing the records not yet delivered in its
/// direction) thrown in, counters included (snapshots carry their per-node contributions).
#[test]
fn random_histories_with_full_resyncs_converge() {
    run_histories(1..=3000, true, true);
}

/// Copies every record to one queue per peer (a mesh node sends its own writes to each peer).
struct Fanout(Vec<Mutex<VecDeque<Mutation>>>);

impl MutationSink for Fanout {
    fn publish(&self, m: Mutation) {
        for q in &self.0 {
            q.lock().push_back(m.clone());
        }
    }
}

/// Three nodes, each sending its own writes to the two others; the per-link order is kept but
/// the links run at independent, random speeds (records from different origins interleave in
/// every possible way).
fn run_mesh(seeds: std::ops::RangeInclusive<u64>, snapshots: bool, arith: bool) {
    let now = unix_now();
    for seed in seeds {
        let mut rng = Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1);
        let nodes: Vec<(Arc<Store>, Arc<Fanout>)> = (1..=3)
            .map(|id| {
                let s = Arc::new(Store::new(StoreConfig {
                    node_id: id,
                    shards: 4,
                    ..Default::default()
                }));
                let f = Arc::new(Fanout(
                    (0..3).map(|_| Mutex::new(VecDeque::new())).collect(),
                ));
                s.set_mutation_sink(f.clone());
                admit_peers(&s, 3);
                (s, f)
            })
            .collect();
        // Queue `to` of node `from` carries from's writes to node `to`.
        let step = |from: usize, to: usize, n: usize| {
            for _ in 0..n {
                let Some(m) = nodes[from].1 .0[to].lock().pop_front() else {
                    return;
                };
                nodes[to].0.apply_remote(&m);
            }
        };
        for _ in 0..200 {
            let r = rng.below(12) as usize;
            if r < 6 {
                random_op(&nodes[r % 3].0, &mut rng, now, arith);
            } else if snapshots && r == 6 && rng.below(6) == 0 {
                let from = rng.below(3) as usize;
                let to = (from + 1 + rng.below(2) as usize) % 3;
                full_sync(
                    &nodes[from].0,
                    &nodes[from].1 .0[to],
                    &nodes[to].0,
                    &nodes[to].1 .0[from],
                );
            } else {
                let from = rng.below(3) as usize;
                let to = (from + 1 + rng.below(2) as usize) % 3;
                step(from, to, rng.below(4) as usize);
            }
        }
        loop {
            let pending: usize = (0..3)
                .flat_map(|f| (0..3).filter(move |t| *t != f).map(move |t| (f, t)))
                .map(|(f, t)| nodes[f].1 .0[t].lock().len())
                .sum();
            if pending == 0 {
                break;
            }
            for f in 0..3 {
                for t in 0..3 {
                    if f != t {
                        step(f, t, 1 + rng.below(3) as usize);
                    }
                }
            }
        }
        let c: Vec<_> = nodes.iter().map(|(s, _)| contents(s)).collect();
        assert_eq!(c[0], c[1], "seed {seed}: nodes 1 and 2 differ");
        assert_eq!(c[1], c[2], "seed {seed}: nodes 2 and 3 differ");
    }
}

#[test]
fn random_histories_in_a_three_node_mesh_converge() {
    run_mesh(1..=1500, false, true);
}

/// In a mesh, a snapshot between two nodes also carries a third node's increments, which the
/// receiver may get again from that node: merging contributions by origin counts them once.
#[test]
fn random_histories_in_a_three_node_mesh_with_full_resyncs_converge() {
    run_mesh(1..=1500, true, true);
}

/// One node of a counter history: its store, its outgoing queues (one per peer slot), and
/// whether it is cut off from the others (a partition: nothing is delivered to or from it).
struct CNode {
    store: Arc<Store>,
    out: Arc<Fanout>,
    cut: bool,
}

fn counter_node(id: u32, n: usize) -> CNode {
    let store = Arc::new(Store::new(StoreConfig {
        node_id: id,
        shards: 2,
        ..Default::default()
    }));
    let out = Arc::new(Fanout(
        (0..n).map(|_| Mutex::new(VecDeque::new())).collect(),
    ));
    store.set_mutation_sink(out.clone());
    admit_peers(&store, id.max(n as u32));
    CNode {
        store,
        out,
        cut: false,
    }
}

fn counter_value(s: &Store, key: &[u8]) -> Option<u64> {
    let e = s.entry(key);
    e.item()
        .map(|it| repcached::store::parse_counter(it.value()).expect("a number"))
}

/// Random histories of one counter on `n` nodes (2 or 3): set (rarely), incr and decr crossing
/// zero, delete (rarely), partitions, records delivered in per-link order at random speeds,
/// full resyncs (which replace the records not yet delivered) and clean restarts of the third
/// node (a new node id that gets everything by snapshots). Checks, once everything is
/// delivered: every node shows the same value; the newest full write or delete wins; and no
/// change a client saw is lost: with `exact`, decrements never reach zero and the value is
/// exactly base + increments - decrements; otherwise it is at least max(0, that sum) (a deficit
/// left by concurrent decrements crossing zero is made up by the next increment; see
/// store::counter).
fn run_counter_histories(seeds: std::ops::RangeInclusive<u64>, n: usize, exact: bool) -> u64 {
    let mut tried = 0;
    for seed in seeds {
        tried += 1;
        let mut rng = Rng(seed.wrapping_mul(0xD134_2543_DE82_EF95) | 1);
        let mut nodes: Vec<CNode> = (0..n).map(|i| counter_node(i as u32 + 1, n)).collect();
        let mut next_id = n as u32 + 1;
        let key: &[u8] = b"c";
        let base0: u64 = if exact { 1_000_000 } else { 3 };
        nodes[0]
            .store
            .entry(key)
            .put(&[base0.to_string().as_bytes()], 0, Expiry::Never, None)
            .unwrap();
        // The newest full write or delete: (version, Some(base value)) or (version, None).
        let mut newest: (Version, Option<u64>) = (nodes[0].out.0[1].lock()[0].version, Some(base0));
        // Client-visible changes on the newest write's lineage, by base version.
        let mut changes: std::collections::HashMap<Version, i128> = Default::default();
        let deliver_one = |nodes: &Vec<CNode>, from: usize, to: usize| -> bool {
            if nodes[from].cut || nodes[to].cut {
                return false;
            }
            let m = nodes[from].out.0[to].lock().pop_front();
            match m {
                Some(m) => {
                    nodes[to].store.apply_remote(&m);
                    true
                }
                None => false,
            }
        };
        let sync = |nodes: &Vec<CNode>, i: usize, j: usize| {
            full_sync(
                &nodes[i].store,
                &nodes[i].out.0[j],
                &nodes[j].store,
                &nodes[j].out.0[i],
            );
        };
        for _ in 0..150 {
            let r = rng.below(20);
            let at = rng.below(n as u64) as usize;
            match r {
                0..=8 => {
                    let s = nodes[at].store.clone();
                    let mut e = s.entry(key);
                    let Some(before) = e.item().map(|it| it.base()) else {
                        continue;
                    };
                    let shown = e
                        .item()
                        .and_then(|it| repcached::store::parse_counter(it.value()))
                        .unwrap();
                    let incr = rng.below(2) == 0;
                    let delta = if exact && !incr {
                        rng.below(3)
                    } else {
                        rng.below(7)
                    };
                    let (v, _) = e.arith(incr, delta).unwrap();
                    let expect = if incr {
                        shown.wrapping_add(delta)
                    } else {
                        shown.saturating_sub(delta)
                    };
                    assert_eq!(
                        v, expect,
                        "seed {seed}: a local incr/decr follows memcached"
                    );
                    *changes.entry(before).or_default() += v as i128 - shown as i128;
                }
                9 if rng.below(4) == 0 => {
                    let base = if exact { 1_000_000 } else { rng.below(4) };
                    let s = nodes[at].store.clone();
                    s.entry(key)
                        .put(&[base.to_string().as_bytes()], 0, Expiry::Never, None)
                        .unwrap();
                    let v = nodes[at].out.0[(at + 1) % n].lock().back().unwrap().version;
                    if v > newest.0 {
                        newest = (v, Some(base));
                    }
                }
                10 if rng.below(6) == 0 => {
                    let s = nodes[at].store.clone();
                    if s.entry(key).delete() {
                        let v = nodes[at].out.0[(at + 1) % n].lock().back().unwrap().version;
                        if v > newest.0 {
                            newest = (v, None);
                        }
                    }
                }
                11 => nodes[at].cut = !nodes[at].cut,
                12 if rng.below(3) == 0 => {
                    let j = (at + 1 + rng.below(n as u64 - 1) as usize) % n;
                    if !nodes[at].cut && !nodes[j].cut {
                        sync(&nodes, at, j);
                    }
                }
                13 if n == 3 && rng.below(8) == 0 => {
                    // Clean restart of the third node: it delivers what it has queued (a
                    // stopping node sends everything), then comes back empty with a new id and
                    // gets everything by full resyncs.
                    let k = 2;
                    for to in 0..n {
                        if to != k {
                            while let Some(m) = nodes[k].out.0[to].lock().pop_front() {
                                nodes[to].store.apply_remote(&m);
                            }
                        }
                    }
                    next_id += 1;
                    nodes[k] = counter_node(next_id, n);
                    for j in 0..n {
                        if j != k {
                            assert!(nodes[j].store.admit_node(next_id));
                            nodes[j].out.0[k].lock().clear();
                            sync(&nodes, k, j);
                        }
                    }
                }
                _ => {
                    let to = (at + 1 + rng.below(n as u64 - 1) as usize) % n;
                    for _ in 0..rng.below(4) {
                        deliver_one(&nodes, at, to);
                    }
                }
            }
        }
        // The partitions heal; everything queued arrives, in any interleaving.
        for nd in nodes.iter_mut() {
            nd.cut = false;
        }
        loop {
            let mut moved = false;
            for f in 0..n {
                for t in 0..n {
                    if f != t {
                        for _ in 0..=rng.below(3) {
                            moved |= deliver_one(&nodes, f, t);
                        }
                    }
                }
            }
            if !moved {
                break;
            }
        }
        let values: Vec<Option<u64>> = nodes
            .iter()
            .map(|nd| counter_value(&nd.store, key))
            .collect();
        assert!(
            values.windows(2).all(|w| w[0] == w[1]),
            "seed {seed}: nodes differ: {values:?}"
        );
        let bases: Vec<Option<Version>> = nodes
            .iter()
            .map(|nd| nd.store.entry(key).item().map(|it| it.base()))
            .collect();
        match newest {
            (_, None) => assert_eq!(values[0], None, "seed {seed}: the newest delete wins"),
            (v, Some(base)) => {
                assert_eq!(bases[0], Some(v), "seed {seed}: the newest set wins");
                let sum = base as i128 + changes.get(&v).copied().unwrap_or(0);
                let got = values[0].unwrap() as i128;
                if exact {
                    assert_eq!(
                        got, sum,
                        "seed {seed}: every increment and decrement counts"
                    );
                } else {
                    assert!(
                        got >= sum.max(0),
                        "seed {seed}: {got} lost changes (sum {sum})"
                    );
                }
            }
        }
    }
    tried
}

/// Increments from every node survive partitions, backlog catch-ups and full resyncs: the
/// counter ends at exactly base + all increments - all decrements on every node.
#[test]
fn counters_never_lose_an_increment_pair() {
    assert_eq!(run_counter_histories(1..=3000, 2, true), 3000);
}

#[test]
fn counters_never_lose_an_increment_mesh_with_restarts() {
    assert_eq!(run_counter_histories(1..=3000, 3, true), 3000);
}

/// Concurrent incr and decr crossing zero: every node shows the same number, never below what
/// the clients' changes add up to.
#[test]
fn counters_crossing_zero_converge_pair() {
    assert_eq!(run_counter_histories(1..=3000, 2, false), 3000);
}

#[test]
fn counters_crossing_zero_converge_mesh_with_restarts() {
    assert_eq!(run_counter_histories(1..=3000, 3, false), 3000);
}

/// The TTL merge rules (README, "What is guaranteed"), one table row each: two synced nodes, a
/// few concurrent operations (a short sleep between them makes "newer" a fact of the wall
/// clock), then delivery in each of three ways: A's records first, B's records first, or full
/// snapshots both ways. Both nodes must end with the row's expected (value, expiry offset).
type Row = (
    &'static str,
    fn(&Store, &Store, u32),
    Option<(&'static [u8], Option<u32>)>,
);

fn later() {
    std::thread::sleep(std::time::Duration::from_millis(3));
}

fn put(s: &Store, v: &[u8], exp: Expiry) {
    s.entry(b"k").put(&[v], 0, exp, None).unwrap();
}

fn ttl_rows() -> Vec<Row> {
    vec![
        (
            "a touch newer than a write elsewhere: the write's value, the touch's expiry",
            |a, b, now| {
                put(a, b"new", Expiry::At(now + 100));
                later();
                b.entry(b"k").touch(Expiry::At(now + 5000));
            },
            Some((b"new", Some(5000))),
        ),
        (
            "a write newer than a touch elsewhere wins whole (value and expiry)",
            |a, b, now| {
                b.entry(b"k").touch(Expiry::At(now + 5000));
                later();
                put(a, b"new", Expiry::At(now + 100));
            },
            Some((b"new", Some(100))),
        ),
        (
            "a write without expiry newer than a touch: never expires",
            |a, b, now| {
                b.entry(b"k").touch(Expiry::At(now + 5000));
                later();
                put(a, b"new", Expiry::Never);
            },
            Some((b"new", None)),
        ),
        (
            "a delete newer than a touch: gone",
            |a, b, now| {
                b.entry(b"k").touch(Expiry::At(now + 5000));
                later();
                a.entry(b"k").delete();
            },
            None,
        ),
        (
            "a touch newer than a delete does not bring the key back",
            |a, b, now| {
                a.entry(b"k").delete();
                later();
                b.entry(b"k").touch(Expiry::At(now + 5000));
            },
            None,
        ),
        (
            "a touch into the past is a delete, and an older write elsewhere does not undo it",
            |a, b, now| {
                put(a, b"older", Expiry::At(now + 100));
                later();
                b.entry(b"k").touch(Expiry::Expired);
            },
            None,
        ),
        (
            "a write newer than a touch into the past comes back",
            |a, b, now| {
                b.entry(b"k").touch(Expiry::Expired);
                later();
                put(a, b"newer", Expiry::At(now + 100));
            },
            Some((b"newer", Some(100))),
        ),
        (
            "two touches: the newer one's expiry, on the same value",
            |a, b, now| {
                a.entry(b"k").touch(Expiry::At(now + 300));
                later();
                b.entry(b"k").touch(Expiry::At(now + 700));
            },
            Some((b"10", Some(700))),
        ),
        (
            "incr/decr never change a counter's expiry; a touch does, increments kept",
            |a, b, now| {
                a.entry(b"k").arith(true, 5).unwrap();
                b.entry(b"k").arith(false, 2).unwrap();
                later();
                b.entry(b"k").touch(Expiry::At(now + 900));
                later();
                a.entry(b"k").arith(true, 1).unwrap();
            },
            Some((b"14", Some(900))),
        ),
        (
            "a set newer than increments elsewhere wins with its own expiry",
            |a, b, now| {
                a.entry(b"k").arith(true, 5).unwrap();
                later();
                put(b, b"1", Expiry::At(now + 50));
            },
            Some((b"1", Some(50))),
        ),
    ]
}

type Node = (Arc<Store>, Arc<Queue>);

fn ttl_pair(now: u32) -> (Node, Node) {
    let (a, qa) = node(1);
    let (b, qb) = node(2);
    a.entry(b"k")
        .put(&[b"10"], 0, Expiry::At(now + 1000), None)
        .unwrap();
    deliver(&qa, &b, usize::MAX);
    ((a, qa), (b, qb))
}

fn deliver_all(mode: u32, a: &Store, qa: &Queue, b: &Store, qb: &Queue) {
    match mode {
        0 => {
            deliver(qa, b, usize::MAX);
            deliver(qb, a, usize::MAX);
        }
        1 => {
            deliver(qb, a, usize::MAX);
            deliver(qa, b, usize::MAX);
        }
        _ => full_sync(a, &qa.0, b, &qb.0),
    }
}

fn key_state(s: &Store, now: u32) -> Option<(Vec<u8>, Option<u32>)> {
    let e = s.entry(b"k");
    e.item().map(|it| {
        let v = repcached::store::parse_counter(it.value())
            .map(|n| n.to_string().into_bytes())
            .unwrap_or_else(|| it.value().to_vec());
        (v, (it.exptime() != 0).then(|| it.exptime() - now))
    })
}

#[test]
fn ttl_merge_rules_table() {
    let mut checked = 0;
    for (name, ops, expect) in ttl_rows() {
        for mode in 0..3 {
            let now = unix_now();
            let ((a, qa), (b, qb)) = ttl_pair(now);
            ops(&a, &b, now);
            deliver_all(mode, &a, &qa, &b, &qb);
            let expect = expect.map(|(v, e)| (v.to_vec(), e));
            for (who, s) in [("a", &a), ("b", &b)] {
                assert_eq!(
                    key_state(s, now),
                    expect,
                    "{name} (delivery {mode}, node {who})"
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 30);
}

/// Expiry is local (each node by its own clock, from the remaining time it received): an expired
/// counter is gone on every node, increments made on it before it expired do not bring it back,
/// and a later set starts a new counter.
#[test]
fn an_expired_counter_is_gone_everywhere() {
    for mode in 0..3 {
        let now = unix_now();
        let ((a, qa), (b, qb)) = ttl_pair(now);
        put(&a, b"10", Expiry::At(now + 2));
        deliver(&qa, &b, usize::MAX);
        a.entry(b"k").arith(true, 1).unwrap();
        b.entry(b"k").arith(true, 2).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2100));
        deliver_all(mode, &a, &qa, &b, &qb);
        assert_eq!(key_state(&a, now), None, "delivery {mode}");
        assert_eq!(key_state(&b, now), None, "delivery {mode}");
        put(&b, b"7", Expiry::Never);
        deliver_all(mode, &a, &qa, &b, &qb);
        assert_eq!(key_state(&a, now), Some((b"7".to_vec(), None)));
        assert_eq!(key_state(&b, now), Some((b"7".to_vec(), None)));
    }
}

/// flush_all with a delay: once its time has passed, every write older than it is gone on every
/// node, including writes made elsewhere before the flush time and a counter's increments; writes
/// after the flush time stay.
#[test]
fn a_delayed_flush_is_the_same_on_every_node() {
    for mode in 0..3 {
        let now = unix_now();
        let ((a, qa), (b, qb)) = ttl_pair(now);
        a.flush_all(2);
        deliver(&qa, &b, usize::MAX);
        // Before the flush time, on the other node: a new value and an increment.
        b.entry(b"k").arith(true, 1).unwrap();
        b.entry(b"x")
            .put(&[b"before"], 0, Expiry::Never, None)
            .unwrap();
        assert!(key_state(&b, now).is_some(), "not flushed yet");
        std::thread::sleep(std::time::Duration::from_millis(2100 + 1000));
        b.entry(b"y")
            .put(&[b"after"], 0, Expiry::Never, None)
            .unwrap();
        deliver_all(mode, &a, &qa, &b, &qb);
        for s in [&a, &b] {
            assert_eq!(key_state(s, now), None, "delivery {mode}");
            assert!(s.entry(b"x").item().is_none(), "delivery {mode}");
            assert_eq!(
                s.entry(b"y").item().map(|it| it.value().to_vec()),
                Some(b"after".to_vec())
            );
        }
    }
}
