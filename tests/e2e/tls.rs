//! TLS end to end: `vireo serve --tls auto` and `--tls-cert/--tls-key` with hot reload, the
//! proxy following the control plane over https with a CA and a token, the CLI with `--ca`,
//! and a wrong CA refused.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use serde_json::Value;
use vireo_http::{HttpClient, Limits};

const LIMITS: Limits = Limits::new(Duration::from_secs(40), 16 << 20);

/// One https exchange trusting only `ca`: (status, body), or the client's error.
fn https(
    ca: &Path,
    method: &str,
    url: &str,
    token: &str,
    body: &str,
) -> Result<(u16, String), String> {
    let client =
        HttpClient::with_ca(Duration::from_secs(2), Some(ca)).map_err(|e| e.to_string())?;
    let mut req = vireo_http::request(
        method.parse().unwrap(),
        url,
        Some("application/yaml"),
        Bytes::from(body.to_string()),
    )
    .unwrap();
    if !token.is_empty() {
        req.headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    runtime().block_on(async {
        let a = client.send(req, LIMITS).await.map_err(|e| e.to_string())?;
        Ok((
            a.status.as_u16(),
            String::from_utf8_lossy(&a.body).into_owned(),
        ))
    })
}

/// Starts `vireo serve` with TLS and waits until it answers over https with `ca`.
///
/// The port `free_addr` found free can be taken before `vireo serve` binds it (another test's
/// outgoing connection may get it as its local port), and then the server exits at start
/// ("Address already in use"): that is retried on another port, twice at most.
fn start_tls(data: &Path, args: &[&str], ca: impl Fn() -> PathBuf) -> (Server, String) {
    for _ in 0..3 {
        let mut server = Server::spawn(free_addr(), data, args);
        let base = format!("https://127.0.0.1:{}", server.addr.port());
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if server.child.try_wait().unwrap().is_some() {
                break; // exited at start: the port race; try another port
            }
            let ca = ca();
            let up = ca.exists()
                && https(&ca, "GET", &format!("{base}/healthz"), "", "")
                    .is_ok_and(|(s, _)| s == 200);
            if up {
                return (server, base);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            server.child.try_wait().unwrap().is_some(),
            "timed out after 20s waiting for vireo serve over https"
        );
    }
    panic!("vireo serve exited at start three times (see its stderr above)");
}

fn admin(data: &Path) -> String {
    std::fs::read_to_string(data.join("admin.token"))
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn the_proxy_and_the_cli_follow_an_https_control_plane_and_a_wrong_ca_is_refused() {
    let dir = tempdir("tls-auto");
    let data = dir.join("data");
    let ca = data.join("tls/ca.pem");
    let (server, base) = start_tls(&data, &["--tls", "auto"], || ca.clone());
    let admin = admin(&data);

    // Another control plane's CA: what a client must not accept for this one.
    let other_data = dir.join("other");
    let other_ca = other_data.join("tls/ca.pem");
    let (other, _) = start_tls(&other_data, &["--tls", "auto"], || other_ca.clone());
    drop(other);
    let e = https(&other_ca, "GET", &format!("{base}/healthz"), "", "").unwrap_err();
    assert!(e.to_lowercase().contains("certificate"), "{e}");

    // A proxy with the right CA and a proxy token gets its tables over https.
    let (status, body) = https(
        &ca,
        "POST",
        &format!("{base}/api/v1/tokens"),
        &admin,
        r#"{"name": "edge", "role": "proxy"}"#,
    )
    .unwrap();
    assert_eq!(status, 201, "{body}");
    let token: Value = serde_json::from_str(&body).unwrap();
    std::fs::write(dir.join("proxy.token"), token["token"].as_str().unwrap()).unwrap();
    let proxy_config = |name: &str| {
        let (listen, admin) = (free_addr(), free_addr());
        let path = dir.join(format!("{name}.yaml"));
        std::fs::write(
            &path,
            format!("listen: {listen}\nadmin: {admin}\nshutdown_grace: 1s\nroutes: []\n"),
        )
        .unwrap();
        (path, listen, admin)
    };
    let spawn = |config: &Path, ca: &Path| {
        std::process::Command::new(proxy_bin())
            .arg("--config")
            .arg(config)
            .args(["--control", &base, "--proxy-id", "edge-0", "--control-ca"])
            .arg(ca)
            .arg("--control-token-file")
            .arg(dir.join("proxy.token"))
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let (good_config, good_listen, good_admin) = proxy_config("good");
    let mut good = spawn(&good_config, &ca);
    let (bad_config, _, bad_admin) = proxy_config("bad");
    let mut bad = spawn(&bad_config, &other_ca);

    let (v1, v2) = (backend("v1"), backend("v2"));
    let spec = rollout(
        "web",
        v1.addr,
        v2.addr,
        "        - setWeight: 50\n        - pause: {}\n",
    );
    let (status, body) = https(
        &ca,
        "POST",
        &format!("{base}/api/v1/rollouts"),
        &admin,
        &spec,
    )
    .unwrap();
    assert_eq!(status, 201, "{body}");
    let version = |admin: std::net::SocketAddr| {
        http("GET", &format!("http://{admin}/config"), &[], "")
            .ok()
            .and_then(|r| r.json()["version"].as_u64())
            .unwrap_or(0)
    };
    wait_for(
        "the proxy's table over https",
        Duration::from_secs(20),
        || (version(good_admin) > 0).then_some(()),
    );
    let served = http(
        "GET",
        &format!("http://{good_listen}/"),
        &[("x-user-id", "u-1")],
        "",
    )
    .unwrap();
    assert_eq!(
        served.status, 200,
        "the route came over https: {}",
        served.body
    );
    // The proxy with the wrong CA never got a table (it keeps its file's empty one).
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        version(bad_admin),
        0,
        "a proxy trusting another CA must not get tables"
    );

    // The CLI: with --ca it works; without, the system's roots do not know our CA.
    let cli = |extra: &[&str]| {
        std::process::Command::new(vireo_bin())
            .args(["rollout", "list", "--server", &base])
            .args(extra)
            .env("VIREO_TOKEN", &admin)
            .output()
            .unwrap()
    };
    let ok = cli(&["--ca", ca.to_str().unwrap()]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("web"));
    let refused = cli(&[]);
    assert_eq!(refused.status.code(), Some(1));
    let err = String::from_utf8_lossy(&refused.stderr).to_lowercase();
    assert!(err.contains("certificate"), "{err}");

    let _ = good.kill();
    let _ = bad.kill();
    let _ = (good.wait(), bad.wait());
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_renewed_certificate_is_used_without_dropping_requests_in_flight() {
    let dir = tempdir("tls-reload");
    // Two certificate sets from two local CAs (made by --tls auto in scratch dirs).
    let make = |name: &str| {
        let d = dir.join(name);
        let ca = d.join("tls/ca.pem");
        let (s, _) = start_tls(&d, &["--tls", "auto"], || ca.clone());
        drop(s);
        d.join("tls")
    };
    let (first, second) = (make("first"), make("second"));
    let live = dir.join("live");
    std::fs::create_dir_all(&live).unwrap();
    for f in ["server.pem", "server.key"] {
        std::fs::copy(first.join(f), live.join(f)).unwrap();
    }
    let data = dir.join("data");
    let (cert, key) = (live.join("server.pem"), live.join("server.key"));
    let (server, base) = start_tls(
        &data,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
        || first.join("ca.pem"),
    );
    let admin = admin(&data);

    // A long poll in flight on a connection made with the first certificate.
    let (status, body) = https(
        &first.join("ca.pem"),
        "GET",
        &format!("{base}/api/v1/proxies"),
        &admin,
        "",
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let since: Value = serde_json::from_str(&body).unwrap();
    let since = since["tableVersion"].as_u64().unwrap();
    let poll = {
        let (ca, url, admin) = (
            first.join("ca.pem"),
            format!("{base}/api/v1/proxy/config?proxy=watcher&since={since}"),
            admin.clone(),
        );
        std::thread::spawn(move || {
            let started = Instant::now();
            (https(&ca, "GET", &url, &admin, ""), started.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(500));

    // Renew: the second pair replaces the first (key first, as a careless renewal might).
    std::fs::copy(second.join("server.key"), &key).unwrap();
    std::fs::copy(second.join("server.pem"), &cert).unwrap();
    wait_for(
        "new handshakes to use the renewed certificate",
        Duration::from_secs(10),
        || {
            https(
                &second.join("ca.pem"),
                "GET",
                &format!("{base}/healthz"),
                "",
                "",
            )
            .ok()
            .filter(|(s, _)| *s == 200)
        },
    );
    assert!(
        https(
            &first.join("ca.pem"),
            "GET",
            &format!("{base}/healthz"),
            "",
            ""
        )
        .is_err(),
        "new connections get the new certificate"
    );

    // The request in flight is still there: a new table answers it.
    let (v1, v2) = (backend("v1"), backend("v2"));
    let spec = rollout("web", v1.addr, v2.addr, "        - setWeight: 50\n");
    let (status, body) = https(
        &second.join("ca.pem"),
        "POST",
        &format!("{base}/api/v1/rollouts"),
        &admin,
        &spec,
    )
    .unwrap();
    assert_eq!(status, 201, "{body}");
    let (answer, took) = poll.join().unwrap();
    let (status, body) = answer.expect("the in-flight long poll survived the renewal");
    assert_eq!(status, 200, "{body}");
    assert!(
        took < Duration::from_secs(25),
        "answered by the new table, not the hold: {took:?}"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
