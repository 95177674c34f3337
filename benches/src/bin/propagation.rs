//! Fleet scale: time from a weight change to "applied" (every connected proxy reported the
//! new table), and from the last request to an aborted canary ending to the control plane
//! seeing the drain, with N proxies watching — and what the control plane spends on them.
//!
//! The control plane is the real one (store, driver, API on loopback), in this process. The
//! proxies are simulated in a child process (so the control plane's CPU and RSS are its own):
//! each speaks the proxy's protocol over HTTP — a watch stream on `/api/v1/proxy/watch`, a
//! status report on `/api/v1/proxy/status` when its table changes and when its simulated
//! request to the canary ends, and keep-alive reports as far apart as the control plane asks —
//! without a data plane behind it. Every simulated proxy holds one request to the canary
//! from the first canary table on; when the abort's weight-0 table arrives it ends that
//! request 0–100 ms later, as a real one would finish, and reports at once.
//!
//! Times are the control plane's own, from its timeline: the `promote` that published a
//! weight to `WeightApplied`; `abort` to weight 0 applied; and the last simulated request's
//! end (wall clock, written by the child) to `CanaryDrained`. Rounds are bounded in count and
//! time.
//!
//! `cargo run --release -p vireo-benches --bin propagation -- --watchers 1000,5000,10000`
//! (as root for 10 000: it raises the open-file limit to 65 536; two connections per proxy on
//! each side).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
    /// Seconds of idle fleet (keep-alive reports only) over which the control plane's CPU is
    /// read.
    #[arg(long, default_value_t = 10)]
    idle_secs: u64,
    /// Internal: be the simulated fleet of this many proxies (the measuring process runs it).
    #[arg(long, hide = true)]
    simulate: Option<usize>,
    #[arg(long, hide = true)]
    base: Option<String>,
    #[arg(long, hide = true)]
    ends_file: Option<PathBuf>,
}

type Http = Client<HttpConnector, Full<Bytes>>;

/// The bench's token in the child's environment.
const TOKEN_ENV: &str = "VIREO_BENCH_TOKEN";

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    raise_open_files();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if let Some(n) = args.simulate {
        let base = args.base.clone().unwrap_or_default();
        let ends = args.ends_file.clone().unwrap_or_default();
        let token = std::env::var(TOKEN_ENV).unwrap_or_default();
        set_token(token);
        return runtime.block_on(simulate(n, base, ends));
    }
    println!("| proxies | weight applied: median | max | abort → weight 0 | last request → drain seen | control plane CPU idle | CPU while changing | RSS |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &n in &args.watchers {
        let m = runtime.block_on(measure(n, args.rounds, args.idle_secs))?;
        let mut times = m.applied_ms.clone();
        times.sort_unstable();
        println!(
            "| {n} | {} ms | {} ms | {} ms | {} ms | {:.1} % | {:.0} % | {:.0} MB |",
            times[times.len() / 2],
            times[times.len() - 1],
            m.abort_to_zero_ms,
            m.drain_lag_ms,
            m.idle_cpu_pct,
            m.busy_cpu_pct,
            m.rss_mb
        );
    }
    Ok(())
}

/// 65 536 open files (root may raise the hard limit), else as many as the hard limit allows.
fn raise_open_files() {
    let want = 65_536;
    if rlimit::setrlimit(rlimit::Resource::NOFILE, want, want).is_err() {
        let _ = rlimit::increase_nofile_limit(want);
    }
}

struct Measured {
    applied_ms: Vec<u64>,
    abort_to_zero_ms: u64,
    drain_lag_ms: i64,
    idle_cpu_pct: f64,
    busy_cpu_pct: f64,
    rss_mb: f64,
}

