use std::collections::VecDeque;
use std::time::Duration;

use super::*;
use crate::spec::{AnalysisStep, Step, TemplateRef};

fn analysis() -> Step {
    Step::Analysis(AnalysisStep {
        templates: vec![TemplateRef {
            template_name: "canary-slo".into(),
        }],
        args: vec![],
    })
}

fn pause(secs: u64) -> Step {
    Step::Pause(Some(Duration::from_secs(secs)))
}

/// The spec's default recipe: 5 → 25 → 50 → 100 with 3-minute pauses and analysis.
fn default_recipe() -> Vec<Step> {
    let mut steps = Vec::new();
    for w in [5, 25, 50] {
        steps.extend([Step::SetWeight(w), pause(180), analysis()]);
    }
    steps.extend([Step::SetWeight(100), pause(180)]);
    steps
}

/// A driver stand-in: answers every effect the way the real driver will (weights apply,
/// analyses return the scripted verdict, drains complete) and ticks at deadlines.
struct Sim {
    steps: Recipe,
    state: RolloutState,
    now: Millis,
    effects: Vec<Effect>,
    queue: VecDeque<Input>,
    verdict: fn(usize) -> Verdict,
    gate: (bool, bool),
    drains: bool,
}

impl Sim {
    fn new(steps: Vec<Step>) -> Sim {
        let (state, fx) = RolloutState::new();
        let mut sim = Sim {
            steps: Recipe::new(steps),
            state,
            now: 1_000,
            effects: Vec::new(),
            queue: VecDeque::new(),
            verdict: |_| Verdict::Successful,
            gate: (true, false),
            drains: true,
        };
        sim.react(fx);
        sim
    }

    fn react(&mut self, fx: Vec<Effect>) {
        for e in fx {
            match &e {
                Effect::MaterializeInputs => self.queue.push_back(Input::InputsMaterialized),
                Effect::EvaluateGate => self.queue.push_back(Input::GateEvaluated {
                    passed: self.gate.0,
                    needs_approval: self.gate.1,
                    reason: "policy".into(),
                    provenance: None,
                }),
                Effect::SetCanaryWeight(w) => {
                    self.queue.push_back(Input::WeightApplied { weight: *w })
                }
                Effect::ArmRollback => self.queue.push_back(Input::RollbackArmed),
                Effect::VerifyRollback => self
                    .queue
                    .push_back(Input::RollbackVerified { problem: None }),
                Effect::RunDownMigration => self.queue.push_back(Input::MigrationFinished {
                    ok: true,
                    detail: "ran".into(),
                }),
                Effect::DisableFlag => self.queue.push_back(Input::FlagDisabled {
                    detail: "no-op".into(),
                }),
                Effect::StartAnalysis { step, run } => {
                    self.queue.push_back(Input::AnalysisCompleted {
                        run: *run,
                        verdict: (self.verdict)(*step),
                        message: "scripted".into(),
                    })
                }
                Effect::WatchDrain if self.drains => self.queue.push_back(Input::CanaryDrained),
                _ => {}
            }
            self.effects.push(e);
        }
    }

    fn send(&mut self, input: Input) -> Result<(), Rejected> {
        let fx = self.state.apply(&self.steps, self.now, input)?;
        self.react(fx);
        Ok(())
    }

    /// Delivers one queued input (100 ms after the last) or, with none queued, ticks at the
    /// next deadline. False when there is nothing left to do.
    fn step_once(&mut self) -> bool {
        if let Some(input) = self.queue.pop_front() {
            self.now += 100;
            self.send(input).unwrap();
        } else if let Some(t) = self.state.next_deadline() {
            self.now = self.now.max(t);
            self.send(Input::Tick).unwrap();
        } else {
            return false;
        }
        true
    }

    fn settle(&mut self) {
        for _ in 0..1_000 {
            if !self.step_once() {
                return;
            }
        }
        panic!("rollout did not settle: {:?}", self.state);
    }

    fn act(&mut self, a: Action) -> Result<(), Rejected> {
        self.send(Input::Action(a))
    }

    fn weights(&self) -> Vec<u8> {
        self.effects
            .iter()
            .filter_map(|e| match e {
                Effect::SetCanaryWeight(w) => Some(*w),
                _ => None,
            })
            .collect()
    }

