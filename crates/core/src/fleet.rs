//! The control plane's view of its proxies, built from their heartbeats
//! (`POST /api/v1/proxy/status`, [`vireo_types::wire::StatusReport`]).
//!
//! It answers the questions the driver asks to turn effects into inputs:
//! - is route table version V **applied**? — every connected proxy reports `applied_version ≥ V`
//!   (spec: "a weight change is applied when every connected proxy has reported");
//! - is the canary **drained**? — no connected proxy reports a request in flight to it;
//! - what do the proxies **measure** for a backend? — their SLO windows summed, for the native
//!   analysis provider (no Prometheus needed).
//!
//! A proxy counts as connected until its report's deadline: [`CONNECTED_FOR`] after it for a
//! proxy without an open watch stream (a long-polling one heartbeats every second), or what
//! the control plane told a streaming proxy ([`report_every`]) three times over. When its
//! stream closes the deadline comes down to [`CONNECTED_FOR`] from then
//! ([`Fleet::disconnect`]): a closed connection is not proof of a dead proxy (a blip, a proxy
//! in between), and one that still serves its last table must not be forgotten at once — an
//! abort would count weight 0 applied and the canary drained while it still sends there.
//! Pure: time is passed in.
//!
//! **Scale.** With ten thousand proxies the driver asks "applied?" after every report, so
//! the answers cannot walk the fleet: the fleet keeps, beside the reports, a count of proxies
//! per applied version and the sum of in-flight requests per backend, updated as a report
//! replaces the previous one; proxies past their deadline are subtracted at query time (an
//! index by deadline finds them) and dropped at the next write. `applied` and `in_flight` cost
//! O(log n + expired), not O(n). Measurements (`aggregate`) still walk the fleet: they run
//! once per analysis interval, not per report.

use std::collections::{BTreeMap, BTreeSet};

use vireo_types::wire::StatusReport;

use crate::analysis::{ProxyMetric, Value};
use crate::rollout::Millis;

/// A proxy silent for longer is no longer waited for (five missed heartbeats).
pub const CONNECTED_FOR: Millis = 5_000;

/// How long a proxy whose deadline passed is remembered as **lost** (the health banner's
/// "connected of expected"). Nothing declares how many proxies there should be (a pod's
/// sidecar registers itself by reporting), so "expected" is the connected proxies and the ones
/// lost in the last ten minutes: a crash, a partition or a node gone shows as "4 of 5", and a
/// pod scaled away stops counting after ten minutes. A proxy that reports again is not lost.
pub const LOST_FOR: Millis = 10 * 60_000;
/// Lost proxies remembered at most (the oldest are forgotten first).
pub const MAX_LOST: usize = 1_000;

/// Reports a streaming fleet sends per second when nothing changes, at most: the control
/// plane spaces each proxy's keep-alive reports by `proxies / REPORTS_PER_SECOND` seconds
/// (1 s up to 1 000 proxies, 10 s at 10 000; at most [`MAX_REPORT_EVERY`]). Changes (a table
/// applied, a drain finished) are reported at once regardless.
pub const REPORTS_PER_SECOND: u64 = 1_000;
pub const MAX_REPORT_EVERY: Millis = 30_000;

/// How long a streaming proxy should wait between keep-alive reports in a fleet of `proxies`.
pub fn report_every(proxies: usize) -> Millis {
    (proxies as u64 * 1_000 / REPORTS_PER_SECOND).clamp(1_000, MAX_REPORT_EVERY)
}

/// How long a proxy told to report every `every` stays connected without a report: three
/// missed reports, and two seconds of slack for a busy control plane.
pub fn deadline_after(every: Millis) -> Millis {
    every * 3 + 2_000
}

