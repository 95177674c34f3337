//! The request path: pingora's `ProxyHttp` hooks, wired to the route table and the metrics.
//!
//! Per request: `request_filter` reads the current table once, picks route and backend and marks
//! the request in flight; `upstream_peer` turns the pick into an address (round-robin, the next
//! address after a failed connect); `upstream_response_filter` notes the upstream's status;
//! `logging` (which pingora runs for failed requests too) records the outcome. The per-request
//! context owns the in-flight guard, so the count drops on every exit path.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::protocols::ALPN;
use pingora::proxy::FailToProxy;
use pingora::{ErrorSource, ErrorType};

use crate::metrics::{BackendStats, Metrics, Outcome};
use crate::route::{Backend, Limits, Selection};
use crate::TableHandle;

/// Concurrent streams the proxy opens on one h2c upstream connection before opening another.
const H2_STREAMS_PER_CONNECTION: usize = 100;

/// The pingora service logic of `vireo-proxy`.
#[derive(Clone)]
pub struct VireoProxy {
    table: Arc<TableHandle>,
    metrics: Arc<Metrics>,
}

impl VireoProxy {
    pub fn new(table: Arc<TableHandle>, metrics: Arc<Metrics>) -> Self {
        VireoProxy { table, metrics }
    }
}

/// State of one request across pingora's phases.
pub struct RequestCtx {
    start: Instant,
    target: Option<Target>,
    /// Answered by the proxy itself (404, 431), recorded under `_unmatched`.
    local: Option<(u16, Arc<BackendStats>)>,
    /// Status of the upstream's response, once its header arrived.
    upstream_status: Option<u16>,
}

/// The backend a request was sent to. Counts as in flight from creation to drop, so the count
/// drops on every exit path (success, error, cancelled task).
struct Target {
    backend: Arc<Backend>,
    limits: Limits,
    start: usize,
    attempt: usize,
}