    fn checkpoints(&self) -> Vec<Phase> {
        self.effects
            .iter()
            .filter_map(|e| match e {
                Effect::Checkpoint { to, .. } => Some(*to),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn default_recipe_goes_5_25_50_100_through_every_checkpoint() {
    let mut sim = Sim::new(default_recipe());
    sim.settle();
    assert_eq!(sim.state.phase, Phase::Completed);
    assert_eq!(sim.weights(), vec![5, 25, 50, 100]);
    use Phase::*;
    assert_eq!(
        sim.checkpoints(),
        vec![
            InputsMaterialized,
            GateEval,
            Progressing,
            PostDeployVerify,
            Sealed,
            Completed
        ]
    );
    let analyses = sim
        .effects
        .iter()
        .filter(|e| matches!(e, Effect::StartAnalysis { .. }))
        .count();
    assert_eq!(analyses, 3);
    assert!(sim.effects.contains(&Effect::PromoteCanaryToStable));
    // Four 3-minute pauses: the recipe takes 12 minutes (plus the simulated 100 ms hops).
    assert!(
        (720_000..730_000).contains(&(sim.now - 1_000)),
        "took {} ms",
        sim.now - 1_000
    );
}

#[test]
fn a_failed_analysis_aborts_to_zero_then_drains_then_stops_the_canary() {
    let mut sim = Sim::new(default_recipe());
    sim.verdict = |step| {
        if step == 5 {
            Verdict::Failed
        } else {
            Verdict::Successful
        }
    };
    sim.settle();
    assert_eq!(sim.state.phase, Phase::Aborted);
    assert_eq!(sim.weights(), vec![5, 25, 0]);
    assert_eq!(sim.state.canary_weight, 0);
    let a = sim.state.abort.clone().unwrap();
    assert!(a.reason.contains("Failed at step 5"), "{}", a.reason);
    // Decision → weight 0 applied: one hop; → drained: two hops (100 ms each in the sim).
    assert_eq!((a.abort_to_zero_ms(), a.drain_ms()), (Some(100), Some(200)));
    assert!(!a.forced);
    let tail: Vec<_> = sim.effects.iter().rev().take(3).cloned().collect();
    assert_eq!(tail[0], Effect::StopCanary);
    assert!(tail.contains(&Effect::WatchDrain));
}

#[test]
fn an_error_verdict_aborts_too() {
    let mut sim = Sim::new(default_recipe());
    sim.verdict = |_| Verdict::Error;
    sim.settle();
    assert_eq!(sim.state.phase, Phase::Aborted);
    assert_eq!(sim.weights(), vec![5, 0]);
}

#[test]
fn abort_forces_the_canary_down_at_the_deadline() {
    let mut sim = Sim::new(default_recipe());
    sim.drains = false; // a proxy never reports 0 in flight
    sim.verdict = |_| Verdict::Failed;
    sim.settle();
    let a = sim.state.abort.clone().unwrap();
    assert!(a.forced);
    assert_eq!(a.drain_ms(), Some(ABORT_DEADLINE));
    assert!(sim.effects.contains(&Effect::ForceCloseCanary));
    assert_eq!(sim.effects.last(), Some(&Effect::StopCanary));
}

#[test]
fn drained_before_zero_is_applied_does_not_count() {
    let mut sim = Sim::new(vec![Step::SetWeight(50), Step::Pause(None)]);
    sim.settle();
    sim.queue.clear();
    sim.act(Action::Abort).unwrap();
    sim.queue.clear(); // hold back the WeightApplied(0)
    sim.send(Input::CanaryDrained).unwrap();
    assert!(sim.state.abort.as_ref().unwrap().drained_at.is_none());
    sim.send(Input::WeightApplied { weight: 0 }).unwrap();
    sim.settle();
    assert!(sim.state.abort.as_ref().unwrap().is_done());
}

#[test]
fn inconclusive_pauses_resume_reruns_promote_skips() {
    let mut sim = Sim::new(vec![Step::SetWeight(10), analysis(), Step::SetWeight(20)]);
    sim.verdict = |_| Verdict::Inconclusive;
    sim.settle();
    assert_eq!(sim.state.phase, Phase::Paused);
    assert!(matches!(
        sim.state.paused,
        Some(PauseReason::Inconclusive(_))
    ));
    sim.act(Action::Resume).unwrap();
    sim.settle();
    let runs = sim
        .effects
        .iter()
        .filter(|e| matches!(e, Effect::StartAnalysis { step: 1, .. }))
        .count();
    assert_eq!(runs, 2, "resume runs the analysis again");
    assert_eq!(sim.state.phase, Phase::Paused);
    sim.act(Action::Promote).unwrap();
    sim.settle();
    assert_eq!(sim.state.phase, Phase::Completed);
    assert_eq!(sim.weights(), vec![10, 20, 100]);
}

#[test]
fn an_indefinite_pause_waits_for_resume() {
    let mut sim = Sim::new(vec![
        Step::SetWeight(5),
        Step::Pause(None),
        Step::SetWeight(50),
    ]);
    sim.settle();
    assert_eq!((sim.state.phase, sim.state.step), (Phase::Paused, 1));
    assert_eq!(sim.state.next_deadline(), None);
    sim.act(Action::Resume).unwrap();
    sim.settle();
    assert_eq!(sim.state.phase, Phase::Completed);
    assert_eq!(sim.weights(), vec![5, 50, 100]);
}

#[test]
fn a_user_pause_freezes_the_remaining_pause_time() {
    let mut sim = Sim::new(vec![Step::SetWeight(5), pause(60), Step::SetWeight(50)]);
    for _ in 0..4 {
        // deliver everything but do not tick: the rollout sits in its 60 s pause
        while let Some(i) = sim.queue.pop_front() {
            sim.now += 100;
            sim.send(i).unwrap();
        }
    }
    let until = sim.state.next_deadline().unwrap();
    sim.now = until - 20_000; // 40 s into the pause
    sim.act(Action::Pause).unwrap();
    assert_eq!(
        sim.state.next_deadline(),
        None,
        "a paused rollout sets no timer"
    );
    sim.now += 3_600_000; // an hour later
    sim.act(Action::Resume).unwrap();
    assert_eq!(sim.state.next_deadline(), Some(sim.now + 20_000));
    sim.settle();
    assert_eq!(sim.state.phase, Phase::Completed);
}

#[test]
fn a_weight_applied_while_paused_advances_on_resume() {
    let mut sim = Sim::new(vec![Step::SetWeight(5), Step::SetWeight(25)]);
    // Materialize, gate, publish 5: then pause before the 5 % is acknowledged.
    for _ in 0..2 {
        let i = sim.queue.pop_front().unwrap();
        sim.send(i).unwrap();
    }
    assert_eq!(sim.state.wait, Some(Wait::Weight(5)));
    sim.act(Action::Pause).unwrap();
    sim.settle();
    assert_eq!(
        (sim.state.phase, sim.state.wait, sim.state.canary_weight),
        (Phase::Paused, Some(Wait::Done), 5)
    );
    sim.act(Action::Resume).unwrap();
    sim.settle();
    assert_eq!(sim.weights(), vec![5, 25, 100]);
    assert_eq!(sim.state.phase, Phase::Completed);
}

#[test]
fn promote_skips_a_running_analysis_and_ignores_its_late_verdict() {
    let mut sim = Sim::new(vec![Step::SetWeight(5), analysis(), Step::Pause(None)]);
    sim.verdict = |_| Verdict::Failed;
    while !matches!(sim.queue.front(), Some(Input::AnalysisCompleted { .. })) {
        let i = sim.queue.pop_front().unwrap();
        sim.send(i).unwrap();
    }
    sim.act(Action::Promote).unwrap();
    assert!(sim
        .effects
        .iter()
        .any(|e| matches!(e, Effect::CancelAnalysis { .. })));
    sim.settle(); // the queued Failed verdict for step 1 arrives late
    assert_eq!(
        sim.state.phase,
        Phase::Paused,
        "late verdict ignored; now at the pause step"
    );
    assert_eq!(sim.state.step, 2);
}

#[test]
fn promote_full_goes_straight_to_100() {
    let mut sim = Sim::new(default_recipe());
    sim.gate = (true, true);
    sim.settle();
    assert_eq!(sim.state.phase, Phase::AwaitingApproval);
    sim.act(Action::Approve).unwrap();
    let i = sim.queue.pop_front().unwrap();
    sim.send(i).unwrap(); // 5 % applied, now in the first pause
    sim.act(Action::PromoteFull).unwrap();
    sim.settle();
    assert_eq!(sim.weights(), vec![5, 100]);
    assert_eq!(sim.state.phase, Phase::Completed);
}

#[test]
fn a_failed_gate_ends_the_rollout_before_traffic_and_retry_starts_over() {
    let mut sim = Sim::new(default_recipe());
    sim.gate = (false, false);
    sim.settle();
    assert_eq!(sim.state.phase, Phase::Aborted);
    assert!(sim.weights().is_empty(), "no weight was ever published");
    assert!(sim
        .state
        .abort
        .as_ref()
        .unwrap()
        .reason
        .contains("gate failed"));
    // Retry starts over through the gate: still failing, still no traffic.
    sim.act(Action::Retry).unwrap();
    sim.settle();
    assert_eq!(sim.state.phase, Phase::Aborted);
    assert!(sim.weights().is_empty(), "retry must not skip the gate");
    // Once the gate passes, the retry runs the recipe.
    sim.gate = (true, false);
    sim.act(Action::Retry).unwrap();
    sim.settle();
    assert_eq!(sim.state.phase, Phase::Completed);
}

#[test]
fn a_pause_during_the_final_push_holds_the_finish() {
    let mut sim = Sim::new(vec![Step::SetWeight(50)]);
    sim.settle();
    assert_eq!(sim.state.phase, Phase::Completed);
    let mut sim = Sim::new(vec![Step::SetWeight(50)]);
    while sim.state.wait != Some(Wait::Weight(100)) {
        assert!(sim.step_once());
    }
    sim.act(Action::Pause).unwrap();
    sim.settle(); // 100 % applies while paused
    assert_eq!(
        (sim.state.phase, sim.state.canary_weight),
        (Phase::Paused, 100)
    );
    assert!(!sim.effects.contains(&Effect::PromoteCanaryToStable));
    sim.act(Action::Resume).unwrap();
    assert_eq!(sim.state.phase, Phase::Completed);
}

#[test]
fn a_late_verdict_from_before_a_retry_is_ignored() {
    let mut sim = Sim::new(vec![Step::SetWeight(5), analysis(), Step::Pause(None)]);
    sim.verdict = |_| Verdict::Successful;
    while !matches!(sim.queue.front(), Some(Input::AnalysisCompleted { .. })) {
        assert!(sim.step_once());
    }
    let stale = sim.queue.pop_front().unwrap(); // run 1's verdict, delayed
    sim.act(Action::Abort).unwrap();
    sim.settle();
    sim.act(Action::Retry).unwrap();
    while !matches!(sim.queue.front(), Some(Input::AnalysisCompleted { .. })) {
        assert!(sim.step_once());
    }
    sim.queue.clear(); // run 2 is still measuring...
    sim.send(stale).unwrap(); // ...when run 1's Successful finally arrives
    assert_eq!(
        (sim.state.step, sim.state.wait),
        (1, Some(Wait::Analysis)),
        "run 1 must not pass run 2"
    );
}

/// Drives a fresh rollout into each resting phase.
fn in_phase(phase: &str) -> Sim {
    let steps = vec![Step::SetWeight(5), pause(60), Step::Pause(None)];
    let mut sim = Sim::new(steps);
    match phase {
        "Pending" => sim.queue.clear(),
        "GateEval" => {
            let i = sim.queue.pop_front().unwrap();
            sim.send(i).unwrap();
            sim.queue.clear();
        }
        "AwaitingApproval" => {
            sim.gate = (true, true);
            sim.settle();
        }
        "Progressing" => {
            while sim.state.wait != Some(Wait::Until(sim.state.next_deadline().unwrap_or(0))) {
                let i = sim.queue.pop_front().unwrap();
                sim.now += 100;
                sim.send(i).unwrap();
            }
        }
        "Paused" => sim.settle(),
        "Completed" => {
            sim.settle();
            sim.act(Action::Resume).unwrap();
            sim.settle();
        }
        "Aborting" => {
            sim.settle();
            sim.act(Action::Abort).unwrap();
            sim.queue.clear();
        }
        "Aborted" => {
            sim.settle();
            sim.act(Action::Abort).unwrap();
            sim.settle();
        }
        other => unreachable!("{other}"),
    }
    sim
}

#[test]
fn every_action_in_every_phase() {
    use Action::*;
    let table: [(&str, Phase, &[Action]); 8] = [
        ("Pending", Phase::Pending, &[Abort]),
        ("GateEval", Phase::GateEval, &[Abort]),
        (
            "AwaitingApproval",
            Phase::AwaitingApproval,
            &[Approve, Abort],
        ),
        (
            "Progressing",
            Phase::Progressing,
            &[Pause, Promote, PromoteFull, Abort],
        ),
        (
            "Paused",
            Phase::Paused,
            &[Resume, Promote, PromoteFull, Abort],
        ),
        ("Completed", Phase::Completed, &[Rollback]),
        ("Aborting", Phase::Aborted, &[]),
        ("Aborted", Phase::Aborted, &[Retry]),
    ];
    for (name, phase, legal) in table {
        let sim = in_phase(name);
        assert_eq!(
            sim.state.allowed_actions(&sim.steps, sim.now),
            Action::ALL
                .into_iter()
                .filter(|a| legal.contains(a))
                .collect::<Vec<_>>(),
            "allowed_actions in {name}"
        );
        for action in Action::ALL {
            let mut sim = in_phase(name);
            assert_eq!(sim.state.phase, phase, "{name}");
            let before = sim.state.clone();
            let result = sim.act(action);
            if legal.contains(&action) {
                assert!(
                    result.is_ok(),
                    "{action:?} in {name} should be legal: {result:?}"
                );
            } else {
                let err = result.expect_err(&format!("{action:?} in {name} should be rejected"));
                assert_eq!((err.action, err.phase), (action, phase));
                assert!(!err.reason.is_empty());
                assert_eq!(sim.state, before, "a rejected action changed the state");
            }
        }
    }
}

#[test]
fn abort_from_every_live_phase_publishes_zero() {
    for name in [
        "Pending",
        "GateEval",
        "AwaitingApproval",
        "Progressing",
        "Paused",
    ] {
        let mut sim = in_phase(name);
        sim.act(Action::Abort).unwrap();
        assert_eq!(sim.state.phase, Phase::Aborted, "{name}");
        assert_eq!(sim.weights().last(), Some(&0), "{name}");
        sim.settle();
        assert!(sim.state.abort.as_ref().unwrap().is_done(), "{name}");
    }
}

#[test]
fn the_same_inputs_give_the_same_transitions() {
    let run = || {
        let mut sim = Sim::new(default_recipe());
        sim.verdict = |step| {
            if step == 8 {
                Verdict::Failed
            } else {
                Verdict::Successful
            }
        };
        sim.settle();
        (sim.state, sim.effects, sim.now)
    };
    assert_eq!(run(), run());
}

#[test]
fn a_state_restored_from_the_store_continues_identically() {
    let mut a = Sim::new(default_recipe());
    for _ in 0..9 {
        assert!(a.step_once());
    }
    assert_eq!(a.state.phase, Phase::Progressing);
    assert!(
        (1..100).contains(&a.state.canary_weight),
        "mid-rollout: {:?}",
        a.state
    );
    // "kill -9" here: the store has the state as JSON; a new process reloads it.
    let stored = serde_json::to_string(&a.state).unwrap();
    let mut b = Sim::new(default_recipe());
    b.state = serde_json::from_str(&stored).unwrap();
    b.now = a.now;
    // The crash lost the in-memory effects: the restarted driver asks the state what it waits on.
    b.queue.clear();
    b.effects.clear();
    let fx = b.state.resume_effects();
    assert!(
        !fx.is_empty() || b.state.next_deadline().is_some(),
        "a rollout in progress waits on an effect or on the clock: {:?}",
        b.state
    );
    b.react(fx);
    a.settle();
    b.settle();
    assert_eq!(b.state.phase, Phase::Completed);
    assert_eq!(
        (b.state.step, b.state.canary_weight),
        (a.state.step, a.state.canary_weight)
    );
    assert_eq!(b.weights().last(), Some(&100));
}

#[test]
fn a_canary_that_did_not_start_ends_the_rollout_before_any_traffic() {
    let mut sim = Sim::new(default_recipe());
    sim.queue.clear(); // the start's outcome: a failure instead of InputsMaterialized
    sim.send(Input::WorkloadFailed {
        reason: "no ready pod after 2s (progressDeadlineSeconds)".into(),
    })
    .unwrap();
    sim.settle();
    assert_eq!(sim.state.phase, Phase::Aborted);
    assert!(sim.weights().is_empty(), "no weight was ever published");
    assert!(
        sim.state.message.contains("progressDeadlineSeconds"),
        "{}",
        sim.state.message
    );
}

#[test]
fn stale_inputs_are_ignored() {
    let mut sim = Sim::new(default_recipe());
    sim.settle();
    let done = sim.state.clone();
    for input in [
        Input::WeightApplied { weight: 5 },
        Input::AnalysisCompleted {
            run: 1,
            verdict: Verdict::Failed,
            message: String::new(),
        },
        Input::CanaryDrained,
        Input::Tick,
        Input::InputsMaterialized,
        Input::WorkloadFailed {
            reason: "late".into(),
        },
        Input::GateEvaluated {
            passed: false,
            needs_approval: false,
            reason: String::new(),
            provenance: None,
        },
    ] {
        assert_eq!(
            sim.state.apply(&sim.steps.clone(), sim.now, input),
            Ok(vec![])
        );
    }
    assert_eq!(sim.state, done);
}

#[test]
fn a_weight_equal_to_the_last_applied_is_still_published_when_another_is_in_flight() {
    // 10 applied; 20 published but not yet applied; promote moves to the second 10. The proxies
    // may already run 20, so 10 must be published again, not assumed.
    let mut sim = Sim::new(vec![
        Step::SetWeight(10),
        Step::SetWeight(20),
        Step::SetWeight(10),
        Step::Pause(None),
    ]);
    while sim.state.wait != Some(Wait::Weight(20)) {
        let i = sim.queue.pop_front().expect("reaches the 20 % step");
        sim.send(i).unwrap();
    }
    sim.queue.clear(); // 20 % never acknowledged
    sim.act(Action::Promote).unwrap();
    assert_eq!(sim.weights(), vec![10, 20, 10]);
    assert_eq!(sim.state.wait, Some(Wait::Weight(10)));
    sim.settle();
    assert_eq!((sim.state.phase, sim.state.step), (Phase::Paused, 3));
}

#[test]
fn absurd_durations_saturate_instead_of_overflowing() {
    let mut sim = Sim::new(vec![Step::SetWeight(10), Step::Pause(Some(Duration::MAX))]);
    for _ in 0..10 {
        if let Some(i) = sim.queue.pop_front() {
            sim.send(i).unwrap();
        }
    }
    assert_eq!(sim.state.wait, Some(Wait::Until(Millis::MAX)));
}

fn with_verify(steps: Vec<Step>, verdict: fn(usize) -> Verdict) -> Sim {
    let mut sim = Sim::new(steps);
    sim.steps.verify = true;
    sim.verdict = verdict;
    sim
}

#[test]
fn post_deploy_verification_runs_at_100_and_then_seals() {
    let mut sim = with_verify(vec![Step::SetWeight(50)], |_| Verdict::Successful);
    sim.settle();
    assert_eq!(sim.state.phase, Phase::Completed);
    let verify_runs: Vec<usize> = sim
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::StartAnalysis { step, .. } => Some(*step),
            _ => None,
        })
        .collect();
    assert_eq!(
        verify_runs,
        vec![1],
        "the verification is 'step' steps.len()"
    );
    let cps = sim.checkpoints();
    let at = |p| cps.iter().position(|&c| c == p).unwrap();
    assert!(at(Phase::PostDeployVerify) < at(Phase::Sealed));
    assert_eq!(sim.weights(), vec![50, 100]);
}

#[test]
fn a_failed_post_deploy_verification_rolls_back_and_can_be_retried() {
    let mut sim = with_verify(vec![Step::SetWeight(50)], |step| {
        if step == 1 {
            Verdict::Failed
        } else {
            Verdict::Successful
        }
    });
    sim.settle();
    assert_eq!(sim.state.phase, Phase::RolledBack);
    assert_eq!(sim.weights(), vec![50, 100, 0], "rollback publishes 0");
    assert!(sim.effects.contains(&Effect::StopCanary));
    assert!(!sim.effects.contains(&Effect::PromoteCanaryToStable));
    let a = sim.state.abort.clone().unwrap();
    assert!(
        a.reason.contains("post-deploy verification Failed"),
        "{a:?}"
    );
    assert!(a.drain_ms().is_some());
    assert!(
        sim.state.message.starts_with("rolled back"),
        "{}",
        sim.state.message
    );
    // Abort is refused (it ended); retry starts over.
    assert!(sim.act(Action::Abort).is_err());
    sim.act(Action::Retry).unwrap();
    assert_eq!(sim.state.phase, Phase::Pending);
}

#[test]
fn an_inconclusive_verification_is_not_a_pass_and_abort_works_during_it() {
    let mut sim = with_verify(vec![Step::SetWeight(50)], |_| Verdict::Inconclusive);
    sim.settle();
    assert_eq!(sim.state.phase, Phase::RolledBack);

    // Abort while the verification runs.
    let mut sim = with_verify(vec![Step::SetWeight(50)], |_| Verdict::Successful);
    while sim.state.phase != Phase::PostDeployVerify {
        let i = sim.queue.pop_front().expect("reaches verification");
        sim.send(i).unwrap();
    }
    sim.queue.clear(); // the verdict has not come yet
    assert!(sim.act(Action::Promote).is_err(), "nothing left to promote");
    sim.act(Action::Abort).unwrap();
    assert!(sim
        .effects
        .iter()
        .any(|e| matches!(e, Effect::CancelAnalysis { .. })));
    sim.settle();
    // The canary held 100 %: the envelope was armed, so the abort is a rollback.
    assert_eq!(sim.state.phase, Phase::RolledBack);
    assert!(sim.state.is_settled());
}

fn with_background(steps: Vec<Step>, from: usize) -> Sim {
    let mut sim = Sim::new(steps);
    sim.steps.background_from = Some(from);
    sim
}

#[test]
fn background_analysis_starts_at_its_step_and_is_cancelled_at_the_end() {
    // The sim answers every StartAnalysis at once; hold the background verdict back by
    // making it Successful (a background success changes nothing).
    let mut sim = with_background(vec![Step::SetWeight(10), Step::SetWeight(20), pause(60)], 1);
    sim.settle();
    assert_eq!(sim.state.phase, Phase::Completed);
    let starts: Vec<(usize, u64)> = sim
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::StartAnalysis { step, run } => Some((*step, *run)),
            _ => None,
        })
        .collect();
    assert_eq!(starts.len(), 1, "one background run: {starts:?}");
    assert_eq!(starts[0].0, BACKGROUND_STEP);
    assert!(sim.state.background_started);
}

