//! The client connection's byte stream, as the HTTP server reads and writes it.
//!
//! [`Downstream`] adds two things to a `TcpStream`, both free on the fast path:
//! - the bytes protocol detection already read are served again first (a rewind), so the
//!   HTTP/1 or HTTP/2 server sees the connection from its first byte;
//! - a write that cannot make progress for [`WRITE_STALL`] fails the connection: a client that
//!   stops reading its response would otherwise hold the request, its backend's in-flight count
//!   and a drain open for ever. The timer is armed only when a write returns `Pending` (the
//!   socket buffer is full) and disarmed by the next write that makes progress, so the common
//!   case — every write accepted at once — never touches the timer wheel.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// How long a client may stall reading its response (nginx's `send_timeout` default).
pub const WRITE_STALL: Duration = Duration::from_secs(60);

/// A client connection: rewound prefix, the socket, and the write-stall deadline.
pub struct Downstream {
    prefix: Bytes,
    inner: TcpStream,
    stall: Stall,
}

/// A deadline that runs only while something waits: armed by the first `Pending` after
/// progress, cleared by the next progress. The timer is allocated on first use and reset in
/// place after that, so a stream that never waits never touches the timer wheel.
pub struct Stall {
    sleep: Option<Pin<Box<Sleep>>>,
    armed: bool,
    limit: Duration,
}

impl Stall {
    pub fn new(limit: Duration) -> Self {
        Stall {
            sleep: None,
            armed: false,
            limit,
        }
    }

    /// Progress was made: the next wait starts a fresh deadline.
    #[inline]
    pub fn progressed(&mut self) {
        self.armed = false;
    }

    /// To be called when the guarded operation returned `Pending`: arms the deadline if it
    /// is not armed, and is `Ready` once it has passed.
    pub fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.armed {
            let deadline = Instant::now() + self.limit;
            match &mut self.sleep {
                Some(s) => s.as_mut().reset(deadline),
                None => self.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
            self.armed = true;
        }
        match &mut self.sleep {
            Some(s) => s.as_mut().poll(cx),
            None => Poll::Pending,
        }
    }
}

impl Downstream {
    pub fn new(inner: TcpStream) -> Self {
        Downstream {
            prefix: Bytes::new(),
            inner,
            stall: Stall::new(WRITE_STALL),
        }
    }

    /// Reads straight from the socket, bypassing the prefix (used by detection only, before
    /// anything was rewound).
    pub fn socket(&mut self) -> &mut TcpStream {
        &mut self.inner
    }

    /// Serves `bytes` before anything else is read from the socket.
    pub fn rewind(&mut self, bytes: Bytes) {
        debug_assert!(self.prefix.is_empty(), "rewound twice");
        self.prefix = bytes;
    }

    /// Called when a write returned `Pending`: fails once the stall deadline has passed.
    fn poll_stall(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        ready!(self.stall.poll_expired(cx));
        Poll::Ready(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client read nothing of its response for 60s",
        ))
    }

    fn progressed(&mut self) {
        self.stall.progressed();
    }
}

impl AsyncRead for Downstream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

/// Runs a write-like poll with the stall deadline around its `Pending`.
macro_rules! stall_guarded {
    ($this:ident, $cx:ident, $poll:expr) => {
        match $poll {
            Poll::Ready(r) => {
                $this.progressed();
                Poll::Ready(r)
            }
            Poll::Pending => match $this.poll_stall($cx) {
                Poll::Ready(e) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            },
        }
    };
}

impl AsyncWrite for Downstream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        stall_guarded!(this, cx, Pin::new(&mut this.inner).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        stall_guarded!(
            this,
            cx,
            Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
        )
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        stall_guarded!(this, cx, Pin::new(&mut this.inner).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// How long a tunnel (an opaque relay, a WebSocket) may move no byte either way before the
/// proxy closes it: Envoy's TCP proxy default. Long enough for a quiet database connection
/// between a pool's keep-alives, and a bound all the same on a peer that vanished without a FIN.
pub const TUNNEL_IDLE: Duration = Duration::from_secs(3600);

/// Copies bytes both ways between `a` and `b` until either side closes, or until no byte
/// moved for `idle` (then `TimedOut`). One timer per tunnel, checked a few times per `idle`,
/// not a timer per read.
pub async fn tunnel<A, B>(a: &mut A, b: &mut B, idle: Duration) -> io::Result<()>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let moved = std::cell::Cell::new(0u64);
    let (mut a, mut b) = (
        Counted {
            inner: a,
            moved: &moved,
        },
        Counted {
            inner: b,
            moved: &moved,
        },
    );
    let copy = tokio::io::copy_bidirectional(&mut a, &mut b);
    tokio::pin!(copy);
    let check = idle / 4;
    let (mut seen, mut since) = (0, Instant::now());
    // Bounded: each pass sleeps `check`, and `idle` without progress ends the loop.
    loop {
        tokio::select! {
            r = &mut copy => return r.map(|_| ()),
            _ = tokio::time::sleep(check) => {
                let now = Instant::now();
                if moved.get() != seen {
                    (seen, since) = (moved.get(), now);
                } else if now.duration_since(since) >= idle {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no byte moved either way for {}s", idle.as_secs()),
                    ));
                }
            }
        }
    }
}

/// A stream that counts the bytes read from it into a cell the tunnel's timer checks.
struct Counted<'a, T> {
    inner: &'a mut T,
    moved: &'a std::cell::Cell<u64>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<'_, T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut *this.inner).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        if n > 0 {
            this.moved.set(this.moved.get().wrapping_add(n));
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<'_, T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn a_tunnel_closes_after_its_idle_limit_and_not_while_bytes_move() {
        // As the proxy runs tunnels: on its worker's local task set.
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let (mut app, mut a) = tokio::io::duplex(64);
                let (mut b, mut far) = tokio::io::duplex(64);
                let idle = Duration::from_secs(40);
                let relay =
                    tokio::task::spawn_local(async move { tunnel(&mut a, &mut b, idle).await });
                let mut byte = [0u8; 1];
                // A byte every 30 s keeps it open well past one idle period.
                for _ in 0..4 {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    app.write_all(b"x").await.unwrap();
                    far.read_exact(&mut byte).await.unwrap();
                }
                assert!(!relay.is_finished());
                let quiet = Instant::now();
                let err = relay.await.unwrap().unwrap_err();
                assert_eq!(err.kind(), io::ErrorKind::TimedOut);
                let waited = quiet.elapsed();
                assert!(waited >= idle && waited <= idle + idle / 2, "{waited:?}");
            })
            .await;
    }
}
