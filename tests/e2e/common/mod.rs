//! End-to-end harness: the real `vireo` and `vireo-proxy` binaries as processes, real backends
//! (the demo's, on a runtime of their own), real HTTP on loopback. Tests block; every wait is
//! bounded.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use serde_json::Value;
use vireo_testkit::{spawn_backend, Backend};

/// A binary of the workspace, from the target dir this test runs in
/// (`target/<profile>/deps/<test>` → `target/<profile>/<name>`): the tests run the real
/// `vireo` and `vireo-proxy`, as a user would. `scripts/test.sh` builds them first.
fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps/");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is missing: build the binaries first (`cargo build --workspace --bins`; scripts/test.sh does)",
        p.display()
    );
    p
}

pub fn vireo_bin() -> PathBuf {
    workspace_bin("vireo")
}

pub fn proxy_bin() -> PathBuf {
    workspace_bin("vireo-proxy")
}

pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}

/// A backend answering 200 with `x-version: version`.
pub fn backend(version: &'static str) -> Backend {
    let _rt = runtime().enter();
    spawn_backend(TcpListener::bind("127.0.0.1:0").unwrap(), version, false).unwrap()
}

pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    pub fn version(&self) -> Option<&str> {
        self.headers.get("x-version")?.to_str().ok()
    }
}

pub fn http(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<Reply, String> {
    static CLIENT: std::sync::OnceLock<Client<HttpConnector, Full<Bytes>>> =
        std::sync::OnceLock::new();
    let client = CLIENT.get_or_init(|| {
        Client::builder(hyper_util::rt::TokioExecutor::new()).build(HttpConnector::new())
    });
    let mut req = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::from(body.to_string()))).unwrap();
    runtime().block_on(async {
        let exchange = async {
            let resp = client.request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok(Reply {
                status,
                headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            })
        };
        tokio::time::timeout(Duration::from_secs(40), exchange)
            .await
            .map_err(|_| format!("{url}: no answer in 40 s"))?
    })
}

/// Polls `check` every 50 ms until it returns `Some`, or panics after `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `vireo serve` as a child process. Its helpers call the API with the admin token the
/// first start wrote; [`Server::start_with`] also makes a proxy-role token for the test's
/// proxies (`proxy.token` beside the data dir, which [`Proxy::start`] passes on).
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    /// `Bearer <admin token>`.
    pub admin: String,
}

impl Server {
    pub fn start(addr: SocketAddr, data_dir: &Path) -> Server {
        Server::start_with(addr, data_dir, &[])
    }

    /// The process only: nothing waited for, no token read (the TLS tests speak https).
    pub fn spawn(addr: SocketAddr, data_dir: &Path, args: &[&str]) -> Server {
        let child = Command::new(vireo_bin())
            .args(["serve", "--listen", &addr.to_string(), "--data-dir"])
            .arg(data_dir)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        Server {
            child,
            addr,
            data_dir: data_dir.to_path_buf(),
            admin: String::new(),
        }
    }

    /// `vireo serve` with more arguments (`--config FILE`).
    pub fn start_with(addr: SocketAddr, data_dir: &Path, args: &[&str]) -> Server {
        let mut s = Server::spawn(addr, data_dir, args);
        wait_for("vireo serve /healthz", Duration::from_secs(20), || {
            http("GET", &s.url("/healthz"), &[], "")
                .ok()
                .filter(|r| r.status == 200)
        });
        let token = std::fs::read_to_string(s.token_file()).expect("admin.token");
        s.admin = format!("Bearer {}", token.trim());
        let proxy_token = data_dir.parent().unwrap().join("proxy.token");
        if !proxy_token.exists() {
            let t = s.create_token("e2e-proxy", "proxy");
            std::fs::write(&proxy_token, t).unwrap();
        }
        s
    }

    /// `DATA_DIR/admin.token`.
    pub fn token_file(&self) -> PathBuf {
        self.data_dir.join("admin.token")
    }

    /// A new token with `role` (as the admin); its secret.
    pub fn create_token(&self, name: &str, role: &str) -> String {
        let r = self.post(
            "/api/v1/tokens",
            &format!(r#"{{"name":"{name}","role":"{role}"}}"#),
        );
        assert_eq!(r.status, 201, "{}", r.body);
        r.json()["token"].as_str().unwrap().to_string()
    }

    /// A request with `token` (a secret, or "" for none) and more headers.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Reply {
        let auth = format!("Bearer {token}");
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if !token.is_empty() {
            all.push(("authorization", &auth));
        }
        http(method, &self.url(path), &all, body).unwrap()
    }