#[test]
fn a_failed_background_analysis_aborts_and_a_running_one_is_cancelled_at_the_finish() {
    let mut sim = with_background(vec![Step::SetWeight(10), Step::Pause(None)], 0);
    sim.verdict = |step| {
        if step == BACKGROUND_STEP {
            Verdict::Failed
        } else {
            Verdict::Successful
        }
    };
    sim.settle();
    assert_eq!(sim.state.phase, Phase::Aborted);
    assert!(sim
        .state
        .abort
        .as_ref()
        .unwrap()
        .reason
        .contains("background analysis Failed"));

    // Still running at the finish: cancelled.
    let mut sim = with_background(vec![Step::SetWeight(10)], 0);
    while !matches!(sim.queue.front(), Some(Input::AnalysisCompleted { .. })) {
        let i = sim.queue.pop_front().expect("the background run starts");
        sim.send(i).unwrap();
    }
    sim.queue
        .retain(|i| !matches!(i, Input::AnalysisCompleted { .. }));
    sim.settle();
    assert_eq!(sim.state.phase, Phase::Completed);
    assert!(sim
        .effects
        .iter()
        .any(|e| matches!(e, Effect::CancelAnalysis { run } if *run > (1 << 40))));
    assert_eq!(sim.state.background, None);
}

