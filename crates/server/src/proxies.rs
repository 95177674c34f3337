//! The data plane's API: the proxies' route tables (a watch stream, or the long poll of
//! proxies that predate it), their status reports, and the fleet as the control plane sees it.
//!
//! **The watch stream** (`GET /api/v1/proxy/watch?proxy=ID&since=V`) is how a fleet of
//! thousands scales, as xDS and Linkerd's destination streams do: one long-lived response per
//! proxy, `application/x-ndjson`, one line per table newer than the last one sent (coalesced:
//! a proxy that is slow to read gets the newest, not every one in between), and an empty line
//! every [`KEEPALIVE`] so either side notices a dead connection. Nothing is asked again after
//! a change, so a weight change costs one write per proxy. When a proxy's last stream closes it
//! is waited for a few seconds more at most (`vireo_core::fleet::CONNECTED_FOR`), not the
//! three keep-alive intervals a streaming proxy is otherwise given.
//!
//! **Status reports** (`POST /api/v1/proxy/status`) come when something changed (a table
//! applied or refused, a drain finished) and otherwise as keep-alives, spaced by the answer's
//! `report_every_ms`: the control plane widens the spacing with the fleet's size, so the
//! reports it handles per second stay bounded however many proxies there are.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use vireo_types::wire::StatusReport;

use vireo_core::spec::{FieldError, SpecError};
use vireo_engine::driver::{ApiError, Handle};
use vireo_engine::tables::HOLD;

use crate::error::ErrorResponse;

pub fn router() -> Router<Handle> {
    Router::new()
        .route("/api/v1/proxy/config", get(proxy_config))
        .route("/api/v1/proxy/watch", get(proxy_watch))
        .route("/api/v1/proxy/status", post(proxy_status))
        .route("/api/v1/proxies", get(proxies))
        .route("/api/v1/slo/{route}", get(slo_series))
}

#[derive(Deserialize)]
struct PollQuery {
    proxy: Option<String>,
    #[serde(default)]
    since: u64,
}

/// How often an idle watch stream carries an empty line.
pub const KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(15);

type Limits = std::sync::Arc<crate::limits::Limits>;

/// The proxy id of a poll or watch, and a slot among the [`crate::limits::MAX_POLLS`] it may
/// hold open.
fn hold_slot(
    q: &PollQuery,
    limits: &Limits,
) -> Result<(String, crate::limits::Held), Box<Response>> {
    let invalid = |reason: &str| {
        ApiError::Invalid(SpecError {
            errors: vec![FieldError {
                path: "proxy".into(),
                reason: reason.into(),
            }],
        })
        .into_response()
    };
    let id = q.proxy.clone().unwrap_or_default();
    if id.len() > 253 {
        return Err(Box::new(invalid("at most 253 characters")));
    }
    let Some(held) = limits.polls.try_hold(&id, crate::limits::MAX_POLLS) else {
        return Err(Box::new(crate::limits::too_many(format!(
            "proxy {id:?} already has {} long polls or watch streams open",
            crate::limits::MAX_POLLS
        ))));
    };
    if id.is_empty() {
        return Err(Box::new(invalid(
            "query parameter is required (the proxy's id)",
        )));
    }
    Ok((id, held))
}

/// Long poll: 200 with a newer table, or 304 after [`HOLD`]. At most
/// [`crate::limits::MAX_POLLS`] at once per proxy id.
async fn proxy_config(
    State(h): State<Handle>,
    Query(q): Query<PollQuery>,
    axum::Extension(limits): axum::Extension<Limits>,
) -> Response {
    let _held = match hold_slot(&q, &limits) {
        Ok((_, held)) => held,
        Err(r) => return *r,
    };
    match h.shared.tables.wait_newer(q.since, HOLD).await {
        Some(update) => Json(&*update).into_response(),
        None => StatusCode::NOT_MODIFIED.into_response(),
    }
}

/// While a watch stream is open its proxy counts as connected; when its last one closes
/// (the proxy went away, or the connection broke) the proxy is disconnected at once.
struct Watching {
    id: String,
    handle: Handle,
    limits: Limits,
    held: Option<(crate::limits::Held, crate::limits::Held)>,
}

impl Drop for Watching {
    fn drop(&mut self) {
        self.held = None;
        if self.limits.watches.held(&self.id) == 0 {
            self.handle.shared.disconnected(&self.id);
        }
    }
}

