//! The proxy's configuration: the YAML/JSON file format of `shared/spec/proxy.md`, parsed and
//! validated.
//!
//! Parsing and validation are one step, [`Config::parse`], so nothing downstream ever sees a
//! config that has not been checked. Every error names the field path it is about
//! (`routes[0].split.backends[1].weight: must be >= 0`): serde errors get their path from
//! `serde_path_to_error`, semantic checks build theirs by hand.
//!
//! Unknown fields are rejected: a misspelt `path_prefx` silently matching everything is worse
//! than a refused reload.

use std::collections::HashSet;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::split::MAX_BUCKETS;

/// The largest `max_header_bytes`: the proxy's HTTP/1 parser buffers at most a little more
/// than this, and answers larger header sections with 431 itself (uncounted).
pub const MAX_HEADER_BYTES: usize = 1_048_575;

/// Hard ceiling on `shutdown_grace` (spec: never above 90 s).
pub const MAX_SHUTDOWN_GRACE: Duration = Duration::from_secs(90);

/// A whole proxy config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Data listener: plaintext HTTP/1.1 and h2c on one port.
    pub listen: String,
    /// Admin server: metrics, health, config, slo.
    pub admin: String,
    /// Worker threads of the request path; default: number of cores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
    #[serde(default = "default_shutdown_grace", with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Per request: how long to wait for the upstream's response headers.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// How long to wait for a TCP connect to one upstream address before trying the next.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// How long an idle pooled upstream connection is kept. This also bounds how long idle
    /// connections to a drained backend survive (HAProxy's `pool-purge-delay` plays this role).
    #[serde(default = "default_upstream_idle_timeout", with = "humantime_serde")]
    pub upstream_idle_timeout: Duration,
    /// Requests whose header section (request line + headers) is larger get 431.
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
    /// At most this many connections per backend address per worker thread, open or being
    /// dialled; requests beyond wait for one (within `request_timeout`). Bounds what a gateway
    /// with thousands of clients opens to a few backends.
    #[serde(default = "default_upstream_max_connections")]
    pub upstream_max_connections: usize,
    /// How long a client may take to send a request head, and how long an idle keep-alive
    /// connection stays open (slowloris): the connection is closed after it. Applied at start.
    #[serde(default = "default_header_read_timeout", with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Transparent interception: the pod's outbound TCP arrives here redirected by iptables
    /// (`vireo-proxy iptables`). Each connection's original destination (`SO_ORIGINAL_DST`)
    /// can then select a route (`match.destinations`); traffic no route claims goes on to that
    /// destination unchanged (HTTP as route `_passthrough`, anything else as opaque TCP), so
    /// the app's other calls keep working. Connections to the proxy's own address (explicit
    /// mode) are served as before. Applied at start.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub transparent: bool,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub routes: Vec<Route>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Upper bounds of `vireo_request_duration_seconds`. Read at start-up only: changing the
    /// buckets of a live histogram would break every `rate()` over it.
    #[serde(default = "default_latency_buckets")]
    pub latency_buckets: Vec<f64>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            latency_buckets: default_latency_buckets(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub name: String,
    #[serde(default, rename = "match")]
    pub matches: RouteMatch,
    pub split: SplitConfig,
}

/// All fields optional; an empty match matches every request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteMatch {
    /// Exact host, or `*.example.com` (matches any subdomain, not the apex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// Exact header values; every listed header must match.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub headers: std::collections::BTreeMap<String, String>,
    /// Original destinations (`ip:port`, e.g. a Service's ClusterIP and port): a request on an
    /// intercepted connection (`transparent: true`) matches only if the app was calling one of
    /// them, whatever its Host says. A request the app sent to the proxy itself (explicit
    /// mode) has no original destination, and is matched on the other conditions alone — so
    /// one route serves a pod's intercepted and explicit calls alike.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destinations: Vec<String>,
}

