//! `vireo-testkit`: the HTTP backend the demo, the benches (`example-backend`) and the control
//! plane's tests serve as "the service" — stable and canary versions that say who answered
//! (`x-version` and `x-backend`, body `hello from NAME`) and can turn faulty (slow, 500s) on
//! demand. `/status/NNN` answers with that status, `/slow?ms=N` after N ms (at most a minute).
//!
//! Real HTTP/1 on a real socket (hyper), in the caller's tokio runtime; stopping it closes
//! every connection, as a stopped canary's pods would.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::HeaderValue;
use hyper::service::service_fn;
use hyper::StatusCode;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

/// A running in-process backend.
pub struct Backend {
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
}

impl Backend {
    /// Stops accepting and closes every connection (their tasks are aborted).
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }
}

/// Serves `version` on `listener`: 200 with `x-version`, or, when `faulty`, 100–400 ms late
/// and 500 for about one request in five.
pub fn spawn_backend(
    listener: std::net::TcpListener,
    version: &'static str,
    faulty: bool,
) -> std::io::Result<Backend> {
    spawn_backend_with(listener, version, Arc::new(AtomicBool::new(faulty)))
}

/// [`spawn_backend`], faulty while `faulty` is set (it can change while it runs).
pub fn spawn_backend_with(
    listener: std::net::TcpListener,
    version: &'static str,
    faulty: Arc<AtomicBool>,
) -> std::io::Result<Backend> {
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let (stop, mut stopped) = watch::channel(false);
    let body = Bytes::from(format!("hello from {version}\n"));
    tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let _ = stream.set_nodelay(true);
                    let faulty = faulty.clone();
                    let body = body.clone();
                    conns.spawn(async move {
                        let svc = service_fn(move |req| {
                            answer(version, body.clone(), faulty.load(Ordering::Relaxed), req)
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                    while conns.try_join_next().is_some() {}
                }
                _ = stopped.wait_for(|&s| s) => break,
            }
        }
        // Dropping `conns` aborts every connection; dropping the listener stops accepting.
    });
    Ok(Backend { addr, stop })
}

async fn answer<B>(
    version: &'static str,
    body: Bytes,
    faulty: bool,
    req: hyper::Request<B>,
) -> Result<hyper::Response<Full<Bytes>>, std::convert::Infallible> {
    let mut status = StatusCode::OK;
    let path = req.uri().path();
    if let Some(code) = path.strip_prefix("/status/") {
        status = code
            .parse()
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
            .unwrap_or(StatusCode::BAD_REQUEST);
    } else if path == "/slow" {
        let ms = req
            .uri()
            .query()
            .and_then(|q| q.strip_prefix("ms="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(100u64);
        tokio::time::sleep(Duration::from_millis(ms.min(60_000))).await;
    }
    if faulty {
        tokio::time::sleep(Duration::from_millis(fastrand::u64(100..=400))).await;
        if fastrand::u32(0..100) < 20 {
            status = StatusCode::INTERNAL_SERVER_ERROR;
        }
    }
    let mut resp = hyper::Response::new(Full::new(body));
    *resp.status_mut() = status;
    let name = HeaderValue::from_static(version);
    resp.headers_mut().insert("x-version", name.clone());
    resp.headers_mut().insert("x-backend", name);
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
        let http =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<Full<Bytes>>();
        let uri: hyper::Uri = format!("http://{addr}{path}").parse().unwrap();
        let resp = http.get(uri).await.unwrap();
        let status = resp.status().as_u16();
        let version = resp.headers()["x-version"].to_str().unwrap().to_string();
        use http_body_util::BodyExt;
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, version, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn it_says_who_answered_and_obeys_the_test_paths() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let b = spawn_backend(l, "v2", false).unwrap();
        assert_eq!(
            get(b.addr, "/").await,
            (200, "v2".into(), "hello from v2\n".into())
        );
        assert_eq!(get(b.addr, "/status/503").await.0, 503);
        assert_eq!(get(b.addr, "/status/abc").await.0, 400);
        let started = std::time::Instant::now();
        assert_eq!(get(b.addr, "/slow?ms=150").await.0, 200);
        assert!(started.elapsed() >= Duration::from_millis(150));
        b.stop();
    }

    #[tokio::test]
    async fn a_faulty_backend_fails_some_requests_slowly() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let faulty = Arc::new(AtomicBool::new(true));
        let b = spawn_backend_with(l, "v2", faulty.clone()).unwrap();
        // 40 at once: about 8 fail (none failing has a chance of 0.8^40, about 1 in 7 500).
        let started = std::time::Instant::now();
        let mut requests = tokio::task::JoinSet::new();
        for _ in 0..40 {
            requests.spawn(get(b.addr, "/"));
        }
        let mut failed = 0;
        while let Some(r) = requests.join_next().await {
            failed += u32::from(r.unwrap().0 == 500);
        }
        assert!(
            started.elapsed() >= Duration::from_millis(100),
            "at least 100 ms late"
        );
        assert!(
            (1..40).contains(&failed),
            "about one in five fails: {failed} of 40"
        );
        faulty.store(false, Ordering::Relaxed);
        assert_eq!(get(b.addr, "/").await.0, 200);
        b.stop();
    }
}
