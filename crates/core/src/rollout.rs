//! The rollout state machine.
//!
//! Pure and deterministic: [`RolloutState::apply`] takes the recipe's steps, the time and one
//! [`Input`], changes the state and returns the [`Effect`]s a driver must carry out. It does no
//! I/O and reads no clock, so the same inputs always give the same transitions; that is what
//! lets a store persist the state after every input, a restarted control plane resume from it,
//! and an auditor replay a rollout's recorded inputs.
//!
//! Lifecycle (`shared/spec/control.md`), a checkpoint effect at each arrow:
//!
//! ```text
//! Pending → InputsMaterialized → GateEval → [AwaitingApproval] → Progressing (steps)
//!         → PostDeployVerify → Sealed → Completed          side states: Paused, Aborted, RolledBack
//! ```
//!
//! Steps: `setWeight` publishes a weight and waits until every proxy applied it; a timed `pause`
//! waits for the clock ([`RolloutState::next_deadline`] tells the driver when to tick);
//! `pause: {}` pauses until `resume`/`promote`; `analysis` starts a run and waits for its verdict:
//! Successful advances, Failed or Error aborts, Inconclusive pauses.
//!
//! Abort (on a failed analysis or the `abort` action, from any live phase): weight 0 is published
//! at once and the phase is `Aborted`; when every proxy applied 0 the canary is drained; when it
//! reports no request in flight, or at the hard deadline ([`ABORT_DEADLINE`] after the decision),
//! the canary workload is stopped. `abort_to_zero_ms` and `drain_ms` are kept in the state.
//!
//! Rollback envelope (`shared/spec/evidence.md`): no step sets 100 % before the envelope is
//! armed ([`Effect::ArmRollback`], answered by [`Input::RollbackArmed`], which the store seals
//! in the same transaction). A failed post-deploy verification or the `rollback` action replays
//! it: the envelope is verified, weight 0 goes out (the back-out path of an abort), and once
//! every proxy is on the previous version the down-migration runs, then the flag is disabled.
//! The migration's start is committed before the command runs, so a restart never runs it twice
//! ([`Effect::MigrationInterrupted`] reports it instead). RTO and round trip are kept in
//! [`ReplayProgress`].
//!
//! Inputs that no longer apply (a verdict for a step already skipped, an acknowledgement of a
//! superseded weight) are ignored, not errors: in a distributed system they are normal. Actions
//! that do not apply in the current phase are rejected with the reason (the API's 409).

use serde::{Deserialize, Serialize};

use crate::spec::{Rollout, Step};

/// What the state machine needs of a rollout's spec: its steps, and whether a post-deploy
/// verification follows them. Derefs to the steps.
#[derive(Debug, Clone, PartialEq)]
pub struct Recipe {
    pub steps: Vec<Step>,
    /// An analysis runs once the canary holds 100 %; failing it rolls back.
    pub verify: bool,
    /// A background analysis runs from this step until the steps are done (Argo's
    /// `strategy.canary.analysis` with `startingStep`); failing it aborts.
    pub background_from: Option<usize>,
}

impl Recipe {
    /// What the state machine runs for `rollout`.
    pub fn of(rollout: &Rollout) -> Recipe {
        let canary = &rollout.spec.strategy.canary;
        Recipe {
            steps: rollout.steps().to_vec(),
            verify: canary.post_deploy_verify.is_some(),
            background_from: canary
                .analysis
                .as_ref()
                .map(|b| b.starting_step.unwrap_or(0)),
        }
    }

    pub fn new(steps: Vec<Step>) -> Recipe {
        Recipe {
            steps,
            verify: false,
            background_from: None,
        }
    }
}

pub use crate::spec::BACKGROUND_STEP;
/// Background runs are numbered from here, apart from step runs.
const BACKGROUND_RUNS: u64 = 1 << 40;

impl std::ops::Deref for Recipe {
    type Target = [Step];
    fn deref(&self) -> &[Step] {
        &self.steps
    }
}

/// Milliseconds on the driver's clock (wall time in production, anything in tests).
pub type Millis = u64;

/// Hard deadline of an abort, from the decision: by then the canary is stopped whether or not
/// every proxy reported it drained (spec: 60 s, never near the 90 s ceiling).
pub const ABORT_DEADLINE: Millis = 60_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Phase {
    Pending,
    InputsMaterialized,
    GateEval,
    AwaitingApproval,
    Progressing,
    Paused,
    PostDeployVerify,
    Sealed,
    Completed,
    Aborted,
    RolledBack,
}

impl Phase {
    /// No further progress without `retry` (or ever, for Completed).
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Completed | Phase::Aborted | Phase::RolledBack)
    }

    /// Taking the canary out: weight 0, drain, stop (after an abort or a failed post-deploy
    /// verification).
    pub fn is_backing_out(self) -> bool {
        matches!(self, Phase::Aborted | Phase::RolledBack)
    }
}

/// Who sent an input, and why: the authenticated principal (`token:ci`, `oidc:alice@…`) and
/// the reason they gave. Recorded beside the input, on the timeline, in its events and in the
/// checkpoint's evidence; never an input of the state machine (it decides nothing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    pub actor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Caller {
    pub fn new(actor: impl Into<String>, reason: Option<String>) -> Caller {
        Caller {
            actor: actor.into(),
            reason,
        }
    }
}