/// The effects that arm and replay the rollback envelope, in order.
fn rollback_effects(sim: &Sim) -> Vec<&Effect> {
    sim.effects
        .iter()
        .filter(|e| {
            matches!(
                e,
                Effect::ArmRollback
                    | Effect::VerifyRollback
                    | Effect::RunDownMigration
                    | Effect::DisableFlag
                    | Effect::SetCanaryWeight(0 | 100)
            )
        })
        .collect()
}

#[test]
fn no_hundred_percent_before_the_rollback_envelope_is_armed() {
    for steps in [default_recipe(), vec![Step::SetWeight(5)]] {
        let mut sim = Sim::new(steps);
        sim.settle();
        assert_eq!(sim.state.phase, Phase::Completed);
        let arm = sim.effects.iter().position(|e| *e == Effect::ArmRollback);
        let hundred = sim
            .effects
            .iter()
            .position(|e| *e == Effect::SetCanaryWeight(100));
        assert!(arm.unwrap() < hundred.unwrap(), "{:?}", sim.effects);
        assert_eq!(
            sim.effects
                .iter()
                .filter(|e| **e == Effect::ArmRollback)
                .count(),
            1
        );
    }
    // Unanswered, the rollout waits at the envelope and says so; a restart asks again.
    let mut sim = Sim::new(vec![Step::SetWeight(100)]);
    for _ in 0..10 {
        match sim.queue.pop_front() {
            Some(Input::RollbackArmed) | None => break,
            Some(i) => sim.send(i).unwrap(),
        }
    }
    assert_eq!(sim.state.wait, Some(Wait::Arming(100)));
    assert!(!sim.weights().contains(&100));
    assert_eq!(sim.state.resume_effects(), vec![Effect::ArmRollback]);
    sim.send(Input::RollbackArmed).unwrap();
    assert_eq!(sim.weights().last(), Some(&100));
}