#[derive(Debug, Default, Clone)]
pub struct Fleet {
    /// id → (deadline, last report).
    proxies: BTreeMap<String, (Millis, StatusReport)>,
    by_deadline: BTreeSet<(Millis, String)>,
    /// applied_version → proxies (deadline passed or not) reporting it.
    versions: BTreeMap<u64, usize>,
    /// route → backend → in-flight sum over every report held.
    in_flight: BTreeMap<String, BTreeMap<String, i64>>,
    /// id → when its last report arrived (the console's "last heartbeat").
    reported_at: BTreeMap<String, Millis>,
    /// Proxies dropped at their deadline: id → (deadline, last report's arrival), and the
    /// same ordered by deadline for pruning. At most [`MAX_LOST`], none older than
    /// [`LOST_FOR`] at the last write.
    lost: BTreeMap<String, (Millis, Millis)>,
    lost_by_time: BTreeSet<(Millis, String)>,
}

/// A proxy whose deadline passed in the last [`LOST_FOR`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lost {
    pub proxy: String,
    /// When it stopped counting as connected.
    pub lost_at: Millis,
    /// When its last report arrived.
    pub last_report: Millis,
}

/// SLO figures of one backend summed over the connected proxies.
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregate {
    pub proxies: usize,
    pub requests: u64,
    pub failures: u64,
    pub window_s: u64,
    /// Connected proxies that do not report the window asked for (yet).
    pub without_window: usize,
    /// The highest of the proxies' quantiles: a conservative bound, since per-proxy quantiles
    /// cannot be merged exactly.
    pub latency_p50_s: Option<f64>,
    pub latency_p95_s: Option<f64>,
    pub latency_p99_s: Option<f64>,
}

impl Fleet {
    /// A long-polling proxy's heartbeat: connected for [`CONNECTED_FOR`].
    pub fn record(&mut self, report: StatusReport, now: Millis) {
        self.record_until(report, now, now + CONNECTED_FOR);
    }

    /// A report that keeps its proxy connected until `deadline`.
    pub fn record_until(&mut self, report: StatusReport, now: Millis, deadline: Millis) {
        self.sweep(now);
        self.forget(&report.proxy);
        if let Some((at, _)) = self.lost.remove(&report.proxy) {
            self.lost_by_time.remove(&(at, report.proxy.clone()));
        }
        self.count(&report, 1);
        self.by_deadline.insert((deadline, report.proxy.clone()));
        self.reported_at.insert(report.proxy.clone(), now);
        self.proxies
            .insert(report.proxy.clone(), (deadline, report));
    }

    /// The proxy's watch stream closed: it stays connected for [`CONNECTED_FOR`] at most,
    /// unless it reports again (over a new stream, or as a long-polling proxy).
    pub fn disconnect(&mut self, proxy: &str, now: Millis) {
        self.sweep(now);
        let Some((deadline, _)) = self.proxies.get_mut(proxy) else {
            return;
        };
        let sooner = (*deadline).min(now + CONNECTED_FOR);
        if sooner != *deadline {
            self.by_deadline.remove(&(*deadline, proxy.to_string()));
            self.by_deadline.insert((sooner, proxy.to_string()));
            *deadline = sooner;
        }
    }

    /// Drops the proxies whose deadline passed.
    pub fn sweep(&mut self, now: Millis) {
        while let Some((deadline, id)) = self.by_deadline.first().cloned() {
            if deadline >= now {
                break;
            }
            let last_report = self.reported_at.get(&id).copied().unwrap_or(deadline);
            self.forget(&id);
            self.lost.insert(id.clone(), (deadline, last_report));
            self.lost_by_time.insert((deadline, id));
        }
        while let Some((at, id)) = self.lost_by_time.first().cloned() {
            if at.saturating_add(LOST_FOR) >= now && self.lost.len() <= MAX_LOST {
                break;
            }
            self.lost_by_time.remove(&(at, id.clone()));
            self.lost.remove(&id);
        }
    }

    /// Proxies lost in the last [`LOST_FOR`] (at most [`MAX_LOST`]), most recent first:
    /// those dropped at their deadline and those past it but not dropped yet.
    pub fn lost(&self, now: Millis) -> Vec<Lost> {
        let held = self
            .by_deadline
            .range(..(now, String::new()))
            .filter(|(at, _)| at.saturating_add(LOST_FOR) >= now)
            .map(|(at, id)| Lost {
                proxy: id.clone(),
                lost_at: *at,
                last_report: self.reported_at.get(id).copied().unwrap_or(*at),
            });
        let dropped = self
            .lost
            .iter()
            .filter(|(_, (at, _))| at.saturating_add(LOST_FOR) >= now)
            .map(|(id, (at, last))| Lost {
                proxy: id.clone(),
                lost_at: *at,
                last_report: *last,
            });
        let mut all: Vec<Lost> = held.chain(dropped).collect();
        all.sort_by(|a, b| b.lost_at.cmp(&a.lost_at).then(a.proxy.cmp(&b.proxy)));
        all.truncate(MAX_LOST);
        all
    }