impl RouteMatch {
    /// Matches every request.
    pub fn is_empty(&self) -> bool {
        *self == RouteMatch::default()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitConfig {
    /// Where the user key comes from; without one, every request is a weighted random pick.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<KeySource>,
    #[serde(default)]
    pub on_missing_key: OnMissingKey,
    #[serde(default = "default_buckets")]
    pub buckets: u32,
    /// Cohort salt; defaults to the route name. Changing it reshuffles users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt: Option<String>,
    /// If true, the request header `x-vireo-backend: NAME` forces a backend.
    #[serde(default)]
    pub allow_override: bool,
    pub backends: Vec<Backend>,
}

/// Where a split's user key comes from: `{ header: NAME }`, `{ cookie: NAME }` or
/// `{ query: NAME }`. Written as a one-key map in both YAML and JSON (an externally tagged enum
/// would need YAML tags), converted through [`KeySpec`] which checks that exactly one is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "KeySpec", into = "KeySpec")]
pub enum KeySource {
    Header(String),
    Cookie(String),
    Query(String),
}

/// The wire form of [`KeySource`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
}

impl TryFrom<KeySpec> for KeySource {
    type Error = String;
    fn try_from(k: KeySpec) -> Result<Self, String> {
        match (k.header, k.cookie, k.query) {
            (Some(h), None, None) => Ok(KeySource::Header(h)),
            (None, Some(c), None) => Ok(KeySource::Cookie(c)),
            (None, None, Some(q)) => Ok(KeySource::Query(q)),
            _ => Err("set exactly one of header, cookie, query".into()),
        }
    }
}

impl From<KeySource> for KeySpec {
    fn from(k: KeySource) -> Self {
        match k {
            KeySource::Header(h) => KeySpec {
                header: Some(h),
                ..KeySpec::default()
            },
            KeySource::Cookie(c) => KeySpec {
                cookie: Some(c),
                ..KeySpec::default()
            },
            KeySource::Query(q) => KeySpec {
                query: Some(q),
                ..KeySpec::default()
            },
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnMissingKey {
    /// Weighted random pick.
    #[default]
    Random,
    /// The first backend with a weight above 0 (the canary, when it has traffic).
    First,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backend {
    pub name: String,
    #[serde(default)]
    pub version: String,
    /// `ip:port` or `host:port`; host names are resolved when the config is loaded, never on the
    /// request path.
    pub addrs: Vec<String>,
    /// Relative weight. Parsed signed so that `-5` is reported as "must be >= 0" rather than as
    /// a type error.
    pub weight: i64,
    /// How to talk to the backend: HTTP/1.1, or HTTP/2 with prior knowledge (gRPC needs h2c).
    #[serde(default)]
    pub protocol: UpstreamProtocol,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocol {
    #[default]
    Http1,
    H2c,
}

fn default_shutdown_grace() -> Duration {
    Duration::from_secs(30)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(15)
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(2)
}
fn default_upstream_idle_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_max_header_bytes() -> usize {
    // Envoy's default limit is 60 KiB; nginx's large_client_header_buffers default is 4 x 8 KiB.
    64 * 1024
}
fn default_upstream_max_connections() -> usize {
    256
}
fn default_header_read_timeout() -> Duration {
    // nginx's client_header_timeout and keepalive_timeout are 60 s and 75 s.
    Duration::from_secs(60)
}
fn default_buckets() -> u32 {
    100
}
/// 1 ms … 10 s, the spec's default range.
pub fn default_latency_buckets() -> Vec<f64> {
    vec![
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ]
}

/// Largest weight accepted; keeps `buckets * sum(weights)` far from overflow.
pub const MAX_WEIGHT: i64 = 1_000_000;

/// One problem in a config, with the path of the field it is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub path: String,
    pub reason: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "{}: {}", self.path, self.reason)
        }
    }
}

/// Every problem found in a config (validation does not stop at the first one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
pub struct ConfigError {
    pub errors: Vec<FieldError>,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl ConfigError {
    pub fn one(path: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            errors: vec![FieldError {
                path: path.into(),
                reason: reason.into(),
            }],
        }
    }
}

/// The on-disk formats. JSON is a subset of YAML, but JSON errors read better from a JSON parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
}

impl Format {
    /// JSON if the text's first non-blank character opens an object, else YAML.
    pub fn sniff(text: &str) -> Format {
        if text.trim_start().starts_with('{') {
            Format::Json
        } else {
            Format::Yaml
        }
    }
}

impl Config {
    /// Parses and validates a config file's text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let config: Config = parse_document(text)?;
        config.validate()?;
        Ok(config)
    }

