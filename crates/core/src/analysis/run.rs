//! An analysis run as measured so far (the API's `status.analysisRuns[]`) and the rule that
//! decides its phase from its metrics'. Plain data plus pure rules: the live runner fills it,
//! the store keeps it, and replay recomputes a recorded verdict with the same [`decide`].

use serde::{Deserialize, Serialize};

use super::{run_phase, MeasurementPhase, RunPhase, Value};
use crate::rollout::{Millis, Verdict};

/// A run as measured so far (the API's `status.analysisRuns[]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunView {
    pub run: u64,
    pub step: usize,
    pub phase: RunPhase,
    pub started_ms: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_ms: Option<Millis>,
    pub message: String,
    pub metrics: Vec<MetricView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricView {
    pub name: String,
    pub phase: RunPhase,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    pub measurements: Vec<Measurement>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Measurement {
    pub at_ms: Millis,
    pub phase: MeasurementPhase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl RunView {
    /// The run's phase from its metrics' (dry-run metrics do not count; a run of nothing but
    /// dry-run metrics succeeds once they are done).
    pub fn decided(&self) -> RunPhase {
        let metrics: Vec<(RunPhase, bool)> =
            self.metrics.iter().map(|m| (m.phase, m.dry_run)).collect();
        decide(&metrics)
    }

    /// The verdict, once the run is decided.
    pub fn verdict(&self) -> Option<Verdict> {
        match self.phase {
            RunPhase::Successful => Some(Verdict::Successful),
            RunPhase::Failed => Some(Verdict::Failed),
            RunPhase::Error => Some(Verdict::Error),
            RunPhase::Inconclusive => Some(Verdict::Inconclusive),
            RunPhase::Pending | RunPhase::Running => None,
        }
    }

    /// One line on each metric that did not succeed (or on all, when every one did).
    pub fn summary(&self) -> String {
        let describe = |m: &MetricView| {
            let last = m.measurements.last();
            let value = match last.and_then(|l| l.value.as_ref()) {
                Some(Value::Scalar(v)) => format!("{v:.4}"),
                Some(Value::Vector(v)) => format!("{v:?}"),
                None => "no value".into(),
            };
            let why = last
                .and_then(|l| l.message.as_deref())
                .map(|m| format!(" ({m})"))
                .unwrap_or_default();
            format!(
                "{}{} {:?} after {} measurements, last {value}{why}",
                m.name,
                if m.dry_run { " (dry run)" } else { "" },
                m.phase,
                m.measurements.len()
            )
        };
        let bad: Vec<String> = self
            .metrics
            .iter()
            .filter(|m| m.phase != RunPhase::Successful)
            .map(describe)
            .collect();
        if bad.is_empty() {
            self.metrics
                .iter()
                .map(describe)
                .collect::<Vec<_>>()
                .join("; ")
        } else {
            bad.join("; ")
        }
    }
}

/// A run's phase from its metrics (dry-run metrics do not count; a run of nothing but dry-run
/// metrics succeeds once they are done). Shared with the live runner.
pub fn decide(metrics: &[(RunPhase, bool)]) -> RunPhase {
    let counted: Vec<RunPhase> = metrics
        .iter()
        .filter(|(_, dry)| !dry)
        .map(|(p, _)| *p)
        .collect();
    if counted.is_empty() {
        return match metrics.iter().all(|(p, _)| p.is_done()) {
            true => RunPhase::Successful,
            false => RunPhase::Running,
        };
    }
    run_phase(counted)
}