impl Target {
    fn new(backend: &Arc<Backend>, limits: Limits) -> Self {
        backend.stats().begin();
        Target {
            start: backend.next_start(),
            attempt: 0,
            limits,
            backend: backend.clone(),
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.backend.stats().end();
    }
}

/// Size of the request line and header section as it was on the wire, near enough: the
/// parser does not keep the raw bytes, so count what it kept plus the separators.
fn header_bytes(req: &pingora::http::RequestHeader) -> usize {
    let line = req.method.as_str().len() + req.raw_path().len() + 12;
    req.headers
        .iter()
        .fold(line, |n, (k, v)| n + k.as_str().len() + v.len() + 4)
}

/// Pingora answers malformed requests (400) and header sections over 1 MiB itself, before any
/// hook runs; the configurable limit below that is ours, and answered with 431.
fn malformed(req: &pingora::http::RequestHeader, limits: Limits) -> Option<u16> {
    (header_bytes(req) > limits.max_header_bytes).then_some(431)
}

/// What a proxied request counts as. The blame goes where the failure came from:
/// - the upstream failed (no response, or it broke off mid-body): `error`, an SLO failure even
///   if a status had arrived, since the client got a truncated response;
/// - the client went away or stalled first: 499 (nginx's convention), not the backend's fault;
/// - otherwise the status the upstream sent.
fn outcome(
    upstream_status: Option<u16>,
    e: Option<&Error>,
    written: impl FnOnce() -> Option<u16>,
) -> Outcome {
    match e {
        Some(e) if *e.esource() == ErrorSource::Downstream => Outcome::Status(CLIENT_CLOSED),
        Some(_) => Outcome::Error,
        None => upstream_status
            .or_else(written)
            .map_or(Outcome::Error, Outcome::Status),
    }
}

/// nginx's "client closed request".
pub const CLIENT_CLOSED: u16 = 499;

/// How long a client may stall reading its response (nginx's `send_timeout` default).
const DOWNSTREAM_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

#[async_trait]
impl ProxyHttp for VireoProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            start: Instant::now(),
            target: None,
            local: None,
            upstream_status: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        // The table guard must not live across an await: pick, then answer.
        let local = {
            let table = self.table.load();
            let req = session.req_header();
            let limits = table.limits();
            if let Some(status) = malformed(req, limits) {
                Some((status, table.unmatched().clone()))
            } else {
                match table.select(&req.uri, &req.headers, || fastrand::u64(..)) {
                    Selection::Backend { backend, .. } => {
                        ctx.target = Some(Target::new(backend, limits));
                        None
                    }
                    Selection::Unmatched(stats) => Some((404, stats.clone())),
                }
            }
        };
        let Some((status, stats)) = local else {
            // A client that stops reading would otherwise hold the request (and a drain) open.
            session
                .as_downstream_mut()
                .set_write_timeout(Some(DOWNSTREAM_WRITE_TIMEOUT));
            return Ok(false);
        };
        ctx.local = Some((status, stats));
        session.respond_error(status).await?;
        Ok(true)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let Some(t) = ctx.target.as_ref() else {
            return Error::e_explain(ErrorType::InternalError, "no backend picked");
        };
        let addr = t.backend.addr(t.start, t.attempt);
        let mut peer = HttpPeer::new(addr, false, String::new());
        peer.options.connection_timeout = Some(t.limits.connect_timeout);
        // pingora applies this to every read from the upstream: the wait for the response
        // headers, and each wait between body chunks (see README: request_timeout).
        peer.options.read_timeout = Some(t.limits.request_timeout);
        peer.options.write_timeout = Some(t.limits.request_timeout);
        peer.options.idle_timeout = Some(t.limits.upstream_idle_timeout);
        if t.backend.h2c() {
            // Plaintext with ALPN H2 is HTTP/2 prior knowledge in pingora; streams share
            // connections like a gRPC client's would.
            peer.options.alpn = ALPN::H2;
            peer.options.max_h2_streams = H2_STREAMS_PER_CONNECTION;
        }
        Ok(Box::new(peer))
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        // Nothing was sent yet, so any request can move on to the backend's next address.
        if let Some(t) = ctx.target.as_mut() {
            if t.attempt + 1 < t.backend.addrs().len() {
                t.attempt += 1;
                e.set_retry(true);
            }
        }
        e
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.upstream_status = Some(upstream_response.status.as_u16());
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        _ctx: &mut RequestCtx,
    ) -> FailToProxy {
        use ErrorType::*;
        let code = match (e.etype(), e.esource()) {
            (HTTPStatus(code), _) => *code,
            (ConnectTimedout | ReadTimedout | WriteTimedout, ErrorSource::Upstream) => 504,
            (_, ErrorSource::Upstream) => 502,
            // The client went away: nobody to answer.
            (WriteError | ReadError | ConnectionClosed, ErrorSource::Downstream) => 0,
            (_, ErrorSource::Downstream) => 400,
            (_, ErrorSource::Internal | ErrorSource::Unset) => 500,
        };
        if code > 0 {
            // The response header may already be out (the upstream failed mid-body); then
            // there is nothing left to tell the client.
            let _ = session.respond_error(code).await;
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    /// A client closing its connection is ordinary (load generators stopping, users navigating
    /// away); pingora would log each one as an error.
    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, e: &Error) -> bool {
        use ErrorType::*;
        matches!(e.esource(), ErrorSource::Downstream)
            && matches!(
                e.etype(),
                ConnectionClosed | ReadError | WriteError | ReadTimedout | WriteTimedout
            )
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        let (stats, outcome) = match (&ctx.target, &ctx.local) {
            (_, Some((status, stats))) => (stats, Outcome::Status(*status)),
            (Some(t), None) => {
                let written = || session.response_written().map(|r| r.status.as_u16());
                (t.backend.stats(), outcome(ctx.upstream_status, e, written))
            }
            // Failed before a route was picked (e.g. the client went away): nothing to count.
            (None, None) => return,
        };
        let now = Instant::now();
        stats.record(
            outcome,
            now.saturating_duration_since(ctx.start),
            self.metrics.now_ms(now),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_blame_the_side_that_failed() {
        let up = Error::new_up(ErrorType::ConnectionClosed);
        let down = Error::new_down(ErrorType::ConnectionClosed);
        let none = || None;
        // the upstream answered and nothing failed
        assert_eq!(outcome(Some(503), None, none), Outcome::Status(503));
        // the upstream broke off after its headers: a failure, not a 200
        assert_eq!(outcome(Some(200), Some(&up), none), Outcome::Error);
        // no upstream response at all
        assert_eq!(outcome(None, Some(&up), none), Outcome::Error);
        // the client went away: 499, not the backend's failure
        assert_eq!(outcome(Some(200), Some(&down), none), Outcome::Status(499));
        assert!(!Outcome::Status(499).is_failure());
        // pingora answered by itself without an error (e.g. a cached 304)
        assert_eq!(outcome(None, None, || Some(304)), Outcome::Status(304));
    }
}
