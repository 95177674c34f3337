//! The HTTP API (`shared/spec/control.md`, "API"): axum routes over the driver's [`Handle`].
//!
//! Errors are JSON `{"error": "...", "fields": [{"path", "reason"}]}`: 400 for a spec that does
//! not parse or validate (every field error, with its path), 404 for an unknown rollout, 409 for
//! an action the phase does not allow (the reason names the phase) or a rollout that cannot be
//! replaced yet. Specs are accepted as YAML or JSON whatever the content type says.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use vireo_types::wire::StatusReport;

use crate::driver::{ApiError, Handle};
use crate::tables::HOLD;
use vireo_core::analysis::AnalysisTemplate;
use vireo_core::rollout::Action;
use vireo_core::spec::{FieldError, Rollout, SpecError};

/// Specs and heartbeats are small; anything bigger is a mistake.
const BODY_LIMIT: usize = 1 << 20;

pub fn router(handle: Handle) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/", get(console))
        .route("/api/v1/rollouts", post(apply_rollout).get(list_rollouts))
        .route("/api/v1/rollouts/{name}", get(get_rollout))
        .route("/api/v1/rollouts/{name}/timeline", get(timeline))
        .route(
            "/api/v1/rollouts/{name}/schedule",
            post(set_schedule).delete(cancel_schedule),
        )
        .route("/api/v1/rollouts/{name}/{action}", post(act))
        .route("/api/v1/analysistemplates", post(apply_template))
        .route("/api/v1/proxy/config", get(proxy_config))
        .route("/api/v1/proxy/status", post(proxy_status))
        .route("/api/v1/proxies", get(proxies))
        .route("/api/v1/rollouts/{name}/evidence", get(evidence_bundle))
        .route("/api/v1/log/checkpoint", get(log_checkpoint))
        .route("/api/v1/log/entries/{index}", get(log_entry))
        .route("/api/v1/log/consistency", get(log_consistency))
        .route("/api/v1/replays", post(replay).get(replays))
        .route("/api/v1/attestations", post(upload_attestation))
        .route("/api/v1/events", get(list_events).post(ingest_events))
        .route("/api/v1/events/stream", get(stream_events))
        .route("/api/v1/dora", get(dora))
        .merge(crate::ofrep::router())
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(handle)
}

/// The console: a static page polling the API (no build step, no assets to serve).
async fn console() -> axum::response::Html<&'static str> {
    axum::response::Html(include_str!("console.html"))
}

#[derive(Serialize)]
struct ErrorBody {
    error: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    fields: Vec<FieldError>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, fields) = match &self {
            ApiError::Invalid(e) => (StatusCode::BAD_REQUEST, e.errors.clone()),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, Vec::new()),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, Vec::new()),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, Vec::new()),
        };
        let error = match &self {
            ApiError::Invalid(e) => e
                .errors
                .iter()
                .map(|f| f.to_string())
                .collect::<Vec<_>>()
                .join("; "),
            other => other.to_string(),
        };
        (status, Json(ErrorBody { error, fields })).into_response()
    }
}

fn text(body: &Bytes) -> Result<&str, ApiError> {
    std::str::from_utf8(body).map_err(|e| {
        ApiError::Invalid(SpecError {
            errors: vec![FieldError {
                path: String::new(),
                reason: format!("body is not UTF-8: {e}"),
            }],
        })
    })
}

