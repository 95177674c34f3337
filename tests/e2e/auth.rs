//! Authentication and authorization end to end: the real `vireo serve`, its tokens, roles,
//! browser rules, an OIDC issuer served on loopback by the test, a trusted proxy's headers,
//! and the CLI.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use vireo_auth::oidc::testing::{now, Issuer};
use vireo_auth::policy::{Access, ENDPOINTS};
use vireo_auth::Role;

/// A route template with its parameters filled in.
fn concrete(path: &str) -> String {
    path.replace("{name}", "nothing")
        .replace("{index}", "0")
        .replace("{key}", "nothing")
        .replace("{action}", "pause")
}

/// Routes that hold the connection open once authorized (long poll, SSE): only their
/// refusals are checked.
fn holds(path: &str) -> bool {
    path == "/api/v1/events/stream"
}

#[test]
fn every_endpoint_needs_what_the_table_says_and_the_readme_lists_it() {
    let dir = tempdir("auth-table");
    let server = Server::start(free_addr(), &dir.join("data"));
    let viewer = server.create_token("viewer", "viewer");
    let proxy = server.create_token("proxy", "proxy");
    for e in ENDPOINTS {
        let path = concrete(e.path);
        let anonymous = server.call(e.method, &path, "", &[], "");
        let what = format!("{} {}", e.method, e.path);
        let needed = match e.access {
            Access::Public => {
                assert!(
                    ![401, 403].contains(&anonymous.status),
                    "{what}: {}",
                    anonymous.status
                );
                continue;
            }
            Access::Authenticated => {
                assert_eq!(anonymous.status, 401, "{what}");
                for token in [&viewer, &proxy] {
                    let r = server.call(e.method, &path, token, &[], "");
                    assert_eq!(r.status, 200, "{what}: {}", r.body);
                }
                continue;
            }
            Access::Needs(p) => p,
            Access::Ofrep => vireo_auth::Permission::Read,
        };
        assert_eq!(anonymous.status, 401, "{what}: {}", anonymous.body);
        assert_eq!(
            anonymous
                .headers
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap()),
            Some("Bearer realm=\"vireo\""),
            "{what}"
        );
        assert!(
            anonymous.json()["error"]
                .as_str()
                .unwrap()
                .contains("Bearer"),
            "{what}"
        );
        for (role, token) in [(Role::Viewer, &viewer), (Role::Proxy, &proxy)] {
            if role.grants(needed) && holds(e.path) {
                continue; // it would hold the connection open: authorized is all we learn
            }
            let reply = server.call(e.method, &path, token, &[], "");
            if !role.grants(needed) {
                assert_eq!(reply.status, 403, "{what} as {role}: {}", reply.body);
                let body = reply.json();
                assert_eq!(body["needs"], json!(needed), "{what}");
                let says = format!("needs the {needed} permission");
                assert!(
                    body["error"].as_str().unwrap().contains(&says),
                    "{what}: {body}"
                );
            } else {
                assert!(
                    ![401, 403].contains(&reply.status),
                    "{what} as {role}: {} {}",
                    reply.status,
                    reply.body
                );
            }
        }
    }
    // A method the table does not list for a known route: 405, not served.
    assert_eq!(
        server
            .call("PUT", "/api/v1/rollouts", &viewer, &[], "")
            .status,
        405
    );

    // The README's table is the policy's.
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    assert!(
        readme.contains(&vireo_auth::policy::markdown_table()),
        "README.md's endpoint table differs from vireo_auth::policy; paste:\n{}",
        vireo_auth::policy::markdown_table()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn roles_decide_revocation_is_immediate_and_the_actor_is_the_principal() {
    let dir = tempdir("auth-roles");
    let server = Server::start(free_addr(), &dir.join("data"));
    let _proxy = Proxy::start(&dir, "proxy-0", &server.url(""));
    let (v1, v2) = (backend("v1"), backend("v2"));
    let spec = rollout(
        "shop",
        v1.addr,
        v2.addr,
        "        - setWeight: 10\n        - pause: {}\n",
    );
    let viewer = server.create_token("watcher", "viewer");
    let operator = server.create_token("ci", "operator");

    // Applying needs operate: the viewer is refused, the operator is recorded as the applier.
    let r = server.call("POST", "/api/v1/rollouts", &viewer, &[], &spec);
    assert_eq!(r.status, 403, "{}", r.body);
    let r = server.call("POST", "/api/v1/rollouts", &operator, &[], &spec);
    assert_eq!(r.status, 201, "{}", r.body);
    server.wait_status("shop", "paused", |s| s["phase"] == "Paused");

    // A viewer cannot act; an operator can, and a header claiming another actor changes nothing.
    let r = server.call("POST", "/api/v1/rollouts/shop/abort", &viewer, &[], "");
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        r.body.contains("token:watcher (viewer) may not POST"),
        "{}",
        r.body
    );
    let r = server.call(
        "POST",
        "/api/v1/rollouts/shop/abort",
        &operator,
        &[("x-vireo-actor", "mallory"), ("x-remote-user", "mallory")],
        r#"{"reason": "error budget burnt"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let abort = server
        .timeline("shop")
        .into_iter()
        .find(|e| e["input"]["Action"] == "abort")
        .unwrap();
    assert_eq!(abort["by"], "token:ci");
    assert_eq!(abort["reason"], "error budget burnt");
    // So does the transition event.
    let events = server
        .get("/api/v1/events?type=dev.vireo.rollout.step.0.1.0")
        .json();
    assert!(
        events["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["data"]["actor"] == "token:ci"
                && e["data"]["actorReason"] == "error budget burnt"),
        "{events}"
    );
    // A reason that is not one line is refused, naming the field.
    let r = server.call(
        "POST",
        "/api/v1/rollouts/shop/retry",
        &operator,
        &[],
        "{\"reason\": \"a\\nb\"}",
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("reason"), "{}", r.body);

    // Revoked: refused with the very next request.
    let (code, out, err) = server.vireo(&["token", "revoke", "ci"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let r = server.call("GET", "/api/v1/rollouts", &operator, &[], "");
    assert_eq!(r.status, 401, "{}", r.body);

    // The CLI: the secret alone on the last line of stdout; expiry; list shows states.
    let (code, out, err) = server.vireo(&[
        "token",
        "create",
        "--role",
        "viewer",
        "--name",
        "brief",
        "--expires",
        "1s",
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    let brief = out.trim().lines().last().unwrap().to_string();
    assert!(brief.starts_with("vireo_") && !brief.contains(' '), "{out}");
    assert_eq!(
        server
            .call("GET", "/api/v1/rollouts", &brief, &[], "")
            .status,
        200
    );
    std::thread::sleep(Duration::from_millis(1100));
    let r = server.call("GET", "/api/v1/rollouts", &brief, &[], "");
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.body.contains("expired"), "{}", r.body);
    let (code, out, _) = server.vireo(&["token", "list"]);
    assert_eq!(code, Some(0));
    for (name, state) in [
        ("ci", "revoked"),
        ("brief", "expired"),
        ("watcher", "active"),
    ] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(name) && l.contains(state)),
            "{name} {state}:\n{out}"
        );
    }
    assert!(!out.contains("vireo_"), "no secret in the list:\n{out}");
    // No token at all: the CLI says where to get one, exit 1.
    let out = std::process::Command::new(vireo_bin())
        .args(["rollout", "list", "--server", &server.url("")])
        .current_dir(&dir)
        .env_remove("VIREO_TOKEN")
        .env_remove("VIREO_TOKEN_FILE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--token-file"), "{err}");
    // The data dir's token file is this user's alone.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(server.token_file())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_cross_origin_post_is_refused_and_cors_stays_closed() {
    let dir = tempdir("auth-csrf");
    let server = Server::start(free_addr(), &dir.join("data"));
    let admin = server.admin.trim_start_matches("Bearer ").to_string();
    // A page elsewhere posting a "simple" request (text/plain, no preflight).
    let r = server.call(
        "POST",
        "/api/v1/flags",
        &admin,
        &[
            ("origin", "http://evil.example"),
            ("content-type", "text/plain"),
        ],
        "key: x\nvariants: { on: true }\ndefaultVariant: on\n",
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("cross-origin"), "{}", r.body);
    assert!(r.headers.get("access-control-allow-origin").is_none());
    let r = server.call(
        "POST",
        "/api/v1/flags",
        &admin,
        &[("sec-fetch-site", "cross-site")],
        "key: x\nvariants: { on: true }\ndefaultVariant: on\n",
    );
    assert_eq!(r.status, 403, "{}", r.body);
    // The console's own origin is fine.
    let own = format!("http://{}", server.addr);
    let r = server.call(
        "POST",
        "/api/v1/flags",
        &admin,
        &[("origin", &own)],
        "key: x\nvariants: { on: true }\ndefaultVariant: on\n",
    );
    assert_eq!(r.status, 201, "{}", r.body);
    // Preflight: closed.
    let r = server.call(
        "OPTIONS",
        "/api/v1/flags",
        "",
        &[
            ("origin", "http://evil.example"),
            ("access-control-request-method", "POST"),
        ],
        "",
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.headers.get("access-control-allow-origin").is_none());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Serves an OIDC discovery document and a JWKS (whatever `keys` holds) on loopback.
fn issuer(keys: Arc<Mutex<Vec<Value>>>) -> String {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    let iss = base.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]);
            let body = if head.starts_with("GET /.well-known/openid-configuration") {
                json!({"issuer": iss, "jwks_uri": format!("{iss}/jwks")})
            } else {
                json!({"keys": keys.lock().unwrap().clone()})
            }
            .to_string();
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    base
}

