//! Process assembly: the request path's workers, one small runtime beside them for the admin
//! server, the config source and signals, and the shutdown sequence.
//!
//! **Workers.** `threads` OS threads, each with its own single-threaded tokio runtime, its own
//! listening socket on the data port (`SO_REUSEPORT`, so the kernel spreads new connections
//! across workers), and its own upstream pool. A connection lives on the worker that accepted
//! it: no request state, pool or timer is shared across threads; the route table and the
//! metrics are read and written lock-free. (Measured against one multi-thread runtime in
//! benches/README.md.)
//!
//! **Connections.** The first bytes decide HTTP/1.x or h2c (`detect`); then hyper's HTTP/1
//! server (keep-alive, upgrades, a 60 s deadline for each request's header section, which also
//! closes idle keep-alive connections) or its HTTP/2 server runs the connection with
//! [`crate::proxy::service`].
//!
//! **Shutdown** (SIGTERM or SIGINT), event-driven:
//! 1. `/ready` answers 503 at once;
//! 2. every worker closes its listener and asks each connection to finish gracefully (idle
//!    keep-alive connections close now, HTTP/2 gets GOAWAY, requests in flight carry on);
//! 3. as soon as no request is in flight and no client connection is open (seen on three checks
//!    20 ms apart) the process exits; at the latest after `shutdown_grace` (≤ 90 s).
//!
//! A second signal during the drain exits at once, as a user pressing Ctrl-C twice expects.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::watch;

use crate::admin::{self, AdminState};
use crate::config::{Config, ConfigError};
use crate::detect::{self, Protocol};
use crate::io::Downstream;
use crate::metrics::Metrics;
use crate::proxy::{self as request_path, Worker};
use crate::reload::FileSource;
use crate::upstream::{LocalExec, Pool};
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
    #[error("cannot listen on {addr}: {source} (is another process using it? change `listen:` in the config)")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot start a runtime thread: {0}")]
    Runtime(std::io::Error),
    #[error("--control-ca: {0}")]
    ControlCa(vireo_http::HttpError),
    #[error("transparent mode: this process's own connections are redirected back to the proxy (it runs as uid {uid}, which the iptables rules do not exempt); every backend call would loop. Run the proxy as the uid given to `vireo-proxy iptables --proxy-uid` (2102 by default; the injector sets runAsUser), or without --transparent")]
    OwnTrafficIntercepted { uid: String },
}

/// What the command line adds to the config file.
#[derive(Debug, Default)]
pub struct Start {
    /// Take routes from this control plane.
    pub control: Option<ControlOptions>,
    /// Transparent interception whatever the file says (the injector sets it per pod; the
    /// file is shared by a namespace's pods).
    pub transparent: bool,
    /// Answer `POST /shutdown` on the admin port (from loopback): a Job's way to end its pod.
    pub shutdown_endpoint: bool,
    /// The data and admin addresses instead of the file's (the injector's, per pod).
    pub listen: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
}

