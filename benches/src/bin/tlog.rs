//! Transparency-log figures: appends per second as the log grows (10^3, 10^5, 10^6 entries),
//! and proof size and verify time at the largest size.
//!
//! `cargo run --release -p vireo-benches --bin tlog [-- --max 1000000]`
//!
//! The log is a real SQLite file with the control plane's settings (WAL, synchronous=FULL).
//! Two append rates are measured at each size: *durable* (one transaction, so one fsync, per
//! append: what a checkpoint costs the driver) and *batched* (1000 appends per transaction:
//! what the tree bookkeeping itself costs). The fill between sizes is batched.

use std::time::Instant;

use clap::Parser;
use rusqlite::Connection;
use vireo_evidence::log::EntryMeta;
use vireo_evidence::merkle;
use vireo_store::log;

#[derive(Parser)]
struct Args {
    /// Largest log size to measure at.
    #[arg(long, default_value_t = 1_000_000)]
    max: u64,
    #[arg(long, default_value = "/tmp/vireo-tlog-bench")]
    dir: std::path::PathBuf,
}

const META: EntryMeta<'static> = EntryMeta {
    at_ms: 0,
    rollout: None,
    generation: None,
    kind: "bench",
    stage: "bench",
    decision: None,
};

/// A typical entry: a signed checkpoint envelope is about 1.5 KB of canonical JSON.
fn entry(i: u64) -> Vec<u8> {
    let mut e = format!("{{\"i\":{i},\"pad\":\"").into_bytes();
    e.resize(1500, b'x');
    e.extend_from_slice(b"\"}");
    e
}

fn fill(conn: &mut Connection, to: u64) -> anyhow::Result<()> {
    let mut n = log::size(conn)?;
    while n < to {
        let tx = conn.transaction()?;
        let end = (n + 1000).min(to);
        for i in n..end {
            log::append(&tx, &META, &entry(i))?;
        }
        tx.commit()?;
        n = end;
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = std::fs::remove_dir_all(&args.dir);
    std::fs::create_dir_all(&args.dir)?;
    let mut conn = Connection::open(args.dir.join("log.db"))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(log::SCHEMA)?;
    println!("size       durable appends/s   batched appends/s");
    for size in [1_000, 100_000, 1_000_000]
        .into_iter()
        .filter(|s| *s <= args.max)
    {
        fill(&mut conn, size)?;
        let t = Instant::now();
        let durable = 200u64;
        for i in 0..durable {
            let tx = conn.transaction()?;
            log::append(&tx, &META, &entry(size + i))?;
            tx.commit()?;
        }
        let durable_rate = durable as f64 / t.elapsed().as_secs_f64();
        let t = Instant::now();
        let before = log::size(&conn)?;
        fill(&mut conn, before + 10_000)?;
        let batched_rate = 10_000.0 / t.elapsed().as_secs_f64();
        println!("{size:<10} {durable_rate:>17.0}   {batched_rate:>17.0}");
    }
    let n = log::size(&conn)?;
    let index = n / 3;
    let t = Instant::now();
    let proof = log::inclusion_proof(&conn, index, n)?.expect("in range");
    let prove_us = t.elapsed().as_secs_f64() * 1e6;
    let root = log::root(&conn, n)?;
    let leaf = merkle::leaf_hash(&entry(index));
    let rounds = 10_000;
    let t = Instant::now();
    for _ in 0..rounds {
        merkle::verify_inclusion(&leaf, index, n, &proof, &root)?;
    }
    let verify_us = t.elapsed().as_secs_f64() * 1e6 / rounds as f64;
    let old = n / 2;
    let consistency = log::consistency_proof(&conn, old, n)?.expect("in range");
    println!(
        "at {n} entries: inclusion proof {} hashes ({} bytes), built in {prove_us:.0} µs, verified in {verify_us:.1} µs; consistency {old}→{n}: {} hashes",
        proof.len(),
        proof.len() * 32,
        consistency.len()
    );
    let _ = std::fs::remove_dir_all(&args.dir);
    Ok(())
}
