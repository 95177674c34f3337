//! `vireo`: the control plane binary. Argument parsing, logging and exit codes; everything
//! else is in the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use http::Method;
use vireo_control::client::{self, Client};
#[cfg(feature = "demo")]
use vireo_demo as demo;
use vireo_server::process::{self, ControlConfig};

/// Vireo's control plane: steps a canary's weight 5 → 25 → 50 → 100 % on every vireo-proxy,
/// runs Argo-compatible analysis at each step, and aborts to weight 0 when it fails.
///
/// Start with `vireo demo`: everything in one process, a canary rolled out live.
#[derive(Parser, Debug)]
#[command(name = "vireo", version, after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,

    /// Log filter, e.g. `info` or `vireo_control=debug` (or set RUST_LOG). `vireo demo`
    /// defaults to warnings only, to keep its live view readable.
    #[arg(long, global = true, env = "RUST_LOG")]
    log: Option<String>,
}

const EXAMPLES: &str = "Examples:
  vireo demo                              # the 12-minute default rollout, live
  vireo demo --speed 60 --once            # twelve seconds; exit 0, or 2 if aborted
  vireo demo --scenario faulty --speed 12 # a bad canary: analysis fails, abort to 0 %
  vireo serve --data-dir ./vireo-data
  vireo serve --listen 0.0.0.0:8443 --tls auto      # https with a local CA in DATA_DIR/tls/
  vireo token create --role operator --name ci-deployer --expires 30d
  vireo rollout abort checkout --reason \"error budget burnt\"
  vireo rollout apply -f analysis-template.yaml
  vireo rollout apply -f rollout.yaml
  vireo rollout status checkout --watch
  vireo rollout promote checkout --full
  vireo evidence export checkout -o checkout.tar.gz
  vireo verify checkout.tar.gz --key signing.pub --log-key log.pub
  vireo verify --bundle a.txt.sigstore.json --key cosign.pub --trusted-root trusted_root.json a.txt
  vireo replay checkout.g1.analysis-2
  vireo attest provenance --image-digest sha256:… --git-commit SHA --builder-id URI \\
      --lockfile Cargo.lock --key builder.pem -o provenance.dsse.json
  vireo attest upload provenance.dsse.json
  vireo rollout rollback checkout

Exit codes: 0 ok; 1 error (bad input, refused action, server unreachable; for verify: a
check failed); 2 bad command line, or (demo --once, status --watch) the rollout was
aborted; 3 replay mismatch.";

