//! The proxy <-> control plane wire types: what `GET /api/v1/proxy/config` answers and what
//! `POST /api/v1/proxy/status` carries (shapes fixed by `shared/spec/proxy.md`), plus the `/slo`
//! report both the proxy's admin server and its heartbeats use.
//!
//! They live apart from both sides so the control plane serves exactly what the proxy parses,
//! and neither has to build the other to agree on them.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::Route;

/// The SLO window reported in heartbeats unless the control plane asks for another.
pub const STATUS_WINDOW: Duration = Duration::from_secs(60);
/// Bound on the extra windows a heartbeat carries (each costs a pass over the backends).
pub const MAX_EXTRA_WINDOWS: usize = 8;

/// `GET /api/v1/proxy/config` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigUpdate {
    pub version: u64,
    pub routes: Vec<Route>,
    /// Extra SLO windows (seconds) heartbeats should report in `slo_windows`: those the
    /// control plane's running analyses measure over. Each is clamped to 1 s – 10 min; at most
    /// [`MAX_EXTRA_WINDOWS`] are kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slo_windows_s: Vec<u64>,
}

/// `POST /api/v1/proxy/status` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReport {
    pub proxy: String,
    pub applied_version: u64,
    /// route → backend → requests in flight.
    pub in_flight: BTreeMap<String, BTreeMap<String, i64>>,
    pub slo: SloReport,
    /// The windows the control plane asked for, by length in seconds.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub slo_windows: BTreeMap<u64, SloReport>,
    /// The last table this proxy refused, if it refused the newest it was sent: without this
    /// the control plane could only wait for an `applied_version` that will never come.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<RejectedTable>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RejectedTable {
    pub version: u64,
    pub error: String,
}

/// `/slo` body (shape fixed by the spec). Ratios and quantiles are `null` for a backend with no
/// requests in the window: no traffic is not the same as 100 % success.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SloReport {
    pub window_s: u64,
    pub routes: BTreeMap<String, BTreeMap<String, BackendSlo>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackendSlo {
    pub requests: u64,
    pub failures: u64,
    pub success_ratio: Option<f64>,
    pub latency_p50_s: Option<f64>,
    pub latency_p95_s: Option<f64>,
    pub latency_p99_s: Option<f64>,
    pub in_flight: i64,
    /// The window's latency histogram, sparse: `(bucket, count)` with the bounds of
    /// [`crate::slo::bucket_bounds`]. Only in heartbeats' extra windows, where the control
    /// plane's statistical judge compares canary and stable distributions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub latency_histogram: Vec<(u32, u64)>,
}

/// Percent-encodes a query value (RFC 3986 unreserved characters and `/` stay as they are, so
/// `demo/proxy-0` reads naturally in logs). The control plane encodes PromQL with it too.
pub fn encode_query(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_ids_are_encoded_for_the_query() {
        assert_eq!(encode_query("demo/proxy-0"), "demo/proxy-0");
        assert_eq!(encode_query("a b&c=d"), "a%20b%26c%3Dd");
    }

    #[test]
    fn tables_round_trip_through_json() {
        let text = r#"{"version":7,"routes":[{"name":"r","split":{"backends":[{"name":"b","addrs":["127.0.0.1:1"],"weight":1}]}}]}"#;
        let u: ConfigUpdate = serde_json::from_str(text).unwrap();
        assert_eq!(u.version, 7);
        let again: ConfigUpdate =
            serde_json::from_str(&serde_json::to_string(&u).unwrap()).unwrap();
        assert_eq!(again, u);
    }
}