/// Runs the proxy from a config file until shutdown. Returns only on start-up errors: a
/// shutdown ends the process.
pub fn run(config_path: &Path, start: Start) -> Result<(), StartError> {
    let Start {
        control,
        transparent,
        shutdown_endpoint,
        listen,
        admin,
    } = start;
    // The control plane's client first: a CA file that does not load stops the start.
    let control = control
        .map(|c| c.client().map(|client| (c, client)))
        .transpose()
        .map_err(StartError::ControlCa)?;
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
    let config = Config {
        transparent: config.transparent || transparent,
        listen: listen.map_or(config.listen.clone(), |a| a.to_string()),
        admin: admin.map_or(config.admin.clone(), |a| a.to_string()),
        ..config
    };

    let metrics = Metrics::new(&config.metrics.latency_buckets);
    if !metrics.recording() {
        tracing::warn!(
            "{} is set: requests are not recorded (benchmarks only; /metrics and /slo stay empty)",
            crate::metrics::BENCH_UNRECORDED_ENV
        );
    }
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
    if admin_listener
        .local_addr()
        .is_ok_and(|a| !a.ip().is_loopback())
    {
        // Read-only, but /config lists every route and backend address: say so.
        tracing::warn!(admin = %config.admin, "the admin port is reachable beyond loopback: /config and /metrics show routes and backend addresses to anyone who can connect");
    }

    // Then the data port, one socket per worker; bound now, the port accepts connections (the
    // kernel queues them) before any worker runs, so the proxy is ready once this succeeds.
    let threads = config.worker_threads();
    let listen_err = |source| StartError::Listen {
        addr: config.listen.clone(),
        source,
    };
    let listen: SocketAddr = config.listen.parse().expect("validated");
    let listeners = bind_data_port(listen, threads).map_err(listen_err)?;
    // In a pod whose outbound IPv6 is redirected too (`iptables --ipv6`), ip6tables' REDIRECT
    // lands on [::1]: the proxy listens there as well, on the same port. Loopback only, as
    // the IPv4 side: the data port must never be reachable from the pod network.
    let listeners_v6: Vec<Option<std::net::TcpListener>> = match (config.transparent, listen.ip()) {
        (true, std::net::IpAddr::V4(ip)) if ip.is_loopback() => {
            let v6 = SocketAddr::new(
                std::net::Ipv6Addr::LOCALHOST.into(),
                listeners_port(&listeners),
            );
            match bind_data_port(v6, threads) {
                Ok(l) => l.into_iter().map(Some).collect(),
                // No IPv6 here: nothing to redirect there either.
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::AddrNotAvailable | std::io::ErrorKind::Unsupported
                    ) || e.raw_os_error() == Some(97) =>
                {
                    tracing::debug!(addr = %v6, error = %e, "no IPv6 loopback: intercepting IPv4 only");
                    (0..threads).map(|_| None).collect()
                }
                // Someone else on [::1]:port would get the app's redirected IPv6 calls.
                Err(source) => {
                    return Err(StartError::Listen {
                        addr: v6.to_string(),
                        source,
                    })
                }
            }
        }
        _ => (0..threads).map(|_| None).collect(),
    };
    let mut early = Vec::new();
    if config.transparent {
        let all: Vec<&std::net::TcpListener> = listeners
            .iter()
            .chain(listeners_v6.iter().flatten())
            .collect();
        let found = crate::intercept::probe(&all);
        if found.looped {
            use std::os::unix::fs::MetadataExt;
            let uid = std::fs::metadata("/proc/self")
                .map_or_else(|_| "?".to_string(), |m| m.uid().to_string());
            return Err(StartError::OwnTrafficIntercepted { uid });
        }
        if found.elsewhere {
            tracing::warn!("a connection to a documentation-only address (TEST-NET) succeeded: something besides Vireo intercepts this pod's outbound traffic (another mesh? an egress proxy?)");
        }
        early = found.early;
    }

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let connections = Arc::new(AtomicI64::new(0));
    let side = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("vireo-admin")
        .build()
        .map_err(StartError::Runtime)?;
    {
        let asked = Arc::new(tokio::sync::Notify::new());
        let state = Arc::new(AdminState {
            table: table.clone(),
            lifecycle: lifecycle.clone(),
            shutdown: shutdown_endpoint.then(|| asked.clone()),
        });
        // Routes come from the control plane when there is one, else from the file.
        let source: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> = match control
        {
            Some((opts, client)) => {
                Box::pin(ControlSource::new(opts, client, config.clone(), table.clone()).run())
            }
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
                    let busy =
                        move || metrics.total_in_flight() + connections.load(Ordering::Relaxed);
                    shutdown_on_signal(lifecycle, busy, shutdown_tx, grace, asked).await;
                })
            })
            .map_err(StartError::Runtime)?;
    }

    let mut workers = Vec::with_capacity(threads);
    for (i, (listener, listener_v6)) in listeners.into_iter().zip(listeners_v6).enumerate() {
        // Connections the start-up probe accepted while it looked for its own: the first
        // worker serves them.
        let early = std::mem::take(&mut early);
        let ctx = WorkerStart {
            table: table.clone(),
            metrics: metrics.clone(),
            connections: connections.clone(),
            shutdown: shutdown_rx.clone(),
            max_per_addr: config.upstream_max_connections,
            header_read_timeout: config.header_read_timeout,
            transparent: config.transparent,
        };
        let handle = std::thread::Builder::new()
            .name(format!("vireo-worker-{i}"))
            .spawn(move || run_worker(listener, listener_v6, early, ctx))
            .map_err(StartError::Runtime)?;
        workers.push(handle);
    }
    lifecycle.set_ready(true);
    tracing::info!(listen = %config.listen, admin = %config.admin, threads, "vireo-proxy ready");
    for w in workers {
        let _ = w.join();
    }
    Ok(())
}

