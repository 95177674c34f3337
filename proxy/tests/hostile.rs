//! Hostile HTTP/1.1 at the proxy: request smuggling and framing attacks against the real
//! binary, with a strict recording upstream behind it.
//!
//! For every case the proxy must either refuse (a 4xx, then the connection closes) or forward
//! one unambiguous message: one framing (a single Content-Length, or chunked alone), nothing
//! folded, no stray bytes turned into a request. Then a second client, whose request goes over
//! the same pooled upstream connection (one worker thread, so one pool), must get its own
//! answer: whatever the attack left behind did not reach the backend as a request.
//!
//! The README's "Hostile HTTP" table lists each case with what nginx and Envoy are documented
//! to do.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One message as the recording upstream parsed it.
#[derive(Debug, Clone)]
struct Seen {
    target: String,
    /// Why the message was not unambiguous, if it was not.
    ambiguous: Option<String>,
    #[allow(dead_code)] // shown in failure messages
    body: usize,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A strict HTTP/1.1 server: CRLF only, no folding, one framing; records what it parsed.
fn recording_upstream(log: Arc<Mutex<Vec<Seen>>>) -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(l).unwrap();
            loop {
                let Ok((s, _)) = l.accept().await else {
                    continue;
                };
                tokio::spawn(record(s, log.clone()));
            }
        });
    });
    addr
}

