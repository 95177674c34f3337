//! `GET /api/v1/rollouts/{name}/health`: the run's health banner in one read.
//!
//! Three sources, each where it lives: the fleet (in memory: connected, lost in the last ten
//! minutes, refusing, stale, behind), the event sink (its loop's last outcome, and its cursor
//! against the log in the store), and the Prometheus servers the rollout's analysis templates
//! name (probed with `GET /-/ready`, two seconds at most, each answer reused for ten seconds
//! so a console polling every few seconds does not become Prometheus's load).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use vireo_api::{
    FleetHealth, LostProxy, PrometheusHealth, ProxyRefusal, RolloutHealth, SinkHealth,
};
use vireo_engine::driver::{ApiError, Handle};

use crate::error::ErrorResponse;

pub fn router() -> Router<Handle> {
    Router::new().route("/api/v1/rollouts/{name}/health", get(health))
}

/// Prometheus addresses probed per request, at most (a template set naming more is unusual;
/// the rest are left out rather than probed).
const MAX_PROBES: usize = 8;
/// How long a probe's answer is reused.
const PROBE_FRESH: Duration = Duration::from_secs(10);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Answers remembered at most (addresses come from templates, which operators write).
const MAX_CACHED: usize = 64;

/// address → (when probed, wall-clock ms, outcome).
type Probes = BTreeMap<String, (Instant, u64, Result<(), String>)>;
static PROBES: Mutex<Probes> = Mutex::new(BTreeMap::new());

async fn health(State(h): State<Handle>, Path(name): Path<String>) -> Response {
    match read(&h, &name).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn read(h: &Handle, name: &str) -> Result<RolloutHealth, ApiError> {
    let view = h.get(name).await?;
    let now = h.shared.clock.now_ms();
    let proxies = fleet(h, now);
    let event_sink = match h.shared.sink.get() {
        Some(status) => Some(sink(h, status, now).await?),
        None => None,
    };
    // The distinct literal Prometheus addresses of the templates the recipe names.
    let mut addresses = BTreeSet::new();
    let names: BTreeSet<String> = view
        .rollout
        .template_refs()
        .into_iter()
        .map(|(_, r)| r.template_name.clone())
        .collect();
    for t in names {
        let Some(template) = h.template(&t).await? else {
            continue;
        };
        for m in &template.spec.metrics {
            if let Some(p) = &m.provider.prometheus {
                if !p.address.contains("{{") {
                    addresses.insert(p.address.clone());
                }
            }
        }
    }
    // In parallel: a health read waits for its slowest probe (2 s), not their sum.
    let prometheus = futures_util::future::join_all(
        addresses
            .iter()
            .take(MAX_PROBES)
            .map(|address| probe(address, now)),
    )
    .await;
    Ok(RolloutHealth {
        rollout: name.to_string(),
        checked_at_ms: now,
        proxies,
        event_sink,
        prometheus,
    })
}

fn fleet(h: &Handle, now: u64) -> FleetHealth {
    let table_version = h.shared.tables.current().version;
    let fleet = h.shared.fleet.read().unwrap_or_else(|e| e.into_inner());
    let mut refusing = Vec::new();
    let mut behind = Vec::new();
    let mut connected = 0;
    for r in fleet.connected(now) {
        connected += 1;
        if let Some(x) = &r.rejected {
            refusing.push(ProxyRefusal {
                proxy: r.proxy.clone(),
                version: x.version,
                error: x.error.clone(),
            });
        }
        if r.applied_version != table_version {
            behind.push(r.proxy.clone());
        }
    }
    let lost: Vec<LostProxy> = fleet
        .lost(now)
        .into_iter()
        .map(|l| LostProxy {
            proxy: l.proxy,
            lost_at_ms: l.lost_at,
            last_report_ms: l.last_report,
        })
        .collect();
    FleetHealth {
        connected,
        expected: connected + lost.len(),
        table_version,
        lost,
        refusing,
        stale: fleet.stale(now).into_iter().map(String::from).collect(),
        behind,
    }
}

async fn sink(
    h: &Handle,
    status: &vireo_engine::sink::SinkStatus,
    now: u64,
) -> Result<SinkHealth, ApiError> {
    let cursor = status.cursor();
    let lag = crate::events::read_log(h, move |conn| {
        vireo_store::events::sink_lag(conn, &cursor).map_err(|e| ApiError::Internal(e.to_string()))
    })
    .await?;
    let state = status.state();
    Ok(SinkHealth {
        url: vireo_engine::sink::redact(&status.url),
        delivered_seq: lag.delivered,
        latest_seq: lag.latest,
        lag_ms: lag.oldest_undelivered_ms.map(|t| now.saturating_sub(t)),
        delivered_at_ms: state.delivered_at_ms,
        error: state.error,
        failing_since_ms: state.failing_since_ms,
    })
}

/// Prometheus at `address` is ready: a fresh cached answer, or a probe.
async fn probe(address: &str, now: u64) -> PrometheusHealth {
    let cached = PROBES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(address)
        .filter(|(at, _, _)| at.elapsed() < PROBE_FRESH)
        .cloned();
    let (checked_at_ms, outcome) = match cached {
        Some((_, ms, outcome)) => (ms, outcome),
        None => {
            let outcome = vireo_engine::precondition::prometheus_ready(
                &vireo_engine::prometheus::client(),
                address,
                PROBE_TIMEOUT,
            )
            .await;
            let mut probes = PROBES.lock().unwrap_or_else(|e| e.into_inner());
            if probes.len() >= MAX_CACHED && !probes.contains_key(address) {
                // Forget the stalest answer.
                if let Some(old) = probes
                    .iter()
                    .min_by_key(|(_, (at, _, _))| *at)
                    .map(|(k, _)| k.clone())
                {
                    probes.remove(&old);
                }
            }
            probes.insert(address.to_string(), (Instant::now(), now, outcome.clone()));
            (now, outcome)
        }
    };
    PrometheusHealth {
        address: address.to_string(),
        ready: outcome.is_ok(),
        error: outcome.err(),
        checked_at_ms,
    }
}

#[cfg(test)]
mod tests {
    use vireo_engine::sink::redact;

    #[test]
    fn a_sink_url_is_shown_without_credentials_path_or_query() {
        assert_eq!(
            redact("https://user:secret@sink.example:8443/hooks/T0/B1/XXXX?token=abc"),
            "https://sink.example:8443/…"
        );
        assert_eq!(redact("http://127.0.0.1:9/"), "http://127.0.0.1:9/");
        assert_eq!(redact("::"), "(not a URL)");
    }
}