#[derive(Subcommand, Debug)]
enum Command {
    #[cfg(feature = "demo")]
    /// Run everything in one process on loopback: control plane (:8080), a proxy (:4140,
    /// admin :4191), stable v1 and canary v2 backends and simulated users; apply the default
    /// rollout and show it live. Taken ports are replaced by free ones (printed).
    Demo {
        /// Divide every duration by N (12 minutes at 1; `--speed 12` takes one minute).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=3600))]
        speed: u32,
        /// `faulty`: the canary answers ≈20 % 5xx, slowly; analysis fails and the abort runs.
        #[arg(long, value_enum, default_value_t = demo::Scenario::Healthy)]
        scenario: demo::Scenario,
        /// Exit when the rollout ends: 0 completed, 2 aborted, 1 error; the last line of
        /// stdout is a JSON summary.
        #[arg(long)]
        once: bool,
        /// Where the demo keeps its state (default: a new vireo-data/demo-<time>).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Also start a local Prometheus (the `prometheus` binary on PATH) scraping the proxy,
        /// and analyse with PromQL over deploy/prometheus/'s recording rules.
        #[arg(long)]
        prometheus: bool,
    },
    /// Run the control plane: the API, the rollout driver and the proxies' config watch.
    Serve {
        /// control.yaml: `listen`, `dataDir`, static `routes` (flags override it).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Address of the API [default: 127.0.0.1:8080].
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// Where state lives (SQLite) [default: ./vireo-data].
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Ed25519 key (PKCS#8 PEM) that signs evidence [default: DATA_DIR/keys/signing.pem,
        /// created on first start with its public key beside it].
        #[arg(long, value_name = "FILE")]
        signing_key: Option<PathBuf>,
        /// Push every event, in order and at least once, to URL as
        /// `application/cloudevents-batch+json` (receivers dedupe on source + id).
        #[arg(long, value_name = "URL")]
        event_sink: Option<String>,
        /// `auto`: serve https with a local CA and certificate made in DATA_DIR/tls/ on first
        /// start (clients trust DATA_DIR/tls/ca.pem: `vireo --ca`, `vireo-proxy --control-ca`).
        #[arg(long, value_name = "auto", value_parser = ["auto"], conflicts_with_all = ["tls_cert", "tls_key"])]
        tls: Option<String>,
        /// Serve https with this certificate chain (PEM); reloaded when the file changes.
        #[arg(long, value_name = "FILE", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The certificate's private key (PEM).
        #[arg(long, value_name = "FILE", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Kubernetes mode: also run the controller, which drives Rollout resources
        /// (vireo.dev/v1alpha1, see crds/) through ReplicaSets and Service selectors. The
        /// cluster comes from --kubeconfig, $KUBECONFIG, ~/.kube/config or the pod's service
        /// account, as kubectl finds it.
        #[arg(long)]
        kubernetes: bool,
        /// The kubeconfig for --kubernetes.
        #[arg(long, value_name = "FILE", requires = "kubernetes")]
        kubeconfig: Option<PathBuf>,
        /// With --kubernetes, only the holder of the Lease `vireo-control-plane` (in
        /// $POD_NAMESPACE, default `default`) opens the store and serves; others stand by. A
        /// crashed leader's lease expires after this long.
        #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = humantime::parse_duration, requires = "kubernetes")]
        lease_duration: Duration,
    },
    /// Kubernetes: the sidecar-injection webhook (AdmissionReview v1 over HTTPS, POST
    /// /inject). Pods opt in with `vireo.dev/inject: enabled` on their namespace or
    /// themselves; configure it with `failurePolicy: Ignore`.
    InjectWebhook {
        /// Address to serve on.
        #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:8443")]
        listen: String,
        /// `auto`: a local CA and certificate made in DATA_DIR/tls/ on first start (for trying
        /// it; in a cluster use --tls-cert/--tls-key, e.g. from cert-manager). The CA to put
        /// in the webhook's caBundle is printed.
        #[arg(long, value_name = "auto", value_parser = ["auto"], conflicts_with_all = ["tls_cert", "tls_key"], required_unless_present = "tls_cert")]
        tls: Option<String>,
        /// The certificate chain (PEM); reloaded when the file changes.
        #[arg(long, value_name = "FILE", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        #[arg(long, value_name = "FILE", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Where --tls auto keeps its files.
        #[arg(long, value_name = "DIR", default_value = "./vireo-injector")]
        data_dir: PathBuf,
        #[arg(long, value_name = "FILE")]
        kubeconfig: Option<PathBuf>,
        /// The sidecar's image.
        #[arg(long, default_value = "ghcr.io/vireo-dev/vireo:0.1.0")]
        image: String,
        /// The image of transparent interception's init step (vireo-proxy and iptables:
        /// `docker build --target init .`).
        #[arg(long, default_value = "ghcr.io/vireo-dev/vireo-init:0.1.0")]
        init_image: String,
        /// How injected pods' traffic reaches the proxy unless a pod says otherwise
        /// (`vireo.dev/interception`): `transparent` redirects its outbound TCP with iptables
        /// (needs NET_ADMIN in an init container), `explicit` leaves the app to call the proxy.
        #[arg(long, value_name = "MODE", value_parser = ["transparent", "explicit"], default_value = "transparent")]
        interception: String,
        /// The control plane the sidecars follow.
        #[arg(
            long,
            value_name = "URL",
            default_value = "https://vireo.vireo-system.svc:8080"
        )]
        control_url: String,
    },
    /// Kubernetes: list the pods that should have Vireo's sidecar and do not (created before
    /// the injector ran, or while it was down). Exit code 0: none; 1: some (listed); 2: the
    /// cluster could not be read.
    Check {
        #[arg(long, value_name = "FILE")]
        kubeconfig: Option<PathBuf>,
        /// Only this namespace [default: all].
        #[arg(long, short = 'n', value_name = "NAMESPACE")]
        namespace: Option<String>,
    },
    /// Feature flags (OpenFeature; evaluated over OFREP at /ofrep/v1/…).
    Flag(FlagArgs),
    /// The event log: `export` writes it as JSON Lines of CloudEvents.
    Events(EventsArgs),
    /// DORA's four keys from the event log, each with its receipt (events and a jq query).
    Dora {
        #[command(flatten)]
        server: ServerArg,
        /// Window start, RFC 3339 [default: 30 days before --until].
        #[arg(long)]
        since: Option<String>,
        /// Window end, RFC 3339 [default: now].
        #[arg(long)]
        until: Option<String>,
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Apply, inspect and steer rollouts on a running control plane.
    Rollout(RolloutArgs),
    /// Export a rollout's evidence bundle from a running control plane.
    Evidence(EvidenceArgs),
    /// Write and upload release attestations (SLSA provenance) for the provenance gate.
    Attest(AttestArgs),
    /// Check an evidence bundle offline: every signature, every receipt against the signed
    /// checkpoint, the checkpoint hash chain, the manifest. Exit 0 only if all hold.
    ///
    /// With --bundle: check a standard Sigstore bundle (v0.3, managed key, as `cosign
    /// sign-blob/attest-blob --key … --bundle` write) for the artifact FILE: the signature
    /// with --key, the Rekor entry, its inclusion proof and checkpoint against --trusted-root.
    Verify {
        /// The evidence bundle (`vireo evidence export … -o FILE`), or with --bundle the
        /// artifact the Sigstore bundle signs.
        file: PathBuf,
        /// A Sigstore bundle (`.sigstore.json`) for the artifact FILE.
        #[arg(
            long,
            value_name = "B.sigstore.json",
            requires = "key",
            conflicts_with = "log_key"
        )]
        bundle: Option<PathBuf>,
        /// The Sigstore trusted root (trusted_root.json) whose logs may have logged the entry.
        #[arg(long, value_name = "ROOT.json", requires = "bundle")]
        trusted_root: Option<PathBuf>,
        /// Trust this signing key (SPKI PEM) instead of the bundle's keys/signing.pub; with
        /// --bundle, the signer's public key (ECDSA, Ed25519 or RSA PEM).
        #[arg(long, value_name = "PUB")]
        key: Option<PathBuf>,
        /// Trust this log key (SPKI PEM) instead of the bundle's keys/log.pub.
        #[arg(long, value_name = "PUB")]
        log_key: Option<PathBuf>,
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Recompute a recorded analysis or gate verdict from its recorded inputs: `match`, or
    /// `mismatch` with the fields that differ (exit 0 match, 3 mismatch). Without an id,
    /// print the determinism totals of every replay so far.
    Replay {
        /// A decision id, e.g. `checkout.g1.analysis-2` (in `inputs/` of a bundle, and in
        /// the timeline's statements).
        decision_id: Option<String>,
        #[command(flatten)]
        server: ServerArg,
    },
    /// API tokens (admins): create one for a person, a pipeline or a proxy; list; revoke.
    Token(TokenArgs),
}