    /// Connected proxies that missed a keep-alive: silent for longer than the spacing the
    /// control plane asks of a fleet this size, and two seconds of slack. Still counted as
    /// connected (their deadline has not passed), so an abort waits for them.
    pub fn stale(&self, now: Millis) -> Vec<&str> {
        let every = report_every(self.connected_count(now));
        self.connected(now)
            .filter(|r| {
                self.reported_at(&r.proxy)
                    .is_some_and(|t| now.saturating_sub(t) > every + 2_000)
            })
            .map(|r| r.proxy.as_str())
            .collect()
    }

    fn forget(&mut self, proxy: &str) {
        if let Some((deadline, old)) = self.proxies.remove(proxy) {
            self.reported_at.remove(proxy);
            self.by_deadline.remove(&(deadline, proxy.to_string()));
            self.count(&old, -1);
        }
    }

    /// Adds (`sign` 1) or removes (-1) a report's share of the counters. Sums saturate (a
    /// report is input from the network), and entries back at zero are dropped, so names a
    /// proxy reported once do not stay for ever.
    fn count(&mut self, r: &StatusReport, sign: i64) {
        let n = self.versions.entry(r.applied_version).or_default();
        *n = n.saturating_add_signed(sign as isize);
        if *n == 0 {
            self.versions.remove(&r.applied_version);
        }
        for (route, backends) in &r.in_flight {
            let sums = self.in_flight.entry(route.clone()).or_default();
            for (backend, k) in backends {
                let sum = sums.entry(backend.clone()).or_default();
                *sum = sum.saturating_add(k.saturating_mul(sign));
                if *sum == 0 {
                    sums.remove(backend);
                }
            }
            if sums.is_empty() {
                self.in_flight.remove(route);
            }
        }
    }

    /// Reports whose deadline has passed but that are still held (until the next write).
    fn expired(&self, now: Millis) -> impl Iterator<Item = &StatusReport> {
        self.by_deadline
            .range(..(now, String::new()))
            .filter_map(|(_, id)| self.proxies.get(id).map(|(_, r)| r))
    }

    /// When `proxy`'s last report arrived, while it is held.
    pub fn reported_at(&self, proxy: &str) -> Option<Millis> {
        self.reported_at.get(proxy).copied()
    }

    /// How many proxies are connected.
    pub fn connected_count(&self, now: Millis) -> usize {
        self.proxies.len() - self.expired(now).count()
    }

    /// Proxies whose deadline has not passed.
    pub fn connected(&self, now: Millis) -> impl Iterator<Item = &StatusReport> {
        self.proxies
            .values()
            .filter(move |(deadline, _)| *deadline >= now)
            .map(|(_, r)| r)
    }

    /// Every connected proxy runs table `version` or newer, and at least one is connected.
    /// With none connected nothing is known to be applied: after a control-plane restart or
    /// during a partition, proxies keep serving their last table (static stability), so an
    /// abort must not believe weight 0 is in force; it waits, up to its deadline.
    ///
    /// `newest` is the newest version published: a proxy reporting more runs a table from a
    /// control plane whose state was replaced, not ours, and has applied nothing of it yet.
    pub fn applied(&self, version: u64, newest: u64, now: Millis) -> bool {
        if version > newest {
            return false;
        }
        let in_range = |v: u64| (version..=newest).contains(&v);
        let mut connected = self.proxies.len();
        let mut there: usize = self.versions.range(version..=newest).map(|(_, n)| n).sum();
        for r in self.expired(now) {
            connected -= 1;
            there -= usize::from(in_range(r.applied_version));
        }
        connected > 0 && there == connected
    }

