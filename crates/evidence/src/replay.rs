//! Replay: recompute a recorded verdict from its recorded inputs and compare.
//!
//! The analysis predicate records, for every metric, its definition (conditions, limits) and
//! every measurement (value or error, and the phase it was given). Replay runs the same pure
//! functions the live run used ([`Metric::assess`], [`Metric::phase`], [`decide`]) over the
//! recorded values; any field that comes out different is reported by its path. The gate's
//! VSA records the facts the gate decided on, and is recomputed the same way.

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::{EvidenceError, PlannedMetric};
use vireo_core::analysis::{decide, RunView};
use vireo_core::analysis::{MeasurementPhase, Metric, RunPhase, Value};

/// The `https://vireo.dev/analysis/v1` predicate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRecord {
    pub decision_id: String,
    pub rollout: String,
    pub generation: u64,
    pub run: u64,
    pub step: usize,
    pub phase: RunPhase,
    pub message: String,
    pub metrics: Vec<MetricRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricRecord {
    pub name: String,
    pub template: String,
    /// SHA-256 of the metric definition's RFC 8785 JSON.
    pub template_digest: String,
    pub dry_run: bool,
    pub definition: Metric,
    pub phase: RunPhase,
    pub measurements: Vec<MeasurementRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeasurementRecord {
    pub time: String,
    pub phase: MeasurementPhase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// The provider's error, for measurements that have no value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub provider: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
}

impl AnalysisRecord {
    pub fn new(
        decision: &str,
        rollout: &str,
        generation: u64,
        planned: &[PlannedMetric],
        view: &RunView,
    ) -> Result<AnalysisRecord, EvidenceError> {
        let mut metrics = Vec::new();
        for (m, p) in view.metrics.iter().zip(planned) {
            let (provider, query) = describe(&p.metric);
            metrics.push(MetricRecord {
                name: m.name.clone(),
                template: p.template.clone(),
                template_digest: super::sha256_hex(&super::canonical(&p.metric)?),
                dry_run: p.dry_run,
                definition: p.metric.clone(),
                phase: m.phase,
                measurements: m
                    .measurements
                    .iter()
                    .map(|x| MeasurementRecord {
                        time: super::rfc3339(x.at_ms),
                        phase: x.phase,
                        value: x.value.clone(),
                        error: x
                            .value
                            .is_none()
                            .then(|| x.message.clone().unwrap_or_default()),
                        provider: provider.clone(),
                        query: query.clone(),
                    })
                    .collect(),
            });
        }
        Ok(AnalysisRecord {
            decision_id: decision.to_string(),
            rollout: rollout.to_string(),
            generation,
            run: view.run,
            step: view.step,
            phase: view.phase,
            message: view.message.clone(),
            metrics,
        })
    }
}

fn describe(m: &Metric) -> (String, Option<String>) {
    let p = &m.provider;
    if let Some(prom) = &p.prometheus {
        ("prometheus".into(), Some(prom.query.clone()))
    } else if p.judge.is_some() {
        ("judge".into(), None)
    } else {
        ("proxy".into(), None)
    }
}

/// The outcome of a replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub decision: String,
    /// `match` or `mismatch`.
    pub result: String,
    /// `path: recorded X, recomputed Y` for every field that differs.
    pub differences: Vec<String>,
}

impl Outcome {
    fn new(decision: &str, differences: Vec<String>) -> Outcome {
        Outcome {
            decision: decision.to_string(),
            result: if differences.is_empty() {
                "match"
            } else {
                "mismatch"
            }
            .into(),
            differences,
        }
    }

    pub fn matched(&self) -> bool {
        self.differences.is_empty()
    }
}

fn differ<T: std::fmt::Debug + PartialEq>(
    out: &mut Vec<String>,
    path: String,
    recorded: &T,
    now: &T,
) {
    if recorded != now {
        out.push(format!("{path}: recorded {recorded:?}, recomputed {now:?}"));
    }
}

/// Recomputes an analysis verdict.
pub fn replay_analysis(record: &AnalysisRecord) -> Outcome {
    let mut diffs = Vec::new();
    let mut phases = Vec::new();
    for (i, m) in record.metrics.iter().enumerate() {
        let mut measured = Vec::new();
        for (j, x) in m.measurements.iter().enumerate() {
            let input = match (&x.value, &x.error) {
                (Some(v), _) => Ok(v),
                (None, e) => Err(e.as_deref().unwrap_or("")),
            };
            let (phase, _) = m.definition.assess(input);
            differ(
                &mut diffs,
                format!("metrics[{i}].measurements[{j}].phase"),
                &x.phase,
                &phase,
            );
            measured.push(phase);
        }
        let phase = m.definition.phase(&measured);
        differ(&mut diffs, format!("metrics[{i}].phase"), &m.phase, &phase);
        phases.push((phase, m.dry_run));
    }
    differ(&mut diffs, "phase".into(), &record.phase, &decide(&phases));
    Outcome::new(&record.decision_id, diffs)
}

/// Recomputes a gate verdict from its VSA's recorded facts.
pub fn replay_gate(vsa: &Json) -> Outcome {
    let decision = vsa["decisionId"].as_str().unwrap_or_default();
    let facts = &vsa["inputs"];
    let provenance_ok = match &facts["provenance"] {
        Json::Null => true,
        f => serde_json::from_value::<super::provenance::ProvenanceFacts>(f.clone())
            .ok()
            .is_some_and(|f| super::provenance::evaluate(&f).is_ok()),
    };
    let (passed, needs_approval) = gate_decision(
        provenance_ok,
        facts["preconditionsPassed"].as_bool(),
        facts["approvalAnnotation"].as_str(),
    );
    let result = if passed { "PASSED" } else { "FAILED" };
    let mut diffs = Vec::new();
    differ(
        &mut diffs,
        "verificationResult".into(),
        &vsa["verificationResult"].as_str().unwrap_or_default(),
        &result,
    );
    differ(
        &mut diffs,
        "needsApproval".into(),
        &vsa["needsApproval"].as_bool().unwrap_or(false),
        &needs_approval,
    );
    Outcome::new(decision, diffs)
}

/// The gate's decision from its facts: (passed, needs approval). Preconditions are `None`
/// when they were not looked at (provenance had already failed).
pub fn gate_decision(
    provenance_ok: bool,
    preconditions_passed: Option<bool>,
    approval_annotation: Option<&str>,
) -> (bool, bool) {
    (
        provenance_ok && preconditions_passed == Some(true),
        approval_annotation == Some("required"),
    )
}

/// Replays whatever verdict a statement records, by its predicate type.
pub fn replay_statement(statement: &Json) -> Result<Outcome, String> {
    match statement["predicateType"].as_str() {
        Some(super::ANALYSIS_V1) => {
            let record: AnalysisRecord = serde_json::from_value(statement["predicate"].clone())
                .map_err(|e| format!("the analysis predicate is unreadable: {e}"))?;
            Ok(replay_analysis(&record))
        }
        Some(super::VSA_V1) => Ok(replay_gate(&statement["predicate"])),
        other => Err(format!("{other:?} statements record no verdict to replay")),
    }
}
