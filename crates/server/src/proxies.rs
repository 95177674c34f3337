//! The data plane's API: the proxies' long poll for route tables and their heartbeats, and
//! the fleet as the control plane sees it.

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
        .route("/api/v1/proxy/status", post(proxy_status))
        .route("/api/v1/proxies", get(proxies))
}

#[derive(Deserialize)]
struct PollQuery {
    proxy: Option<String>,
    #[serde(default)]
    since: u64,
}

/// Long poll: 200 with a newer table, or 304 after [`HOLD`]. At most
/// [`crate::limits::MAX_POLLS`] at once per proxy id.
async fn proxy_config(
    State(h): State<Handle>,
    Query(q): Query<PollQuery>,
    axum::Extension(limits): axum::Extension<std::sync::Arc<crate::limits::Limits>>,
) -> Response {
    let id = q.proxy.clone().unwrap_or_default();
    if id.len() > 253 {
        return ApiError::Invalid(SpecError {
            errors: vec![FieldError {
                path: "proxy".into(),
                reason: "at most 253 characters".into(),
            }],
        })
        .into_response();
    }
    let Some(_held) = limits.polls.try_hold(&id, crate::limits::MAX_POLLS) else {
        return crate::limits::too_many(format!(
            "proxy {id:?} already has {} long polls open",
            crate::limits::MAX_POLLS
        ));
    };
    if q.proxy.as_deref().is_none_or(str::is_empty) {
        return ApiError::Invalid(SpecError {
            errors: vec![FieldError {
                path: "proxy".into(),
                reason: "query parameter is required (the proxy's id)".into(),
            }],
        })
        .into_response();
    }
    match h.shared.tables.wait_newer(q.since, HOLD).await {
        Some(update) => Json(&*update).into_response(),
        None => StatusCode::NOT_MODIFIED.into_response(),
    }
}

async fn proxy_status(State(h): State<Handle>, body: Bytes) -> Response {
    match serde_json::from_slice::<StatusReport>(&body) {
        Ok(report) if !report.proxy.is_empty() => {
            h.shared.heartbeat(report);
            StatusCode::NO_CONTENT.into_response()
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
            })
        })
        .collect();
    Json(serde_json::json!({
        "tableVersion": h.shared.tables.current().version,
        "items": items,
    }))
    .into_response()
}