    /// No connected proxy has a request in flight to `backend`, and at least one is connected
    /// (for the same reason as [`Fleet::applied`]).
    pub fn drained(&self, route: &str, backend: &str, now: Millis) -> bool {
        self.connected_count(now) > 0 && self.in_flight(route, backend, now) == 0
    }

    /// Requests in flight to `backend` of `route`, over the connected proxies.
    pub fn in_flight(&self, route: &str, backend: &str, now: Millis) -> i64 {
        let get = |m: &BTreeMap<String, BTreeMap<String, i64>>| {
            m.get(route)
                .and_then(|b| b.get(backend))
                .copied()
                .unwrap_or(0)
        };
        let held = get(&self.in_flight);
        held - self.expired(now).map(|r| get(&r.in_flight)).sum::<i64>()
    }

    /// The connected proxies' SLO figures for one backend over `window_s` seconds (`None`:
    /// the 60 s every heartbeat carries), summed. Proxies that do not report that window yet
    /// (the table asking for it has not reached them) are left out.
    pub fn aggregate(
        &self,
        route: &str,
        backend: &str,
        window_s: Option<u64>,
        now: Millis,
    ) -> Aggregate {
        let mut a = Aggregate {
            proxies: 0,
            requests: 0,
            failures: 0,
            window_s: 0,
            without_window: 0,
            latency_p50_s: None,
            latency_p95_s: None,
            latency_p99_s: None,
        };
        for r in self.connected(now) {
            let slo = match window_s {
                None => Some(&r.slo),
                Some(w) if w == r.slo.window_s => Some(&r.slo),
                Some(w) => r.slo_windows.get(&w),
            };
            let Some(slo) = slo else {
                a.without_window += 1;
                continue;
            };
            let Some(b) = slo.routes.get(route).and_then(|b| b.get(backend)) else {
                continue;
            };
            a.proxies += 1;
            a.requests += b.requests;
            a.failures += b.failures;
            a.window_s = a.window_s.max(slo.window_s);
            a.latency_p50_s = max(a.latency_p50_s, b.latency_p50_s);
            a.latency_p95_s = max(a.latency_p95_s, b.latency_p95_s);
            a.latency_p99_s = max(a.latency_p99_s, b.latency_p99_s);
        }
        a
    }
}

impl Fleet {
    /// One backend's latency samples over `window_s` across the connected proxies, as
    /// `(bucket midpoint in seconds, count)`: what the judge compares. Only the extra windows
    /// of heartbeats carry histograms.
    pub fn latency_histogram(
        &self,
        route: &str,
        backend: &str,
        window_s: u64,
        now: Millis,
    ) -> Vec<(f64, u64)> {
        let mut counts: BTreeMap<u32, u64> = BTreeMap::new();
        for r in self.connected(now) {
            let Some(b) = r
                .slo_windows
                .get(&window_s)
                .and_then(|s| s.routes.get(route))
                .and_then(|b| b.get(backend))
            else {
                continue;
            };
            for &(bucket, n) in &b.latency_histogram {
                *counts.entry(bucket).or_default() += n;
            }
        }
        counts
            .into_iter()
            .map(|(bucket, n)| {
                let (lo, hi) = vireo_types::slo::bucket_bounds(bucket as usize);
                ((lo + hi) / 2.0, n)
            })
            .collect()
    }
}

