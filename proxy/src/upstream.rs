//! Upstream connections: one pool per worker thread, shared by none.
//!
//! Each worker runs on its own single-threaded runtime (see `server`), so its pool is a
//! `RefCell` — no lock, no atomic reference count, no task per request. The choice, measured
//! against a connection set owned by each client connection and against hyper-util's shared
//! pooled client, is in ARCHITECTURE.md and benches/README.md.
//!
//! - **HTTP/1.1 backends**: an idle list per address. A request pops the most recently returned
//!   connection (warm in every cache) or dials a new one; the response body hands it back when
//!   it ends ([`H1Lease`]), so a connection is never shared by two requests in flight. Idle
//!   connections close after `upstream_idle_timeout` (a sweep every second), which is also how a
//!   drained backend's connections go.
//! - **The bound**: at most [`Pool::max_per_addr`] connections per address per worker, open or
//!   being dialled. A request that finds none free waits — for a connection another request
//!   returns, or a slot a closed one frees — within its `request_timeout`. A gateway with
//!   thousands of client connections to a few backends thus holds `workers × bound` upstream
//!   connections at most, and a sidecar (few clients) rarely more than it has requests in
//!   flight.
//! - **h2c backends**: one HTTP/2 connection per address per worker, its streams multiplexed
//!   (the backend's `MAX_CONCURRENT_STREAMS` queues the excess); replaced when it closes.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioIo, TokioTimer};
use rustc_hash::FxHashMap as HashMap;
use tokio::net::TcpStream;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

/// The body of a forwarded request.
pub enum UpBody {
    /// The client's body, known empty or not watched.
    Client(Incoming),
    /// The client's body, with a flag set once it has been sent to the end. An HTTP/1.1
    /// connection can finish its response before the request body (a 413 to a large upload):
    /// it goes back to the pool only when both are done.
    Watched(Incoming, Rc<Cell<bool>>),
    /// A replayed bodiless request.
    Empty,
}

impl UpBody {
    /// The client's body; a non-empty one is watched, and the flag returned.
    pub fn from_client(body: Incoming) -> (Self, Option<Rc<Cell<bool>>>) {
        if body.is_end_stream() {
            (UpBody::Client(body), None)
        } else {
            let done = Rc::new(Cell::new(false));
            (UpBody::Watched(body, done.clone()), Some(done))
        }
    }
}

impl Body for UpBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            UpBody::Client(b) => Pin::new(b).poll_frame(cx),
            UpBody::Watched(b, done) => {
                let polled = Pin::new(&mut *b).poll_frame(cx);
                if matches!(polled, Poll::Ready(None)) || b.is_end_stream() {
                    done.set(true);
                }
                polled
            }
            UpBody::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpBody::Client(b) | UpBody::Watched(b, _) => b.is_end_stream(),
            UpBody::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpBody::Client(b) | UpBody::Watched(b, _) => b.size_hint(),
            UpBody::Empty => SizeHint::with_exact(0),
        }
    }
}

/// HTTP/2 pings to h2c backends: every 30 s, and the connection is dropped if one goes
/// unanswered for 10 s.
const H2_PING_INTERVAL: Duration = Duration::from_secs(30);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `!Send` futures on the worker's `LocalSet` (hyper's HTTP/2 needs an executor).
#[derive(Clone, Copy, Debug, Default)]
pub struct LocalExec;

impl<F> hyper::rt::Executor<F> for LocalExec
where
    F: std::future::Future + 'static,
{
    fn execute(&self, fut: F) {
        tokio::task::spawn_local(fut);
    }
}

/// Why no upstream connection could be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialError {
    /// Refused, unreachable, or the handshake failed: 502.
    Failed,
    /// `connect_timeout` passed: 504.
    TimedOut,
}

