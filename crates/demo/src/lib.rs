//! `vireo demo`: the whole product in one process on loopback, no cluster, no Prometheus.
//!
//! It starts the control plane (API on :8080), one real `vireo-proxy` (:4140, admin
//! :4191) in a thread, watching the control plane over HTTP like any sidecar, a stable backend
//! (v1) and a canary backend (v2), and a traffic generator of simulated users (ids in
//! `x-user-id`, so bucket hashing keeps each user on one version). It applies the default
//! recipe and shows it live: a bar of the canary weight, the step, each version's success
//! rate and p95 as the proxy measures them, and the analysis verdicts; then a summary.
//!
//! The recipe (`--speed 1`, 12 minutes): canary 5 %, 25 %, 50 %, each held 3 minutes (a 2-minute
//! pause, then a 1-minute analysis of three measurements of success rate and p95 from the
//! proxies' own SLO windows), then 100 % for 3 minutes. `--speed N` divides every duration;
//! SLO windows do not go below 2 s (the proxy counts in 1-second slots).
//!
//! `--scenario faulty` makes the canary fail about 20 % of requests and answer in 100–400 ms,
//! so the first analysis fails and the abort path runs. `--scenario regress` keeps the canary
//! healthy until it holds 100 %, then degrades it the same way: the post-deploy verification
//! fails and the rollback envelope is replayed (traffic back to v1, the down-migration, the
//! flag), with its RTO and round trip in the summary.
//!
//! Evidence: the demo is its own release pipeline. It makes a builder key, trusts it in the
//! control plane's provenance gate, attests the canary image (SLSA provenance over this build's
//! Cargo.lock) and uploads it before applying the rollout; at the end it exports the bundle,
//! verifies it offline and replays every decision. `--once` exits when the rollout ends
//! (0 completed, 2 aborted, 1 error) with a JSON summary as the last line of stdout.
//!
//! The canary is the demo's one managed workload ([`DemoWorkloads`]): the abort stops it.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use vireo_http::{HttpClient, Limits};

use futures_util::future::BoxFuture;
use vireo_core::analysis::AnalysisTemplate;
use vireo_core::rollout::Phase;
use vireo_core::routes::{CANARY, STABLE};
use vireo_core::spec::{Rollout, Workload};
use vireo_engine::driver::{Handle, RolloutView};
use vireo_engine::workload::{WorkloadError, Workloads};
pub use vireo_testkit::{spawn_backend, spawn_backend_with, Backend};

pub const ROLLOUT: &str = "checkout";
/// The demo's builder (`runDetails.builder.id`), the one its provenance gate allows.
pub const BUILDER_ID: &str = "https://vireo.dev/demo/builder";
/// The demo's flag, tied to the rollout: on exactly for the users the proxy sends to v2.
pub const FLAG: &str = "new-checkout";
/// Who the demo's own calls (apply, the template) are recorded as.
const DEMO_ACTOR: &str = "vireo:demo";
/// The lockfile of this build: the demo's provenance pins every crate in it.
const LOCKFILE: &str = include_str!("../../../Cargo.lock");
/// `deploy/prometheus/`: what `--prometheus` runs with, so the shipped files are the tested ones.
const PROMETHEUS_TEMPLATE: &str = include_str!("../../../deploy/prometheus/analysis-template.yaml");
const PROMETHEUS_RULES: &str = include_str!("../../../deploy/prometheus/rules.yml");
const USERS: u32 = 1000;
const WORKERS: usize = 6;
const PAUSE_BETWEEN_REQUESTS: Duration = Duration::from_millis(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    Healthy,
    Faulty,
    /// Healthy until 100 %, then faulty: post-deploy verification fails, rollback replays.
    Regress,
}

/// The demo's images, by digest (there is no registry: the digest names the version).
pub fn image(version: &str) -> String {
    let digest = vireo_evidence::sha256_hex(format!("vireo demo checkout {version}").as_bytes());
    format!("demo.vireo.dev/checkout@sha256:{digest}")
}

#[derive(Debug, Clone)]
pub struct Options {
    pub speed: u32,
    pub scenario: Scenario,
    pub once: bool,
    pub data_dir: Option<PathBuf>,
    /// Run a local Prometheus (from PATH) scraping the proxy, and analyse with PromQL.
    pub prometheus: bool,
}

/// Exit codes of `--once` (spec).
pub const EXIT_COMPLETED: u8 = 0;
pub const EXIT_ERROR: u8 = 1;
pub const EXIT_ABORTED: u8 = 2;

