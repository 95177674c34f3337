//! `vireo-proxy`: the binary. Argument parsing, logging set-up and exit codes only; everything
//! else is in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

// The system allocator, by measurement (benches/README.md, "Allocator"): the request path
// allocates about ten times per request, and mimalloc saved 2 % of instructions while its
// eagerly committed arenas, backed by transparent huge pages, doubled peak RSS (19.6 vs 10.2 MB).

/// Vireo's data plane: a sidecar proxy that splits each route's traffic between stable and
/// canary, by weight or by hashing a user id into buckets so every user keeps their cohort.
///
/// Metrics, health, the active config and rolling SLO figures are served on the admin port
/// (`admin:` in the config): /metrics, /live, /ready, /config, /slo?window=60s.
///
/// The config file is reloaded when it changes and on SIGHUP; an invalid file is rejected and
/// the previous config keeps serving. SIGTERM/SIGINT shut down gracefully: readiness goes to 503,
/// listeners close, requests in flight finish (at most `shutdown_grace`).
#[derive(Parser, Debug)]
#[command(
    name = "vireo-proxy",
    version,
    after_help = EXAMPLES,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Sub>,

    /// Run the proxy with this config file (YAML or JSON).
    #[arg(long, value_name = "FILE", conflicts_with = "check")]
    config: Option<PathBuf>,

    /// Take routes from this control plane (e.g. http://127.0.0.1:8080) instead of the file;
    /// the file still gives listen, admin and timeouts, and its routes serve until the first
    /// table arrives or while the control plane is unreachable at start.
    #[arg(long, value_name = "URL", requires = "proxy_id")]
    control: Option<String>,

    /// This proxy's name in the control plane, e.g. demo/proxy-0 (with --control).
    #[arg(long, value_name = "ID")]
    proxy_id: Option<String>,

    /// A file holding the token (role `proxy`) the proxy shows the control plane: `vireo
    /// token create --role proxy --name NAME`. Re-read when it changes.
    #[arg(
        long,
        value_name = "FILE",
        env = "VIREO_PROXY_TOKEN_FILE",
        requires = "control"
    )]
    control_token_file: Option<PathBuf>,

    /// Trust only this CA certificate (PEM) for an https:// control plane, e.g. the
    /// DATA_DIR/tls/ca.pem that `vireo serve --tls auto` made [default: the system's roots].
    #[arg(
        long,
        value_name = "FILE",
        env = "VIREO_PROXY_CONTROL_CA",
        requires = "control"
    )]
    control_ca: Option<PathBuf>,

    /// Transparent interception, as `transparent: true` in the config: serve the connections
    /// `vireo-proxy iptables` redirects here, routing by their original destination.
    #[arg(long, env = "VIREO_PROXY_TRANSPARENT", requires = "config")]
    transparent: bool,

    /// The data port's address, instead of the file's `listen:` (the injector sets it, so that
    /// the port iptables redirects to is the port the proxy listens on whatever the namespace's
    /// shared file says).
    #[arg(
        long,
        value_name = "ADDR",
        env = "VIREO_PROXY_LISTEN",
        requires = "config"
    )]
    listen: Option<std::net::SocketAddr>,

    /// The admin port's address, instead of the file's `admin:` (as --listen, for the probes).
    #[arg(
        long,
        value_name = "ADDR",
        env = "VIREO_PROXY_ADMIN",
        requires = "config"
    )]
    admin: Option<std::net::SocketAddr>,

    /// Answer `POST /shutdown` on the admin port, from loopback only: a graceful shutdown, as
    /// SIGTERM. For a Job's pod where the proxy is an ordinary container (Kubernetes before
    /// 1.29): its last command runs `curl -X POST http://127.0.0.1:4191/shutdown`.
    #[arg(long, env = "VIREO_PROXY_SHUTDOWN_ENDPOINT", requires = "config")]
    shutdown_endpoint: bool,

    /// Validate a config file, print every error with its field path, and exit: 0 if valid,
    /// 1 if not.
    #[arg(long, value_name = "FILE")]
    check: Option<PathBuf>,

    /// Log filter, e.g. `info`, `debug`, `vireo_proxy=debug` (or set RUST_LOG).
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    log: String,
}