/// An HTTP/1.1 connection checked out for one request.
pub struct H1Lease {
    pub send: http1::SendRequest<UpBody>,
    pub addr: SocketAddr,
    /// How long it sat in the idle list; `None` for a new connection. A backend's own idle
    /// timeout may have closed it meanwhile.
    pub idle_for: Option<Duration>,
    /// This backend has been seen closing connections right after using them (see
    /// [`Pool::mark_closes_early`]): any reuse may meet a close in flight.
    pub closes_early: bool,
}

struct Idle {
    send: http1::SendRequest<UpBody>,
    since: Instant,
}

struct Slot {
    idle: Vec<Idle>,
    waiters: VecDeque<oneshot::Sender<H1Lease>>,
    permits: Arc<Semaphore>,
    /// Sticky for the worker's life: see [`Pool::mark_closes_early`].
    closes_early: bool,
}

/// A pooled connection found closed after sitting idle less than this was closed by a
/// backend that closes right after a response (no `Connection: close`), not by an idle
/// timeout (those are seconds: Node.js's is 5 s, nginx's 75 s).
pub const EARLY_CLOSE: Duration = Duration::from_millis(100);

/// One worker's upstream connections.
pub struct Pool {
    h1: RefCell<HashMap<SocketAddr, Slot>>,
    /// The shared HTTP/2 connection per address and when a request last took it.
    h2: RefCell<HashMap<SocketAddr, (http2::SendRequest<UpBody>, Instant)>>,
    max_per_addr: usize,
}

impl Pool {
    pub fn new(max_per_addr: usize) -> Rc<Self> {
        Rc::new(Pool {
            // Keyed by socket address on every request: FxHash, not SipHash (nothing here is
            // chosen by a client, so there is no flooding to defend against).
            h1: RefCell::new(HashMap::default()),
            h2: RefCell::new(HashMap::default()),
            max_per_addr: max_per_addr.max(1),
        })
    }

    pub fn max_per_addr(&self) -> usize {
        self.max_per_addr
    }

    fn permits(&self, addr: SocketAddr) -> Arc<Semaphore> {
        let mut map = self.h1.borrow_mut();
        let slot = map.entry(addr).or_insert_with(|| Slot {
            idle: Vec::new(),
            waiters: VecDeque::new(),
            permits: Arc::new(Semaphore::new(self.max_per_addr)),
            closes_early: false,
        });
        slot.permits.clone()
    }

    /// An idle connection to `addr` that is still open, newest first.
    fn pop_idle(&self, addr: SocketAddr, idle_timeout: Duration) -> Option<H1Lease> {
        let mut map = self.h1.borrow_mut();
        let slot = map.get_mut(&addr)?;
        while let Some(idle) = slot.idle.pop() {
            let idle_for = idle.since.elapsed();
            if idle.send.is_closed() {
                slot.closes_early |= idle_for < EARLY_CLOSE;
            } else if idle_for < idle_timeout {
                return Some(H1Lease {
                    send: idle.send,
                    addr,
                    idle_for: Some(idle_for),
                    closes_early: slot.closes_early,
                });
            }
        }
        None
    }

    /// Notes that `addr`'s backend closed a connection moments after using it: from now on
    /// this worker copies bodiless idempotent requests before reusing a connection to it, so a
    /// close in flight costs a resend, not a failed request.
    pub fn mark_closes_early(&self, addr: SocketAddr) {
        if let Some(slot) = self.h1.borrow_mut().get_mut(&addr) {
            if !slot.closes_early {
                tracing::debug!(%addr, "backend closes connections right after responses; requests to it are replayable");
            }
            slot.closes_early = true;
        }
    }