/// The port the data listeners share (the one the kernel chose for port 0).
fn listeners_port(listeners: &[std::net::TcpListener]) -> u16 {
    listeners
        .first()
        .and_then(|l| l.local_addr().ok())
        .map_or(0, |a| a.port())
}

/// Binds one listening socket per worker. With one worker, a plain socket; with more, each
/// sets `SO_REUSEPORT` so the kernel balances new connections across them. A port another
/// process holds is refused first with a plain bind, because `SO_REUSEPORT` would otherwise
/// quietly share it with any other process of the same user that also sets it.
fn bind_data_port(addr: SocketAddr, n: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    use socket2::{Domain, Protocol as IpProto, Socket, Type};
    let socket = |reuse_port: bool, addr: SocketAddr| -> std::io::Result<std::net::TcpListener> {
        let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(IpProto::TCP))?;
        if addr.is_ipv6() {
            s.set_only_v6(true)?;
        }
        s.set_reuse_address(true)?;
        if reuse_port {
            s.set_reuse_port(true)?;
        }
        s.set_nonblocking(true)?;
        s.bind(&addr.into())?;
        s.listen(4096)?;
        Ok(s.into())
    };
    if n <= 1 {
        return Ok(vec![socket(false, addr)?]);
    }
    let probe = socket(false, addr)?;
    // Port 0 asks the kernel for a port: every worker must share the one it chose.
    let addr = probe.local_addr()?;
    drop(probe);
    (0..n).map(|_| socket(true, addr)).collect()
}

/// Bench-only: `connection` gives every client connection its own upstream pool instead of
/// sharing the worker's, to measure that design against the one shipped
/// (`benches/load/compare.sh`'s `vireo-proxy-pool-per-connection`).
pub const BENCH_POOL_ENV: &str = "VIREO_PROXY_BENCH_POOL";

/// What a worker thread starts with.
struct WorkerStart {
    table: Arc<TableHandle>,
    metrics: Arc<Metrics>,
    connections: Arc<AtomicI64>,
    shutdown: watch::Receiver<bool>,
    max_per_addr: usize,
    header_read_timeout: Duration,
    /// `transparent: true`: ask each connection where it was going.
    transparent: bool,
}

