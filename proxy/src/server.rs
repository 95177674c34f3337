//! Process assembly: pingora for the request path, one small runtime beside it for the admin
//! server, the config source and signals, and the shutdown sequence.
//!
//! Shutdown (SIGTERM or SIGINT), event-driven rather than pingora's fixed sleep (pingora#727):
//! 1. `/ready` answers 503 at once;
//! 2. pingora is told to shut down gracefully: listeners close, idle keep-alive connections are
//!    dropped, requests in flight carry on;
//! 3. as soon as no request is in flight (seen on three checks 20 ms apart) the process exits;
//!    at the latest after `shutdown_grace` (≤ 90 s), which is also pingora's own grace period.
//!
//! A second signal during the drain exits at once, as a user pressing Ctrl-C twice expects.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::apps::HttpServerOptions;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use pingora::services::listening::Service;
use tokio::sync::watch;

use crate::admin::{self, AdminState};
use crate::config::{Config, ConfigError};
use crate::detect::Detect;
use crate::metrics::Metrics;
use crate::proxy::VireoProxy;
use crate::reload::FileSource;
use crate::watch::{ControlOptions, ControlSource};
use crate::{Lifecycle, TableHandle};

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{path}: invalid config:\n{source}")]
    Config { path: PathBuf, source: ConfigError },
    #[error("cannot bind the admin server to {addr}: {source} (is another process using it? change `admin:` in the config)")]
    AdminBind {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot start the admin runtime: {0}")]
    Runtime(std::io::Error),
}

/// Runs the proxy from a config file until shutdown. Returns only on start-up errors: a
/// shutdown ends the process.
pub fn run(config_path: &Path, control: Option<ControlOptions>) -> Result<(), StartError> {
    let initial = std::fs::read(config_path).map_err(|e| StartError::Config {
        path: config_path.to_path_buf(),
        source: ConfigError {
            errors: vec![crate::config::FieldError {
                path: String::new(),
                reason: format!("cannot read: {e}"),
            }],
        },
    })?;
    let config = std::str::from_utf8(&initial)
        .map_err(|e| ConfigError {
            errors: vec![crate::config::FieldError {
                path: String::new(),
                reason: format!("not UTF-8: {e}"),
            }],
        })
        .and_then(Config::parse)
        .map_err(|source| StartError::Config {
            path: config_path.to_path_buf(),
            source,
        })?;

    let metrics = Metrics::new(&config.metrics.latency_buckets);
    // Version 0 marks the local file's routes when a control plane will send numbered tables
    // (its versions start at 1); a file-only proxy starts at 1 and counts its reloads.
    let first_version = if control.is_some() { 0 } else { 1 };
    let table = Arc::new(
        TableHandle::new(config.clone(), first_version, metrics.clone()).map_err(|source| {
            StartError::Config {
                path: config_path.to_path_buf(),
                source,
            }
        })?,
    );
    let lifecycle = Arc::new(Lifecycle::default());

    // Bind the admin port before anything else, so a port clash fails fast and clearly.
    let admin_listener =
        std::net::TcpListener::bind(&config.admin).map_err(|source| StartError::AdminBind {
            addr: config.admin.clone(),
            source,
        })?;
    admin_listener
        .set_nonblocking(true)
        .map_err(StartError::Runtime)?;

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let connections = Arc::new(AtomicI64::new(0));
    let side = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("vireo-admin")
        .build()
        .map_err(StartError::Runtime)?;
    {
        let listen: SocketAddr = config.listen.parse().expect("validated");
        let state = Arc::new(AdminState {
            table: table.clone(),
            lifecycle: lifecycle.clone(),
        });
        // Routes come from the control plane when there is one, else from the file.
        let source: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> = match control
        {
            Some(opts) => Box::pin(ControlSource::new(opts, config.clone(), table.clone()).run()),
            None => {
                Box::pin(FileSource::new(config_path.to_path_buf(), initial, table.clone()).run())
            }
        };
        let lifecycle = lifecycle.clone();
        let metrics = metrics.clone();
        let connections = connections.clone();
        let table_for_pruning = table.clone();
        let grace = config.shutdown_grace;
        std::thread::Builder::new()
            .name("vireo-admin".into())
            .spawn(move || {
                side.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(admin_listener)
                        .expect("a std listener converts inside a runtime");
                    tokio::spawn(admin::serve(listener, state));
                    tokio::spawn(source);
                    tokio::spawn(prune_metrics_every_minute(table_for_pruning));
                    tokio::spawn(mark_ready_when_listening(listen, lifecycle.clone()));
                    let busy =
                        move || metrics.total_in_flight() + connections.load(Ordering::Relaxed);
                    shutdown_on_signal(lifecycle, busy, shutdown_tx, grace).await;
                })
            })
            .map_err(StartError::Runtime)?;
    }

    let conf = ServerConf {
        threads: config.worker_threads(),
        grace_period_seconds: Some(config.shutdown_grace.as_secs().max(1)),
        graceful_shutdown_timeout_seconds: Some(1),
        work_stealing: false,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    // Two pingora apps over the same proxy logic, one per protocol; `Detect` picks per
    // connection (see detect.rs for why pingora's own h2c switch is not used directly).
    let logic = VireoProxy::new(table, metrics);
    let http1 = pingora::proxy::http_proxy(&server.configuration, logic.clone());
    let mut h2c = pingora::proxy::http_proxy(&server.configuration, logic);
    let mut options = HttpServerOptions::default();
    options.h2c = true;
    h2c.server_options = Some(options);
    let mut service = Service::new(
        "vireo-proxy".into(),
        Detect::new(http1, h2c, connections.clone()),
    );
    service.add_tcp(&config.listen);
    server.add_service(service);
    tracing::info!(listen = %config.listen, admin = %config.admin, threads = config.worker_threads(), "vireo-proxy starting");
    server.run(RunArgs {
        shutdown_signal: Box::new(Trigger(shutdown_rx)),
    });
    Ok(())
}

