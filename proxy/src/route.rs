//! The compiled route table: what the request path reads to pick a route and a backend.
//!
//! A [`RouteTable`] is built from a validated [`Config`] off the request path (names resolved,
//! splits compiled, header names parsed, metric handles fetched) and is then immutable. Config
//! changes build a new table and swap it in whole through [`crate::TableHandle`]; a request
//! holds the backend it picked, never the table, so a swap never mixes two configs within one
//! request and never waits for requests in flight.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderMap, HeaderName, HeaderValue, COOKIE, HOST};
use http::Uri;

use crate::config::{self, Config, ConfigError, FieldError, KeySource, OnMissingKey};
use crate::metrics::{BackendStats, Metrics, UNMATCHED};
use crate::split::Split;

/// Request header that forces a backend when a route has `allow_override: true`.
pub const OVERRIDE_HEADER: &str = "x-vireo-backend";

/// Per-request limits that come from the config and change with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    pub upstream_idle_timeout: Duration,
    pub max_header_bytes: usize,
}

/// An immutable, compiled config.
pub struct RouteTable {
    version: u64,
    config: Arc<Config>,
    limits: Limits,
    routes: Box<[CompiledRoute]>,
    unmatched: Arc<BackendStats>,
}

struct CompiledRoute {
    name: Arc<str>,
    host: Option<HostMatch>,
    path_prefix: Option<Box<str>>,
    headers: Box<[(HeaderName, HeaderValue)]>,
    /// Original destinations an intercepted connection must have had; empty: any.
    destinations: Box<[SocketAddr]>,
    key: Option<Key>,
    on_missing_key: OnMissingKey,
    salt: Box<[u8]>,
    allow_override: bool,
    split: Split,
    backends: Box<[Arc<Backend>]>,
}

enum HostMatch {
    /// Lower-cased exact host.
    Exact(Box<str>),
    /// Lower-cased suffix including the leading dot: `*.example.com` → `.example.com`.
    Suffix(Box<str>),
}

enum Key {
    Header(HeaderName),
    Cookie(Box<str>),
    Query(Box<str>),
}

/// One backend of a compiled route.
pub struct Backend {
    name: Box<str>,
    version: Box<str>,
    weight: u32,
    h2c: bool,
    /// The original destination of an unrouted request ([`Backend::passthrough`]).
    passthrough: bool,
    addrs: Box<[SocketAddr]>,
    /// `Host` for a request that came without one (the first address, as nginx's
    /// `$proxy_host`), built once here rather than per request.
    host: HeaderValue,
    next: AtomicUsize,
    stats: Arc<BackendStats>,
}

