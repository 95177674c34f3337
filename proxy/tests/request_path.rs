//! End-to-end tests of the hyper request path's edges: ambiguous HTTP/1 framing, hop-by-hop
//! fields in both directions, the upstream connection bound, pooled connections the backend
//! closes, and weight flips under load. Real binary, real sockets, loopback only.

mod common;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use common::*;

/// The route every test here uses: everything to one backend.
fn one_backend(up: &Upstream) -> String {
    format!(
        "  - name: r\n    split:\n      backends: [ {{ name: b, version: v1, addrs: [\"{}\"], weight: 1 }} ]\n",
        up.addr
    )
}

fn status_line(resp: &str) -> &str {
    resp.lines().next().unwrap_or("")
}

fn body(resp: &str) -> &str {
    resp.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_framing_is_rejected_or_normalised() {
    let up = upstream("up");
    let proxy = Proxy::start("", &one_backend(&up));
    let send = |req: &[u8]| raw(proxy.listen, req).unwrap();

    // Rejected with 400 before anything reaches the backend.
    let rejected: [(&str, &[u8]); 10] = [
        (
            "conflicting lengths",
            b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello!",
        ),
        (
            "a list of different lengths",
            b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 5, 6\r\n\r\nhello!",
        ),
        (
            "a signed length",
            b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: +5\r\n\r\nhello",
        ),
        (
            "a coding other than chunked last",
            b"POST /echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
        ),
        (
            "a misspelt chunked",
            b"POST /echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: xchunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "whitespace before the colon",
            b"POST /echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding : chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "obs-fold",
            b"GET /echo HTTP/1.1\r\nhost: x\r\nx-a: 1\r\n 2\r\n\r\n",
        ),
        (
            "a control byte in a value",
            b"GET /echo HTTP/1.1\r\nhost: x\r\nx-a: a\x01b\r\n\r\n",
        ),
        (
            "a NUL in a value",
            b"GET /echo HTTP/1.1\r\nhost: x\r\nx-a: a\x00b\r\n\r\n",
        ),
        (
            "Transfer-Encoding in HTTP/1.0",
            b"POST /echo HTTP/1.0\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
    ];
    for (what, req) in rejected {
        let r = send(req);
        assert!(
            status_line(&r).contains(" 400 "),
            "{what}: {}",
            status_line(&r)
        );
    }
    assert_eq!(up.served(), 0, "a rejected request reached the backend");

    // A chunk size that overflows: the request head was fine, the body is not; the backend
    // never gets a complete request and the client no 2xx.
    let r = send(
        b"POST /echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\nffffffffffffffffff1\r\nx\r\n0\r\n\r\n",
    );
    assert!(!status_line(&r).contains(" 200 "), "overflow: {r}");
    assert!(!r.contains("body: "), "the backend read a body: {r}");

    // Normalised: the backend sees one unambiguous framing, chosen by the proxy.
    let r = send(
        b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello",
    );
    assert!(status_line(&r).contains(" 200 "), "{r}");
    assert_eq!(body(&r).matches("content-length: 5").count(), 1, "{r}");
    assert!(body(&r).contains("body: 5"), "{r}");

    // Both lengths and chunked: chunked wins, the length is dropped, the connection closes.
    let r = send(
        b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 50\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    );
    assert!(status_line(&r).contains(" 200 "), "{r}");
    assert!(body(&r).contains("body: 5"), "{r}");
    assert!(!body(&r).contains("content-length: 50"), "{r}");
    assert!(
        !body(&r).contains("transfer-encoding: chunked\ncontent-length"),
        "{r}"
    );

    // An h2c upgrade over HTTP/1.1 is not honoured: the request goes on as HTTP/1.1, without
    // the upgrade's fields.
    let r = send(
        b"GET /echo HTTP/1.1\r\nhost: x\r\nconnection: Upgrade, HTTP2-Settings\r\nupgrade: h2c\r\nhttp2-settings: AAMAAABkAAQAAP__\r\n\r\n",
    );
    assert!(status_line(&r).starts_with("HTTP/1.1 200"), "{r}");
    let seen = body(&r).to_ascii_lowercase();
    for field in ["upgrade:", "http2-settings:", "connection:"] {
        assert!(!seen.contains(field), "{field} reached the backend: {seen}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_fields_are_removed_in_both_directions() {
    let up = upstream("up");
    let proxy = Proxy::start("", &one_backend(&up));
    let r = raw(
        proxy.listen,
        b"GET /echo HTTP/1.1\r\nhost: x\r\nconnection: close, x-hop\r\nx-hop: secret\r\n\
          keep-alive: timeout=5\r\nproxy-connection: keep-alive\r\nte: gzip\r\nupgrade: foo/1\r\n\
          x-end: 1\r\n\r\n",
    )
    .unwrap();
    assert!(status_line(&r).starts_with("HTTP/1.1 200"), "{r}");
    let seen = body(&r).to_ascii_lowercase();
    for field in [
        "x-hop:",
        "keep-alive:",
        "proxy-connection:",
        "te:",
        "upgrade:",
        "connection:",
    ] {
        assert!(
            !seen.contains(field),
            "{field} reached the backend:\n{seen}"
        );
    }
    assert!(seen.contains("x-end: 1"), "{seen}");
    assert!(seen.contains("host: x"), "{seen}");

    // And back: the backend's hop-by-hop fields stop at the proxy.
    let r = raw(
        proxy.listen,
        b"GET /hop HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .unwrap();
    let head = r
        .split_once("\r\n\r\n")
        .map_or("", |(h, _)| h)
        .to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("x-end: 2"), "{head}");
    for field in ["x-up-hop:", "keep-alive:", "proxy-connection:"] {
        assert!(!head.contains(field), "{field} reached the client:\n{head}");
    }
    // The only Connection field the client sees is the proxy's own answer to its `close`.
    for line in head.lines().filter(|l| l.starts_with("connection:")) {
        assert_eq!(line.trim(), "connection: close", "{head}");
    }
}

/// Opens `n` client connections at once, each sending one request for `path`; returns the
/// status lines.
async fn many_clients(addr: std::net::SocketAddr, n: usize, path: &str) -> Vec<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let req = format!(
            "GET {path} HTTP/1.1\r\nhost: x\r\nx-user-id: u-{i}\r\nconnection: close\r\n\r\n"
        );
        tasks.spawn(async move {
            let io = async {
                let mut s = tokio::net::TcpStream::connect(addr).await?;
                s.write_all(req.as_bytes()).await?;
                let mut out = Vec::new();
                s.read_to_end(&mut out).await?;
                Ok::<_, std::io::Error>(
                    String::from_utf8_lossy(&out)
                        .lines()
                        .next()
                        .unwrap_or("")
                        .to_string(),
                )
            };
            match tokio::time::timeout(Duration::from_secs(30), io).await {
                Ok(Ok(line)) => line,
                Ok(Err(e)) => format!("io error: {e}"),
                Err(_) => "timed out".into(),
            }
        });
    }
    let mut lines = Vec::with_capacity(n);
    while let Some(r) = tasks.join_next().await {
        lines.push(r.unwrap());
    }
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_stay_within_the_bound() {
    let up = upstream("up");
    // Two workers (the harness's default), eight connections each at most.
    let proxy = Proxy::start("upstream_max_connections: 8", &one_backend(&up));
    let lines = many_clients(proxy.listen, 2000, "/slow?ms=5").await;
    let failed: Vec<&String> = lines
        .iter()
        .filter(|l| !l.starts_with("HTTP/1.1 200"))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of 2000 failed, e.g. {:?}\n{}",
        failed.len(),
        &failed[..failed.len().min(3)],
        proxy.log()
    );
    assert_eq!(up.served(), 2000);
    assert!(
        up.peak_connections() <= 16,
        "{} upstream connections open at once; the bound is 2 workers x 8",
        up.peak_connections()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_closing_pooled_connections_fails_no_request() {
    let up = closing_upstream("closer");
    let proxy = Proxy::start("", &one_backend(&up));
    let c = client();
    let mut failures = Vec::new();
    // This backend closes every connection right after its response, without saying so. One
    // request and a pause first: the proxy sees the close (as it would any backend's, soon)
    // and from then on treats the backend's reused connections as ones a close may race.
    let first = get(&c, &proxy.url("/"), None).await;
    assert_eq!(first.map(|r| r.status).ok(), Some(200));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let warm = get(&c, &proxy.url("/"), None).await;
    assert_eq!(warm.map(|r| r.status).ok(), Some(200));
    // Back to back (the close races the next request) and with pauses (the close has landed).
    for i in 0..300u32 {
        if i % 3 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        match get(&c, &proxy.url("/"), None).await {
            Ok(r) if r.status == 200 => {}
            Ok(r) => failures.push(format!("status {}", r.status)),
            Err(e) => failures.push(e),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 300 failed: {:?}\n{}",
        failures.len(),
        &failures[..failures.len().min(5)],
        proxy.log()
    );
    assert!(up.served() >= 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weight_flip_under_load_fails_nothing_and_starves_the_drained_backend() {
    let (canary, stable) = (upstream("canary"), upstream("stable"));
    let proxy = Proxy::start("", &canary_route("checkout", &canary, &stable, 50));
    let stop = Arc::new(AtomicBool::new(false));
    let loops = spawn_load(&proxy.url("/"), 4, &stop, Duration::from_secs(20));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(canary.served() > 0, "the canary took no traffic at 50 %");
    tokio::task::block_in_place(|| {
        proxy.reload("", &canary_route("checkout", &canary, &stable, 0), 2)
    });
    // Requests that picked the canary before the flip may still arrive; once none is in
    // flight, the canary must get nothing more while the load goes on.
    let gauge = r#"vireo_in_flight_requests{route="checkout",backend="canary"}"#;
    tokio::task::block_in_place(|| proxy.expect_metric(gauge, 0.0));
    let after_flip = canary.served();
    let stable_before = stable.served();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (total, failures) = finish_load(&stop, loops).await;
    assert!(
        failures.is_empty(),
        "{} of {total} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert_eq!(
        canary.served(),
        after_flip,
        "a request reached the canary at weight 0"
    );
    assert!(
        stable.served() > stable_before + 50,
        "the load did not go on after the flip"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_still_sending_a_request_body_is_not_reused() {
    use std::io::{Read, Write};
    let up = early_answering_upstream("early");
    // One worker, so the next request would find that connection in the same pool.
    let proxy = Proxy::start("threads: 1\nrequest_timeout: 2s", &one_backend(&up));
    // A large upload the backend refuses at once, while the client is still sending it.
    let mut upload = std::net::TcpStream::connect(proxy.listen).unwrap();
    upload
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    upload
        .write_all(b"POST /early HTTP/1.1\r\nhost: x\r\ncontent-length: 100000\r\n\r\n0123456789")
        .unwrap();
    let mut head = [0u8; 256];
    let n = upload.read(&mut head).unwrap();
    let head = String::from_utf8_lossy(&head[..n]).to_string();
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    // The upload's upstream connection is still busy with the body: requests meanwhile must
    // not be queued behind it (they would wait out request_timeout and get 504).
    for _ in 0..5 {
        let r = tokio::task::spawn_blocking({
            let addr = proxy.listen;
            move || {
                raw(
                    addr,
                    b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
                )
                .unwrap()
            }
        })
        .await
        .unwrap();
        assert!(status_line(&r).starts_with("HTTP/1.1 200"), "{r}");
    }
    drop(upload);
}
