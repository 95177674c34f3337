//! The driver: the I/O around the rollout state machine.
//!
//! One task owns the [`Store`] and every rollout's in-memory companion state, and takes its
//! work from one channel: the API's named commands ([`Handle`]), analysis progress, workload
//! answers, and wake-ups from heartbeats and timers. So inputs reach the state machine one at
//! a time, in one order, which is the order the store records and a replay repeats. Each turn's
//! synchronous work (the store's fsyncing commits) runs in `block_in_place`, so it never holds
//! an async worker others need.
//!
//! For each input the store commits the transition first (`Store::apply_sealed`, with the
//! evidence it needs sealed in the same transaction); only then are its effects carried out
//! (`effects.rs`), through the [`Seams`]:
//! - `SetCanaryWeight` / `PromoteCanaryToStable` change the rollout's route and publish a new
//!   numbered table ([`Traffic::publish`]); the rollout then waits until [`Traffic::applied`]
//!   says every target routes by that version, and `WeightApplied` is fed back;
//! - `StartAnalysis` runs the plan through [`Analyses`] (`analysis.rs`); its verdict comes back
//!   as `AnalysisCompleted`, sealed with it;
//! - an aborted rollout is watched until [`Traffic::drained`] (`CanaryDrained`) or the hard
//!   deadline; `StopCanary` / `ForceCloseCanary` go to [`Workloads`];
//! - `MaterializeInputs` starts the canary workload, and `InputsMaterialized` follows once it
//!   has started; `EvaluateGate` checks provenance, the schedule and the approval policy
//!   (`gate.rs`);
//! - `ArmRollback` is answered at once (the store seals the envelope with `RollbackArmed`);
//!   `VerifyRollback` checks the logged envelope; `RunDownMigration` runs its command as a
//!   child process and reports when it exits; `DisableFlag` disables the envelope's flag
//!   (`rollback.rs`, `flags.rs`);
//! - timed steps and the abort deadline come back as `Tick` at
//!   [`vireo_core::rollout::RolloutState::next_deadline`], on the [`Clock`].
//!
//! Effects that lead straight to another input queue it; the queue is drained before the next
//! command, so an API call returns with the rollout as far as it can get without waiting on the
//! world. Progress is level-triggered (`check_progress`): the world is looked at on every turn.
//!
//! On start the driver loads every rollout and carries out `resume_effects()`: whatever a
//! crash interrupted is done again (effects are idempotent), and nothing already committed is
//! repeated.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::{Duration, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;
use vireo_types::config::Route;
use vireo_types::wire::{ConfigUpdate, StatusReport};

use std::sync::atomic::{AtomicU64, Ordering};
use vireo_core::analysis::AnalysisTemplate;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::runner::Analyses;
use crate::runner::{self, Plan};
use crate::tables::Tables;
use crate::traffic::{ProxyFleet, Traffic};
use crate::workload::{WorkloadError, Workloads};
use futures_util::future::BoxFuture;
use vireo_core::analysis::RunView;
use vireo_core::clock::{Clock, SystemClock};
use vireo_core::events::CloudEvent;
use vireo_core::flags::{Cohort, Cohorts, Flag, FlagSet};
use vireo_core::fleet::Fleet;
use vireo_core::rollout::{Action, Caller, Effect, Input, Millis, Phase, Rejected, Verdict, Wait};
use vireo_core::routes::{self, CANARY};
use vireo_core::spec::{Approval, FieldError, Rollout, SpecError, APPROVAL_ANNOTATION};
use vireo_evidence::provenance::ProvenanceFacts;
use vireo_evidence::PlannedMetric;
use vireo_store::events::EvalWriter;
use vireo_store::{HistoryEntry, Store, StoreError, StoredRollout};

mod analysis;
mod effects;
mod evidence;
mod flags;
mod gate;
mod handle;
mod rollback;
mod views;

use analysis::proxy_windows;

pub use evidence::{Consistency, EvidenceFiles, LogEntry};
pub use handle::{ApiError, Handle, Shared};
use handle::{Command, Reply};
pub use views::view;
use vireo_evidence::dsse::Envelope;
use vireo_evidence::replay::Outcome;
use vireo_store::Filed;

