//! Transparent interception for real: Linux network namespaces, a veth pair, the real
//! `vireo-proxy iptables` init step and the real proxy binary running as its own uid.
//!
//! Topology (both namespaces made here, deleted on drop; nothing touches the host's network):
//! - `app` namespace: the "pod". The test's client threads enter it and call the Service's
//!   address `10.96.0.10:80` by IP, as an app that knows nothing of the proxy. The init step's
//!   rules redirect that to the proxy on `127.0.0.1:4140`, which runs as uid 2102 (setpriv) so
//!   its own calls to the backends leave the pod.
//! - `svc` namespace: the "cluster". The stable and canary backends listen on addresses of
//!   their own (10.96.0.11, 10.96.0.12, standing in for their Services' ClusterIPs, which
//!   kube-proxy would translate), and a service no route knows on 10.96.0.13. `10.96.0.10` is
//!   nobody's address: only the proxy's route makes it answer, as a ClusterIP does only
//!   through kube-proxy's rules.
//!
//! Needs root (network namespaces, iptables). Outside CI, without root, it says so and passes;
//! in CI (`CI=true`) it fails instead, so it cannot silently stop running there.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{echo_upstream_on, grpc_upstream_on, metric, raw, upstream_on, Upstream};
use vireo_proxy::split::{bucket, Split};

const PROXY_UID: &str = "2102";
const SERVICE: &str = "10.96.0.10:80";