async fn prune_metrics_every_minute(table: Arc<TableHandle>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        let pruned = table.prune_metrics();
        if pruned > 0 {
            tracing::info!(
                pruned,
                "forgot metric series of versions no longer configured"
            );
        }
    }
}

/// Hands our shutdown decision to pingora.
struct Trigger(watch::Receiver<bool>);

#[async_trait]
impl ShutdownSignalWatch for Trigger {
    async fn recv(&self) -> ShutdownSignal {
        let mut rx = self.0.clone();
        // An error means the sender is gone (the side runtime died): shut down too.
        let _ = rx.wait_for(|&go| go).await;
        ShutdownSignal::GracefulTerminate
    }
}

/// Ready = config loaded (it is, by now) and the data listener accepting connections. Probes
/// until it is (pingora binds within milliseconds; backing off to 1 s if it does not).
async fn mark_ready_when_listening(listen: SocketAddr, lifecycle: Arc<Lifecycle>) {
    let probe = match listen.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), listen.port())
        }
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(std::net::Ipv6Addr::LOCALHOST.into(), listen.port())
        }
        _ => listen,
    };
    let mut delay = Duration::from_millis(10);
    loop {
        if lifecycle.is_shutting_down() {
            return;
        }
        let ok = tokio::task::spawn_blocking(move || {
            TcpStream::connect_timeout(&probe, Duration::from_millis(100)).is_ok()
        })
        .await
        .unwrap_or(false);
        if ok {
            lifecycle.set_ready(true);
            tracing::info!(%listen, "ready");
            return;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(1));
        if delay == Duration::from_secs(1) {
            tracing::warn!(%listen, "data listener not accepting yet; still unready");
        }
    }
}

/// `busy()` is requests in flight plus open client connections: pingora closes idle
/// keep-alive connections at shutdown, so both reach zero once the last response is out.
async fn shutdown_on_signal(
    lifecycle: Arc<Lifecycle>,
    busy: impl Fn() -> i64,
    trigger: watch::Sender<bool>,
    grace: Duration,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return std::future::pending().await;
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    let started = Instant::now();
    lifecycle.begin_shutdown();
    let _ = trigger.send(true);
    tracing::info!(signal = name, grace = ?grace, busy = busy(), "shutting down: readiness 503, listeners closing, draining");

    let drained = async {
        let mut zero_streak = 0;
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if busy() <= 0 {
                zero_streak += 1;
                if zero_streak >= 3 {
                    return;
                }
            } else {
                zero_streak = 0;
            }
        }
    };
    tokio::select! {
        _ = drained => tracing::info!(elapsed = ?started.elapsed(), "drained; exiting"),
        _ = tokio::time::sleep(grace) => tracing::warn!(
            busy = busy(),
            "shutdown_grace reached with requests or connections open; exiting"
        ),
        _ = term.recv() => tracing::warn!("second signal; exiting now"),
        _ = int.recv() => tracing::warn!("second signal; exiting now"),
    }
    std::process::exit(0);
}
