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
//!
//! An intercepted connection (transparent mode) may carry anything the app sends — TLS to an
//! outside API, a database protocol — so it is HTTP only if it starts like HTTP: the h2c
//! preface, or a request line's method token and a space ([`classify_intercepted`]), except
//! `CONNECT`: a tunnel through the app's own forward proxy is relayed whole.
//! Anything else, and a connection that stays silent for [`OPAQUE_AFTER`] (a protocol where
//! the server speaks first), is relayed as opaque TCP to its original destination. Linkerd's
//! proxy decides the same way, with the same 10 s.

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
    /// Not HTTP: relay the bytes unchanged (intercepted connections only).
    Opaque,
}

/// How long an intercepted connection may stay silent before it is relayed as opaque TCP.
pub const OPAQUE_AFTER: Duration = Duration::from_secs(10);

/// The longest method token an HTTP/1 request line is recognised by (`PROPPATCH` is 9).
const MAX_METHOD: usize = 20;

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

/// [`classify`] for an intercepted connection: HTTP only if it starts like an HTTP request,
/// [`Protocol::Opaque`] otherwise. Decides within [`H2_PREFACE`]'s 24 bytes.
pub fn classify_intercepted(first: &[u8]) -> Option<Protocol> {
    let n = first.len().min(H2_PREFACE.len());
    if first[..n] == H2_PREFACE[..n] {
        return (n == H2_PREFACE.len()).then_some(Protocol::H2c);
    }
    for (i, &b) in first.iter().enumerate() {
        match b {
            b'A'..=b'Z' if i < MAX_METHOD => {}
            // CONNECT asks the destination (the app's own forward proxy) for a tunnel: the
            // bytes after it are the tunnel's, so the whole connection is relayed as it is.
            b' ' if &first[..i] == b"CONNECT" => return Some(Protocol::Opaque),
            b' ' if i > 0 => return Some(Protocol::Http1),
            _ => return Some(Protocol::Opaque),
        }
    }
    None
}

/// How detection classifies a connection's first bytes and what a silent one becomes.
#[derive(Clone, Copy)]
pub struct Rules {
    pub classify: fn(&[u8]) -> Option<Protocol>,
    /// When no decision came within the limit: drop the connection (`None`), or this.
    pub on_silence: Option<Protocol>,
}

/// A connection the app made to the proxy: HTTP/1 or h2c, dropped if silent.
pub const EXPLICIT: Rules = Rules {
    classify,
    on_silence: None,
};

/// A connection iptables redirected to the proxy: HTTP if it looks like it, else opaque.
pub const INTERCEPTED: Rules = Rules {
    classify: classify_intercepted,
    on_silence: Some(Protocol::Opaque),
};

/// How long detection still waits for a new connection's first bytes once shutdown began.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// Reads until the protocol is known and rewinds what it read. `None`: the client closed, or
/// sent nothing decisive within `limit` (within [`SHUTDOWN_GRACE`] once shutdown began) — drop
/// the connection.
pub async fn detect(
    io: &mut Downstream,
    shutdown: &mut watch::Receiver<bool>,
    limit: Duration,
    rules: Rules,
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
            _ = tokio::time::sleep_until(deadline) => match rules.on_silence {
                // Not at shutdown: a connection opened just before it is not worth a relay.
                Some(p) if !stopping => break p,
                _ => return None,
            },
        };
        match read {
            Ok(0) | Err(_) => return None,
            Ok(k) => n += k,
        }
        if let Some(p) = (rules.classify)(&buf[..n]) {
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

    #[test]
    fn intercepted_connections_are_http_only_if_they_start_like_it() {
        use Protocol::*;
        assert_eq!(classify_intercepted(b"GET / HTTP/1.1\r\n"), Some(Http1));
        assert_eq!(classify_intercepted(b"GET "), Some(Http1));
        assert_eq!(classify_intercepted(b"GE"), None);
        assert_eq!(classify_intercepted(b"PROPPATCH "), Some(Http1));
        assert_eq!(classify_intercepted(b"P"), None);
        assert_eq!(classify_intercepted(b"PRI * HTTP/2.0\r\n"), None);
        assert_eq!(classify_intercepted(H2_PREFACE), Some(H2c));
        assert_eq!(classify_intercepted(b"PRIX"), None);
        assert_eq!(classify_intercepted(b"PRI *X"), Some(Http1));
        // A tunnel through the app's forward proxy is its business: relayed whole.
        assert_eq!(
            classify_intercepted(b"CONNECT api.example:443"),
            Some(Opaque)
        );
        assert_eq!(classify_intercepted(b"CONNECT"), None);
        assert_eq!(classify_intercepted(b"CONNECTX "), Some(Http1));
        // TLS ClientHello, a lower-case line, a leading space, binary: not HTTP.
        assert_eq!(classify_intercepted(b"\x16\x03\x01\x02"), Some(Opaque));
        assert_eq!(classify_intercepted(b"get / HTTP/1.1"), Some(Opaque));
        assert_eq!(classify_intercepted(b" GET"), Some(Opaque));
        assert_eq!(classify_intercepted(b"\x00"), Some(Opaque));
        // A token too long to be a method decides within the buffer.
        assert_eq!(classify_intercepted(&[b'A'; 24]), Some(Opaque));
        assert_eq!(classify_intercepted(&[b'A'; 20]), None);
    }
}