#[derive(clap::Subcommand, Debug)]
enum Sub {
    /// Transparent interception's init step: install iptables rules in this network namespace
    /// that redirect outbound TCP to the proxy's port, except the proxy's own (by uid),
    /// loopback, and the ports and networks skipped. Run once per pod before the app starts
    /// (the injector's `vireo-init` init container, with NET_ADMIN and NET_RAW); running it
    /// again leaves the same rules. The proxy then runs with `transparent: true`.
    Iptables(IptablesArgs),
    /// Wait until the proxy on this pod answers `/ready` on its admin port. The injector runs
    /// it as the proxy container's postStart hook before Kubernetes 1.29: the kubelet starts
    /// the next container (the app) only once the hook returns, so the app's first call finds
    /// a proxy listening.
    WaitReady(WaitReadyArgs),
}

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Example:\n  vireo-proxy wait-ready --admin 127.0.0.1:4191 --timeout 120s\n\nExit codes: 0 ready, 1 not ready within the timeout, 2 bad command line."
)]
struct WaitReadyArgs {
    /// The proxy's admin address.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:4191")]
    admin: std::net::SocketAddr,
    /// How long to wait, e.g. 30s, 2m.
    #[arg(long, value_name = "DURATION", default_value = "120s", value_parser = humantime::parse_duration)]
    timeout: std::time::Duration,
}