/// A user's action (API `POST /api/v1/rollouts/{name}/{action}`, CLI `vireo rollout ACTION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    Pause,
    Resume,
    /// Skip the current step.
    Promote,
    /// Skip every remaining step: straight to 100 %.
    PromoteFull,
    Abort,
    Retry,
    Approve,
    /// Replay the rollback envelope: back to the previous version, down-migration, flag off.
    Rollback,
    /// Run the current analysis step's analysis again (a new run; the one in progress is
    /// cancelled), e.g. after a fix to what it measures. The weight stays.
    Rerun,
}

impl Action {
    pub const ALL: [Action; 9] = [
        Action::Pause,
        Action::Resume,
        Action::Promote,
        Action::PromoteFull,
        Action::Abort,
        Action::Retry,
        Action::Approve,
        Action::Rollback,
        Action::Rerun,
    ];
}

/// Verdict of an analysis run (Argo's run phases that end a run).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    Successful,
    Failed,
    Error,
    Inconclusive,
}

/// What happened, as the driver saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Input {
    /// The rollout's inputs (spec, images, templates) are resolved and recorded.
    InputsMaterialized,
    /// The canary's workload could not be started (Kubernetes: no pod ready within
    /// `progressDeadlineSeconds`): the rollout ends before any traffic reaches it.
    WorkloadFailed {
        reason: String,
    },
    /// The gate's decision.
    GateEvaluated {
        passed: bool,
        needs_approval: bool,
        reason: String,
        /// What the provenance check decided on, recorded so the gate can be replayed (the
        /// state machine itself only reads `passed`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        provenance: Option<Box<crate::attestation::ProvenanceFacts>>,
    },
    /// Every connected proxy reported this canary weight applied.
    WeightApplied {
        weight: u8,
    },
    /// Analysis run `run` ended.
    AnalysisCompleted {
        run: u64,
        verdict: Verdict,
        message: String,
    },
    /// Every proxy reported 0 requests in flight to the canary.
    CanaryDrained,
    /// Time passed (the driver ticks at [`RolloutState::next_deadline`]).
    Tick,
    /// The rollback envelope is signed and logged (the store seals it with this input).
    RollbackArmed,
    /// The armed envelope was checked before replaying it: `problem` says why it failed.
    RollbackVerified {
        problem: Option<String>,
    },
    /// The down-migration command ended (or was found interrupted by a restart).
    MigrationFinished {
        ok: bool,
        detail: String,
    },
    /// The rollback's feature flag was disabled.
    FlagDisabled {
        detail: String,
    },
    Action(Action),
}

/// What the driver must do. Effects are idempotent in intent: publishing the same weight twice
/// or checkpointing a transition already stored must be harmless to the driver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Effect {
    /// Persist and sign a lifecycle transition.
    Checkpoint {
        from: Phase,
        to: Phase,
        reason: String,
    },
    MaterializeInputs,
    EvaluateGate,
    /// Publish a route table with this canary weight (stable gets the rest).
    SetCanaryWeight(u8),
    /// Start analysis run `run` for the analysis step `step`. Run ids tell a late verdict of
    /// a cancelled run (say, before a retry reached the same step again) from the current one.
    StartAnalysis {
        step: usize,
        run: u64,
    },
    CancelAnalysis {
        run: u64,
    },
    /// Watch the canary's in-flight count on every proxy; report `CanaryDrained`.
    WatchDrain,
    /// The deadline passed with requests still in flight: close the canary's connections.
    ForceCloseCanary,
    /// Stop the canary workload.
    StopCanary,
    /// The canary is the new stable: publish a route with only it.
    PromoteCanaryToStable,
    /// Sign and log the rollback envelope, then report `RollbackArmed`.
    ArmRollback,
    /// Verify the armed envelope's signature and contents; report `RollbackVerified`.
    VerifyRollback,
    /// Run the envelope's down-migration once (its start is already committed); report
    /// `MigrationFinished`.
    RunDownMigration,
    /// A restart found the down-migration started and not finished: report it as such without
    /// running it again (at most once).
    MigrationInterrupted,
    /// Disable the envelope's feature flag; report `FlagDisabled`.
    DisableFlag,
}

/// What the current step waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Wait {
    /// Every proxy to apply this weight.
    Weight(u8),
    /// The rollback envelope to be armed before this weight (100 %) is published.
    Arming(u8),
    /// The clock to reach this time.
    Until(Millis),
    /// `resume` or `promote` (an indefinite pause step).
    Resume,
    /// The analysis run of the current step.
    Analysis,
    /// Nothing: the step finished while the rollout was paused; resuming moves on.
    Done,
}

/// Why a rollout is paused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PauseReason {
    /// A `pause: {}` step.
    Step,
    /// The `pause` action. `remaining` keeps what was left of a timed pause step.
    User { remaining: Option<Millis> },
    /// An analysis ended Inconclusive; `resume` runs it again, `promote` skips it.
    Inconclusive(String),
}

/// Progress of an abort; times are on the driver's clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbortProgress {
    pub decided_at: Millis,
    pub reason: String,
    /// When every proxy had applied weight 0.
    pub zero_at: Option<Millis>,
    /// When the canary was stopped (drained, or forced at the deadline).
    pub drained_at: Option<Millis>,
    pub forced: bool,
}