#[test]
fn a_failed_post_deploy_verification_replays_the_envelope_in_order() {
    let mut sim = Sim::new(vec![Step::SetWeight(50)]);
    sim.steps.verify = true;
    sim.verdict = |step| match step {
        1 => Verdict::Failed, // the post-deploy run is "step" steps.len()
        _ => Verdict::Successful,
    };
    sim.settle();
    assert_eq!(sim.state.phase, Phase::RolledBack);
    assert_eq!(
        rollback_effects(&sim),
        vec![
            &Effect::ArmRollback,
            &Effect::SetCanaryWeight(100),
            &Effect::VerifyRollback,
            &Effect::SetCanaryWeight(0),
            &Effect::RunDownMigration,
            &Effect::DisableFlag,
        ]
    );
    let r = sim.state.rollback.replay.as_ref().unwrap();
    assert_eq!(r.verified, Some(Ok(())));
    assert!(matches!(r.migration, Migration::Finished { ok: true, .. }));
    assert!(r.round_trip_ms().unwrap() > 0);
    assert!(sim
        .state
        .abort
        .as_ref()
        .unwrap()
        .abort_to_zero_ms()
        .is_some());
    assert!(sim.state.is_settled());
    assert!(
        sim.state.message.starts_with("rolled back"),
        "{}",
        sim.state.message
    );
}