pub use vireo_api::{AppliedWeight, RollbackView, RolloutView, Status, Timeline, TimelineEntry};

/// What the driver keeps beside a stored rollout.
struct Live {
    stored: StoredRollout,
    route: RouteState,
    /// A published weight every proxy has yet to apply: (weight, table version once published).
    awaiting: Option<(u8, Option<u64>)>,
    /// Analysis runs in progress, by run id (a step's, the background one).
    runs: BTreeMap<u64, RunTask>,
    /// The schedule's gate check, while the rollout waits at its gate.
    gate: Option<AbortOnDrop>,
    gate_note: Option<String>,
    /// The gate's checks of the schedule's preconditions, oldest first (bounded).
    gate_checks: std::collections::VecDeque<vireo_api::ScheduleCheck>,
    gate_checks_dropped: u64,
    /// Numbers gate tasks, so a stale task's message (before a retry) is not taken.
    gate_seq: u64,
    /// The provenance facts of a gate that passed them and waits on its schedule.
    gate_provenance: Option<Box<ProvenanceFacts>>,
    /// The running down-migration (dropping it kills the command).
    migration: Option<AbortOnDrop>,
    /// SLO windows its analysis steps measure over (see [`proxy_windows`]).
    windows: Vec<u64>,
    /// Decided runs whose verdict is yet to be recorded, with what to seal it with.
    seals: BTreeMap<u64, (Vec<PlannedMetric>, RunView)>,
    /// Numbers the canary's starts, so only the newest one's answer materializes the inputs.
    start_seq: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum RouteState {
    Weight(u8),
    Promoted,
}

struct RunTask {
    /// The SLO windows (seconds) its proxy metrics measure over.
    windows: Vec<u64>,
    /// What it measures, for the sealed verdict.
    planned: Vec<PlannedMetric>,
    task: JoinHandle<()>,
}

impl Drop for RunTask {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The provenance gate's trust: keys (SPKI PEM) and the builder allow-list.
#[derive(Debug, Clone, Default)]
pub struct ProvenanceTrust {
    pub keys_pem: Vec<String>,
    pub builders: Vec<String>,
}

/// How long a rollback's down-migration may run before it is killed and reported failed.
pub const MIGRATION_TIMEOUT: Duration = Duration::from_secs(300);

/// What the driver acts on the world through. [`Seams::embedded`] is `vireo serve`'s and
/// `vireo demo`'s: Vireo's own proxies, analyses measured in this process, the system clock.
pub struct Seams {
    pub workloads: Arc<dyn Workloads>,
    /// `None`: Vireo's proxies, through the tables and fleet of [`Shared`].
    pub traffic: Option<Arc<dyn Traffic>>,
    /// Wraps the traffic seam (Vireo's proxies, or `traffic`) in another that also moves
    /// traffic elsewhere: Kubernetes mode adds Gateway API HTTPRoutes this way.
    pub traffic_layer: Option<TrafficLayer>,
    /// `None`: [`runner::Embedded`] over the fleet of [`Shared`].
    pub analyses: Option<Arc<dyn Analyses>>,
    pub clock: Arc<dyn Clock>,
}

/// See [`Seams::traffic_layer`].
#[derive(Clone)]
#[allow(clippy::type_complexity)]
pub struct TrafficLayer(pub Arc<dyn Fn(Arc<dyn Traffic>) -> Arc<dyn Traffic> + Send + Sync>);

impl std::fmt::Debug for TrafficLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TrafficLayer")
    }
}

impl Seams {
    pub fn embedded(workloads: Arc<dyn Workloads>) -> Seams {
        Seams {
            workloads,
            traffic: None,
            traffic_layer: None,
            analyses: None,
            clock: Arc::new(SystemClock),
        }
    }
}