async fn apply_rollout(State(h): State<Handle>, body: Bytes) -> Response {
    let rollout = match text(&body).and_then(|t| Rollout::parse(t).map_err(ApiError::Invalid)) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    match h.apply_rollout(rollout).await {
        Ok(v) => (StatusCode::CREATED, Json(v)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn apply_template(State(h): State<Handle>, body: Bytes) -> Response {
    let template =
        match text(&body).and_then(|t| AnalysisTemplate::parse(t).map_err(ApiError::Invalid)) {
            Ok(t) => t,
            Err(e) => return e.into_response(),
        };
    let name = template.metadata.name.clone();
    match h.apply_template(template).await {
        Ok(()) => (
            StatusCode::CREATED,
            Json(serde_json::json!({ "analysisTemplate": name })),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

async fn list_rollouts(State(h): State<Handle>) -> Response {
    match h.list().await {
        Ok(v) => Json(serde_json::json!({ "items": v })).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn get_rollout(State(h): State<Handle>, Path(name): Path<String>) -> Response {
    match h.get(&name).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn timeline(State(h): State<Handle>, Path(name): Path<String>) -> Response {
    match h.timeline(&name).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn set_schedule(State(h): State<Handle>, Path(name): Path<String>, body: Bytes) -> Response {
    let parsed = text(&body).and_then(|t| {
        vireo_types::config::parse_document::<vireo_core::schedule::Schedule>(t)
            .map_err(ApiError::Invalid)
    });
    let schedule = match parsed {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    match h.schedule(&name, Some(schedule)).await {
        Ok(()) => match h.get(&name).await {
            Ok(v) => (StatusCode::CREATED, Json(v)).into_response(),
            // Scheduled before the rollout is applied: fine.
            Err(ApiError::NotFound(_)) => (
                StatusCode::CREATED,
                Json(serde_json::json!({ "scheduled": name })),
            )
                .into_response(),
            Err(e) => e.into_response(),
        },
        Err(e) => e.into_response(),
    }
}

async fn cancel_schedule(State(h): State<Handle>, Path(name): Path<String>) -> Response {
    match h.schedule(&name, None).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
struct ActQuery {
    #[serde(default)]
    full: bool,
}

/// Who is acting: the `X-Vireo-Actor` header (the CLI sends `$VIREO_ACTOR`, else
/// `$USER@host`), else the `X-Remote-User` an authenticating proxy in front sets, else
/// "anonymous". There is no authentication of its own yet: this names, it does not prove.
pub(crate) fn actor(headers: &axum::http::HeaderMap) -> String {
    ["x-vireo-actor", "x-remote-user"]
        .iter()
        .find_map(|h| headers.get(*h)?.to_str().ok().filter(|v| !v.is_empty()))
        .map(|v| v.chars().take(200).collect())
        .unwrap_or_else(|| "anonymous".into())
}

async fn act(
    State(h): State<Handle>,
    Path((name, action)): Path<(String, String)>,
    Query(q): Query<ActQuery>,
    headers: axum::http::HeaderMap,
) -> Response {
    let action = match (action.as_str(), q.full) {
        ("pause", _) => Action::Pause,
        ("resume", _) => Action::Resume,
        ("promote", false) => Action::Promote,
        ("promote", true) => Action::PromoteFull,
        ("abort", _) => Action::Abort,
        ("retry", _) => Action::Retry,
        ("approve", _) => Action::Approve,
        ("rollback", _) => Action::Rollback,
        (other, _) => {
            return ApiError::NotFound(format!(
            "no action {other:?}: use pause, resume, promote (?full=true), abort, retry, approve or rollback"
        ))
            .into_response()
        }
    };
    match h.act(&name, action, &actor(&headers)).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
struct PollQuery {
    proxy: Option<String>,
    #[serde(default)]
    since: u64,
}

/// Long poll: 200 with a newer table, or 304 after [`HOLD`].
async fn proxy_config(State(h): State<Handle>, Query(q): Query<PollQuery>) -> Response {
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
    let now = crate::driver::now_ms();
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

/// Serves the API on `listener` until the future is dropped.
pub async fn serve(listener: tokio::net::TcpListener, handle: Handle) -> std::io::Result<()> {
    // Nothing but the long poll (held at most HOLD) takes long; a stuck handler gets 408.
    let app = router(handle).layer(tower_http::timeout::TimeoutLayer::with_status_code(
        StatusCode::REQUEST_TIMEOUT,
        HOLD + Duration::from_secs(10),
    ));
    axum::serve(listener, app.into_make_service()).await
}

/// `GET /api/v1/rollouts/{name}/evidence`: the rollout's evidence bundle (`.tar.gz`).
async fn evidence_bundle(State(h): State<Handle>, Path(name): Path<String>) -> Response {
    let files = h
        .with_store(move |store| Ok(store.evidence_files(&name)?))
        .await;
    match files {
        Ok((files, generation, origin, rollout)) => {
            let mut out = Vec::new();
            match vireo_evidence::bundle::write(files, &rollout, generation, &origin, &mut out) {
                Ok(()) => ([(http::header::CONTENT_TYPE, "application/gzip")], out).into_response(),
                Err(e) => ApiError::Internal(e).into_response(),
            }
        }
        Err(e) => e.into_response(),
    }
}

/// `GET /api/v1/log/checkpoint`: the log's signed checkpoint (a C2SP signed note).
async fn log_checkpoint(State(h): State<Handle>) -> Response {
    match h.with_store(|store| Ok(store.log_checkpoint()?)).await {
        Ok(note) => (
            [(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            note,
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// `GET /api/v1/log/entries/{index}`: the envelope and its receipt (C2SP tlog-proof).
async fn log_entry(State(h): State<Handle>, Path(index): Path<String>) -> Response {
    let Ok(index) = index.parse::<u64>() else {
        return bad_request(format!("entry index {index:?} is not a number"));
    };
    let found = h.with_store(move |store| Ok(store.log_entry(index)?)).await;
    match found {
        Ok(Some((entry, receipt))) => Json(serde_json::json!({
            "index": entry.index,
            "kind": entry.kind,
            "rollout": entry.rollout,
            "decisionId": entry.decision,
            "envelope": serde_json::from_slice::<serde_json::Value>(&entry.entry).unwrap_or_default(),
            "receipt": receipt.to_text(),
        }))
        .into_response(),
        Ok(None) => ApiError::NotFound(format!("no log entry {index}")).into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(serde::Deserialize)]
struct Sizes {
    from: u64,
    to: u64,
}

/// `GET /api/v1/log/consistency?from=N&to=M`: RFC 9162 consistency proof between two sizes.
async fn log_consistency(
    State(h): State<Handle>,
    q: Result<axum::extract::Query<Sizes>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(axum::extract::Query(Sizes { from, to })) = q else {
        return bad_request("expected ?from=N&to=M (tree sizes)".into());
    };
    let proof = h
        .with_store(move |store| Ok(store.log_consistency(from, to)?))
        .await;
    let b64 = vireo_evidence::dsse::b64;
    match proof {
        Ok(Some((root1, root2, proof))) => Json(serde_json::json!({
            "from": from,
            "to": to,
            "root1": b64(&root1),
            "root2": b64(&root2),
            "proof": proof.iter().map(|h| b64(h)).collect::<Vec<_>>(),
        }))
        .into_response(),
        Ok(None) => bad_request(format!(
            "sizes {from} → {to}: need 0 < from ≤ to ≤ the log's size"
        )),
        Err(e) => e.into_response(),
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReplayRequest {
    decision_id: String,
}

/// `POST /api/v1/replays` `{"decisionId": …}`: recompute a recorded verdict.
async fn replay(State(h): State<Handle>, body: Bytes) -> Response {
    let req: ReplayRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad_request(format!("expected {{\"decisionId\": \"…\"}}: {e}")),
    };
    let outcome = h
        .with_store(move |store| {
            let statement = store.decision(&req.decision_id)?.ok_or_else(|| {
                ApiError::NotFound(format!("no recorded decision {:?}", req.decision_id))
            })?;
            let outcome =
                vireo_evidence::replay::replay_statement(&statement).map_err(ApiError::Internal)?;
            store.put_replay(&outcome, crate::driver::now_ms())?;
            Ok(outcome)
        })
        .await;
    match outcome {
        Ok(o) => Json(o).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /api/v1/attestations`: a DSSE envelope carrying SLSA Provenance v1 for an image
/// (what `vireo attest provenance` writes). It is logged and filed under its subjects'
/// digests; the gate judges its signature and builder. 201 when new, 200 when already on file.
async fn upload_attestation(State(h): State<Handle>, body: Bytes) -> Response {
    let envelope: vireo_evidence::dsse::Envelope = match serde_json::from_slice(&body) {
        Ok(e) => e,
        Err(e) => {
            return bad_request(format!(
                "expected a DSSE envelope {{payload, payloadType, signatures}}: {e}"
            ))
        }
    };
    let result = h
        .with_store(move |store| Ok(store.put_attestation(&envelope, crate::driver::now_ms())?))
        .await;
    match result {
        Ok(Ok(filed)) => (
            if filed.new {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            },
            Json(serde_json::json!({
                "logIndex": filed.log_index,
                "subjects": filed.subjects.iter().map(|d| format!("sha256:{d}")).collect::<Vec<_>>(),
                "new": filed.new,
            })),
        )
            .into_response(),
        Ok(Err(reason)) => bad_request(format!("not SLSA provenance: {reason}")),
        Err(e) => e.into_response(),
    }
}

/// Runs a read of the event log on a blocking thread with a connection of its own, off the
/// driver (whose store is for writes).
async fn read_log<T: Send + 'static>(
    h: &Handle,
    f: impl FnOnce(&rusqlite::Connection) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let db = h.shared.db.clone();
    tokio::task::spawn_blocking(move || {
        let conn = vireo_store::events::open(&db).map_err(|e| ApiError::Internal(e.to_string()))?;
        f(&conn)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
}

/// `GET /api/v1/events?type&source&subject&since&until&after&limit`: one page, in log order;
/// `next` is the `after` of the next page.
async fn list_events(
    State(h): State<Handle>,
    Query(f): Query<vireo_store::events::Filter>,
) -> Response {
    let page = read_log(&h, move |conn| {
        vireo_store::events::query(conn, &f).map_err(|reason| {
            ApiError::Invalid(SpecError {
                errors: vec![FieldError {
                    path: "query".into(),
                    reason,
                }],
            })
        })
    })
    .await;
    match page {
        Ok(events) => {
            let next = events.last().map(|e| e.seq);
            Json(serde_json::json!({"events": events, "next": next})).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// `POST /api/v1/events`: CloudEvents in structured mode (`application/cloudevents+json`, or
/// JSON with `specversion`), batched (`application/cloudevents-batch+json`), or binary mode
/// (`ce-*` headers). 201 when anything was new, 200 when all were already stored (receivers
/// dedupe on source + id); 400 names the attribute of the first invalid event. Times are stored
/// in UTC (`…Z`); an event without `time` gets the time it arrived. This control plane's own
/// sources (`/vireo/<instance>/…`) cannot be ingested.
async fn ingest_events(
    State(h): State<Handle>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    use vireo_core::events::{from_binary, CloudEvent, EventError};
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let parsed: Result<Vec<CloudEvent>, (Option<usize>, EventError)> =
        if headers.contains_key("ce-specversion") {
            from_binary(&headers, &body)
                .map(|e| vec![e])
                .map_err(|e| (None, e))
        } else {
            match serde_json::from_slice::<serde_json::Value>(&body) {
                Err(e) => return bad_request(format!("the body is not JSON: {e}")),
                Ok(serde_json::Value::Array(items))
                    if !content_type.starts_with("application/cloudevents+json") =>
                {
                    items
                        .into_iter()
                        .enumerate()
                        .map(|(i, v)| CloudEvent::from_json(v).map_err(|e| (Some(i), e)))
                        .collect()
                }
                Ok(v) => CloudEvent::from_json(v)
                    .map(|e| vec![e])
                    .map_err(|e| (None, e)),
            }
        };
    let own = format!("/vireo/{}/", h.shared.instance);
    let checked = parsed.and_then(|events| {
        let now = crate::driver::now_ms();
        events
            .into_iter()
            .enumerate()
            .map(|(i, mut e)| {
                if e.source.starts_with(&own) {
                    return Err((
                        Some(i),
                        EventError {
                            attribute: "source".into(),
                            reason: format!("{own}… is this control plane's own source"),
                        },
                    ));
                }
                e.normalize_time(now);
                Ok(e)
            })
            .collect()
    });
    let events = match checked {
        Ok(e) => e,
        Err((index, e)) => {
            let at = index.map(|i| format!("event [{i}]: ")).unwrap_or_default();
            return (
                StatusCode::BAD_REQUEST,
                Json(serde_json::json!({
                    "error": format!("{at}{e}"), "attribute": e.attribute, "index": index,
                })),
            )
                .into_response();
        }
    };
    match h.ingest(events).await {
        Ok((new, duplicates)) => (
            if new > 0 {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            },
            Json(serde_json::json!({"accepted": new, "duplicates": duplicates})),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
struct StreamQuery {
    #[serde(default, rename = "type")]
    ty: Option<String>,
    #[serde(default)]
    after: Option<u64>,
}

/// `GET /api/v1/events/stream`: server-sent events. Each SSE `id` is the event's `seq`; a
/// client reconnecting with `Last-Event-ID` (or `?after=`) gets everything after it, in order;
/// without one it gets events from now on. `?type=` filters. The follower reads the log itself
/// (its own connection, pages of 500) and waits for the next commit when caught up, so no
/// event is skipped however far behind it is.
async fn stream_events(
    State(h): State<Handle>,
    Query(q): Query<StreamQuery>,
    headers: axum::http::HeaderMap,
) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use futures_util::stream;
    use std::collections::VecDeque;
    let rx = h.shared.latest_event.subscribe();
    let from = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .or(q.after)
        .unwrap_or(*rx.borrow());
    struct Follower {
        rx: tokio::sync::watch::Receiver<u64>,
        last: u64,
        ty: Option<String>,
        db: std::path::PathBuf,
        conn: Option<rusqlite::Connection>,
        buffer: VecDeque<vireo_store::events::Stored>,
    }
    let start = Follower {
        rx,
        last: from,
        ty: q.ty,
        db: h.shared.db.clone(),
        conn: None,
        buffer: VecDeque::new(),
    };
    let events = stream::unfold(start, |mut f| async move {
        loop {
            if let Some(e) = f.buffer.pop_front() {
                f.last = e.seq;
                let ev = Event::default()
                    .id(e.seq.to_string())
                    .event(e.event.ty.clone())
                    .json_data(&e.event)
                    .unwrap_or_default();
                return Some((Ok::<_, std::convert::Infallible>(ev), f));
            }
            // Mark what we have seen before reading, so a commit during the read wakes us.
            f.rx.borrow_and_update();
            let (conn, db, last, ty) = (f.conn.take(), f.db.clone(), f.last, f.ty.clone());
            let read = tokio::task::spawn_blocking(move || {
                let conn = match conn {
                    Some(c) => c,
                    None => vireo_store::events::open(&db).map_err(|e| e.to_string())?,
                };
                let filter = vireo_store::events::Filter {
                    ty,
                    after: last,
                    limit: Some(500),
                    ..Default::default()
                };
                let page = vireo_store::events::query(&conn, &filter)?;
                Ok::<_, String>((conn, page))
            })
            .await;
            match read {
                Ok(Ok((conn, page))) => {
                    f.conn = Some(conn);
                    if page.is_empty() && f.rx.changed().await.is_err() {
                        return None;
                    }
                    f.buffer.extend(page);
                }
                _ => return None,
            }
        }
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

#[derive(Deserialize)]
struct DoraQuery {
    since: Option<String>,
    until: Option<String>,
}

/// `GET /api/v1/dora?since&until`: the four keys from the event log, each with its receipt.
async fn dora(State(h): State<Handle>, Query(q): Query<DoraQuery>) -> Response {
    let window = match vireo_core::dora::Window::parse(
        q.since.as_deref(),
        q.until.as_deref(),
        crate::driver::now_ms(),
    ) {
        Ok(w) => w,
        Err(e) => return bad_request(e),
    };
    let events = read_log(&h, move |conn| {
        // Not cut at `until`: an incident detected in the window may be resolved after it.
        vireo_store::events::dora_events(conn, u64::MAX >> 1)
            .map_err(|e| ApiError::Internal(e.to_string()))
    })
    .await;
    match events {
        Ok(events) => Json(vireo_core::dora::compute(&events, &window)).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `GET /api/v1/replays`: determinism totals over every replay run so far.
async fn replays(State(h): State<Handle>) -> Response {
    match h.with_store(|store| Ok(store.replay_totals()?)).await {
        Ok((total, matches)) => Json(serde_json::json!({
            "total": total,
            "matches": matches,
            "mismatches": total - matches,
            "matchRate": if total == 0 { None } else { Some(matches as f64 / total as f64) },
        }))
        .into_response(),
        Err(e) => e.into_response(),
    }
}

fn bad_request(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(serde_json::json!({ "error": message })),
    )
        .into_response()
}
