//! The gate: the provenance check (when a trust config is set), the schedule's window and
//! preconditions (a task of its own, reporting back as commands), the approval policy.

use super::*;
use vireo_api::{GateOutcome, PreconditionResult, ScheduleCheck, MAX_SCHEDULE_CHECKS};
use vireo_core::spec::{Approval, APPROVAL_ANNOTATION};

impl Driver {
    /// The gate: provenance first (when a trust config is set), then the schedule.
    pub(super) fn evaluate_gate(&mut self, name: &str) {
        let Some(spec) = self.live.get(name).map(|l| l.stored.spec.clone()) else {
            return;
        };
        let provenance = match &self.trust {
            None => None,
            Some(trust) => {
                let image = spec.spec.canary.image.clone();
                let digest = image
                    .as_deref()
                    .and_then(vireo_evidence::provenance::image_digest)
                    .map(|(_, d)| d.to_string());
                let attestations = match digest.map(|d| self.store.attestations_for(&d)) {
                    Some(Ok(a)) => a,
                    Some(Err(e)) => {
                        tracing::error!(rollout = %name, "cannot read attestations: {e}");
                        return; // resumed on restart; a store failure is not a verdict
                    }
                    None => Vec::new(),
                };
                Some(Box::new(ProvenanceFacts {
                    image,
                    trusted_keys: trust.keys_pem.clone(),
                    builders: trust.builders.clone(),
                    attestations,
                }))
            }
        };
        if let Some(facts) = &provenance {
            if let Err(reason) = vireo_evidence::provenance::evaluate(facts) {
                let mut input = gate_input(&spec, false, Some(reason), None);
                if let Input::GateEvaluated { provenance: p, .. } = &mut input {
                    *p = provenance;
                }
                self.queue.push_back((name.to_string(), input));
                return;
            }
        }
        match self.store.schedule(name) {
            Ok(Some(schedule)) => {
                if let Some(live) = self.live.get_mut(name) {
                    live.gate_provenance = provenance;
                }
                self.start_gate(name, schedule)
            }
            Ok(None) => {
                self.queue
                    .push_back((name.to_string(), gate_input(&spec, true, None, provenance)));
            }
            Err(e) => tracing::error!(rollout = %name, "cannot read the schedule: {e}"),
        }
    }

    pub(super) fn set_schedule(
        &mut self,
        name: &str,
        schedule: Option<vireo_core::schedule::Schedule>,
    ) -> Result<(), ApiError> {
        let phase = self.live.get(name).map(|l| l.stored.state.phase);
        match schedule {
            Some(s) => {
                s.window().map_err(ApiError::Invalid)?;
                let started = phase.is_some_and(|p| {
                    !matches!(
                        p,
                        Phase::Pending | Phase::InputsMaterialized | Phase::GateEval
                    ) && !p.is_terminal()
                });
                if started {
                    return Err(ApiError::Conflict(format!(
                        "rollout {name:?} is already past its gate (phase {:?}); a schedule applies before it starts",
                        phase.unwrap_or(Phase::Pending)
                    )));
                }
                self.store.put_schedule(name, &s, self.clock.now_ms())?;
                tracing::info!(rollout = %name, at = %s.at, window = %s.window, "schedule set");
                // A gate already waiting follows the new schedule.
                if self.live.get(name).is_some_and(|l| l.gate.is_some()) {
                    self.start_gate(name, s);
                }
            }
            None => {
                if !self.store.delete_schedule(name)? {
                    return Err(ApiError::NotFound(format!(
                        "rollout {name:?} has no schedule"
                    )));
                }
                // A gate waiting on it fails cleanly: nothing was ever routed to the canary.
                if let Some(live) = self.live.get_mut(name) {
                    if live.gate.take().is_some() {
                        live.gate_note = Some("schedule cancelled".into());
                        live.push_gate_check(ScheduleCheck {
                            at_ms: self.clock.now_ms(),
                            outcome: GateOutcome::Cancelled,
                            results: Vec::new(),
                        });
                        let input = gate_input(
                            &live.stored.spec,
                            false,
                            Some("schedule cancelled".into()),
                            live.gate_provenance.take(),
                        );
                        self.queue.push_back((name.to_string(), input));
                        self.drain_queue();
                    }
                }
            }
        }
        Ok(())
    }