pub struct Driver {
    store: Store,
    shared: Arc<Shared>,
    workloads: Arc<dyn Workloads>,
    traffic: Arc<dyn Traffic>,
    analyses: Arc<dyn Analyses>,
    clock: Arc<dyn Clock>,
    static_routes: Vec<Route>,
    /// `None`: no provenance is required at the gate.
    trust: Option<ProvenanceTrust>,
    live: BTreeMap<String, Live>,
    queue: VecDeque<(String, Input)>,
    dirty: bool,
    /// The store refused a write: back off before the next attempt instead of spinning.
    store_failing: bool,
    tx: mpsc::Sender<Command>,
    rx: mpsc::Receiver<Command>,
}

/// Bound on inputs handled in one go: each input moves a state machine forward, so real
/// chains are a handful long; this only stops a bug from spinning forever.
const QUEUE_BUDGET: usize = 10_000;

/// Store readers (read-only connections on blocking threads) at work at once.
const MAX_READERS: usize = 8;

impl Driver {
    /// Loads every stored rollout, redoes what a crash may have interrupted, publishes the
    /// route table, and runs the driver on the current tokio runtime.
    pub fn start(
        store: Store,
        seams: Seams,
        static_routes: Vec<Route>,
        trust: Option<ProvenanceTrust>,
    ) -> Result<Handle, StoreError> {
        let (tx, rx) = mpsc::channel(1024);
        let latest_event = Arc::new(watch::channel(0u64).0);
        let eval_events = EvalWriter::start(store.path().to_path_buf(), latest_event.clone())?;
        let mut flags = FlagSet::default();
        for (key, spec) in store.flags()? {
            match serde_json::from_str::<Flag>(&spec) {
                Ok(f) => {
                    flags.flags.insert(key, Arc::new(f));
                }
                Err(e) => tracing::error!(flag = %key, "stored flag unreadable: {e}"),
            }
        }
        let clock = seams.clock;
        let fleet = Arc::new(RwLock::new(Fleet::default()));
        let tables = Arc::new(Tables::default());
        let traffic = seams.traffic.unwrap_or_else(|| {
            Arc::new(ProxyFleet {
                tables: tables.clone(),
                fleet: fleet.clone(),
            })
        });
        let traffic = match &seams.traffic_layer {
            Some(layer) => (layer.0)(traffic),
            None => traffic,
        };
        let analyses = seams.analyses.unwrap_or_else(|| {
            Arc::new(runner::Embedded {
                fleet: fleet.clone(),
                clock: clock.clone(),
            })
        });
        let shared = Arc::new(Shared {
            fleet,
            slo_series: Default::default(),
            tables,
            clock: clock.clone(),
            wake: Notify::new(),
            flags: ArcSwap::from_pointee(flags),
            cohorts: ArcSwap::from_pointee(Cohorts::default()),
            latest_event,
            db: store.path().to_path_buf(),
            signer: store.signer().cloned(),
            readers: tokio::sync::Semaphore::new(MAX_READERS),
            eval_events,
            instance: store.instance(),
            eval_ids: (clock.now_ms(), AtomicU64::new(0)),
            sink: Default::default(),
        });
        let mut d = Driver {
            store,
            shared: shared.clone(),
            workloads: seams.workloads,
            traffic,
            analyses,
            clock,
            static_routes,
            trust,
            live: BTreeMap::new(),
            queue: VecDeque::new(),
            dirty: true,
            store_failing: false,
            tx: tx.clone(),
            rx,
        };
        for stored in d.store.rollouts()? {
            let name = stored.spec.name().to_string();
            let state = stored.state.clone();
            let windows = proxy_windows(&d.store, &stored.spec);
            d.live.insert(name.clone(), Live::new(stored, windows));
            let effects = state.resume_effects();
            if !effects.is_empty() {
                tracing::info!(rollout = %name, phase = ?state.phase, "resuming from the last checkpoint");
            }
            d.carry_out(&name, effects);
        }
        if d.live.is_empty() && d.static_routes.is_empty() {
            d.dirty = false; // nothing to serve: proxies keep their own routes
        }
        d.drain_queue();
        tokio::spawn(d.run());
        Ok(Handle { tx, shared })
    }

