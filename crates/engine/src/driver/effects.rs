//! Carrying out the state machine's effects, one rollout at a time, after their transition
//! committed: route changes, analysis runs, the gate, the workloads, the rollback envelope.

use super::*;

impl Driver {
    pub(super) fn carry_out(&mut self, name: &str, effects: Vec<Effect>) {
        for effect in effects {
            let Some(live) = self.live.get_mut(name) else {
                return;
            };
            let spec = &live.stored.spec;
            match effect {
                Effect::Checkpoint { from, to, reason } => {
                    tracing::info!(rollout = %name, "{from:?} → {to:?}: {reason}");
                }
                Effect::MaterializeInputs => {
                    let call = self.workloads.start(name, &spec.spec.canary);
                    let generation = live.stored.generation;
                    live.start_seq += 1;
                    let op = WorkloadOp::Start(live.start_seq);
                    self.workload_call(name, generation, op, call);
                }
                Effect::EvaluateGate => self.evaluate_gate(name),
                Effect::SetCanaryWeight(w) => {
                    live.route = RouteState::Weight(w);
                    live.awaiting = Some((w, None));
                    self.dirty = true;
                }
                Effect::PromoteCanaryToStable => {
                    live.route = RouteState::Promoted;
                    live.awaiting = None;
                    self.dirty = true;
                }
                Effect::StartAnalysis { step, run } => self.start_run(name, step, run),
                Effect::CancelAnalysis { run } => {
                    if live.runs.remove(&run).is_some() {
                        // dropping aborts the task
                        self.dirty = true; // the heartbeat window may change back
                    }
                }
                // Every aborted rollout's drain is watched in `check_progress`.
                Effect::WatchDrain => {}
                Effect::ForceCloseCanary => {
                    let call = self.workloads.force_close(name, &spec.spec.canary);
                    let generation = live.stored.generation;
                    self.workload_call(name, generation, WorkloadOp::ForceClose, call);
                }
                Effect::StopCanary => {
                    let call = self.workloads.stop(name, &spec.spec.canary);
                    let generation = live.stored.generation;
                    self.workload_call(name, generation, WorkloadOp::Stop, call);
                }
                // The store seals the envelope in the transaction of this input.
                Effect::ArmRollback => self
                    .queue
                    .push_back((name.to_string(), Input::RollbackArmed)),
                Effect::VerifyRollback => {
                    let problem = self.rollback_plan(name).err();
                    if let Some(p) = &problem {
                        tracing::error!(rollout = %name, "rollback envelope refused: {p}");
                    }
                    self.queue
                        .push_back((name.to_string(), Input::RollbackVerified { problem }));
                }
                Effect::RunDownMigration => self.run_down_migration(name),
                Effect::MigrationInterrupted => self.queue.push_back((
                    name.to_string(),
                    Input::MigrationFinished {
                        ok: false,
                        detail: "the control plane restarted while the down-migration ran; \
                                 it is not run again (at most once): check its outcome by hand"
                            .into(),
                    },
                )),
                Effect::DisableFlag => {
                    let detail = match self.rollback_plan(name) {
                        Ok(vireo_evidence::rollback::Plan {
                            flag: Some((key, value)),
                            ..
                        }) => match self.toggle_flag(&key, false, &format!("rollback of {name}")) {
                            Ok(f) => {
                                let served = f.variants.get(&f.default_variant);
                                let wanted = value.get("value").unwrap_or(&value);
                                if served == Some(wanted) {
                                    format!("flag {key:?} disabled: it serves {wanted}")
                                } else {
                                    format!(
                                        "flag {key:?} disabled: it serves its default variant {:?}, not the envelope's {wanted}",
                                        f.default_variant
                                    )
                                }
                            }
                            Err(ApiError::NotFound(_)) => {
                                format!("flag {key:?} is not defined here: nothing to disable")
                            }
                            Err(e) => format!("flag {key:?} not disabled: {e}"),
                        },
                        Ok(_) => "no flag in the envelope".to_string(),
                        Err(e) => format!("flag not touched: {e}"),
                    };
                    self.queue
                        .push_back((name.to_string(), Input::FlagDisabled { detail }));
                }
            }
        }
    }
}

/// A workload call the driver made, for its answer. A start carries its number among the
/// rollout's starts: only the newest one's answer counts (a retry starts again while an
/// earlier, slow start may still be running).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WorkloadOp {
    Start(u64),
    Stop,
    ForceClose,
}

impl Driver {
    /// Carries out a workload call. One that is done at once (a process manager that only
    /// records, an in-process server) is answered here, so an API call still returns with the
    /// rollout as far as it can get; a slow one (pods becoming ready) runs in a task of its
    /// own and answers with [`Command::Workload`]. Not cancelled when the rollout moves on: a
    /// stop should finish whatever happens next.
    pub(super) fn workload_call(
        &mut self,
        name: &str,
        generation: u64,
        op: WorkloadOp,
        call: BoxFuture<'static, Result<(), WorkloadError>>,
    ) {
        use futures_util::FutureExt;
        let mut call = call;
        if let Some(result) = (&mut call).now_or_never() {
            return self.workload_done(name, generation, op, result);
        }
        let tx = self.tx.clone();
        let rollout = name.to_string();
        tokio::spawn(async move {
            let result = call.await;
            let _ = tx
                .send(Command::Workload {
                    rollout,
                    generation,
                    op,
                    result,
                })
                .await;
        });
    }

    /// A workload call's answer. The newest start of the current generation materializes the
    /// rollout's inputs; a failed start is logged and the rollout goes on (as a canary that
    /// never answers would: its analysis judges it). A start that ends after the rollout
    /// began backing out (an abort overtook a slow start) is stopped again, so no canary is
    /// left running.
    pub(super) fn workload_done(
        &mut self,
        name: &str,
        generation: u64,
        op: WorkloadOp,
        result: Result<(), WorkloadError>,
    ) {
        if let Err(e) = &result {
            tracing::warn!(rollout = %name, ?op, "canary workload: {e}");
        }
        let WorkloadOp::Start(seq) = op else {
            return;
        };
        let Some(live) = self.live.get(name) else {
            return;
        };
        // (Not after Completed: the canary is the stable version then.)
        if live.stored.state.phase.is_backing_out() {
            if result.is_ok() {
                tracing::info!(rollout = %name, "a start ended after the rollout stopped: stopping the canary again");
                let call = self.workloads.stop(name, &live.stored.spec.spec.canary);
                let generation = live.stored.generation;
                self.workload_call(name, generation, WorkloadOp::Stop, call);
            }
            return;
        }
        if live.stored.generation == generation && live.start_seq == seq {
            let input = match result {
                Ok(()) => Input::InputsMaterialized,
                // A canary that never started must not be given traffic, let alone promoted.
                Err(e) => Input::WorkloadFailed {
                    reason: e.to_string(),
                },
            };
            self.queue.push_back((name.to_string(), input));
        }
    }
}