impl Backend {
    /// The backend of a request no route claimed on an intercepted connection: its original
    /// destination, keeping the client's `Host`, in the protocol the client spoke (`h2c`: it
    /// opened with the HTTP/2 preface, so the destination speaks HTTP/2 with prior knowledge).
    pub fn passthrough(addr: SocketAddr, h2c: bool, stats: Arc<BackendStats>) -> Backend {
        Backend {
            name: "original".into(),
            version: "".into(),
            weight: 1,
            h2c,
            passthrough: true,
            addrs: Box::new([addr]),
            host: HeaderValue::from_str(&addr.to_string())
                .unwrap_or_else(|_| HeaderValue::from_static("localhost")),
            next: AtomicUsize::new(0),
            stats,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn version(&self) -> &str {
        &self.version
    }
    pub fn weight(&self) -> u32 {
        self.weight
    }
    /// The backend of unrouted requests on an intercepted connection ([`Backend::passthrough`]).
    pub fn is_passthrough(&self) -> bool {
        self.passthrough
    }
    /// Whether to speak HTTP/2 with prior knowledge to this backend.
    pub fn h2c(&self) -> bool {
        self.h2c
    }
    pub fn stats(&self) -> &Arc<BackendStats> {
        &self.stats
    }
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }
    pub fn host(&self) -> &HeaderValue {
        &self.host
    }

    /// Round-robin start position for a new request.
    #[inline]
    pub fn next_start(&self) -> usize {
        self.next.fetch_add(1, Relaxed)
    }

    /// The address for `attempt` (0-based) of a request that started at `start`: each retry after
    /// a failed connect moves on to the next address.
    #[inline]
    pub fn addr(&self, start: usize, attempt: usize) -> SocketAddr {
        self.addrs[(start.wrapping_add(attempt)) % self.addrs.len()]
    }
}

/// Where a request goes. Borrows from the table: the caller clones only what it keeps.
pub enum Selection<'a> {
    Backend {
        route: &'a str,
        backend: &'a Arc<Backend>,
    },
    /// No route matched: 404, counted under `route="_unmatched"`.
    Unmatched(&'a Arc<BackendStats>),
}

impl RouteTable {
    /// Compiles a validated config. Fails only if a host name no longer resolves.
    pub fn compile(config: Config, version: u64, metrics: &Metrics) -> Result<Self, ConfigError> {
        // Every source goes through validation, not only files: a table built from an
        // unvalidated config (a backend with no address) could fail on the request path.
        config.validate()?;
        let mut routes = Vec::with_capacity(config.routes.len());
        let mut errors = Vec::new();
        for (ri, r) in config.routes.iter().enumerate() {
            let s = &r.split;
            let weights: Vec<u32> = s
                .backends
                .iter()
                .map(|b| b.weight.clamp(0, config::MAX_WEIGHT) as u32)
                .collect();
            let split = match Split::new(s.buckets, &weights) {
                Ok(split) => split,
                Err(e) => {
                    errors.push(FieldError {
                        path: format!("routes[{ri}].split"),
                        reason: e.to_string(),
                    });
                    continue;
                }
            };
            let mut backends = Vec::with_capacity(s.backends.len());
            for (bi, b) in s.backends.iter().enumerate() {
                let mut addrs = Vec::with_capacity(b.addrs.len());
                for (ai, a) in b.addrs.iter().enumerate() {
                    match config::resolve(a) {
                        Ok(sa) => addrs.push(sa),
                        Err(reason) => errors.push(FieldError {
                            path: format!("routes[{ri}].split.backends[{bi}].addrs[{ai}]"),
                            reason,
                        }),
                    }
                }
                let host = addrs
                    .first()
                    .and_then(|a| HeaderValue::from_str(&a.to_string()).ok())
                    .unwrap_or_else(|| HeaderValue::from_static("localhost"));
                backends.push(Arc::new(Backend {
                    name: b.name.as_str().into(),
                    version: b.version.as_str().into(),
                    weight: weights[bi],
                    h2c: b.protocol == config::UpstreamProtocol::H2c,
                    passthrough: false,
                    addrs: addrs.into(),
                    host,
                    next: AtomicUsize::new(0),
                    stats: metrics.backend(&r.name, &b.name, &b.version),
                }));
            }
            let m = &r.matches;
            // Validation has checked these; an error here still fails the compile rather than
            // dropping a match condition (which would widen the route).
            let mut headers = Vec::with_capacity(m.headers.len());
            for (k, v) in &m.headers {
                match (
                    HeaderName::from_bytes(k.as_bytes()),
                    HeaderValue::from_str(v),
                ) {
                    (Ok(k), Ok(v)) => headers.push((k, v)),
                    _ => errors.push(FieldError {
                        path: format!("routes[{ri}].match.headers.{k}"),
                        reason: "not a valid header name and value".into(),
                    }),
                }
            }
            let mut destinations = Vec::with_capacity(m.destinations.len());
            for (di, d) in m.destinations.iter().enumerate() {
                match d.parse::<SocketAddr>() {
                    Ok(a) => destinations.push(a),
                    Err(_) => errors.push(FieldError {
                        path: format!("routes[{ri}].match.destinations[{di}]"),
                        reason: "not an ip:port address".into(),
                    }),
                }
            }
            let key = match &s.key {
                None => None,
                Some(KeySource::Header(h)) => match HeaderName::from_bytes(h.as_bytes()) {
                    Ok(h) => Some(Key::Header(h)),
                    Err(_) => {
                        errors.push(FieldError {
                            path: format!("routes[{ri}].split.key.header"),
                            reason: "not a valid header name".into(),
                        });
                        continue;
                    }
                },
                Some(KeySource::Cookie(c)) => Some(Key::Cookie(c.as_str().into())),
                Some(KeySource::Query(q)) => Some(Key::Query(q.as_str().into())),
            };
            routes.push(CompiledRoute {
                name: r.name.as_str().into(),
                host: m.host.as_deref().map(|h| {
                    let h = h.to_ascii_lowercase();
                    match h.strip_prefix('*') {
                        Some(suffix) => HostMatch::Suffix(suffix.into()),
                        None => HostMatch::Exact(h.into()),
                    }
                }),
                path_prefix: m.path_prefix.as_deref().map(Into::into),
                headers: headers.into(),
                destinations: destinations.into(),
                key,
                on_missing_key: s.on_missing_key,
                salt: s.salt_or(&r.name).as_bytes().into(),
                allow_override: s.allow_override,
                split,
                backends: backends.into(),
            });
        }
        if !errors.is_empty() {
            return Err(ConfigError { errors });
        }
        Ok(RouteTable {
            version,
            limits: Limits {
                request_timeout: config.request_timeout,
                connect_timeout: config.connect_timeout,
                upstream_idle_timeout: config.upstream_idle_timeout,
                max_header_bytes: config.max_header_bytes,
            },
            config: Arc::new(config),
            routes: routes.into(),
            unmatched: metrics.backend(UNMATCHED, "", ""),
        })
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    pub fn unmatched(&self) -> &Arc<BackendStats> {
        &self.unmatched
    }

    /// Every `(route, backend)` of the table, in config order.
    pub fn backends(&self) -> impl Iterator<Item = (&str, &Arc<Backend>)> {
        self.routes
            .iter()
            .flat_map(|r| r.backends.iter().map(move |b| (&*r.name, b)))
    }

    /// Picks the route and backend for a request. `dst` is the connection's original
    /// destination when it was intercepted (transparent mode). `random` is only drawn when the
    /// split needs it (no key, `on_missing_key: random`).
    pub fn select(
        &self,
        uri: &Uri,
        headers: &HeaderMap,
        dst: Option<SocketAddr>,
        random: impl FnOnce() -> u64,
    ) -> Selection<'_> {
        let host = request_host(uri, headers);
        let Some(route) = self
            .routes
            .iter()
            .find(|r| r.matches(host, uri, headers, dst))
        else {
            return Selection::Unmatched(&self.unmatched);
        };
        let index = route.pick(uri, headers, random);
        Selection::Backend {
            route: &route.name,
            backend: &route.backends[index],
        }
    }
}

impl CompiledRoute {
    fn matches(
        &self,
        host: Option<&[u8]>,
        uri: &Uri,
        headers: &HeaderMap,
        dst: Option<SocketAddr>,
    ) -> bool {
        // Only an intercepted connection has an original destination to compare; a request
        // made to the proxy itself (explicit mode) is matched on its other conditions.
        if let Some(d) = dst {
            if !self.destinations.is_empty() && !self.destinations.contains(&d) {
                return false;
            }
        }
        if let Some(want) = &self.host {
            let Some(host) = host else { return false };
            let ok = match want {
                HostMatch::Exact(h) => host.eq_ignore_ascii_case(h.as_bytes()),
                HostMatch::Suffix(s) => {
                    host.len() > s.len()
                        && host[host.len() - s.len()..].eq_ignore_ascii_case(s.as_bytes())
                }
            };
            if !ok {
                return false;
            }
        }
        if let Some(prefix) = &self.path_prefix {
            if !path_has_prefix(uri.path(), prefix) {
                return false;
            }
        }
        self.headers
            .iter()
            .all(|(name, value)| headers.get_all(name).iter().any(|v| v == value))
    }