#[test]
fn the_rollback_action_needs_an_armed_envelope_and_works_after_completion() {
    let mut sim = in_phase("Progressing");
    let err = sim.act(Action::Rollback).unwrap_err();
    assert!(
        err.reason.contains("no rollback envelope is armed"),
        "{err}"
    );
    let mut sim = in_phase("Completed");
    sim.act(Action::Rollback).unwrap();
    sim.settle();
    assert_eq!(sim.state.phase, Phase::RolledBack);
    assert_eq!(sim.weights().last(), Some(&0));
    assert!(sim.state.is_settled());
    // A retry arms a new envelope for its own 100 %.
    sim.act(Action::Retry).unwrap();
    assert!(!sim.state.rollback.armed && sim.state.rollback.replay.is_none());
}

#[test]
fn a_restart_during_the_migration_does_not_run_it_again() {
    let mut sim = in_phase("Completed");
    sim.act(Action::Rollback).unwrap();
    // Deliver everything but the migration's end: the process "dies" while it runs.
    for _ in 0..20 {
        match sim.queue.pop_front() {
            Some(Input::MigrationFinished { .. }) | None => break,
            Some(i) => {
                sim.now += 100;
                sim.send(i).unwrap()
            }
        }
    }
    let r = sim.state.rollback.replay.clone().unwrap();
    assert!(matches!(r.migration, Migration::Started(_)), "{r:?}");
    let stored: RolloutState =
        serde_json::from_str(&serde_json::to_string(&sim.state).unwrap()).unwrap();
    let fx = stored.resume_effects();
    assert!(fx.contains(&Effect::MigrationInterrupted), "{fx:?}");
    assert!(!fx.contains(&Effect::RunDownMigration), "{fx:?}");
    sim.queue.clear();
    sim.send(Input::MigrationFinished {
        ok: false,
        detail: "interrupted".into(),
    })
    .unwrap();
    sim.settle();
    let runs = sim
        .effects
        .iter()
        .filter(|e| **e == Effect::RunDownMigration)
        .count();
    assert_eq!(runs, 1);
    assert!(sim
        .state
        .rollback
        .replay
        .as_ref()
        .unwrap()
        .done_at
        .is_some());
}