    /// Runs `vireo ARGS… --server URL` with the admin token.
    pub fn vireo(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let out = Command::new(vireo_bin())
            .args(args)
            .args(["--server", &self.url("")])
            .env("VIREO_TOKEN_FILE", self.token_file())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// POST as the admin.
    pub fn post(&self, path: &str, body: &str) -> Reply {
        http(
            "POST",
            &self.url(path),
            &[("authorization", &self.admin)],
            body,
        )
        .unwrap()
    }

    /// GET as the admin.
    pub fn get(&self, path: &str) -> Reply {
        http(
            "GET",
            &self.url(path),
            &[("authorization", &self.admin)],
            "",
        )
        .unwrap()
    }

    pub fn status(&self, name: &str) -> Value {
        let r = self.get(&format!("/api/v1/rollouts/{name}"));
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["status"].clone()
    }

    pub fn timeline(&self, name: &str) -> Vec<Value> {
        self.get(&format!("/api/v1/rollouts/{name}/timeline"))
            .json()["entries"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// Waits until the rollout's status satisfies `check`.
    pub fn wait_status(&self, name: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let s = self.status(name);
            if check(&s) {
                return s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "timed out after 30 s waiting for {what}; last status: {s:#}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `vireo-proxy --control` child process.
pub struct Proxy {
    pub child: Child,
    pub id: String,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    config: PathBuf,
    control: String,
}

impl Proxy {
    pub fn start(dir: &Path, id: &str, control: &str) -> Proxy {
        let listen = free_addr();
        let admin = free_addr();
        let config = dir.join(format!("{}.yaml", id.replace('/', "-")));
        std::fs::write(
            &config,
            format!("listen: {listen}\nadmin: {admin}\nshutdown_grace: 1s\nroutes: []\n"),
        )
        .unwrap();
        let child = spawn_proxy(&config, control, id);
        let p = Proxy {
            child,
            id: id.to_string(),
            listen,
            admin,
            config,
            control: control.to_string(),
        };
        p.wait_ready();
        p
    }

    fn wait_ready(&self) {
        let admin = self.admin;
        wait_for("vireo-proxy /ready", Duration::from_secs(20), || {
            http("GET", &format!("http://{admin}/ready"), &[], "")
                .ok()
                .filter(|r| r.status == 200)
        });
    }

    /// (Re)starts the process with the same id and ports.
    pub fn restart(&mut self) {
        self.child = spawn_proxy(&self.config, &self.control, &self.id);
        self.wait_ready();
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// The version of the table this proxy serves (from its admin `/config`).
    pub fn table_version(&self) -> u64 {
        http("GET", &format!("http://{}/config", self.admin), &[], "")
            .ok()
            .and_then(|r| r.json()["version"].as_u64())
            .unwrap_or(0)
    }

    /// Sends `n` requests as users `u-0..n` and returns how many each version answered.
    pub fn split(&self, n: usize) -> std::collections::BTreeMap<String, usize> {
        let mut out = std::collections::BTreeMap::new();
        for i in 0..n {
            let user = format!("u-{i}");
            let r = http(
                "GET",
                &format!("http://{}/", self.listen),
                &[("x-user-id", &user)],
                "",
            )
            .unwrap();
            let v = if r.status == 200 {
                r.version().unwrap_or("?").to_string()
            } else {
                format!("HTTP {}", r.status)
            };
            *out.entry(v).or_default() += 1;
        }
        out
    }
}

/// The proxy shows the control plane the `proxy.token` its test's [`Server`] wrote, when
/// there is one beside its config.
fn spawn_proxy(config: &Path, control: &str, id: &str) -> Child {
    let token = config.parent().unwrap().join("proxy.token");
    let mut cmd = Command::new(proxy_bin());
    if token.exists() {
        cmd.arg("--control-token-file").arg(&token);
    }
    cmd.arg("--config")
        .arg(config)
        .args(["--control", control, "--proxy-id", id])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub const TEMPLATE: &str = "apiVersion: vireo.dev/v1alpha1
kind: AnalysisTemplate
metadata: { name: canary-slo }
spec:
  args: [ { name: route }, { name: backend, value: canary } ]
  metrics:
    - name: success-rate
      successCondition: result >= 0.99
      provider: { proxy: { metric: success-rate, window: 10s } }
";

pub fn rollout(name: &str, stable: SocketAddr, canary: SocketAddr, steps: &str) -> String {
    vireo_demo::rollout_yaml(name, stable, canary, steps)
}

/// `vireo verify FILE` with both keys pinned from a data dir's `keys/`, as an auditor runs it.
pub fn verify_pinned(file: &Path, keys: &Path) -> (Option<i32>, String, String) {
    vireo(&[
        "verify",
        file.to_str().unwrap(),
        "--key",
        keys.join("signing.pub").to_str().unwrap(),
        "--log-key",
        keys.join("log.pub").to_str().unwrap(),
    ])
}

/// Runs `vireo ARGS…`: (exit code, stdout, stderr).
pub fn vireo(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(vireo_bin()).args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "vireo-e2e-{name}-{}-{}",
        std::process::id(),
        vireo_core::clock::now_ms()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A real Prometheus (Debian's binary) scraping `target` every second with the shipped rules.
pub struct Prometheus {
    pub child: Child,
    pub url: String,
}

impl Prometheus {
    pub fn start(dir: &Path, target: SocketAddr) -> Prometheus {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(
            dir.join("rules.yml"),
            include_str!("../../../deploy/prometheus/rules.yml"),
        )
        .unwrap();
        std::fs::write(
            dir.join("prometheus.yml"),
            format!(
                "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\nrule_files: [rules.yml]\nscrape_configs:\n  - job_name: vireo-proxy\n    static_configs: [ {{ targets: [\"{target}\"] }} ]\n"
            ),
        )
        .unwrap();
        let addr = free_addr();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus on PATH (scripts/ensure-deps.sh test installs it)");
        let p = Prometheus {
            child,
            url: format!("http://{addr}"),
        };
        // Ready is not enough: targets are taken from discovery a few seconds later.
        wait_for(
            "prometheus scraping the proxy",
            Duration::from_secs(30),
            || {
                http("GET", &format!("{}/api/v1/targets", p.url), &[], "")
                    .ok()
                    .filter(|r| r.status == 200 && r.body.contains("\"health\":\"up\""))
            },
        );
        p
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends requests as users `u-0..` through the proxy from a thread until the returned flag is
/// set (bounded: at most 10 minutes).
pub fn traffic(proxy: SocketAddr) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        let start = Instant::now();
        let mut i = 0u64;
        while !flag.load(std::sync::atomic::Ordering::Relaxed)
            && start.elapsed() < Duration::from_secs(600)
        {
            let user = format!("u-{}", i % 1000);
            let _ = http(
                "GET",
                &format!("http://{proxy}/"),
                &[("x-user-id", &user)],
                "",
            );
            i += 1;
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    stop
}

/// The tests' Python (target/pyenv, made by `scripts/ensure-deps.sh test`).
pub fn python() -> PathBuf {
    let p = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/pyenv/bin/python"
    ));
    assert!(
        p.exists(),
        "{} is missing: run scripts/ensure-deps.sh test (it installs the OpenFeature SDK and jsonschema)",
        p.display()
    );
    p
}

pub fn python_script(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/python")).join(name)
}

/// A CloudEvents sink: a plain HTTP/1.1 server on `addr` that records the `(source, id)` of
/// every event of every batch it is sent, answering 200 (one request per connection).
pub struct Sink {
    pub seen: std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<(String, String)>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sink {
    pub fn start(
        addr: SocketAddr,
        seen: std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<(String, String)>>>,
    ) -> Sink {
        use std::io::{BufRead, BufReader, Read, Write};
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind(addr).unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (flag, store) = (stop.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let Ok((stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                stream.set_nonblocking(false).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    let l = line.trim_end().to_ascii_lowercase();
                    if l.is_empty() {
                        break;
                    }
                    if let Some(v) = l.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                if let Ok(Value::Array(events)) = serde_json::from_slice(&body) {
                    let mut s = store.lock().unwrap();
                    for e in events {
                        s.insert((
                            e["source"].as_str().unwrap_or_default().to_string(),
                            e["id"].as_str().unwrap_or_default().to_string(),
                        ));
                    }
                }
                let mut w = stream;
                let _ = w.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
            }
        });
        Sink {
            seen,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
