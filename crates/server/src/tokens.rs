//! API tokens (admins) and "who am I" (anyone authenticated).
//!
//! - `POST /api/v1/tokens` `{name, role, expires?}` (`expires`: a duration, `30d`, `12h`):
//!   201 with the record and `token`, the secret, which is never shown again.
//! - `GET /api/v1/tokens`: every token ever made, revoked ones too, never a secret.
//! - `DELETE /api/v1/tokens/{name}`: revoke; the next request with it is refused.
//! - `GET /api/v1/whoami`: the caller's actor, roles and permissions (the console shows
//!   only the buttons these allow).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::json;

use vireo_auth::{token, Principal, Role};
use vireo_engine::driver::{ApiError, Handle};
use vireo_store::tokens::TokenError;

use crate::auth::AuthState;
use crate::error::{bad_request, text, ErrorResponse};

pub fn router() -> Router<Handle> {
    Router::new()
        .route("/api/v1/whoami", get(whoami))
        .route("/api/v1/tokens", post(create).get(list))
        .route("/api/v1/tokens/{name}", delete(revoke))
}

async fn whoami(Extension(p): Extension<Principal>) -> Response {
    Json(json!({
        "actor": p.actor(),
        "name": p.name,
        "via": p.via,
        "roles": p.roles,
        "permissions": p.roles.permissions(),
    }))
    .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateToken {
    name: String,
    role: String,
    #[serde(default)]
    expires: Option<String>,
}

fn token_error(e: TokenError) -> Response {
    match e {
        TokenError::Exists(_) | TokenError::AlreadyRevoked(_) => {
            ApiError::Conflict(e.to_string()).into_response()
        }
        TokenError::NotFound(_) => ApiError::NotFound(e.to_string()).into_response(),
        TokenError::Store(e) => ApiError::Internal(e.to_string()).into_response(),
    }
}

async fn create(
    State(h): State<Handle>,
    Extension(auth): Extension<Arc<AuthState>>,
    Extension(p): Extension<Principal>,
    body: Bytes,
) -> Response {
    let req: CreateToken = match text(&body).map(vireo_types::config::parse_document) {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return ApiError::Invalid(e).into_response(),
        Err(e) => return e.into_response(),
    };
    if let Err(m) = token::valid_name(&req.name) {
        return bad_request(m);
    }
    let role = match req.role.parse::<Role>() {
        Ok(r) => r,
        Err(e) => return bad_request(e.to_string()),
    };
    let expires_ms = match req.expires.as_deref().map(humantime::parse_duration) {
        None => None,
        Some(Ok(d)) if !d.is_zero() => Some(h.shared.clock.now_ms() + d.as_millis() as u64),
        Some(Ok(_)) => return bad_request("expires: must be longer than 0s".into()),
        Some(Err(e)) => {
            return bad_request(format!(
                "expires: {e} (use a duration such as 30d, 12h or 90m)"
            ))
        }
    };
    let actor = p.actor();
    let issued =
        tokio::task::spawn_blocking(move || auth.issue(&req.name, role, expires_ms, &actor)).await;
    match issued {
        Ok(Ok((secret, record))) => {
            let mut body = serde_json::to_value(&record).unwrap_or_default();
            body["token"] = json!(secret);
            (StatusCode::CREATED, Json(body)).into_response()
        }
        Ok(Err(e)) => token_error(e),
        Err(e) => ApiError::Internal(e.to_string()).into_response(),
    }
}

async fn list(Extension(auth): Extension<Arc<AuthState>>) -> Response {
    match tokio::task::spawn_blocking(move || auth.list()).await {
        Ok(Ok(items)) => Json(json!({ "items": items })).into_response(),
        Ok(Err(e)) => ApiError::Internal(e.to_string()).into_response(),
        Err(e) => ApiError::Internal(e.to_string()).into_response(),
    }
}

async fn revoke(
    Extension(auth): Extension<Arc<AuthState>>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
) -> Response {
    let by = p.actor();
    match tokio::task::spawn_blocking(move || auth.revoke(&name, &by)).await {
        Ok(Ok(())) => StatusCode::NO_CONTENT.into_response(),
        Ok(Err(e)) => token_error(e),
        Err(e) => ApiError::Internal(e.to_string()).into_response(),
    }
}