/// This process's CPU time so far (user + system).
fn cpu_time() -> Duration {
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

async fn measure(watchers: usize, rounds: usize, idle_secs: u64) -> anyhow::Result<Measured> {
    let dir = std::env::temp_dir().join(format!(
        "vireo-propagation-{}-{watchers}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let control =
        vireo_server::process::start(listener, &dir, Arc::new(Recorded), Default::default())
            .await?;
    // The admin token serves every call here (watchers and the operator alike).
    let token = control.read_admin_token()?;
    set_token(format!("Bearer {token}"));
    let http: Http = Client::builder(hyper_util::rt::TokioExecutor::new()).build({
        let mut c = HttpConnector::new();
        c.set_nodelay(true);
        c
    });

    let ends = dir.join("last-request-end");
    let mut fleet = tokio::process::Command::new(std::env::current_exe()?)
        .args(["--simulate", &watchers.to_string(), "--base", &base])
        .arg("--ends-file")
        .arg(&ends)
        .env(TOKEN_ENV, format!("Bearer {token}"))
        .kill_on_drop(true)
        .spawn()?;
    // Every watcher connected (its first report seen) before anything is measured.
    wait_connected(&http, &base, watchers).await?;
    let rss_mb = rss_mb();
    let cpu = cpu_time();
    tokio::time::sleep(Duration::from_secs(idle_secs)).await;
    let idle_cpu_pct = (cpu_time() - cpu).as_secs_f64() / idle_secs as f64 * 100.0;

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
    let (cpu, started) = (cpu_time(), Instant::now());
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
    let busy_cpu_pct = (cpu_time() - cpu).as_secs_f64() / started.elapsed().as_secs_f64() * 100.0;
    call(
        &http,
        "POST",
        &format!("{base}/api/v1/rollouts/prop/abort"),
        String::new(),
    )
    .await?;
    let status = wait_settled(&http, &base).await?;
    // The child writes the latest end every 20 ms: wait one more beat for the last one.
    tokio::time::sleep(Duration::from_millis(60)).await;
    let last_end: u64 = std::fs::read_to_string(&ends)?.trim().parse()?;

    let timeline = call(
        &http,
        "GET",
        &format!("{base}/api/v1/rollouts/prop/timeline"),
        String::new(),
    )
    .await?;
    let mut applied_ms = Vec::new();
    let (mut published_at, mut abort_at) = (None, None);
    for e in timeline["entries"].as_array().into_iter().flatten() {
        let at = e["at_ms"].as_u64().unwrap_or(0);
        let input = &e["input"];
        if input["Action"] == "promote" {
            published_at = Some(at);
        }
        if input["Action"] == "abort" {
            abort_at = Some(at);
        }
        if input["WeightApplied"].is_object() {
            if let Some(p) = published_at.take() {
                applied_ms.push(at - p);
            }
        }
    }
    // The abort's figures are the status's, counted from the decision (the `abort` input).
    let abort_at = abort_at.ok_or_else(|| anyhow::anyhow!("no abort in the timeline"))?;
    let abort_to_zero_ms = status["abortToZeroMs"].as_u64();
    let drained_at = status["drainMs"].as_u64().map(|d| abort_at + d);
    if std::env::var("VIREO_BENCH_DEBUG").is_ok() {
        eprintln!("abort at {abort_at}, drain seen at {drained_at:?}, last request ended at {last_end}; status {status}");
        for e in timeline["entries"].as_array().into_iter().flatten() {
            eprintln!("{} {}", e["at_ms"], e["input"]);
        }
    }
    let _ = fleet.kill().await;
    drop(control);
    let _ = std::fs::remove_dir_all(&dir);
    anyhow::ensure!(
        applied_ms.len() == rounds,
        "measured {} of {rounds} rounds",
        applied_ms.len()
    );
    Ok(Measured {
        applied_ms,
        abort_to_zero_ms: abort_to_zero_ms.ok_or_else(|| anyhow::anyhow!("no weight 0 applied"))?,
        drain_lag_ms: drained_at.ok_or_else(|| anyhow::anyhow!("no drain seen"))? as i64
            - last_end as i64,
        idle_cpu_pct,
        busy_cpu_pct,
        rss_mb,
    })
}

/// The simulated fleet: `n` proxies, started 500 per 100 ms (a fleet does not start in one
/// instant either), until killed. Writes the latest end of a simulated canary request to
/// `ends` every 20 ms.
async fn simulate(n: usize, base: String, ends: PathBuf) -> anyhow::Result<()> {
    let http: Http = Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_max_idle_per_host(usize::MAX)
        .build({
            let mut c = HttpConnector::new();
            c.set_nodelay(true);
            c
        });
    let last_end = Arc::new(AtomicU64::new(0));
    {
        let last_end = last_end.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(20)).await;
                write_end(&ends, last_end.load(Ordering::SeqCst));
            }
        });
    }
    for i in 0..n {
        tokio::spawn(watcher(
            http.clone(),
            base.clone(),
            format!("sim-{i}"),
            last_end.clone(),
        ));
        if i % 500 == 499 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    std::future::pending().await
}

fn write_end(path: &Path, ms: u64) {
    let tmp = path.with_extension("tmp");
    if std::fs::write(&tmp, ms.to_string()).is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}

