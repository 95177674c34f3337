//! Protocol detection on the data port: HTTP/2 prior knowledge (h2c) or HTTP/1.x.
//!
//! hyper-util's auto server decides the same way, but with no time limit of its own, and
//! pingora's switch read exactly 24 bytes (the HTTP/2 preface's length) before deciding: a
//! complete HTTP/1.0 request such as `GET / HTTP/1.0\r\n\r\n` is 18 bytes. Either way a
//! connection that sends a few bytes and stops would pin a file descriptor.
//!
//! [`detect`] decides as soon as the bytes seen stop matching the preface (usually on the first
//! byte: `G`, `P`OST… only `P` needs a second look), bounded by the config's
//! `header_read_timeout` (a head cannot arrive before its first bytes) and by shutdown, and
//! puts the bytes back (see [`crate::io::Downstream`]) for the chosen server.

use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

use crate::io::Downstream;

/// The HTTP/2 connection preface (RFC 9113 §3.4).
pub const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

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

/// How long detection still waits for a new connection's first bytes once shutdown began.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// Reads until the protocol is known and rewinds what it read. `None`: the client closed, or
/// sent nothing decisive within `limit` (within [`SHUTDOWN_GRACE`] once shutdown began) — drop
/// the connection.
pub async fn detect(
    io: &mut Downstream,
    shutdown: &mut watch::Receiver<bool>,
    limit: Duration,
) -> Option<Protocol> {
    let mut buf = [0u8; H2_PREFACE.len()];
    let mut n = 0;
    let mut deadline = tokio::time::Instant::now() + limit;
    // At shutdown a connection accepted just before it still gets its request read (its bytes
    // may already be on the way), but only for `SHUTDOWN_GRACE`. A shutdown sender that is
    // gone counts as a shutdown (`changed` would return at once for ever).
    let mut stopping = *shutdown.borrow();
    if stopping {
        deadline = deadline.min(tokio::time::Instant::now() + SHUTDOWN_GRACE);
    }
    let protocol = loop {
        // Bounded: each pass reads at least one byte, and 24 bytes always decide.
        let read = tokio::select! {
            r = io.socket().read(&mut buf[n..]) => r,
            changed = shutdown.changed(), if !stopping => {
                if changed.is_err() || *shutdown.borrow() {
                    stopping = true;
                    deadline = deadline.min(tokio::time::Instant::now() + SHUTDOWN_GRACE);
                }
                continue;
            }
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
    io.rewind(Bytes::copy_from_slice(&buf[..n]));
    Some(protocol)
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
