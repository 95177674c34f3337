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
//! Every route needs what `vireo_auth::policy` says; [`auth`] checks it as one layer over all
//! of them (authentication, roles, the browser rules). [`tokens`] is the admins' token API
//! and "who am I".
//!
//! [`serve`] assembles them with the body limit and the timeout; [`process`] is `vireo serve`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::Router;
use vireo_engine::driver::Handle;
use vireo_engine::tables::HOLD;

use crate::auth::AuthState;

pub mod auth;
pub mod console;
pub mod error;
pub mod events;
pub mod evidence;
pub mod health;
pub mod limits;
pub mod ofrep;
pub mod operator;
pub mod process;
pub mod proxies;
pub mod tls;
pub mod tokens;

/// Specs and heartbeats are small; anything bigger is a mistake.
pub const BODY_LIMIT: usize = 1 << 20;

/// Every audience's routes, with the body limit, behind the auth layer.
pub fn router(handle: Handle, auth: Arc<AuthState>) -> Router {
    Router::new()
        .merge(console::router())
        .merge(operator::router())
        .merge(health::router())
        .merge(proxies::router())
        .merge(evidence::router())
        .merge(events::router())
        .merge(ofrep::router())
        .merge(tokens::router())
        // `Router::layer` runs after routing, so the layer sees the matched route template.
        .layer(axum::middleware::from_fn_with_state(
            auth.clone(),
            auth::authorize,
        ))
        .layer(axum::Extension(auth))
        .layer(axum::Extension(Arc::new(limits::Limits::default())))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(handle)
}

/// The longest a client may take to send a request's head (slowloris) unless
/// `headerReadTimeout` says otherwise: after this the connection is closed. Also how long an
/// idle keep-alive connection stays open.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections served at once at most; more are closed as they arrive (and counted in the
/// log). A fleet holds two per proxy (its watch stream and its reports), so ten thousand
/// proxies need twenty thousand.
pub const MAX_CONNECTIONS: usize = 65_536;

/// File descriptors kept back from connections: the store, logs, outgoing calls.
const FD_RESERVE: u64 = 512;

/// How many connections this process can serve: the open-file limit, raised to its hard
/// limit first (as the Go runtime does at start; the soft limit is often 1024), less
/// [`FD_RESERVE`], at most [`MAX_CONNECTIONS`].
pub fn connection_slots() -> usize {
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    let slots = limit
        .saturating_sub(FD_RESERVE)
        .clamp(64, MAX_CONNECTIONS as u64) as usize;
    if slots < 2 * 1024 {
        tracing::warn!(
            slots,
            "the open-file limit allows few connections; a large fleet needs two per proxy (raise `ulimit -n`)"
        );
    }
    slots
}

/// Serves the API on `listener` (over TLS when `tls` is given) until the future is dropped.
pub async fn serve(
    listener: tokio::net::TcpListener,
    handle: Handle,
    auth: Arc<AuthState>,
    tls: Option<Arc<rustls::ServerConfig>>,
    header_read_timeout: Duration,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    // Nothing but the long poll (held at most HOLD) takes long; a stuck handler gets 408.
    let app = router(handle, auth).layer(tower_http::timeout::TimeoutLayer::with_status_code(
        StatusCode::REQUEST_TIMEOUT,
        HOLD + Duration::from_secs(10),
    ));
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let builder = Arc::new(builder);
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let max = connection_slots();
    let slots = Arc::new(tokio::sync::Semaphore::new(max));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!("accepting a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "{max} connections open; closing a new one (raise `ulimit -n` for more)");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let service =
            hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                tower::ServiceExt::oneshot(app.clone(), req.map(axum::body::Body::new))
            });
        let (builder, acceptor) = (builder.clone(), acceptor.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let served = match acceptor {
                None => {
                    builder
                        .serve_connection_with_upgrades(TokioIo::new(tcp), service)
                        .await
                }
                Some(acceptor) => {
                    let stream =
                        match tokio::time::timeout(tls::HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
                            .await
                        {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, "TLS handshake failed: {e}");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                return;
                            }
                        };
                    builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .await
                }
            };
            if let Err(e) = served {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
}
