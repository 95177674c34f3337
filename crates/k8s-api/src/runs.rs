//! `AnalysisRun` objects: the projection of the control plane's analysis runs, so that
//! `kubectl get analysisruns` (short name `var`) shows what was measured, as Argo Rollouts
//! users expect. The store stays the source of truth (the evidence names its runs); an
//! AnalysisRun is written by the controller, owned by its Rollout (deleted with it), and never
//! read back except to prune the history. Pure: the controller creates the object from
//! [`spec`], writes [`status`] through the status subresource whenever it differs (as the
//! patch [`status_patch`] makes), and deletes what [`expired`] names.

use vireo_core::analysis::{MeasurementPhase, RunPhase, RunView, Value};

use crate::analysis::{AnalysisRunSpec, AnalysisRunStatus, Measurement, Metric, MetricResult};

/// Label of every AnalysisRun with its Rollout's name (and the pod-template hash it judged).
pub const ROLLOUT_LABEL: &str = "vireo.dev/rollout";

/// The object's name: `<rollout>-<canary hash>-<run id>`, within Kubernetes' 253 characters.
pub fn name(rollout: &str, hash: &str, run: u64) -> String {
    let suffix = format!("-{hash}-{run}");
    let keep = 253usize.saturating_sub(suffix.len());
    let prefix: String = rollout.chars().take(keep).collect();
    format!("{}{suffix}", prefix.trim_end_matches(['-', '.']))
}

fn phase(p: RunPhase) -> &'static str {
    match p {
        RunPhase::Pending => "Pending",
        RunPhase::Running => "Running",
        RunPhase::Successful => "Successful",
        RunPhase::Failed => "Failed",
        RunPhase::Error => "Error",
        RunPhase::Inconclusive => "Inconclusive",
    }
}

fn measurement_phase(p: MeasurementPhase) -> &'static str {
    match p {
        MeasurementPhase::Successful => "Successful",
        MeasurementPhase::Failed => "Failed",
        MeasurementPhase::Inconclusive => "Inconclusive",
        MeasurementPhase::Error => "Error",
    }
}

fn value(v: &Value) -> String {
    match v {
        Value::Scalar(x) => x.to_string(),
        Value::Vector(xs) => format!(
            "[{}]",
            xs.iter().map(f64::to_string).collect::<Vec<_>>().join(",")
        ),
    }
}

/// RFC 3339, as Kubernetes writes times.
pub fn rfc3339(ms: u64) -> Option<String> {
    k8s_openapi::jiff::Timestamp::from_millisecond(i64::try_from(ms).ok()?)
        .ok()
        .map(|t| t.to_string())
}

/// The spec of `run`'s object: the metrics as the templates define them (`defined`, by name;
/// a metric no template has any more gets its name only).
pub fn spec(
    rollout: &str,
    run: &RunView,
    step_of_run: Option<i32>,
    defined: &[Metric],
) -> AnalysisRunSpec {
    AnalysisRunSpec {
        rollout: rollout.to_string(),
        step: step_of_run,
        run_id: run.run.to_string(),
        args: Vec::new(),
        metrics: run
            .metrics
            .iter()
            .map(|m| {
                defined
                    .iter()
                    .find(|d| d.name == m.name)
                    .cloned()
                    .unwrap_or_else(|| Metric {
                        name: m.name.clone(),
                        interval: None,
                        initial_delay: None,
                        count: None,
                        success_condition: None,
                        failure_condition: None,
                        failure_limit: None,
                        inconclusive_limit: None,
                        consecutive_error_limit: None,
                        provider: serde_json::json!({}),
                    })
            })
            .collect(),
    }
}

