//! Protocol detection on the data port: HTTP/2 prior knowledge (h2c) or HTTP/1.x.
//!
//! Pingora can do this itself (`HttpServerOptions::h2c`), but it reads exactly 24 bytes (the
//! length of the HTTP/2 preface) before deciding, with no time limit. A complete HTTP/1.0
//! request such as `GET / HTTP/1.0\r\n\r\n` is 18 bytes, so it would wait forever, and so would
//! any connection that sends a few bytes and stops: an easy way to pin file descriptors.
//!
//! This wrapper decides as soon as the bytes seen stop matching the preface (usually on the
//! first byte: `G`, `P`OST… only `P` needs a second look), bounded by a header timeout, then hands the
//! connection to one of two pingora apps built from the same proxy logic: one HTTP/1-only, one
//! with h2c on (which re-reads the preface we put back and goes straight to HTTP/2).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use tokio::io::AsyncReadExt;

/// The HTTP/2 connection preface (RFC 9113 §3.4).
pub const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How long a new connection may take to send enough bytes to tell its protocol
/// (nginx's `client_header_timeout` default is 60 s).
pub const DETECT_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    H2c,
}

/// Classifies the first bytes of a connection: `None` while they are still a prefix of the
/// HTTP/2 preface (more bytes needed).
pub fn classify(first: &[u8]) -> Option<Protocol> {
    let n = first.len().min(H2_PREFACE.len());
    if first[..n] != H2_PREFACE[..n] {
        Some(Protocol::Http1)
    } else if n == H2_PREFACE.len() {
        Some(Protocol::H2c)
    } else {
        None
    }
}

/// A pingora server app that detects the protocol, then runs `http1` or `h2c`. It also counts
/// open client connections, so a shutdown can wait until the last response is written out
/// (not only until the last request was handed back by the proxy logic).
pub struct Detect<A> {
    http1: Arc<A>,
    h2c: Arc<A>,
    connections: Arc<AtomicI64>,
}

impl<A> Detect<A> {
    pub fn new(http1: A, h2c: A, connections: Arc<AtomicI64>) -> Self {
        Detect {
            http1: Arc::new(http1),
            h2c: Arc::new(h2c),
            connections,
        }
    }
}

/// Counts one open connection while alive.
struct Open(Arc<AtomicI64>);

impl Open {
    fn new(count: &Arc<AtomicI64>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Open(count.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Detect<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let _open = Open::new(&self.connections);
        // Only plain TCP streams can have bytes put back; anything else goes to the h2c app,
        // which runs pingora's own detection.
        if !stream.as_any().is::<L4Stream>() {
            return self.h2c.process_new(stream, shutdown).await;
        }
        let mut l4: Box<L4Stream> = stream.into_any().downcast().ok()?;
        let mut buf = [0u8; H2_PREFACE.len()];
        let mut n = 0;
        let mut shutdown_rx = shutdown.clone();
        let deadline = tokio::time::Instant::now() + DETECT_TIMEOUT;
        let protocol = loop {
            if *shutdown_rx.borrow() {
                return None;
            }
            let read = tokio::select! {
                r = l4.read(&mut buf[n..]) => r,
                _ = shutdown_rx.changed() => return None,
                _ = tokio::time::sleep_until(deadline) => return None,
            };
            match read {
                Ok(0) | Err(_) => return None,
                Ok(k) => n += k,
            }
            if let Some(p) = classify(&buf[..n]) {
                break p;
            }
        };
        l4.rewind(&buf[..n]);
        let stream: Stream = l4;
        match protocol {
            Protocol::H2c => self.h2c.process_new(stream, shutdown).await,
            Protocol::Http1 => {
                // Keep-alive requests stay with the HTTP/1 app, which has its own idle timeout
                // and shutdown handling between requests; detection runs once per connection.
                let mut next = self.http1.process_new(stream, shutdown).await;
                while let Some(stream) = next {
                    next = self.http1.process_new(stream, shutdown).await;
                }
                None
            }
        }
    }

    async fn cleanup(&self) {
        self.http1.cleanup().await;
        self.h2c.cleanup().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decides_as_early_as_the_bytes_allow() {
        assert_eq!(classify(b"G"), Some(Protocol::Http1));
        assert_eq!(classify(b"GET / HTTP/1.0\r\n\r\n"), Some(Protocol::Http1));
        assert_eq!(classify(b"P"), None);
        assert_eq!(classify(b"POST"), Some(Protocol::Http1));
        assert_eq!(classify(b"PRI * HTTP/2.0\r\n"), None);
        assert_eq!(classify(H2_PREFACE), Some(Protocol::H2c));
        assert_eq!(classify(b"\x00\x01"), Some(Protocol::Http1));
    }
}
