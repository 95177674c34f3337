//! What the API shows of a rollout: its status and timeline, built from the stored state
//! and history.

use super::*;

impl Driver {
    pub(super) fn view(&self, name: &str) -> Result<RolloutView, ApiError> {
        let stored = self
            .store
            .rollout(name)?
            .ok_or_else(|| ApiError::NotFound(format!("no rollout named {name:?}")))?;
        let history = self.store.history(name)?;
        let runs = self
            .store
            .runs(name)?
            .into_iter()
            .filter_map(|v| serde_json::from_value(v).ok())
            .collect();
        let proxy_errors = self.traffic.refusals(self.clock.now_ms());
        let mut v = view(stored, &history, runs, proxy_errors);
        if let Some(s) = self.store.schedule(name)? {
            let mut j = serde_json::to_value(&s).unwrap_or_default();
            if let Some(note) = self.live.get(name).and_then(|l| l.gate_note.clone()) {
                j["state"] = note.into();
            }
            v.status.schedule = Some(j);
        }
        Ok(v)
    }

    pub(super) fn timeline(&self, name: &str) -> Result<Timeline, ApiError> {
        let stored = self
            .store
            .rollout(name)?
            .ok_or_else(|| ApiError::NotFound(format!("no rollout named {name:?}")))?;
        let entries = self
            .store
            .history(name)?
            .into_iter()
            .map(|h| {
                let (checkpoints, outputs) = h
                    .effects
                    .into_iter()
                    .partition(|e| matches!(e, Effect::Checkpoint { .. }));
                TimelineEntry {
                    seq: h.seq,
                    at: humantime::format_rfc3339_millis(
                        UNIX_EPOCH + Duration::from_millis(h.at_ms),
                    )
                    .to_string(),
                    at_ms: h.at_ms,
                    input: h.input,
                    by: h.actor,
                    reason: h.reason,
                    checkpoints,
                    outputs,
                }
            })
            .collect();
        Ok(Timeline {
            rollout: name.to_string(),
            generation: stored.generation,
            entries,
        })
    }
}

/// The API view of a stored rollout (pure: also used by tests).
pub fn view(
    stored: StoredRollout,
    history: &[HistoryEntry],
    runs: Vec<RunView>,
    proxy_errors: Vec<String>,
) -> RolloutView {
    let mut applied_weights: Vec<AppliedWeight> = Vec::new();
    for h in history {
        if let Input::WeightApplied { weight } = h.input {
            if applied_weights.last().map(|a| a.weight) != Some(weight) {
                applied_weights.push(AppliedWeight {
                    weight,
                    applied_ms: h.at_ms,
                });
            }
        }
    }
    let s = &stored.state;
    let abort = s.abort.as_ref();
    RolloutView {
        status: Status {
            phase: s.phase,
            settled: s.is_settled(),
            current_step_index: s.step,
            steps: stored.spec.steps().len(),
            canary_weight: s.canary_weight,
            message: s.message.clone(),
            generation: stored.generation,
            applied_weights,
            abort_to_zero_ms: abort.and_then(|a| a.abort_to_zero_ms()),
            drain_ms: abort.and_then(|a| a.drain_ms()),
            drain_forced: abort.is_some_and(|a| a.forced),
            rollback: s.rollback.replay.as_ref().map(|r| RollbackView {
                reason: r.reason.clone(),
                verified: r.verified.clone(),
                migration: r.migration.clone(),
                flag: r.flag.clone(),
                rto_ms: abort.and_then(|a| a.abort_to_zero_ms()),
                round_trip_ms: r.round_trip_ms(),
            }),
            analysis_runs: runs,
            proxy_errors,
            schedule: None,
            created_ms: stored.created_ms,
            updated_ms: stored.updated_ms,
        },
        rollout: stored.spec,
    }
}
