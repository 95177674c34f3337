//! End-to-end tests of the `vireo-proxy` binary against real upstreams on loopback.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use hyper::Request;
use vireo_proxy::split::bucket;

/// Users whose bucket (salt `"{route}-v2"`, 100 buckets) is below `weight`, i.e. the canary
/// cohort at that weight, and users outside it.
fn cohorts(route: &str, weight: u32, n: usize) -> (Vec<String>, Vec<String>) {
    let salt = format!("{route}-v2");
    let (mut inside, mut outside) = (Vec::new(), Vec::new());
    for i in 0.. {
        let u = format!("user-{i}");
        if bucket(salt.as_bytes(), u.as_bytes(), 100) < weight {
            if inside.len() < n {
                inside.push(u);
            }
        } else if outside.len() < n {
            outside.push(u);
        }
        if inside.len() == n && outside.len() == n {
            break;
        }
    }
    (inside, outside)
}

fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_stick_to_the_backend_their_bucket_names() {
    let (canary, stable) = (upstream("canary"), upstream("stable"));
    let proxy = Proxy::start("", &canary_route("checkout", &canary, &stable, 25));
    let c = client();
    let mut seen = [0usize; 2];
    for i in 0..300 {
        let user = format!("u-{i}");
        let in_canary = bucket(b"checkout-v2", user.as_bytes(), 100) < 25;
        let want = if in_canary { "canary" } else { "stable" };
        for _ in 0..3 {
            let r = get(&c, &proxy.url("/"), Some(&user)).await.unwrap();
            assert_eq!((r.status, r.backend.as_str()), (200, want), "{user}");
        }
        seen[usize::from(in_canary)] += 1;
    }
    assert!(
        seen[0] > 0 && seen[1] > 0,
        "both cohorts exercised: {seen:?}"
    );
    assert_eq!(canary.served() as usize, seen[1] * 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_a_key_are_split_by_weight() {
    let (canary, stable) = (upstream("canary"), upstream("stable"));
    let routes = format!(
        "  - name: web\n    split:\n      backends:\n        - {{ name: canary, addrs: [\"{}\"], weight: 20 }}\n        - {{ name: stable, addrs: [\"{}\"], weight: 80 }}\n",
        canary.addr, stable.addr
    );
    let proxy = Proxy::start("", &routes);
    let c = client();
    for _ in 0..1000 {
        assert_eq!(get(&c, &proxy.url("/"), None).await.unwrap().status, 200);
    }
    // 1000 draws at p = 0.2: sd ≈ 12.6, so ±60 is beyond 4.5 sd.
    let n = canary.served() as i64;
    assert!((n - 200).abs() < 60, "canary got {n} of 1000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_under_continuous_traffic_fails_no_request() {
    let (canary, stable) = (upstream("canary"), upstream("stable"));
    let proxy = Proxy::start("", &canary_route("checkout", &canary, &stable, 5));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loops = spawn_load(&proxy.url("/"), 4, &stop, Duration::from_secs(30));
    for (version, weight) in (2..).zip([25, 50, 100, 0, 50, 5]) {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let routes = canary_route("checkout", &canary, &stable, weight);
        tokio::task::block_in_place(|| proxy.reload("", &routes, version));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (total, failures) = finish_load(&stop, loops).await;
    assert!(
        failures.is_empty(),
        "{} failed of {}: {:?}",
        failures.len(),
        total,
        &failures[..failures.len().min(5)]
    );
    assert!(total > 100, "only {total} requests ran");
    let m = proxy.metrics();
    assert_eq!(
        metric(&m, r#"vireo_config_reloads_total{result="ok"}"#),
        6.0
    );
    assert_eq!(metric(&m, "vireo_config_version"), 7.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_lets_in_flight_requests_finish_and_sends_nothing_new() {
    let (canary, stable) = (upstream("canary"), upstream("stable"));
    let extra = "upstream_idle_timeout: 1s";
    let proxy = Proxy::start(extra, &canary_route("checkout", &canary, &stable, 50));
    let (canary_users, _) = cohorts("checkout", 50, 10);

    // Ten long requests in flight to the canary.
    let slow: Vec<_> = canary_users
        .iter()
        .map(|u| {
            let (url, u) = (proxy.url("/slow?ms=2000"), u.clone());
            tokio::spawn(async move { get(&client(), &url, Some(&u)).await })
        })
        .collect();
    let gauge = r#"vireo_in_flight_requests{route="checkout",backend="canary"}"#;
    tokio::task::block_in_place(|| {
        wait_until("10 in flight", Duration::from_secs(5), || {
            metric(&proxy.metrics(), gauge) == 10.0
        })
    });
    assert_eq!(
        proxy.slo("60s")["routes"]["checkout"]["canary"]["in_flight"],
        10
    );

    // Canary weight to 0.
    let routes = canary_route("checkout", &canary, &stable, 0);
    tokio::task::block_in_place(|| proxy.reload(extra, &routes, 2));
    let before = canary.served();
    let c = client();
    for u in &canary_users {
        for _ in 0..5 {
            let r = get(&c, &proxy.url("/"), Some(u)).await.unwrap();
            assert_eq!((r.status, r.backend.as_str()), (200, "stable"));
        }
    }
    assert_eq!(
        canary.served(),
        before,
        "a new request reached the drained canary"
    );

    for s in slow {
        let r = s.await.unwrap().unwrap();
        assert_eq!((r.status, r.backend.as_str()), (200, "canary"));
    }
    tokio::task::block_in_place(|| proxy.expect_metric(gauge, 0.0));
    // The pooled connections of the finished requests are closed after the idle timeout.
    tokio::task::block_in_place(|| {
        wait_until("canary connections closed", Duration::from_secs(5), || {
            canary.connections() == 0
        })
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_reload_is_rejected_and_the_old_config_keeps_serving() {
    let (canary, stable) = (upstream("canary"), upstream("stable"));
    let proxy = Proxy::start("", &canary_route("checkout", &canary, &stable, 5));
    let bad = canary_route("checkout", &canary, &stable, 5).replace("weight: 95", "weight: -1");
    write_atomically(
        &proxy.config_path,
        &config_text(proxy.listen, proxy.admin, "", &bad),
    );
    tokio::task::block_in_place(|| {
        wait_until("reload error counted", Duration::from_secs(5), || {
            metric(
                &proxy.metrics(),
                r#"vireo_config_reloads_total{result="error"}"#,
            ) == 1.0
        })
    });
    assert_eq!(proxy.config_version(), 1);
    assert!(
        proxy
            .log()
            .contains("routes[0].split.backends[1].weight: must be >= 0"),
        "{}",
        proxy.log()
    );
    let r = get(&client(), &proxy.url("/"), Some("u-1")).await.unwrap();
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_the_right_status_and_is_counted() {
    let live = upstream("live");
    let dead = format!("127.0.0.1:{}", free_port());
    let routes = format!(
        "  - name: only\n    match: {{ host: only.local }}\n    split:\n      backends: [ {{ name: b, addrs: [\"{live}\"], weight: 1 }} ]\n\
         \x20 - name: dead\n    match: {{ host: dead.local }}\n    split:\n      backends: [ {{ name: b, addrs: [\"{dead}\"], weight: 1 }} ]\n\
         \x20 - name: multi\n    match: {{ host: multi.local }}\n    split:\n      backends: [ {{ name: b, addrs: [\"{dead}\", \"{live}\"], weight: 1 }} ]\n",
        live = live.addr
    );
    let proxy = Proxy::start("request_timeout: 500ms", &routes);
    let req = |host: &str, path: &str| {
        raw(
            proxy.listen,
            format!("GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n").as_bytes(),
        )
        .unwrap()
    };
    assert!(req("only.local", "/").starts_with("HTTP/1.1 200"));
    // Short inputs too: fewer bytes than the HTTP/2 preface must not leave the proxy waiting.
    for garbage in [
        &b"GARBAGE\r\n\r\n"[..],
        b"NOT HTTP AT ALL\r\n\x00\x01\r\n\r\n",
    ] {
        let r = raw(proxy.listen, garbage).unwrap();
        assert!(r.starts_with("HTTP/1.1 400"), "{garbage:?} -> {r}");
    }
    // hyper answers an HTTP/1.0 client in HTTP/1.0 (pingora said HTTP/1.1): the status is
    // what matters, and that the short request was answered at all.
    let short = raw(proxy.listen, b"GET / HTTP/1.0\r\n\r\n").unwrap();
    assert!(
        short.starts_with("HTTP/1.0 404") || short.starts_with("HTTP/1.1 404"),
        "18-byte request: {short}"
    );
    let big = format!(
        "GET / HTTP/1.1\r\nhost: only.local\r\nx-big: {}\r\nconnection: close\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let r = raw(proxy.listen, big.as_bytes()).unwrap();
    assert!(r.starts_with("HTTP/1.1 431"), "{r}");
    assert!(req("nowhere.local", "/").starts_with("HTTP/1.1 404"));
    assert!(req("dead.local", "/").starts_with("HTTP/1.1 502"));
    assert!(req("only.local", "/slow?ms=3000").starts_with("HTTP/1.1 504"));
    for _ in 0..10 {
        // the dead address is skipped for the live one
        assert!(req("multi.local", "/").starts_with("HTTP/1.1 200"));
    }
    for (series, want) in [
        (
            r#"vireo_requests_total{route="dead",backend="b",version="",code="error"}"#,
            1.0,
        ),
        (
            r#"vireo_requests_total{route="only",backend="b",version="",code="error"}"#,
            1.0,
        ),
        (
            r#"vireo_requests_total{route="_unmatched",backend="",version="",code="404"}"#,
            2.0,
        ),
        (
            r#"vireo_requests_total{route="_unmatched",backend="",version="",code="431"}"#,
            1.0,
        ),
        (
            r#"vireo_requests_total{route="multi",backend="b",version="",code="200"}"#,
            10.0,
        ),
    ] {
        tokio::task::block_in_place(|| proxy.expect_metric(series, want));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool() {
    let (canary, stable) = (upstream("canary"), upstream("stable"));
    let proxy = Proxy::start("", &canary_route("checkout", &canary, &stable, 50));
    let c = client();
    for i in 0..20 {
        get(&c, &proxy.url("/status/503"), Some(&format!("u-{i}")))
            .await
            .unwrap();
        get(&c, &proxy.url("/"), Some(&format!("u-{i}")))
            .await
            .unwrap();
    }
    // What `curl .../metrics | promtool check metrics` sees: the classic text format.
    let text = proxy.metrics();
    assert!(
        text.contains("# TYPE vireo_requests_total counter"),
        "{text}"
    );
    // What Prometheus sees when it asks for OpenMetrics.
    let om = raw(
        proxy.admin,
        b"GET /metrics HTTP/1.1\r\nhost: a\r\naccept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5\r\nconnection: close\r\n\r\n",
    )
    .unwrap();
    assert!(
        om.contains("content-type: application/openmetrics-text"),
        "{om}"
    );
    assert!(
        om.contains("# TYPE vireo_requests counter") && om.trim_end().ends_with("# EOF"),
        "{om}"
    );
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool not found: install Debian's prometheus package (scripts/test.sh does)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool rejected /metrics:\n{}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slo_figures_match_the_traffic_sent() {
    let (canary, stable) = (upstream("canary"), upstream("stable"));
    let proxy = Proxy::start("", &canary_route("checkout", &canary, &stable, 50));
    let (canary_users, stable_users) = cohorts("checkout", 50, 10);
    let c = client();
    for u in &canary_users {
        for path in ["/", "/", "/", "/status/503"] {
            get(&c, &proxy.url(path), Some(u)).await.unwrap();
        }
    }
    for u in &stable_users {
        for _ in 0..2 {
            get(&c, &proxy.url("/slow?ms=100"), Some(u)).await.unwrap();
        }
    }
    // Pingora records a request (`logging`) just after the client has its response: let the
    // last ones land, then the figures must be exact.
    let settled = |slo: &serde_json::Value| {
        let r = &slo["routes"]["checkout"];
        r["canary"]["requests"] == 40
            && r["stable"]["requests"] == 20
            && r["canary"]["in_flight"] == 0
            && r["stable"]["in_flight"] == 0
    };
    tokio::task::block_in_place(|| {
        wait_until("slo settled", Duration::from_secs(5), || {
            settled(&proxy.slo("60s"))
        })
    });
    let slo = proxy.slo("60s");
    assert_eq!(slo["window_s"], 60);
    let cn = &slo["routes"]["checkout"]["canary"];
    assert_eq!(
        (cn["requests"].as_u64(), cn["failures"].as_u64()),
        (Some(40), Some(10))
    );
    assert_eq!(cn["success_ratio"].as_f64(), Some(0.75));
    assert_eq!(cn["in_flight"], 0);
    let st = &slo["routes"]["checkout"]["stable"];
    assert_eq!(
        (st["requests"].as_u64(), st["failures"].as_u64()),
        (Some(20), Some(0))
    );
    let p50 = st["latency_p50_s"].as_f64().unwrap();
    assert!((0.1..0.2).contains(&p50), "stable p50 {p50}");
    assert!(st["latency_p99_s"].as_f64().unwrap() >= p50);
    let bad = raw_get(proxy.admin, "/slo?window=5s").unwrap();
    assert!(
        bad.starts_with("HTTP/1.1 400") && bad.contains("between 10s and 10m"),
        "{bad}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_chunked_bodies_and_upgrades_pass_through() {
    let (canary, stable) = (upstream("canary"), upstream("stable"));
    let proxy = Proxy::start("", &canary_route("checkout", &canary, &stable, 0));

    // h2c (prior knowledge) and HTTP/1.1 on the same port.
    let r = get(&h2c_client(), &proxy.url("/"), Some("u-1"))
        .await
        .unwrap();
    assert_eq!((r.status, r.backend.as_str()), (200, "stable"));
    let r = get(&client(), &proxy.url("/"), Some("u-1")).await.unwrap();
    assert_eq!(r.status, 200);
    let post = Request::post(proxy.url("/upload"))
        .header("x-user-id", "u-1")
        .body(Full::new(Bytes::from(vec![b'x'; 70_000])))
        .unwrap();
    let r = send(&h2c_client(), post).await.unwrap();
    assert_eq!(r.body, "stable 70000");

    // Chunked request body over HTTP/1.1.
    let chunked = raw(
        proxy.listen,
        b"POST /upload HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    )
    .unwrap();
    assert!(
        chunked.starts_with("HTTP/1.1 200") && chunked.contains("stable 11"),
        "{chunked}\n{}",
        proxy.log()
    );

    // WebSocket upgrade: the proxy relays 101 and then raw bytes both ways. (Other Upgrade
    // protocols are stripped by pingora's default request policy, against request smuggling.)
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(proxy.listen).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(
        b"GET /ws HTTP/1.1\r\nhost: x\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\
          sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .unwrap();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}\n{}", proxy.log());
    s.write_all(b"ping-through-vireo").unwrap();
    let mut got = Vec::new();
    while got.len() < 18 {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "upgrade stream closed early");
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(&got, b"ping-through-vireo");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_in_flight_requests_then_exits() {
    let (canary, stable) = (upstream("canary"), upstream("stable"));
    let mut proxy = Proxy::start("", &canary_route("checkout", &canary, &stable, 0));
    let slow: Vec<_> = (0..3)
        .map(|i| {
            let url = proxy.url("/slow?ms=1500");
            tokio::spawn(async move { get(&client(), &url, Some(&format!("u-{i}"))).await })
        })
        .collect();
    let gauge = r#"vireo_in_flight_requests{route="checkout",backend="stable"}"#;
    tokio::task::block_in_place(|| {
        wait_until("3 in flight", Duration::from_secs(5), || {
            metric(&proxy.metrics(), gauge) == 3.0
        })
    });
    let sent = Instant::now();
    unsafe { libc::kill(proxy.child.id() as i32, libc::SIGTERM) };
    tokio::task::block_in_place(|| {
        wait_until("readiness 503", Duration::from_secs(1), || {
            raw_get(proxy.admin, "/ready").is_some_and(|r| r.starts_with("HTTP/1.1 503"))
        });
        wait_until("listener closed", Duration::from_secs(2), || {
            raw(
                proxy.listen,
                b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
            )
            .is_none_or(|r| r.is_empty())
        });
    });
    for s in slow {
        let r = s.await.unwrap().unwrap();
        assert_eq!(r.status, 200);
    }
    // Exits once drained, long before the 10 s shutdown_grace.
    let status = tokio::task::block_in_place(|| {
        let deadline = Instant::now() + Duration::from_secs(8);
        loop {
            if let Some(s) = proxy.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "still running 8 s after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    assert!(status.success(), "{status}");
    assert!(sent.elapsed() < Duration::from_secs(8));
    assert!(proxy.log().contains("drained; exiting"), "{}", proxy.log());
}

#[test]
fn post_shutdown_ends_a_jobs_proxy_only_when_enabled() {
    let (canary, stable) = (upstream("canary"), upstream("stable"));
    let route = canary_route("checkout", &canary, &stable, 0);
    let post = |admin| {
        raw(
            admin,
            b"POST /shutdown HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        )
    };
    // Off by default: a scrape target must not be able to stop the proxy.
    let off = Proxy::start("", &route);
    let answer = post(off.admin).unwrap();
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    assert!(answer.contains("--shutdown-endpoint"), "{answer}");
    drop(off);

    let mut proxy = Proxy::start_with("", &route, &["--shutdown-endpoint"]);
    let get = raw_get(proxy.admin, "/shutdown").unwrap();
    assert!(get.starts_with("HTTP/1.1 405"), "{get}");
    let answer = post(proxy.admin).unwrap();
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    let deadline = Instant::now() + Duration::from_secs(8);
    let status = loop {
        if let Some(s) = proxy.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "still running 8 s after POST /shutdown"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    assert!(proxy.log().contains("POST /shutdown"), "{}", proxy.log());
}

/// The injector's view of a pod: the ports on the command line win over the namespace's
/// shared file, and `wait-ready` (the postStart hook before 1.29) returns once they answer.
#[test]
fn command_line_ports_win_and_wait_ready_waits_for_them() {
    let (canary, stable) = (upstream("canary"), upstream("stable"));
    let route = canary_route("checkout", &canary, &stable, 0);
    let file_ports: Vec<SocketAddr> = (0..2)
        .map(|_| format!("127.0.0.1:{}", free_port()).parse().unwrap())
        .collect();
    let (listen, admin): (SocketAddr, SocketAddr) = (
        format!("127.0.0.1:{}", free_port()).parse().unwrap(),
        format!("127.0.0.1:{}", free_port()).parse().unwrap(),
    );
    let dir = std::env::temp_dir().join(format!("vireo-ports-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("proxy.yaml");
    std::fs::write(
        &config,
        config_text(file_ports[0], file_ports[1], "", &route),
    )
    .unwrap();
    let wait_ready = |timeout: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_vireo-proxy"))
            .args([
                "wait-ready",
                "--admin",
                &admin.to_string(),
                "--timeout",
                timeout,
            ])
            .output()
            .unwrap()
    };
    let early = wait_ready("300ms");
    assert_eq!(early.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&early.stderr).contains("did not answer /ready"),
        "{early:?}"
    );
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_vireo-proxy"))
        .arg("--config")
        .arg(&config)
        .args([
            "--listen",
            &listen.to_string(),
            "--admin",
            &admin.to_string(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let ready = wait_ready("20s");
    let served = raw_get(listen, "/");
    let file_port = std::net::TcpStream::connect(file_ports[0]);
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(ready.status.code(), Some(0), "{ready:?}");
    assert!(served.is_some_and(|r| r.starts_with("HTTP/1.1 200")));
    assert!(file_port.is_err(), "the file's listen address is not used");
}

/// ip6tables' REDIRECT sends a pod's IPv6 calls to [::1]: a transparent proxy on the IPv4
/// loopback listens there too, on the same port (and only on loopback).
#[test]
fn a_transparent_proxy_also_listens_on_the_ipv6_loopback() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipped: this machine has no IPv6 loopback");
        return;
    }
    let (canary, stable) = (upstream("canary"), upstream("stable"));
    let proxy = Proxy::start_with(
        "",
        &canary_route("checkout", &canary, &stable, 0),
        &["--transparent"],
    );
    let v6: SocketAddr = format!("[::1]:{}", proxy.listen.port()).parse().unwrap();
    let answer = raw_get(v6, "/").expect("the IPv6 loopback listens");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(stable.served(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reapplies_the_config_file() {
    let (canary, stable) = (upstream("canary"), upstream("stable"));
    let proxy = Proxy::start("", &canary_route("checkout", &canary, &stable, 5));
    unsafe { libc::kill(proxy.child.id() as i32, libc::SIGHUP) };
    // Same bytes, but SIGHUP applies them again (re-resolving addresses): a new version.
    tokio::task::block_in_place(|| proxy.wait_version(2));
    let r = get(&client(), &proxy.url("/"), Some("u-1")).await.unwrap();
    assert_eq!(r.status, 200);
}

#[test]
fn check_validates_and_names_every_bad_field() {
    let dir = std::env::temp_dir().join(format!("vireo-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let check = |text: &str| {
        let path = dir.join("c.yaml");
        std::fs::write(&path, text).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_vireo-proxy"))
            .arg("--check")
            .arg(&path)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let good = "listen: 127.0.0.1:1\nadmin: 127.0.0.1:2\nroutes:\n  - name: r\n    split:\n      backends:\n        - { name: a, addrs: [\"127.0.0.1:3\"], weight: 1 }\n";
    assert_eq!(check(good).0, Some(0));
    let (code, err) = check(
        &good
            .replace("weight: 1", "weight: -3")
            .replace("listen: 127.0.0.1:1", "listen: nowhere"),
    );
    assert_eq!(code, Some(1));
    assert!(err.contains("listen: not an ip:port address"), "{err}");
    assert!(
        err.contains("routes[0].split.backends[0].weight: must be >= 0"),
        "{err}"
    );
    let (code, err) = check("listen: [");
    assert_eq!(code, Some(1));
    assert!(!err.is_empty());
    // No arguments: usage error, exit 2.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vireo-proxy"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_over_h2c_reaches_an_h2c_backend_with_trailers() {
    use http_body_util::BodyExt;
    let up = grpc_upstream("grpc");
    let routes = format!(
        "  - name: grpc\n    split:\n      backends: [ {{ name: b, addrs: [\"{}\"], weight: 1, protocol: h2c }} ]\n",
        up.addr
    );
    let proxy = Proxy::start("", &routes);
    let client = h2c_client();
    // A length-prefixed gRPC message, sent several times over one client connection.
    let message = Bytes::from_static(b"\x00\x00\x00\x00\x05hello");
    for _ in 0..3 {
        let req = Request::post(proxy.url("/vireo.test.Echo/Say"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(Full::new(message.clone()))
            .unwrap();
        let resp = client.request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.version(), hyper::Version::HTTP_2);
        assert_eq!(resp.headers()["x-upstream-version"], "HTTP/2.0");
        let collected = resp.into_body().collect().await.unwrap();
        let trailers = collected
            .trailers()
            .cloned()
            .expect("grpc trailers passed through");
        assert_eq!(trailers["grpc-status"], "0");
        assert_eq!(collected.to_bytes(), message);
    }
    assert_eq!(up.served(), 3);
    tokio::task::block_in_place(|| {
        proxy.expect_metric(
            r#"vireo_requests_total{route="grpc",backend="b",version="",code="200"}"#,
            3.0,
        )
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_counts_as_499_not_as_a_backend_failure() {
    let (canary, stable) = (upstream("canary"), upstream("stable"));
    let proxy = Proxy::start("", &canary_route("checkout", &canary, &stable, 0));
    {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(proxy.listen).unwrap();
        s.write_all(b"GET /slow?ms=800 HTTP/1.1\r\nhost: x\r\nx-user-id: u-1\r\n\r\n")
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
    } // closed before the upstream answers
    let base = r#"vireo_requests_total{route="checkout",backend="stable",version="v1",code="#;
    tokio::task::block_in_place(|| proxy.expect_metric(&format!("{base}\"499\"}}"), 1.0));
    assert_eq!(metric(&proxy.metrics(), &format!("{base}\"error\"}}")), 0.0);
    let slo = proxy.slo("60s");
    assert_eq!(slo["routes"]["checkout"]["stable"]["failures"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slo_keeps_a_removed_backend_visible_until_it_drains() {
    let (canary, stable) = (upstream("canary"), upstream("stable"));
    let proxy = Proxy::start("", &canary_route("checkout", &canary, &stable, 100));
    let slow = {
        let url = proxy.url("/slow?ms=1500");
        tokio::spawn(async move { get(&client(), &url, Some("u-1")).await })
    };
    let gauge = r#"vireo_in_flight_requests{route="checkout",backend="canary"}"#;
    tokio::task::block_in_place(|| proxy.expect_metric(gauge, 1.0));
    // A config without the canary at all.
    let only_stable = format!(
        "  - name: checkout\n    split:\n      backends: [ {{ name: stable, version: v1, addrs: [\"{}\"], weight: 1 }} ]\n",
        stable.addr
    );
    tokio::task::block_in_place(|| proxy.reload("", &only_stable, 2));
    assert_eq!(
        proxy.slo("60s")["routes"]["checkout"]["canary"]["in_flight"],
        1
    );
    assert_eq!(slow.await.unwrap().unwrap().status, 200);
    tokio::task::block_in_place(|| proxy.expect_metric(gauge, 0.0));
    assert_eq!(
        proxy.slo("60s")["routes"]["checkout"]["canary"]["in_flight"],
        0
    );
    assert_eq!(
        proxy.slo("60s")["routes"]["checkout"]["canary"]["requests"],
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_come_from_the_control_plane_and_outlive_it() {
    let (canary, stable) = (upstream("canary"), upstream("stable"));
    let cp = ControlPlane::start(None);
    cp.publish(1, &canary_route("checkout", &canary, &stable, 0));
    // The file's own routes would send everyone to the canary: the control plane's win.
    let url = cp.url();
    let proxy = Proxy::start_with(
        "",
        &canary_route("checkout", &canary, &stable, 100),
        &["--control", &url, "--proxy-id", "test/proxy-0"],
    );
    tokio::task::block_in_place(|| proxy.wait_version(1));
    let c = client();
    for i in 0..20 {
        let r = get(&c, &proxy.url("/"), Some(&format!("u-{i}")))
            .await
            .unwrap();
        assert_eq!(r.backend, "stable");
    }
    // Heartbeats carry the applied version, in-flight counts and the SLO figures.
    let report = tokio::task::block_in_place(|| {
        cp.wait_report("version 1 and the traffic sent", |r| {
            r.applied_version == 1
                && r.slo
                    .routes
                    .get("checkout")
                    .and_then(|b| b.get("stable"))
                    .is_some_and(|s| s.requests == 20)
        })
    });
    assert_eq!(report.proxy, "test/proxy-0");
    assert_eq!(report.in_flight["checkout"]["stable"], 0);

    // A weight change is applied and reported.
    cp.publish(2, &canary_route("checkout", &canary, &stable, 100));
    tokio::task::block_in_place(|| {
        proxy.wait_version(2);
        cp.wait_report("version 2", |r| r.applied_version == 2);
    });
    assert_eq!(
        get(&c, &proxy.url("/"), Some("u-1")).await.unwrap().backend,
        "canary"
    );

    // An invalid table is refused and counted; version 2 keeps serving.
    let bad = vireo_proxy::watch::ConfigUpdate {
        version: 3,
        routes: vec![serde_json::from_str(
            r#"{"name":"checkout","split":{"backends":[{"name":"b","addrs":[],"weight":1}]}}"#,
        )
        .unwrap()],
        slo_windows_s: Vec::new(),
    };
    cp.publish_raw(bad);
    tokio::task::block_in_place(|| {
        proxy.expect_metric(r#"vireo_config_reloads_total{result="error"}"#, 1.0)
    });
    assert_eq!(proxy.config_version(), 2);
    // ...and the heartbeat says so, so the control plane need not wait for it forever.
    let refused =
        tokio::task::block_in_place(|| cp.wait_report("the refusal", |r| r.rejected.is_some()));
    let rejected = refused.rejected.unwrap();
    assert_eq!((rejected.version, refused.applied_version), (3, 2));
    assert!(
        rejected.error.contains("needs at least one address"),
        "{}",
        rejected.error
    );

    // Control plane gone: the proxy keeps routing with what it has.
    let addr = cp.addr;
    drop(cp);
    for i in 0..10 {
        let r = get(&c, &proxy.url("/"), Some(&format!("u-{i}")))
            .await
            .unwrap();
        assert_eq!((r.status, r.backend.as_str()), (200, "canary"));
    }
    // Back on the same address with a newer table: the proxy reconnects and applies it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let cp = ControlPlane::start(Some(addr));
    cp.publish(4, &canary_route("checkout", &canary, &stable, 0));
    tokio::task::block_in_place(|| proxy.wait_version(4));
    assert_eq!(
        get(&c, &proxy.url("/"), Some("u-1")).await.unwrap().backend,
        "stable"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_breaks_off_mid_body_counts_as_an_error() {
    let broken = truncating_upstream("broken");
    let routes = format!(
        "  - name: r\n    split:\n      backends: [ {{ name: b, version: v9, addrs: [\"{}\"], weight: 1 }} ]\n",
        broken.addr
    );
    let proxy = Proxy::start("", &routes);
    let resp = raw(
        proxy.listen,
        b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .unwrap();
    // The client saw a 200 head and a short body...
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let body = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    assert!(body.len() < 100, "the body was cut short: {body:?}");
    // ...and the proxy counts what it was: a failed response of the backend.
    let base = r#"vireo_requests_total{route="r",backend="b",version="v9",code="#;
    tokio::task::block_in_place(|| proxy.expect_metric(&format!("{base}\"error\"}}"), 1.0));
    assert_eq!(metric(&proxy.metrics(), &format!("{base}\"200\"}}")), 0.0);
    assert_eq!(proxy.slo("60s")["routes"]["r"]["b"]["failures"], 1);
}
