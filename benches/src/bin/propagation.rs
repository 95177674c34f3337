//! Config propagation: time from a weight change to "applied" (every connected proxy reported
//! the new table), with N watching proxies.
//!
//! The control plane is the real one (store, driver, API on loopback). The watchers are
//! simulated: each runs the proxy's protocol over HTTP — a long poll on
//! `/api/v1/proxy/config`, a heartbeat on `/api/v1/proxy/status` at once after applying a table
//! and every second — without a data plane behind it. The time is the control plane's own,
//! from its timeline: the `promote` input that published the weight, to the `WeightApplied`
//! input. Rounds are bounded (count and time).
//!
//! `cargo run --release -p vireo-benches --bin propagation -- --watchers 1,100,1000`

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use vireo_engine::workload::Recorded;
use vireo_types::wire::SloReport;
use vireo_types::wire::{ConfigUpdate, StatusReport};

#[derive(Parser)]
struct Args {
    /// Watcher counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,100,1000")]
    watchers: Vec<usize>,
    /// Weight changes measured per count.
    #[arg(long, default_value_t = 7)]
    rounds: usize,
}

type Http = Client<HttpConnector, Full<Bytes>>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    println!("| watchers | median ms | max ms | rounds |\n|---:|---:|---:|---:|");
    for &n in &args.watchers {
        let mut times = measure(n, args.rounds).await?;
        times.sort_unstable();
        println!(
            "| {n} | {} | {} | {} |",
            times[times.len() / 2],
            times[times.len() - 1],
            times.len()
        );
    }
    Ok(())
}

async fn measure(watchers: usize, rounds: usize) -> anyhow::Result<Vec<u64>> {
    let dir = std::env::temp_dir().join(format!(
        "vireo-propagation-{}-{watchers}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let control =
        vireo_server::process::start(listener, &dir, Arc::new(Recorded), Default::default())
            .await?;
    // The admin token serves every call here (watchers and the operator alike).
    let _ = TOKEN.set(format!("Bearer {}", control.read_admin_token()?));

    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let http: Http = Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_max_idle_per_host(4 * watchers)
        .build(connector);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..watchers {
        tasks.spawn(watcher(http.clone(), base.clone(), format!("sim-{i}")));
    }
    // Every watcher connected (heartbeat seen) before the first change.
    wait_connected(&http, &base, watchers).await?;

    let mut steps = String::new();
    for w in 1..=rounds + 1 {
        steps.push_str(&format!(
            "        - setWeight: {w}\n        - pause: {{}}\n"
        ));
    }
    let rollout = format!(
        "apiVersion: vireo.dev/v1alpha1
kind: Rollout
metadata: {{ name: prop }}
spec:
  route: prop
  stable: {{ version: v1, addrs: [\"127.0.0.1:9\"] }}
  canary: {{ version: v2, addrs: [\"127.0.0.1:9\"] }}
  strategy:
    canary:
      steps:
{steps}"
    );
    call(&http, "POST", &format!("{base}/api/v1/rollouts"), rollout).await?;
    wait_phase(&http, &base, "Paused", 1).await?;
    for round in 0..rounds {
        call(
            &http,
            "POST",
            &format!("{base}/api/v1/rollouts/prop/promote"),
            String::new(),
        )
        .await?;
        wait_phase(&http, &base, "Paused", round as u64 + 2).await?;
    }
    let timeline = call(
        &http,
        "GET",
        &format!("{base}/api/v1/rollouts/prop/timeline"),
        String::new(),
    )
    .await?;
    let mut times = Vec::new();
    let mut published_at = None;
    for e in timeline["entries"].as_array().into_iter().flatten() {
        let at = e["at_ms"].as_u64().unwrap_or(0);
        if e["input"]["Action"] == "promote" {
            published_at = Some(at);
        }
        if e["input"]["WeightApplied"].is_object() {
            if let Some(p) = published_at.take() {
                times.push(at - p);
            }
        }
    }
    tasks.abort_all();
    let _ = std::fs::remove_dir_all(&dir);
    anyhow::ensure!(
        times.len() == rounds,
        "measured {} of {rounds} rounds",
        times.len()
    );
    Ok(times)
}

/// One simulated proxy: long poll, and heartbeats at once after a table and every second.
async fn watcher(http: Http, base: String, id: String) {
    let (applied_tx, mut applied_rx) = tokio::sync::watch::channel(0u64);
    let beat = {
        let (http, base, id) = (http.clone(), base.clone(), id.clone());
        async move {
            loop {
                let report = StatusReport {
                    proxy: id.clone(),
                    applied_version: *applied_rx.borrow_and_update(),
                    in_flight: Default::default(),
                    slo: SloReport {
                        window_s: 60,
                        routes: Default::default(),
                    },
                    slo_windows: Default::default(),
                    rejected: None,
                };
                let body = serde_json::to_string(&report).expect("serializable");
                let _ = call(&http, "POST", &format!("{base}/api/v1/proxy/status"), body).await;
                let _ = tokio::time::timeout(Duration::from_secs(1), applied_rx.changed()).await;
            }
        }
    };
    tokio::spawn(beat);
    let mut since = 0;
    loop {
        let url = format!("{base}/api/v1/proxy/config?proxy={id}&since={since}");
        match call(&http, "GET", &url, String::new()).await {
            Ok(v) if v.is_object() => {
                if let Ok(u) = serde_json::from_value::<ConfigUpdate>(v) {
                    since = u.version;
                    applied_tx.send_replace(since);
                }
            }
            Ok(_) => {}
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn wait_connected(http: &Http, base: &str, n: usize) -> anyhow::Result<()> {
    for _ in 0..600 {
        let v = call(
            http,
            "GET",
            &format!("{base}/api/v1/proxies"),
            String::new(),
        )
        .await?;
        if v["items"].as_array().map_or(0, Vec::len) >= n {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("{n} watchers did not all connect within 60 s")
}

async fn wait_phase(http: &Http, base: &str, phase: &str, applied: u64) -> anyhow::Result<()> {
    for _ in 0..3000 {
        let v = call(
            http,
            "GET",
            &format!("{base}/api/v1/rollouts/prop"),
            String::new(),
        )
        .await?;
        let s = &v["status"];
        if s["phase"] == phase
            && s["appliedWeights"].as_array().map_or(0, Vec::len) as u64 >= applied
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    anyhow::bail!("the rollout did not reach {phase} with {applied} weights applied within 30 s")
}

/// `Authorization` for every call.
static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// One request; JSON body of a 2xx (Null for an empty body such as 204/304).
async fn call(
    http: &Http,
    method: &str,
    url: &str,
    body: String,
) -> anyhow::Result<serde_json::Value> {
    let req = http::Request::builder()
        .method(method)
        .uri(url)
        .header(
            http::header::AUTHORIZATION,
            TOKEN.get().map_or("", String::as_str),
        )
        .body(Full::new(Bytes::from(body)))?;
    let resp = tokio::time::timeout(Duration::from_secs(40), http.request(req)).await??;
    let status = resp.status();
    let bytes = resp.into_body().collect().await?.to_bytes();
    anyhow::ensure!(
        status.is_success() || status == http::StatusCode::NOT_MODIFIED,
        "{url}: HTTP {status}: {}",
        String::from_utf8_lossy(&bytes)
    );
    Ok(serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
}