#[derive(Args, Debug)]
struct TokenArgs {
    #[command(flatten)]
    server: ServerArg,
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(Subcommand, Debug)]
enum TokenCommand {
    /// Make a token; it is printed once, alone on the last line (store it now).
    Create {
        /// viewer (read), operator (change rollouts and flags), approver (approve), proxy
        /// (config watch and heartbeats), ingest (events and attestations) or admin (tokens).
        #[arg(long)]
        role: String,
        /// What it is for, e.g. `ci-deployer` or `alice` (a-z 0-9 . _ - @); recorded as the
        /// actor `token:NAME` on everything it does.
        #[arg(long)]
        name: String,
        /// Expire after this long, e.g. 30d or 12h [default: never].
        #[arg(long, value_name = "DURATION")]
        expires: Option<String>,
    },
    /// Every token ever made, with its role, state and who made it (never a secret).
    List {
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Revoke NAME: requests with it are refused from now on.
    Revoke { name: String },
}

/// `--server` and the credential, shared by the commands that talk to a running control plane.
#[derive(Args, Debug)]
struct ServerArg {
    /// The control plane's URL.
    #[arg(
        long,
        global = true,
        env = "VIREO_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    server: String,
    /// API token (prefer $VIREO_TOKEN or --token-file: a flag shows in `ps`). Without one,
    /// ./vireo-data/admin.token is used when it exists.
    #[arg(long, global = true, env = "VIREO_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// A file holding the API token, e.g. DATA_DIR/admin.token.
    #[arg(long, global = true, env = "VIREO_TOKEN_FILE", value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Trust only this CA certificate (PEM) for an https:// server, e.g. the
    /// DATA_DIR/tls/ca.pem of `vireo serve --tls auto` [default: the system's roots].
    #[arg(long, global = true, env = "VIREO_CA", value_name = "FILE")]
    ca: Option<PathBuf>,
}

impl ServerArg {
    fn client(&self) -> anyhow::Result<Client> {
        Client::new(
            &self.server,
            &client::Credentials {
                token: self.token.clone(),
                token_file: self.token_file.clone(),
                ca: self.ca.clone(),
            },
        )
        .map_err(anyhow::Error::msg)
    }
}

#[derive(Args, Debug)]
struct EvidenceArgs {
    #[command(flatten)]
    server: ServerArg,
    #[command(subcommand)]
    command: EvidenceCommand,
}

#[derive(Args, Debug)]
struct FlagArgs {
    #[command(flatten)]
    server: ServerArg,
    #[command(subcommand)]
    command: FlagCommand,
}

#[derive(Subcommand, Debug)]
enum FlagCommand {
    /// Create or replace a flag from a YAML or JSON file.
    Apply {
        #[arg(short = 'f', long = "filename", value_name = "FILE")]
        file: PathBuf,
    },
    /// List flags, with the evaluation-event counters.
    List,
    Enable {
        key: String,
    },
    Disable {
        key: String,
    },
}

#[derive(Args, Debug)]
struct EventsArgs {
    #[command(flatten)]
    server: ServerArg,
    #[command(subcommand)]
    command: EventsCommand,
}

#[derive(Subcommand, Debug)]
enum EventsCommand {
    /// Write every event (or those of --type) as JSON Lines of CloudEvents, in log order.
    Export {
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: PathBuf,
        #[arg(long = "type")]
        ty: Option<String>,
    },
}

#[derive(Args, Debug)]
struct AttestArgs {
    #[command(flatten)]
    server: ServerArg,
    #[command(subcommand)]
    command: AttestCommand,
}

#[derive(Subcommand, Debug)]
enum AttestCommand {
    /// Write SLSA Provenance v1 for an image as a signed DSSE envelope: subject = the image
    /// digest; resolvedDependencies = the git commit and every pin of the Cargo.lock.
    /// `--key` is the builder's Ed25519 key (PKCS#8 PEM), created if missing with its public
    /// key beside it (`builder.pem` → `builder.pub`); list that under
    /// `provenance.trustedKeys` in control.yaml.
    Provenance {
        /// The image's digest, `sha256:<64 hex>`.
        #[arg(long, value_name = "DIGEST")]
        image_digest: String,
        /// The image's name (the statement's subject name).
        #[arg(long, value_name = "NAME", default_value = "image")]
        image_name: String,
        /// The commit the image was built from (40 or 64 hex digits).
        #[arg(long, value_name = "SHA")]
        git_commit: String,
        /// The repository the commit belongs to.
        #[arg(
            long,
            value_name = "URI",
            default_value = "https://example.invalid/source"
        )]
        repository: String,
        /// The builder's id (`runDetails.builder.id`, checked against the allow-list).
        #[arg(long, value_name = "URI")]
        builder_id: String,
        #[arg(long, value_name = "FILE", default_value = "Cargo.lock")]
        lockfile: PathBuf,
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: PathBuf,
    },
    /// Upload an envelope written by `attest provenance` to the control plane, where the
    /// gate finds it by the image digest.
    Upload { file: PathBuf },
}

#[derive(Subcommand, Debug)]
enum EvidenceCommand {
    /// Write NAME's bundle (envelopes, receipts, checkpoint, keys, replay inputs) to FILE.
    Export {
        name: String,
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: PathBuf,
        /// An earlier generation's bundle (GET /api/v1/rollouts/NAME/generations lists those
        /// kept) [default: the current one]
        #[arg(long, value_name = "N")]
        generation: Option<u64>,
    },
}

#[derive(Args, Debug)]
struct RolloutArgs {
    #[command(flatten)]
    server: ServerArg,
    /// Why (actions): recorded with the actor on the timeline, in events and in evidence.
    #[arg(long, global = true)]
    reason: Option<String>,
    #[command(subcommand)]
    command: RolloutCommand,
}

