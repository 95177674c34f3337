//! Native request metrics: the Prometheus series of `shared/spec/proxy.md` and the per-backend
//! handles the request path records into.
//!
//! The request path never touches a `Family` map (prometheus-client guards those with a lock
//! shared by every series). Instead, when a config is compiled each backend gets a
//! [`BackendStats`] holding ready clones of its series: a counter per status code (created on
//! first use of that code, then cached), a lock-free histogram, its in-flight gauge and its SLO
//! window. Recording a request is then a few relaxed atomic adds.
//!
//! Stats are looked up by `(route, backend, version)` and reused across config swaps, so counters
//! stay monotonic and the in-flight count of a backend is the same number before and after a
//! reload: that count is what drain waits on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Registry, Unit};

use crate::slo::SloWindow;

/// Route label of requests no route matched (spec).
pub const UNMATCHED: &str = "_unmatched";

/// Route label of requests on intercepted connections (transparent mode) that no route
/// claimed and that went on to their original destination, as backend `original`.
pub const PASSTHROUGH: &str = "_passthrough";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    backend: String,
    version: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    route: String,
    backend: String,
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    route: String,
    backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// A histogram whose `observe` is lock-free: one atomic add per bucket hit, count and sum.
/// (prometheus-client's own `Histogram` takes a lock per observation.)
#[derive(Clone, Debug)]
pub struct AtomicHistogram {
    inner: Arc<HistogramInner>,
}

#[derive(Debug)]
struct HistogramInner {
    /// Upper bounds, strictly increasing; `+Inf` is implicit as the last count.
    bounds: Arc<[f64]>,
    counts: Box<[AtomicU64]>,
    count: AtomicU64,
    /// Sum in nanoseconds: integer adds are atomic, float adds would need a CAS loop.
    sum_ns: AtomicU64,
}

impl AtomicHistogram {
    pub fn new(bounds: Arc<[f64]>) -> Self {
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        AtomicHistogram {
            inner: Arc::new(HistogramInner {
                bounds,
                counts,
                count: AtomicU64::new(0),
                sum_ns: AtomicU64::new(0),
            }),
        }
    }

    #[inline]
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = &self.inner;
        let idx = i
            .bounds
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(i.bounds.len());
        i.counts[idx].fetch_add(1, Relaxed);
        i.count.fetch_add(1, Relaxed);
        i.sum_ns.fetch_add(d.as_nanos() as u64, Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.inner.count.load(Relaxed)
    }
}

impl TypedMetric for AtomicHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for AtomicHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let i = &self.inner;
        let buckets: Vec<(f64, u64)> = i
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::MAX))
            .zip(i.counts.iter().map(|c| c.load(Relaxed)))
            .collect();
        // Count from the buckets so that a scrape racing an observe stays self-consistent.
        let count = buckets.iter().map(|b| b.1).sum();
        let sum = i.sum_ns.load(Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[derive(Clone, Debug)]
struct HistogramCtor(Arc<[f64]>);

impl MetricConstructor<AtomicHistogram> for HistogramCtor {
    fn new_metric(&self) -> AtomicHistogram {
        AtomicHistogram::new(self.0.clone())
    }
}

/// What all versions of one `(route, backend)` share: in-flight gauge and SLO window.
type Shared = (Gauge, Arc<SloWindow>);

/// The proxy's metric registry and the stats of every backend it has served.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Family<VersionLabels, AtomicHistogram, HistogramCtor>,
    in_flight: Family<BackendLabels, Gauge>,
    config_version: Gauge,
    reloads: Family<ResultLabels, Counter>,
    /// Cold path only (config compilation).
    stats: Mutex<HashMap<(String, String, String), Arc<BackendStats>>>,
    shared: Mutex<HashMap<(String, String), Shared>>,
    epoch: Instant,
    /// Bench-only: skip recording finished requests (counters, histograms, SLO windows), to
    /// measure what recording costs per request. In-flight counts stay, since drain and
    /// shutdown depend on them. Set by [`BENCH_UNRECORDED_ENV`] at start.
    unrecorded: bool,
}

/// The environment variable that turns recording off, for `benches/load/compare.sh` only.
pub const BENCH_UNRECORDED_ENV: &str = "VIREO_PROXY_BENCH_UNRECORDED";