/// One worker: its runtime, accept loop, connections and pool sweep. Returns after shutdown
/// once its connections are done (the side thread may end the process first).
fn run_worker(
    listener: std::net::TcpListener,
    listener_v6: Option<std::net::TcpListener>,
    early: Vec<std::net::TcpStream>,
    start: WorkerStart,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start a worker runtime");
            return;
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let register = |l| match tokio::net::TcpListener::from_std(l) {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::error!(error = %e, "cannot register the data listener");
                None
            }
        };
        let Some(listener) = register(listener) else {
            return;
        };
        let listener_v6 = listener_v6.and_then(register);
        let worker = Rc::new(Worker {
            table: start.table,
            metrics: start.metrics,
            pool: Pool::new(start.max_per_addr),
            pool_per_connection: std::env::var(BENCH_POOL_ENV).is_ok_and(|v| v == "connection"),
        });
        let servers = Rc::new(Servers::new(start.header_read_timeout));
        tokio::task::spawn_local(sweep_pool(worker.clone()));
        let mut shutdown = start.shutdown;
        let serve = |stream: tokio::net::TcpStream, shutdown: &watch::Receiver<bool>| {
            let _ = stream.set_nodelay(true);
            let open = Open::new(&start.connections);
            let intercepted = start
                .transparent
                .then(|| crate::intercept::original_dst(&stream))
                .flatten();
            tokio::task::spawn_local(serve_connection(
                stream,
                worker.clone(),
                servers.clone(),
                shutdown.clone(),
                open,
                intercepted,
            ));
        };
        for stream in early {
            match stream
                .set_nonblocking(true)
                .and_then(|()| tokio::net::TcpStream::from_std(stream))
            {
                Ok(stream) => serve(stream, &shutdown),
                Err(e) => tracing::debug!(error = %e, "dropping a connection accepted at start"),
            }
        }
        let mut backing_off = false;
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                Some(a) = async { Some(listener_v6.as_ref()?.accept().await) } => a,
                _ = shutdown.wait_for(|&s| s) => break,
            };
            match accepted {
                Ok((stream, _)) => {
                    backing_off = false;
                    serve(stream, &shutdown);
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning, and
                    // say so once per burst.
                    if !backing_off {
                        tracing::warn!(error = %e, "accept failed; backing off");
                    }
                    backing_off = true;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
        drop((listener, listener_v6));
        // Let the connections finish; the side thread exits the process when all are done.
        std::future::pending::<()>().await;
    });
}

/// The per-worker HTTP server configurations, built once.
struct Servers {
    http1: hyper::server::conn::http1::Builder,
    http2: hyper::server::conn::http2::Builder<LocalExec>,
    /// `header_read_timeout`: also bounds protocol detection.
    head_timeout: Duration,
}

impl Servers {
    fn new(head_timeout: Duration) -> Self {
        let mut http1 = hyper::server::conn::http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .keep_alive(true)
            // A request's header section must arrive within 60 s of the connection being ready
            // for it (slowloris; also closes idle keep-alive connections).
            .header_read_timeout(head_timeout)
            // Room for `max_header_bytes` up to its ceiling; our own check answers 431 below it.
            .max_buf_size(crate::config::MAX_HEADER_BYTES + 64 * 1024);
        // hyper's default limit of 100 header fields stays (Envoy's default too; more get
        // 431): setting any other limit makes every parse initialise a heap array of that many
        // slots, 5 k instructions per request at 256 (callgrind, benches/README.md).
        let mut http2 = hyper::server::conn::http2::Builder::new(LocalExec);
        // Pings find h2c clients that vanished without a FIN, which would otherwise hold a
        // connection (and a file descriptor) for ever.
        http2
            .timer(TokioTimer::new())
            .keep_alive_interval(Some(Duration::from_secs(60)))
            .keep_alive_timeout(Duration::from_secs(20));
        Servers {
            http1,
            http2,
            head_timeout,
        }
    }
}