#[derive(Subcommand, Debug)]
enum RolloutCommand {
    /// Create or replace Rollouts and AnalysisTemplates from a YAML or JSON file (several
    /// documents separated by `---` are applied in order, templates first).
    Apply {
        #[arg(short = 'f', long = "filename", value_name = "FILE")]
        file: PathBuf,
    },
    /// List rollouts with their phase, step and canary weight.
    List {
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Show one rollout; with --watch, follow it until it ends.
    Status {
        name: String,
        /// Print again on every change until the rollout ends (exit 0 completed, 2 aborted).
        #[arg(long, short = 'w')]
        watch: bool,
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Pause a progressing rollout (a timed pause keeps what was left of it).
    Pause { name: String },
    /// Resume a paused rollout (after an inconclusive analysis: run it again).
    Resume { name: String },
    /// Skip the current step; with --full, every remaining step (straight to 100 %).
    Promote {
        name: String,
        #[arg(long)]
        full: bool,
    },
    /// Abort: canary weight 0 on every proxy, drain, stop the canary.
    Abort { name: String },
    /// Start an aborted rollout again from the beginning.
    Retry { name: String },
    /// Run the current analysis step's analysis again (a new run; the weight stays).
    Rerun { name: String },
    /// Let a rollout waiting for approval start.
    Approve { name: String },
    /// Replay the rollback envelope (armed before 100 %): every proxy back on the previous
    /// version, the envelope's down-migration run once, its flag disabled.
    Rollback { name: String },
    /// Start NAME (applied after this) only at --at, within --window, when the preconditions
    /// hold; its gate waits until then.
    Schedule {
        name: String,
        /// RFC 3339 time, e.g. 2026-11-23T02:00:00Z.
        #[arg(long)]
        at: String,
        /// How long after --at it may still start, e.g. 2h.
        #[arg(long, default_value = "1h")]
        window: String,
        /// Precondition: this Prometheus answers /-/ready.
        #[arg(long, value_name = "URL")]
        require_prometheus: Vec<String>,
        /// Precondition: this Alertmanager has no active, unsilenced alert.
        #[arg(long, value_name = "URL")]
        no_open_incident: Vec<String>,
        /// Precondition: this AnalysisTemplate passes.
        #[arg(long, value_name = "TEMPLATE")]
        require_analysis: Vec<String>,
    },
    /// Cancel NAME's schedule (a gate waiting on it fails: the rollout does not start).
    Unschedule { name: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Output {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_log = match cli.command {
        #[cfg(feature = "demo")]
        Command::Demo { .. } => "warn",
        _ => "info",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(cli.log.as_deref().unwrap_or(default_log))
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vireo: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    #[cfg(feature = "demo")]
    let is_demo = matches!(cli.command, Command::Demo { .. });
    #[cfg(not(feature = "demo"))]
    let is_demo = false;
    let result = runtime.block_on(async move {
        match cli.command {
            #[cfg(feature = "demo")]
            Command::Demo {
                speed,
                scenario,
                once,
                data_dir,
                prometheus,
            } => {
                demo::run(demo::Options {
                    speed,
                    scenario,
                    once,
                    data_dir,
                    prometheus,
                })
                .await
            }
            Command::Serve {
                config,
                listen,
                data_dir,
                signing_key,
                event_sink,
                tls,
                tls_cert,
                tls_key,
                kubernetes,
                kubeconfig,
                lease_duration,
            } => {
                let tls = match (tls, tls_cert, tls_key) {
                    (Some(_), _, _) => Some(process::TlsChoice::Auto),
                    (None, Some(cert), Some(key)) => {
                        Some(process::TlsChoice::Files(process::TlsFiles { cert, key }))
                    }
                    _ => None,
                };
                let kubernetes = kubernetes.then_some((kubeconfig, lease_duration));
                run_serve(
                    config,
                    listen,
                    data_dir,
                    signing_key,
                    event_sink,
                    tls,
                    kubernetes,
                )
                .await
                .map(|()| 0)
            }
            Command::InjectWebhook {
                listen,
                tls,
                tls_cert,
                tls_key,
                data_dir,
                kubeconfig,
                image,
                init_image,
                interception,
                control_url,
            } => {
                let opts = vireo_k8s_api::inject::Options {
                    image,
                    init_image,
                    transparent: interception == "transparent",
                    control_url,
                    ..Default::default()
                };
                let tls = match (tls, tls_cert, tls_key) {
                    (Some(_), _, _) => process::TlsChoice::Auto,
                    (None, Some(cert), Some(key)) => {
                        process::TlsChoice::Files(process::TlsFiles { cert, key })
                    }
                    _ => anyhow::bail!("give --tls auto or --tls-cert and --tls-key"),
                };
                inject_webhook(&listen, tls, &data_dir, kubeconfig.as_deref(), opts)
                    .await
                    .map(|()| 0)
            }
            Command::Check {
                kubeconfig,
                namespace,
            } => check(kubeconfig.as_deref(), namespace.as_deref()).await,
            Command::Flag(args) => flag(args).await,
            Command::Events(args) => events(args).await,
            Command::Dora {
                server,
                since,
                until,
                output,
            } => dora(&server, since, until, output).await,
            Command::Rollout(args) => rollout(args).await,
            Command::Evidence(args) => evidence(args).await,
            Command::Attest(args) => attest(args).await,
            Command::Verify {
                file,
                bundle: Some(bundle),
                trusted_root,
                key,
                output,
                ..
            } => verify_sigstore(
                &bundle,
                key.as_deref(),
                trusted_root.as_deref(),
                &file,
                output,
            ),
            Command::Verify {
                file,
                key,
                log_key,
                output,
                ..
            } => verify(&file, key.as_deref(), log_key.as_deref(), output),
            Command::Replay {
                decision_id,
                server,
            } => replay(&server, decision_id).await,
            Command::Token(args) => token(args).await,
        }
    });
    match result {
        Ok(code) if is_demo => {
            // The demo's proxy, backends and users all live in this process: end them at once
            // rather than let them log each other's disappearance.
            use std::io::Write;
            let _ = std::io::stdout().flush();
            std::process::exit(code.into())
        }
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("vireo: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn check(kubeconfig: Option<&Path>, namespace: Option<&str>) -> anyhow::Result<u8> {
    let client = match kube_client(kubeconfig).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vireo check: {e:#}");
            return Ok(2);
        }
    };
    let missed = match vireo_k8s::check::missed(&client, namespace).await {
        Ok(m) => m,
        Err(e) => {
            eprintln!("vireo check: reading pods and namespaces: {e}");
            return Ok(2);
        }
    };
    if missed.is_empty() {
        println!("every pod that opts in to Vireo's sidecar has it");
        return Ok(0);
    }
    println!("{:<24} {:<40} WHY", "NAMESPACE", "POD");
    for m in &missed {
        println!(
            "{:<24} {:<40} opted in (vireo.dev/inject: enabled) but has no sidecar; restart it (kubectl rollout restart, or delete the pod) once the injector is up",
            m.namespace, m.pod
        );
    }
    println!("{} pod(s) without the sidecar", missed.len());
    Ok(1)
}

async fn inject_webhook(
    listen: &str,
    tls: process::TlsChoice,
    data_dir: &Path,
    kubeconfig: Option<&Path>,
    opts: vireo_k8s_api::inject::Options,
) -> anyhow::Result<()> {
    let client = kube_client(kubeconfig).await?;
    let minor = client
        .apiserver_version()
        .await
        .context("asking the API server for its version")?
        .minor
        .trim_end_matches('+')
        .parse::<u32>()
        .unwrap_or(29);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let local = listener.local_addr()?;
    let files = match tls {
        process::TlsChoice::Files(f) => f,
        process::TlsChoice::Auto => {
            let (files, ca) = vireo_server::tls::auto(data_dir, local)?;
            let pem = std::fs::read(&ca)?;
            eprintln!(
                "vireo inject-webhook: caBundle (the CA in {}):\n{}",
                ca.display(),
                base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &pem)
            );
            files
        }
    };
    let reloading = vireo_server::tls::Reloading::open(files)?;
    tokio::spawn(reloading.clone().watch());
    let mut config = reloading.server_config();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let opts = vireo_k8s_api::inject::Options {
        kubernetes_minor: minor,
        ..opts
    };
    tracing::info!(%local, kubernetes_minor = minor, native_sidecar = minor >= 29, transparent = opts.transparent, "injection webhook serving");
    tokio::select! {
        () = vireo_k8s::webhook::serve(listener, Arc::new(config), client, opts) => {}
        () = wait_for_signal() => {}
    }
    Ok(())
}

/// TokenReview behind the API's auth layer (the server crate knows no Kubernetes).
#[derive(Debug)]
struct ReviewerSeam(Arc<vireo_k8s::tokenreview::Reviewer>);

impl vireo_server::auth::TokenReviewer for ReviewerSeam {
    fn review(
        &self,
        credential: String,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Option<String>, String>> + Send>>
    {
        let reviewer = self.0.clone();
        Box::pin(async move { reviewer.check(&credential).await })
    }
}

/// A client for the cluster of `--kubeconfig`, or the one kubectl would use.
async fn kube_client(kubeconfig: Option<&Path>) -> anyhow::Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading the kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &Default::default())
                .await
                .with_context(|| format!("using the kubeconfig {}", path.display()))?
        }
        None => kube::Config::infer().await.context(
            "no Kubernetes cluster found (pass --kubeconfig, set KUBECONFIG, or run in a pod)",
        )?,
    };
    kube::Client::try_from(config).context("building the Kubernetes client")
}

async fn run_serve(
    config: Option<PathBuf>,
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    signing_key: Option<PathBuf>,
    event_sink: Option<String>,
    tls: Option<process::TlsChoice>,
    kubernetes: Option<(Option<PathBuf>, Duration)>,
) -> anyhow::Result<()> {
    let file = match &config {
        Some(path) => ControlConfig::load(path).map_err(anyhow::Error::msg)?,
        None => ControlConfig::default(),
    };
    let listen = listen
        .or(file.listen)
        .unwrap_or_else(|| process::DEFAULT_LISTEN.to_string());
    let data_dir = data_dir
        .or(file.data_dir)
        .unwrap_or_else(|| PathBuf::from(process::DEFAULT_DATA_DIR));
    // Kubernetes mode: lead before touching the store or the port (a standby does neither);
    // the workloads are ReplicaSets, and the controller runs beside the API.
    let kube = match &kubernetes {
        None => None,
        Some((path, lease_duration)) => {
            let client = kube_client(path.as_deref()).await?;
            let election = vireo_k8s::lease::Election {
                namespace: std::env::var("POD_NAMESPACE").unwrap_or_else(|_| "default".into()),
                name: "vireo-control-plane".into(),
                identity: std::env::var("POD_NAME").unwrap_or_else(|_| {
                    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
                    format!("{}-{}", host.trim(), std::process::id())
                }),
                duration: *lease_duration,
            };
            election.acquire(&client).await;
            Some((client, election))
        }
    };
    let listener = tokio::net::TcpListener::bind(&listen).await.map_err(|e| {
        anyhow::anyhow!("cannot listen on {listen}: {e} (another vireo? pass --listen)")
    })?;
    let sources = vireo_k8s::workloads::Sources::default();
    let gateway = vireo_k8s::gateway::Routes::default();
    let traffic_layer = kube.as_ref().map(|(client, _)| {
        let (client, routes) = (client.clone(), gateway.clone());
        vireo_engine::driver::TrafficLayer(Arc::new(move |inner| {
            vireo_k8s::gateway::GatewayTraffic::new(inner, client.clone(), routes.clone())
                as Arc<dyn vireo_engine::traffic::Traffic>
        }))
    });
    let workloads: Arc<dyn vireo_engine::workload::Workloads> = match &kube {
        None => Arc::new(vireo_engine::workload::Recorded),
        Some((client, _)) => Arc::new(vireo_k8s::workloads::ReplicaSets {
            client: client.clone(),
            sources: sources.clone(),
            deadline: Duration::from_secs(600),
        }),
    };
    let control = process::start(
        listener,
        &data_dir,
        workloads,
        process::Options {
            static_routes: file.routes,
            signing_key: signing_key.or(file.signing_key),
            provenance: file.provenance,
            event_sink: event_sink.or(file.event_sink),
            auth: file.auth,
            tls,
            ca_file: file.ca_file,
            header_read_timeout: file.header_read_timeout,
            traffic_layer,
            token_reviewer: kube.as_ref().map(|(client, _)| {
                Arc::new(ReviewerSeam(vireo_k8s::tokenreview::Reviewer::new(
                    client.clone(),
                ))) as Arc<dyn vireo_server::auth::TokenReviewer>
            }),
        },
    )
    .await?;
    let handle = control.handle;
    tracing::info!(%listen, data_dir = %data_dir.display(), "vireo control plane serving");
    if let Some((client, election)) = &kube {
        let ctx = vireo_k8s::Context::new(client.clone(), handle.clone(), sources, gateway);
        tokio::spawn(vireo_k8s::run(ctx));
        tracing::info!("Kubernetes mode: reconciling vireo.dev Rollouts");
        let (client, election) = (client.clone(), election.clone());
        tokio::spawn(async move {
            let why = election.hold(&client).await;
            // Another replica may act from now on: stop at once rather than act beside it.
            tracing::error!("lost the lease ({why}); exiting so that only one replica acts");
            std::process::exit(1);
        });
    }
    if let Some(ca) = &control.tls_ca {
        eprintln!(
            "vireo: serving https; clients trust {} (vireo --ca, vireo-proxy --control-ca)",
            ca.display()
        );
    }
    if control.admin_token_created {
        eprintln!(
            "vireo: first start: the admin token is in {} (readable by you only); \
             `vireo token create --token-file {0} --role operator --name NAME` makes others",
            control.admin_token.display()
        );
    }
    wait_for_signal().await;
    // Evaluation events still queued are committed before exiting.
    if !handle
        .shared
        .eval_events
        .flush(Duration::from_secs(10))
        .await
    {
        tracing::error!("evaluation events still queued after 10 s are lost on exit");
    }
    if let Some((client, election)) = &kube {
        // A rolling update's next replica takes over now rather than after the expiry.
        election.release(client).await;
    }
    tracing::info!("stopping: every transition is already committed");
    Ok(())
}

async fn evidence(args: EvidenceArgs) -> anyhow::Result<u8> {
    let c = args.server.client()?;
    match args.command {
        EvidenceCommand::Export {
            name,
            output,
            generation,
        } => {
            let query = generation.map_or(String::new(), |g| format!("?generation={g}"));
            let bundle = c
                .call_raw(
                    Method::GET,
                    &format!("/api/v1/rollouts/{name}/evidence{query}"),
                    None,
                )
                .await
                .map_err(anyhow::Error::msg)?;
            std::fs::write(&output, &bundle)
                .map_err(|e| anyhow::anyhow!("{}: {e}", output.display()))?;
            println!(
                "wrote {} ({} bytes); check it with: vireo verify {}",
                output.display(),
                bundle.len(),
                output.display()
            );
            Ok(0)
        }
    }
}

async fn flag(args: FlagArgs) -> anyhow::Result<u8> {
    let c = args.server.client()?;
    let fail = anyhow::Error::msg;
    let v = match args.command {
        FlagCommand::Apply { file } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            c.call(Method::POST, "/api/v1/flags", Some(text))
                .await
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?
        }
        FlagCommand::List => c
            .call(Method::GET, "/api/v1/flags", None)
            .await
            .map_err(fail)?,
        FlagCommand::Enable { key } => c
            .call(Method::POST, &format!("/api/v1/flags/{key}/enable"), None)
            .await
            .map_err(fail)?,
        FlagCommand::Disable { key } => c
            .call(Method::POST, &format!("/api/v1/flags/{key}/disable"), None)
            .await
            .map_err(fail)?,
    };
    let flags = match v["items"].as_array() {
        Some(items) => items.clone(),
        None => vec![v.clone()],
    };
    for f in &flags {
        let targeting = match (&f["rollout"], &f["fraction"]) {
            (serde_json::Value::String(r), _) => format!("canary cohort of rollout {r}"),
            (_, serde_json::Value::Object(_)) => "fraction".into(),
            _ => "static".into(),
        };
        println!(
            "{:<24} {:<9} default {:<10} {targeting}",
            f["key"].as_str().unwrap_or("?"),
            if f["enabled"] == false {
                "disabled"
            } else {
                "enabled"
            },
            f["defaultVariant"].as_str().unwrap_or("?"),
        );
    }
    if let Some(s) = v.get("evaluationEvents") {
        println!(
            "evaluation events: {} queued, {} written, {} waited for queue room",
            s["queued"], s["written"], s["backpressure"]
        );
    }
    Ok(0)
}

async fn events(args: EventsArgs) -> anyhow::Result<u8> {
    use std::io::Write;
    let c = args.server.client()?;
    let EventsCommand::Export { output, ty } = args.command;
    let file =
        std::fs::File::create(&output).map_err(|e| anyhow::anyhow!("{}: {e}", output.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let (mut after, mut n) = (0u64, 0u64);
    loop {
        let mut path = format!("/api/v1/events?after={after}&limit=10000");
        if let Some(t) = &ty {
            path.push_str(&format!("&type={t}"));
        }
        let v = c
            .call(Method::GET, &path, None)
            .await
            .map_err(anyhow::Error::msg)?;
        let page = v["events"].as_array().cloned().unwrap_or_default();
        if page.is_empty() {
            break;
        }
        for mut e in page {
            after = e["seq"].as_u64().unwrap_or(after);
            if let Some(o) = e.as_object_mut() {
                o.remove("seq");
            }
            writeln!(out, "{e}")?;
            n += 1;
        }
    }
    out.flush()?;
    println!("wrote {n} events to {}", output.display());
    Ok(0)
}

async fn dora(
    server: &ServerArg,
    since: Option<String>,
    until: Option<String>,
    output: Output,
) -> anyhow::Result<u8> {
    let mut path = "/api/v1/dora?".to_string();
    for (k, v) in [("since", since), ("until", until)] {
        if let Some(v) = v {
            // RFC 3339 offsets carry `+`, which a query string reads as a space.
            path.push_str(&format!("{k}={}&", v.replace('+', "%2B")));
        }
    }
    let v = server
        .client()?
        .call(Method::GET, &path, None)
        .await
        .map_err(anyhow::Error::msg)?;
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&v)?),
        Output::Text => print!("{}", vireo_api::render::dora(&v)),
    }
    Ok(0)
}

