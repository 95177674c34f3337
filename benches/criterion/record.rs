//! Recording one finished request: status counter, latency histogram, SLO window, in-flight
//! gauge. Single-threaded, and with both cores recording into the same backend (the contended
//! case a hot route produces).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use vireo_proxy::metrics::{Metrics, Outcome};

fn record(c: &mut Criterion) {
    let metrics = Metrics::new(&vireo_types::config::default_latency_buckets());
    let stats = metrics.backend("checkout", "canary", "v2");
    let mut g = c.benchmark_group("record_request");
    g.throughput(Throughput::Elements(1));
    g.bench_function("one_thread", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            stats.begin();
            let now = metrics.now_ms(Instant::now());
            stats.record(
                black_box(Outcome::Status(200)),
                Duration::from_micros(500 + (i & 1023)),
                now,
            );
            stats.end();
        })
    });
    g.bench_function("two_threads_same_backend", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            std::thread::scope(|s| {
                for _ in 0..2 {
                    let (stats, metrics) = (Arc::clone(&stats), Arc::clone(&metrics));
                    s.spawn(move || {
                        for i in 0..iters {
                            stats.begin();
                            let now = metrics.now_ms(Instant::now());
                            stats.record(
                                Outcome::Status(200),
                                Duration::from_micros(500 + (i & 1023)),
                                now,
                            );
                            stats.end();
                        }
                    });
                }
            });
            // Per request across both threads: wall time / (2 * iters).
            start.elapsed() / 2
        })
    });
    g.finish();
}

criterion_group!(benches, record);
criterion_main!(benches);