    fn pick(&self, uri: &Uri, headers: &HeaderMap, random: impl FnOnce() -> u64) -> usize {
        if self.allow_override {
            // Only backends that take traffic: a weight-0 backend is drained, and an override
            // must not keep sending it new requests.
            if let Some(forced) = headers.get(OVERRIDE_HEADER).and_then(|v| {
                self.backends
                    .iter()
                    .position(|b| b.weight > 0 && b.name.as_bytes() == v.as_bytes())
            }) {
                return forced;
            }
        }
        let key = match &self.key {
            None => None,
            Some(Key::Header(name)) => headers.get(name).map(|v| v.as_bytes()),
            Some(Key::Cookie(name)) => cookie(headers, name),
            Some(Key::Query(name)) => query(uri, name),
        };
        match key {
            Some(key) => self.split.backend_for_key(&self.salt, key),
            None if self.key.is_some() && self.on_missing_key == OnMissingKey::First => {
                self.split.first_weighted()
            }
            None => self.split.backend_for_random(random()),
        }
    }
}

/// The request's host without port: the URI's authority when it has one (h2 `:authority`, or
/// an HTTP/1 absolute-form target, which RFC 9112 §3.2.2 says wins over `Host`), else `Host`.
fn request_host<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> Option<&'a [u8]> {
    let raw = match uri.authority() {
        Some(a) => a.as_str().as_bytes(),
        None => headers.get(HOST)?.as_bytes(),
    };
    Some(strip_port(raw))
}

/// Gateway API `PathPrefix` semantics: the prefix matches whole path segments, so `/api`
/// matches `/api` and `/api/v1` but not `/apiv2`. A prefix ending in `/` matches below it.
fn path_has_prefix(path: &str, prefix: &str) -> bool {
    let Some(rest) = path.strip_prefix(prefix) else {
        return false;
    };
    prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/')
}

