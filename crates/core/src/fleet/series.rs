//! A recent SLO time series per route and backend, for the console's canary chart: the
//! fleet's aggregate over the 60 s window every heartbeat carries, sampled at most every
//! [`EVERY`] and kept for [`KEEP`] samples (30 minutes). Pure and bounded: the caller
//! samples on each report it records; memory is at most `KEEP` samples per backend named by
//! connected proxies, and backends no proxy names for a whole `KEEP` span are dropped.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

use super::Fleet;
use crate::rollout::Millis;

/// The spacing of samples.
pub const EVERY: Millis = 2_000;
/// Samples kept per backend.
pub const KEEP: usize = 900;
/// Routes × backends tracked at most (a report is input from the network).
pub const MAX_SERIES: usize = 256;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    pub at_ms: Millis,
    pub requests: u64,
    /// `None` with no request in the window: no traffic is not 100 % success.
    pub success_ratio: Option<f64>,
    pub latency_p95_s: Option<f64>,
}

#[derive(Debug, Default)]
pub struct Series {
    last: Option<Millis>,
    by: BTreeMap<(String, String), VecDeque<Sample>>,
}

impl Series {
    /// Takes a sample of every route and backend the connected proxies report, unless the
    /// last one is younger than [`EVERY`].
    pub fn sample(&mut self, fleet: &Fleet, now: Millis) {
        if self.last.is_some_and(|t| now < t.saturating_add(EVERY)) {
            return;
        }
        self.last = Some(now);
        let mut named: Vec<(String, String)> = fleet
            .connected(now)
            .flat_map(|r| {
                r.slo
                    .routes
                    .iter()
                    .flat_map(|(route, b)| b.keys().map(move |k| (route.clone(), k.clone())))
            })
            .collect();
        named.sort();
        named.dedup();
        for key in named {
            if !self.by.contains_key(&key) && self.by.len() >= MAX_SERIES {
                continue;
            }
            let a = fleet.aggregate(&key.0, &key.1, None, now);
            let ratio = (a.requests > 0)
                .then(|| (a.requests - a.failures.min(a.requests)) as f64 / a.requests as f64);
            let q = self.by.entry(key).or_default();
            q.push_back(Sample {
                at_ms: now,
                requests: a.requests,
                success_ratio: ratio,
                latency_p95_s: a.latency_p95_s,
            });
            while q.len() > KEEP {
                q.pop_front();
            }
        }
        let oldest = now.saturating_sub(EVERY * KEEP as Millis);
        self.by
            .retain(|_, q| q.back().is_some_and(|s| s.at_ms >= oldest));
    }

    /// A route's samples by backend, oldest first, since `since`.
    pub fn route(&self, route: &str, since: Millis) -> BTreeMap<String, Vec<Sample>> {
        self.by
            .iter()
            .filter(|((r, _), _)| r == route)
            .map(|((_, b), q)| {
                (
                    b.clone(),
                    q.iter().filter(|s| s.at_ms >= since).cloned().collect(),
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::tests::report;

    #[test]
    fn samples_are_spaced_bounded_and_per_backend() {
        let mut f = Fleet::default();
        let mut s = Series::default();
        f.record(report("a", 1, 0, 100, 2, 0.2), 0);
        s.sample(&f, 0);
        s.sample(&f, 1_000); // too soon: no sample
        let r = s.route("checkout", 0);
        assert_eq!(r.keys().collect::<Vec<_>>(), ["canary"], "{r:?}");
        let canary = &r["canary"];
        assert_eq!(canary.len(), 1);
        assert!(canary[0].requests > 0);
        for t in 1..=(KEEP as Millis + 10) {
            f.record(report("a", 1, 0, 100, 2, 0.2), t * EVERY);
            s.sample(&f, t * EVERY);
        }
        assert_eq!(s.route("checkout", 0)["canary"].len(), KEEP, "bounded");
        assert!(s.route("other", 0).is_empty());
        assert_eq!(
            s.route("checkout", u64::MAX)
                .values()
                .map(Vec::len)
                .sum::<usize>(),
            0
        );
    }
}
