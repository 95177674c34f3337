//! Event-log figures: append throughput (batched, as the evaluation writer commits, and one
//! durable transaction per event), and the DORA query over a 10^6-event log.
//!
//! `cargo run --release -p vireo-benches --bin events [-- --events 1000000]`
//!
//! A real store (`Store::open`, WAL, `synchronous=FULL`). The log is filled the way a busy
//! control plane fills it: flag evaluations (`dev.vireo.flag.evaluated`) by the thousand, and
//! among them about 1 % CD events — merges, rollout steps, releases, rollbacks, incidents —
//! for 2 500 releases four a day (what DORA reads; the window is the first 31 days).

use std::time::Instant;

use clap::Parser;
use serde_json::json;
use vireo_core::dora::{self, Window};
use vireo_core::events::{self, CloudEvent};
use vireo_store::Store;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    #[arg(long, default_value = "/tmp/vireo-events-bench")]
    dir: std::path::PathBuf,
}

const DAY: u64 = 86_400_000;
const T0: u64 = 1_790_000_000_000;

fn evaluation(i: u64) -> CloudEvent {
    events::event(
        format!("e-{i}"),
        "/vireo/bench/flags/new-checkout".into(),
        events::FLAG_EVALUATED,
        T0 + i * (30 * DAY) / 1_000_000,
        &format!("u-{}", i % 10_000),
        json!({"flag": "new-checkout", "variant": "off", "reason": "SPLIT", "bucket": i % 100,
               "value": false, "context": {"targetingKey": format!("u-{}", i % 10_000)}}),
    )
}

/// The CD events of release `r` (one in five is rolled back, with an incident).
fn release(r: u64) -> Vec<CloudEvent> {
    let at = T0 + r * DAY / 4;
    let rel = format!("svc.g{r}");
    let src = "/vireo/bench/rollouts/svc".to_string();
    let mut out = vec![
        dora::cd(
            events::CHANGE_MERGED,
            "/scm",
            &format!("m-{r}"),
            &vireo_evidence::rfc3339(at),
            "pr",
            json!({"commit": format!("c{r}")}),
        ),
        {
            let mut e = events::event(
                format!("{rel}.step"),
                src.clone(),
                events::ROLLOUT_STEP,
                at + 60_000,
                &rel,
                json!({"to": "Progressing"}),
            );
            e.subject = Some(rel.clone());
            e
        },
    ];
    let done = vireo_evidence::rfc3339(at + 3_600_000);
    if r % 5 == 4 {
        out.push(dora::cd(
            events::SERVICE_ROLLEDBACK,
            &src,
            &format!("{rel}.rb"),
            &done,
            "svc",
            json!({"release": rel}),
        ));
        out.push(dora::cd(
            events::INCIDENT_DETECTED,
            &src,
            &format!("{rel}.inc"),
            &done,
            &format!("{rel}.incident"),
            json!({}),
        ));
        out.push(dora::cd(
            events::INCIDENT_RESOLVED,
            &src,
            &format!("{rel}.fix"),
            &vireo_evidence::rfc3339(at + 3_700_000),
            &format!("{rel}.incident"),
            json!({}),
        ));
    } else {
        out.push(dora::cd(
            events::SERVICE_UPGRADED,
            &src,
            &format!("{rel}.up"),
            &done,
            "svc",
            json!({"commit": format!("c{r}"), "release": rel}),
        ));
    }
    out
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = std::fs::remove_dir_all(&args.dir);
    let mut store = Store::open(&args.dir)?;

    // Durable: one transaction (one fsync) per event.
    let t = Instant::now();
    for i in 0..500 {
        store.ingest(&[evaluation(10_000_000 + i)])?;
    }
    let durable = 500.0 / t.elapsed().as_secs_f64();

    // Batched as the evaluation writer commits (4 096 per transaction), filling the log.
    let batch = 4_096u64;
    let cd_every = 100u64; // 1 % CD events
    let (mut n, mut releases) = (0u64, 0u64);
    let t = Instant::now();
    while n < args.events {
        let mut b: Vec<CloudEvent> = (n..(n + batch).min(args.events)).map(evaluation).collect();
        while (n + b.len() as u64) / cd_every > releases * 4 && releases < 2_500 {
            b.extend(release(releases));
            releases += 1;
        }
        n += b.len() as u64;
        store.ingest(&b)?;
        let _ = store.take_appended();
    }
    let batched = n as f64 / t.elapsed().as_secs_f64();
    println!("event log append: {durable:.0} events/s durable (one fsync each), {batched:.0} events/s batched (4 096 per transaction)");

    let w = Window {
        since: T0,
        until: T0 + 31 * DAY,
    };
    let mut times = Vec::new();
    let mut report = None;
    for _ in 0..5 {
        let t = Instant::now();
        let evs = store.dora_events()?;
        let r = dora::compute(&evs, &w);
        times.push(t.elapsed().as_secs_f64() * 1e3);
        report = Some((evs.len(), r));
    }
    times.sort_by(f64::total_cmp);
    let (read, r) = report.expect("ran");
    println!(
        "DORA over {n} events ({read} CD events read): median {:.1} ms (min {:.1}, max {:.1}); \
         {} releases, change failure rate {:.2}, lead time median {:.0} s, MTTR {:.0} s",
        times[2],
        times[0],
        times[4],
        r.deploy_frequency.value.releases,
        r.change_failure_rate.value.rate.unwrap_or(0.0),
        r.lead_time.value.median_ms.unwrap_or(0.0) / 1e3,
        r.mttr.value.mean_ms.unwrap_or(0.0) / 1e3,
    );
    let _ = std::fs::remove_dir_all(&args.dir);
    Ok(())
}