    /// `GET /api/v1/rollouts/{name}/schedule`.
    pub(super) fn schedule_status(
        &self,
        name: &str,
    ) -> Result<vireo_api::ScheduleStatus, ApiError> {
        // A schedule may come before its rollout is applied.
        let schedule = self.store.schedule(name)?;
        let live = self.live.get(name);
        if live.is_none() && schedule.is_none() {
            return Err(ApiError::NotFound(format!(
                "no rollout named {name:?} and no schedule for it"
            )));
        }
        Ok(vireo_api::ScheduleStatus {
            rollout: name.to_string(),
            schedule,
            state: live.and_then(|l| l.gate_note.clone()),
            checks: live.map_or_else(Vec::new, |l| l.gate_checks.iter().cloned().collect()),
            dropped: live.map_or(0, |l| l.gate_checks_dropped),
        })
    }

    /// Waits for the schedule's window and preconditions in a task of its own.
    pub(super) fn start_gate(&mut self, name: &str, schedule: vireo_core::schedule::Schedule) {
        let Some(live) = self.live.get_mut(name) else {
            return;
        };
        live.gate_seq += 1;
        let seq = live.gate_seq;
        // The checks shown belong to the gate now waiting (a new schedule starts over).
        live.gate_checks.clear();
        live.gate_checks_dropped = 0;
        let spec = live.stored.spec.clone();
        let templates: Vec<AnalysisTemplate> = schedule
            .preconditions
            .iter()
            .filter_map(|p| p.analysis.as_deref())
            .filter_map(|t| self.store.template(t).ok().flatten())
            .collect();
        let tx = self.tx.clone();
        let world = GateWorld {
            analyses: self.analyses.clone(),
            clock: self.clock.clone(),
        };
        let rollout = name.to_string();
        let task = tokio::spawn(async move {
            let (passed, note, check) =
                gate_check(&schedule, &spec, &templates, &world, &tx, &rollout, seq).await;
            let _ = tx
                .send(Command::Gate {
                    rollout,
                    seq,
                    note,
                    passed: Some(passed),
                    check,
                })
                .await;
        });
        live.gate = Some(AbortOnDrop(task));
        live.gate_note = Some("waiting for the schedule".into());
    }

    pub(super) fn gate_progress(
        &mut self,
        name: &str,
        seq: u64,
        note: String,
        passed: Option<bool>,
        check: Option<ScheduleCheck>,
    ) {
        let Some(live) = self.live.get_mut(name) else {
            return;
        };
        let waiting = live.gate.is_some() && live.stored.state.phase == Phase::GateEval;
        if live.gate_seq != seq || !waiting {
            return;
        }
        live.gate_note = Some(note.clone());
        if let Some(check) = check {
            live.push_gate_check(check);
        }
        if let Some(passed) = passed {
            live.gate = None;
            // A schedule is used once: a later apply or retry of this rollout is not held by
            // a window that has passed.
            if let Err(e) = self.store.delete_schedule(name) {
                tracing::error!(rollout = %name, "cannot remove the used schedule: {e}");
            }
            let provenance = live.gate_provenance.take();
            let input = gate_input(&live.stored.spec, passed, Some(note), provenance);
            self.queue.push_back((name.to_string(), input));
        }
    }
}

impl Live {
    /// Keeps the newest [`MAX_SCHEDULE_CHECKS`] checks.
    fn push_gate_check(&mut self, check: ScheduleCheck) {
        if self.gate_checks.len() == MAX_SCHEDULE_CHECKS {
            self.gate_checks.pop_front();
            self.gate_checks_dropped += 1;
        }
        self.gate_checks.push_back(check);
    }
}

/// The gate's decision as an input: the approval annotation still applies after a schedule.
pub(super) fn gate_input(
    spec: &Rollout,
    passed: bool,
    note: Option<String>,
    provenance: Option<Box<ProvenanceFacts>>,
) -> Input {
    let approval = spec.approval();
    let needs_approval = approval != Approval::None;
    let mut reason = note.unwrap_or_else(|| match &provenance {
        Some(_) => "provenance verified; no schedule".into(),
        None => "no gate configured".into(),
    });
    if passed && needs_approval {
        let how = if approval == Approval::FourEyes {
            "four-eyes"
        } else {
            "required"
        };
        reason = format!("{reason}; waiting for approval ({APPROVAL_ANNOTATION}: {how})");
    }
    Input::GateEvaluated {
        passed,
        needs_approval,
        reason,
        provenance,
    }
}

