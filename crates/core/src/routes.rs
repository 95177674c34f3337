//! The proxy route a rollout implies: what the control plane publishes to every proxy.
//!
//! Canary first, so that it owns the low buckets and raising its weight only ever moves users
//! into it (the split's monotonic cohorts). Weights are percentages (canary `w`, stable
//! `100 - w`). Once promoted, the route has the single backend `stable` running the canary's
//! version: the canary is the new stable.

pub use vireo_types::config::Route;
use vireo_types::config::{Backend, SplitConfig, UpstreamProtocol};

use crate::spec::{Rollout, Workload};

/// Backend names on the proxy (they appear in metrics and `/slo`).
pub const CANARY: &str = "canary";
pub const STABLE: &str = "stable";

/// The route for `rollout` with the canary at `canary_weight` percent.
pub fn route(rollout: &Rollout, canary_weight: u8) -> Route {
    let s = &rollout.spec;
    let w = i64::from(canary_weight.min(100));
    let split = SplitConfig {
        key: s.split.key.clone(),
        on_missing_key: Default::default(),
        buckets: s.split.buckets,
        salt: Some(rollout.salt()),
        allow_override: false,
        backends: vec![
            backend(CANARY, &s.canary, w),
            backend(STABLE, &s.stable, 100 - w),
        ],
    };
    Route {
        name: s.route.clone(),
        matches: s.matches.clone(),
        split,
    }
}

/// The route once the canary has been promoted: all traffic to its version, as `stable`.
pub fn promoted_route(rollout: &Rollout) -> Route {
    let mut r = route(rollout, 100);
    r.split.backends = vec![backend(STABLE, &rollout.spec.canary, 100)];
    r
}

fn backend(name: &str, w: &Workload, weight: i64) -> Backend {
    Backend {
        name: name.to_string(),
        version: w.version.clone(),
        addrs: w.addrs.clone(),
        weight,
        protocol: UpstreamProtocol::Http1,
    }
}