#[test]
fn an_envelope_that_fails_verification_moves_traffic_but_runs_nothing() {
    let mut sim = in_phase("Completed");
    sim.act(Action::Rollback).unwrap();
    sim.queue
        .retain(|i| !matches!(i, Input::RollbackVerified { .. }));
    sim.send(Input::RollbackVerified {
        problem: Some("signature: 0 distinct trusted key(s) signed; 1 required".into()),
    })
    .unwrap();
    sim.settle();
    assert_eq!(sim.weights().last(), Some(&0));
    assert!(!sim.effects.contains(&Effect::RunDownMigration));
    assert!(!sim.effects.contains(&Effect::DisableFlag));
    let r = sim.state.rollback.replay.as_ref().unwrap();
    assert!(matches!(&r.migration, Migration::Skipped(why) if why.contains("signature")));
    assert!(r.done_at.is_some());
}

#[test]
fn a_rollback_whose_weight_zero_is_never_confirmed_ends_at_the_deadline_without_migrating() {
    let mut sim = in_phase("Completed");
    sim.act(Action::Rollback).unwrap();
    // No proxy confirms weight 0: drop those answers.
    sim.queue
        .retain(|i| !matches!(i, Input::WeightApplied { weight: 0 }));
    sim.settle();
    assert!(sim.state.is_settled(), "{:?}", sim.state);
    let r = sim.state.rollback.replay.as_ref().unwrap();
    assert!(matches!(&r.migration, Migration::Skipped(why) if why.contains("deadline")));
    assert!(!sim.effects.contains(&Effect::RunDownMigration));
    assert!(sim.state.abort.as_ref().unwrap().forced);
}