fn max(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

impl Aggregate {
    /// The value the native `proxy` provider measures. No traffic in the window is an error
    /// (an Error measurement), never a made-up 100 % success.
    pub fn value(&self, metric: ProxyMetric) -> Result<Value, String> {
        if self.requests == 0 {
            return Err(if self.proxies == 0 && self.without_window > 0 {
                format!(
                    "{} connected proxies do not report this window yet",
                    self.without_window
                )
            } else {
                format!(
                    "no requests in the window on {} connected proxies",
                    self.proxies
                )
            });
        }
        // Proxies read their counters without a lock, so a report may briefly show one more
        // failure than requests; clamp rather than underflow into a huge "success rate".
        let failures = self.failures.min(self.requests);
        let ratio = (self.requests - failures) as f64 / self.requests as f64;
        let latency = |q: Option<f64>| q.map(Value::Scalar).ok_or("no latency figures".to_string());
        match metric {
            ProxyMetric::SuccessRate => Ok(Value::Scalar(ratio)),
            ProxyMetric::ErrorRate => Ok(Value::Scalar(1.0 - ratio)),
            ProxyMetric::LatencyP50 => latency(self.latency_p50_s),
            ProxyMetric::LatencyP95 => latency(self.latency_p95_s),
            ProxyMetric::LatencyP99 => latency(self.latency_p99_s),
            ProxyMetric::RequestRate => Ok(Value::Scalar(
                self.requests as f64 / self.window_s.max(1) as f64,
            )),
        }
    }
}

pub mod series;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use vireo_types::wire::{BackendSlo, SloReport};

    pub(crate) fn report(
        proxy: &str,
        version: u64,
        canary_in_flight: i64,
        requests: u64,
        failures: u64,
        p95: f64,
    ) -> StatusReport {
        let slo = BackendSlo {
            requests,
            failures,
            success_ratio: None,
            latency_p50_s: Some(p95 / 2.0),
            latency_p95_s: Some(p95),
            latency_p99_s: Some(p95 * 2.0),
            in_flight: canary_in_flight,
            latency_histogram: Vec::new(),
        };
        StatusReport {
            proxy: proxy.into(),
            applied_version: version,
            in_flight: [(
                "checkout".to_string(),
                [("canary".to_string(), canary_in_flight)].into(),
            )]
            .into(),
            slo: SloReport {
                window_s: 60,
                routes: [("checkout".to_string(), [("canary".to_string(), slo)].into())].into(),
            },
            slo_windows: Default::default(),
            rejected: None,
        }
    }

    #[test]
    fn applied_means_every_connected_proxy() {
        let mut f = Fleet::default();
        f.record(report("a", 3, 0, 0, 0, 0.1), 1_000);
        f.record(report("b", 2, 0, 0, 0, 0.1), 1_000);
        assert!(f.applied(2, 3, 1_000));
        assert!(!f.applied(3, 3, 1_000), "b is behind");
        f.record(report("b", 3, 0, 0, 0, 0.1), 1_500);
        assert!(f.applied(3, 3, 1_500));
        assert_eq!(
            (f.reported_at("a"), f.reported_at("b"), f.reported_at("z")),
            (Some(1_000), Some(1_500), None)
        );
        // a proxy that went silent is no longer waited for
        f.record(report("c", 1, 0, 0, 0, 0.1), 1_500);
        assert!(!f.applied(3, 3, 2_000));
        f.record(report("a", 3, 0, 0, 0, 0.1), 7_000);
        f.record(report("b", 3, 0, 0, 0, 0.1), 7_000);
        assert!(
            f.applied(3, 3, 7_000),
            "c last seen at 1.5 s: disconnected at 7 s"
        );
        assert!(
            !Fleet::default().applied(9, 3, 0),
            "nobody connected: nothing known applied"
        );
        assert!(!f.applied(3, 3, 60_000), "everyone silent");
        f.record(report("d", 9, 0, 0, 0, 0.1), 7_000);
        assert!(
            !f.applied(3, 3, 7_000),
            "d reports version 9 of a control plane whose state was replaced: not ours"
        );
    }

    #[test]
    fn the_counters_agree_with_walking_the_fleet() {
        // Reports, deadlines, disconnects and time in a seeded jumble: the incremental answers
        // must be what walking the connected reports gives.
        let mut f = Fleet::default();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        let mut now = 0;
        for _ in 0..5_000 {
            now += next(300);
            let id = format!("p{}", next(40));
            match next(10) {
                0 => f.disconnect(&id, now),
                1..=3 => f.record(report(&id, next(5), next(3) as i64, 0, 0, 0.1), now),
                _ => {
                    let r = report(&id, next(5), next(3) as i64, 0, 0, 0.1);
                    f.record_until(r, now, now + next(4_000))
                }
            }
            let probe = now + next(2_000);
            let walked: Vec<&StatusReport> = f.connected(probe).collect();
            assert_eq!(f.connected_count(probe), walked.len());
            let in_flight: i64 = walked
                .iter()
                .filter_map(|r| r.in_flight.get("checkout")?.get("canary"))
                .sum();
            assert_eq!(f.in_flight("checkout", "canary", probe), in_flight);
            for (v, newest) in [(0, 4), (2, 3), (3, 3), (4, 2)] {
                let want = !walked.is_empty()
                    && walked
                        .iter()
                        .all(|r| (v..=newest).contains(&r.applied_version));
                assert_eq!(
                    f.applied(v, newest, probe),
                    want,
                    "v{v}..={newest} at {probe}"
                );
            }
        }
    }

    #[test]
    fn a_closed_stream_is_not_waited_for_and_fleets_space_their_reports() {
        let mut f = Fleet::default();
        f.record_until(report("a", 3, 1, 0, 0, 0.1), 0, 30_000);
        f.record_until(report("b", 2, 0, 0, 0, 0.1), 0, 30_000);
        assert!(!f.applied(3, 3, 1_000));
        f.disconnect("b", 1_000);
        assert!(
            !f.applied(3, 3, 1_000),
            "b's stream closed, but b may still serve its table: waited for a while"
        );
        assert!(f.applied(3, 3, 6_001), "b not heard from in five seconds");
        assert_eq!(f.in_flight("checkout", "canary", 6_001), 1);
        f.record_until(report("b", 3, 0, 0, 0, 0.1), 2_000, 30_000);
        assert!(f.applied(3, 3, 6_001), "b reported again: connected again");
        f.disconnect("a", 7_000);
        f.disconnect("b", 7_000);
        assert!(!f.drained("checkout", "canary", 12_001), "nobody connected");
        assert_eq!(report_every(10), 1_000);
        assert_eq!(report_every(10_000), 10_000);
        assert_eq!(report_every(1_000_000), MAX_REPORT_EVERY);
        assert_eq!(
            deadline_after(1_000),
            5_000,
            "as long-poll proxies' five seconds"
        );
    }

    #[test]
    fn measurements_use_the_window_asked_for() {
        let mut short = report("a", 1, 0, 10, 5, 0.2);
        short.slo.window_s = 2;
        let mut r = report("a", 1, 0, 1000, 1, 0.1);
        r.slo_windows.insert(2, short.slo);
        let mut f = Fleet::default();
        f.record(r, 0);
        let v = |w| {
            f.aggregate("checkout", "canary", w, 0)
                .value(ProxyMetric::SuccessRate)
        };
        assert_eq!(v(None), Ok(Value::Scalar(0.999)));
        assert_eq!(v(Some(60)), Ok(Value::Scalar(0.999)));
        assert_eq!(v(Some(2)), Ok(Value::Scalar(0.5)));
        assert!(v(Some(5))
            .unwrap_err()
            .contains("do not report this window"));
    }

    #[test]
    fn drain_and_measurements_sum_over_proxies() {
        let mut f = Fleet::default();
        f.record(report("a", 1, 2, 100, 1, 0.10), 0);
        f.record(report("b", 1, 1, 300, 3, 0.30), 0);
        assert_eq!(f.in_flight("checkout", "canary", 0), 3);
        assert_eq!(f.in_flight("checkout", "stable", 0), 0);
        assert!(!f.drained("checkout", "canary", 0));
        assert!(f.drained("checkout", "stable", 0));
        assert!(!Fleet::default().drained("checkout", "canary", 0));
        // a report racing a failing request: failures > requests must not wrap
        let mut racy = Fleet::default();
        racy.record(report("a", 1, 0, 10, 11, 0.1), 0);
        let a = racy.aggregate("checkout", "canary", None, 0);
        assert_eq!(a.value(ProxyMetric::SuccessRate), Ok(Value::Scalar(0.0)));
        let a = f.aggregate("checkout", "canary", None, 0);
        assert_eq!((a.proxies, a.requests, a.failures), (2, 400, 4));
        assert_eq!(a.value(ProxyMetric::SuccessRate), Ok(Value::Scalar(0.99)));
        assert_eq!(
            a.value(ProxyMetric::LatencyP95),
            Ok(Value::Scalar(0.30)),
            "the worst proxy"
        );
        assert_eq!(
            a.value(ProxyMetric::RequestRate),
            Ok(Value::Scalar(400.0 / 60.0))
        );
        let none = f.aggregate("checkout", "stable", None, 0);
        assert!(none
            .value(ProxyMetric::SuccessRate)
            .unwrap_err()
            .contains("no requests"));
    }

    #[test]
    fn a_proxy_past_its_deadline_is_lost_for_ten_minutes_unless_it_reports_again() {
        let mut f = Fleet::default();
        f.record(report("a", 1, 0, 0, 0, 0.1), 0);
        f.record(report("b", 1, 0, 0, 0, 0.1), 0);
        // Both keep reporting every second until 3 s; then b falls silent.
        for t in 1..=3 {
            f.record(report("a", 1, 0, 0, 0, 0.1), t * 1_000);
            f.record(report("b", 1, 0, 0, 0, 0.1), t * 1_000);
        }
        for t in 4..=10 {
            f.record(report("a", 1, 0, 0, 0, 0.1), t * 1_000);
        }
        // b's report at 3 s kept it connected until 8 s; a sweep at 9 s dropped it.
        let lost = f.lost(10_000);
        assert_eq!(
            lost,
            vec![Lost {
                proxy: "b".into(),
                lost_at: 3_000 + CONNECTED_FOR,
                last_report: 3_000,
            }]
        );
        assert_eq!(f.connected_count(10_000), 1);
        // Past its deadline but not yet dropped (no write since) counts as lost too.
        assert_eq!(
            f.lost(16_000).len(),
            2,
            "a's deadline (15 s) passed as well"
        );
        // …for ten minutes too, dropped or not.
        assert!(f.lost(15_000 + LOST_FOR + 1).iter().all(|l| l.proxy != "a"));
        // Ten minutes after b was lost it is forgotten, by a query and by the next write.
        assert!(f.lost(8_000 + LOST_FOR + 1).iter().all(|l| l.proxy != "b"));
        f.record(report("a", 1, 0, 0, 0, 0.1), 8_000 + LOST_FOR + 1);
        assert!(f.lost.is_empty() && f.lost_by_time.is_empty());
        // A lost proxy that reports again is connected, not lost.
        let later = 8_000 + LOST_FOR + 30_000;
        f.record(report("c", 1, 0, 0, 0, 0.1), later - 20_000);
        f.record(report("a", 1, 0, 0, 0, 0.1), later);
        assert_eq!(f.lost(later).len(), 1);
        f.record(report("c", 1, 0, 0, 0, 0.1), later);
        assert!(f.lost(later).is_empty());
    }

    #[test]
    fn lost_proxies_are_bounded_oldest_forgotten_first() {
        let mut f = Fleet::default();
        for i in 0..(MAX_LOST as u64 + 5) {
            f.record(report(&format!("p{i}"), 1, 0, 0, 0, 0.1), i);
        }
        // Every deadline has passed: the next write drops them all as lost, keeping the newest.
        f.record(report("live", 1, 0, 0, 0, 0.1), 60_000);
        let lost = f.lost(60_000);
        assert_eq!(lost.len(), MAX_LOST);
        assert_eq!(f.lost.len(), MAX_LOST);
        assert_eq!(lost[0].proxy, format!("p{}", MAX_LOST + 4));
        assert!(lost.iter().all(|l| l.proxy != "p0" && l.proxy != "p4"));
    }

    #[test]
    fn stale_means_connected_but_a_keep_alive_late() {
        let mut f = Fleet::default();
        f.record_until(report("a", 1, 0, 0, 0, 0.1), 0, 20_000);
        f.record_until(report("b", 1, 0, 0, 0, 0.1), 2_500, 20_000);
        // Two proxies: keep-alives every second, so 3 s of silence is late.
        assert_eq!(f.stale(3_001), vec!["a"]);
        assert!(f.stale(2_900).is_empty());
        assert_eq!(
            f.connected_count(3_001),
            2,
            "stale proxies still count as connected"
        );
    }
}
