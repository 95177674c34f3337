//! The request path: one hyper service call per request, on the worker that accepted the
//! connection.
//!
//! Per request, in order: read the current route table once (lock-free), refuse oversized
//! header sections (431) and unrouted requests (404), pick the backend, mark the request in
//! flight ([`Exchange`]), strip hop-by-hop fields, check out an upstream connection (the next
//! address after a failed connect), send, and relay the response. The [`Exchange`] travels with
//! the response body and records the outcome exactly once — when the body ends, when the
//! upstream fails mid-body, or (from `Drop`) when the client goes away — so every exit path
//! counts and the in-flight count always drops.
//!
//! Deadlines: one per request for the response head (`request_timeout`, covering the pool
//! wait, the send and the upstream's think time), one per dial (`connect_timeout`), and one
//! per response body that is armed only while the body waits for the upstream (so the wait
//! between body chunks is bounded by `request_timeout` too, as before, without a timer per
//! read).

use std::cell::{Cell, OnceCell};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::HOST;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::headers::{strip_hop_by_hop, wants_websocket, HopFields};
use crate::io::Stall;
use crate::metrics::{BackendStats, Metrics, Outcome, PASSTHROUGH};
use crate::route::{Backend, Limits, Selection};
use crate::upstream::{DialError, H1Lease, Pool, UpBody, EARLY_CLOSE};
use crate::TableHandle;
use hyper::client::conn::http2;

/// nginx's "client closed request".
pub const CLIENT_CLOSED: u16 = 499;

/// What one worker thread's requests share: the route table handle, the metrics and the
/// worker's own upstream pool.
pub struct Worker {
    pub table: Arc<TableHandle>,
    pub metrics: Arc<Metrics>,
    pub pool: Rc<Pool>,
    /// Bench-only: each client connection has a pool of its own (`server::BENCH_POOL_ENV`).
    pub pool_per_connection: bool,
}

/// What the request path knows of an intercepted connection (transparent mode): where the
/// app was sending it, and the backend for requests no route claims (made on first use).
pub struct Intercepted {
    dst: SocketAddr,
    /// The app opened the connection with the HTTP/2 preface: the destination speaks h2c.
    h2c: bool,
    passthrough: OnceCell<Arc<Backend>>,
}

/// How long a passed-through request may wait for its response head, and its response body
/// between chunks. The app's own call, not a rollout's: the route's `request_timeout` (a
/// rollout's SLO bound) is not its business, and long polls and event streams to outside
/// services are common. Bounded all the same, as every wait in the proxy is.
pub const PASSTHROUGH_TIMEOUT: Duration = Duration::from_secs(600);

impl Intercepted {
    pub fn new(dst: SocketAddr, h2c: bool) -> Self {
        Intercepted {
            dst,
            h2c,
            passthrough: OnceCell::new(),
        }
    }

    fn passthrough(&self, metrics: &Metrics) -> &Arc<Backend> {
        self.passthrough.get_or_init(|| {
            Arc::new(Backend::passthrough(
                self.dst,
                self.h2c,
                metrics.backend(PASSTHROUGH, "original", ""),
            ))
        })
    }
}

