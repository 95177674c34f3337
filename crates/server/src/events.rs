//! The event log's API, for integrations and SREs: CloudEvents listed, ingested and streamed
//! (SSE), and DORA's four keys computed from them.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use vireo_core::spec::{FieldError, SpecError};
use vireo_engine::driver::{ApiError, Handle};

use crate::error::{bad_request, ErrorResponse};

pub fn router() -> Router<Handle> {
    Router::new()
        .route("/api/v1/events", get(list_events).post(ingest_events))
        .route("/api/v1/events/stream", get(stream_events))
        .route("/api/v1/dora", get(dora))
        .route("/api/v1/dora/summary", get(dora_summary))
}

/// Runs a read of the event log on a blocking thread with a connection of its own, off the
/// driver (whose store is for writes).
pub(crate) async fn read_log<T: Send + 'static>(
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

/// `GET /api/v1/events?type&source&subject&id&since&until&after&limit`: one page, in log order
/// (`source` + `id`: the one event a DORA receipt names);
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
                    if items.len() > crate::limits::MAX_BATCH {
                        return (
                            StatusCode::PAYLOAD_TOO_LARGE,
                            Json(serde_json::json!({"error": format!(
                                "a batch of {} events: send at most {} per request",
                                items.len(),
                                crate::limits::MAX_BATCH
                            )})),
                        )
                            .into_response();
                    }
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
        let now = h.shared.clock.now_ms();
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
    axum::Extension(limits): axum::Extension<std::sync::Arc<crate::limits::Limits>>,
    axum::Extension(p): axum::Extension<vireo_auth::Principal>,
    headers: axum::http::HeaderMap,
) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use futures_util::stream;
    use std::collections::VecDeque;
    let actor = p.actor();
    let Some(held) = limits.streams.try_hold(&actor, crate::limits::MAX_STREAMS) else {
        return crate::limits::too_many(format!(
            "{actor} already follows {} event streams; close one",
            crate::limits::MAX_STREAMS
        ));
    };
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
        /// The stream's slot, given back when the client goes.
        _held: crate::limits::Held,
    }
    let start = Follower {
        _held: held,
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
    /// `summary` only: how many weekly windows (default 8, at most 53).
    weeks: Option<usize>,
}

/// `GET /api/v1/dora?since&until`: the four keys from the event log, each with its receipt.
async fn dora(State(h): State<Handle>, Query(q): Query<DoraQuery>) -> Response {
    match dora_read(&h, &q).await {
        Ok((events, window)) => Json(vireo_core::dora::compute(&events, &window)).into_response(),
        Err(e) => e,
    }
}

/// `GET /api/v1/dora/summary?since&until&weeks`: the dashboard in one read of the log — the
/// period, the one before it (the deltas) and the weekly trend, each with its receipts.
async fn dora_summary(State(h): State<Handle>, Query(q): Query<DoraQuery>) -> Response {
    let weeks = q.weeks.unwrap_or(8);
    if weeks > vireo_core::dora::MAX_WEEKS {
        return bad_request(format!(
            "weeks: {weeks} is more than {} (a year); ask for fewer",
            vireo_core::dora::MAX_WEEKS
        ));
    }
    match dora_read(&h, &q).await {
        Ok((events, window)) => {
            Json(vireo_core::dora::summary(&events, &window, weeks)).into_response()
        }
        Err(e) => e,
    }
}

/// The window asked for and the events DORA reads.
async fn dora_read(
    h: &Handle,
    q: &DoraQuery,
) -> Result<
    (
        Vec<vireo_core::events::CloudEvent>,
        vireo_core::dora::Window,
    ),
    Response,
> {
    let window = vireo_core::dora::Window::parse(
        q.since.as_deref(),
        q.until.as_deref(),
        h.shared.clock.now_ms(),
    )
    .map_err(bad_request)?;
    let events = read_log(h, move |conn| {
        // Not cut at `until`: an incident detected in the window may be resolved after it.
        vireo_store::events::dora_events(conn, u64::MAX >> 1)
            .map_err(|e| ApiError::Internal(e.to_string()))
    })
    .await
    .map_err(|e| e.into_response())?;
    Ok((events, window))
}
