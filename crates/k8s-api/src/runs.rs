//! `AnalysisRun` objects: the projection of the control plane's analysis runs, so that
//! `kubectl get analysisruns` (short name `var`) shows what was measured, as Argo Rollouts
//! users expect. The store stays the source of truth (the evidence names its runs); an
//! AnalysisRun is written by the controller, owned by its Rollout (deleted with it), and never
//! read back. Pure: the controller creates the object from [`object`] and writes [`status`]
//! through the status subresource whenever it differs.

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

#[cfg(test)]
mod tests {
    use super::*;
    use vireo_core::analysis::{Measurement as M, MetricView};

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
