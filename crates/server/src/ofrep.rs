//! Flags over HTTP: the OpenFeature Remote Evaluation Protocol (OFREP) and the flag API.
//!
//! OFREP (`/ofrep/v1/evaluate/flags[/{key}]`), so every OpenFeature SDK's OFREP provider works
//! unchanged: 200 `{key, value, reason, variant, metadata}`; 404 `{key, errorCode:
//! FLAG_NOT_FOUND, errorDetails}`; 400 `{key, errorCode: TARGETING_KEY_MISSING | INVALID_CONTEXT
//! | PARSE_ERROR, errorDetails}`; bulk `{flags: [...]}` with an `ETag` (the SHA-256 of the body)
//! and 304 for a matching `If-None-Match`.
//!
//! Evaluation reads the flag set and the cohorts from `ArcSwap`s (no lock, no driver round
//! trip) and queues one `dev.vireo.flag.evaluated` event per flag evaluated; the queue's writer
//! commits them in batches, so a request never waits on a disk write.
//!
//! The flag API: `POST /api/v1/flags` (YAML or JSON), `GET /api/v1/flags[/{key}]`,
//! `POST /api/v1/flags/{key}/enable|disable` (a `dev.vireo.flag.toggled` event).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use vireo_engine::driver::{ApiError, Handle, Shared};

use crate::error::ErrorResponse;
use vireo_core::events::{self, FLAG_EVALUATED};
use vireo_core::flags::{self, Evaluation, Flag};

pub fn router() -> Router<Handle> {
    Router::new()
        .route("/ofrep/v1/evaluate/flags/{key}", post(evaluate_one))
        .route("/ofrep/v1/evaluate/flags", post(evaluate_all))
        .route("/api/v1/flags", post(put_flag).get(list_flags))
        .route("/api/v1/flags/{key}", get(get_flag))
        .route("/api/v1/flags/{key}/evaluations", get(evaluations))
        .route("/api/v1/flags/{key}/{action}", post(toggle))
}

fn ofrep_error(status: StatusCode, key: Option<&str>, code: &str, details: String) -> Response {
    let mut body = json!({"errorCode": code, "errorDetails": details});
    if let Some(k) = key {
        body["key"] = k.into();
    }
    (status, Json(body)).into_response()
}

/// One flag evaluated for `ctx`, with its evaluation event queued.
async fn evaluate(
    shared: &Shared,
    flag: &Flag,
    ctx: &Map<String, Value>,
) -> Result<Evaluation, flags::EvalError> {
    let cohorts = shared.cohorts.load();
    let result = flags::evaluate(flag, ctx, &cohorts);
    if let Ok(e) = &result {
        record(shared, flag, ctx, e, cohorts.version).await;
    }
    result
}

/// Queues the `dev.vireo.flag.evaluated` event of one evaluation.
async fn record(
    shared: &Shared,
    flag: &Flag,
    ctx: &Map<String, Value>,
    e: &Evaluation,
    cohort_version: u64,
) {
    let subject = flags::targeting_key(ctx)
        .ok()
        .flatten()
        .unwrap_or(&flag.key);
    let event = events::event(
        shared.eval_id(),
        events::flag_source(&shared.instance, &flag.key),
        FLAG_EVALUATED,
        shared.clock.now_ms(),
        subject,
        json!({
            "flag": flag.key, "variant": e.variant, "reason": e.reason, "bucket": e.bucket,
            "value": e.value, "context": ctx, "rollout": flag.rollout,
            "cohortVersion": cohort_version,
        }),
    );
    shared.eval_events.send(event).await;
}

fn success(flag: &Flag, e: Evaluation) -> Value {
    let mut v = json!({
        "key": flag.key, "value": e.value, "reason": e.reason, "variant": e.variant,
        "metadata": flag.metadata,
    });
    if let (Some(b), Some(m)) = (e.bucket, v["metadata"].as_object_mut()) {
        m.entry("bucket").or_insert(b.into());
    }
    v
}

/// The flag with the same key evaluated the way one `evaluate_one` call would, for callers in
/// this process (the demo's simulated users): same function, same event.
pub async fn evaluate_here(
    shared: &Shared,
    key: &str,
    ctx: &Map<String, Value>,
) -> Option<Result<Evaluation, flags::EvalError>> {
    let flag = shared.flags.load().flags.get(key).cloned()?;
    Some(evaluate(shared, &flag, ctx).await)
}

async fn evaluate_one(State(h): State<Handle>, Path(key): Path<String>, body: Bytes) -> Response {
    let ctx = match flags::ofrep_context(&body) {
        Ok(c) => c,
        Err((code, details)) => {
            return ofrep_error(StatusCode::BAD_REQUEST, Some(&key), code, details)
        }
    };
    let Some(flag) = h.shared.flags.load().flags.get(&key).cloned() else {
        return ofrep_error(
            StatusCode::NOT_FOUND,
            Some(&key),
            "FLAG_NOT_FOUND",
            format!("no flag {key:?}"),
        );
    };
    match evaluate(&h.shared, &flag, &ctx).await {
        Ok(e) => Json(success(&flag, e)).into_response(),
        Err(e) => ofrep_error(StatusCode::BAD_REQUEST, Some(&key), e.code(), e.to_string()),
    }
}

