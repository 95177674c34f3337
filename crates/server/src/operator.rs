//! The operator API, for release engineers and their pipelines (the CLI, the console): apply
//! rollouts and templates, read status and timelines, schedule, act.
//! Specs are accepted as YAML or JSON whatever the content type says.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use vireo_core::analysis::AnalysisTemplate;
use vireo_core::rollout::Action;
use vireo_core::spec::Rollout;
use vireo_engine::driver::{ApiError, Handle};

use axum::Extension;
use vireo_auth::Principal;
use vireo_core::rollout::Caller;

use crate::error::{reason, text, ErrorResponse};

pub fn router() -> Router<Handle> {
    Router::new()
        .route("/api/v1/rollouts", post(apply_rollout).get(list_rollouts))
        .route("/api/v1/rollouts/{name}", get(get_rollout))
        .route("/api/v1/rollouts/{name}/timeline", get(timeline))
        .route("/api/v1/rollouts/{name}/generations", get(generations))
        .route("/api/v1/rollouts/{name}/routes", get(route_history))
        // GET previews (the armed envelope's summary); POST rolls back, as `{action}` would:
        // a static segment takes the path from `{action}`, so this route serves both.
        .route(
            "/api/v1/rollouts/{name}/rollback",
            get(rollback_preview).post(rollback),
        )
        .route(
            "/api/v1/rollouts/{name}/schedule",
            get(schedule_status)
                .post(set_schedule)
                .delete(cancel_schedule),
        )
        // Its own route, because its own permission (vireo_auth::policy).
        .route("/api/v1/rollouts/{name}/approve", post(approve))
        .route("/api/v1/rollouts/{name}/{action}", post(act))
        .route("/api/v1/analysistemplates", post(apply_template))
        .route("/api/v1/analysistemplates/{name}", get(get_template))
}

async fn apply_rollout(
    State(h): State<Handle>,
    Extension(p): Extension<Principal>,
    body: Bytes,
) -> Response {
    let rollout = match text(&body).and_then(|t| Rollout::parse(t).map_err(ApiError::Invalid)) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    match h.apply_rollout(rollout, &p.actor()).await {
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
            Json(vireo_api::TemplateApplied {
                analysis_template: name,
            }),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

async fn list_rollouts(State(h): State<Handle>) -> Response {
    match h.list().await {
        Ok(items) => Json(vireo_api::RolloutList { items }).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn get_rollout(State(h): State<Handle>, Path(name): Path<String>) -> Response {
    match h.get(&name).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `?generation=N`: one of the rollout's generations (`None`: the current one). As an
/// extractor, a malformed query is answered with an error a user can act on (axum's own
/// rejection is plain text).
pub(crate) struct Generation(pub Option<u64>);

#[derive(Deserialize)]
struct GenerationQuery {
    generation: Option<u64>,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Generation {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match Query::<GenerationQuery>::from_request_parts(parts, state).await {
            Ok(Query(q)) => Ok(Generation(q.generation)),
            Err(_) => Err(crate::error::bad_request(
                "expected ?generation=N (a generation number, as GET …/generations lists them)"
                    .into(),
            )),
        }
    }
}

/// `GET /api/v1/rollouts/{name}/routes?generation=N`: every route it published, in order.
async fn route_history(
    State(h): State<Handle>,
    Path(name): Path<String>,
    Generation(generation): Generation,
) -> Response {
    match h.route_history(&name, generation).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn timeline(
    State(h): State<Handle>,
    Path(name): Path<String>,
    Generation(generation): Generation,
) -> Response {
    let result = match generation {
        // The current one goes through the driver, which owns the newest state.
        None => h.timeline(&name).await,
        Some(_) => h.timeline_of(&name, generation).await,
    };
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn generations(State(h): State<Handle>, Path(name): Path<String>) -> Response {
    match h.generations(&name).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn rollback_preview(State(h): State<Handle>, Path(name): Path<String>) -> Response {
    match h.rollback_preview(&name).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn rollback(
    h: State<Handle>,
    Path(name): Path<String>,
    q: Query<ActQuery>,
    p: Extension<Principal>,
    body: Bytes,
) -> Response {
    act(h, Path((name, "rollback".to_string())), q, p, body).await
}

async fn get_template(State(h): State<Handle>, Path(name): Path<String>) -> Response {
    match h.template(&name).await {
        Ok(Some(t)) => Json(t).into_response(),
        Ok(None) => {
            ApiError::NotFound(format!("no analysis template named {name:?}")).into_response()
        }
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

async fn schedule_status(State(h): State<Handle>, Path(name): Path<String>) -> Response {
    match h.schedule_status(&name).await {
        Ok(s) => Json(s).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn cancel_schedule(State(h): State<Handle>, Path(name): Path<String>) -> Response {
    match h.schedule(&name, None).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn approve(
    h: State<Handle>,
    Path(name): Path<String>,
    q: Query<ActQuery>,
    p: Extension<Principal>,
    body: Bytes,
) -> Response {
    act(h, Path((name, "approve".to_string())), q, p, body).await
}

#[derive(Deserialize)]
struct ActQuery {
    #[serde(default)]
    full: bool,
}

async fn act(
    State(h): State<Handle>,
    Path((name, action)): Path<(String, String)>,
    Query(q): Query<ActQuery>,
    Extension(p): Extension<Principal>,
    body: Bytes,
) -> Response {
    let reason = match reason(&body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let action = match (action.as_str(), q.full) {
        ("pause", _) => Action::Pause,
        ("resume", _) => Action::Resume,
        ("promote", false) => Action::Promote,
        ("promote", true) => Action::PromoteFull,
        ("abort", _) => Action::Abort,
        ("retry", _) => Action::Retry,
        ("approve", _) => Action::Approve,
        ("rollback", _) => Action::Rollback,
        ("rerun", _) => Action::Rerun,
        (other, _) => {
            return ApiError::NotFound(format!(
            "no action {other:?}: use pause, resume, promote (?full=true), abort, retry, rerun, approve or rollback"
        ))
            .into_response()
        }
    };
    match h.act(&name, action, Caller::new(p.actor(), reason)).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}
