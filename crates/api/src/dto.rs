//! The operator API's bodies (`shared/spec/control.md`), as the server writes them and the
//! CLI and tests read them: one definition for both directions.

use serde::{Deserialize, Deserializer, Serialize};
use vireo_core::analysis::RunView;
use vireo_core::rollout::{Effect, Input, Millis, Phase};
use vireo_core::spec::Rollout;

/// A rollout as the API shows it: the spec plus `status`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RolloutView {
    #[serde(flatten)]
    pub rollout: Rollout,
    pub status: Status,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub phase: Phase,
    /// Ended with nothing left to do (drained; any rollback replayed): what watchers wait for.
    pub settled: bool,
    pub current_step_index: usize,
    pub steps: usize,
    pub canary_weight: u8,
    pub message: String,
    pub generation: u64,
    /// Each weight once every connected proxy applied it, in order.
    pub applied_weights: Vec<AppliedWeight>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_to_zero_ms: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_ms: Option<Millis>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drain_forced: bool,
    /// The rollback envelope's replay, once a rollback was decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackView>,
    pub analysis_runs: Vec<RunView>,
    /// Proxies refusing the newest table (a rollout waiting on them is stuck until fixed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proxy_errors: Vec<String>,
    /// The rollout's schedule and where its gate stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<serde_json::Value>,
    pub created_ms: Millis,
    pub updated_ms: Millis,
}

/// How a rollback went: RTO = decision → every proxy on the previous version; round trip =
/// decision → envelope fully replayed (migration and flag included).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RollbackView {
    pub reason: String,
    pub verified: Option<Result<(), String>>,
    pub migration: vireo_core::rollout::Migration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rto_ms: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round_trip_ms: Option<Millis>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppliedWeight {
    pub weight: u8,
    pub applied_ms: Millis,
}

/// `GET /api/v1/rollouts/{name}/timeline`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    pub rollout: String,
    pub generation: u64,
    pub entries: Vec<TimelineEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub seq: u64,
    pub at: String,
    pub at_ms: Millis,
    pub input: Input,
    /// Who sent it: an action's caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// The reason they gave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Lifecycle transitions this input caused (the checkpoints).
    pub checkpoints: Vec<Effect>,
    /// What the driver was asked to do.
    pub outputs: Vec<Effect>,
}

/// `GET /api/v1/rollouts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutList {
    pub items: Vec<RolloutView>,
}

/// `POST /api/v1/analysistemplates`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TemplateApplied {
    pub analysis_template: String,
}

/// The spec's fields and `status` side by side. `Rollout` refuses unknown fields (a misspelt
/// field in an applied spec is an error), so `status` is taken out before the spec is read.
impl<'de> Deserialize<'de> for RolloutView {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut map = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        let status = map
            .remove("status")
            .ok_or_else(|| D::Error::missing_field("status"))?;
        Ok(RolloutView {
            rollout: serde_json::from_value(serde_json::Value::Object(map))
                .map_err(D::Error::custom)?,
            status: serde_json::from_value(status).map_err(D::Error::custom)?,
        })
    }
}