    /// Reads and parses a file; the error names the file.
    pub fn load(path: &std::path::Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::one("", format!("cannot read {}: {e}", path.display())))?;
        Config::parse(&text)
    }

    /// Semantic checks serde cannot express. Collects every error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut errs = Vec::new();
        let mut err = |path: String, reason: String| errs.push(FieldError { path, reason });

        if let Err(e) = self.listen.parse::<SocketAddr>() {
            err("listen".into(), format!("not an ip:port address ({e})"));
        }
        if let Err(e) = self.admin.parse::<SocketAddr>() {
            err("admin".into(), format!("not an ip:port address ({e})"));
        }
        if self.threads == Some(0) {
            err("threads".into(), "must be >= 1".into());
        }
        if self.shutdown_grace > MAX_SHUTDOWN_GRACE {
            err("shutdown_grace".into(), "must be <= 90s".into());
        }
        if self.request_timeout.is_zero() {
            err("request_timeout".into(), "must be > 0".into());
        }
        if self.connect_timeout.is_zero() {
            err("connect_timeout".into(), "must be > 0".into());
        }
        if !(1024..=MAX_HEADER_BYTES).contains(&self.max_header_bytes) {
            // Above 1 MiB the parser's own limit answers first, so a larger value would
            // silently do nothing.
            err(
                "max_header_bytes".into(),
                format!("must be 1024..={MAX_HEADER_BYTES}"),
            );
        }
        if !(Duration::from_millis(100)..=Duration::from_secs(3600))
            .contains(&self.header_read_timeout)
        {
            err("header_read_timeout".into(), "must be 100ms..=1h".into());
        }
        if !(1..=65_536).contains(&self.upstream_max_connections) {
            err(
                "upstream_max_connections".into(),
                "must be 1..=65536".into(),
            );
        }
        let lb = &self.metrics.latency_buckets;
        if lb.is_empty() || lb.iter().any(|b| !b.is_finite() || *b <= 0.0) {
            err(
                "metrics.latency_buckets".into(),
                "must be a non-empty list of positive numbers".into(),
            );
        } else if lb.windows(2).any(|w| w[0] >= w[1]) {
            err(
                "metrics.latency_buckets".into(),
                "must be strictly increasing".into(),
            );
        }

        let mut route_names = HashSet::new();
        for (ri, route) in self.routes.iter().enumerate() {
            let rp = format!("routes[{ri}]");
            if route.name.is_empty() {
                err(format!("{rp}.name"), "must not be empty".into());
            } else if route.name.starts_with('_') {
                err(
                    format!("{rp}.name"),
                    "names starting with '_' are reserved (\"_unmatched\", \"_passthrough\")"
                        .into(),
                );
            } else if !route_names.insert(route.name.as_str()) {
                err(
                    format!("{rp}.name"),
                    format!("duplicate route name {:?}", route.name),
                );
            }
            let m = &route.matches;
            if let Some(host) = &m.host {
                let bare = host.strip_prefix("*.").unwrap_or(host);
                if bare.is_empty() || bare.contains('*') || bare.contains('/') {
                    err(
                        format!("{rp}.match.host"),
                        "must be a host name or \"*.suffix\"".into(),
                    );
                }
            }
            if let Some(p) = &m.path_prefix {
                if !p.starts_with('/') {
                    err(
                        format!("{rp}.match.path_prefix"),
                        "must start with '/'".into(),
                    );
                }
            }
            for (di, d) in m.destinations.iter().enumerate() {
                if let Err(e) = d.parse::<SocketAddr>() {
                    err(
                        format!("{rp}.match.destinations[{di}]"),
                        format!("{d:?} is not an ip:port address ({e}); an original destination is an address, not a name"),
                    );
                }
            }
            for (name, value) in &m.headers {
                if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                    err(
                        format!("{rp}.match.headers.{name}"),
                        "not a valid header name".into(),
                    );
                } else if http::HeaderValue::from_str(value).is_err() {
                    err(
                        format!("{rp}.match.headers.{name}"),
                        format!("{value:?} is not a valid header value (control characters or a line break?)"),
                    );
                }
            }

            let sp = format!("{rp}.split");
            let split = &route.split;
            match &split.key {
                Some(KeySource::Header(h))
                    if http::HeaderName::from_bytes(h.as_bytes()).is_err() =>
                {
                    err(format!("{sp}.key.header"), "not a valid header name".into())
                }
                Some(KeySource::Header(s) | KeySource::Cookie(s) | KeySource::Query(s))
                    if s.is_empty() =>
                {
                    err(format!("{sp}.key"), "the key name must not be empty".into())
                }
                _ => {}
            }
            if split.buckets == 0 || split.buckets > MAX_BUCKETS {
                err(
                    format!("{sp}.buckets"),
                    format!("must be 1..={MAX_BUCKETS}"),
                );
            }
            if split.backends.is_empty() {
                err(
                    format!("{sp}.backends"),
                    "needs at least one backend".into(),
                );
            }
            let mut backend_names = HashSet::new();
            for (bi, b) in split.backends.iter().enumerate() {
                let bp = format!("{sp}.backends[{bi}]");
                if b.name.is_empty() {
                    err(format!("{bp}.name"), "must not be empty".into());
                } else if !backend_names.insert(b.name.as_str()) {
                    err(
                        format!("{bp}.name"),
                        format!("duplicate backend name {:?}", b.name),
                    );
                }
                if b.weight < 0 {
                    err(format!("{bp}.weight"), "must be >= 0".into());
                } else if b.weight > MAX_WEIGHT {
                    err(format!("{bp}.weight"), format!("must be <= {MAX_WEIGHT}"));
                }
                if b.addrs.is_empty() {
                    err(format!("{bp}.addrs"), "needs at least one address".into());
                }
                for (ai, a) in b.addrs.iter().enumerate() {
                    if let Err(reason) = resolve(a) {
                        err(format!("{bp}.addrs[{ai}]"), reason);
                    }
                }
            }
            if !split.backends.is_empty() && split.backends.iter().all(|b| b.weight <= 0) {
                err(
                    format!("{sp}.backends"),
                    "at least one backend needs a weight above 0".into(),
                );
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { errors: errs })
        }
    }

    /// Worker threads to run, defaulting to the machine's cores.
    pub fn worker_threads(&self) -> usize {
        self.threads.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
    }
}