    async fn run(mut self) {
        // Heartbeats wake the driver; this only covers proxies going silent (they stop
        // counting after fleet::CONNECTED_FOR without any message).
        let mut every = tokio::time::interval(Duration::from_millis(500));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if std::mem::take(&mut self.store_failing) {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            let sleep = self
                .next_deadline()
                .map(|d| Duration::from_millis(d.saturating_sub(self.clock.now_ms())))
                .unwrap_or(Duration::from_secs(3600));
            let command = tokio::select! {
                c = self.rx.recv() => match c {
                    Some(c) => Some(c),
                    None => return,
                },
                _ = self.shared.wake.notified() => None,
                _ = every.tick() => None,
                _ = tokio::time::sleep(sleep) => None,
            };
            // The turn's work is synchronous and commits fsync: it runs without holding an
            // async worker (tokio moves the worker's other tasks elsewhere meanwhile), so a
            // slow disk stalls the driver, never the API or the proxies' long polls.
            off_worker(|| {
                if let Some(c) = command {
                    self.command(c);
                }
                self.check_progress();
                self.drain_queue();
                self.publish_events();
            });
        }
    }

    /// Hands committed events to the live stream (SSE followers).
    fn publish_events(&mut self) {
        if let Some(max) = self.store.take_appended().iter().map(|e| e.seq).max() {
            vireo_store::events::publish_latest(&self.shared.latest_event, max);
        }
    }

    fn next_deadline(&self) -> Option<Millis> {
        self.live
            .values()
            .filter_map(|l| l.stored.state.next_deadline())
            .min()
    }

    fn command(&mut self, c: Command) {
        match c {
            Command::ApplyRollout(r, actor, reply) => {
                let result = self.apply_rollout(*r, &actor);
                let _ = reply.send(result);
            }
            Command::ApplyTemplate(t, reply) => {
                let result = self
                    .store
                    .put_template(&t, self.clock.now_ms())
                    .map_err(ApiError::from);
                if result.is_ok() {
                    tracing::info!(template = %t.metadata.name, "analysis template stored");
                }
                let _ = reply.send(result);
            }
            Command::Act(name, action, caller, reply) => {
                if let Err(e) = self.four_eyes(&name, action, &caller) {
                    let _ = reply.send(Err(e));
                    return;
                }
                let result = match self.input_as(&name, Input::Action(action), Some(&caller)) {
                    Ok(Ok(())) => {
                        self.drain_queue();
                        self.view(&name)
                    }
                    Ok(Err(rejected)) => Err(rejected.into()),
                    Err(e) => Err(e.into()),
                };
                let _ = reply.send(result);
            }
            Command::Get(name, reply) => {
                let _ = reply.send(self.view(&name));
            }
            Command::ScheduleStatus(name, reply) => {
                let _ = reply.send(self.schedule_status(&name));
            }
            Command::List(reply) => {
                let names: Vec<String> = self.live.keys().cloned().collect();
                let _ = reply.send(names.iter().map(|n| self.view(n)).collect());
            }
            Command::Timeline(name, reply) => {
                let _ = reply.send(self.timeline(&name));
            }
            Command::Evidence(q) => self.evidence(q),
            Command::RunProgress {
                rollout,
                generation,
                view,
                done,
            } => self.run_progress(&rollout, generation, view, done),
            Command::Schedule(name, schedule, reply) => {
                let _ = reply.send(self.set_schedule(&name, schedule.map(|s| *s)));
            }
            Command::Gate {
                rollout,
                seq,
                note,
                passed,
                check,
            } => self.gate_progress(&rollout, seq, note, passed, check),
            Command::PutFlag(flag, reply) => {
                let _ = reply.send(self.put_flag(*flag));
            }
            Command::ToggleFlag(key, enabled, actor, reply) => {
                let _ = reply.send(self.toggle_flag(&key, enabled, &actor));
            }
            Command::Ingest(events, reply) => {
                let n = events.len();
                let result = self
                    .store
                    .ingest(&events)
                    .map(|new| (new.len(), n - new.len()))
                    .map_err(ApiError::from);
                let _ = reply.send(result);
            }
            Command::Workload {
                rollout,
                generation,
                op,
                result,
            } => self.workload_done(&rollout, generation, op, result),
            Command::Migration {
                rollout,
                generation,
                ok,
                detail,
            } => {
                if let Some(l) = self.live.get_mut(&rollout) {
                    if l.stored.generation == generation {
                        l.migration = None;
                        self.queue
                            .push_back((rollout, Input::MigrationFinished { ok, detail }));
                    }
                }
            }
        }
    }