/// What a gate task measures with and reads the time from.
pub(super) struct GateWorld {
    analyses: Arc<dyn Analyses>,
    clock: Arc<dyn Clock>,
}

/// Waits for the window, then checks the preconditions until they hold or it closes.
/// Returns the decision and its reason. Bounded by the window's end.
pub(super) async fn gate_check(
    schedule: &vireo_core::schedule::Schedule,
    spec: &Rollout,
    templates: &[AnalysisTemplate],
    world: &GateWorld,
    tx: &mpsc::Sender<Command>,
    rollout: &str,
    seq: u64,
) -> (bool, String, Option<ScheduleCheck>) {
    use vireo_core::schedule::{next_step, Next, RECHECK};
    let window = match schedule.window() {
        Ok(w) => w,
        Err(e) => return (false, format!("invalid schedule: {e}"), None),
    };
    let ended = |outcome, results| {
        Some(ScheduleCheck {
            at_ms: world.clock.now_ms(),
            outcome,
            results,
        })
    };
    let http = crate::prometheus::client();
    let mut last = String::from("the window closed before it was checked");
    loop {
        let now = world.clock.now_ms();
        match next_step(&window, now) {
            Next::WaitUntil(t) => {
                let note = format!(
                    "scheduled: waiting for {}",
                    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(t))
                );
                let _ = tx.try_send(Command::Gate {
                    rollout: rollout.into(),
                    seq,
                    note,
                    passed: None,
                    check: None,
                });
                tokio::time::sleep(Duration::from_millis(t - now)).await;
                continue;
            }
            Next::Missed => {
                let note = format!("schedule window closed: {last}");
                return (false, note, ended(GateOutcome::Missed, Vec::new()));
            }
            Next::Check => {}
        }
        let mut failing = Vec::new();
        let mut results = Vec::with_capacity(schedule.preconditions.len());
        for p in &schedule.preconditions {
            // No check may outlast the window.
            let left = Duration::from_millis(
                window
                    .closes
                    .saturating_sub(world.clock.now_ms())
                    .max(1_000),
            );
            let check = async {
                match &p.analysis {
                    Some(name) => precondition_analysis(spec, name, templates, world).await,
                    None => crate::precondition::check_http(&http, p).await,
                }
            };
            let result = tokio::time::timeout(left, check).await.unwrap_or_else(|_| {
                Err("a precondition was still being checked when the window closed".into())
            });
            if let Err(e) = &result {
                failing.push(e.clone());
            }
            results.push(PreconditionResult {
                precondition: p.clone(),
                passed: result.is_ok(),
                reason: result.err(),
            });
        }
        if failing.is_empty() && world.clock.now_ms() <= window.closes {
            let note = "schedule window open and preconditions hold".to_string();
            return (true, note, ended(GateOutcome::Passed, results));
        }
        if failing.is_empty() {
            failing.push("the preconditions held only after the window closed".into());
        }
        last = failing.join("; ");
        // Awaited, not `try_send`: a check is history the console shows, and this task may
        // wait for the driver.
        let _ = tx
            .send(Command::Gate {
                rollout: rollout.into(),
                seq,
                note: format!("preconditions not met: {last}"),
                passed: None,
                check: ended(GateOutcome::Unmet, results),
            })
            .await;
        let left = window.closes.saturating_sub(world.clock.now_ms()) + 1;
        tokio::time::sleep(RECHECK.min(Duration::from_millis(left))).await;
    }
}

pub(super) async fn precondition_analysis(
    spec: &Rollout,
    template: &str,
    templates: &[AnalysisTemplate],
    world: &GateWorld,
) -> Result<(), String> {
    let step = vireo_core::spec::AnalysisStep {
        templates: vec![vireo_core::spec::TemplateRef {
            template_name: template.into(),
        }],
        args: Vec::new(),
    };
    let plan = Plan::build(spec, 0, 0, &step, |t| {
        templates.iter().find(|x| x.metadata.name == t).cloned()
    })?;
    struct Quiet;
    impl runner::Report for Quiet {
        fn progress(&self, _: &RunView) {}
    }
    let view = world.analyses.run(plan, Box::new(Quiet)).await;
    match view.verdict() {
        Some(Verdict::Successful) => Ok(()),
        _ => Err(format!(
            "analysis {template:?}: {:?} — {}",
            view.phase, view.message
        )),
    }
}