impl AbortProgress {
    pub fn abort_to_zero_ms(&self) -> Option<Millis> {
        self.zero_at.map(|t| t.saturating_sub(self.decided_at))
    }
    pub fn drain_ms(&self) -> Option<Millis> {
        self.drained_at.map(|t| t.saturating_sub(self.decided_at))
    }
    pub fn is_done(&self) -> bool {
        self.drained_at.is_some()
    }
}

/// The rollback envelope's life in this generation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackProgress {
    /// Signed and logged: 100 % may be published.
    pub armed: bool,
    /// Set once a rollback was decided.
    pub replay: Option<ReplayProgress>,
}

/// A rollback envelope being replayed; times are on the driver's clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayProgress {
    pub decided_at: Millis,
    pub reason: String,
    /// `None` until checked; `Err` says why the envelope was refused.
    pub verified: Option<Result<(), String>>,
    pub migration: Migration,
    pub flag: Option<String>,
    /// When the whole envelope was replayed (the round trip's end).
    pub done_at: Option<Millis>,
}

impl ReplayProgress {
    pub fn round_trip_ms(&self) -> Option<Millis> {
        self.done_at.map(|t| t.saturating_sub(self.decided_at))
    }
}

/// The down-migration of a rollback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Migration {
    /// Waits for a verified envelope and every proxy on the previous version.
    Pending,
    /// Started at this time; committed before the command runs.
    Started(Millis),
    Finished {
        at: Millis,
        ok: bool,
        detail: String,
    },
    /// Not run, and why.
    Skipped(String),
}

/// An action that does not apply now (the API answers 409 with `reason`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[error("cannot {action:?} a rollout in phase {phase:?}: {reason}")]
pub struct Rejected {
    pub action: Action,
    pub phase: Phase,
    pub reason: String,
}

/// The whole state of one rollout. Serializable: the store keeps it after every input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutState {
    pub phase: Phase,
    /// Index of the current step; equals the number of steps once they are all done.
    pub step: usize,
    pub wait: Option<Wait>,
    /// The canary weight every proxy has applied.
    pub canary_weight: u8,
    pub paused: Option<PauseReason>,
    pub abort: Option<AbortProgress>,
    /// Id of the latest analysis run started.
    #[serde(default)]
    pub analysis_run: u64,
    /// The background analysis run in progress, if any.
    #[serde(default)]
    pub background: Option<u64>,
    /// Background runs started so far (one per attempt; a retry starts another).
    #[serde(default)]
    pub background_runs: u64,
    #[serde(default)]
    pub background_started: bool,
    #[serde(default)]
    pub rollback: RollbackProgress,
    /// Retries so far in this generation: names the gate's decision of each attempt.
    #[serde(default)]
    pub attempt: u32,
    pub message: String,
}

impl RolloutState {
    /// A new rollout: `Pending`, asking the driver to materialize its inputs.
    pub fn new() -> (Self, Vec<Effect>) {
        let s = RolloutState {
            phase: Phase::Pending,
            step: 0,
            wait: None,
            canary_weight: 0,
            paused: None,
            abort: None,
            analysis_run: 0,
            background: None,
            background_runs: 0,
            background_started: false,
            rollback: RollbackProgress::default(),
            attempt: 0,
            message: "materializing inputs".into(),
        };
        (s, vec![Effect::MaterializeInputs])
    }

    /// What the current state waits on, for a driver that (re)starts from a stored state: the
    /// effects of the transition that led here may never have been carried out (a crash between
    /// the commit and the action). Every effect is idempotent, so issuing them again is safe.
    pub fn resume_effects(&self) -> Vec<Effect> {
        let mut fx = self.resume_step_effects();
        if let (Some(run), Phase::Progressing | Phase::Paused) = (self.background, self.phase) {
            fx.push(Effect::StartAnalysis {
                step: BACKGROUND_STEP,
                run,
            });
        }
        if let Some(r) = &self.rollback.replay {
            match (&r.verified, &r.migration) {
                (None, _) => fx.push(Effect::VerifyRollback),
                (_, Migration::Started(_)) => fx.push(Effect::MigrationInterrupted),
                (_, Migration::Finished { .. }) if r.done_at.is_none() => {
                    fx.push(Effect::DisableFlag)
                }
                _ => {}
            }
        }
        fx
    }

    fn resume_step_effects(&self) -> Vec<Effect> {
        match (self.phase, self.wait, &self.abort) {
            (Phase::Pending, _, _) => vec![Effect::MaterializeInputs],
            (Phase::GateEval, _, _) => vec![Effect::EvaluateGate],
            (Phase::Progressing | Phase::Paused, Some(Wait::Weight(w)), _) => {
                vec![Effect::SetCanaryWeight(w)]
            }
            (Phase::Progressing | Phase::Paused, Some(Wait::Arming(_)), _) => {
                vec![Effect::ArmRollback]
            }
            (
                Phase::Progressing | Phase::Paused | Phase::PostDeployVerify,
                Some(Wait::Analysis),
                _,
            ) => {
                vec![Effect::StartAnalysis {
                    step: self.step,
                    run: self.analysis_run,
                }]
            }
            (p, _, Some(a)) if p.is_backing_out() && a.zero_at.is_none() => {
                vec![Effect::SetCanaryWeight(0)]
            }
            (p, _, Some(a)) if p.is_backing_out() && !a.is_done() => vec![Effect::WatchDrain],
            (p, _, _) if p.is_backing_out() => {
                vec![Effect::SetCanaryWeight(0), Effect::StopCanary]
            }
            (Phase::Completed, _, _) => vec![Effect::PromoteCanaryToStable],
            _ => vec![],
        }
    }