    /// A `four-eyes` rollout is not approved by whoever applied it.
    fn four_eyes(&self, name: &str, action: Action, caller: &Caller) -> Result<(), ApiError> {
        let Some(l) = self.live.get(name) else {
            return Ok(()); // the action itself reports the unknown rollout
        };
        if action == Action::Approve
            && l.stored.spec.approval() == Approval::FourEyes
            && l.stored.applied_by.as_deref() == Some(caller.actor.as_str())
        {
            return Err(ApiError::Forbidden(format!(
                "{name:?} asks for four-eyes approval ({APPROVAL_ANNOTATION}: four-eyes) and {} applied it: someone else must approve",
                caller.actor
            )));
        }
        Ok(())
    }

    fn apply_rollout(&mut self, r: Rollout, actor: &str) -> Result<RolloutView, ApiError> {
        let name = r.name().to_string();
        let mut errors = Vec::new();
        for (path, t) in r.template_refs() {
            if self.store.template(&t.template_name)?.is_none() {
                errors.push(FieldError {
                    path: format!("{path}.templateName"),
                    reason: format!(
                        "no AnalysisTemplate named {:?}; apply it first",
                        t.template_name
                    ),
                });
            }
        }
        if !errors.is_empty() {
            return Err(ApiError::Invalid(SpecError { errors }));
        }
        if self.static_routes.iter().any(|s| s.name == r.spec.route) {
            return Err(ApiError::Invalid(SpecError {
                errors: vec![FieldError {
                    path: "spec.route".into(),
                    reason: format!(
                        "{:?} is a static route of the control plane's config; a rollout needs a route of its own",
                        r.spec.route
                    ),
                }],
            }));
        }
        // The table every proxy would get must be one a proxy accepts: a refused table
        // would stall every rollout, not just this one.
        let mut candidate = self.static_routes.clone();
        candidate.extend(
            self.live
                .iter()
                .filter(|(n, _)| **n != name)
                .map(|(_, l)| l.current_route()),
        );
        candidate.push(routes::route(&r, 0));
        if let Err(e) = proxy_accepts(&candidate) {
            return Err(ApiError::Invalid(SpecError {
                errors: vec![FieldError {
                    path: "spec".into(),
                    reason: format!(
                        "the proxies would refuse the route this rollout publishes: {e}"
                    ),
                }],
            }));
        }
        if let Some(other) = self
            .live
            .iter()
            .find(|(n, l)| **n != name && l.stored.spec.spec.route == r.spec.route)
        {
            return Err(ApiError::Conflict(format!(
                "route {:?} is already driven by rollout {:?}; one rollout per route",
                r.spec.route, other.0
            )));
        }
        let effects = self
            .store
            .create_rollout_by(&r, self.clock.now_ms(), Some(actor))?;
        let stored = self
            .store
            .rollout(&name)?
            .ok_or_else(|| ApiError::Internal("the rollout vanished after commit".into()))?;
        tracing::info!(rollout = %name, generation = stored.generation, "rollout applied");
        let windows = proxy_windows(&self.store, &stored.spec);
        self.live.insert(name.clone(), Live::new(stored, windows));
        self.dirty = true;
        self.carry_out(&name, effects);
        self.drain_queue();
        self.view(&name)
    }

    /// Commits one input, then carries out its effects.
    fn input(&mut self, name: &str, input: Input) -> Result<Result<(), Rejected>, StoreError> {
        self.input_as(name, input, None)
    }