async fn attest(args: AttestArgs) -> anyhow::Result<u8> {
    use vireo_evidence::{canonical, dsse, keys::SigningKey, provenance};
    match args.command {
        AttestCommand::Provenance {
            image_digest,
            image_name,
            git_commit,
            repository,
            builder_id,
            lockfile,
            key,
            output,
        } => {
            let digest = image_digest
                .strip_prefix("sha256:")
                .map(str::to_ascii_lowercase)
                .filter(|h| provenance::is_sha256_hex(h))
                .ok_or_else(|| {
                    anyhow::anyhow!("--image-digest {image_digest:?}: expected sha256:<64 hex>")
                })?;
            let started = vireo_core::clock::now_ms();
            let lock = std::fs::read_to_string(&lockfile)
                .map_err(|e| anyhow::anyhow!("--lockfile {}: {e}", lockfile.display()))?;
            let (signer, created) = SigningKey::load_or_create(&key)
                .map_err(|e| anyhow::anyhow!("--key {}: {e}", key.display()))?;
            if created {
                eprintln!(
                    "created builder key {} (public key {}: trust it in control.yaml)",
                    key.display(),
                    key.with_extension("pub").display()
                );
            }
            let st = provenance::statement_for(&provenance::BuildFacts {
                image_name: &image_name,
                image_digest: &digest,
                git_commit: &git_commit,
                repository: &repository,
                builder_id: &builder_id,
                lockfile: (&lockfile.display().to_string(), &lock),
                started_ms: started,
                finished_ms: vireo_core::clock::now_ms(),
            })
            .map_err(anyhow::Error::msg)?;
            let pins = st["predicate"]["buildDefinition"]["resolvedDependencies"]
                .as_array()
                .map_or(0, Vec::len);
            let env = dsse::sign(dsse::IN_TOTO, &canonical(&st)?, &signer);
            std::fs::write(&output, serde_json::to_vec_pretty(&env)?)
                .map_err(|e| anyhow::anyhow!("{}: {e}", output.display()))?;
            println!(
                "wrote {} (SLSA provenance for sha256:{digest}, {pins} resolved dependencies, \
                 key id {}); upload it with: vireo attest upload {}",
                output.display(),
                signer.public().keyid(),
                output.display()
            );
            Ok(0)
        }
        AttestCommand::Upload { file } => {
            let body = std::fs::read_to_string(&file)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let v = args
                .server
                .client()?
                .call(Method::POST, "/api/v1/attestations", Some(body))
                .await
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            println!(
                "{}: log entry {} for {}",
                file.display(),
                v["logIndex"],
                v["subjects"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            Ok(0)
        }
    }
}

fn verify_sigstore(
    bundle: &std::path::Path,
    key: Option<&std::path::Path>,
    trusted_root: Option<&std::path::Path>,
    artifact: &std::path::Path,
    output: Output,
) -> anyhow::Result<u8> {
    let read =
        |p: &std::path::Path| std::fs::read(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()));
    let key =
        key.ok_or_else(|| anyhow::anyhow!("--bundle needs --key PUB (the signer's public key)"))?;
    let root = trusted_root.map(read).transpose()?;
    let report = vireo_evidence::sigstore_bundle::verify(
        &read(bundle)?,
        &read(key)?,
        root.as_deref(),
        &read(artifact)?,
    );
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Output::Text => {
            print!("{}", report.table());
            println!(
                "{} for {}: {}",
                bundle.display(),
                artifact.display(),
                if report.ok() { "VERIFIED" } else { "FAILED" }
            );
        }
    }
    Ok(if report.ok() { 0 } else { 1 })
}