/// The hyper service of a client connection; `intercepted` for a connection iptables
/// redirected to the proxy (transparent mode), `None` for one the app made to the proxy.
pub fn service(
    worker: Rc<Worker>,
    intercepted: Option<Rc<Intercepted>>,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<ProxyBody>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<ProxyBody>, Infallible>>,
> {
    hyper::service::service_fn(move |req| {
        let worker = worker.clone();
        let intercepted = intercepted.clone();
        async move { Ok(handle(worker, intercepted.as_deref(), req).await) }
    })
}

/// Size of the request line and header section as it was on the wire, near enough: the
/// parser does not keep the raw bytes, so count what it kept plus the separators.
fn header_bytes<B>(req: &Request<B>) -> usize {
    let target = req.uri().path_and_query().map_or(1, |p| p.as_str().len());
    let line = req.method().as_str().len() + target + 12;
    req.headers()
        .iter()
        .fold(line, |n, (k, v)| n + k.as_str().len() + v.len() + 4)
}

/// A request to a backend, from the pick until its outcome is recorded. Counts as in flight
/// for its whole life.
pub struct Exchange {
    worker: Rc<Worker>,
    backend: Arc<Backend>,
    start: Instant,
    /// Set when the outcome is known; `Drop` records it (499 if never set: the client left).
    outcome: Option<Outcome>,
}

impl Exchange {
    fn new(worker: Rc<Worker>, backend: Arc<Backend>, start: Instant) -> Self {
        backend.stats().begin();
        Exchange {
            backend,
            worker,
            start,
            outcome: None,
        }
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        let stats = self.backend.stats();
        stats.end();
        record(
            &self.worker.metrics,
            stats,
            self.outcome.unwrap_or(Outcome::Status(CLIENT_CLOSED)),
            self.start,
        );
    }
}

fn record(metrics: &Metrics, stats: &BackendStats, outcome: Outcome, start: Instant) {
    if !metrics.recording() {
        return;
    }
    let now = Instant::now();
    stats.record(
        outcome,
        now.saturating_duration_since(start),
        metrics.now_ms(now),
    );
}

fn status_only(code: u16) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::Empty);
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY);
    resp
}

/// One request, end to end.
pub async fn handle(
    worker: Rc<Worker>,
    intercepted: Option<&Intercepted>,
    mut req: Request<Incoming>,
) -> Response<ProxyBody> {
    let start = Instant::now();
    // The table guard must not live across an await: pick, then let go.
    let (backend, limits) = {
        let table = worker.table.load();
        let mut limits = table.limits();
        let local = if header_bytes(&req) > limits.max_header_bytes {
            Err((431, table.unmatched()))
        } else if req.method() == Method::CONNECT {
            // Not a forward proxy: no tunnels to arbitrary targets.
            Err((405, table.unmatched()))
        } else {
            let dst = intercepted.map(|i| i.dst);
            match table.select(req.uri(), req.headers(), dst, || fastrand::u64(..)) {
                Selection::Backend { backend, .. } => Ok(backend.clone()),
                Selection::Unmatched(stats) => match intercepted {
                    // The app's calls that no rollout is about go where it sent them.
                    Some(i) => {
                        limits.request_timeout = limits.request_timeout.max(PASSTHROUGH_TIMEOUT);
                        Ok(i.passthrough(&worker.metrics).clone())
                    }
                    None => Err((404, stats)),
                },
            }
        };
        match local {
            Ok(backend) => (backend, limits),
            Err((code, stats)) => {
                record(&worker.metrics, stats, Outcome::Status(code), start);
                let mut resp = status_only(code);
                if code == 431 {
                    // A client that sends oversized heads gets no second try on this
                    // connection (nginx and Envoy close after theirs, too).
                    resp.headers_mut().insert(
                        http::header::CONNECTION,
                        http::HeaderValue::from_static("close"),
                    );
                }
                return resp;
            }
        }
    };
    let mut exchange = Exchange::new(worker.clone(), backend, start);
    let backend = &*exchange.backend;

    let hop = HopFields::scan(req.headers());
    let upgrade =
        !backend.h2c() && req.version() == Version::HTTP_11 && wants_websocket(req.headers(), hop);
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let target = Target {
        h2c: backend.h2c(),
        fallback_host: backend.host(),
        keep_form: backend.is_passthrough(),
    };
    if let Err(code) = prepare(&mut parts, hop, &target, upgrade) {
        exchange.outcome = Some(Outcome::Status(code));
        return status_only(code);
    }
    let (body, request_sent) = UpBody::from_client(body);
    // Bodiless (nothing to watch being sent) and idempotent: safe to send twice.
    let replayable = request_sent.is_none() && is_idempotent(&parts.method);
    let req = Request::from_parts(parts, body);

    let forwarded = tokio::time::timeout(
        limits.request_timeout,
        forward(&worker.pool, backend, limits, req, replayable),
    )
    .await;
    let (mut resp, lease) = match forwarded {
        Ok(Ok(r)) => r,
        Ok(Err(Failed { code, client })) => {
            // The client's own body failed: not the backend's fault.
            exchange.outcome = Some(if client {
                Outcome::Status(CLIENT_CLOSED)
            } else {
                Outcome::Error
            });
            return status_only(code);
        }
        Err(_) => {
            exchange.outcome = Some(Outcome::Error);
            return status_only(504);
        }
    };

    let status = resp.status();
    if status == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client_upgrade) = client_upgrade {
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            // The tunnel counts as in flight to its backend until it closes (so drain and
            // shutdown wait for it, up to their deadlines), and is recorded then, as 101.
            exchange.outcome = Some(Outcome::Status(101));
            tokio::task::spawn_local(async move {
                let _exchange = exchange;
                if let (Ok(up), Ok(down)) = tokio::join!(upstream_upgrade, client_upgrade) {
                    let (mut up, mut down) = (
                        hyper_util::rt::TokioIo::new(up),
                        hyper_util::rt::TokioIo::new(down),
                    );
                    let _ = crate::io::tunnel(&mut down, &mut up, crate::io::TUNNEL_IDLE).await;
                }
            });
            let (parts, _) = resp.into_parts();
            return Response::from_parts(parts, ProxyBody::Empty);
        }
    }
    let (mut parts, body) = resp.into_parts();
    let hop = HopFields::scan(&parts.headers);
    strip_hop_by_hop(&mut parts.headers, hop, false);
    Response::from_parts(
        parts,
        ProxyBody::Relay(Relay {
            inner: body,
            status: status.as_u16(),
            exchange: Some(exchange),
            lease,
            request_sent,
            stall: Stall::new(limits.request_timeout),
        }),
    )
}

