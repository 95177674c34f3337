//! What every audience's handlers share: the error body, body decoding, an action's reason.
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
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, Vec::new()),
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

/// The reason an actor gave for an action: the body `{"reason": "..."}` (JSON or YAML), or
/// none when the body is empty. One line of at most 1000 characters.
pub(crate) fn reason(body: &Bytes) -> Result<Option<String>, ApiError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        #[serde(default)]
        reason: Option<String>,
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let b: Body = vireo_types::config::parse_document(text(body)?).map_err(ApiError::Invalid)?;
    let invalid = |why: &str| {
        ApiError::Invalid(SpecError {
            errors: vec![FieldError {
                path: "reason".into(),
                reason: why.into(),
            }],
        })
    };
    match b.reason.map(|r| r.trim().to_string()) {
        Some(r) if r.chars().count() > 1000 => Err(invalid("at most 1000 characters")),
        Some(r) if r.chars().any(char::is_control) => {
            Err(invalid("one line, without control characters"))
        }
        Some(r) if r.is_empty() => Ok(None),
        other => Ok(other),
    }
}

pub(crate) fn bad_request(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(serde_json::json!({ "error": message })),
    )
        .into_response()
}