impl SplitConfig {
    /// The salt in effect for a route.
    pub fn salt_or<'a>(&'a self, route_name: &'a str) -> &'a str {
        self.salt.as_deref().unwrap_or(route_name)
    }
}

/// Resolves `host:port` to the first socket address. Runs at config load (validation and
/// compilation), never per request.
pub fn resolve(addr: &str) -> Result<SocketAddr, String> {
    if let Ok(sa) = addr.parse::<SocketAddr>() {
        return Ok(sa);
    }
    if !addr.contains(':') {
        return Err(format!("{addr:?} needs a port (host:port)"));
    }
    match addr.to_socket_addrs() {
        Ok(mut it) => it
            .next()
            .ok_or_else(|| format!("{addr:?} resolved to no address")),
        Err(e) => Err(format!("cannot resolve {addr:?}: {e}")),
    }
}

/// Deserializes a YAML or JSON document (JSON when it starts with `{`), with the failing
/// field's path in the error. Shared by every resource Vireo reads (proxy config, Rollout…).
pub fn parse_document<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, ConfigError> {
    match Format::sniff(text) {
        Format::Json => {
            let de = &mut serde_json::Deserializer::from_str(text);
            serde_path_to_error::deserialize(de).map_err(path_error)
        }
        Format::Yaml => {
            let de = serde_yaml_ng::Deserializer::from_str(text);
            serde_path_to_error::deserialize(de).map_err(path_error)
        }
    }
}

/// Splits a serde error into path and reason. `serde_path_to_error` prints the root as `.`;
/// serde_yaml_ng already puts the path in front of its message, so that copy is dropped.
fn path_error<E: std::fmt::Display>(e: serde_path_to_error::Error<E>) -> ConfigError {
    let path = e.path().to_string();
    let mut path = if path == "." { String::new() } else { path };
    let mut reason = e.into_inner().to_string();
    // serde_yaml_ng puts its own path (without sequence indices) in front; ours is exact.
    if let Some((head, rest)) = reason.split_once(": ") {
        if !head.is_empty() && (head == path || head == without_indices(&path)) {
            reason = rest.to_string();
        }
    }
    // A conversion error that names a field of the value ("setWeight: must be 0..=100")
    // belongs to that field.
    if let Some((field, rest)) = reason.split_once(": ") {
        if !field.is_empty() && field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            path = if path.is_empty() {
                field.to_string()
            } else {
                format!("{path}.{field}")
            };
            reason = rest.to_string();
        }
    }
    ConfigError::one(path, reason)
}