#[test]
fn oidc_tokens_are_checked_and_a_rotated_key_is_picked_up() {
    let dir = tempdir("auth-oidc");
    let first = Issuer::new("k1");
    let keys = Arc::new(Mutex::new(vec![first.jwk()]));
    let iss = issuer(keys.clone());
    let config = dir.join("control.yaml");
    std::fs::write(
        &config,
        format!(
            "auth:\n  oidc:\n    issuer: {iss}\n    audience: vireo\n    usernameClaim: email\n    roles: {{ release: operator, audit: viewer }}\n"
        ),
    )
    .unwrap();
    let server = Server::start_with(
        free_addr(),
        &dir.join("data"),
        &["--config", config.to_str().unwrap()],
    );
    let claims = |exp: u64, groups: &[&str]| {
        json!({"iss": iss, "aud": "vireo", "sub": "u-1", "email": "alice@example.com",
               "groups": groups, "iat": now(), "exp": exp})
    };
    let good = first.sign(&claims(now() + 300, &["release"]));
    let r = server.call("GET", "/api/v1/whoami", &good, &[], "");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["actor"], "oidc:alice@example.com");
    assert_eq!(r.json()["roles"], json!(["operator"]));

    let expired = first.sign(&claims(now() - 120, &["release"]));
    let r = server.call("GET", "/api/v1/rollouts", &expired, &[], "");
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.body.contains("expired"), "{}", r.body);

    let auditor = first.sign(&claims(now() + 300, &["audit"]));
    assert_eq!(
        server
            .call("GET", "/api/v1/rollouts", &auditor, &[], "")
            .status,
        200
    );
    assert_eq!(
        server
            .call("POST", "/api/v1/rollouts/x/abort", &auditor, &[], "")
            .status,
        403
    );

    // The issuer rotates its key. (Unknown key ids re-fetch at most every 10 s, so a flood
    // of made-up ids cannot make the control plane hammer the issuer: wait that out.)
    let second = Issuer::new("k2");
    keys.lock().unwrap().push(second.jwk());
    std::thread::sleep(vireo_auth::oidc::REFETCH_AFTER + Duration::from_millis(200));
    let rotated = second.sign(&claims(now() + 300, &["release"]));
    let r = server.call("GET", "/api/v1/whoami", &rotated, &[], "");
    assert_eq!(r.status, 200, "{}", r.body);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_trusted_proxys_user_header_counts_only_from_its_address() {
    let dir = tempdir("auth-remote");
    let config = |name: &str, source: &str| {
        let p = dir.join(name);
        std::fs::write(
            &p,
            format!("auth:\n  trustedProxy:\n    sources: [{source}]\n    roles: {{ release: operator }}\n"),
        )
        .unwrap();
        p
    };
    let headers = [
        ("x-remote-user", "bob"),
        ("x-remote-group", "staff, release"),
    ];
    // Trusting another address: the headers are ignored.
    let elsewhere = config("elsewhere.yaml", "10.255.255.1/32");
    let server = Server::start_with(
        free_addr(),
        &dir.join("a"),
        &["--config", elsewhere.to_str().unwrap()],
    );
    let r = server.call("GET", "/api/v1/whoami", "", &headers, "");
    assert_eq!(r.status, 401, "{}", r.body);
    drop(server);
    // Trusting loopback: bob, an operator.
    let here = config("here.yaml", "127.0.0.1/32");
    let server = Server::start_with(
        free_addr(),
        &dir.join("b"),
        &["--config", here.to_str().unwrap()],
    );
    let r = server.call("GET", "/api/v1/whoami", "", &headers, "");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["actor"], "remote:bob");
    assert_eq!(r.json()["roles"], json!(["operator"]));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn every_limit_answers_with_its_status_and_says_which() {
    use std::io::{Read, Write};
    let dir = tempdir("auth-limits");
    let config = dir.join("control.yaml");
    std::fs::write(&config, "headerReadTimeout: 1s\n").unwrap();
    let server = Server::start_with(
        free_addr(),
        &dir.join("data"),
        &["--config", config.to_str().unwrap()],
    );
    let viewer = server.create_token("tabs", "viewer");
    let ingest = server.create_token("pipeline", "ingest");

    // An ingest batch over the bound: 413, naming it.
    let one = r#"{"specversion":"1.0","id":"ID","source":"/ci","type":"t"}"#;
    let batch = format!(
        "[{}]",
        (0..1001)
            .map(|i| one.replace("ID", &i.to_string()))
            .collect::<Vec<_>>()
            .join(",")
    );
    let r = server.call(
        "POST",
        "/api/v1/events",
        &ingest,
        &[("content-type", "application/cloudevents-batch+json")],
        &batch,
    );
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(r.body.contains("at most 1000"), "{}", r.body);
    // A body over 1 MiB: 413.
    let huge = "x".repeat((1 << 20) + 1);
    let r = server.call("POST", "/api/v1/events", &ingest, &[], &huge);
    assert_eq!(r.status, 413, "{}", r.body);

    // Event streams: 16 per principal, the 17th gets 429 with Retry-After; closing one frees it.
    let open_stream = || {
        let mut s = std::net::TcpStream::connect(server.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(
            s,
            "GET /api/v1/events/stream HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {viewer}\r\n\r\n"
        )
        .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap_or(0) == 1 {
            head.push(byte[0]);
        }
        (s, String::from_utf8_lossy(&head).into_owned())
    };
    let mut streams: Vec<_> = (0..vireo_server::limits::MAX_STREAMS)
        .map(|_| open_stream())
        .collect();
    assert!(
        streams.iter().all(|(_, h)| h.starts_with("HTTP/1.1 200")),
        "{:?}",
        streams[0].1
    );
    let (_, refused) = open_stream();
    assert!(refused.starts_with("HTTP/1.1 429"), "{refused}");
    assert!(
        refused.to_lowercase().contains("retry-after: 5"),
        "{refused}"
    );
    drop(streams.pop());
    // The freed slot is noticed when the server next writes to the dead stream or reads its
    // close: within a moment.
    wait_for("a stream slot to free up", Duration::from_secs(20), || {
        let (s, head) = open_stream();
        head.starts_with("HTTP/1.1 200").then_some(s)
    });
    drop(streams);

    // Slowloris: a head trickled byte by byte is cut off after headerReadTimeout.
    let mut s = std::net::TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
        .unwrap();
    let started = std::time::Instant::now();
    let mut closed = false;
    while started.elapsed() < Duration::from_secs(8) {
        if s.write_all(b"x").is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 256];
        match s.read(&mut buf) {
            Ok(_) => {
                closed = true;
                break;
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    assert!(closed, "the trickling client was not cut off");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