fn strip_port(host: &[u8]) -> &[u8] {
    if host.first() == Some(&b'[') {
        // [v6]:port → [v6]
        return match host.iter().position(|&c| c == b']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.iter().rposition(|&c| c == b':') {
        Some(colon) => &host[..colon],
        None => host,
    }
}

/// The value of cookie `name`, as sent (no decoding).
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
    headers.get_all(COOKIE).iter().find_map(|h| {
        h.as_bytes().split(|&c| c == b';').find_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|&c| c == b'=')?;
            (pair[..eq].trim_ascii() == name.as_bytes()).then(|| pair[eq + 1..].trim_ascii())
        })
    })
}

/// The value of query parameter `name`, as sent (no percent-decoding: the bytes on the wire are
/// the key, so every client that sends the same URL lands in the same bucket).
fn query<'a>(uri: &'a Uri, name: &str) -> Option<&'a [u8]> {
    uri.query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v.as_bytes())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(yaml: &str) -> RouteTable {
        let metrics = Metrics::new(&[1.0]);
        RouteTable::compile(Config::parse(yaml).unwrap(), 1, &metrics).unwrap()
    }

    const TWO_ROUTES: &str = r#"
listen: 127.0.0.1:4140
admin: 127.0.0.1:4191
routes:
  - name: api
    match: { host: "*.example.com", path_prefix: /api, headers: { x-env: prod } }
    split:
      key: { cookie: uid }
      on_missing_key: first
      allow_override: true
      backends:
        - { name: canary, addrs: [127.0.0.1:1], weight: 50 }
        - { name: stable, addrs: [127.0.0.1:2], weight: 50 }
  - name: web
    match: { host: web.local }
    split:
      key: { query: uid }
      backends:
        - { name: canary, addrs: ["127.0.0.1:3", "127.0.0.1:4"], weight: 0 }
        - { name: stable, addrs: [127.0.0.1:5], weight: 1 }