    /// Ended with nothing left to do: no canary to drain, no rollback being replayed.
    pub fn is_settled(&self) -> bool {
        self.phase.is_terminal()
            && self.abort.as_ref().is_none_or(|a| a.is_done())
            && !self.replaying()
    }

    /// When the driver must send [`Input::Tick`], if ever.
    pub fn next_deadline(&self) -> Option<Millis> {
        match (self.phase, self.wait, &self.abort) {
            (p, _, Some(a)) if p.is_backing_out() && !a.is_done() => {
                Some(a.decided_at.saturating_add(ABORT_DEADLINE))
            }
            (Phase::Progressing, Some(Wait::Until(t)), _) => Some(t),
            _ => None,
        }
    }

    /// The actions this state accepts now, in [`Action::ALL`]'s order: each is tried on a copy,
    /// so the answer is the state machine's own rule, not a second list that could drift.
    /// (Who may send them — roles, four-eyes — is the server's business.)
    pub fn allowed_actions(&self, steps: &Recipe, now: Millis) -> Vec<Action> {
        Action::ALL
            .into_iter()
            .filter(|a| self.clone().apply(steps, now, Input::Action(*a)).is_ok())
            .collect()
    }

    /// Applies one input. On `Err` the state is unchanged.
    pub fn apply(
        &mut self,
        steps: &Recipe,
        now: Millis,
        input: Input,
    ) -> Result<Vec<Effect>, Rejected> {
        let mut fx = Vec::new();
        match input {
            Input::Action(action) => self.act(steps, now, action, &mut fx)?,
            Input::WorkloadFailed { reason } if self.phase == Phase::Pending => {
                // No traffic ever reached the canary: nothing to drain.
                let reason = format!("the canary did not start: {reason}");
                self.abort = Some(AbortProgress {
                    decided_at: now,
                    reason: reason.clone(),
                    zero_at: Some(now),
                    drained_at: Some(now),
                    forced: false,
                });
                self.message = reason.clone();
                self.transition(Phase::Aborted, &reason, &mut fx);
            }
            Input::InputsMaterialized if self.phase == Phase::Pending => {
                self.transition(Phase::InputsMaterialized, "inputs recorded", &mut fx);
                self.transition(Phase::GateEval, "evaluating the gate", &mut fx);
                fx.push(Effect::EvaluateGate);
            }
            Input::GateEvaluated {
                passed,
                needs_approval,
                reason,
                ..
            } if self.phase == Phase::GateEval => {
                if !passed {
                    // No traffic ever reached the canary: nothing to drain.
                    self.abort = Some(AbortProgress {
                        decided_at: now,
                        reason: format!("gate failed: {reason}"),
                        zero_at: Some(now),
                        drained_at: Some(now),
                        forced: false,
                    });
                    self.message = format!("gate failed: {reason}");
                    self.transition(Phase::Aborted, &format!("gate failed: {reason}"), &mut fx);
                } else if needs_approval {
                    self.transition(Phase::AwaitingApproval, &reason, &mut fx);
                } else {
                    self.transition(Phase::Progressing, &reason, &mut fx);
                    self.enter_step(steps, now, &mut fx);
                }
            }
            Input::WeightApplied { weight } => self.weight_applied(steps, now, weight, &mut fx),
            Input::AnalysisCompleted {
                run,
                verdict,
                message,
            } => self.analysis_completed(steps, now, run, verdict, message, &mut fx),
            Input::CanaryDrained => self.finish_abort(now, false, &mut fx),
            Input::Tick => self.tick(steps, now, &mut fx),
            Input::RollbackArmed => self.rollback_armed(&mut fx),
            Input::RollbackVerified { problem } => self.rollback_verified(now, problem, &mut fx),
            Input::MigrationFinished { ok, detail } => {
                if let Some(r) = self.rollback.replay.as_mut() {
                    if matches!(r.migration, Migration::Started(_)) {
                        r.migration = Migration::Finished {
                            at: now,
                            ok,
                            detail,
                        };
                        fx.push(Effect::DisableFlag);
                    }
                }
            }
            Input::FlagDisabled { detail } => self.rollback_done(now, Some(detail)),
            // Anything else arrived in a phase it does not belong to (late or duplicate).
            Input::InputsMaterialized
            | Input::WorkloadFailed { .. }
            | Input::GateEvaluated { .. } => {}
        }
        Ok(fx)
    }

