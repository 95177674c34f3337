//! Hop-by-hop header handling (RFC 9110 §7.6.1), the same in both directions.
//!
//! A proxy must not forward the fields that describe one connection: `Connection` and every
//! field it names, `Keep-Alive`, `Proxy-Connection`, `Transfer-Encoding` (each hop frames its own
//! body; hyper re-frames), `TE` (except `TE: trailers`, which gRPC needs end to end over HTTP/2),
//! and `Upgrade` — kept only for a WebSocket upgrade the proxy relays.
//!
//! One pass over the field names finds which of these are present (a request from a typical
//! client has none; a response usually only `Connection: keep-alive`); only those are then
//! removed. Names a `Connection` field lists are collected only when it lists any, so the
//! common case allocates nothing and hashes no name it does not have to.

use http::header::{HeaderMap, HeaderName, CONNECTION, TE, TRANSFER_ENCODING, UPGRADE};

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Which hop-by-hop fields a header map has, found in one pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HopFields(u8);

impl HopFields {
    const CONNECTION: u8 = 1;
    const KEEP_ALIVE: u8 = 2;
    const PROXY_CONNECTION: u8 = 4;
    const TRANSFER_ENCODING: u8 = 8;
    const TE: u8 = 16;
    const UPGRADE: u8 = 32;

    pub fn scan(headers: &HeaderMap) -> Self {
        let mut found = 0;
        for name in headers.keys() {
            // Standard names compare as enum tags; the two non-standard ones by bytes, and
            // only when the length matches.
            found |= if name == CONNECTION {
                Self::CONNECTION
            } else if name == TRANSFER_ENCODING {
                Self::TRANSFER_ENCODING
            } else if name == TE {
                Self::TE
            } else if name == UPGRADE {
                Self::UPGRADE
            } else if *name == KEEP_ALIVE {
                Self::KEEP_ALIVE
            } else if *name == PROXY_CONNECTION {
                Self::PROXY_CONNECTION
            } else {
                0
            };
        }
        HopFields(found)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }
}

/// Whether a request asks for a WebSocket upgrade (`Connection: upgrade` and
/// `Upgrade: websocket`), the only upgrade the proxy relays.
pub fn wants_websocket(headers: &HeaderMap, hop: HopFields) -> bool {
    if !(hop.has(HopFields::UPGRADE) && hop.has(HopFields::CONNECTION)) {
        return false;
    }
    let upgrade = headers
        .get(UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    upgrade && connection_tokens(headers).any(|t| t.eq_ignore_ascii_case(b"upgrade"))
}

fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &[u8]> {
    headers
        .get_all(CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(|t| t.trim_ascii())
        .filter(|t| !t.is_empty())
}

/// Removes the hop-by-hop fields `hop` says are present. With `keep_upgrade`,
/// `Connection: upgrade` and `Upgrade` stay (a relayed WebSocket handshake, either direction).
pub fn strip_hop_by_hop(headers: &mut HeaderMap, hop: HopFields, keep_upgrade: bool) {
    if hop.is_empty() {
        return;
    }
    if hop.has(HopFields::CONNECTION) {
        // Fields the sender declared connection-specific. `close`, `keep-alive` and `upgrade`
        // are connection options, not field names to look for (though `keep-alive` is also a
        // field, removed below regardless).
        let named: Vec<HeaderName> = connection_tokens(headers)
            .filter(|t| {
                !t.eq_ignore_ascii_case(b"close")
                    && !t.eq_ignore_ascii_case(b"keep-alive")
                    && !t.eq_ignore_ascii_case(b"upgrade")
            })
            .filter_map(|t| HeaderName::from_bytes(t).ok())
            .collect();
        // Even a named `content-length` may go: hyper frames the forwarded body from the body
        // itself. A named `host` is put back by the request path (HTTP/1.1 requires one).
        for name in named {
            headers.remove(name);
        }
        if keep_upgrade {
            headers.insert(CONNECTION, http::HeaderValue::from_static("upgrade"));
        } else {
            headers.remove(CONNECTION);
        }
    }
    if hop.has(HopFields::KEEP_ALIVE) {
        headers.remove(&KEEP_ALIVE);
    }
    if hop.has(HopFields::PROXY_CONNECTION) {
        headers.remove(&PROXY_CONNECTION);
    }
    if hop.has(HopFields::TRANSFER_ENCODING) {
        headers.remove(TRANSFER_ENCODING);
    }
    if hop.has(HopFields::UPGRADE) && !keep_upgrade {
        headers.remove(UPGRADE);
    }
    if hop.has(HopFields::TE) {
        let trailers_only = headers
            .get(TE)
            .is_some_and(|te| te.as_bytes().eq_ignore_ascii_case(b"trailers"));
        if !trailers_only {
            headers.remove(TE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn strip(h: &mut HeaderMap, keep_upgrade: bool) {
        let hop = HopFields::scan(h);
        strip_hop_by_hop(h, hop, keep_upgrade);
    }

    fn ws(h: HeaderMap) -> bool {
        wants_websocket(&h, HopFields::scan(&h))
    }

    fn names(h: &HeaderMap) -> Vec<&str> {
        let mut v: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        v.sort();
        v
    }

    #[test]
    fn removes_fixed_and_connection_named_fields() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret-Hop"),
            ("connection", "close"),
            ("x-secret-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("te", "gzip"),
            ("x-user-id", "u-1"),
            ("content-length", "5"),
        ]);
        strip(&mut h, false);
        assert_eq!(names(&h), ["content-length", "x-user-id"]);
    }

    #[test]
    fn keeps_te_trailers_and_a_websocket_upgrade() {
        let mut h = map(&[
            ("te", "trailers"),
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
        ]);
        assert!(wants_websocket(&h, HopFields::scan(&h)));
        strip(&mut h, true);
        assert_eq!(h["te"], "trailers");
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
    }

    #[test]
    fn only_websocket_counts_as_an_upgrade() {
        assert!(!ws(map(&[("connection", "upgrade"), ("upgrade", "h2c")])));
        assert!(!ws(map(&[("upgrade", "websocket")])));
        assert!(ws(map(&[
            ("connection", "keep-alive, upgrade"),
            ("upgrade", "WebSocket")
        ])));
    }

    #[test]
    fn the_scan_finds_exactly_the_hop_by_hop_names() {
        assert!(HopFields::scan(&map(&[("host", "x"), ("x-user-id", "1")])).is_empty());
        assert!(HopFields::scan(&map(&[("content-length", "1"), ("keep-alivex", "1")])).is_empty());
        for name in [
            "connection",
            "Keep-Alive",
            "proxy-connection",
            "transfer-encoding",
            "te",
            "upgrade",
        ] {
            assert!(!HopFields::scan(&map(&[(name, "1")])).is_empty(), "{name}");
        }
    }

    #[test]
    fn leaves_end_to_end_fields_alone() {
        let mut h = map(&[("x-a", "1"), ("trailer", "grpc-status"), ("host", "x")]);
        strip(&mut h, false);
        assert_eq!(names(&h), ["host", "trailer", "x-a"]);
    }
}
