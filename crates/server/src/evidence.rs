//! The auditors' API: evidence bundles, the transparency log (checkpoint, entries,
//! consistency), replays of recorded decisions; and attestations uploaded by build pipelines
//! for the provenance gate.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use vireo_engine::driver::{ApiError, Handle};

use crate::error::{bad_request, ErrorResponse};

pub fn router() -> Router<Handle> {
    Router::new()
        .route("/api/v1/rollouts/{name}/evidence", get(evidence_bundle))
        .route(
            "/api/v1/rollouts/{name}/evidence/index",
            get(evidence_index),
        )
        .route("/api/v1/log/checkpoint", get(log_checkpoint))
        .route("/api/v1/log/entries/{index}", get(log_entry))
        .route("/api/v1/log/consistency", get(log_consistency))
        .route("/api/v1/replays", post(replay).get(replays))
        .route("/api/v1/attestations", post(upload_attestation))
}

/// `GET /api/v1/rollouts/{name}/evidence[?generation=N]`: a generation's evidence bundle
/// (`.tar.gz`; default the current one).
async fn evidence_bundle(
    State(h): State<Handle>,
    Path(name): Path<String>,
    crate::operator::Generation(generation): crate::operator::Generation,
) -> Response {
    let files = h.evidence_files_of(&name, generation).await;
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
    match h.log_checkpoint().await {
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
    let found = h.log_entry(index).await;
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

/// `GET /api/v1/rollouts/{name}/evidence/index[?generation=N]`: the generation's log entries.
async fn evidence_index(
    State(h): State<Handle>,
    axum::extract::Path(name): axum::extract::Path<String>,
    crate::operator::Generation(generation): crate::operator::Generation,
) -> Response {
    match h.evidence_index(&name, generation).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `GET /api/v1/log/consistency?from=N&to=M`: RFC 9162 consistency proof between two sizes.
async fn log_consistency(
    State(h): State<Handle>,
    q: Result<axum::extract::Query<Sizes>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(axum::extract::Query(Sizes { from, to })) = q else {
        return bad_request("expected ?from=N&to=M (tree sizes)".into());
    };
    let proof = h.log_consistency(from, to).await;
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
    let outcome = h.replay(&req.decision_id).await;
    match outcome {
        Ok(o) => Json(o).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `GET /api/v1/replays`: determinism totals over every replay run so far.
#[derive(serde::Deserialize)]
struct ReplaysQuery {
    rollout: Option<String>,
}

/// `GET /api/v1/replays[?rollout=NAME]`: the determinism totals; with `rollout`, the replays
/// of that rollout's decisions (newest first, at most 500) and their totals.
async fn replays(
    State(h): State<Handle>,
    axum::extract::Query(q): axum::extract::Query<ReplaysQuery>,
) -> Response {
    if let Some(rollout) = q.rollout {
        return match h.replays_for(&rollout).await {
            Ok(items) => {
                let matches = items.iter().filter(|r| r.matched).count() as u64;
                let mut body = replay_totals(items.len() as u64, matches);
                body.insert("rollout".into(), rollout.into());
                body.insert("items".into(), serde_json::json!(items));
                Json(body).into_response()
            }
            Err(e) => e.into_response(),
        };
    }
    match h.replay_totals().await {
        Ok((total, matches)) => Json(replay_totals(total, matches)).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `{total, matches, mismatches, matchRate}` (`matchRate` null before any replay).
fn replay_totals(total: u64, matches: u64) -> serde_json::Map<String, serde_json::Value> {
    let rate = (total > 0).then(|| matches as f64 / total as f64);
    let mut m = serde_json::Map::new();
    m.insert("total".into(), total.into());
    m.insert("matches".into(), matches.into());
    m.insert("mismatches".into(), (total - matches).into());
    m.insert("matchRate".into(), rate.into());
    m
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
    let result = h.put_attestation(envelope).await;
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