/// Whether this run can make network namespaces; `false` (with a note) lets a developer
/// without root run the suite, `CI=true` turns it into a failure.
fn privileged() -> bool {
    let root = unsafe { libc::geteuid() } == 0;
    let tools = ["ip", "iptables-restore", "setpriv"].iter().all(|t| {
        Command::new("sh")
            .args(["-c", &format!("command -v {t} || test -x /usr/sbin/{t}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if root && tools {
        return true;
    }
    let why = if root {
        "ip, iptables and setpriv are needed (scripts/ensure-deps.sh test installs them)"
    } else {
        "root is needed for network namespaces and iptables"
    };
    assert!(
        std::env::var("CI").is_err(),
        "transparent interception test cannot run: {why}"
    );
    eprintln!("skipped: {why}");
    false
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ip(args: &str) {
    run(Command::new("ip").args(args.split_whitespace()));
}

/// The two namespaces and the veth between them; deleted on drop (with every address and
/// rule in them).
struct Net {
    app: String,
    svc: String,
}

impl Net {
    fn create() -> Net {
        // Tests run in parallel in one process: each gets namespaces of its own.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Interface names are at most 15 bytes: "vt" + pid (≤ 7) + n + side.
        let id = format!("{}{n}", std::process::id());
        let net = Net {
            app: format!("vireo-t{id}-app"),
            svc: format!("vireo-t{id}-svc"),
        };
        let (a, b) = (format!("vt{id}a"), format!("vt{id}b"));
        ip(&format!("netns add {}", net.app));
        ip(&format!("netns add {}", net.svc));
        ip(&format!("link add {a} type veth peer name {b}"));
        ip(&format!("link set {a} netns {}", net.app));
        ip(&format!("link set {b} netns {}", net.svc));
        for (ns, dev, addr) in [
            (&net.app, &a, "10.200.0.2/24"),
            (&net.svc, &b, "10.200.0.1/24"),
        ] {
            ip(&format!("-n {ns} addr add {addr} dev {dev}"));
            ip(&format!("-n {ns} link set {dev} up"));
            ip(&format!("-n {ns} link set lo up"));
        }
        for backend in ["10.96.0.11", "10.96.0.12", "10.96.0.13"] {
            ip(&format!("-n {} addr add {backend}/32 dev {b}", net.svc));
        }
        // As in a pod: everything off-pod goes through the one interface. (The svc namespace
        // does not forward, so TEST-NET-1, the proxy's start-up probe, is dropped there.)
        ip(&format!("-n {} route add default via 10.200.0.1", net.app));
        net
    }

    /// Runs `f` on a thread inside namespace `ns`: the sockets it makes belong there.
    fn inside<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let file = std::fs::File::open(format!("/var/run/netns/{ns}")).unwrap();
                    // setns moves only this thread; it ends with the closure.
                    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
                    f()
                })
                .join()
                .unwrap()
        })
    }

    fn in_app<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        Net::inside(&self.app, f)
    }

    fn listen(&self, addr: &str) -> std::net::TcpListener {
        Net::inside(&self.svc, || std::net::TcpListener::bind(addr).unwrap())
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in [&self.app, &self.svc] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// The proxy inside the app namespace, as uid 2102, from a copy of the binary in a directory
/// that uid can read.
struct PodProxy {
    child: Child,
    dir: PathBuf,
}

impl Drop for PodProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl PodProxy {
    fn start(net: &Net, config: &str) -> PodProxy {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("vireo-intercept-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let bin = dir.join("vireo-proxy");
        std::fs::copy(env!("CARGO_BIN_EXE_vireo-proxy"), &bin).unwrap();
        std::fs::write(dir.join("proxy.yaml"), config).unwrap();
        std::fs::set_permissions(
            dir.join("proxy.yaml"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("proxy.log")).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &net.app, "setpriv"])
            .args([
                &format!("--reuid={PROXY_UID}"),
                &format!("--regid={PROXY_UID}"),
                "--clear-groups",
                "--",
            ])
            .arg(&bin)
            .arg("--config")
            .arg(dir.join("proxy.yaml"))
            // As the injector runs it: the namespace's config file, interception per pod.
            .arg("--transparent")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let p = PodProxy { child, dir };
        let admin: SocketAddr = "127.0.0.1:4191".parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !net
            .in_app(|| {
                raw(
                    admin,
                    b"GET /ready HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
                )
            })
            .is_some_and(|r| r.starts_with("HTTP/1.1 200"))
        {
            assert!(Instant::now() < deadline, "proxy not ready: {}", p.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        p
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("proxy.log")).unwrap_or_default()
    }
}

fn body(resp: &str) -> &str {
    resp.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

fn get(addr: &str, host: &str, path: &str, user: Option<&str>) -> String {
    let user = user.map_or(String::new(), |u| format!("x-user-id: {u}\r\n"));
    let req = format!("GET {path} HTTP/1.1\r\nhost: {host}\r\n{user}connection: close\r\n\r\n");
    raw(addr.parse().unwrap(), req.as_bytes()).unwrap_or_else(|| panic!("{addr}: no connection"))
}

#[test]
fn an_app_calling_a_service_by_ip_is_split_as_the_bucket_function_says() {
    if !privileged() {
        return;
    }
    let net = Net::create();
    // Backends first: the runtime that serves them lives in the test process, but their
    // sockets were made in the svc namespace.
    let stable: Upstream = upstream_on("stable", net.listen("10.96.0.11:80"));
    let canary: Upstream = upstream_on("canary", net.listen("10.96.0.12:80"));
    let other: Upstream = upstream_on("other", net.listen("10.96.0.13:80"));
    let echo: Upstream = echo_upstream_on("echo", net.listen("10.96.0.13:7000"));
    let grpc: Upstream = grpc_upstream_on("grpc", net.listen("10.96.0.13:50051"));

    // The init step, twice: the second run must leave the same rules.
    let bin = env!("CARGO_BIN_EXE_vireo-proxy");
    let init = || {
        run(Command::new("ip")
            .args(["netns", "exec", &net.app, bin, "iptables"])
            .args([
                "--proxy-uid",
                PROXY_UID,
                "--proxy-port",
                "4140",
                "--skip-outbound-ports",
                "9999",
            ]))
    };
    let first = init();
    assert!(
        first.contains("-A OUTPUT -p tcp -j VIREO_OUTPUT"),
        "{first}"
    );
    let second = init();
    assert!(
        !second.contains("-A OUTPUT"),
        "the jump is added once: {second}"
    );
    let saved =
        run(Command::new("ip").args(["netns", "exec", &net.app, "iptables-save", "-t", "nat"]));
    assert_eq!(saved.matches("-j VIREO_OUTPUT").count(), 1, "{saved}");
    assert!(saved.contains("--uid-owner 2102 -j RETURN"), "{saved}");

    let proxy = PodProxy::start(
        &net,
        &format!(
            "listen: 127.0.0.1:4140\nadmin: 127.0.0.1:4191\nthreads: 1\nroutes:\n  - name: web\n    match: {{ destinations: [\"{SERVICE}\"] }}\n    split:\n      key: {{ header: x-user-id }}\n      buckets: 100\n      salt: web-v2\n      backends:\n        - {{ name: canary, version: v2, addrs: [\"10.96.0.12:80\"], weight: 25 }}\n        - {{ name: stable, version: v1, addrs: [\"10.96.0.11:80\"], weight: 75 }}\n"
        ),
    );

    // Every user lands where the bucket function puts them.
    let split = Split::new(100, &[25, 75]).unwrap();
    let names = ["canary", "stable"];
    let users: Vec<String> = (0..200).map(|i| format!("u-{i}")).collect();
    let answers: Vec<String> = net.in_app(|| {
        users
            .iter()
            .map(|u| body(&get(SERVICE, "10.96.0.10", "/", Some(u))).to_string())
            .collect()
    });
    let mut want_canary = 0;
    for (user, got) in users.iter().zip(&answers) {
        let b = bucket(b"web-v2", user.as_bytes(), 100);
        let want = names[split.backend_for_bucket(b)];
        want_canary += usize::from(want == "canary");
        assert_eq!(
            got,
            want,
            "user {user} (bucket {b}); proxy log:\n{}",
            proxy.log()
        );
    }
    assert_eq!(canary.served() as usize, want_canary);
    assert_eq!(stable.served() as usize, 200 - want_canary);

    assert!(
        (30..=70).contains(&want_canary),
        "25 % of 200 users, near enough: {want_canary}"
    );

    // The backend sees the request as the app sent it: by IP.
    let echoed = net.in_app(|| get(SERVICE, "10.96.0.10", "/echo", Some("u-1")));
    assert!(body(&echoed).contains("host: 10.96.0.10\n"), "{echoed}");

    // A service no route names is reached as if there were no proxy, counted as passthrough.
    let passed = net.in_app(|| get("10.96.0.13:80", "10.96.0.13", "/", None));
    assert_eq!(body(&passed), "other", "{passed}");
    assert_eq!(other.served(), 1);

    // Bytes that are not HTTP (a TLS ClientHello's first bytes) are relayed unchanged.
    let hello = b"\x16\x03\x01\x00\x05hello";
    let echoed = net.in_app(|| {
        let mut s =
            TcpStream::connect_timeout(&"10.96.0.13:7000".parse().unwrap(), Duration::from_secs(2))
                .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(hello).unwrap();
        let mut back = [0u8; 10];
        s.read_exact(&mut back).unwrap();
        back
    });
    assert_eq!(&echoed, hello);
    assert_eq!(echo.served(), 1);

    // CONNECT (the app's own forward proxy at the destination) is a tunnel: relayed whole,
    // not refused as a request to this proxy.
    let connect = b"CONNECT api.example:443 HTTP/1.1\r\nhost: api.example:443\r\n\r\n";
    let echoed = net.in_app(|| {
        let mut s =
            TcpStream::connect_timeout(&"10.96.0.13:7000".parse().unwrap(), Duration::from_secs(2))
                .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(connect).unwrap();
        let mut back = vec![0u8; connect.len()];
        s.read_exact(&mut back).unwrap();
        back
    });
    assert_eq!(echoed, connect);
    assert_eq!(echo.served(), 2);

    // A passed-through request keeps its target as the app wrote it: absolute form is what
    // a forward proxy at the destination needs.
    let absolute = net.in_app(|| {
        raw(
            "10.96.0.13:80".parse().unwrap(),
            b"GET http://api.example/target HTTP/1.1\r\nhost: api.example\r\nconnection: close\r\n\r\n",
        )
        .unwrap()
    });
    assert_eq!(body(&absolute), "http://api.example/target", "{absolute}");
    let origin = net.in_app(|| get("10.96.0.13:80", "10.96.0.13", "/target", None));
    assert_eq!(body(&origin), "/target", "{origin}");

    // An h2c call passes through as HTTP/2: the destination gets the protocol the app spoke.
    let h2 = net.in_app(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let client = common::h2c_client();
                let req = hyper::Request::post("http://10.96.0.13:50051/pkg.Svc/Call")
                    .header("content-type", "application/grpc")
                    .body(http_body_util::Full::new(bytes::Bytes::from_static(
                        b"ping",
                    )))
                    .unwrap();
                let resp = client.request(req).await.expect("h2c passthrough");
                let version = resp.headers()["x-upstream-version"]
                    .to_str()
                    .unwrap()
                    .to_string();
                (resp.status().as_u16(), version)
            })
    });
    assert_eq!(
        h2,
        (200, "HTTP/2.0".to_string()),
        "proxy log:\n{}",
        proxy.log()
    );
    assert_eq!(grpc.served(), 1);

    // Explicit mode stays: the app calling the proxy itself is not intercepted (no original
    // destination, no passthrough), and the route's split applies all the same.
    let explicit: Vec<String> = net.in_app(|| {
        users[..20]
            .iter()
            .map(|u| body(&get("127.0.0.1:4140", "web", "/", Some(u))).to_string())
            .collect()
    });
    assert_eq!(
        explicit,
        answers[..20],
        "explicit calls split as intercepted ones"
    );

    let metrics = net.in_app(|| {
        body(
            &raw(
                "127.0.0.1:4191".parse().unwrap(),
                b"GET /metrics HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
            )
            .unwrap(),
        )
        .to_string()
    });
    let canary_total = metric(
        &metrics,
        r#"vireo_requests_total{route="web",backend="canary",version="v2",code="200"}"#,
    );
    let stable_total = metric(
        &metrics,
        r#"vireo_requests_total{route="web",backend="stable",version="v1",code="200"}"#,
    );
    assert_eq!((canary_total + stable_total) as usize, 221, "{metrics}");
    assert_eq!(
        metric(
            &metrics,
            r#"vireo_requests_total{route="_passthrough",backend="original",version="",code="200"}"#
        ),
        4.0,
        "{metrics}"
    );
    drop(proxy);
}

/// The rules exempt the proxy by uid. A proxy started in transparent mode as another uid
/// (here root) would have its own backend calls redirected to itself; it must refuse to start,
/// saying why, instead of looping every connection until file descriptors run out.
#[test]
fn a_proxy_whose_own_calls_would_be_intercepted_refuses_to_start() {
    if !privileged() {
        return;
    }
    let net = Net::create();
    let bin = env!("CARGO_BIN_EXE_vireo-proxy");
    run(Command::new("ip").args(["netns", "exec", &net.app, bin, "iptables"]));
    let dir = std::env::temp_dir().join(format!("vireo-intercept-root-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("proxy.yaml"),
        "listen: 127.0.0.1:4140\nadmin: 127.0.0.1:4191\nthreads: 1\nroutes: []\n",
    )
    .unwrap();
    let mut child = Command::new("ip")
        .args(["netns", "exec", &net.app, bin, "--transparent", "--config"])
        .arg(dir.join("proxy.yaml"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("a transparent proxy running as root started anyway");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("redirected back to the proxy"), "{stderr}");
    assert!(stderr.contains("uid 0"), "{stderr}");
}