impl Metrics {
    pub fn new(latency_buckets: &[f64]) -> Arc<Self> {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let duration = Family::new_with_constructor(HistogramCtor(latency_buckets.into()));
        let in_flight = Family::<BackendLabels, Gauge>::default();
        let config_version = Gauge::default();
        let reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "vireo_requests",
            "Requests proxied, by route, backend, version and status code (code=\"error\" when no upstream response)",
            requests.clone(),
        );
        registry.register_with_unit(
            "vireo_request_duration",
            "Time from request received to response finished",
            Unit::Seconds,
            duration.clone(),
        );
        registry.register(
            "vireo_in_flight_requests",
            "Requests currently in flight to a backend",
            in_flight.clone(),
        );
        registry.register(
            "vireo_config_version",
            "Version of the active route table",
            config_version.clone(),
        );
        registry.register(
            "vireo_config_reloads",
            "Config reload attempts, by result",
            reloads.clone(),
        );
        // Both results exist from the start, so `rate()` over them never starts from nothing.
        for result in ["ok", "error"] {
            let _ = reloads.get_or_create(&ResultLabels { result });
        }
        Arc::new(Metrics {
            registry,
            requests,
            duration,
            in_flight,
            config_version,
            reloads,
            stats: Mutex::default(),
            shared: Mutex::default(),
            epoch: Instant::now(),
            unrecorded: std::env::var_os(BENCH_UNRECORDED_ENV).is_some(),
        })
    }

    /// Whether finished requests are recorded (always, outside benchmarks).
    #[inline]
    pub fn recording(&self) -> bool {
        !self.unrecorded
    }

    /// The stats handle of one backend; created on first use, shared afterwards.
    pub fn backend(&self, route: &str, backend: &str, version: &str) -> Arc<BackendStats> {
        let key = (route.to_string(), backend.to_string(), version.to_string());
        let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = stats.get(&key) {
            return s.clone();
        }
        let vl = VersionLabels {
            route: key.0.clone(),
            backend: key.1.clone(),
            version: key.2.clone(),
        };
        let (in_flight, slo) = self
            .shared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((key.0.clone(), key.1.clone()))
            .or_insert_with(|| {
                let labels = BackendLabels {
                    route: key.0.clone(),
                    backend: key.1.clone(),
                };
                let gauge = self.in_flight.get_or_create(&labels).clone();
                (gauge, Arc::new(SloWindow::new()))
            })
            .clone();
        let s = Arc::new(BackendStats {
            duration: self.duration.get_or_create(&vl).clone(),
            in_flight,
            codes: (0..CODES).map(|_| OnceLock::new()).collect(),
            last_ms: AtomicU64::new(self.now_ms(Instant::now())),
            error: OnceLock::new(),
            family: self.requests.clone(),
            labels: vl,
            slo,
        });
        stats.insert(key, s.clone());
        s
    }

    /// Milliseconds since this registry was created: the clock of the SLO windows.
    #[inline]
    pub fn now_ms(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_millis() as u64
    }

    /// Every `(route, backend)` ever configured with its in-flight count and SLO window,
    /// including ones a reload removed (their requests may still be finishing).
    pub fn backends_seen(&self) -> Vec<(String, String, i64, Arc<SloWindow>)> {
        let shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        shared
            .iter()
            // Reserved routes (`_unmatched`, `_passthrough`) are no rollout's business.
            .filter(|((route, _), _)| !route.starts_with('_'))
            .map(|((route, backend), (gauge, slo))| {
                (route.clone(), backend.clone(), gauge.get(), slo.clone())
            })
            .collect()
    }

    /// Forgets series of `(route, backend, version)`s that the active table no longer has, once
    /// nothing is in flight to them and they recorded nothing for `idle`: their counters leave
    /// `/metrics` and their SLO window is freed. Without this, every rollout's new version
    /// label would stay for the life of the process. `active(route, backend, version)` tells
    /// what the current table has.
    pub fn prune(
        &self,
        now_ms: u64,
        idle: Duration,
        active: impl Fn(&str, &str, &str) -> bool,
    ) -> usize {
        let idle_ms = idle.as_millis() as u64;
        let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        let doomed: Vec<_> = stats
            .iter()
            .filter(|((route, backend, version), s)| {
                !active(route, backend, version)
                    && s.in_flight() == 0
                    && now_ms.saturating_sub(s.last_ms.load(Relaxed)) >= idle_ms
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in &doomed {
            if let Some(s) = stats.remove(key) {
                for (i, cell) in s.codes.iter().enumerate() {
                    if cell.get().is_some() {
                        self.requests
                            .remove(&s.request_labels((i + 100).to_string()));
                    }
                }
                if s.error.get().is_some() {
                    self.requests.remove(&s.request_labels("error".into()));
                }
                self.duration.remove(&s.labels);
            }
        }
        // In-flight gauges and SLO windows go with the last version of their (route, backend).
        shared.retain(|(route, backend), (gauge, _)| {
            let used = stats.keys().any(|(r, b, _)| r == route && b == backend);
            if !used && gauge.get() == 0 {
                self.in_flight.remove(&BackendLabels {
                    route: route.clone(),
                    backend: backend.clone(),
                });
                false
            } else {
                true
            }
        });
        doomed.len()
    }

    /// Requests in flight to any backend ever configured (including ones a reload removed).
    pub fn total_in_flight(&self) -> i64 {
        let shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        shared.values().map(|(g, _)| g.get()).sum()
    }

    pub fn set_config_version(&self, v: u64) {
        self.config_version.set(v as i64);
    }

    pub fn reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.reloads.get_or_create(&ResultLabels { result }).inc();
    }

    pub fn reload_count(&self, ok: bool) -> u64 {
        let result = if ok { "ok" } else { "error" };
        self.reloads.get_or_create(&ResultLabels { result }).get()
    }

    /// OpenMetrics text of every series.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Converts prometheus-client's OpenMetrics text to the classic Prometheus text format 0.0.4,
/// for scrapers that do not ask for OpenMetrics (curl, promtool). The two differ in that a
/// classic counter's HELP/TYPE name carries `_total`, and classic has no `# UNIT` or `# EOF`.
pub fn to_classic_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut pending_help: Option<&str> = None;
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if line.starts_with("# HELP ") {
            if let Some(h) = pending_help.replace(line) {
                out.push_str(h);
                out.push('\n');
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            let suffix = if kind == "counter" { "_total" } else { "" };
            if let Some(help) = pending_help.take() {
                let text = help
                    .strip_prefix("# HELP ")
                    .and_then(|h| h.strip_prefix(name))
                    .unwrap_or("");
                out.push_str(&format!("# HELP {name}{suffix}{text}\n"));
            }
            out.push_str(&format!("# TYPE {name}{suffix} {kind}\n"));
            continue;
        }
        if let Some(h) = pending_help.take() {
            out.push_str(h);
            out.push('\n');
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Status codes 100..=599 get a cached counter each.
const CODES: usize = 500;

/// Everything the request path records into for one `(route, backend, version)`.
pub struct BackendStats {
    labels: VersionLabels,
    family: Family<RequestLabels, Counter>,
    /// When this series last recorded a request (`now_ms`), for pruning.
    last_ms: AtomicU64,
    codes: Box<[OnceLock<Counter>]>,
    error: OnceLock<Counter>,
    duration: AtomicHistogram,
    in_flight: Gauge,
    slo: Arc<SloWindow>,
}

/// The outcome of a request as metrics see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The status code sent downstream.
    Status(u16),
    /// No response from the upstream (connect failure, timeout, reset).
    Error,
}

impl Outcome {
    /// Failure for SLOs: 5xx or no upstream response.
    pub fn is_failure(self) -> bool {
        match self {
            Outcome::Status(c) => c >= 500,
            Outcome::Error => true,
        }
    }
}

impl BackendStats {
    pub fn route(&self) -> &str {
        &self.labels.route
    }
    pub fn backend(&self) -> &str {
        &self.labels.backend
    }
    pub fn version(&self) -> &str {
        &self.labels.version
    }

    /// Marks a request as in flight; pair with [`BackendStats::end`] (the proxy does so from a
    /// drop guard, so every exit path counts down).
    #[inline]
    pub fn begin(&self) {
        self.in_flight.inc();
    }

    #[inline]
    pub fn end(&self) {
        self.in_flight.dec();
    }

    pub fn in_flight(&self) -> i64 {
        self.in_flight.get()
    }

    pub fn slo(&self) -> &SloWindow {
        &self.slo
    }

    /// Records one finished request.
    #[inline]
    pub fn record(&self, outcome: Outcome, elapsed: Duration, now_ms: u64) {
        self.counter(outcome).inc();
        self.duration.observe(elapsed);
        self.slo.record(now_ms, outcome.is_failure(), elapsed);
        self.last_ms.store(now_ms, Relaxed);
    }

    fn request_labels(&self, code: String) -> RequestLabels {
        RequestLabels {
            route: self.labels.route.clone(),
            backend: self.labels.backend.clone(),
            version: self.labels.version.clone(),
            code,
        }
    }

    fn counter(&self, outcome: Outcome) -> &Counter {
        let (cell, code) = match outcome {
            Outcome::Status(c) if (100..600).contains(&c) => {
                (&self.codes[usize::from(c - 100)], Some(c))
            }
            // A status outside 1xx–5xx cannot come out of the HTTP parser; count it as an error
            // rather than invent a label.
            Outcome::Status(_) | Outcome::Error => (&self.error, None),
        };
        cell.get_or_init(|| {
            let code = code.map_or_else(|| "error".to_string(), |c| c.to_string());
            self.family
                .get_or_create(&self.request_labels(code))
                .clone()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_follow_spec_names_and_labels() {
        let m = Metrics::new(&[0.1, 1.0]);
        let b = m.backend("checkout", "canary", "v2");
        b.begin();
        assert_eq!(b.in_flight(), 1);
        b.end();
        assert_eq!(b.in_flight(), 0);
        b.record(Outcome::Status(200), Duration::from_millis(50), 0);
        b.record(Outcome::Error, Duration::from_millis(500), 0);
        m.set_config_version(7);
        m.reload(false);
        let text = m.encode();
        for line in [
            r#"vireo_requests_total{route="checkout",backend="canary",version="v2",code="200"} 1"#,
            r#"vireo_requests_total{route="checkout",backend="canary",version="v2",code="error"} 1"#,
            r#"vireo_request_duration_seconds_bucket{le="0.1",route="checkout",backend="canary",version="v2"} 1"#,
            r#"vireo_request_duration_seconds_bucket{le="1.0",route="checkout",backend="canary",version="v2"} 2"#,
            r#"vireo_request_duration_seconds_count{route="checkout",backend="canary",version="v2"} 2"#,
            r#"vireo_in_flight_requests{route="checkout",backend="canary"} 0"#,
            "vireo_config_version 7",
            r#"vireo_config_reloads_total{result="error"} 1"#,
            r#"vireo_config_reloads_total{result="ok"} 0"#,
        ] {
            assert!(text.contains(line), "missing {line}\n{text}");
        }
    }

    #[test]
    fn classic_text_renames_counter_families_and_drops_openmetrics_lines() {
        let m = Metrics::new(&[1.0]);
        m.backend("r", "b", "v")
            .record(Outcome::Status(200), Duration::from_millis(1), 0);
        let classic = to_classic_text(&m.encode());
        assert!(classic.contains("# HELP vireo_requests_total Requests proxied"));
        assert!(classic.contains("# TYPE vireo_requests_total counter"));
        assert!(classic.contains("# TYPE vireo_request_duration_seconds histogram"));
        assert!(classic.contains("# TYPE vireo_config_version gauge"));
        assert!(!classic.contains("# EOF") && !classic.contains("# UNIT"));
        assert!(classic
            .contains(r#"vireo_requests_total{route="r",backend="b",version="v",code="200"} 1"#));
    }

    #[test]
    fn stats_are_shared_across_lookups() {
        let m = Metrics::new(&[1.0]);
        let a = m.backend("r", "canary", "v2");
        let b = m.backend("r", "canary", "v2");
        assert!(Arc::ptr_eq(&a, &b));
        // A new version is a new series but the same in-flight gauge and SLO window.
        let c = m.backend("r", "canary", "v3");
        a.begin();
        assert_eq!(c.in_flight(), 1);
        assert!(std::ptr::eq(a.slo(), c.slo()));
    }

    #[test]
    fn pruning_forgets_idle_versions_the_table_no_longer_has() {
        let m = Metrics::new(&[1.0]);
        let old = m.backend("r", "canary", "v2");
        old.record(Outcome::Status(200), Duration::from_millis(1), 1_000);
        old.record(Outcome::Error, Duration::from_millis(1), 1_000);
        let new = m.backend("r", "canary", "v3");
        new.record(Outcome::Status(200), Duration::from_millis(1), 1_000);
        let only_v3 = |_: &str, _: &str, v: &str| v == "v3";
        let idle = Duration::from_secs(600);
        // Too recent, then in flight: kept.
        assert_eq!(m.prune(60_000, idle, only_v3), 0);
        old.begin();
        assert_eq!(m.prune(700_000, idle, only_v3), 0);
        old.end();
        assert_eq!(m.prune(700_000, idle, only_v3), 1);
        let text = m.encode();
        assert!(!text.contains(r#"version="v2""#), "{text}");
        assert!(text.contains(
            r#"vireo_requests_total{route="r",backend="canary",version="v3",code="200"} 1"#
        ));
        // The shared gauge and window stay while v3 uses them, and go with it.
        assert!(text.contains(r#"vireo_in_flight_requests{route="r",backend="canary"}"#));
        assert_eq!(m.prune(2_000_000, idle, |_, _, _| false), 1);
        assert!(!m.encode().contains(r#"backend="canary""#));
        assert!(m.backends_seen().is_empty());
    }

    #[test]
    fn failures_are_5xx_and_errors() {
        assert!(Outcome::Status(503).is_failure());
        assert!(Outcome::Error.is_failure());
        assert!(!Outcome::Status(404).is_failure());
    }
}