/// One simulated proxy: the watch stream, and reports on change and as keep-alives.
async fn watcher(http: Http, base: String, id: String, last_end: Arc<AtomicU64>) {
    let (applied_tx, applied_rx) = tokio::sync::watch::channel(0u64);
    // The one request this proxy holds to the canary: 1 from the first canary table on.
    let in_flight = Arc::new(AtomicI64::new(0));
    let ended = Arc::new(tokio::sync::Notify::new());
    tokio::spawn(reporter(
        http.clone(),
        base.clone(),
        id.clone(),
        applied_rx,
        in_flight.clone(),
        ended.clone(),
    ));
    let mut since = 0;
    loop {
        let url = format!("{base}/api/v1/proxy/watch?proxy={id}&since={since}");
        let Ok(req) = http::Request::builder()
            .uri(&url)
            .header(http::header::AUTHORIZATION, token())
            .body(Full::new(Bytes::new()))
        else {
            return;
        };
        let Ok(resp) = http.request(req).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let mut body = resp.into_body();
        let mut buf = Vec::new();
        while let Some(Ok(frame)) = body.frame().await {
            let Ok(data) = frame.into_data() else {
                continue;
            };
            buf.extend_from_slice(&data);
            while let Some(end) = buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buf.drain(..=end).collect();
                let Ok(u) = serde_json::from_slice::<ConfigUpdate>(&line) else {
                    continue; // keep-alive
                };
                since = u.version;
                let canary = u
                    .routes
                    .iter()
                    .find(|r| r.name == "prop")
                    .and_then(|r| r.split.backends.iter().find(|b| b.name == "canary"))
                    .map(|b| b.weight);
                match canary {
                    Some(w) if w > 0 => {
                        let _ =
                            in_flight.compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst);
                    }
                    Some(0) if in_flight.load(Ordering::SeqCst) == 1 => {
                        // The canary's weight went to 0: its request ends a moment later.
                        let (in_flight, ended, last_end) =
                            (in_flight.clone(), ended.clone(), last_end.clone());
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_millis(fastrand::u64(0..100))).await;
                            last_end.fetch_max(epoch_ms(), Ordering::SeqCst);
                            in_flight.store(0, Ordering::SeqCst);
                            ended.notify_one();
                        });
                    }
                    _ => {}
                }
                applied_tx.send_replace(since);
            }
        }
    }
}

/// Reports at once when the table or the canary request changes, else as far apart as the
/// control plane's last answer said.
async fn reporter(
    http: Http,
    base: String,
    id: String,
    mut applied: tokio::sync::watch::Receiver<u64>,
    in_flight: Arc<AtomicI64>,
    ended: Arc<tokio::sync::Notify>,
) {
    let mut every = Duration::from_secs(1);
    loop {
        let report = StatusReport {
            proxy: id.clone(),
            applied_version: *applied.borrow_and_update(),
            in_flight: [(
                "prop".to_string(),
                [("canary".to_string(), in_flight.load(Ordering::SeqCst))].into(),
            )]
            .into(),
            slo: SloReport {
                window_s: 60,
                routes: Default::default(),
            },
            slo_windows: Default::default(),
            rejected: None,
        };
        let body = serde_json::to_string(&report).expect("serializable");
        if let Ok(v) = call(&http, "POST", &format!("{base}/api/v1/proxy/status"), body).await {
            if let Some(ms) = v["report_every_ms"].as_u64() {
                every = Duration::from_millis(ms);
            }
        }
        let jitter = Duration::from_millis(fastrand::u64(..=every.as_millis() as u64 / 10));
        tokio::select! {
            _ = tokio::time::sleep(every + jitter) => {}
            _ = applied.changed() => {}
            _ = ended.notified() => {}
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
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    anyhow::bail!("{n} watchers did not all connect within 300 s")
}

/// Waits for the aborted rollout to settle (drained) and returns its status.
async fn wait_settled(http: &Http, base: &str) -> anyhow::Result<serde_json::Value> {
    for _ in 0..6000 {
        let v = call(
            http,
            "GET",
            &format!("{base}/api/v1/rollouts/prop"),
            String::new(),
        )
        .await?;
        if v["status"]["settled"] == true {
            anyhow::ensure!(
                v["status"]["drainForced"] != true,
                "the drain was forced at its deadline: {}",
                v["status"]
            );
            return Ok(v["status"].clone());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    anyhow::bail!("the aborted rollout did not settle within 60 s")
}

/// Waits for `phase` with at least `applied` weights applied (0: any).
async fn wait_phase(http: &Http, base: &str, phase: &str, applied: u64) -> anyhow::Result<()> {
    for _ in 0..6000 {
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
    anyhow::bail!("the rollout did not reach {phase} with {applied} weights applied within 60 s")
}

/// `Authorization` for every call (each measured control plane has its own admin token).
static TOKEN: std::sync::RwLock<String> = std::sync::RwLock::new(String::new());

fn set_token(value: String) {
    *TOKEN.write().unwrap_or_else(|e| e.into_inner()) = value;
}

fn token() -> String {
    TOKEN.read().unwrap_or_else(|e| e.into_inner()).clone()
}

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
        .header(http::header::AUTHORIZATION, token())
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