/// What [`prepare`] needs to know of the backend.
struct Target<'a> {
    /// HTTP/2 with prior knowledge.
    h2c: bool,
    /// `Host` for a request without one.
    fallback_host: &'a HeaderValue,
    /// A passed-through request: HTTP/1.1 stays as the app wrote it.
    keep_form: bool,
}

/// Rewrites a client request into the request a backend gets: hop-by-hop fields out, a `Host`
/// for HTTP/1.1, the target in origin form for HTTP/1.1 and absolute for HTTP/2. A passed-through
/// HTTP/1.1 request keeps its target as the app wrote it: absolute form there means the
/// original destination is the app's own forward proxy, which needs it.
fn prepare(
    parts: &mut http::request::Parts,
    hop: HopFields,
    target: &Target,
    upgrade: bool,
) -> Result<(), u16> {
    strip_hop_by_hop(&mut parts.headers, hop, upgrade);
    if target.keep_form && parts.version == Version::HTTP_11 {
        if !parts.headers.contains_key(HOST) {
            // A `Connection: host` took it: HTTP/1.1 still needs one.
            parts.headers.insert(HOST, target.fallback_host.clone());
        }
        return Ok(());
    }
    if target.h2c {
        // HTTP/2 needs :scheme and :authority; the authority is the client's target authority
        // or its Host field.
        parts.version = Version::HTTP_2;
        if parts.uri.authority().is_none() {
            let authority = parts
                .headers
                .get(HOST)
                .and_then(|h| Authority::try_from(h.as_bytes()).ok())
                .unwrap_or_else(|| Authority::from_static("localhost"));
            let mut uri = std::mem::take(&mut parts.uri).into_parts();
            uri.scheme = Some(Scheme::HTTP);
            uri.authority = Some(authority);
            if uri.path_and_query.is_none() {
                uri.path_and_query = Some(PathAndQuery::from_static("/"));
            }
            parts.uri = Uri::from_parts(uri).map_err(|_| 400u16)?;
        } else if parts.uri.scheme().is_none() {
            let mut uri = std::mem::take(&mut parts.uri).into_parts();
            uri.scheme = Some(Scheme::HTTP);
            parts.uri = Uri::from_parts(uri).map_err(|_| 400u16)?;
        }
        parts.headers.remove(HOST);
    } else {
        parts.version = Version::HTTP_11;
        if let Some(authority) = parts.uri.authority() {
            // From h2 or an absolute-form target: HTTP/1.1 origin servers get origin form and
            // a Host field (RFC 9112 §3.2). The authority is what the route matched on, so it
            // replaces any Host the client also sent: the backend sees the host that routed.
            let host = HeaderValue::from_str(authority.as_str()).map_err(|_| 400u16)?;
            parts.headers.insert(HOST, host);
            let path = parts
                .uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/"));
            parts.uri = Uri::from(path);
        } else if !parts.headers.contains_key(HOST) {
            // An HTTP/1.0 client without one, or a `Connection: host`: HTTP/1.1 needs a Host;
            // the backend's address stands in, as nginx's `$proxy_host` does.
            parts.headers.insert(HOST, target.fallback_host.clone());
        }
    }
    Ok(())
}

