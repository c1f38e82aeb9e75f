//! Text protocol parsing alone: the per-request cost before any store access.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use repcached::protocol::{text, ParseLimits, Parsed};

fn parse_all(input: &[u8], limits: &ParseLimits) -> usize {
    let mut pos = 0;
    let mut n = 0;
    while pos < input.len() {
        match text::parse(&input[pos..], limits) {
            Parsed::Request(_, used) => pos += used,
            Parsed::Error {
                consumed, swallow, ..
            } => pos += consumed + swallow,
            Parsed::Incomplete => break,
        }
        n += 1;
    }
    n
}

fn bench_parser(c: &mut Criterion) {
    let limits = ParseLimits::default();
    let mut group = c.benchmark_group("parse");
    let cases: [(&str, Vec<u8>); 4] = [
        ("get", b"get user:session:0000001234\r\n".to_vec()),
        ("set_100b", {
            let mut v = b"set user:session:0000001234 0 3600 100\r\n".to_vec();
            v.extend_from_slice(&[b'x'; 100]);
            v.extend_from_slice(b"\r\n");
            v
        }),
        ("multiget_10", {
            let mut v = b"get".to_vec();
            for i in 0..10 {
                v.extend_from_slice(format!(" key:{i:08}").as_bytes());
            }
            v.extend_from_slice(b"\r\n");
            v
        }),
        (
            "mg_flags",
            b"mg user:session:0000001234 v f t c\r\n".to_vec(),
        ),
    ];
    for (name, one) in cases {
        let batch: Vec<u8> = one.iter().copied().cycle().take(one.len() * 16).collect();
        group.throughput(Throughput::Elements(16));
        group.bench_function(format!("{name}_x16_pipelined"), |b| {
            b.iter(|| black_box(parse_all(black_box(&batch), &limits)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_parser);
criterion_main!(benches);