async fn record(mut s: tokio::net::TcpStream, log: Arc<Mutex<Vec<Seen>>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    // Reads until `buf` holds at least `n` bytes; false at EOF.
    macro_rules! fill {
        ($cond:expr) => {
            while !$cond {
                match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
        };
    }
    loop {
        fill!(find(&buf, b"\r\n\r\n").is_some());
        let end = find(&buf, b"\r\n\r\n").unwrap();
        let head: Vec<u8> = buf.drain(..end + 4).collect();
        let head = &head[..end];
        let mut problems = Vec::new();
        if head
            .iter()
            .any(|&b| b < 0x20 && b != b'\r' && b != b'\n' && b != b'\t')
        {
            problems.push("control byte".to_string());
        }
        let text = String::from_utf8_lossy(head).into_owned();
        if text.replace("\r\n", "").contains('\n') || text.replace("\r\n", "").contains('\r') {
            problems.push("bare CR or LF".into());
        }
        let mut lines = text.split("\r\n");
        let target = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .unwrap_or("")
            .to_string();
        let (mut lengths, mut codings) = (Vec::new(), Vec::new());
        for line in lines {
            if line.starts_with(' ') || line.starts_with('\t') {
                problems.push("folded line".into());
            }
            let Some((name, value)) = line.split_once(':') else {
                problems.push(format!("no colon: {line:?}"));
                continue;
            };
            if name != name.trim() {
                problems.push(format!("space in name {name:?}"));
            }
            match name.to_ascii_lowercase().as_str() {
                "content-length" => lengths.push(value.trim().to_string()),
                "transfer-encoding" => codings.push(value.trim().to_ascii_lowercase()),
                _ => {}
            }
        }
        if lengths.len() > 1 {
            problems.push(format!("{} Content-Length fields", lengths.len()));
        }
        if !lengths.is_empty() && !codings.is_empty() {
            problems.push("Content-Length and Transfer-Encoding".into());
        }
        if codings.len() > 1 || codings.iter().any(|c| c != "chunked") {
            problems.push(format!("Transfer-Encoding {codings:?}"));
        }
        let mut body = 0;
        if codings.first().map(String::as_str) == Some("chunked") {
            loop {
                fill!(find(&buf, b"\r\n").is_some());
                let at = find(&buf, b"\r\n").unwrap();
                let line: Vec<u8> = buf.drain(..at + 2).collect();
                let size = String::from_utf8_lossy(&line[..at]);
                let size = size.split(';').next().unwrap_or("").trim().to_string();
                let Ok(n) = usize::from_str_radix(&size, 16) else {
                    problems.push(format!("chunk size {size:?}"));
                    break;
                };
                if n == 0 {
                    fill!(find(&buf, b"\r\n").is_some());
                    let at = find(&buf, b"\r\n").unwrap();
                    buf.drain(..at + 2); // no trailers from the proxy
                    break;
                }
                fill!(buf.len() >= n + 2);
                buf.drain(..n + 2);
                body += n;
            }
        } else if let Some(n) = lengths.first().and_then(|l| l.parse::<usize>().ok()) {
            fill!(buf.len() >= n);
            buf.drain(..n);
            body = n;
        }
        let ambiguous = (!problems.is_empty()).then(|| problems.join("; "));
        log.lock().unwrap().push(Seen {
            target: target.clone(),
            ambiguous,
            body,
        });
        let answer = format!("seen {target}");
        let reply = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{answer}",
            answer.len()
        );
        if s.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Sends `bytes` on a fresh connection and reads until the proxy closes it or 0.7 s pass:
/// (what came back, whether the proxy closed the connection).
fn exchange(addr: SocketAddr, bytes: &[u8]) -> (String, bool) {
    let mut s = TcpStream::connect(addr).unwrap();
    // Refusals close at once; a forwarded exchange's keep-alive connection is given up after
    // a pause long enough for every answer to have arrived on loopback.
    s.set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let closed = loop {
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
    };
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

/// What a case must come to.
enum Expect {
    /// A 4xx, and the connection closed.
    Refused,
    /// Forwarded as unambiguous messages for exactly these targets, in order.
    Forwarded(&'static [&'static str]),
    /// Either outcome is acceptable (the body is broken after a valid head): no 2xx, and
    /// nothing ambiguous reaches the backend.
    NoSuccess,
}

struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    expect: Expect,
}

fn case(name: &'static str, bytes: &[u8], expect: Expect) -> Case {
    Case {
        name,
        bytes: bytes.to_vec(),
        expect,
    }
}

fn cases() -> Vec<Case> {
    use Expect::*;
    let big_head = format!(
        "GET /big HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let many_fields = format!(
        "GET /many HTTP/1.1\r\nhost: x\r\n{}\r\n",
        (0..120)
            .map(|i| format!("x-f{i}: 1\r\n"))
            .collect::<String>()
    );
    vec![
        case("CL.CL conflicting", b"POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello!", Refused),
        case("CL list of different values", b"POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: 5, 6\r\n\r\nhello!", Refused),
        case("CL repeated, same value", b"POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ncontent-length: 5\r\n\r\nhello", Forwarded(&["/a"])),
        case("CL signed", b"POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: +5\r\n\r\nhello", Refused),
        case("CL hexadecimal", b"POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: 0x5\r\n\r\nhello", Refused),
        case("CL overflowing", b"POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: 99999999999999999999999\r\n\r\nhello", Refused),
        case("CL.TE (length first)", b"POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", Forwarded(&["/a"])),
        case("TE.CL (coding first)", b"POST /a HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\ncontent-length: 4\r\n\r\n5\r\nhello\r\n0\r\n\r\n", Forwarded(&["/a"])),
        case("TE chunked then gzip", b"POST /a HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked, gzip\r\n\r\n0\r\n\r\n", Refused),
        case("TE gzip, chunked", b"POST /a HTTP/1.1\r\nhost: x\r\ntransfer-encoding: gzip, chunked\r\n\r\n0\r\n\r\n", Forwarded(&["/a"])),
        case("TE misspelt (xchunked)", b"POST /a HTTP/1.1\r\nhost: x\r\ntransfer-encoding: xchunked\r\n\r\n0\r\n\r\n", Refused),
        case("TE identity", b"POST /a HTTP/1.1\r\nhost: x\r\ntransfer-encoding: identity\r\ncontent-length: 5\r\n\r\nhello", Refused),
        case("TE upper case", b"POST /a HTTP/1.1\r\nhost: x\r\ntransfer-encoding: CHUNKED\r\n\r\n5\r\nhello\r\n0\r\n\r\n", Forwarded(&["/a"])),
        case("TE with a tab", b"POST /a HTTP/1.1\r\nhost: x\r\ntransfer-encoding:\tchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", Forwarded(&["/a"])),
        case("TE twice (chunked, chunked)", b"POST /a HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", Forwarded(&["/a"])),
        case("TE with space before the colon", b"POST /a HTTP/1.1\r\nhost: x\r\ntransfer-encoding : chunked\r\n\r\n0\r\n\r\n", Refused),
        case("TE in HTTP/1.0", b"POST /a HTTP/1.0\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n", Refused),
        case("TE folded (obs-fold)", b"POST /a HTTP/1.1\r\nhost: x\r\ntransfer-encoding:\r\n chunked\r\n\r\n0\r\n\r\n", Refused),
        case("obs-fold in any field", b"GET /a HTTP/1.1\r\nhost: x\r\nx-a: 1\r\n 2\r\n\r\n", Refused),
        case("bare LF line ends", b"GET /a HTTP/1.1\nhost: x\n\n", Forwarded(&["/a"])),
        case("bare CR in a value", b"GET /a HTTP/1.1\r\nhost: x\r\nx-a: 1\r2\r\n\r\n", Refused),
        case("control byte in a value", b"GET /a HTTP/1.1\r\nhost: x\r\nx-a: a\x01b\r\n\r\n", Refused),
        case("NUL in a value", b"GET /a HTTP/1.1\r\nhost: x\r\nx-a: a\x00b\r\n\r\n", Refused),
        case("space in a field name", b"GET /a HTTP/1.1\r\nhost: x\r\nx a: 1\r\n\r\n", Refused),
        case("space in the target", b"GET /a b HTTP/1.1\r\nhost: x\r\n\r\n", Refused),
        case("chunk size overflowing", b"POST /a HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nffffffffffffffffff1\r\nx\r\n0\r\n\r\n", NoSuccess),
        case("chunk size not hex", b"POST /a HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nx\r\n0\r\n\r\n", NoSuccess),
        case("chunk data longer than its size", b"POST /a HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n1\r\nxGET /smuggled HTTP/1.1\r\nhost: x\r\n\r\n0\r\n\r\n", NoSuccess),
        case("h2c upgrade on HTTP/1.1", b"GET /a HTTP/1.1\r\nhost: x\r\nconnection: Upgrade, HTTP2-Settings\r\nupgrade: h2c\r\nhttp2-settings: AAMAAABkAAQAAP__\r\n\r\n", Forwarded(&["/a"])),
        case("head over max_header_bytes", big_head.as_bytes(), Refused),
        case("more than 100 fields", many_fields.as_bytes(), Refused),
        case("pipelined requests", b"GET /p1 HTTP/1.1\r\nhost: x\r\n\r\nGET /p2 HTTP/1.1\r\nhost: x\r\n\r\n", Forwarded(&["/p1", "/p2"])),
        case("a request smuggled in a CL body", b"POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: 34\r\n\r\nGET /smuggled HTTP/1.1\r\nhost: x\r\n\r\n", Forwarded(&["/a"])),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attack_is_refused_or_forwarded_unambiguously_and_the_next_client_is_unaffected() {
    let log = Arc::new(Mutex::new(Vec::<Seen>::new()));
    let up = recording_upstream(log.clone());
    let route = format!(
        "  - name: r\n    split:\n      backends: [ {{ name: b, version: v1, addrs: [\"{up}\"], weight: 1 }} ]\n"
    );
    // One worker: every request shares one upstream pool, so a poisoned pooled connection
    // would serve the next client.
    let proxy = Proxy::start("threads: 1\nmax_header_bytes: 65536\n", &route);
    let mut failures = Vec::new();
    for c in cases() {
        log.lock().unwrap().clear();
        // A pooled upstream connection to be reused after the attack.
        let (warm, _) = exchange(
            proxy.listen,
            b"GET /warm HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        );
        assert!(warm.contains("seen /warm"), "{}: warm-up: {warm}", c.name);
        let (reply, closed) = exchange(proxy.listen, &c.bytes);
        let status = reply.lines().next().unwrap_or("").to_string();
        let code: u16 = status
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let (after, _) = exchange(
            proxy.listen,
            b"GET /after HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        );
        let seen = log.lock().unwrap().clone();
        let targets: Vec<&str> = seen.iter().map(|s| s.target.as_str()).collect();
        let mut fail = |why: String| {
            failures.push(format!(
                "{}: {why} (reply {status:?}; upstream saw {seen:?})",
                c.name
            ))
        };
        if !after.starts_with("HTTP/1.1 200") || !after.ends_with("seen /after") {
            fail(format!("the next client got {after:?}"));
        }
        if let Some(bad) = seen.iter().find(|s| s.ambiguous.is_some()) {
            fail(format!("an ambiguous message reached the backend: {bad:?}"));
        }
        let attack: Vec<&str> = targets
            .iter()
            .copied()
            .filter(|t| *t != "/warm" && *t != "/after")
            .collect();
        match c.expect {
            Expect::Refused => {
                if !(400..500).contains(&code) {
                    fail(format!("expected a 4xx, got {code}"));
                }
                if !closed {
                    fail("the connection stayed open after the refusal".into());
                }
                if !attack.is_empty() {
                    fail(format!("refused, yet the backend saw {attack:?}"));
                }
            }
            Expect::Forwarded(want) => {
                if attack != want {
                    fail(format!("the backend saw {attack:?}, not {want:?}"));
                }
                if !(200..300).contains(&code) {
                    fail(format!("expected the backend's 200, got {code}"));
                }
            }
            Expect::NoSuccess => {
                if (200..300).contains(&code) {
                    fail(format!("a broken body got {code}"));
                }
                let unexpected: BTreeSet<&str> =
                    attack.iter().copied().filter(|t| *t != "/a").collect();
                if !unexpected.is_empty() {
                    fail(format!(
                        "the backend saw requests it was not sent: {unexpected:?}"
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases().len(),
        failures.join("\n")
    );
}

/// Slowloris: a client that trickles its request head is cut off by the header-read timeout
/// (`header_read_timeout`), not held forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trickling_its_head_is_cut_off() {
    let log = Arc::new(Mutex::new(Vec::<Seen>::new()));
    let up = recording_upstream(log.clone());
    let route = format!(
        "  - name: r\n    split:\n      backends: [ {{ name: b, version: v1, addrs: [\"{up}\"], weight: 1 }} ]\n"
    );
    let proxy = Proxy::start("header_read_timeout: 2s\n", &route);
    let mut s = tokio::net::TcpStream::connect(proxy.listen).await.unwrap();
    s.write_all(b"GET /slow HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 1024];
    let mut closed = false;
    // One byte a second: never a whole head.
    for _ in 0..10 {
        if s.write_all(b"x").await.is_err() {
            closed = true;
            break;
        }
        match tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
            Ok(Ok(_)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Err(_) => {}
        }
    }
    assert!(closed, "the trickling client was never cut off");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    assert!(log.lock().unwrap().is_empty());
}
