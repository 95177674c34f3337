//! Test harness for end-to-end tests: the real `vireo-proxy` binary, real upstream HTTP servers
//! on loopback, and a real HTTP client. Nothing is mocked.
//!
//! Upstream behaviour by path:
//! - `/slow?ms=N`   — answer after N ms;
//! - `/status/NNN`  — answer with that status;
//! - `/ws`          — `101 Switching Protocols`, then echo bytes back;
//! - `/target`      — the request target as the upstream received it (origin or absolute form);
//! - `/echo`        — the request's header fields, one `name: value` line each, and the body
//!   length, so a test sees exactly what reached the backend;
//! - `/hop`         — a response carrying hop-by-hop fields (`Connection: x-up-hop`,
//!   `x-up-hop`, `Keep-Alive`) beside an end-to-end `x-end`;
//! - anything else  — 200 with the upstream's name as body.
//!
//! Every upstream counts the requests it served, its open connections and their peak.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A free loopback port (bound, then released: good enough on a test machine).
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Upstream {
    pub name: String,
    pub addr: SocketAddr,
    pub requests: Arc<AtomicU64>,
    pub open_connections: Arc<AtomicI64>,
    pub peak: Arc<AtomicI64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    pub fn served(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
    pub fn connections(&self) -> i64 {
        self.open_connections.load(Ordering::SeqCst)
    }
    /// The most connections that were open at once.
    pub fn peak_connections(&self) -> i64 {
        self.peak.load(Ordering::SeqCst)
    }
}

/// Upstreams run on their own runtime, so a test may block its own thread (waiting for the
/// proxy, sleeping between checks) without stalling the servers it talks to.
fn upstream_runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}

/// Listens on `addr` (a free loopback port when `None`) and runs `conn(stream, name, request
/// counter)` for every connection, counting open connections. Connections belong to the
/// listener's task: dropping the [`Upstream`] closes them too, as a crashed process would.
fn spawn_upstream<F, Fut>(name: &str, addr: Option<SocketAddr>, conn: F) -> Upstream
where
    F: Fn(tokio::net::TcpStream, Arc<str>, Arc<AtomicU64>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = StdListener::bind(addr.unwrap_or(([127, 0, 0, 1], 0).into())).unwrap();
    spawn_upstream_on(name, listener, conn)
}

