//! `vireo-testkit`: the HTTP backend the demo, the benches and the control plane's tests
//! serve as "the service" — stable and canary versions that say who answered (`x-version`)
//! and can turn faulty (slow, 500s) on demand.
//!
//! Real HTTP/1 on a real socket (hyper), in the caller's tokio runtime; stopping it closes
//! every connection, as a stopped canary's pods would.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
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
    tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let _ = stream.set_nodelay(true);
                    let faulty = faulty.clone();
                    conns.spawn(async move {
                        let svc = service_fn(move |_req| {
                            answer(version, faulty.load(Ordering::Relaxed))
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

async fn answer(
    version: &'static str,
    faulty: bool,
) -> Result<hyper::Response<Full<Bytes>>, std::convert::Infallible> {
    let mut status = 200;
    if faulty {
        tokio::time::sleep(Duration::from_millis(fastrand::u64(100..=400))).await;
        if fastrand::u32(0..100) < 20 {
            status = 500;
        }
    }
    Ok(hyper::Response::builder()
        .status(status)
        .header("x-version", version)
        .body(Full::new(Bytes::from(format!("hello from {version}\n"))))
        .expect("static response"))
}