/// Runs a hyper connection until it ends; at shutdown, asks it to finish gracefully (idle
/// keep-alive connections close, HTTP/2 sends GOAWAY, requests in flight carry on) and waits.
/// A macro because hyper's HTTP/1 and HTTP/2 connections share no trait for this.
macro_rules! until_shutdown {
    ($conn:expr, $shutdown:ident) => {{
        let conn = $conn;
        tokio::pin!(conn);
        // The connection first: its first poll moves bytes detection put back into hyper's
        // buffer, so a request that arrived just before shutdown is answered, not dropped.
        tokio::select! {
            biased;
            _ = conn.as_mut() => return,
            _ = $shutdown.wait_for(|&s| s) => {}
        }
        conn.as_mut().graceful_shutdown();
        let _ = conn.await;
    }};
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    worker: Rc<Worker>,
    servers: Rc<Servers>,
    mut shutdown: watch::Receiver<bool>,
    _open: Open,
    intercepted: Option<SocketAddr>,
) {
    let mut io = Downstream::new(stream);
    let (rules, limit) = match intercepted {
        None => (detect::EXPLICIT, servers.head_timeout),
        Some(_) => (
            detect::INTERCEPTED,
            servers.head_timeout.min(detect::OPAQUE_AFTER),
        ),
    };
    let Some(protocol) = detect::detect(&mut io, &mut shutdown, limit, rules).await else {
        return;
    };
    if let (Protocol::Opaque, Some(dst)) = (protocol, intercepted) {
        let connect_timeout = worker.table.load().limits().connect_timeout;
        return relay_opaque(io, dst, connect_timeout).await;
    }
    let worker = if worker.pool_per_connection {
        // Bench-only comparison (see `BENCH_POOL_ENV`): this connection's own upstream pool.
        Rc::new(Worker {
            table: worker.table.clone(),
            metrics: worker.metrics.clone(),
            pool: Pool::new(worker.pool.max_per_addr()),
            pool_per_connection: true,
        })
    } else {
        worker
    };
    let intercepted = intercepted.map(|dst| {
        Rc::new(request_path::Intercepted::new(
            dst,
            protocol == Protocol::H2c,
        ))
    });
    let service = request_path::service(worker, intercepted);
    match protocol {
        Protocol::Http1 => until_shutdown!(
            servers
                .http1
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades(),
            shutdown
        ),
        Protocol::H2c => until_shutdown!(
            servers.http2.serve_connection(TokioIo::new(io), service),
            shutdown
        ),
        // Only intercepted connections are classified opaque, and they returned above.
        Protocol::Opaque => {}
    }
}

/// An intercepted connection that is not HTTP (TLS to an outside API, a database protocol):
/// its bytes go to where the app sent them, both ways, until either side closes or it is idle
/// for [`crate::io::TUNNEL_IDLE`]. It counts as
/// an open connection, so a shutdown waits for it up to `shutdown_grace`, as for a WebSocket.
async fn relay_opaque(mut io: Downstream, dst: SocketAddr, connect_timeout: Duration) {
    let up = tokio::time::timeout(connect_timeout, tokio::net::TcpStream::connect(dst)).await;
    let mut up = match up {
        Ok(Ok(up)) => up,
        Ok(Err(e)) => return tracing::debug!(%dst, error = %e, "opaque relay: connect failed"),
        Err(_) => return tracing::debug!(%dst, "opaque relay: connect timed out"),
    };
    let _ = up.set_nodelay(true);
    if let Err(e) = crate::io::tunnel(&mut io, &mut up, crate::io::TUNNEL_IDLE).await {
        tracing::debug!(%dst, error = %e, "opaque relay ended");
    }
}

/// Closes idle upstream connections past `upstream_idle_timeout` (read from the live table, so
/// a reload's new value applies).
async fn sweep_pool(worker: Rc<Worker>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let idle_timeout = worker.table.load().limits().upstream_idle_timeout;
        worker.pool.sweep(idle_timeout);
    }
}

/// Counts one open client connection while alive, so a shutdown can wait until the last
/// response is written out (not only until the last request was handed back).
struct Open(Arc<AtomicI64>);

impl Open {
    fn new(count: &Arc<AtomicI64>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Open(count.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
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

/// `busy()` is requests in flight plus open client connections: the workers close idle
/// keep-alive connections at shutdown, so both reach zero once the last response is out.
async fn shutdown_on_signal(
    lifecycle: Arc<Lifecycle>,
    busy: impl Fn() -> i64,
    trigger: watch::Sender<bool>,
    grace: Duration,
    asked: Arc<tokio::sync::Notify>,
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
        () = asked.notified() => "POST /shutdown",
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