/// The watch stream: every table newer than `since` as a JSON line, as it is published.
async fn proxy_watch(
    State(h): State<Handle>,
    Query(q): Query<PollQuery>,
    axum::Extension(limits): axum::Extension<Limits>,
) -> Response {
    let (id, poll) = match hold_slot(&q, &limits) {
        Ok(slot) => slot,
        Err(r) => return *r,
    };
    let Some(watch) = limits.watches.try_hold(&id, crate::limits::MAX_POLLS) else {
        return crate::limits::too_many(format!("proxy {id:?} has too many watch streams open"));
    };
    let rx = h.shared.tables.subscribe();
    let watching = Watching {
        id,
        handle: h.clone(),
        limits: limits.clone(),
        held: Some((poll, watch)),
    };
    let state = (rx, q.since, watching);
    let lines = futures_util::stream::unfold(state, |(mut rx, mut sent, watching)| async move {
        loop {
            let current = rx.borrow_and_update().clone();
            // Version 0 (nothing published yet) is never sent: a fresh control plane must not
            // wipe a proxy's routes.
            if current.version > 0 && current.version != sent {
                sent = current.version;
                let line = watching.handle.shared.tables.line(&current);
                return Some((
                    Ok::<_, std::convert::Infallible>(line),
                    (rx, sent, watching),
                ));
            }
            match tokio::time::timeout(KEEPALIVE, rx.changed()).await {
                Ok(Ok(())) => continue,
                // The control plane is shutting down.
                Ok(Err(_)) => return None,
                Err(_) => {
                    let keepalive = Bytes::from_static(b"\n");
                    return Some((Ok(keepalive), (rx, sent, watching)));
                }
            }
        }
    });
    Response::builder()
        .header(axum::http::header::CONTENT_TYPE, "application/x-ndjson")
        .header(axum::http::header::CACHE_CONTROL, "no-store")
        .body(axum::body::Body::from_stream(lines))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// A status report. The answer says when the next keep-alive report is due:
/// `{"report_every_ms": N}`.
async fn proxy_status(
    State(h): State<Handle>,
    axum::Extension(limits): axum::Extension<Limits>,
    body: Bytes,
) -> Response {
    match serde_json::from_slice::<StatusReport>(&body) {
        Ok(report) if !report.proxy.is_empty() => {
            let streaming = limits.watches.held(&report.proxy) > 0;
            let every = h.shared.report(report, streaming);
            Json(serde_json::json!({ "report_every_ms": every })).into_response()
        }
        Ok(_) => ApiError::Invalid(SpecError {
            errors: vec![FieldError {
                path: "proxy".into(),
                reason: "must not be empty".into(),
            }],
        })
        .into_response(),
        Err(e) => ApiError::Invalid(SpecError {
            errors: vec![FieldError {
                path: String::new(),
                reason: format!("not a status report: {e}"),
            }],
        })
        .into_response(),
    }
}

/// The connected proxies and the version each has applied.
#[derive(serde::Deserialize)]
struct SeriesQuery {
    /// Milliseconds since the epoch; default: everything kept (30 minutes).
    since: Option<u64>,
}

/// `GET /api/v1/slo/{route}[?since=MS]`: the recent SLO series of each backend of a route,
/// the connected proxies' aggregate over their 60 s window, a sample every 2 s.
async fn slo_series(
    State(h): State<Handle>,
    axum::extract::Path(route): axum::extract::Path<String>,
    Query(q): Query<SeriesQuery>,
) -> Response {
    let backends = h
        .shared
        .slo_series
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .route(&route, q.since.unwrap_or(0));
    Json(serde_json::json!({
        "route": route,
        "everyMs": vireo_core::fleet::series::EVERY,
        "windowS": 60,
        "backends": backends,
    }))
    .into_response()
}

/// A proxy's own figures for the console: route → backend → requests, failures, success
/// ratio and p95 over its default window (the histograms stay out).
fn slo_view(slo: &vireo_types::wire::SloReport) -> serde_json::Value {
    let routes: serde_json::Map<String, serde_json::Value> = slo
        .routes
        .iter()
        .map(|(route, backends)| {
            let backends: serde_json::Map<String, serde_json::Value> = backends
                .iter()
                .map(|(b, s)| {
                    let v = serde_json::json!({
                        "requests": s.requests,
                        "failures": s.failures,
                        "successRatio": s.success_ratio,
                        "latencyP95S": s.latency_p95_s,
                    });
                    (b.clone(), v)
                })
                .collect();
            (route.clone(), backends.into())
        })
        .collect();
    serde_json::json!({ "windowS": slo.window_s, "routes": routes })
}

async fn proxies(State(h): State<Handle>) -> Response {
    let now = h.shared.clock.now_ms();
    let fleet = h.shared.fleet.read().unwrap_or_else(|e| e.into_inner());
    let items: Vec<_> = fleet
        .connected(now)
        .map(|r| {
            serde_json::json!({
                "proxy": r.proxy,
                "appliedVersion": r.applied_version,
                "inFlight": r.in_flight,
                "rejected": r.rejected,
                // Its own figures: route → backend → requests, failures, success ratio and
                // latency quantiles over the proxy's default window.
                "slo": slo_view(&r.slo),
                "lastReportMs": fleet.reported_at(&r.proxy),
            })
        })
        .collect();
    Json(serde_json::json!({
        "tableVersion": h.shared.tables.current().version,
        "items": items,
    }))
    .into_response()
}