/// The status of `run`'s object: its phase and message, and every metric's measurements
/// with Argo's counters.
pub fn status(run: &RunView) -> AnalysisRunStatus {
    AnalysisRunStatus {
        phase: Some(phase(run.phase).to_string()),
        message: Some(run.message.clone()).filter(|m| !m.is_empty()),
        started_at: rfc3339(run.started_ms),
        metric_results: run
            .metrics
            .iter()
            .map(|m| {
                let count = |p: MeasurementPhase| {
                    m.measurements.iter().filter(|x| x.phase == p).count() as u32
                };
                MetricResult {
                    name: m.name.clone(),
                    phase: phase(m.phase).to_string(),
                    count: m.measurements.len() as u32,
                    successful: count(MeasurementPhase::Successful),
                    failed: count(MeasurementPhase::Failed),
                    inconclusive: count(MeasurementPhase::Inconclusive),
                    error: count(MeasurementPhase::Error),
                    measurements: m
                        .measurements
                        .iter()
                        .map(|x| Measurement {
                            phase: measurement_phase(x.phase).to_string(),
                            value: x.value.as_ref().map(value),
                            started_at: rfc3339(x.at_ms),
                            finished_at: rfc3339(x.at_ms),
                            message: x.message.clone(),
                        })
                        .collect(),
                }
            })
            .collect(),
    }
}

/// Argo's default for both history limits.
pub const DEFAULT_HISTORY_LIMIT: usize = 5;

/// An AnalysisRun as the history pruning sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Kept {
    pub name: String,
    /// The canary hash it judged (its [`crate::plan::HASH_LABEL`]).
    pub hash: String,
    pub phase: Option<String>,
    /// `metadata.creationTimestamp`, in milliseconds (`0` when missing: oldest).
    pub created_ms: i64,
}

/// The AnalysisRuns to delete: of earlier canaries only (never `current`'s, which the store
/// still drives), beyond `successful` newest successful ones and `unsuccessful` newest others
/// — Argo's history limits. A run of an earlier canary that never showed an end (it was still
/// running when the canary was superseded; nothing writes it again) counts as unsuccessful,
/// so it cannot pile up outside both limits.
pub fn expired(
    runs: &[Kept],
    current: &str,
    successful: usize,
    unsuccessful: usize,
) -> Vec<String> {
    let mut older: Vec<&Kept> = runs.iter().filter(|r| r.hash != current).collect();
    // Newest first; the name breaks ties so the answer does not depend on the list's order.
    older.sort_by(|a, b| {
        b.created_ms
            .cmp(&a.created_ms)
            .then_with(|| b.name.cmp(&a.name))
    });
    let (mut ok, mut not_ok) = (0, 0);
    let mut out = Vec::new();
    for r in older {
        let (seen, limit) = match r.phase.as_deref() {
            Some("Successful") => (&mut ok, successful),
            _ => (&mut not_ok, unsuccessful),
        };
        *seen += 1;
        if *seen > limit {
            out.push(r.name.clone());
        }
    }
    out
}

/// The JSON merge patch (RFC 7386) that turns the object's `status` from `have` into `want`:
/// a field `have` has and `want` lacks is sent as `null`, which is the only way a merge patch
/// removes it (a plain `{"status": want}` would leave an old `message` for ever). `None` when
/// nothing differs.
pub fn status_patch(
    have: Option<&AnalysisRunStatus>,
    want: &AnalysisRunStatus,
) -> Option<serde_json::Value> {
    if have == Some(want) {
        return None;
    }
    let want = serde_json::to_value(want).unwrap_or_default();
    let have = have
        .and_then(|h| serde_json::to_value(h).ok())
        .unwrap_or_default();
    Some(serde_json::json!({ "status": merge_patch(&have, &want) }))
}

