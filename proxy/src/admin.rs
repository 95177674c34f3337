//! The admin server: `/live`, `/ready`, `/config`, `/slo?window=`, `/metrics`, and (when
//! enabled) `POST /shutdown`.
//!
//! `POST /shutdown` is for a Job's pod on Kubernetes before 1.29, where the proxy is an
//! ordinary container and the pod would run until it stopped: the Job's last command asks the
//! proxy to shut down gracefully, as SIGTERM does. Off unless `--shutdown-endpoint` is given
//! (the injector gives it to Jobs' pods only), and only from loopback — the pod itself — since
//! the admin port is usually open to Prometheus.
//!
//! Plain hyper on its own small runtime, apart from the request path's workers, so a scrape or
//! a slow `/slo` never competes with proxied traffic for a worker thread.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpListener;

use crate::slo::{MAX_WINDOW, MIN_WINDOW};
use crate::{Lifecycle, TableHandle};
pub use vireo_types::wire::{BackendSlo, SloReport};

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const CLASSIC: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the admin endpoints read.
pub struct AdminState {
    pub table: Arc<TableHandle>,
    pub lifecycle: Arc<Lifecycle>,
    /// `Some` when `POST /shutdown` is enabled: notified to begin the graceful shutdown.
    pub shutdown: Option<Arc<tokio::sync::Notify>>,
}

fn shutdown(
    state: &AdminState,
    method: &Method,
    peer: std::net::SocketAddr,
) -> Response<Full<Bytes>> {
    let Some(notify) = &state.shutdown else {
        return text(
            StatusCode::NOT_FOUND,
            "POST /shutdown is not enabled (vireo-proxy --shutdown-endpoint)\n",
        );
    };
    if method != Method::POST {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use POST\n");
    }
    if !peer.ip().to_canonical().is_loopback() {
        return text(
            StatusCode::FORBIDDEN,
            "POST /shutdown is answered on loopback only (from inside the pod)\n",
        );
    }
    tracing::info!(%peer, "POST /shutdown: shutting down");
    notify.notify_one();
    text(StatusCode::ACCEPTED, "shutting down\n")
}

/// Serves the admin API on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, state: Arc<AdminState>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(&state, req, peer)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "admin connection ended");
            }
        });
    }
}

fn handle(
    state: &AdminState,
    req: Request<Incoming>,
    peer: std::net::SocketAddr,
) -> Response<Full<Bytes>> {
    if req.uri().path() == "/shutdown" {
        return shutdown(state, req.method(), peer);
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
    }
    match req.uri().path() {
        "/live" => text(StatusCode::OK, "live\n"),
        "/ready" => {
            if state.lifecycle.is_ready() {
                text(StatusCode::OK, "ready\n")
            } else if state.lifecycle.is_shutting_down() {
                text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "starting\n")
            }
        }
        "/config" => {
            let table = state.table.load();
            json(
                StatusCode::OK,
                &serde_json::json!({ "version": table.version(), "config": &**table.config() }),
            )
        }
        "/slo" => match parse_window(req.uri().query()) {
            Ok(window) => json(StatusCode::OK, &slo_report(&state.table, window, false)),
            Err(msg) => json(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({ "error": msg }),
            ),
        },
        "/metrics" => {
            // Prometheus asks for OpenMetrics in Accept; anything else gets the classic text
            // format, as the Prometheus Go client does.
            let openmetrics = req.headers().get_all(header::ACCEPT).iter().any(|v| {
                v.to_str()
                    .is_ok_and(|v| v.contains("application/openmetrics-text"))
            });
            let text = state.table.metrics().encode();
            let (body, content_type) = if openmetrics {
                (text, OPENMETRICS)
            } else {
                (crate::metrics::to_classic_text(&text), CLASSIC)
            };
            Response::builder()
                .header(header::CONTENT_TYPE, content_type)
                .body(Full::new(Bytes::from(body)))
                .expect("static response parts are valid")
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; try /live /ready /config /slo?window=60s /metrics\n",
        ),
    }
}

/// `window=60s` (any humantime duration), 10 s to 10 min; default 60 s.
fn parse_window(query: Option<&str>) -> Result<Duration, String> {
    let raw = query
        .unwrap_or("")
        .split('&')
        .find_map(|p| p.strip_prefix("window="));
    let Some(raw) = raw else {
        return Ok(Duration::from_secs(60));
    };
    let d = humantime::parse_duration(raw)
        .map_err(|e| format!("window={raw:?}: {e} (examples: 30s, 5m)"))?;
    if d < MIN_WINDOW || d > MAX_WINDOW {
        return Err(format!("window={raw:?}: must be between 10s and 10m"));
    }
    Ok(d)
}

/// Every backend of the active table, plus any backend a reload removed that still has
/// requests in flight or in the window: that is how a drain is watched to its end.
pub fn slo_report(table: &TableHandle, window: Duration, histograms: bool) -> SloReport {
    let metrics = table.metrics();
    let now = metrics.now_ms(Instant::now());
    let active = table.load();
    let mut routes: BTreeMap<String, BTreeMap<String, BackendSlo>> = BTreeMap::new();
    for (route, backend, in_flight, slo) in metrics.backends_seen() {
        let configured = active
            .backends()
            .any(|(r, b)| r == route && b.name() == backend);
        let s = slo.snapshot(now, window);
        if !configured && in_flight == 0 && s.requests == 0 {
            continue;
        }
        routes.entry(route).or_default().insert(
            backend,
            BackendSlo {
                requests: s.requests,
                failures: s.failures,
                success_ratio: s.success_ratio(),
                latency_p50_s: s.latency_quantile(0.50),
                latency_p95_s: s.latency_quantile(0.95),
                latency_p99_s: s.latency_quantile(0.99),
                in_flight,
                latency_histogram: match histograms {
                    false => Vec::new(),
                    true => s
                        .latency
                        .iter()
                        .enumerate()
                        .filter(|(_, &n)| n > 0)
                        .map(|(i, &n)| (i as u32, n))
                        .collect(),
                },
            },
        );
    }
    SloReport {
        window_s: window.as_secs(),
        routes,
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("static response parts are valid")
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Full<Bytes>> {
    let body =
        serde_json::to_vec(value).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}").into_bytes());
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_parsing() {
        assert_eq!(parse_window(None), Ok(Duration::from_secs(60)));
        assert_eq!(
            parse_window(Some("window=5m")),
            Ok(Duration::from_secs(300))
        );
        assert_eq!(
            parse_window(Some("a=b&window=10s")),
            Ok(Duration::from_secs(10))
        );
        assert!(parse_window(Some("window=9s"))
            .unwrap_err()
            .contains("between"));
        assert!(parse_window(Some("window=11m")).is_err());
        assert!(parse_window(Some("window=soon"))
            .unwrap_err()
            .contains("soon"));
    }
}
