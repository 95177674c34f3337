//! Flag evaluations per second on one core with evaluation events on, and their latency.
//!
//! `cargo run --release -p vireo-benches --bin flags [-- --evaluations 1000000]`
//!
//! The whole process is pinned to one CPU (`sched_setaffinity`), so the evaluator, the tokio
//! runtime (current-thread) and the evaluation-event writer thread share one core. Each call is
//! what an OFREP request runs after parsing: the flag set and cohorts loaded lock-free, the
//! evaluation (the proxy's bucket hash), and the `dev.vireo.flag.evaluated` event built and
//! queued; the writer commits batches to the real SQLite store (WAL, fsync per commit). The
//! rate counts until every event is written. HTTP is not in this figure:
//! `benches/flags/ofrep.sh` measures OFREP end to end with wrk.

use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{Map, Value};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 1_000_000)]
    evaluations: u64,
    #[arg(long, default_value = "/tmp/vireo-flags-bench")]
    dir: std::path::PathBuf,
    /// The CPU to pin to.
    #[arg(long, default_value_t = 0)]
    cpu: usize,
}

fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET writes within it; pid 0 is this process.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    pin(args.cpu);
    let _ = std::fs::remove_dir_all(&args.dir);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let handle = vireo_server::process::start(
        listener,
        &args.dir,
        std::sync::Arc::new(vireo_engine::workload::Recorded),
        Default::default(),
    )
    .await?
    .handle;
    let flag = vireo_core::flags::Flag::parse(
        "key: bench\nvariants: { on: true, off: false }\ndefaultVariant: off\n\
         rules: [ { attribute: tenant, in: [ acme ], variant: on } ]\n\
         fraction: { buckets: 100, variants: [ { variant: on, weight: 5 }, { variant: off, weight: 95 } ] }\n",
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    handle
        .put_flag(flag)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let shared = handle.shared.clone();
    let stats = shared.eval_events.stats.clone();
    let before = stats.written.load(std::sync::atomic::Ordering::Relaxed);

    let mut latencies = Vec::with_capacity(args.evaluations as usize);
    let mut on = 0u64;
    let start = Instant::now();
    for i in 0..args.evaluations {
        let mut ctx = Map::new();
        ctx.insert("targetingKey".into(), Value::String(format!("u-{i}")));
        ctx.insert("region".into(), Value::String("eu-west".into()));
        let t = Instant::now();
        let e = vireo_server::ofrep::evaluate_here(&shared, "bench", &ctx)
            .await
            .expect("the flag exists")
            .expect("evaluates");
        latencies.push(t.elapsed().as_nanos() as u64);
        on += u64::from(e.value == Value::Bool(true));
    }
    let evaluated = start.elapsed();
    // Until every event is on disk.
    let deadline = Instant::now() + Duration::from_secs(120);
    while stats.written.load(std::sync::atomic::Ordering::Relaxed) - before < args.evaluations
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let total = start.elapsed();
    latencies.sort_unstable();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize] as f64 / 1e3;
    let s = &stats;
    println!(
        "{} evaluations on one core (CPU {}), events on: {:.0}/s evaluated, {:.0}/s including \
         every event committed ({:.2} s); latency p50 {:.1} µs, p99 {:.1} µs, max {:.0} µs; \
         {:.1} % on; events: {} written in {} batches, {} waits for queue room",
        args.evaluations,
        args.cpu,
        args.evaluations as f64 / evaluated.as_secs_f64(),
        args.evaluations as f64 / total.as_secs_f64(),
        total.as_secs_f64(),
        pct(0.5),
        pct(0.99),
        pct(1.0),
        100.0 * on as f64 / args.evaluations as f64,
        s.written.load(std::sync::atomic::Ordering::Relaxed) - before,
        s.batches.load(std::sync::atomic::Ordering::Relaxed),
        s.backpressure.load(std::sync::atomic::Ordering::Relaxed),
    );
    let _ = std::fs::remove_dir_all(&args.dir);
    std::process::exit(0);
}