pub async fn run(opts: Options) -> anyhow::Result<u8> {
    let started = Instant::now();
    let started_ms = vireo_core::clock::now_ms();
    let speed = opts.speed.max(1);
    let data_dir = match &opts.data_dir {
        Some(d) => d.clone(),
        None => PathBuf::from(format!(
            "vireo-data/demo-{}",
            vireo_core::clock::now_ms() / 1000
        )),
    };
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create the data dir {}", data_dir.display()))?;

    // Ports: the defaults when free, else any free one (printed below).
    let api_listener = listen_at_or_free(8080)?;
    let api_addr = api_listener.local_addr()?;
    let proxy_addr = free_port_like(4140)?;
    let admin_addr = free_port_like(4191)?;

    // The two versions of the service.
    let faulty = Arc::new(AtomicBool::new(opts.scenario == Scenario::Faulty));
    let stable = spawn_backend(std::net::TcpListener::bind("127.0.0.1:0")?, "v1", false)?;
    let canary_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let canary_addr = canary_listener.local_addr()?;
    let workloads = Arc::new(DemoWorkloads {
        canary: Mutex::new(Some(spawn_backend_with(
            canary_listener,
            "v2",
            faulty.clone(),
        )?)),
        addr: canary_addr,
        faulty: faulty.clone(),
    });

    // The release pipeline's builder: its key is what the provenance gate trusts.
    let builder_pem = data_dir.join("keys/builder.pem");
    let (builder, _) = vireo_evidence::keys::SigningKey::load_or_create(&builder_pem)?;

    // The control plane.
    let listener = tokio::net::TcpListener::from_std(api_listener)?;
    let control = vireo_server::process::start(
        listener,
        &data_dir,
        workloads.clone(),
        vireo_server::process::Options {
            provenance: Some(vireo_server::process::TrustConfig {
                trusted_keys: vec![builder_pem.with_extension("pub")],
                builders: vec![BUILDER_ID.into()],
            }),
            ..Default::default()
        },
    )
    .await?;
    let handle = control.handle.clone();
    let control_url = format!("http://{api_addr}");
    // The proxy shows the control plane a token of its own, with the proxy role only.
    let (proxy_token, _) = control
        .auth
        .reissue("demo-proxy", vireo_auth::Role::Proxy, "vireo demo")
        .map_err(|e| anyhow::anyhow!("the demo proxy's token: {e}"))?;
    let admin_token = control.read_admin_token()?;

    // The proxy, in a thread of its own (it runs its own runtimes, one per worker).
    let proxy_config = data_dir.join("proxy.yaml");
    std::fs::write(
        &proxy_config,
        format!(
            "# written by vireo demo: routes come from the control plane\n\
             listen: {proxy_addr}\nadmin: {admin_addr}\nshutdown_grace: 5s\nroutes: []\n"
        ),
    )?;
    {
        let control = vireo_proxy::watch::ControlOptions {
            url: control_url.clone(),
            proxy_id: "demo/proxy-0".into(),
            token: Some(vireo_proxy::watch::TokenSource::Value(proxy_token)),
            ca: None,
        };
        let path = proxy_config.clone();
        std::thread::Builder::new()
            .name("vireo-proxy".into())
            .spawn(move || {
                if let Err(e) = vireo_proxy::server::run(
                    &path,
                    vireo_proxy::server::Start {
                        control: Some(control),
                        ..Default::default()
                    },
                ) {
                    eprintln!("vireo demo: the proxy could not start: {e}");
                    std::process::exit(EXIT_ERROR.into());
                }
            })?;
    }
    let http = http_client();
    wait_ready(&http, admin_addr).await?;

    eprintln!(
        "vireo demo ({:?}, speed {speed}): control plane http://{api_addr}  proxy http://{proxy_addr}  proxy admin http://{admin_addr}",
        opts.scenario
    );
    for (name, port, addr) in [
        ("API", 8080, api_addr),
        ("proxy", 4140, proxy_addr),
        ("proxy admin", 4191, admin_addr),
    ] {
        if addr.port() != port {
            eprintln!(
                "  port {port} is taken: the {name} is on {} instead",
                addr.port()
            );
        }
    }
    eprintln!("  state and specs: {}", data_dir.display());
    // The fragment never reaches a server or a log: the console reads it, keeps it for this
    // tab only and removes it from the address bar.
    eprintln!("  console (logged in as admin): http://{api_addr}/#token={admin_token}");

    // Prometheus, when asked for: a child process, killed when this function returns.
    let prometheus = match opts.prometheus {
        false => None,
        true => Some(Prometheus::start(&data_dir.join("prometheus"), admin_addr, &http).await?),
    };
    let prometheus_url = prometheus.as_ref().map(|p| p.url.clone());
    if let Some(url) = &prometheus_url {
        eprintln!(
            "  prometheus: {url} (scraping the proxy every second; rules from deploy/prometheus/)"
        );
    }

    // The recipe.
    let (template, rollout) = recipe(
        speed,
        stable.addr,
        canary_addr,
        prometheus_url.as_deref(),
        opts.scenario,
        &data_dir,
    );
    std::fs::write(data_dir.join("analysis-template.yaml"), &template)?;
    std::fs::write(data_dir.join("rollout.yaml"), &rollout)?;
    let (provenance, commit) = attest_canary(&builder, &data_dir)?;
    // The release pipeline's first events: the change merged (lead time starts here), and the
    // flag that follows the canary's cohort.
    let merged = vireo_core::dora::cd(
        vireo_core::events::CHANGE_MERGED,
        "/vireo-demo/scm",
        &format!("merge-{commit}"),
        &vireo_evidence::rfc3339(vireo_core::clock::now_ms()),
        "demo-change",
        serde_json::json!({"commit": commit, "repository": "https://vireo.dev/demo/checkout"}),
    );
    handle
        .ingest(vec![merged])
        .await
        .map_err(|e| anyhow::anyhow!("recording the merge: {e}"))?;
    let flag = vireo_core::flags::Flag::parse(&format!(
        "key: {FLAG}\nvariants: {{ on: true, off: false }}\ndefaultVariant: off\nrollout: {ROLLOUT}\n"
    ))
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    handle
        .put_flag(flag)
        .await
        .map_err(|e| anyhow::anyhow!("defining the flag: {e}"))?;
    let attested = handle
        .put_attestation(provenance)
        .await
        .and_then(|filed| filed.map_err(vireo_engine::driver::ApiError::Internal))
        .map_err(|e| anyhow::anyhow!("uploading the canary's provenance: {e}"))?;
    eprintln!(
        "  provenance: canary image attested by {BUILDER_ID} (log entry {}; {}/provenance.dsse.json)",
        attested.log_index,
        data_dir.display()
    );
    handle
        .apply_template(AnalysisTemplate::parse(&template).map_err(|e| anyhow::anyhow!("{e}"))?)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;

    handle
        .apply_rollout(
            Rollout::parse(&rollout).map_err(|e| anyhow::anyhow!("{e}"))?,
            DEMO_ACTOR,
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    // Users arrive once the proxy has the route (before, it would answer 404).
    wait_routed(&handle).await?;
    let traffic = Arc::new(Traffic::default());
    let stop_traffic = Arc::new(AtomicBool::new(false));
    for _ in 0..WORKERS {
        tokio::spawn(generate(
            http.clone(),
            proxy_addr,
            traffic.clone(),
            stop_traffic.clone(),
            handle.shared.clone(),
        ));
    }

    // Watch it to the end.
    let limit = Duration::from_secs(2 * 15 * 60 / u64::from(speed) + 60);
    let mut view = LiveView::new();
    let last = loop {
        let v = handle
            .get(ROLLOUT)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        view.show(&v, &handle, &traffic, started);
        let s = &v.status;
        if opts.scenario == Scenario::Regress && s.canary_weight == 100 {
            faulty.store(true, Ordering::Relaxed); // the release regresses once it has it all
        }
        let done = s.settled;
        if done {
            break v;
        }
        if started.elapsed() > limit {
            view.finish();
            anyhow::bail!(
                "the rollout did not finish within {} (phase {:?}: {})",
                humantime::format_duration(limit),
                s.phase,
                s.message
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    view.finish();

    // After an abort, keep the users coming for a second: none may reach the canary.
    let mut canary_after = None;
    if last.status.phase.is_backing_out() {
        let before = traffic.served("v2");
        tokio::time::sleep(Duration::from_secs(1)).await;
        canary_after = Some(traffic.served("v2") - before);
    }
    view.close_flag_segment(&traffic);
    let mut summary = Summary::new(&last, canary_after, &traffic, &data_dir, started.elapsed());
    summary.flag_segments = view.flag_segments.clone();
    let events = handle
        .dora_events()
        .await
        .map_err(|e| anyhow::anyhow!("reading the event log: {e}"))?;
    let window = vireo_core::dora::Window {
        since: started_ms.saturating_sub(1_000),
        until: vireo_core::clock::now_ms() + 1,
    };
    summary.dora = Some(vireo_core::dora::compute(&events, &window));
    let evidence = export_and_verify(&handle, &data_dir).await?;
    summary.evidence = Some(evidence);
    eprint!("{}", summary.text(api_addr));
    println!("{}", summary.json());

    if opts.once {
        stop_traffic.store(true, Ordering::Relaxed);
        return Ok(summary.exit_code());
    }
    eprintln!(
        "The demo keeps running: try `vireo rollout status {ROLLOUT} --server http://{api_addr} \
         --token-file {}` or `curl -H 'x-user-id: u-42' http://{proxy_addr}/`. Ctrl-C stops it.",
        control.admin_token.display()
    );
    let _ = tokio::signal::ctrl_c().await;
    Ok(summary.exit_code())
}

/// SLSA provenance for the demo's canary image, signed by the demo's builder, also written to
/// `<data-dir>/provenance.dsse.json` (what `vireo attest provenance` would write).
/// Returns the envelope and the commit it names (the demo has no git repository: its "commit"
/// is derived from the lockfile, and says so in the provenance's source URI).
fn attest_canary(
    builder: &vireo_evidence::keys::SigningKey,
    data_dir: &Path,
) -> anyhow::Result<(vireo_evidence::dsse::Envelope, String)> {
    use vireo_evidence::{canonical, dsse, provenance};
    let image = image("v2");
    let (name, digest) =
        provenance::image_digest(&image).context("the demo image is referenced by digest")?;
    let now = vireo_core::clock::now_ms();
    let commit = vireo_evidence::sha256_hex(LOCKFILE.as_bytes())[..40].to_string();
    let statement = provenance::statement_for(&provenance::BuildFacts {
        image_name: name,
        image_digest: digest,
        git_commit: &commit,
        repository: "https://vireo.dev/demo/checkout#no-git:commit-is-sha256-of-Cargo.lock",
        builder_id: BUILDER_ID,
        lockfile: ("Cargo.lock", LOCKFILE),
        started_ms: now,
        finished_ms: now,
    })
    .map_err(anyhow::Error::msg)?;
    let envelope = dsse::sign(dsse::IN_TOTO, &canonical(&statement)?, builder);
    std::fs::write(
        data_dir.join("provenance.dsse.json"),
        serde_json::to_vec_pretty(&envelope)?,
    )?;
    Ok((envelope, commit))
}

/// The default recipe's template and rollout (YAML, also written to the data dir), durations
/// divided by `speed`. The rollout's rollback appends to `<data_dir>/down-migrations.log`;
/// `regress` adds a post-deploy verification (the same analysis, at 100 %).
pub fn recipe(
    speed: u32,
    stable: SocketAddr,
    canary: SocketAddr,
    prometheus: Option<&str>,
    scenario: Scenario,
    data_dir: &Path,
) -> (String, String) {
    // Prometheus sees the proxy once a second (scrape, then rule evaluation): with it, pauses
    // stay at least 5 s and intervals 2 s, or every measurement would find no data yet.
    let floor_ms = |secs: u64| match (prometheus.is_some(), secs) {
        (false, _) => 0,
        (true, s) if s <= 30 => 2_000,
        (true, _) => 5_000,
    };
    let d = |secs: u64| {
        humantime::format_duration(Duration::from_millis(
            (secs * 1000 / u64::from(speed)).max(floor_ms(secs)),
        ))
        .to_string()
    };
    let window = humantime::format_duration(Duration::from_millis(
        (60_000 / u64::from(speed)).max(2_000),
    ));
    let native = format!(
        "apiVersion: vireo.dev/v1alpha1
kind: AnalysisTemplate
metadata: {{ name: canary-slo }}
spec:
  args: [ {{ name: route }}, {{ name: backend, value: canary }} ]
  metrics:
    - name: success-rate
      interval: {interval}
      count: 3
      failureLimit: 0
      successCondition: result >= 0.99
      provider:
        proxy: {{ metric: success-rate, window: {window} }}
    - name: p95-latency
      interval: {interval}
      count: 3
      successCondition: result < 0.25
      provider:
        proxy: {{ metric: latency-p95, window: {window} }}
",
        interval = d(30),
    );
    // With Prometheus: the shipped template over the shipped recording rules, unchanged but
    // for its intervals and the server's address.
    let (template, name) = match prometheus {
        None => (native, "canary-slo"),
        Some(url) => (
            PROMETHEUS_TEMPLATE
                .replace("interval: 30s", &format!("interval: {}", d(30)))
                .replace("http://127.0.0.1:9090", url),
            "canary-slo-prometheus",
        ),
    };
    let mut steps = String::new();
    for w in [5, 25, 50] {
        steps.push_str(&format!(
            "        - setWeight: {w}\n        - pause: {{ duration: {} }}\n        - analysis: {{ templates: [ {{ templateName: {name} }} ] }}\n",
            d(120)
        ));
    }
    steps.push_str(&format!(
        "        - setWeight: 100\n        - pause: {{ duration: {} }}\n",
        d(180)
    ));
    if scenario == Scenario::Regress {
        steps.push_str(&format!(
            "      postDeployVerify: {{ templates: [ {{ templateName: {name} }} ] }}\n"
        ));
    }
    // YAML single quotes: only `'` needs escaping (doubled). The shell sees a double-quoted
    // path.
    let log = data_dir.join("down-migrations.log").display().to_string();
    let command = format!(
        "echo \"$(date -u +%FT%TZ) down-migration of $VIREO_ROLLOUT generation $VIREO_GENERATION\" >> \"{log}\""
    )
    .replace('\'', "''");
    let rollout = format!(
        "{}  rollback:\n    downMigration: {{ command: '{command}' }}\n    flag: {{ key: {FLAG}, disable: {{ value: false }} }}\n",
        rollout_yaml(ROLLOUT, stable, canary, &steps)
    );
    (template, rollout)
}

/// A Rollout of `name` (driving the route of that name) from v1 at `stable` to v2 at `canary`,
/// users split by `x-user-id`, with `steps` (YAML list items, indented eight spaces).
pub fn rollout_yaml(name: &str, stable: SocketAddr, canary: SocketAddr, steps: &str) -> String {
    format!(
        "apiVersion: vireo.dev/v1alpha1
kind: Rollout
metadata: {{ name: {name} }}
spec:
  route: {name}
  stable: {{ version: v1, image: \"{stable_image}\", addrs: [\"{stable}\"] }}
  canary: {{ version: v2, image: \"{canary_image}\", addrs: [\"{canary}\"] }}
  split: {{ key: {{ header: x-user-id }}, buckets: 100 }}
  strategy:
    canary:
      steps:
{steps}",
        stable_image = image("v1"),
        canary_image = image("v2"),
    )
}

/// A listener on 127.0.0.1:`port`, or on a free port if that one is taken.
fn listen_at_or_free(port: u16) -> std::io::Result<std::net::TcpListener> {
    let l = std::net::TcpListener::bind(("127.0.0.1", port))
        .or_else(|_| std::net::TcpListener::bind("127.0.0.1:0"))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// An address for a server that binds by itself (the proxy): `port` if it is free now, else a
/// free one. Another process could take it before the proxy binds; the proxy then fails with a
/// clear error.
fn free_port_like(port: u16) -> std::io::Result<SocketAddr> {
    let l = std::net::TcpListener::bind(("127.0.0.1", port))
        .or_else(|_| std::net::TcpListener::bind("127.0.0.1:0"))?;
    l.local_addr()
}

fn http_client() -> HttpClient {
    HttpClient::new(Duration::from_secs(2))
}

/// Probes and the users' requests: small answers, quickly.
const PROBE: Limits = Limits::new(Duration::from_secs(1), 1 << 20);

async fn wait_ready(http: &HttpClient, admin: SocketAddr) -> anyhow::Result<()> {
    let uri = format!("http://{admin}/ready");
    for _ in 0..200 {
        if let Ok(a) = http.get(&uri, PROBE).await {
            if a.status.is_success() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("the proxy did not become ready at http://{admin}/ready within 10 s")
}

/// A Prometheus child process scraping the demo's proxy; killed on drop.
struct Prometheus {
    child: std::process::Child,
    url: String,
}

impl Prometheus {
    async fn start(
        dir: &Path,
        proxy_admin: SocketAddr,
        http: &HttpClient,
    ) -> anyhow::Result<Prometheus> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("rules.yml"), PROMETHEUS_RULES)?;
        // deploy/prometheus/prometheus.yml, with this proxy and one-second intervals (the demo
        // runs minutes, not hours).
        std::fs::write(
            dir.join("prometheus.yml"),
            format!(
                "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\n\
                 rule_files: [rules.yml]\n\
                 scrape_configs:\n  - job_name: vireo-proxy\n    static_configs: [ {{ targets: [\"{proxy_admin}\"] }} ]\n"
            ),
        )?;
        let addr = free_port_like(9090)?;
        let mut command = std::process::Command::new("prometheus");
        // If this process dies by a signal (Ctrl-C ends the demo through the proxy's handler,
        // which exits without unwinding), Prometheus goes with it.
        // SAFETY: prctl is async-signal-safe and touches nothing of the parent's.
        unsafe {
            use std::os::unix::process::CommandExt;
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = command
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log"))?)
            .spawn()
            .map_err(|e| {
                anyhow::anyhow!(
                    "--prometheus needs the prometheus binary on PATH ({e}); on Debian: apt-get install prometheus"
                )
            })?;
        let p = Prometheus {
            child,
            url: format!("http://{addr}"),
        };
        // Ready is not enough: targets come from discovery a few seconds after start, and
        // analysis before the first scrape would only find no data.
        let targets = format!("{}/api/v1/targets", p.url);
        for _ in 0..300 {
            if let Ok(a) = http.get(&targets, PROBE).await {
                if String::from_utf8_lossy(&a.body).contains("\"health\":\"up\"") {
                    return Ok(p);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!(
            "Prometheus did not start scraping the proxy at {} within 30 s (see {})",
            p.url,
            dir.join("prometheus.log").display()
        )
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the proxy reports a table from the control plane (bounded: 10 s).
async fn wait_routed(handle: &Handle) -> anyhow::Result<()> {
    for _ in 0..200 {
        let now = vireo_core::clock::now_ms();
        let routed = handle
            .shared
            .fleet
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .connected(now)
            .any(|r| r.applied_version > 0);
        if routed {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("the proxy did not apply the control plane's route table within 10 s")
}

/// The demo's canary workload: an in-process server the abort stops and a retry starts again.
pub struct DemoWorkloads {
    canary: Mutex<Option<Backend>>,
    addr: SocketAddr,
    faulty: Arc<AtomicBool>,
}

impl DemoWorkloads {
    fn start_now(&self) -> Result<(), WorkloadError> {
        let mut canary = self.canary.lock().unwrap_or_else(|e| e.into_inner());
        if canary.is_none() {
            let failed = |e: std::io::Error| WorkloadError(e.to_string());
            let l = std::net::TcpListener::bind(self.addr).map_err(failed)?;
            *canary = Some(spawn_backend_with(l, "v2", self.faulty.clone()).map_err(failed)?);
        }
        Ok(())
    }
}

/// Both calls are done before they return (the canary is in this process), so the driver
/// answers them at once.
impl Workloads for DemoWorkloads {
    fn start(
        &self,
        _rollout: &str,
        _w: &Workload,
    ) -> BoxFuture<'static, Result<(), WorkloadError>> {
        Box::pin(std::future::ready(self.start_now()))
    }
    fn stop(&self, _rollout: &str, _w: &Workload) -> BoxFuture<'static, Result<(), WorkloadError>> {
        if let Some(c) = self.canary.lock().unwrap_or_else(|e| e.into_inner()).take() {
            c.stop();
        }
        Box::pin(std::future::ready(Ok(())))
    }
}

/// What the simulated users saw, by the version that answered.
#[derive(Default)]
pub struct Traffic {
    served: Mutex<BTreeMap<String, u64>>,
    requests: AtomicU64,
    failures: AtomicU64,
    /// The flag, evaluated for each request's user before it is sent.
    flag_evaluations: AtomicU64,
    flag_on: AtomicU64,
    /// Requests where the flag's variant and the version that answered agree (on ⇔ v2).
    flag_agree: AtomicU64,
    flag_disagree: AtomicU64,
}

impl Traffic {
    fn served(&self, version: &str) -> u64 {
        *self
            .served
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(version)
            .unwrap_or(&0)
    }
}

async fn generate(
    http: HttpClient,
    proxy: SocketAddr,
    traffic: Arc<Traffic>,
    stop: Arc<AtomicBool>,
    shared: Arc<vireo_engine::driver::Shared>,
) {
    let uri = format!("http://{proxy}/");
    let limits = Limits::new(Duration::from_secs(5), 1 << 20);
    while !stop.load(Ordering::Relaxed) {
        let user = format!("u-{}", fastrand::u32(0..USERS));
        // The app asks the flag first (as an OpenFeature SDK would, same code as OFREP).
        let mut ctx = serde_json::Map::new();
        ctx.insert("targetingKey".into(), user.clone().into());
        let on = match vireo_server::ofrep::evaluate_here(&shared, FLAG, &ctx).await {
            Some(Ok(e)) => {
                traffic.flag_evaluations.fetch_add(1, Ordering::Relaxed);
                let on = e.value == serde_json::Value::Bool(true);
                traffic.flag_on.fetch_add(u64::from(on), Ordering::Relaxed);
                Some(on)
            }
            _ => None,
        };
        let mut req = vireo_http::request(http::Method::GET, &uri, None, Bytes::new())
            .expect("a valid request");
        if let Ok(id) = http::HeaderValue::from_str(&user) {
            req.headers_mut().insert("x-user-id", id);
        }
        traffic.requests.fetch_add(1, Ordering::Relaxed);
        match http.send(req, limits).await {
            Ok(resp) => {
                if !resp.status.is_success() {
                    traffic.failures.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(v) = resp.headers.get("x-version").and_then(|v| v.to_str().ok()) {
                    if let Some(on) = on {
                        let same = on == (v == "v2");
                        let counter = if same {
                            &traffic.flag_agree
                        } else {
                            &traffic.flag_disagree
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                    *traffic
                        .served
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .entry(v.to_string())
                        .or_default() += 1;
                }
            }
            Err(_) => {
                traffic.failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        tokio::time::sleep(PAUSE_BETWEEN_REQUESTS).await;
    }
}

/// The terminal view: bars on a terminal, a line per change otherwise (CI logs, pipes).
struct LiveView {
    multi: MultiProgress,
    weight: ProgressBar,
    slo: ProgressBar,
    analysis: ProgressBar,
    plain: bool,
    last_line: String,
    runs_reported: usize,
    /// The flag's share since the weight last changed: (weight, evaluations, on) at the change.
    flag_base: (u8, u64, u64),
    /// Per weight held: (weight, evaluations, on).
    flag_segments: Vec<(u8, u64, u64)>,
}

impl LiveView {
    fn new() -> LiveView {
        let plain = !std::io::stderr().is_terminal();
        let multi = MultiProgress::with_draw_target(if plain {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        });
        let weight = multi.add(ProgressBar::new(100));
        weight.set_style(
            ProgressStyle::with_template("canary {bar:40.green/white} {pos:>3} %  {msg}")
                .expect("valid template")
                .progress_chars("█▉ "),
        );
        let line = || ProgressStyle::with_template("  {msg}").expect("valid template");
        let slo = multi.add(ProgressBar::new(1));
        slo.set_style(line());
        let analysis = multi.add(ProgressBar::new(1));
        analysis.set_style(line());
        LiveView {
            multi,
            weight,
            slo,
            analysis,
            plain,
            flag_base: (0, 0, 0),
            flag_segments: Vec::new(),
            last_line: String::new(),
            runs_reported: 0,
        }
    }

    fn show(&mut self, v: &RolloutView, handle: &Handle, traffic: &Traffic, started: Instant) {
        let s = &v.status;
        let step = format!(
            "{:?} · step {}/{} · {}",
            s.phase,
            s.current_step_index.min(s.steps),
            s.steps,
            s.message
        );
        self.weight.set_position(u64::from(s.canary_weight));
        self.weight.set_message(step.clone());

        let now = vireo_core::clock::now_ms();
        let fleet = handle
            .shared
            .fleet
            .read()
            .unwrap_or_else(|e| e.into_inner());
        let mut versions = Vec::new();
        for (backend, version) in [
            (STABLE, v.rollout.spec.stable.version.as_str()),
            (CANARY, v.rollout.spec.canary.version.as_str()),
        ] {
            let a = fleet.aggregate(&v.rollout.spec.route, backend, None, now);
            if a.requests == 0 {
                versions.push(format!("{version} {backend}: no traffic"));
                continue;
            }
            let ok = 100.0 * (a.requests - a.failures.min(a.requests)) as f64 / a.requests as f64;
            let p95 = a
                .latency_p95_s
                .map(|p| format!("{:.0} ms", p * 1000.0))
                .unwrap_or_else(|| "-".into());
            versions.push(format!(
                "{version} {backend}: {ok:.1} % ok, p95 {p95}, {} req/{} s",
                a.requests, a.window_s
            ));
        }
        drop(fleet);
        let (evals, on) = (
            traffic.flag_evaluations.load(Ordering::Relaxed),
            traffic.flag_on.load(Ordering::Relaxed),
        );
        let (w0, e0, on0) = self.flag_base;
        let share = |e: u64, o: u64| {
            if e == 0 {
                0.0
            } else {
                100.0 * o as f64 / e as f64
            }
        };
        if s.canary_weight != w0 {
            if evals > e0 {
                self.flag_segments.push((w0, evals - e0, on - on0));
                if self.plain {
                    eprintln!(
                        "[{:>6.1}s]   flag {FLAG}: on for {:.1} % of {} evaluations while the canary had {w0} %",
                        started.elapsed().as_secs_f64(),
                        share(evals - e0, on - on0),
                        evals - e0
                    );
                }
            }
            self.flag_base = (s.canary_weight, evals, on);
        }
        self.slo.set_message(format!(
            "{}   ({} requests sent; flag {FLAG} on for {:.1} %)",
            versions.join("   "),
            traffic.requests.load(Ordering::Relaxed),
            share(evals - self.flag_base.1, on - self.flag_base.2),
        ));
        let runs: Vec<String> = s
            .analysis_runs
            .iter()
            .map(|r| {
                let m: Vec<String> = r
                    .metrics
                    .iter()
                    .map(|m| format!("{} {:?} ({})", m.name, m.phase, m.measurements.len()))
                    .collect();
                format!("run {} {:?}: {}", r.run, r.phase, m.join(", "))
            })
            .collect();
        self.analysis.set_message(format!(
            "analysis: {}",
            runs.last().cloned().unwrap_or_else(|| "none yet".into())
        ));

        if self.plain {
            let line = format!("canary {:>3} % · {step}", s.canary_weight);
            if line != self.last_line {
                eprintln!("[{:>6.1}s] {line}", started.elapsed().as_secs_f64());
                self.last_line = line;
            }
            let finished: Vec<_> = s
                .analysis_runs
                .iter()
                .filter(|r| r.phase.is_done())
                .collect();
            for r in finished.iter().skip(self.runs_reported) {
                eprintln!(
                    "[{:>6.1}s]   analysis run {} (step {}): {:?} — {}",
                    started.elapsed().as_secs_f64(),
                    r.run,
                    r.step,
                    r.phase,
                    r.message
                );
            }
            self.runs_reported = self.runs_reported.max(finished.len());
        }
    }

    /// Records the flag's share for the weight held last.
    fn close_flag_segment(&mut self, traffic: &Traffic) {
        let (w0, e0, on0) = self.flag_base;
        let evals = traffic.flag_evaluations.load(Ordering::Relaxed);
        let on = traffic.flag_on.load(Ordering::Relaxed);
        if evals > e0 {
            self.flag_segments.push((w0, evals - e0, on - on0));
        }
        self.flag_base = (w0, evals, on);
    }

    fn finish(&self) {
        self.weight.finish();
        self.slo.finish();
        self.analysis.finish();
        let _ = self.multi.clear();
    }
}

struct Summary {
    rollout: String,
    phase: Phase,
    steps: Vec<u8>,
    abort_to_zero_ms: Option<u64>,
    drain_ms: Option<u64>,
    drain_forced: bool,
    canary_after: Option<u64>,
    message: String,
    requests: u64,
    failures: u64,
    served: BTreeMap<String, u64>,
    runs: Vec<String>,
    data_dir: PathBuf,
    elapsed: Duration,
    peak_rss_mb: Option<f64>,
    evidence: Option<Evidence>,
    rollback: Option<vireo_engine::driver::RollbackView>,
    /// (weight held, flag evaluations, on) per weight, in order.
    flag_segments: Vec<(u8, u64, u64)>,
    flag_agree: u64,
    flag_disagree: u64,
    dora: Option<vireo_core::dora::Report>,
}

/// The demo's last act: the bundle exported, verified offline, every verdict replayed.
struct Evidence {
    bundle: PathBuf,
    report: vireo_evidence::bundle::Report,
    verify_ms: f64,
    replayed: usize,
    matched: usize,
}

/// Exports the demo rollout's bundle to `<data-dir>/evidence/`, verifies it as an auditor
/// would (keys pinned from the data dir, not taken from the bundle), and replays every
/// recorded decision.
async fn export_and_verify(handle: &Handle, data_dir: &Path) -> anyhow::Result<Evidence> {
    use vireo_evidence::{bundle, keys::PublicKey};
    let (files, generation, origin, rollout) = handle
        .evidence_files(ROLLOUT)
        .await
        .map_err(|e| anyhow::anyhow!("exporting the evidence: {e}"))?;
    let path = data_dir.join("evidence").join(format!("{ROLLOUT}.tar.gz"));
    std::fs::create_dir_all(data_dir.join("evidence"))?;
    let mut out = Vec::new();
    bundle::write(files, &rollout, generation, &origin, &mut out).map_err(anyhow::Error::msg)?;
    std::fs::write(&path, &out)?;
    let pinned = |name: &str| -> anyhow::Result<Option<PublicKey>> {
        let pem = std::fs::read_to_string(data_dir.join("keys").join(name))?;
        Ok(Some(PublicKey::from_pem(&pem)?))
    };
    let trust = bundle::Trust {
        signing: pinned("signing.pub")?,
        log: pinned("log.pub")?,
    };
    let started = Instant::now();
    let files = bundle::read(std::fs::File::open(&path)?).map_err(anyhow::Error::msg)?;
    let report = bundle::verify(&files, &trust);
    let verify_ms = started.elapsed().as_secs_f64() * 1e3;
    let outcomes = handle
        .replay_all()
        .await
        .map_err(|e| anyhow::anyhow!("replaying the decisions: {e}"))?;
    Ok(Evidence {
        bundle: path,
        report,
        verify_ms,
        replayed: outcomes.len(),
        matched: outcomes.iter().filter(|(_, o)| o.matched()).count(),
    })
}

impl Summary {
    fn new(
        v: &RolloutView,
        canary_after: Option<u64>,
        traffic: &Traffic,
        data_dir: &Path,
        elapsed: Duration,
    ) -> Summary {
        let s = &v.status;
        Summary {
            rollout: v.rollout.name().to_string(),
            phase: s.phase,
            steps: s.applied_weights.iter().map(|w| w.weight).collect(),
            abort_to_zero_ms: s.abort_to_zero_ms,
            drain_ms: s.drain_ms,
            drain_forced: s.drain_forced,
            canary_after,
            message: s.message.clone(),
            requests: traffic.requests.load(Ordering::Relaxed),
            failures: traffic.failures.load(Ordering::Relaxed),
            served: traffic
                .served
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            runs: s
                .analysis_runs
                .iter()
                .map(|r| {
                    format!(
                        "run {} (step {}): {:?} — {}",
                        r.run, r.step, r.phase, r.message
                    )
                })
                .collect(),
            data_dir: data_dir.to_path_buf(),
            elapsed,
            peak_rss_mb: peak_rss_mb(),
            evidence: None,
            rollback: s.rollback.clone(),
            flag_segments: Vec::new(),
            flag_agree: traffic.flag_agree.load(Ordering::Relaxed),
            flag_disagree: traffic.flag_disagree.load(Ordering::Relaxed),
            dora: None,
        }
    }

    fn exit_code(&self) -> u8 {
        match self.phase {
            Phase::Completed => EXIT_COMPLETED,
            Phase::Aborted | Phase::RolledBack => EXIT_ABORTED,
            _ => EXIT_ERROR,
        }
    }

    fn text(&self, api: SocketAddr) -> String {
        let weights: Vec<String> = self.steps.iter().map(|w| format!("{w} %")).collect();
        let served: Vec<String> = self
            .served
            .iter()
            .map(|(v, n)| format!("{v} {n}"))
            .collect();
        let mut out = format!(
            "\nRollout {}: {:?} after {:.1} s — {}\n  weights applied: {}\n  users' requests: {} ({}), {} failed\n",
            self.rollout,
            self.phase,
            self.elapsed.as_secs_f64(),
            self.message,
            weights.join(" → "),
            self.requests,
            served.join(", "),
            self.failures,
        );
        for r in &self.runs {
            out.push_str(&format!("  analysis {r}\n"));
        }
        if let Some(z) = self.abort_to_zero_ms {
            out.push_str(&format!("  abort: weight 0 on every proxy after {z} ms"));
            if let Some(d) = self.drain_ms {
                out.push_str(&format!(
                    ", canary drained and stopped after {d} ms{}",
                    if self.drain_forced { " (forced)" } else { "" }
                ));
            }
            out.push('\n');
        }
        if let Some(n) = self.canary_after {
            out.push_str(&format!(
                "  requests served by the canary in the second after the abort: {n}\n"
            ));
        }
        if !self.flag_segments.is_empty() {
            let parts: Vec<String> = self
                .flag_segments
                .iter()
                .map(|(w, e, on)| {
                    format!("{:.1} % at {w} %", 100.0 * *on as f64 / (*e).max(1) as f64)
                })
                .collect();
            out.push_str(&format!(
                "  flag {FLAG} (tied to the rollout): on for {}; flag and build served agreed on {} of {} requests\n",
                parts.join(", "),
                self.flag_agree,
                self.flag_agree + self.flag_disagree,
            ));
        }
        if let Some(d) = &self.dora {
            let v = serde_json::to_value(d).unwrap_or_default();
            for line in vireo_api::render::dora(&v)
                .lines()
                .filter(|l| l.starts_with("  "))
            {
                out.push_str(&format!("  DORA {}\n", line.trim_start()));
            }
        }
        if let Some(r) = &self.rollback {
            let ms = |t: Option<u64>| t.map_or("?".into(), |t| format!("{t} ms"));
            use vireo_core::rollout::Migration;
            out.push_str(&format!(
                "  rollback envelope: {}; RTO (decision → every proxy on v1) {}; round trip {}; down-migration {}\n",
                match &r.verified {
                    Some(Ok(())) => "verified".to_string(),
                    Some(Err(e)) => format!("REFUSED ({e})"),
                    None => "not checked".to_string(),
                },
                ms(r.rto_ms),
                ms(r.round_trip_ms),
                match &r.migration {
                    Migration::Finished { ok, detail, .. } => {
                        format!("{} ({detail})", if *ok { "ok" } else { "FAILED" })
                    }
                    Migration::Skipped(why) => format!("skipped ({why})"),
                    other => format!("{other:?}"),
                },
            ));
        }
        if let Some(e) = &self.evidence {
            out.push_str(&format!(
                "  evidence: {} — vireo verify: {} in {:.1} ms ({} envelopes); {} decisions replayed, {} match\n",
                e.bundle.display(),
                if e.report.ok() { "VERIFIED" } else { "FAILED" },
                e.verify_ms,
                e.report.envelopes,
                e.replayed,
                e.matched,
            ));
            for line in e.report.table().lines() {
                out.push_str(&format!("    {line}\n"));
            }
        }
        out.push_str(&format!(
            "  state: {}/vireo.db   timeline: curl http://{api}/api/v1/rollouts/{}/timeline\n",
            self.data_dir.display(),
            self.rollout
        ));
        out
    }

    fn json(&self) -> String {
        let mut j = serde_json::json!({
            "rollout": self.rollout,
            "phase": self.phase,
            "steps": self.steps,
            "requests": self.requests,
            "served": self.served,
            "data_dir": self.data_dir,
            "elapsed_ms": self.elapsed.as_millis() as u64,
        });
        if let Some(z) = self.abort_to_zero_ms {
            j["abort_to_zero_ms"] = z.into();
        }
        if let Some(d) = self.drain_ms {
            j["drain_ms"] = d.into();
        }
        if let Some(n) = self.canary_after {
            j["canary_requests_after_abort"] = n.into();
        }
        if let Some(r) = self.peak_rss_mb {
            j["peak_rss_mb"] = r.into();
        }
        if !self.flag_segments.is_empty() {
            j["flag_on_share_by_weight"] = self
                .flag_segments
                .iter()
                .map(|(w, e, on)| serde_json::json!({"weight": w, "evaluations": e, "on": on}))
                .collect::<Vec<_>>()
                .into();
            j["flag_agree"] = self.flag_agree.into();
            j["flag_disagree"] = self.flag_disagree.into();
        }
        if let Some(d) = &self.dora {
            j["dora"] = serde_json::json!({
                "deploys_per_day": d.deploy_frequency.value.per_day,
                "releases": d.deploy_frequency.value.releases,
                "lead_time_ms": d.lead_time.value.median_ms,
                "change_failure_rate": d.change_failure_rate.value.rate,
                "mttr_ms": d.mttr.value.mean_ms,
            });
        }
        if let Some(r) = &self.rollback {
            j["rollback_verified"] = matches!(r.verified, Some(Ok(()))).into();
            j["rollback_rto_ms"] = r.rto_ms.into();
            j["rollback_round_trip_ms"] = r.round_trip_ms.into();
            j["rollback_migration_ok"] = matches!(
                r.migration,
                vireo_core::rollout::Migration::Finished { ok: true, .. }
            )
            .into();
        }
        if let Some(e) = &self.evidence {
            j["bundle"] = e.bundle.display().to_string().into();
            j["verified"] = e.report.ok().into();
            j["verify_ms"] = e.verify_ms.into();
            j["decisions_replayed"] = e.replayed.into();
            j["decisions_matched"] = e.matched.into();
        }
        j.to_string()
    }
}

/// This process's peak resident set (Linux), in MB.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some((kb / 1024.0 * 10.0).round() / 10.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recipe_parses_and_scales() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        for speed in [1, 12, 60] {
            let (t, r) = recipe(speed, a, a, None, Scenario::Healthy, Path::new("/tmp/x"));
            let t = AnalysisTemplate::parse(&t).unwrap();
            let r = Rollout::parse(&r).unwrap();
            assert_eq!(r.steps().len(), 11);
            let total: Duration = r
                .steps()
                .iter()
                .filter_map(|s| match s {
                    vireo_core::spec::Step::Pause(Some(d)) => Some(*d),
                    _ => None,
                })
                .sum::<Duration>()
                + 3 * 2 * t.spec.metrics[0].interval.unwrap();
            assert_eq!(total, Duration::from_secs(12 * 60) / speed, "speed {speed}");
        }
    }
}