    fn input_as(
        &mut self,
        name: &str,
        input: Input,
        caller: Option<&Caller>,
    ) -> Result<Result<(), Rejected>, StoreError> {
        let input_kind = input.clone();
        if let (Input::Action(a), Some(who)) = (&input, caller) {
            tracing::info!(rollout = %name, action = ?a, by = %who.actor, reason = who.reason.as_deref().unwrap_or(""), "action");
        }
        let seal = match (&input, self.live.get(name)) {
            (Input::AnalysisCompleted { run, .. }, Some(l)) => l.seals.get(run),
            _ => None,
        }
        .map(|(planned, view)| vireo_store::AnalysisSeal { planned, view });
        let now = self.clock.now_ms();
        let effects = match self.store.apply_sealed(name, now, input, caller, seal)? {
            Ok(fx) => fx,
            Err(rejected) => return Ok(Err(rejected)),
        };
        if let (Input::AnalysisCompleted { run, .. }, Some(l)) =
            (&input_kind, self.live.get_mut(name))
        {
            l.seals.remove(run);
        }
        let stored = self
            .store
            .rollout(name)?
            .ok_or_else(|| StoreError::NotFound(name.to_string()))?;
        if let Some(l) = self.live.get_mut(name) {
            l.stored = stored;
            if l.stored.state.phase != Phase::GateEval {
                l.gate = None; // aborted (or decided) while a schedule was being waited for
            }
            if let (Input::WeightApplied { weight }, Some((w, _))) = (&input_kind, l.awaiting) {
                if *weight == w {
                    l.awaiting = None;
                }
            }
        }
        self.carry_out(name, effects);
        Ok(Ok(()))
    }

    fn drain_queue(&mut self) {
        let mut budget = QUEUE_BUDGET;
        while let Some((name, input)) = self.queue.pop_front() {
            budget -= 1;
            if budget == 0 {
                tracing::error!(rollout = %name, "input queue did not settle; dropping the rest");
                self.queue.clear();
                break;
            }
            match self.input(&name, input.clone()) {
                Ok(Ok(())) => {}
                Ok(Err(rejected)) => {
                    tracing::warn!(rollout = %name, ?input, "driver input rejected: {rejected}")
                }
                Err(e) if e.is_transient() => {
                    // Kept, in order: the driver's own inputs (a weight applied, an envelope
                    // armed, a migration's end) exist nowhere else.
                    tracing::error!(rollout = %name, ?input, "cannot record input: {e}; retrying in 1 s");
                    self.queue.push_front((name, input));
                    self.store_failing = true;
                    break;
                }
                Err(e) => {
                    // A verdict whose seal failed for a reason other than the database (it
                    // could not be signed or encoded) is recorded without it rather than
                    // lost: a rollout must not wait forever on its own evidence.
                    let sealed = match (&input, self.live.get_mut(&name)) {
                        (Input::AnalysisCompleted { run, .. }, Some(l)) => {
                            l.seals.remove(run).is_some()
                        }
                        _ => false,
                    };
                    if sealed {
                        tracing::error!(rollout = %name, ?input, "cannot seal the analysis verdict: {e}; recording it unsealed");
                        self.queue.push_front((name, input));
                        continue;
                    }
                    tracing::error!(rollout = %name, ?input, "cannot record input: {e}; dropped");
                }
            }
        }
        self.flush();
    }

    /// Turns what the traffic and the clock say into inputs. Level-triggered: looks at the world and queues the inputs it implies. An input that is
    /// already queued (kept there while the store cannot record it) is not queued again, so
    /// an outage of the store does not turn into repeated inputs once it ends.
    fn check_progress(&mut self) {
        let now = self.clock.now_ms();
        let mut found = Vec::new();
        for (name, live) in self.live.iter_mut() {
            let state = &live.stored.state;
            if let Some((w, Some(version))) = live.awaiting {
                if self.traffic.applied(version, now) {
                    // Only what the state machine waits for is recorded (an ended rollout's
                    // re-published weight, after a restart, is not news). `awaiting` is cleared
                    // once the input is committed, so a failed commit is retried.
                    let zero_pending = state.phase.is_backing_out()
                        && state.abort.as_ref().is_some_and(|a| a.zero_at.is_none());
                    if state.wait == Some(Wait::Weight(w)) || (w == 0 && zero_pending) {
                        found.push((name.clone(), Input::WeightApplied { weight: w }));
                    } else {
                        live.awaiting = None;
                    }
                }
            }
            if let (true, Some(a)) = (state.phase.is_backing_out(), &state.abort) {
                if a.zero_at.is_some()
                    && !a.is_done()
                    && self
                        .traffic
                        .drained(&live.stored.spec.spec.route, CANARY, now)
                {
                    found.push((name.clone(), Input::CanaryDrained));
                }
            }
            if state.next_deadline().is_some_and(|d| d <= now) {
                found.push((name.clone(), Input::Tick));
            }
        }
        for input in found {
            if !self.queue.contains(&input) {
                self.queue.push_back(input);
            }
        }
    }