/// [`spawn_upstream`] on a socket the caller bound (in another network namespace, say).
fn spawn_upstream_on<F, Fut>(name: &str, std_listener: StdListener, conn: F) -> Upstream
where
    F: Fn(tokio::net::TcpStream, Arc<str>, Arc<AtomicU64>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    std_listener.set_nonblocking(true).unwrap();
    let addr = std_listener.local_addr().unwrap();
    let requests = Arc::new(AtomicU64::new(0));
    let open = Arc::new(AtomicI64::new(0));
    let peak = Arc::new(AtomicI64::new(0));
    let (n, r, o, pk): (Arc<str>, _, _, _) =
        (name.into(), requests.clone(), open.clone(), peak.clone());
    let task = upstream_runtime().spawn(async move {
        let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            while connections.try_join_next().is_some() {}
            let now_open = o.fetch_add(1, Ordering::SeqCst) + 1;
            pk.fetch_max(now_open, Ordering::SeqCst);
            let (served, o) = (conn(stream, n.clone(), r.clone()), o.clone());
            connections.spawn(async move {
                served.await;
                o.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    Upstream {
        name: name.to_string(),
        addr,
        requests,
        open_connections: open,
        peak,
        task,
    }
}

/// Starts an HTTP/1.1 upstream (with upgrades) on a free loopback port.
pub fn upstream(name: &str) -> Upstream {
    upstream_on(name, StdListener::bind("127.0.0.1:0").unwrap())
}

/// An HTTP/1.1 upstream, as [`upstream`], on a socket the caller bound.
pub fn upstream_on(name: &str, listener: StdListener) -> Upstream {
    spawn_upstream_on(name, listener, |stream, n, r| async move {
        let svc = service_fn(move |req| {
            let (n, r) = (n.clone(), r.clone());
            async move { Ok::<_, std::convert::Infallible>(serve(&n, &r, req).await) }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), svc)
            .with_upgrades()
            .await;
    })
}

/// A TCP upstream that sends back whatever it receives (a stand-in for any non-HTTP
/// protocol), counting connections as requests.
pub fn echo_upstream_on(name: &str, listener: StdListener) -> Upstream {
    spawn_upstream_on(name, listener, |mut stream, _, r| async move {
        r.fetch_add(1, Ordering::SeqCst);
        let (mut rd, mut wr) = stream.split();
        let _ = tokio::io::copy(&mut rd, &mut wr).await;
    })
}

async fn serve(name: &str, count: &AtomicU64, mut req: Request<Incoming>) -> Response<Full<Bytes>> {
    count.fetch_add(1, Ordering::SeqCst);
    let path = req.uri().path().to_string();
    if path == "/slow" {
        let ms: u64 = req
            .uri()
            .query()
            .and_then(|q| q.strip_prefix("ms="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(code) = path.strip_prefix("/status/") {
        let status = StatusCode::from_u16(code.parse().unwrap_or(500)).unwrap();
        return Response::builder()
            .status(status)
            .header("x-backend", name)
            .body(Full::new(Bytes::from(name.to_string())))
            .unwrap();
    }
    if path == "/target" {
        return Response::builder()
            .header("x-backend", name)
            .body(Full::new(Bytes::from(req.uri().to_string())))
            .unwrap();
    }
    if path == "/echo" {
        let mut text = String::new();
        for (k, v) in req.headers() {
            text.push_str(&format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())));
        }
        let body = req.into_body().collect().await.map(|b| b.to_bytes());
        match body {
            Ok(b) => text.push_str(&format!("body: {}\n", b.len())),
            Err(e) => text.push_str(&format!("body error: {e}\n")),
        }
        return Response::builder()
            .header("x-backend", name)
            .body(Full::new(Bytes::from(text)))
            .unwrap();
    }
    if path == "/hop" {
        return Response::builder()
            .header("connection", "x-up-hop")
            .header("x-up-hop", "1")
            .header("keep-alive", "timeout=5, max=100")
            .header("proxy-connection", "keep-alive")
            .header("x-end", "2")
            .header("x-backend", name)
            .body(Full::new(Bytes::from(name.to_string())))
            .unwrap();
    }
    if path == "/ws" {
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = upgrade.await {
                let mut io = TokioIo::new(up);
                let mut buf = [0u8; 1024];
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        });
        return Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
            .header("x-backend", name)
            .body(Full::new(Bytes::new()))
            .unwrap();
    }
    // Drain the request body (chunked uploads) and echo its length.
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let text = if body.is_empty() {
        name.to_string()
    } else {
        format!("{name} {}", body.len())
    };
    Response::builder()
        .header("x-backend", name)
        .body(Full::new(Bytes::from(text)))
        .unwrap()
}

/// A running `vireo-proxy` process, killed on drop.
pub struct Proxy {
    pub child: Child,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub config_path: PathBuf,
    pub dir: PathBuf,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A config with `listen`/`admin` on free ports; `routes` is YAML for the `routes:` key.
/// Two worker threads unless `extra` sets `threads:` itself.
pub fn config_text(listen: SocketAddr, admin: SocketAddr, extra: &str, routes: &str) -> String {
    let threads = if extra.contains("threads:") {
        ""
    } else {
        "threads: 2\n"
    };
    format!("listen: {listen}\nadmin: {admin}\n{threads}shutdown_grace: 10s\n{extra}\nroutes:\n{routes}")
}

/// A canary/stable route on `x-user-id`, canary listed first.
pub fn canary_route(
    name: &str,
    canary: &Upstream,
    stable: &Upstream,
    canary_weight: u32,
) -> String {
    format!(
        "  - name: {name}\n    split:\n      key: {{ header: x-user-id }}\n      salt: {name}-v2\n      backends:\n        - {{ name: canary, version: v2, addrs: [\"{}\"], weight: {canary_weight} }}\n        - {{ name: stable, version: v1, addrs: [\"{}\"], weight: {} }}\n",
        canary.addr,
        stable.addr,
        100 - canary_weight
    )
}

impl Proxy {
    /// Starts the binary with `routes` (and optional top-level `extra` settings) and waits for
    /// `/ready`.
    pub fn start(extra: &str, routes: &str) -> Proxy {
        Proxy::start_with(extra, routes, &[])
    }

    /// Like [`Proxy::start`], with extra command-line arguments.
    pub fn start_with(extra: &str, routes: &str, args: &[&str]) -> Proxy {
        let dir =
            std::env::temp_dir().join(format!("vireo-e2e-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).unwrap();
        let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let config_path = dir.join("proxy.yaml");
        std::fs::write(&config_path, config_text(listen, admin, extra, routes)).unwrap();
        let log = std::fs::File::create(dir.join("proxy.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_vireo-proxy"))
            .arg("--config")
            .arg(&config_path)
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut p = Proxy {
            child,
            listen,
            admin,
            config_path,
            dir,
        };
        p.wait_ready();
        p
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("proxy.log")).unwrap_or_default()
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("proxy exited early ({status}):\n{}", self.log());
            }
            if raw_get(self.admin, "/ready").map(|r| r.starts_with("HTTP/1.1 200")) == Some(true) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("proxy not ready after 20 s:\n{}", self.log());
    }

    /// Rewrites the config file and waits until `/config` reports `version`.
    pub fn reload(&self, extra: &str, routes: &str, version: u64) {
        write_atomically(
            &self.config_path,
            &config_text(self.listen, self.admin, extra, routes),
        );
        self.wait_version(version);
    }

    pub fn wait_version(&self, version: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.config_version() == version {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "config version {} never reached {version}:\n{}",
            self.config_version(),
            self.log()
        );
    }

    pub fn config_version(&self) -> u64 {
        let body = admin_body(self.admin, "/config");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["version"].as_u64().unwrap()
    }

    pub fn metrics(&self) -> String {
        admin_body(self.admin, "/metrics")
    }

    /// Waits (at most 5 s) until `series` equals `want`, then asserts it. The proxy records a
    /// request when the response body ends, just as or after the client has it, so counts may
    /// trail by a moment.
    pub fn expect_metric(&self, series: &str, want: f64) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut text = self.metrics();
        while metric(&text, series) != want && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            text = self.metrics();
        }
        assert_eq!(metric(&text, series), want, "{series}\n{text}");
    }

    pub fn slo(&self, window: &str) -> serde_json::Value {
        serde_json::from_str(&admin_body(self.admin, &format!("/slo?window={window}"))).unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.listen)
    }
}

/// Replace a file the way editors and ConfigMaps do: write aside, rename over.
pub fn write_atomically(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A metric's value from OpenMetrics text, 0 when the series does not exist.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// One raw HTTP/1.1 exchange over a fresh connection: returns the whole response text.
pub fn raw(addr: SocketAddr, request: &[u8]) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(request).ok()?;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    Some(String::from_utf8_lossy(&out).into_owned())
}

pub fn raw_get(addr: SocketAddr, path: &str) -> Option<String> {
    raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n").as_bytes(),
    )
}

pub fn admin_body(addr: SocketAddr, path: &str) -> String {
    let resp = raw_get(addr, path).expect("admin reachable");
    assert!(resp.starts_with("HTTP/1.1 200"), "{path}: {resp}");
    resp.split_once("\r\n\r\n").unwrap().1.to_string()
}

pub type Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

/// A keep-alive HTTP/1.1 client.
pub fn client() -> Client {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http()
}

/// An HTTP/2 prior-knowledge (h2c) client.
pub fn h2c_client() -> Client {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

pub struct Reply {
    pub status: u16,
    pub backend: String,
    pub body: String,
}

/// GET `url` with optional `x-user-id`.
pub async fn get(client: &Client, url: &str, user: Option<&str>) -> Result<Reply, String> {
    let mut req = Request::get(url);
    if let Some(u) = user {
        req = req.header("x-user-id", u);
    }
    send(client, req.body(Full::new(Bytes::new())).unwrap()).await
}

pub async fn send(client: &Client, req: Request<Full<Bytes>>) -> Result<Reply, String> {
    let resp = tokio::time::timeout(Duration::from_secs(20), client.request(req))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| format!("{e:?}"))?;
    let status = resp.status().as_u16();
    let backend = resp
        .headers()
        .get("x-backend")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{e:?}"))?
        .to_bytes();
    Ok(Reply {
        status,
        backend,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// An h2c (HTTP/2 prior knowledge) upstream that answers like a gRPC server: it echoes the
/// request body, says which HTTP version it saw in `x-upstream-version`, and ends the response
/// with `grpc-status: 0` trailers.
pub fn grpc_upstream(name: &str) -> Upstream {
    grpc_upstream_on(name, StdListener::bind("127.0.0.1:0").unwrap())
}

/// [`grpc_upstream`] on a socket the caller bound.
pub fn grpc_upstream_on(name: &str, listener: StdListener) -> Upstream {
    spawn_upstream_on(name, listener, |stream, _, r| async move {
        let svc = service_fn(move |req: Request<Incoming>| {
            let r = r.clone();
            async move {
                r.fetch_add(1, Ordering::SeqCst);
                let version = format!("{:?}", req.version());
                let body = req
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let mut trailers = hyper::HeaderMap::new();
                trailers.insert("grpc-status", "0".parse().unwrap());
                let body = Full::new(body)
                    .with_trailers(async move { Some(Ok(trailers)) })
                    .boxed();
                Ok::<_, std::convert::Infallible>(
                    Response::builder()
                        .header("content-type", "application/grpc")
                        .header("x-upstream-version", version)
                        .body(body)
                        .unwrap(),
                )
            }
        });
        let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .serve_connection(TokioIo::new(stream), svc)
            .await;
    })
}

/// A stand-in control plane speaking the proxy watch protocol with the proxy crate's own wire
/// types (until `vireo serve` exists to test against): it serves the table given to
/// [`ControlPlane::publish`] through the long poll and records every status report.
pub struct ControlPlane {
    pub addr: SocketAddr,
    table: Arc<std::sync::Mutex<Option<vireo_proxy::watch::ConfigUpdate>>>,
    changed: Arc<tokio::sync::Notify>,
    pub reports: Arc<std::sync::Mutex<Vec<vireo_proxy::watch::StatusReport>>>,
    _server: Upstream,
}

impl ControlPlane {
    /// Starts on `addr` (a free port when `None`); dropping it is a crash: listener and
    /// connections close.
    pub fn start(addr: Option<SocketAddr>) -> ControlPlane {
        let table = Arc::new(std::sync::Mutex::new(None));
        let changed = Arc::new(tokio::sync::Notify::new());
        let reports = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (t, c, r) = (table.clone(), changed.clone(), reports.clone());
        let server = spawn_upstream("control", addr, move |stream, _, _| {
            let (t, c, r) = (t.clone(), c.clone(), r.clone());
            async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let (t, c, r) = (t.clone(), c.clone(), r.clone());
                    async move { Ok::<_, std::convert::Infallible>(control_answer(req, t, c, r).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            }
        });
        ControlPlane {
            addr: server.addr,
            table,
            changed,
            reports,
            _server: server,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn publish(&self, version: u64, routes_yaml: &str) {
        let config = vireo_proxy::config::Config::parse(&config_text(
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
            "",
            routes_yaml,
        ))
        .unwrap();
        self.publish_raw(vireo_proxy::watch::ConfigUpdate {
            version,
            routes: config.routes,
            slo_windows_s: Vec::new(),
        });
    }

    pub fn publish_raw(&self, update: vireo_proxy::watch::ConfigUpdate) {
        *self.table.lock().unwrap() = Some(update);
        self.changed.notify_waiters();
    }

    /// Waits (at most 5 s) for a status report that satisfies `cond`.
    pub fn wait_report(
        &self,
        what: &str,
        cond: impl Fn(&vireo_proxy::watch::StatusReport) -> bool,
    ) -> vireo_proxy::watch::StatusReport {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Some(r) = self.reports.lock().unwrap().iter().rev().find(|r| cond(r)) {
                return r.clone();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("no status report with {what}");
    }
}

async fn control_answer(
    req: Request<Incoming>,
    table: Arc<std::sync::Mutex<Option<vireo_proxy::watch::ConfigUpdate>>>,
    changed: Arc<tokio::sync::Notify>,
    reports: Arc<std::sync::Mutex<Vec<vireo_proxy::watch::StatusReport>>>,
) -> Response<Full<Bytes>> {
    let json = |status: StatusCode, body: Vec<u8>| {
        Response::builder()
            .status(status)
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    };
    match req.uri().path() {
        "/api/v1/proxy/config" => {
            let since: u64 = req
                .uri()
                .query()
                .and_then(|q| q.split('&').find_map(|p| p.strip_prefix("since=")))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            // Long poll, held 2 s here (the spec allows up to 30 s).
            let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
            loop {
                let wake = changed.notified();
                if let Some(t) = table.lock().unwrap().clone().filter(|t| t.version > since) {
                    return json(StatusCode::OK, serde_json::to_vec(&t).unwrap());
                }
                if tokio::time::timeout_at(deadline, wake).await.is_err() {
                    return json(StatusCode::NOT_MODIFIED, Vec::new());
                }
            }
        }
        "/api/v1/proxy/status" => {
            let body = req.into_body().collect().await.unwrap().to_bytes();
            reports
                .lock()
                .unwrap()
                .push(serde_json::from_slice(&body).unwrap());
            json(StatusCode::OK, b"{}".to_vec())
        }
        _ => json(StatusCode::NOT_FOUND, Vec::new()),
    }
}

/// An upstream that promises a 100-byte body, sends 10 bytes of it and hangs up: a backend
/// crashing mid-response.
pub fn truncating_upstream(name: &str) -> Upstream {
    spawn_upstream(name, None, |mut stream, _, r| async move {
        let mut buf = [0u8; 4096];
        let _ = stream.read(&mut buf).await; // the request head
        r.fetch_add(1, Ordering::SeqCst);
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789")
            .await;
        let _ = stream.shutdown().await;
    })
}

/// An upstream that answers one request per connection and then closes it without saying so
/// (no `Connection: close`): the race of a backend whose idle timeout fires just as the proxy
/// reuses the connection.
pub fn closing_upstream(name: &str) -> Upstream {
    spawn_upstream(name, None, |mut stream, n, r| async move {
        if read_head(&mut stream, &mut Vec::new()).await.is_none() {
            return;
        }
        r.fetch_add(1, Ordering::SeqCst);
        let body = n.as_bytes();
        let resp = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nx-backend: {n}\r\n\r\n",
            body.len()
        );
        let _ = stream.write_all(resp.as_bytes()).await;
        let _ = stream.write_all(body).await;
        let _ = stream.shutdown().await;
    })
}

/// Client loops that send keyed GETs to `url` (user `u-LOOP-N`) until `stop` is set or
/// `limit` passes (bounded in count too). [`finish_load`] collects what they saw.
pub fn spawn_load(
    url: &str,
    loops: usize,
    stop: &Arc<std::sync::atomic::AtomicBool>,
    limit: Duration,
) -> Vec<tokio::task::JoinHandle<(u64, Vec<String>)>> {
    (0..loops)
        .map(|w| {
            let (url, stop) = (url.to_string(), stop.clone());
            tokio::spawn(async move {
                let c = client();
                let (mut ok, mut failed) = (0u64, Vec::new());
                let deadline = Instant::now() + limit;
                for i in 0..100_000u64 {
                    if stop.load(Ordering::SeqCst) || Instant::now() > deadline {
                        break;
                    }
                    match get(&c, &url, Some(&format!("u-{w}-{i}"))).await {
                        Ok(r) if r.status == 200 => ok += 1,
                        Ok(r) => failed.push(format!("status {}", r.status)),
                        Err(e) => failed.push(e),
                    }
                }
                (ok, failed)
            })
        })
        .collect()
}

/// Stops the loops of [`spawn_load`] and returns (requests that got 200, failures).
pub async fn finish_load(
    stop: &Arc<std::sync::atomic::AtomicBool>,
    loops: Vec<tokio::task::JoinHandle<(u64, Vec<String>)>>,
) -> (u64, Vec<String>) {
    stop.store(true, Ordering::SeqCst);
    let (mut total, mut failures) = (0, Vec::new());
    for l in loops {
        let (ok, failed) = l.await.unwrap();
        total += ok;
        failures.extend(failed);
    }
    (total, failures)
}

/// A keep-alive HTTP/1.1 upstream that answers `POST /early` with 413 at once, before reading
/// the body (then reads and discards it, as a server that keeps the connection must), and
/// anything else with 200. One request at a time per connection.
pub fn early_answering_upstream(name: &str) -> Upstream {
    spawn_upstream(name, None, |mut stream, _, r| async move {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let Some(head) = read_head(&mut stream, &mut buf).await else {
                return;
            };
            r.fetch_add(1, Ordering::SeqCst);
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            let early = head.starts_with("post /early");
            if early {
                let _ = stream
                    .write_all(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\n\r\n")
                    .await;
            }
            while buf.len() < length {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(k) => buf.extend_from_slice(&chunk[..k]),
                }
            }
            buf.drain(..length);
            if !early {
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
            }
        }
    })
}

/// Reads one request head from `stream` (bytes already in `buf` first), lower-cased; leaves
/// what follows it in `buf`. `None` when the peer closes first.
async fn read_head(stream: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    buf.drain(..end);
    Some(head)
}