#[test]
fn an_abort_once_the_envelope_is_armed_is_a_rollback() {
    // 100 %, then a pause in which the user aborts.
    let mut sim = Sim::new(vec![Step::SetWeight(100), pause(60)]);
    while sim.state.wait != Some(Wait::Until(sim.state.next_deadline().unwrap_or(0))) {
        let i = sim.queue.pop_front().unwrap();
        sim.send(i).unwrap();
    }
    assert!(sim.state.rollback.armed);
    sim.act(Action::Abort).unwrap();
    sim.settle();
    assert_eq!(sim.state.phase, Phase::RolledBack);
    assert!(sim.effects.contains(&Effect::RunDownMigration));
    assert!(sim.state.is_settled());
    // Retry counts attempts (the gate's decision of each attempt has its own id).
    sim.act(Action::Retry).unwrap();
    assert_eq!(sim.state.attempt, 1);
}

#[test]
fn rerun_starts_the_analysis_step_again_and_ignores_the_cancelled_runs_verdict() {
    let mut sim = Sim::new(vec![Step::SetWeight(20), analysis(), Step::SetWeight(60)]);
    // Deliver inputs until the analysis starts; hold its verdict back (it is "running").
    for _ in 0..100 {
        if sim.state.wait == Some(Wait::Analysis) {
            break;
        }
        sim.step_once();
    }
    assert_eq!(sim.state.wait, Some(Wait::Analysis));
    let first = sim.state.analysis_run;
    sim.queue.clear();
    // Allowed here: an analysis step in progress.
    let before = sim.state.clone();
    sim.act(Action::Rerun).unwrap();
    assert_eq!(sim.state.analysis_run, first + 1);
    assert!(sim.effects.contains(&Effect::CancelAnalysis { run: first }));
    assert!(sim.effects.contains(&Effect::StartAnalysis {
        step: 1,
        run: first + 1
    }));
    assert!(before
        .allowed_actions(&sim.steps, sim.now)
        .contains(&Action::Rerun));
    // The cancelled run's late verdict moves nothing; the new run's does.
    sim.queue.clear();
    sim.send(Input::AnalysisCompleted {
        run: first,
        verdict: Verdict::Failed,
        message: "late".into(),
    })
    .unwrap();
    assert_eq!(sim.state.phase, Phase::Progressing, "{:?}", sim.state);
    sim.send(Input::AnalysisCompleted {
        run: first + 1,
        verdict: Verdict::Successful,
        message: "again".into(),
    })
    .unwrap();
    sim.settle();
    assert_eq!(sim.state.phase, Phase::Completed);
    assert_eq!(sim.weights(), vec![20, 60, 100]);
    // At a weight or after the end, there is no step to re-run.
    let err = sim.act(Action::Rerun).unwrap_err();
    assert!(err.reason.contains("progressing or paused"), "{err:?}");
    let mut at_weight = Sim::new(vec![Step::SetWeight(20), Step::Pause(None), analysis()]);
    at_weight.settle();
    assert_eq!(at_weight.state.phase, Phase::Paused);
    let err = at_weight.act(Action::Rerun).unwrap_err();
    assert!(err.reason.contains("not an analysis"), "{err:?}");
}

#[test]
fn rerun_while_paused_resumes_into_the_new_run() {
    let mut sim = Sim::new(vec![Step::SetWeight(20), analysis()]);
    for _ in 0..100 {
        if sim.state.wait == Some(Wait::Analysis) {
            break;
        }
        sim.step_once();
    }
    sim.queue.clear();
    sim.act(Action::Pause).unwrap();
    assert_eq!(sim.state.phase, Phase::Paused);
    sim.act(Action::Rerun).unwrap();
    assert_eq!(sim.state.phase, Phase::Progressing);
    assert!(sim.state.paused.is_none());
    sim.settle();
    assert_eq!(sim.state.phase, Phase::Completed);
}