    fn act(
        &mut self,
        steps: &Recipe,
        now: Millis,
        action: Action,
        fx: &mut Vec<Effect>,
    ) -> Result<(), Rejected> {
        let reject = |reason: &str| Rejected {
            action,
            phase: self.phase,
            reason: reason.to_string(),
        };
        match action {
            Action::Pause => {
                if self.phase != Phase::Progressing {
                    return Err(reject("only a progressing rollout can be paused"));
                }
                let remaining = match self.wait {
                    Some(Wait::Until(t)) => Some(t.saturating_sub(now)),
                    _ => None,
                };
                self.paused = Some(PauseReason::User { remaining });
                self.transition(Phase::Paused, "paused by user", fx);
            }
            Action::Resume => {
                if self.phase != Phase::Paused {
                    return Err(reject("only a paused rollout can be resumed"));
                }
                let reason = self.paused.take();
                self.transition(Phase::Progressing, "resumed", fx);
                match (reason, self.wait) {
                    // Before `Done`: an inconclusive run also left the step `Done`.
                    (Some(PauseReason::Inconclusive(_)), _) => self.start_analysis(fx),
                    (Some(PauseReason::Step), _) | (_, Some(Wait::Done)) => {
                        self.advance(steps, now, fx)
                    }
                    (
                        Some(PauseReason::User {
                            remaining: Some(left),
                        }),
                        Some(Wait::Until(_)),
                    ) => {
                        self.wait = Some(Wait::Until(now.saturating_add(left)));
                    }
                    // Still waiting for a weight or an analysis: keep waiting.
                    _ => {}
                }
            }
            Action::Promote | Action::PromoteFull => {
                if !matches!(self.phase, Phase::Progressing | Phase::Paused) {
                    return Err(reject(
                        "only a progressing or paused rollout can be promoted",
                    ));
                }
                if self.step >= steps.len() {
                    return Err(reject("every step is done; the rollout is finishing"));
                }
                if self.wait == Some(Wait::Analysis) {
                    fx.push(Effect::CancelAnalysis {
                        run: self.analysis_run,
                    });
                }
                if self.phase == Phase::Paused {
                    self.paused = None;
                    self.transition(Phase::Progressing, "promoted", fx);
                }
                if action == Action::PromoteFull {
                    self.message = "promoted to 100 %, remaining steps skipped".into();
                    self.step = steps.len();
                    self.enter_step(steps, now, fx);
                } else {
                    self.advance(steps, now, fx);
                }
            }
            Action::Abort => {
                if self.phase.is_terminal() || matches!(self.phase, Phase::Sealed) {
                    return Err(reject("the rollout has already ended"));
                }
                self.begin_abort(now, "aborted by user".into(), fx);
            }
            Action::Retry => match (self.phase, &self.abort) {
                (p, Some(a)) if p.is_backing_out() && a.is_done() && !self.replaying() => {
                    // From the start: inputs and the gate are evaluated again, so a retry cannot
                    // send traffic to a canary that never passed the gate.
                    self.abort = None;
                    self.paused = None;
                    self.background_started = false;
                    // A new attempt arms a new envelope before its own 100 %.
                    self.rollback = RollbackProgress::default();
                    self.attempt += 1;
                    // Weight 0 was the last published (the back-out); a forced stop may have
                    // left it unconfirmed, and a stale weight must not let a step be skipped.
                    self.canary_weight = 0;
                    self.step = 0;
                    self.wait = None;
                    self.transition(Phase::Pending, "retry from the start", fx);
                    self.message = "materializing inputs".into();
                    fx.push(Effect::MaterializeInputs);
                }
                (p, _) if p.is_backing_out() => {
                    return Err(reject(
                        "the canary is still being drained or the rollback replayed",
                    ))
                }
                _ => {
                    return Err(reject(
                        "only an aborted or rolled-back rollout can be retried",
                    ))
                }
            },
            Action::Rerun => {
                if !matches!(self.phase, Phase::Progressing | Phase::Paused) {
                    return Err(reject(
                        "only a progressing or paused rollout can re-run its step",
                    ));
                }
                if !matches!(steps.get(self.step), Some(Step::Analysis(_))) {
                    return Err(reject(
                        "the current step is not an analysis; only an analysis step is re-run",
                    ));
                }
                if self.wait == Some(Wait::Analysis) {
                    fx.push(Effect::CancelAnalysis {
                        run: self.analysis_run,
                    });
                }
                if self.phase == Phase::Paused {
                    self.paused = None;
                    self.transition(Phase::Progressing, "re-running the step's analysis", fx);
                }
                self.message = format!("step {}: analysis running again (re-run)", self.step);
                self.start_analysis(fx);
            }
            Action::Approve => {
                if self.phase != Phase::AwaitingApproval {
                    return Err(reject("the rollout is not waiting for approval"));
                }
                self.transition(Phase::Progressing, "approved", fx);
                self.enter_step(steps, now, fx);
            }
            Action::Rollback => {
                if self.phase.is_backing_out() {
                    return Err(reject("the rollout is already backing out"));
                }
                if !self.rollback.armed {
                    return Err(reject(
                        "no rollback envelope is armed (it is armed before the canary gets \
                         100 %); use abort to take the canary out",
                    ));
                }
                self.roll_back(now, "rollback requested by user".into(), fx);
            }
        }
        Ok(())
    }