async fn evaluate_all(State(h): State<Handle>, headers: HeaderMap, body: Bytes) -> Response {
    let ctx = match flags::ofrep_context(&body) {
        Ok(c) => c,
        Err((code, details)) => return ofrep_error(StatusCode::BAD_REQUEST, None, code, details),
    };
    let set = h.shared.flags.load_full();
    // One pass: the events recorded are of the values returned (none for a 304, which
    // returns no values).
    let cohorts = h.shared.cohorts.load_full();
    let results: Vec<_> = set
        .flags
        .values()
        .map(|flag| (flag, flags::evaluate(flag, &ctx, &cohorts)))
        .collect();
    let items: Vec<Value> = results
        .iter()
        .map(|(flag, r)| match r {
            Ok(e) => success(flag, e.clone()),
            Err(e) => {
                json!({"key": flag.key, "errorCode": e.code(), "errorDetails": e.to_string()})
            }
        })
        .collect();
    let body = json!({ "flags": items }).to_string();
    let etag = format!(
        "\"{}\"",
        &vireo_evidence::keys::hex(&Sha256::digest(body.as_bytes()))[..32]
    );
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if unchanged {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    for (flag, r) in &results {
        if let Ok(e) = r {
            record(&h.shared, flag, &ctx, e, cohorts.version).await;
        }
    }
    (
        StatusCode::OK,
        [
            (header::ETAG, etag),
            (header::CONTENT_TYPE, "application/json".to_string()),
        ],
        body,
    )
        .into_response()
}

async fn put_flag(State(h): State<Handle>, body: Bytes) -> Response {
    let text = match std::str::from_utf8(&body) {
        Ok(t) => t,
        Err(_) => {
            return ApiError::Invalid(vireo_types::config::ConfigError {
                errors: vec![vireo_types::config::FieldError {
                    path: "body".into(),
                    reason: "is not UTF-8 text (YAML or JSON)".into(),
                }],
            })
            .into_response();
        }
    };
    let flag = match Flag::parse(text) {
        Ok(f) => f,
        Err(e) => return ApiError::Invalid(e).into_response(),
    };
    match h.put_flag(flag).await {
        Ok(f) => (StatusCode::CREATED, Json(f)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn list_flags(State(h): State<Handle>) -> Response {
    let set = h.shared.flags.load();
    let items: Vec<&Flag> = set.flags.values().map(|f| f.as_ref()).collect();
    Json(json!({"items": items, "evaluationEvents": *h.shared.eval_events.stats})).into_response()
}

async fn get_flag(State(h): State<Handle>, Path(key): Path<String>) -> Response {
    match h.shared.flags.load().flags.get(&key) {
        Some(f) => Json(f.as_ref()).into_response(),
        None => ApiError::NotFound(format!("no flag {key:?}")).into_response(),
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EvaluationsQuery {
    /// RFC 3339, as every `since` of the API; default an hour ago, and never earlier than
    /// the buckets one answer holds.
    since: Option<String>,
    /// Bucket width in seconds, 10 to 3600; default 60.
    bucket_s: Option<u64>,
}

/// Buckets one answer holds at most (six hours of minutes).
const MAX_EVALUATION_BUCKETS: usize = 360;

/// `GET /api/v1/flags/{key}/evaluations?since&bucketS`: the flag's recorded evaluations per
/// variant over time (the console's share chart). Counted from the `dev.vireo.flag.evaluated`
/// events, so what the evaluation writer dropped under load is not in it (`evaluationEvents`
/// of `GET /api/v1/flags` says how many).
async fn evaluations(
    State(h): State<Handle>,
    Path(key): Path<String>,
    query: Result<axum::extract::Query<EvaluationsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = match query {
        Ok(axum::extract::Query(q)) => q,
        Err(e) => return crate::error::bad_request(format!("query: {e}")),
    };
    if !h.shared.flags.load().flags.contains_key(&key) {
        return ApiError::NotFound(format!("no flag {key:?}")).into_response();
    }
    let bucket_s = q.bucket_s.unwrap_or(60);
    if !(10..=3600).contains(&bucket_s) {
        return crate::error::bad_request(format!(
            "bucketS: {bucket_s} is not between 10 and 3600 seconds"
        ));
    }
    let now = h.shared.clock.now_ms();
    let since = match q.since.as_deref().map(events::parse_time) {
        None => now.saturating_sub(3_600_000),
        Some(Some(t)) => t,
        Some(None) => {
            return crate::error::bad_request(format!(
                "since: {:?} is not an RFC 3339 time",
                q.since.unwrap_or_default()
            ))
        }
    };
    // The read covers only what the answer can hold: the newest MAX_EVALUATION_BUCKETS.
    let since = since.max(now.saturating_sub(bucket_s * 1000 * MAX_EVALUATION_BUCKETS as u64));
    let source = events::flag_source(&h.shared.instance, &key);
    let read = crate::events::read_log(&h, move |conn| {
        vireo_store::events::flag_evaluations(
            conn,
            &source,
            since,
            bucket_s * 1000,
            MAX_EVALUATION_BUCKETS,
        )
        .map_err(|e| ApiError::Internal(e.to_string()))
    })
    .await;
    match read {
        Ok(buckets) => Json(json!({
            "flag": key, "sinceMs": since, "bucketMs": bucket_s * 1000, "buckets": buckets,
        }))
        .into_response(),
        Err(e) => e.into_response(),
    }
}

async fn toggle(
    State(h): State<Handle>,
    Path((key, action)): Path<(String, String)>,
    axum::Extension(p): axum::Extension<vireo_auth::Principal>,
) -> Response {
    let enabled = match action.as_str() {
        "enable" => true,
        "disable" => false,
        other => {
            return ApiError::NotFound(format!("no flag action {other:?}: use enable or disable"))
                .into_response()
        }
    };
    match h.toggle_flag(&key, enabled, &p.actor()).await {
        Ok(f) => Json(f).into_response(),
        Err(e) => e.into_response(),
    }
}
