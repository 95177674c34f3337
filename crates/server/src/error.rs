//! What every audience's handlers share: the error body, who is acting, body decoding.
//!
//! Errors are JSON `{"error": "...", "fields": [{"path", "reason"}]}`: 400 for a spec that does
//! not parse or validate (every field error, with its path), 404 for an unknown rollout, 409 for
//! an action the phase does not allow (the reason names the phase) or a rollout that cannot be
//! replaced yet.

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use vireo_core::spec::{FieldError, SpecError};
use vireo_engine::driver::ApiError;

#[derive(Serialize)]
struct ErrorBody {
    error: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    fields: Vec<FieldError>,
}

/// The HTTP answer of an engine error: its status and the JSON error body. (A trait of this
/// crate because neither `ApiError` nor axum's `IntoResponse` is.)
pub trait ErrorResponse {
    fn into_response(self) -> Response;
}

impl ErrorResponse for ApiError {
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

pub(crate) fn text(body: &Bytes) -> Result<&str, ApiError> {
    std::str::from_utf8(body).map_err(|e| {
        ApiError::Invalid(SpecError {
            errors: vec![FieldError {
                path: String::new(),
                reason: format!("body is not UTF-8: {e}"),
            }],
        })
    })
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

pub(crate) fn bad_request(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(serde_json::json!({ "error": message })),
    )
        .into_response()
}