/// `a[0].b[12].c` → `a.b.c`.
fn without_indices(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut depth = 0;
    for c in path.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
listen: 127.0.0.1:4140
admin: 127.0.0.1:4191
routes:
  - name: checkout
    match: { host: checkout.local, path_prefix: /, headers: { x-env: prod } }
    split:
      key: { header: x-user-id }
      salt: checkout-v2
      backends:
        - { name: canary, version: v2, addrs: [127.0.0.1:9002], weight: 5 }
        - { name: stable, version: v1, addrs: [127.0.0.1:9001], weight: 95 }
"#;

    #[test]
    fn parses_the_spec_example_with_defaults() {
        let c = Config::parse(GOOD).unwrap();
        assert_eq!(c.shutdown_grace, Duration::from_secs(30));
        assert_eq!(c.request_timeout, Duration::from_secs(15));
        let s = &c.routes[0].split;
        assert_eq!(s.buckets, 100);
        assert_eq!(s.on_missing_key, OnMissingKey::Random);
        assert_eq!(s.key, Some(KeySource::Header("x-user-id".into())));
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let c = Config::parse(include_str!("../../../deploy/examples/proxy.yaml")).unwrap();
        assert_eq!(c.routes[0].split.backends[0].weight, 5);
    }

    #[test]
    fn json_is_accepted_too() {
        let c = Config::parse(GOOD).unwrap();
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(Config::parse(&json).unwrap(), c);
    }

    fn errors_of(text: &str) -> Vec<String> {
        Config::parse(text)
            .unwrap_err()
            .errors
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn negative_weight_names_the_field() {
        let bad = GOOD.replace("weight: 95", "weight: -1");
        assert_eq!(
            errors_of(&bad),
            vec!["routes[0].split.backends[1].weight: must be >= 0"]
        );
    }

    #[test]
    fn type_errors_carry_the_path() {
        let bad = GOOD.replace("weight: 95", "weight: lots");
        let errs = errors_of(&bad);
        assert!(
            errs[0].starts_with("routes[0].split.backends[1].weight: "),
            "{errs:?}"
        );
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let bad = GOOD.replace("path_prefix: /", "path_prefx: /");
        let errs = errors_of(&bad);
        assert!(errs[0].contains("path_prefx"), "{errs:?}");
        assert!(errs[0].starts_with("routes[0].match"), "{errs:?}");
    }

    #[test]
    fn collects_every_semantic_error() {
        let bad = GOOD
            .replace("buckets: 100", "")
            .replace("salt: checkout-v2", "buckets: 0")
            .replace("name: stable", "name: canary")
            .replace("[127.0.0.1:9001]", "[nowhere]");
        let errs = errors_of(&bad);
        assert_eq!(
            errs,
            vec![
                "routes[0].split.buckets: must be 1..=10000",
                "routes[0].split.backends[1].name: duplicate backend name \"canary\"",
                "routes[0].split.backends[1].addrs[0]: \"nowhere\" needs a port (host:port)",
            ]
        );
    }

    #[test]
    fn all_zero_weights_and_grace_ceiling() {
        let bad = GOOD
            .replace("weight: 95", "weight: 0")
            .replace("weight: 5", "weight: 0")
            .replace(
                "admin: 127.0.0.1:4191",
                "admin: 127.0.0.1:4191\nshutdown_grace: 91s",
            );
        assert_eq!(
            errors_of(&bad),
            vec![
                "shutdown_grace: must be <= 90s",
                "routes[0].split.backends: at least one backend needs a weight above 0",
            ]
        );
    }

    #[test]
    fn header_values_are_checked_and_limits_bounded() {
        let bad = GOOD
            .replace(
                "headers: { x-env: prod }",
                "headers: { x-env: \"prod\\n\" }",
            )
            .replace(
                "admin: 127.0.0.1:4191",
                "admin: 127.0.0.1:4191\nmax_header_bytes: 2000000",
            );
        assert_eq!(
            errors_of(&bad),
            vec![
                "max_header_bytes: must be 1024..=1048575",
                "routes[0].match.headers.x-env: \"prod\\n\" is not a valid header value (control characters or a line break?)",
            ]
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for text in ["", "[", "{", "listen: [", "\u{0}", "routes: 5", "- a\n- b"] {
            assert!(Config::parse(text).is_err(), "{text:?} parsed");
        }
    }
}