    /// Starts the current step (or, past the last one, the finish). Every step kind waits for
    /// something, so this never moves more than one step.
    fn enter_step(&mut self, steps: &Recipe, now: Millis, fx: &mut Vec<Effect>) {
        if let Some(from) = steps.background_from {
            if !self.background_started && self.step >= from && self.step < steps.len() {
                self.background_started = true;
                self.background_runs += 1;
                let run = BACKGROUND_RUNS + self.background_runs;
                self.background = Some(run);
                fx.push(Effect::StartAnalysis {
                    step: BACKGROUND_STEP,
                    run,
                });
            }
        }
        let Some(step) = steps.get(self.step) else {
            // Every step done: the canary takes all traffic, then the rollout finishes.
            if self.canary_weight == 100 {
                self.wait = None;
                self.finish(steps, fx);
            } else {
                self.publish_weight(100, fx);
            }
            return;
        };
        match step {
            // Published even when it equals the weight applied last: a newer weight may be in
            // flight to the proxies (promote skipped past it), or a forced abort may have left
            // them at another one. Publishing a table again is harmless.
            Step::SetWeight(w) => {
                self.message = format!("step {}: setting canary weight {w} %", self.step);
                self.publish_weight(*w, fx);
            }
            Step::Pause(Some(d)) => {
                let until = now.saturating_add(millis(*d));
                self.wait = Some(Wait::Until(until));
                self.message = format!(
                    "step {}: pausing {}",
                    self.step,
                    humantime::format_duration(*d)
                );
            }
            Step::Pause(None) => {
                self.wait = Some(Wait::Resume);
                self.paused = Some(PauseReason::Step);
                self.message = format!("step {}: paused until resume or promote", self.step);
                self.transition(Phase::Paused, "pause step", fx);
            }
            Step::Analysis(_) => {
                self.message = format!("step {}: analysis running", self.step);
                self.start_analysis(fx);
            }
        }
    }

    /// Publishes a canary weight, arming the rollback envelope first when it is 100 %.
    fn publish_weight(&mut self, w: u8, fx: &mut Vec<Effect>) {
        if w == 100 && !self.rollback.armed {
            self.wait = Some(Wait::Arming(w));
            self.message = format!("arming the rollback envelope before {w} %");
            fx.push(Effect::ArmRollback);
        } else {
            self.wait = Some(Wait::Weight(w));
            fx.push(Effect::SetCanaryWeight(w));
        }
    }

    fn rollback_armed(&mut self, fx: &mut Vec<Effect>) {
        if !matches!(self.phase, Phase::Progressing | Phase::Paused) {
            return; // backed out meanwhile: nothing to arm for
        }
        self.rollback.armed = true;
        if let Some(Wait::Arming(w)) = self.wait {
            self.wait = Some(Wait::Weight(w));
            self.message = format!("rollback envelope armed; setting canary weight {w} %");
            fx.push(Effect::SetCanaryWeight(w));
        }
    }

    fn replaying(&self) -> bool {
        self.rollback
            .replay
            .as_ref()
            .is_some_and(|r| r.done_at.is_none())
    }

    /// Decides a rollback: the envelope is verified, then weight 0 goes out (the abort's
    /// back-out path); the migration and flag follow in [`Self::continue_rollback`].
    fn roll_back(&mut self, now: Millis, reason: String, fx: &mut Vec<Effect>) {
        self.rollback.replay = Some(ReplayProgress {
            decided_at: now,
            reason: reason.clone(),
            verified: None,
            migration: Migration::Pending,
            flag: None,
            done_at: None,
        });
        fx.push(Effect::VerifyRollback);
        self.back_out(now, reason, Phase::RolledBack, fx);
    }

    fn rollback_verified(&mut self, now: Millis, problem: Option<String>, fx: &mut Vec<Effect>) {
        let Some(r) = self
            .rollback
            .replay
            .as_mut()
            .filter(|r| r.verified.is_none())
        else {
            return;
        };
        let ok = problem.is_none();
        if let Some(why) = problem {
            // Traffic still goes back (that needs no envelope); what only the envelope
            // authorizes (the migration command, the flag) does not run.
            r.migration = Migration::Skipped(format!("the envelope failed verification: {why}"));
            r.verified = Some(Err(why));
        } else {
            r.verified = Some(Ok(()));
        }
        if ok {
            self.continue_rollback(now, fx);
        }
        // Ends the replay when there is nothing left to run (refused, or skipped meanwhile).
        self.rollback_done(now, None);
    }

    /// Starts the down-migration once the envelope is verified and every proxy is on the
    /// previous version. The start is committed with this transition: a crash after it never
    /// runs the command a second time.
    fn continue_rollback(&mut self, now: Millis, fx: &mut Vec<Effect>) {
        let at_zero = self.abort.as_ref().is_some_and(|a| a.zero_at.is_some());
        if let Some(r) = self.rollback.replay.as_mut() {
            if at_zero && r.verified == Some(Ok(())) && r.migration == Migration::Pending {
                r.migration = Migration::Started(now);
                self.message = "rolling back: previous version on every proxy; running the \
                                down-migration"
                    .into();
                fx.push(Effect::RunDownMigration);
            }
        }
    }