/// RFC 7386's diff of two JSON values: objects field by field (removed ones as `null`),
/// anything else (arrays included) replaced whole.
fn merge_patch(have: &serde_json::Value, want: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match (have, want) {
        (J::Object(h), J::Object(w)) => {
            let mut out = serde_json::Map::new();
            for (k, wv) in w {
                match h.get(k) {
                    Some(hv) if hv == wv => {}
                    Some(hv) => {
                        out.insert(k.clone(), merge_patch(hv, wv));
                    }
                    None => {
                        out.insert(k.clone(), wv.clone());
                    }
                }
            }
            for k in h.keys().filter(|k| !w.contains_key(*k)) {
                out.insert(k.clone(), J::Null);
            }
            J::Object(out)
        }
        _ => want.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vireo_core::analysis::{Measurement as M, MetricView};

    fn kept(name: &str, hash: &str, phase: &str, created_ms: i64) -> Kept {
        Kept {
            name: name.into(),
            hash: hash.into(),
            phase: Some(phase.into()).filter(|p: &String| !p.is_empty()),
            created_ms,
        }
    }

    #[test]
    fn the_history_keeps_the_newest_runs_per_outcome_and_all_of_the_current_canary() {
        let mut runs: Vec<Kept> = (0..8)
            .map(|i| kept(&format!("ok-{i}"), "a", "Successful", i))
            .collect();
        runs.extend((0..3).map(|i| kept(&format!("bad-{i}"), "b", "Failed", 100 + i)));
        runs.push(kept("running", "b", "Running", 0));
        runs.push(kept("unwritten", "b", "", 0));
        runs.extend((0..9).map(|i| kept(&format!("now-{i}"), "c", "Successful", 200 + i)));
        let mut gone = expired(&runs, "c", 5, 2);
        gone.sort();
        // Newest unsuccessful: bad-2, bad-1 (created 101, 102); a run of an old canary that
        // never finished counts as unsuccessful (oldest: created 0).
        assert_eq!(
            gone,
            ["bad-0", "ok-0", "ok-1", "ok-2", "running", "unwritten"]
        );
        assert!(expired(&runs, "c", 100, 100).is_empty());
        assert_eq!(expired(&runs, "c", 0, 0).len(), 13);
    }

    #[test]
    fn a_status_patch_removes_what_the_run_no_longer_says() {
        let have = AnalysisRunStatus {
            phase: Some("Running".into()),
            message: Some("waiting for the first measurement".into()),
            ..Default::default()
        };
        let want = AnalysisRunStatus {
            phase: Some("Successful".into()),
            ..Default::default()
        };
        let patch = status_patch(Some(&have), &want).unwrap();
        assert_eq!(patch["status"]["phase"], "Successful");
        assert!(patch["status"]["message"].is_null(), "{patch}");
        assert!(
            patch["status"].get("message").is_some(),
            "sent as null: {patch}"
        );
        assert_eq!(status_patch(Some(&want), &want), None);
        let fresh = status_patch(None, &want).unwrap();
        assert_eq!(fresh["status"]["phase"], "Successful");
    }

    #[test]
    fn a_failed_run_shows_its_measurements_and_counters_as_argo_does() {
        let run = RunView {
            run: 7,
            step: 1,
            phase: RunPhase::Failed,
            started_ms: 1_796_000_000_000,
            finished_ms: Some(1_796_000_002_000),
            message: "success-rate failed".into(),
            metrics: vec![MetricView {
                name: "success-rate".into(),
                phase: RunPhase::Failed,
                dry_run: false,
                measurements: vec![
                    M {
                        at_ms: 1_796_000_001_000,
                        phase: MeasurementPhase::Successful,
                        value: Some(Value::Scalar(0.99)),
                        message: None,
                    },
                    M {
                        at_ms: 1_796_000_002_000,
                        phase: MeasurementPhase::Failed,
                        value: Some(Value::Scalar(0.8)),
                        message: None,
                    },
                ],
            }],
        };
        let s = status(&run);
        assert_eq!(s.phase.as_deref(), Some("Failed"));
        let m = &s.metric_results[0];
        assert_eq!((m.count, m.successful, m.failed, m.error), (2, 1, 1, 0));
        assert_eq!(m.measurements[1].value.as_deref(), Some("0.8"));
        assert!(s.started_at.unwrap().starts_with("2026-"));
        let spec = spec("checkout", &run, Some(1), &[]);
        assert_eq!(
            (spec.run_id.as_str(), spec.metrics[0].name.as_str()),
            ("7", "success-rate")
        );
        assert_eq!(name("checkout", "6d4f9c", 7), "checkout-6d4f9c-7");
        assert!(name(&"x".repeat(300), "6d4f9c", 7).len() <= 253);
    }
}
