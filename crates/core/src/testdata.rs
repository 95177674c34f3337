//! Test fixtures shared by the modules' tests.

/// A small rollout: 5 %, a one-hour pause, an analysis, 50 %, keyed on `x-user-id`.
pub const ROLLOUT: &str = r#"
apiVersion: vireo.dev/v1alpha1
kind: Rollout
metadata: { name: checkout }
spec:
  route: checkout
  stable: { version: v1, addrs: ["127.0.0.1:9001"] }
  canary: { version: v2, addrs: ["127.0.0.1:9002"] }
  split: { key: { header: x-user-id }, buckets: 100 }
  strategy:
    canary:
      steps:
        - setWeight: 5
        - pause: { duration: 1h }
        - analysis: { templates: [ { templateName: canary-slo } ] }
        - setWeight: 50
"#;

/// Answers an effect the way a driver with a healthy fleet would: inputs materialize, the gate
/// passes, every weight applies, every analysis succeeds, the canary drains.
pub fn answer(e: &crate::rollout::Effect) -> Option<crate::rollout::Input> {
    use crate::rollout::{Effect, Input, Verdict};
    match e {
        Effect::MaterializeInputs => Some(Input::InputsMaterialized),
        Effect::EvaluateGate => Some(Input::GateEvaluated {
            passed: true,
            needs_approval: false,
            reason: "ok".into(),
            provenance: None,
        }),
        Effect::SetCanaryWeight(w) => Some(Input::WeightApplied { weight: *w }),
        Effect::ArmRollback => Some(Input::RollbackArmed),
        Effect::VerifyRollback => Some(Input::RollbackVerified { problem: None }),
        Effect::RunDownMigration => Some(Input::MigrationFinished {
            ok: true,
            detail: "ran".into(),
        }),
        Effect::DisableFlag => Some(Input::FlagDisabled {
            detail: "no-op".into(),
        }),
        Effect::StartAnalysis { run, .. } => Some(Input::AnalysisCompleted {
            run: *run,
            verdict: Verdict::Successful,
            message: String::new(),
        }),
        Effect::WatchDrain => Some(Input::CanaryDrained),
        _ => None,
    }
}