    fn rollback_done(&mut self, now: Millis, flag: Option<String>) {
        let rto = self.abort.as_ref().and_then(|a| a.abort_to_zero_ms());
        let Some(r) = self
            .rollback
            .replay
            .as_mut()
            .filter(|r| r.done_at.is_none())
        else {
            return;
        };
        if !matches!(
            r.migration,
            Migration::Finished { .. } | Migration::Skipped(_)
        ) {
            return;
        }
        r.done_at = Some(now);
        r.flag = flag;
        let migration = match &r.migration {
            Migration::Finished { ok: true, .. } => "down-migration done".to_string(),
            Migration::Finished { detail, .. } => format!("down-migration FAILED: {detail}"),
            Migration::Skipped(why) => format!("down-migration not run: {why}"),
            _ => String::new(),
        };
        self.message = format!(
            "rolled back: {}; previous version on every proxy in {} ms; envelope replayed in {} ms; {migration}",
            r.reason,
            rto.map_or("?".into(), |t| t.to_string()),
            now.saturating_sub(r.decided_at),
        );
    }

    fn start_analysis(&mut self, fx: &mut Vec<Effect>) {
        self.analysis_run += 1;
        self.wait = Some(Wait::Analysis);
        fx.push(Effect::StartAnalysis {
            step: self.step,
            run: self.analysis_run,
        });
    }

    fn advance(&mut self, steps: &Recipe, now: Millis, fx: &mut Vec<Effect>) {
        self.step = (self.step + 1).min(steps.len());
        self.enter_step(steps, now, fx);
    }

    /// The current step finished: move on now, or, while paused, on resume.
    fn step_done(&mut self, steps: &Recipe, now: Millis, fx: &mut Vec<Effect>) {
        if self.phase == Phase::Paused {
            self.wait = Some(Wait::Done);
        } else {
            self.advance(steps, now, fx);
        }
    }

    fn weight_applied(&mut self, steps: &Recipe, now: Millis, weight: u8, fx: &mut Vec<Effect>) {
        if self.phase.is_backing_out() {
            if weight == 0 {
                if let Some(a) = self.abort.as_mut().filter(|a| a.zero_at.is_none()) {
                    a.zero_at = Some(now);
                    self.canary_weight = 0;
                    self.message = "canary at 0 % on every proxy; draining".into();
                    fx.push(Effect::WatchDrain);
                    self.continue_rollback(now, fx);
                }
            }
            return;
        }
        if !matches!(self.phase, Phase::Progressing | Phase::Paused) {
            return;
        }
        self.canary_weight = weight;
        if self.wait != Some(Wait::Weight(weight)) {
            return; // a superseded weight (promote moved on before it applied)
        }
        if self.step >= steps.len() && self.phase == Phase::Progressing {
            self.wait = None;
            self.finish(steps, fx);
        } else {
            // Paused during the final push too: finishing waits for resume.
            self.step_done(steps, now, fx);
        }
    }

    fn analysis_completed(
        &mut self,
        steps: &Recipe,
        now: Millis,
        run: u64,
        verdict: Verdict,
        message: String,
        fx: &mut Vec<Effect>,
    ) {
        if self.background == Some(run) {
            self.background = None;
            let live = matches!(self.phase, Phase::Progressing | Phase::Paused);
            match verdict {
                _ if !live => {}
                Verdict::Successful => {}
                Verdict::Failed | Verdict::Error => self.begin_abort(
                    now,
                    format!("background analysis {verdict:?}: {message}"),
                    fx,
                ),
                Verdict::Inconclusive => {
                    // Paused; a new background run starts with the next step after resume.
                    self.background_started = false;
                    let reason = format!("background analysis inconclusive: {message}");
                    if self.phase == Phase::Progressing {
                        let remaining = match self.wait {
                            Some(Wait::Until(t)) => Some(t.saturating_sub(now)),
                            _ => None,
                        };
                        self.paused = Some(PauseReason::User { remaining });
                        self.transition(Phase::Paused, &reason, fx);
                    }
                    self.message = reason;
                }
            }
            return;
        }
        let live = matches!(
            self.phase,
            Phase::Progressing | Phase::Paused | Phase::PostDeployVerify
        );
        if !live || run != self.analysis_run || self.wait != Some(Wait::Analysis) {
            return; // a run that was cancelled, or belongs to a step already left
        }
        let step = self.step;
        if self.phase == Phase::PostDeployVerify {
            // The new version holds all traffic: it passes, or it is taken out. Inconclusive
            // is not a pass.
            self.wait = None;
            match verdict {
                Verdict::Successful => self.seal(fx),
                other => {
                    let reason = format!("post-deploy verification {other:?}: {message}");
                    if self.rollback.armed {
                        self.roll_back(now, reason, fx);
                    } else {
                        // A state stored before envelopes existed.
                        self.back_out(now, reason, Phase::RolledBack, fx);
                    }
                }
            }
            return;
        }
        match verdict {
            Verdict::Successful => self.step_done(steps, now, fx),
            Verdict::Failed | Verdict::Error => self.begin_abort(
                now,
                format!("analysis {verdict:?} at step {step}: {message}"),
                fx,
            ),
            Verdict::Inconclusive => {
                self.wait = Some(Wait::Done);
                let reason = format!("analysis inconclusive at step {step}: {message}");
                self.paused = Some(PauseReason::Inconclusive(reason.clone()));
                if self.phase != Phase::Paused {
                    self.transition(Phase::Paused, &reason, fx);
                }
                self.message = reason;
            }
        }
    }

