//! `vireo-server`: the control plane's HTTP surface (`shared/spec/control.md`, "API"), axum
//! routers over the engine's [`Handle`], grouped by audience so each can get its own
//! authentication layer:
//!
//! | router | audience |
//! |---|---|
//! | [`operator`] | release engineers: rollouts, templates, schedules, actions |
//! | [`proxies`] | the data plane: route tables (long poll) and heartbeats |
//! | [`evidence`] | auditors, and build pipelines uploading attestations |
//! | [`events`] | integrations and SREs: CloudEvents, SSE, DORA |
//! | [`ofrep`] | applications (OFREP) and operators (the flag API) |
//! | [`console`] | people, in a browser |
//!
//! [`serve`] assembles them with the body limit and the timeout; [`process`] is `vireo serve`.

use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::Router;
use vireo_engine::driver::Handle;
use vireo_engine::tables::HOLD;

pub mod console;
pub mod error;
pub mod events;
pub mod evidence;
pub mod ofrep;
pub mod operator;
pub mod process;
pub mod proxies;

/// Specs and heartbeats are small; anything bigger is a mistake.
const BODY_LIMIT: usize = 1 << 20;

/// Every audience's routes, with the body limit.
pub fn router(handle: Handle) -> Router {
    Router::new()
        .merge(console::router())
        .merge(operator::router())
        .merge(proxies::router())
        .merge(evidence::router())
        .merge(events::router())
        .merge(ofrep::router())
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(handle)
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