/// Idempotent methods (RFC 9110 §9.2.2): a bodiless one can be sent again on a fresh
/// connection if a reused one turns out to have been closed by the backend.
fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::DELETE | Method::PUT
    )
}

/// A pooled connection idle at least this long may have been closed by the backend's own idle
/// timeout (often 5 s, Node.js's default; never much below a second).
const REPLAY_AFTER_IDLE: Duration = Duration::from_millis(100);

/// A copy of a bodiless request, kept while it goes out on a reused connection.
fn replica(req: &Request<UpBody>) -> Request<UpBody> {
    let mut copy = Request::new(UpBody::Empty);
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    copy
}

struct Failed {
    code: u16,
    /// The client's request body failed, not the backend.
    client: bool,
}

impl From<DialError> for Failed {
    fn from(e: DialError) -> Self {
        Failed {
            code: match e {
                DialError::Failed => 502,
                DialError::TimedOut => 504,
            },
            client: false,
        }
    }
}

/// Sends the request to the picked backend: each address in turn while connects fail, and
/// once more on a fresh connection if a pooled one was found closed.
async fn forward(
    pool: &Pool,
    backend: &Backend,
    limits: Limits,
    req: Request<UpBody>,
    replayable: bool,
) -> Result<(Response<Incoming>, Option<H1Lease>), Failed> {
    enum Checkout {
        H1(H1Lease),
        H2(http2::SendRequest<UpBody>),
    }
    let addrs = backend.addrs().len();
    let round_robin = backend.next_start();
    let mut attempt = 0;
    let mut req = Some(req);
    let mut fresh = false;
    // Bounded: one pass per address, plus one replay.
    for _ in 0..addrs + 1 {
        let addr = backend.addr(round_robin, attempt);
        let Some(request) = req.take() else { break };
        let checkout = if backend.h2c() {
            pool.h2(addr, limits.connect_timeout)
                .await
                .map(Checkout::H2)
        } else {
            let idle = limits.upstream_idle_timeout;
            pool.h1(addr, fresh, limits.connect_timeout, idle)
                .await
                .map(Checkout::H1)
        };
        let mut lease = match checkout {
            Ok(Checkout::H1(lease)) => lease,
            Ok(Checkout::H2(mut send)) => {
                return match send.send_request(request).await {
                    Ok(resp) => Ok((resp, None)),
                    Err(e) => Err(Failed {
                        code: 502,
                        client: e.is_user(),
                    }),
                };
            }
            // Nothing was sent: the next address may do.
            Err(_) if attempt + 1 < addrs => {
                attempt += 1;
                req = Some(request);
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if lease.send.ready().await.is_err() {
            // Closed while idle: nothing was sent; try a new connection.
            if lease.idle_for.is_some_and(|d| d < EARLY_CLOSE) {
                pool.mark_closes_early(addr);
            }
            fresh = true;
            req = Some(request);
            continue;
        }
        // The keep-alive race: a backend closes a pooled connection just as the request goes
        // out on it; hyper then has written the request and cannot hand it back. A bodiless
        // idempotent request is copied first, and sent once more on a new connection if that
        // happens (as nginx's `proxy_next_upstream error` would), when the connection may meet
        // such a close: it sat idle long enough for a backend's idle timeout to fire, or this
        // backend has been seen closing connections right after responses. Under load on a
        // well-behaved backend, connections are idle for microseconds and nothing is copied
        // (copying every request's head costs 5 % of the proxy's instructions per request).
        let copy = (replayable
            && lease
                .idle_for
                .is_some_and(|d| d >= REPLAY_AFTER_IDLE || lease.closes_early))
        .then(|| replica(&request));
        match lease.send.try_send_request(request).await {
            Ok(resp) => return Ok((resp, Some(lease))),
            Err(mut e) => {
                // Not sent at all, or sent on a connection the backend had just closed: safe
                // to send again, once, on a new connection.
                if let Some(again) = e.take_message().or(copy) {
                    fresh = true;
                    req = Some(again);
                    continue;
                }
                let err = e.into_error();
                if !err.is_user() && lease.idle_for.is_some_and(|d| d < EARLY_CLOSE) {
                    // A race lost before this backend was known for it: not again.
                    pool.mark_closes_early(lease.addr);
                }
                return Err(Failed {
                    code: if err.is_user() { 400 } else { 502 },
                    client: err.is_user(),
                });
            }
        }
    }
    Err(Failed {
        code: 502,
        client: false,
    })
}

/// The body of a response the proxy sends.
// Boxing `Relay` would cost an allocation per request; the value lives in the connection's
// state either way.
#[allow(clippy::large_enum_variant)]
pub enum ProxyBody {
    /// Answered by the proxy (404, 431, 502, 504, 101).
    Empty,
    /// Relayed from a backend.
    Relay(Relay),
}

/// A backend's response body on its way to the client, with the request's [`Exchange`] and,
/// for HTTP/1.1, the connection to hand back when the body ends.
pub struct Relay {
    inner: Incoming,
    status: u16,
    exchange: Option<Exchange>,
    lease: Option<H1Lease>,
    /// Set once the request body has gone out in full (`None`: it had none).
    request_sent: Option<Rc<Cell<bool>>>,
    /// `request_timeout` for each pause of the backend's body.
    stall: Stall,
}

impl Relay {
    /// The body ended as the backend meant it to: the status counts and the connection goes
    /// back to the pool.
    fn finish(&mut self) {
        if let Some(mut exchange) = self.exchange.take() {
            exchange.outcome = Some(Outcome::Status(self.status));
            if let Some(lease) = self.lease.take() {
                // A connection still sending the request body is busy: it closes instead.
                if self.request_sent.as_ref().is_none_or(|sent| sent.get()) {
                    exchange.worker.pool.release(lease);
                }
            }
        }
    }

    /// The backend failed mid-body: the client gets a truncated response, and it counts as the
    /// backend's failure. The connection is dropped, not pooled.
    fn fail(&mut self) {
        self.lease = None;
        if let Some(mut exchange) = self.exchange.take() {
            exchange.outcome = Some(Outcome::Error);
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // hyper may never poll a body it knows is empty (HEAD, 204, 304): that is an ending,
        // not a client leaving.
        if self.exchange.is_some() && self.inner.is_end_stream() {
            self.finish();
        }
        // Otherwise the exchange's own Drop records 499 and the lease closes with the body.
    }
}

#[derive(Debug)]
struct UpstreamStalled;

impl std::fmt::Display for UpstreamStalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the backend sent nothing for request_timeout mid-body")
    }
}

impl std::error::Error for UpstreamStalled {}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let relay = match self.get_mut() {
            ProxyBody::Empty => return Poll::Ready(None),
            ProxyBody::Relay(r) => r,
        };
        match Pin::new(&mut relay.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                relay.stall.progressed();
                if relay.inner.is_end_stream() {
                    relay.finish();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                relay.fail();
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => {
                relay.finish();
                Poll::Ready(None)
            }
            Poll::Pending => {
                if relay.stall.poll_expired(cx).is_ready() {
                    relay.fail();
                    return Poll::Ready(Some(Err(Box::new(UpstreamStalled))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Empty => true,
            ProxyBody::Relay(r) => r.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Empty => SizeHint::with_exact(0),
            ProxyBody::Relay(r) => r.inner.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, host: Option<&str>, version: Version) -> http::request::Parts {
        let mut b = Request::builder().uri(uri).version(version);
        if let Some(h) = host {
            b = b.header(HOST, h);
        }
        b.body(()).unwrap().into_parts().0
    }

    /// `prepare` for a backend at 10.0.0.1:80.
    fn prepared(p: http::request::Parts, h2c: bool) -> http::request::Parts {
        prepared_for(p, h2c, false)
    }

    fn prepared_for(
        mut p: http::request::Parts,
        h2c: bool,
        keep_form: bool,
    ) -> http::request::Parts {
        let hop = HopFields::scan(&p.headers);
        let host = HeaderValue::from_static("10.0.0.1:80");
        let target = Target {
            h2c,
            fallback_host: &host,
            keep_form,
        };
        prepare(&mut p, hop, &target, false).unwrap();
        p
    }

    #[test]
    fn a_passed_through_request_keeps_its_target_as_the_app_wrote_it() {
        let p = prepared_for(
            parts(
                "http://api.example/x",
                Some("api.example"),
                Version::HTTP_11,
            ),
            false,
            true,
        );
        assert_eq!(p.uri, "http://api.example/x");
        // Hop-by-hop fields still go: they are this hop's.
        let mut hop = parts("/x", Some("a"), Version::HTTP_11);
        hop.headers
            .insert(http::header::CONNECTION, HeaderValue::from_static("x-hop"));
        hop.headers.insert("x-hop", HeaderValue::from_static("1"));
        let p = prepared_for(hop, false, true);
        assert!(p.headers.get("x-hop").is_none());
        let mut hostless = parts("/x", Some("a"), Version::HTTP_11);
        hostless
            .headers
            .insert(http::header::CONNECTION, HeaderValue::from_static("host"));
        assert_eq!(
            prepared_for(hostless, false, true).headers[HOST],
            "10.0.0.1:80"
        );
        // h2c from h2c: HTTP/2 needs its pseudo-headers, so the usual rewrite applies.
        let p = prepared_for(parts("/x", Some("a"), Version::HTTP_2), true, true);
        assert_eq!(p.uri, "http://a/x");
    }

    #[test]
    fn http1_backends_get_origin_form_and_a_host() {
        let p = prepared(
            parts("http://api.local:8080/x?y=1", None, Version::HTTP_2),
            false,
        );
        assert_eq!(p.uri, "/x?y=1");
        assert_eq!(p.headers[HOST], "api.local:8080");
        assert_eq!(p.version, Version::HTTP_11);

        let p = prepared(parts("/x", Some("a.local"), Version::HTTP_10), false);
        assert_eq!(
            (p.uri.to_string().as_str(), p.version),
            ("/x", Version::HTTP_11)
        );
    }

    #[test]
    fn the_host_that_routed_is_the_host_the_backend_sees() {
        // An absolute-form target wins over a Host field, for routing and for the backend.
        let absolute = parts(
            "http://public.svc/x",
            Some("admin.internal"),
            Version::HTTP_11,
        );
        assert_eq!(prepared(absolute, false).headers[HOST], "public.svc");
        // No Host at all (HTTP/1.0), or one a `Connection` field named: the backend's address.
        let p = prepared(parts("/x", None, Version::HTTP_10), false);
        assert_eq!(p.headers[HOST], "10.0.0.1:80");
        let mut named = parts("/x", Some("a.local"), Version::HTTP_11);
        named
            .headers
            .insert(http::header::CONNECTION, HeaderValue::from_static("host"));
        assert_eq!(prepared(named, false).headers[HOST], "10.0.0.1:80");
    }

    #[test]
    fn h2c_backends_get_an_absolute_target() {
        let p = prepared(
            parts("/svc/Call", Some("grpc.local"), Version::HTTP_11),
            true,
        );
        assert_eq!(p.uri, "http://grpc.local/svc/Call");
        assert!(p.headers.get(HOST).is_none());
        assert_eq!(p.version, Version::HTTP_2);
    }

    #[test]
    fn header_size_counts_line_and_fields() {
        let req = Request::builder()
            .uri("/abc")
            .header("x-a", "12345")
            .body(())
            .unwrap();
        // "GET" + "/abc" + 12, then "x-a" + "12345" + 4
        assert_eq!(header_bytes(&req), 3 + 4 + 12 + 3 + 5 + 4);
    }
}
