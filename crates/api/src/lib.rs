//! `vireo-api`: the operator API's types, one definition for the server that writes them and
//! the clients (CLI, tests, the console's scripts) that read them.
//!
//! Invariant (checked by `scripts/check-architecture.sh`): no server, database or proxy in
//! this crate's dependency tree; it is the vocabulary, not the implementation.

pub mod dto;
pub mod render;

pub use dto::{
    AppliedWeight, EvidenceIndex, EvidenceItem, FleetHealth, GateOutcome, Generations, LostProxy,
    PreconditionResult, PrometheusHealth, ProxyRefusal, PublishedRoute, RollbackPreview,
    RollbackView, RolloutHealth, RolloutList, RolloutView, RouteHistory, ScheduleCheck,
    ScheduleStatus, SinkHealth, Status, TemplateApplied, Timeline, TimelineEntry,
    MAX_SCHEDULE_CHECKS,
};

#[cfg(test)]
mod tests {
    use super::*;
    use vireo_core::rollout::{Input, RolloutState};
    use vireo_core::spec::Rollout;

    fn view() -> RolloutView {
        let rollout = Rollout::parse(vireo_core::testdata::ROLLOUT).unwrap();
        let (state, _) = RolloutState::new();
        RolloutView {
            status: Status {
                phase: state.phase,
                settled: false,
                current_step_index: 1,
                steps: rollout.steps().len(),
                canary_weight: 5,
                message: "waiting".into(),
                generation: 2,
                applied_weights: vec![AppliedWeight {
                    weight: 5,
                    applied_ms: 1_000,
                }],
                abort_to_zero_ms: None,
                drain_ms: Some(12),
                drain_forced: false,
                rollback: None,
                analysis_runs: Vec::new(),
                proxy_errors: Vec::new(),
                schedule: None,
                created_ms: 1,
                updated_ms: 2,
                applied_by: Some("alice".into()),
                allowed_actions: vec![vireo_core::rollout::Action::Abort],
            },
            rollout,
        }
    }

    #[test]
    fn a_rollout_view_reads_back_what_the_server_writes() {
        let v = view();
        let text = serde_json::to_string(&v).unwrap();
        assert!(
            text.contains("\"status\":{"),
            "status beside the spec: {text}"
        );
        let again: RolloutView = serde_json::from_str(&text).unwrap();
        assert_eq!(again, v);
    }

    #[test]
    fn a_view_without_status_or_with_a_misspelt_spec_field_is_refused() {
        let mut json = serde_json::to_value(view()).unwrap();
        json.as_object_mut().unwrap().remove("status");
        let e = serde_json::from_value::<RolloutView>(json).unwrap_err();
        assert!(e.to_string().contains("status"), "{e}");
        let mut json = serde_json::to_value(view()).unwrap();
        json["spec"]["routee"] = "x".into();
        assert!(serde_json::from_value::<RolloutView>(json).is_err());
    }

    #[test]
    fn timelines_round_trip() {
        let t = Timeline {
            rollout: "checkout".into(),
            generation: 1,
            entries: vec![TimelineEntry {
                seq: 1,
                at: "2026-12-01T00:00:00.000Z".into(),
                at_ms: 0,
                input: Input::WeightApplied { weight: 5 },
                by: Some("alice".into()),
                reason: None,
                checkpoints: Vec::new(),
                outputs: Vec::new(),
            }],
        };
        let again: Timeline = serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
        assert_eq!(again, t);
    }
}