    /// Publishes a new table if any route changed.
    fn flush(&mut self) {
        if !self.dirty {
            return;
        }
        let version = match self.store.next("table_version") {
            Ok(v) => v,
            Err(e) => {
                tracing::error!("cannot number the route table: {e}; retrying");
                return;
            }
        };
        self.dirty = false;
        let mut routes = self.static_routes.clone();
        for live in self.live.values_mut() {
            routes.push(live.current_route());
            if let Some((_, v @ None)) = &mut live.awaiting {
                *v = Some(version);
            }
        }
        let windows: std::collections::BTreeSet<u64> = self
            .live
            .values()
            .filter(|l| !l.stored.state.phase.is_terminal())
            .flat_map(|l| l.windows.iter().copied())
            .chain(
                self.live
                    .values()
                    .flat_map(|l| l.runs.values())
                    .flat_map(|r| r.windows.iter().copied()),
            )
            .collect();
        let mut cohorts = Cohorts {
            version,
            ..Cohorts::default()
        };
        for (name, live) in &self.live {
            let version = &live.stored.spec.spec.canary.version;
            if let Some(c) = Cohort::from_route(&live.current_route(), version) {
                cohorts.by_rollout.insert(name.clone(), c);
            }
        }
        self.shared.cohorts.store(Arc::new(cohorts));
        tracing::debug!(version, routes = routes.len(), "publishing route table");
        self.traffic.publish(ConfigUpdate {
            version,
            routes,
            slo_windows_s: windows.into_iter().collect(),
        });
    }
}

/// Runs blocking work (SQLite commits) on the current worker without starving the runtime:
/// `block_in_place` on a multi-threaded runtime; inline on a current-thread one (tests),
/// which has no other worker to hand tasks to.
fn off_worker<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::current().runtime_flavor() {
        tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(work),
        _ => work(),
    }
}

/// Whether a proxy would accept a table of these routes (parsed and validated as a proxy
/// does; addresses are not resolved here: the proxies resolve them, and report a refusal).
pub fn proxy_accepts(routes: &[Route]) -> Result<(), vireo_types::config::ConfigError> {
    let probe = serde_json::json!({
        "listen": "127.0.0.1:1",
        "admin": "127.0.0.1:2",
        "routes": routes,
    });
    vireo_types::config::Config::parse(&probe.to_string()).map(drop)
}

impl Live {
    fn current_route(&self) -> Route {
        match self.route {
            RouteState::Weight(w) => routes::route(&self.stored.spec, w),
            RouteState::Promoted => routes::promoted_route(&self.stored.spec),
        }
    }

    /// A rollout as loaded or applied: its route as the state implies (the resume effects
    /// then re-publish whatever a crash may have left unpublished).
    fn new(stored: StoredRollout, windows: Vec<u64>) -> Live {
        let route = match stored.state.phase {
            Phase::Completed => RouteState::Promoted,
            _ => RouteState::Weight(stored.state.canary_weight),
        };
        Live {
            stored,
            route,
            awaiting: None,
            runs: BTreeMap::new(),
            gate: None,
            gate_note: None,
            gate_checks: Default::default(),
            gate_checks_dropped: 0,
            gate_seq: 0,
            gate_provenance: None,
            migration: None,
            windows,
            seals: BTreeMap::new(),
            start_seq: 0,
        }
    }
}

#[cfg(test)]
mod tests;