/// Polls `GET /ready` every 100 ms until it answers 200 or the timeout passes.
fn wait_ready(args: WaitReadyArgs) -> ExitCode {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};
    // A timeout past what the clock can hold waits as long as it can (about a century).
    let deadline = Instant::now()
        .checked_add(args.timeout)
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(3_000_000_000));
    let ready = || -> bool {
        let Ok(mut s) = std::net::TcpStream::connect_timeout(&args.admin, Duration::from_secs(1))
        else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
        let mut head = [0u8; 12];
        s.write_all(b"GET /ready HTTP/1.1\r\nhost: vireo\r\nconnection: close\r\n\r\n")
            .is_ok()
            && s.read_exact(&mut head).is_ok()
            && &head[..] == b"HTTP/1.1 200"
    };
    // Bounded by the deadline: each pass waits at most ~2 s (connect, read) plus 100 ms.
    loop {
        if ready() {
            return ExitCode::SUCCESS;
        }
        if Instant::now() >= deadline {
            eprintln!(
                "vireo-proxy wait-ready: {} did not answer /ready with 200 within {}",
                args.admin,
                humantime::format_duration(args.timeout)
            );
            return ExitCode::from(1);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[derive(clap::Args, Debug)]
#[command(after_help = IPTABLES_EXAMPLES)]
struct IptablesArgs {
    /// The uid the proxy runs as; its connections (to backends, to the control plane) are
    /// never redirected.
    #[arg(long, value_name = "UID", default_value_t = 2102)]
    proxy_uid: u32,
    /// The proxy's data port (`listen:` in its config).
    #[arg(long, value_name = "PORT", default_value_t = 4140)]
    proxy_port: u16,
    /// Destination ports to leave alone, comma-separated, ranges as 4567-4568: protocols
    /// where the server speaks first (SMTP, MySQL) would otherwise wait 10 s for detection.
    #[arg(long, value_name = "PORTS", value_delimiter = ',')]
    skip_outbound_ports: Vec<vireo_proxy::intercept::Ports>,
    /// Destination networks to leave alone, comma-separated (e.g. 169.254.169.254/32).
    #[arg(long, value_name = "CIDRS", value_delimiter = ',')]
    skip_outbound_networks: Vec<vireo_proxy::intercept::Cidr>,
    /// Also install the rules for IPv6 (ip6tables), for dual-stack pods.
    #[arg(long)]
    ipv6: bool,
    /// Which iptables binaries: the system's default, or its `legacy` or `nft` variant (match
    /// what the node's kube-proxy uses).
    #[arg(long, value_name = "MODE", value_parser = ["default", "legacy", "nft"], default_value = "default")]
    iptables_mode: String,
    /// Print the rules instead of installing them.
    #[arg(long)]
    dry_run: bool,
}

const IPTABLES_EXAMPLES: &str = "Examples:
  vireo-proxy iptables --proxy-uid 2102 --proxy-port 4140
  vireo-proxy iptables --skip-outbound-ports 25,3306,4567-4568 --skip-outbound-networks 169.254.169.254/32
  vireo-proxy iptables --dry-run

Exit codes: 0 rules installed, 1 iptables failed (missing NET_ADMIN? missing binary?), 2 bad command line.";

fn iptables(args: IptablesArgs) -> ExitCode {
    use vireo_proxy::intercept::{self, Family, Interception};
    let rules = Interception {
        proxy_uid: args.proxy_uid,
        proxy_port: args.proxy_port,
        skip_ports: args.skip_outbound_ports,
        skip_networks: args.skip_outbound_networks,
    };
    let variant = match args.iptables_mode.as_str() {
        "legacy" => "-legacy",
        "nft" => "-nft",
        _ => "",
    };
    let mut families = vec![Family::V4];
    if args.ipv6 {
        families.push(Family::V6);
    }
    for family in families {
        if args.dry_run {
            print!("{}", rules.restore_input(family, ""));
            continue;
        }
        match intercept::apply(&rules, family, variant) {
            // The rules go to stdout: `kubectl logs POD -c vireo-init` shows what was set.
            Ok(input) => print!("{input}"),
            Err(e) => {
                eprintln!("vireo-proxy iptables: {e}");
                return ExitCode::from(1);
            }
        }
    }
    ExitCode::SUCCESS
}

const EXAMPLES: &str = "Examples:
  vireo-proxy --config deploy/examples/proxy.yaml
  vireo-proxy --check deploy/examples/proxy.yaml
  vireo-proxy --config proxy.yaml --control http://127.0.0.1:8080 --proxy-id demo/proxy-0 \\
      --control-token-file proxy.token
  vireo-proxy --config proxy.yaml --control https://cp.example:8443 --proxy-id web-0 \\
      --control-ca ca.pem --control-token-file proxy.token
  curl -H 'x-user-id: u-42' http://127.0.0.1:4140/
  curl 'http://127.0.0.1:4191/slo?window=60s'
  vireo-proxy iptables --proxy-uid 2102 --proxy-port 4140   (transparent interception's init step)

Exit codes: 0 ok, 1 invalid config or start-up failure, 2 bad command line.";

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.log)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();

    match cli.command {
        Some(Sub::Iptables(args)) => return iptables(args),
        Some(Sub::WaitReady(args)) => return wait_ready(args),
        None => {}
    }
    if let Some(path) = cli.check {
        return match vireo_proxy::config::Config::load(&path) {
            Ok(c) => {
                println!("{}: ok ({} routes)", path.display(), c.routes.len());
                ExitCode::SUCCESS
            }
            Err(e) => {
                for err in &e.errors {
                    eprintln!("{}: {err}", path.display());
                }
                ExitCode::from(1)
            }
        };
    }
    let Some(path) = cli.config else {
        eprintln!("vireo-proxy: nothing to do: pass --config FILE to run, or --check FILE to validate (see --help)");
        return ExitCode::from(2);
    };
    let control = cli.control.map(|url| vireo_proxy::watch::ControlOptions {
        url,
        proxy_id: cli.proxy_id.unwrap_or_default(),
        token: cli
            .control_token_file
            .map(vireo_proxy::watch::TokenSource::File),
        ca: cli.control_ca,
    });
    match vireo_proxy::server::run(
        &path,
        vireo_proxy::server::Start {
            control,
            transparent: cli.transparent,
            shutdown_endpoint: cli.shutdown_endpoint,
            listen: cli.listen,
            admin: cli.admin,
        },
    ) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vireo-proxy: {e}");
            ExitCode::from(1)
        }
    }
}