    /// Checks out an HTTP/1.1 connection to `addr`: an idle one unless `fresh`, else a new one
    /// if the bound allows, else the next one returned or freed.
    pub async fn h1(
        &self,
        addr: SocketAddr,
        fresh: bool,
        connect_timeout: Duration,
        idle_timeout: Duration,
    ) -> Result<H1Lease, DialError> {
        if !fresh {
            if let Some(lease) = self.pop_idle(addr, idle_timeout) {
                return Ok(lease);
            }
        }
        let permits = self.permits(addr);
        let permit = match permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                // At the bound: wait for a returned connection or a freed slot. The caller's
                // request deadline bounds the wait.
                let (tx, rx) = oneshot::channel();
                if let Some(slot) = self.h1.borrow_mut().get_mut(&addr) {
                    slot.waiters.push_back(tx);
                }
                tokio::select! {
                    Ok(lease) = rx => return Ok(lease),
                    p = permits.acquire_owned() => p.map_err(|_| DialError::Failed)?,
                }
            }
        };
        let stream = dial(addr, connect_timeout).await?;
        let (send, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|_| DialError::Failed)?;
        tokio::task::spawn_local(async move {
            // The slot is held for as long as the connection lives.
            let _permit: OwnedSemaphorePermit = permit;
            let _ = conn.with_upgrades().await;
        });
        Ok(H1Lease {
            send,
            addr,
            idle_for: None,
            closes_early: false,
        })
    }

    /// Returns a connection whose response has ended: to a waiting request, or to the idle
    /// list.
    pub fn release(&self, lease: H1Lease) {
        if lease.send.is_closed() {
            return;
        }
        let mut map = self.h1.borrow_mut();
        let Some(slot) = map.get_mut(&lease.addr) else {
            return;
        };
        let mut lease = lease;
        while let Some(waiter) = slot.waiters.pop_front() {
            match waiter.send(lease) {
                Ok(()) => return,
                Err(back) => lease = back,
            }
        }
        slot.idle.push(Idle {
            send: lease.send,
            since: Instant::now(),
        });
    }

    /// The shared HTTP/2 connection to `addr`, dialled if there is none or it closed.
    pub async fn h2(
        &self,
        addr: SocketAddr,
        connect_timeout: Duration,
    ) -> Result<http2::SendRequest<UpBody>, DialError> {
        if let Some((send, used)) = self.h2.borrow_mut().get_mut(&addr) {
            if !send.is_closed() {
                *used = Instant::now();
                return Ok(send.clone());
            }
        }
        let stream = dial(addr, connect_timeout).await?;
        let (send, conn) = http2::Builder::new(LocalExec)
            .timer(TokioTimer::new())
            // A backend that vanished without a FIN (a pod gone) would otherwise keep this
            // connection "open" and every request to it would time out.
            .keep_alive_interval(H2_PING_INTERVAL)
            .keep_alive_timeout(H2_PING_TIMEOUT)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|_| DialError::Failed)?;
        tokio::task::spawn_local(async move {
            let _ = conn.await;
        });
        self.h2
            .borrow_mut()
            .insert(addr, (send.clone(), Instant::now()));
        Ok(send)
    }

    /// Closes idle HTTP/1 connections older than `idle_timeout` and forgets addresses with
    /// nothing open, idle or waiting.
    pub fn sweep(&self, idle_timeout: Duration) {
        let mut map = self.h1.borrow_mut();
        map.retain(|_, slot| {
            slot.idle
                .retain(|i| !i.send.is_closed() && i.since.elapsed() < idle_timeout);
            slot.waiters.retain(|w| !w.is_closed());
            !(slot.idle.is_empty()
                && slot.waiters.is_empty()
                && slot.permits.available_permits() == self.max_per_addr)
        });
        // An HTTP/2 connection no request took for `idle_timeout` is let go: requests still
        // streaming on it keep it open until they end, then it closes.
        self.h2
            .borrow_mut()
            .retain(|_, (s, used)| !s.is_closed() && used.elapsed() < idle_timeout);
    }
}

async fn dial(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, DialError> {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => Err(DialError::TimedOut),
        Ok(Err(_)) => Err(DialError::Failed),
        Ok(Ok(s)) => {
            // Small requests and responses go out at once, as nginx's `tcp_nodelay` does.
            let _ = s.set_nodelay(true);
            Ok(s)
        }
    }
}
