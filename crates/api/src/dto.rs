//! The operator API's bodies (`shared/spec/control.md`), as the server writes them and the
//! CLI and tests read them: one definition for both directions.

use serde::{Deserialize, Deserializer, Serialize};
use vireo_core::analysis::RunView;
use vireo_core::rollout::{Action, Effect, Input, Millis, Phase};
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
    /// Who applied this generation (the API caller), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_by: Option<String>,
    /// The actions the state machine accepts in this state (the console shows only these;
    /// whether the caller may send them is their role's business).
    #[serde(default)]
    pub allowed_actions: Vec<Action>,
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

/// `GET /api/v1/rollouts/{name}/generations`: every kept generation, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generations {
    pub rollout: String,
    pub items: Vec<RolloutView>,
}

/// `GET /api/v1/rollouts/{name}/evidence/index`: what a generation has in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvidenceIndex {
    pub rollout: String,
    pub generation: u64,
    /// The log's size at the checkpoint below: an item is sealed when its index is inside it.
    pub tree_size: u64,
    /// The log's signed checkpoint (note text) the items were read against.
    pub checkpoint: String,
    pub items: Vec<EvidenceItem>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvidenceItem {
    pub log_index: u64,
    pub at: String,
    pub at_ms: Millis,
    /// The entry kind (`decision`, `rollback`, `bundle`, ...) and the lifecycle stage it seals.
    pub kind: String,
    pub stage: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
    /// sha256 (hex) of the entry as logged (the DSSE envelope's bytes).
    pub digest: String,
    pub sealed: bool,
}

/// `GET /api/v1/rollouts/{name}/rollback`: what a rollback would do, from the armed envelope
/// once it is armed (before: from the spec, `armed: false`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RollbackPreview {
    pub rollout: String,
    pub generation: u64,
    pub armed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_index: Option<u64>,
    /// sha256 (hex) of the envelope as logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envelope_digest: Option<String>,
    /// The envelope's signature and statement checked against this control plane's key:
    /// `None` before it is armed, else `Ok` or what is wrong (a replay would refuse the
    /// migration and the flag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<Result<(), String>>,
    /// `{name, digest: {sha256} | null}`, as the envelope says.
    pub previous_image: serde_json::Value,
    pub previous_version: String,
    /// `null` or `{command, digest}`.
    pub down_migration: serde_json::Value,
    /// `null` or `{key, disable}`.
    pub flag: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub armed_at: Option<String>,
    /// The connected proxies: every one of them is sent weight 0.
    pub proxies: Vec<String>,
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

/// `GET /api/v1/rollouts/{name}/schedule`: the schedule, where the gate stands, and the
/// gate's checks so far, oldest first.
///
/// The checks are kept in the control plane's memory, the newest [`MAX_SCHEDULE_CHECKS`]:
/// a restart starts the gate again from its schedule (the gate's decision, when it comes, is
/// the Gate Eval checkpoint's reason, which is durable).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleStatus {
    pub rollout: String,
    /// `None` once the gate used it (a schedule is used once) or when there never was one.
    pub schedule: Option<vireo_core::schedule::Schedule>,
    /// The gate's latest note, e.g. "scheduled: waiting for 2026-12-03T02:00:00Z".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    pub checks: Vec<ScheduleCheck>,
    /// Older checks no longer kept.
    #[serde(default)]
    pub dropped: u64,
}

/// How many gate checks a rollout keeps (one every 10 s: the last quarter hour and more).
pub const MAX_SCHEDULE_CHECKS: usize = 100;

/// One pass of the gate over the schedule's preconditions, or how the gate ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleCheck {
    pub at_ms: Millis,
    pub outcome: GateOutcome,
    /// One per precondition, in the schedule's order (empty for `missed` and `cancelled`).
    pub results: Vec<PreconditionResult>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum GateOutcome {
    /// Some precondition failed; checked again in 10 s while the window is open.
    Unmet,
    /// Every precondition held inside the window: the gate passed.
    Passed,
    /// The window closed first: the gate failed.
    Missed,
    /// The schedule was deleted while the gate waited: the gate failed.
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PreconditionResult {
    pub precondition: vireo_core::schedule::Precondition,
    pub passed: bool,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `GET /api/v1/rollouts/{name}/health`: what the run's health banner shows — the proxies
/// against those expected, the event sink's lag, and whether the Prometheus servers the
/// rollout's analysis templates name are ready.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutHealth {
    pub rollout: String,
    pub checked_at_ms: Millis,
    pub proxies: FleetHealth,
    /// `None` without `--event-sink`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_sink: Option<SinkHealth>,
    /// One per distinct Prometheus address in the rollout's templates (templated addresses,
    /// resolved only when a run starts, are left out).
    pub prometheus: Vec<PrometheusHealth>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FleetHealth {
    pub connected: usize,
    /// Connected and lost in the last ten minutes: nothing declares a fleet's size, so a proxy
    /// counts as expected once it has reported (`vireo_core::fleet::LOST_FOR`).
    pub expected: usize,
    pub table_version: u64,
    /// Proxies whose deadline passed in the last ten minutes, most recent first.
    pub lost: Vec<LostProxy>,
    /// Connected proxies refusing a table, with their reason.
    pub refusing: Vec<ProxyRefusal>,
    /// Connected proxies that missed a keep-alive (still waited for).
    pub stale: Vec<String>,
    /// Connected proxies not on the newest table.
    pub behind: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LostProxy {
    pub proxy: String,
    pub lost_at_ms: Millis,
    pub last_report_ms: Millis,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyRefusal {
    pub proxy: String,
    pub version: u64,
    pub error: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SinkHealth {
    /// The sink's URL without credentials or query.
    pub url: String,
    /// The last event `seq` the sink acknowledged, and the newest in the log.
    pub delivered_seq: u64,
    pub latest_seq: u64,
    /// How long ago the oldest event not yet acknowledged happened; `None` when caught up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_ms: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at_ms: Option<Millis>,
    /// While failing: the last failure, and since when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since_ms: Option<Millis>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusHealth {
    pub address: String,
    pub ready: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When it was probed (answers are reused for ten seconds).
    pub checked_at_ms: Millis,
}

/// `GET /api/v1/rollouts/{name}/routes?generation=N`: every route the generation published, in
/// order — what the step detail's artifacts show, with the diff from the one before.
///
/// Rebuilt from the stored spec and each `SetCanaryWeight` / `PromoteCanaryToStable` effect with
/// `vireo_core::routes` (pure), the same function that built them when they were published;
/// tables are not stored a second time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteHistory {
    pub rollout: String,
    pub generation: u64,
    pub items: Vec<PublishedRoute>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishedRoute {
    /// The timeline entry whose effect published it.
    pub seq: u64,
    pub at_ms: Millis,
    /// `None` once promoted (a single backend: the canary's version as stable).
    pub canary_weight: Option<u8>,
    pub route: vireo_core::routes::Route,
}