fn verify(
    file: &std::path::Path,
    key: Option<&std::path::Path>,
    log_key: Option<&std::path::Path>,
    output: Output,
) -> anyhow::Result<u8> {
    use vireo_evidence::{bundle, keys::PublicKey};
    let load = |path: Option<&std::path::Path>| -> anyhow::Result<Option<PublicKey>> {
        let Some(path) = path else { return Ok(None) };
        let pem = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok(Some(
            PublicKey::from_pem(&pem).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
        ))
    };
    let trust = bundle::Trust {
        signing: load(key)?,
        log: load(log_key)?,
    };
    let started = std::time::Instant::now();
    let f = std::fs::File::open(file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let files = bundle::read(f).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let report = bundle::verify(&files, &trust);
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Output::Text => {
            print!("{}", report.table());
            println!(
                "{}: {} ({} envelopes, {:.1} ms)",
                file.display(),
                if report.ok() { "VERIFIED" } else { "FAILED" },
                report.envelopes,
                started.elapsed().as_secs_f64() * 1e3
            );
        }
    }
    Ok(if report.ok() { 0 } else { 1 })
}

async fn replay(server: &ServerArg, decision: Option<String>) -> anyhow::Result<u8> {
    let c = server.client()?;
    let Some(decision) = decision else {
        let v = c
            .call(Method::GET, "/api/v1/replays", None)
            .await
            .map_err(anyhow::Error::msg)?;
        println!(
            "replays: {} total, {} match, {} mismatch{}",
            v["total"],
            v["matches"],
            v["mismatches"],
            v["matchRate"]
                .as_f64()
                .map(|r| format!(", match rate {:.1} %", r * 100.0))
                .unwrap_or_default()
        );
        return Ok(0);
    };
    let body = serde_json::json!({ "decisionId": decision }).to_string();
    let v = c
        .call(Method::POST, "/api/v1/replays", Some(body))
        .await
        .map_err(anyhow::Error::msg)?;
    println!("{decision}: {}", v["result"].as_str().unwrap_or("?"));
    for d in v["differences"].as_array().into_iter().flatten() {
        println!("  {}", d.as_str().unwrap_or_default());
    }
    Ok(if v["result"] == "match" { 0 } else { 3 })
}