"#;

    fn pick(t: &RouteTable, uri: &str, headers: &[(&str, &str)]) -> Option<(String, String)> {
        let uri: Uri = uri.parse().unwrap();
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        pick_at(t, uri, h, None)
    }

    fn pick_at(
        t: &RouteTable,
        uri: Uri,
        h: HeaderMap,
        dst: Option<&str>,
    ) -> Option<(String, String)> {
        match t.select(&uri, &h, dst.map(|d| d.parse().unwrap()), || 0) {
            Selection::Backend { route, backend } => {
                Some((route.to_string(), backend.name().to_string()))
            }
            Selection::Unmatched(_) => None,
        }
    }

    #[test]
    fn host_path_and_header_matching() {
        let t = table(TWO_ROUTES);
        let prod = [("host", "a.example.com:8080"), ("x-env", "prod")];
        assert!(pick(&t, "/api/x", &prod).is_some());
        // apex does not match "*.example.com"; wrong path; missing header
        assert!(pick(&t, "/api/x", &[("host", "example.com"), ("x-env", "prod")]).is_none());
        assert!(pick(&t, "/web", &prod).is_none());
        assert!(pick(&t, "/api", &[("host", "a.example.com")]).is_none());
        assert_eq!(
            pick(&t, "/", &[("host", "WEB.local")]).unwrap().0,
            "web",
            "host match ignores case"
        );
        // h2 requests carry the host in the URI authority
        assert_eq!(pick(&t, "http://web.local/x", &[]).unwrap().0, "web");
    }

    #[test]
    fn original_destination_matching() {
        let t = table(
            r#"
listen: 127.0.0.1:4140
admin: 127.0.0.1:4191
transparent: true
routes:
  - name: by-ip
    match: { destinations: ["10.96.0.10:80", "[fd00::10]:80"] }
    split: { backends: [ { name: stable, addrs: [127.0.0.1:1], weight: 1 } ] }
  - name: by-host
    match: { host: web.local }
    split: { backends: [ { name: stable, addrs: [127.0.0.1:2], weight: 1 } ] }
"#,
        );
        let route = |host: &str, dst: Option<&str>| {
            let mut h = HeaderMap::new();
            h.insert(HOST, host.parse().unwrap());
            pick_at(&t, "/".parse().unwrap(), h, dst).map(|(r, _)| r)
        };
        // The destination decides whatever the Host says (an app calling the IP sends the IP).
        assert_eq!(route("10.96.0.10", Some("10.96.0.10:80")).unwrap(), "by-ip");
        assert_eq!(route("web.local", Some("10.96.0.10:80")).unwrap(), "by-ip");
        assert_eq!(route("x", Some("[fd00::10]:80")).unwrap(), "by-ip");
        // Another port of the same IP, another address: not this route.
        assert_eq!(
            route("web.local", Some("10.96.0.10:81")).unwrap(),
            "by-host"
        );
        assert_eq!(
            route("web.local", Some("10.96.0.11:80")).unwrap(),
            "by-host"
        );
        assert_eq!(route("10.96.0.10", Some("10.96.0.11:80")), None);
        // A request made to the proxy itself has no original destination: the other
        // conditions decide (none here), as in explicit mode.
        assert_eq!(route("anything", None).unwrap(), "by-ip");
        assert!(Config::parse(
            "listen: 127.0.0.1:1\nadmin: 127.0.0.1:2\nroutes:\n  - name: r\n    match: { destinations: [web.default.svc:80] }\n    split: { backends: [ { name: s, addrs: [127.0.0.1:1], weight: 1 } ] }\n"
        )
        .unwrap_err()
        .to_string()
        .contains("routes[0].match.destinations[0]"));
    }

    #[test]
    fn keys_from_cookie_and_query_follow_the_split() {
        let t = table(TWO_ROUTES);
        // weight 0 canary never gets a keyed request
        for i in 0..200 {
            let uri = format!("/?a=1&uid=u-{i}");
            assert_eq!(
                pick(&t, &uri, &[("host", "web.local")]).unwrap().1,
                "stable"
            );
        }
        // cookie keys land where the bucket function says
        let salt = b"api";
        let mut seen = [0; 2];
        for i in 0..200 {
            let id = format!("u-{i}");
            let want = crate::split::bucket(salt, id.as_bytes(), 100) < 50;
            let cookie = format!("a=b; uid={id}; c=d");
            let got = pick(
                &t,
                "/api",
                &[
                    ("host", "x.example.com"),
                    ("x-env", "prod"),
                    ("cookie", &cookie),
                ],
            )
            .unwrap()
            .1;
            assert_eq!(got == "canary", want, "{id}");
            seen[usize::from(want)] += 1;
        }
        assert!(seen[0] > 0 && seen[1] > 0);
    }

    #[test]
    fn missing_key_first_and_override() {
        let t = table(TWO_ROUTES);
        let base = [("host", "x.example.com"), ("x-env", "prod")];
        assert_eq!(pick(&t, "/api", &base).unwrap().1, "canary");
        let forced = [base[0], base[1], ("x-vireo-backend", "stable")];
        assert_eq!(pick(&t, "/api", &forced).unwrap().1, "stable");
        // an unknown name is ignored, not an error
        let unknown = [base[0], base[1], ("x-vireo-backend", "nope")];
        assert_eq!(pick(&t, "/api", &unknown).unwrap().1, "canary");
    }

    #[test]
    fn path_prefixes_match_whole_segments() {
        for (path, prefix, want) in [
            ("/api", "/api", true),
            ("/api/v1", "/api", true),
            ("/apiv2", "/api", false),
            ("/api/", "/api/", true),
            ("/api", "/api/", false),
            ("/anything", "/", true),
        ] {
            assert_eq!(path_has_prefix(path, prefix), want, "{path} vs {prefix}");
        }
        let t = table(TWO_ROUTES);
        let prod = [("host", "a.example.com"), ("x-env", "prod")];
        assert!(pick(&t, "/apiv2", &prod).is_none());
    }

    #[test]
    fn an_override_never_reaches_a_drained_backend() {
        let t = table(&TWO_ROUTES.replace(
            "key: { query: uid }",
            "key: { query: uid }\n      allow_override: true",
        ));
        let forced = [("host", "web.local"), ("x-vireo-backend", "canary")];
        assert_eq!(
            pick(&t, "/", &forced).unwrap().1,
            "stable",
            "canary has weight 0"
        );
    }

    #[test]
    fn an_absolute_form_target_wins_over_the_host_header() {
        let t = table(TWO_ROUTES);
        let r = pick(&t, "http://web.local/x", &[("host", "other.local")]);
        assert_eq!(r.unwrap().0, "web");
    }

    #[test]
    fn round_robin_moves_to_next_address_on_retry() {
        let t = table(TWO_ROUTES);
        let (_, b) = t
            .backends()
            .find(|(r, b)| *r == "web" && b.name() == "canary")
            .unwrap();
        let start = b.next_start();
        assert_ne!(b.addr(start, 0), b.addr(start, 1));
        assert_eq!(b.addr(start, 0), b.addr(start, 2));
    }

    #[test]
    fn host_port_stripping() {
        assert_eq!(strip_port(b"a.b:80"), b"a.b");
        assert_eq!(strip_port(b"a.b"), b"a.b");
        assert_eq!(strip_port(b"[::1]:80"), b"[::1]");
    }
}
