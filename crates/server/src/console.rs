//! The console (a static page polling the API; no build step, no assets) and the health check.

use axum::routing::get;
use axum::Router;

use vireo_engine::driver::Handle;

pub fn router() -> Router<Handle> {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/", get(console))
}

/// The console: a static page polling the API (no build step, no assets to serve).
async fn console() -> axum::response::Html<&'static str> {
    axum::response::Html(include_str!("console.html"))
}