async fn token(args: TokenArgs) -> anyhow::Result<u8> {
    let c = args.server.client()?;
    let fail = anyhow::Error::msg;
    match args.command {
        TokenCommand::Create {
            role,
            name,
            expires,
        } => {
            let mut body = serde_json::json!({ "name": name, "role": role });
            if let Some(e) = expires {
                body["expires"] = e.into();
            }
            let v = c
                .call(Method::POST, "/api/v1/tokens", Some(body.to_string()))
                .await
                .map_err(fail)?;
            let expires = match v["expiresMs"].as_u64() {
                Some(ms) => humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + Duration::from_millis(ms),
                )
                .to_string(),
                None => "never".into(),
            };
            eprintln!(
                "token {} (role {}, expires {expires}); it is shown only now:",
                v["name"].as_str().unwrap_or("?"),
                v["role"].as_str().unwrap_or("?"),
            );
            println!("{}", v["token"].as_str().unwrap_or_default());
            Ok(0)
        }
        TokenCommand::List { output } => {
            let v = c
                .call(Method::GET, "/api/v1/tokens", None)
                .await
                .map_err(fail)?;
            if output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(0);
            }
            println!(
                "{:<24} {:<9} {:<9} {:<21} CREATED BY",
                "NAME", "ROLE", "STATE", "EXPIRES"
            );
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0);
            let time = |ms: u64| {
                humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(ms))
                    .to_string()
            };
            for t in v["items"].as_array().into_iter().flatten() {
                let expires = t["expiresMs"].as_u64();
                let state = if t["revokedMs"].is_u64() {
                    "revoked"
                } else if expires.is_some_and(|e| e <= now) {
                    "expired"
                } else {
                    "active"
                };
                println!(
                    "{:<24} {:<9} {:<9} {:<21} {}",
                    t["name"].as_str().unwrap_or("?"),
                    t["role"].as_str().unwrap_or("?"),
                    state,
                    expires.map(time).unwrap_or_else(|| "never".into()),
                    t["createdBy"].as_str().unwrap_or("?"),
                );
            }
            Ok(0)
        }
        TokenCommand::Revoke { name } => {
            c.call(Method::DELETE, &format!("/api/v1/tokens/{name}"), None)
                .await
                .map_err(fail)?;
            println!("token {name} revoked");
            Ok(0)
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

async fn rollout(args: RolloutArgs) -> anyhow::Result<u8> {
    let c = args.server.client()?;
    let reason = args.reason.as_deref();
    let fail = anyhow::Error::msg;
    match args.command {
        RolloutCommand::Apply { file } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let mut docs = client::documents(&text);
            if docs.is_empty() {
                anyhow::bail!("{}: no document in the file", file.display());
            }
            // Templates first: a rollout's analysis steps must find theirs.
            docs.sort_by_key(|d| client::kind(d).as_deref() != Some("AnalysisTemplate"));
            for doc in docs {
                let applied = c
                    .apply(doc)
                    .await
                    .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
                match applied {
                    client::Applied::Template(t) => {
                        println!("analysistemplate/{} applied", t.analysis_template)
                    }
                    client::Applied::Rollout(v) => {
                        println!("rollout/{} applied: {:?}", v.rollout.name(), v.status.phase)
                    }
                }
            }
            Ok(0)
        }
        RolloutCommand::List { output } => {
            match output {
                // As the server sent it: nothing this build does not know is dropped.
                Output::Json => {
                    let v = c
                        .call(Method::GET, "/api/v1/rollouts", None)
                        .await
                        .map_err(fail)?;
                    println!("{}", serde_json::to_string_pretty(&v)?)
                }
                Output::Text => print!(
                    "{}",
                    client::render_list(&c.rollouts().await.map_err(fail)?)
                ),
            }
            Ok(0)
        }
        RolloutCommand::Status {
            name,
            watch,
            output,
        } => {
            let mut last = String::new();
            loop {
                let (v, json) = c.rollout_and_json(&name).await.map_err(fail)?;
                let shown = match output {
                    Output::Json => serde_json::to_string_pretty(&json)? + "\n",
                    Output::Text => client::render_status(&v),
                };
                if shown != last {
                    if watch && !last.is_empty() {
                        println!();
                    }
                    print!("{shown}");
                    last = shown;
                }
                if !watch {
                    return Ok(0);
                }
                if v.status.settled {
                    let completed = v.status.phase == vireo_core::rollout::Phase::Completed;
                    return Ok(if completed { 0 } else { 2 });
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        RolloutCommand::Pause { name } => act(&c, &name, "pause", reason).await,
        RolloutCommand::Resume { name } => act(&c, &name, "resume", reason).await,
        RolloutCommand::Promote { name, full } => {
            act(
                &c,
                &name,
                if full { "promote?full=true" } else { "promote" },
                reason,
            )
            .await
        }
        RolloutCommand::Abort { name } => act(&c, &name, "abort", reason).await,
        RolloutCommand::Retry { name } => act(&c, &name, "retry", reason).await,
        RolloutCommand::Rerun { name } => act(&c, &name, "rerun", reason).await,
        RolloutCommand::Approve { name } => act(&c, &name, "approve", reason).await,
        RolloutCommand::Rollback { name } => act(&c, &name, "rollback", reason).await,
        RolloutCommand::Schedule {
            name,
            at,
            window,
            require_prometheus,
            no_open_incident,
            require_analysis,
        } => {
            let mut preconditions = Vec::new();
            for u in require_prometheus {
                preconditions.push(serde_json::json!({ "prometheusReachable": u }));
            }
            for u in no_open_incident {
                preconditions.push(serde_json::json!({ "noOpenIncident": u }));
            }
            for t in require_analysis {
                preconditions.push(serde_json::json!({ "analysis": t }));
            }
            let body =
                serde_json::json!({ "at": at, "window": window, "preconditions": preconditions });
            c.call(
                Method::POST,
                &format!("/api/v1/rollouts/{name}/schedule"),
                Some(body.to_string()),
            )
            .await
            .map_err(fail)?;
            println!("rollout/{name}: scheduled at {at} (window {window})");
            Ok(0)
        }
        RolloutCommand::Unschedule { name } => {
            c.call(
                Method::DELETE,
                &format!("/api/v1/rollouts/{name}/schedule"),
                None,
            )
            .await
            .map_err(fail)?;
            println!("rollout/{name}: schedule cancelled");
            Ok(0)
        }
    }
}

async fn act(c: &Client, name: &str, action: &str, reason: Option<&str>) -> anyhow::Result<u8> {
    let v = c
        .act(name, action, reason)
        .await
        .map_err(anyhow::Error::msg)?;
    println!("{}", client::render_acted(name, &v));
    Ok(0)
}
