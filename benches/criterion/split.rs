//! The split decision: `XXH3_64(salt ":" key) mod buckets` plus the bucket-range lookup, and
//! the full route selection the request path runs (match route, read key header, pick backend).
//! Target: under 50 ns per split decision.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use vireo_proxy::metrics::Metrics;
use vireo_proxy::route::{RouteTable, Selection};
use vireo_types::config::Config;
use vireo_types::split::Split;

fn split_decision(c: &mut Criterion) {
    let split = Split::new(100, &[5, 95]).unwrap();
    let salt = b"checkout-v2";
    let mut g = c.benchmark_group("split_decision");
    g.throughput(Throughput::Elements(1));
    for len in [16usize, 64] {
        // Distinct keys of the given length, so the branch predictor cannot learn one answer.
        let keys: Vec<Vec<u8>> = (0..1024)
            .map(|i| format!("{:0>width$}", format!("u-{i}"), width = len).into_bytes())
            .collect();
        g.bench_with_input(BenchmarkId::new("key_bytes", len), &keys, |b, keys| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) & 1023;
                black_box(split.backend_for_key(salt, black_box(&keys[i])))
            })
        });
    }
    g.bench_function("weighted_random", |b| {
        let mut rng = fastrand_like(1);
        b.iter(|| black_box(split.backend_for_random(rng())))
    });
    g.finish();
}

fn route_selection(c: &mut Criterion) {
    // The shipped example: a path-prefix route keyed on x-user-id, canary at 5 %.
    let config = Config::parse(include_str!("../../deploy/examples/proxy.yaml")).unwrap();
    let metrics = Metrics::new(&[1.0]);
    let table = RouteTable::compile(config, 1, &metrics).unwrap();
    let uri: http::Uri = "/cart?x=1".parse().unwrap();
    let requests: Vec<http::HeaderMap> = (0..1024)
        .map(|i| {
            let mut h = http::HeaderMap::new();
            h.insert("host", "checkout.local".parse().unwrap());
            h.insert("user-agent", "bench/1.0".parse().unwrap());
            h.insert("x-user-id", format!("user-{i:08}").parse().unwrap());
            h
        })
        .collect();
    let mut g = c.benchmark_group("route_selection");
    g.throughput(Throughput::Elements(1));
    g.bench_function("prefix_header_key", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) & 1023;
            match table.select(&uri, &requests[i], None, || 0) {
                Selection::Backend { backend, .. } => black_box(backend.weight()),
                Selection::Unmatched(_) => unreachable!(),
            }
        })
    });
    g.finish();
}

/// splitmix64, to keep the RNG out of the measured cost.
fn fastrand_like(mut state: u64) -> impl FnMut() -> u64 {
    move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

criterion_group!(benches, split_decision, route_selection);
criterion_main!(benches);