    fn tick(&mut self, steps: &Recipe, now: Millis, fx: &mut Vec<Effect>) {
        match (self.phase, self.wait) {
            (Phase::Progressing, Some(Wait::Until(t))) if now >= t => self.advance(steps, now, fx),
            (p, _) if p.is_backing_out() => {
                if let Some(a) = &self.abort {
                    if !a.is_done() && now >= a.decided_at + ABORT_DEADLINE {
                        fx.push(Effect::ForceCloseCanary);
                        self.finish_abort(now, true, fx);
                    }
                }
            }
            _ => {}
        }
    }

    /// Once the rollback envelope is armed (the canary is getting or has 100 %), taking the
    /// canary out is a rollback: the envelope's migration and flag must be undone too.
    fn begin_abort(&mut self, now: Millis, reason: String, fx: &mut Vec<Effect>) {
        if self.rollback.armed {
            self.roll_back(now, reason, fx);
        } else {
            self.back_out(now, reason, Phase::Aborted, fx);
        }
    }

    /// Weight 0 now; drain and stop follow (`Aborted`, or `RolledBack` after a failed
    /// post-deploy verification).
    fn stop_background(&mut self, fx: &mut Vec<Effect>) {
        if let Some(run) = self.background.take() {
            fx.push(Effect::CancelAnalysis { run });
        }
    }

    fn back_out(&mut self, now: Millis, reason: String, to: Phase, fx: &mut Vec<Effect>) {
        self.stop_background(fx);
        if self.wait == Some(Wait::Analysis) {
            fx.push(Effect::CancelAnalysis {
                run: self.analysis_run,
            });
        }
        self.wait = None;
        self.paused = None;
        self.abort = Some(AbortProgress {
            decided_at: now,
            reason: reason.clone(),
            zero_at: None,
            drained_at: None,
            forced: false,
        });
        self.transition(to, &reason, fx);
        self.message = format!("{}: {reason}", backing_out(to, false));
        fx.push(Effect::SetCanaryWeight(0));
    }

    fn finish_abort(&mut self, now: Millis, forced: bool, fx: &mut Vec<Effect>) {
        if !self.phase.is_backing_out() {
            return;
        }
        let phase = self.phase;
        let Some(a) = self.abort.as_mut() else { return };
        // Drained only counts once weight 0 is applied everywhere (before that, new requests
        // could still arrive); the deadline forces it regardless.
        if a.is_done() || (!forced && a.zero_at.is_none()) {
            return;
        }
        a.drained_at = Some(now);
        a.forced = forced;
        let unconfirmed = a.zero_at.is_none();
        self.message = format!(
            "{}: {}; canary stopped{}",
            backing_out(phase, true),
            a.reason,
            if forced { " at the deadline" } else { "" }
        );
        fx.push(Effect::StopCanary);
        // The migration needs the previous version on every proxy; without that confirmed by
        // the deadline it does not run, and the replay ends here rather than wait forever.
        if let Some(r) = self.rollback.replay.as_mut() {
            if unconfirmed && r.migration == Migration::Pending {
                r.migration = Migration::Skipped(
                    "weight 0 was not confirmed by every proxy before the deadline".into(),
                );
                if r.verified.is_some() {
                    self.rollback_done(now, None);
                }
            }
        }
    }

    /// All steps done and 100 % applied everywhere: verify (when the recipe has a
    /// post-deploy analysis, run as "step" `steps.len()`), then seal.
    fn finish(&mut self, steps: &Recipe, fx: &mut Vec<Effect>) {
        self.stop_background(fx);
        self.transition(Phase::PostDeployVerify, "canary at 100 %", fx);
        if steps.verify {
            self.message = "post-deploy verification running".into();
            self.start_analysis(fx);
        } else {
            self.seal(fx);
        }
    }

    fn seal(&mut self, fx: &mut Vec<Effect>) {
        // Sealing signs the evidence once it exists (evidence issue); the checkpoint is here.
        self.transition(Phase::Sealed, "post-deploy verification passed", fx);
        fx.push(Effect::PromoteCanaryToStable);
        self.transition(Phase::Completed, "canary promoted to stable", fx);
        self.message = "completed".into();
    }

    fn transition(&mut self, to: Phase, reason: &str, fx: &mut Vec<Effect>) {
        fx.push(Effect::Checkpoint {
            from: self.phase,
            to,
            reason: reason.to_string(),
        });
        self.phase = to;
    }
}

fn backing_out(phase: Phase, done: bool) -> &'static str {
    match (phase, done) {
        (Phase::RolledBack, false) => "rolling back",
        (Phase::RolledBack, true) => "rolled back",
        (_, false) => "aborting",
        (_, true) => "aborted",
    }
}

/// A duration in milliseconds, saturating (a pause of a billion years is just very long).
pub fn millis(d: std::time::Duration) -> Millis {
    Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX)
}

/// Recomputes a rollout's state from its recorded inputs, from the start. The state machine is
/// deterministic, so this must equal the state stored after the last input: a store checks
/// itself with it, and an auditor can re-run a rollout's history with it.
pub fn replay(
    steps: &Recipe,
    inputs: impl IntoIterator<Item = (Millis, Input)>,
) -> Result<RolloutState, Rejected> {
    let (mut state, _) = RolloutState::new();
    for (now, input) in inputs {
        state.apply(steps, now, input)?;
    }
    Ok(state)
}

#[cfg(test)]
mod tests;
