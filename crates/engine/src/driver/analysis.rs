//! Analysis runs: planned from the rollout's templates, executed through the [`Analyses`]
//! seam, their progress reported back as commands and their verdicts fed to the state machine.
//!
//! [`Analyses`]: crate::runner::Analyses

use super::*;

impl Driver {
    pub(super) fn start_run(&mut self, name: &str, step: usize, run: u64) {
        let Some(live) = self.live.get(name) else {
            return;
        };
        let spec = live.stored.spec.clone();
        let generation = live.stored.generation;
        let Some(analysis) = spec.analysis_at(step) else {
            return;
        };
        let store = &self.store;
        let plan = Plan::build(&spec, step, run, &analysis, |t| {
            store.template(t).ok().flatten()
        });
        let plan = match plan {
            Ok(p) => p,
            Err(message) => {
                self.queue.push_back((
                    name.to_string(),
                    Input::AnalysisCompleted {
                        run,
                        verdict: Verdict::Error,
                        message,
                    },
                ));
                return;
            }
        };
        let windows = plan.proxy_windows_s();
        let planned = plan
            .metrics
            .iter()
            .map(|p| PlannedMetric {
                template: p.template.clone(),
                dry_run: p.dry_run,
                metric: p.metric.clone(),
            })
            .collect();
        let tx = self.tx.clone();
        let rollout = name.to_string();
        let reporter = Box::new(Reporter {
            tx: tx.clone(),
            rollout: rollout.clone(),
            generation,
        });
        let measuring = self.analyses.run(plan, reporter);
        let task = tokio::spawn(async move {
            let view = measuring.await;
            let _ = tx
                .send(Command::RunProgress {
                    rollout,
                    generation,
                    view,
                    done: true,
                })
                .await;
        });
        if let Some(live) = self.live.get_mut(name) {
            live.runs.insert(
                run,
                RunTask {
                    windows,
                    planned,
                    task,
                },
            );
        }
        self.dirty = true;
    }

    pub(super) fn run_progress(&mut self, name: &str, generation: u64, view: RunView, done: bool) {
        let Some(live) = self.live.get_mut(name) else {
            return;
        };
        if live.stored.generation != generation {
            return;
        }
        let current = live.runs.contains_key(&view.run);
        if let Err(e) = self.store.put_run(
            name,
            generation,
            view.run,
            &serde_json::to_value(&view).unwrap_or_default(),
        ) {
            tracing::error!(rollout = %name, "cannot record analysis progress: {e}");
        }
        if done && current {
            let task = live.runs.remove(&view.run);
            self.dirty = true;
            if let Some(verdict) = view.verdict() {
                // Sealed with the input it causes, in one transaction (see `input_as`): the
                // decision is on record exactly when the rollout acts on it.
                let planned = task.map(|t| t.planned.clone()).unwrap_or_default();
                let input = Input::AnalysisCompleted {
                    run: view.run,
                    verdict,
                    message: view.message.clone(),
                };
                live.seals.insert(view.run, (planned, view));
                self.queue.push_back((name.to_string(), input));
            }
        }
    }
}

/// The SLO windows (seconds) a rollout's analysis steps measure over with the proxy provider.
/// Proxies are asked to report them from the moment the rollout is applied, so a run's first
/// measurement finds them.
pub(super) fn proxy_windows(store: &Store, rollout: &Rollout) -> Vec<u64> {
    let mut out = Vec::new();
    for (_, t) in rollout.template_refs() {
        {
            let Ok(Some(t)) = store.template(&t.template_name) else {
                continue;
            };
            out.extend(t.spec.metrics.iter().filter_map(runner::proxy_window));
        }
    }
    out
}

pub(super) struct Reporter {
    tx: mpsc::Sender<Command>,
    rollout: String,
    generation: u64,
}

impl runner::Report for Reporter {
    fn progress(&self, view: &RunView) {
        // Progress is best effort (the final view is sent with `send().await`).
        let _ = self.tx.try_send(Command::RunProgress {
            rollout: self.rollout.clone(),
            generation: self.generation,
            view: view.clone(),
            done: false,
        });
    }
}
