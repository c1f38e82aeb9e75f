//! Hot paths without the network: store lookup, store, incr, eviction, and reply encoding.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use repcached::protocol::reply::write_value;
use repcached::store::{Expiry, Store, StoreConfig, WriteMode};

fn filled(n: usize) -> (Store, Vec<Vec<u8>>) {
    let store = Store::new(StoreConfig {
        mem_limit: 1 << 30,
        ..Default::default()
    });
    let keys: Vec<Vec<u8>> = (0..n)
        .map(|i| format!("key:{i:010}").into_bytes())
        .collect();
    for k in &keys {
        store
            .entry(k)
            .put(&[&[b'v'; 100]], 0, Expiry::Never, None)
            .unwrap();
    }
    (store, keys)
}

fn bench_store(c: &mut Criterion) {
    let (store, keys) = filled(100_000);
    let mut i = 0usize;
    c.bench_function("store/lookup_hit_copy_100b", |b| {
        let mut out = Vec::with_capacity(256);
        b.iter(|| {
            i = (i + 7919) % keys.len();
            let mut e = store.entry(&keys[i]);
            if let Some(it) = e.item() {
                out.clear();
                out.extend_from_slice(it.value());
            }
            e.bump();
            black_box(out.len())
        })
    });
    c.bench_function("store/lookup_miss", |b| {
        b.iter(|| black_box(store.entry(b"no-such-key").item().is_some()))
    });
    let value = [b'x'; 100];
    c.bench_function("store/set_100b_overwrite", |b| {
        b.iter(|| {
            i = (i + 7919) % keys.len();
            let mut e = store.entry(&keys[i]);
            black_box(e.store(WriteMode::Set, 0, Expiry::Never, &value, None, false))
        })
    });
    store
        .entry(b"counter")
        .put(&[b"0"], 0, Expiry::Never, None)
        .unwrap();
    c.bench_function("store/incr", |b| {
        b.iter(|| black_box(store.entry(b"counter").arith(true, 1)))
    });
    let small = Store::new(StoreConfig {
        mem_limit: 4 << 20,
        ..Default::default()
    });
    let mut n = 0u64;
    c.bench_function("store/set_with_eviction", |b| {
        b.iter(|| {
            n += 1;
            let key = n.to_le_bytes();
            let stored = small
                .entry(&key)
                .put(&[&value], 0, Expiry::Never, None)
                .is_ok();
            black_box(stored)
        })
    });
}

/// Reply encoding alone: one get hit's VALUE line and data, with and without a CAS id.
fn bench_encode(c: &mut Criterion) {
    let value = [b'v'; 100];
    let mut out = Vec::with_capacity(4096);
    c.bench_function("encode/value_100b", |b| {
        b.iter(|| {
            out.clear();
            write_value(&mut out, b"user:session:1234", 0, black_box(&value), None);
            black_box(out.len())
        })
    });
    c.bench_function("encode/value_100b_cas", |b| {
        b.iter(|| {
            out.clear();
            write_value(
                &mut out,
                b"user:session:1234",
                7,
                black_box(&value),
                Some(117_440_512_000_000_001),
            );
            black_box(out.len())
        })
    });
}

criterion_group!(benches, bench_store, bench_encode);
criterion_main!(benches);
