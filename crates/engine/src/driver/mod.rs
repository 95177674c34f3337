//! The driver: the I/O around the rollout state machine.
//!
//! One task owns the [`Store`] and every rollout's in-memory companion state, and takes its
//! work from one channel: API commands, analysis progress, and wake-ups from heartbeats and
//! timers. So inputs reach the state machine one at a time, in one order, which is the order
//! the store records and a replay repeats.
//!
//! For each input the store commits the transition first ([`Store::apply`]); only then are its
//! effects carried out here:
//! - `SetCanaryWeight` / `PromoteCanaryToStable` change the rollout's route and publish a new
//!   numbered table ([`Tables`]); the rollout then waits until the [`Fleet`] shows every
//!   connected proxy at that version, and `WeightApplied` is fed back;
//! - `StartAnalysis` spawns a [`runner`] task; its verdict comes back as `AnalysisCompleted`;
//! - an aborted rollout is watched until no proxy reports the canary in flight
//!   (`CanaryDrained`); `StopCanary` / `ForceCloseCanary` go to [`Workloads`];
//! - `MaterializeInputs` starts the canary workload; `EvaluateGate` checks the canary's SLSA
//!   provenance (when a trust config is set), then the schedule and the approval policy
//!   (annotation `vireo.dev/approval: required`);
//! - `ArmRollback` is answered at once (the store seals the envelope with `RollbackArmed`);
//!   `VerifyRollback` checks the logged envelope; `RunDownMigration` runs its command as a
//!   child process (`sh -c`, bounded by [`MIGRATION_TIMEOUT`]) and reports when it exits;
//!   `DisableFlag` disables the envelope's flag in the flag store (an event);
//! - timed steps and the abort deadline come back as `Tick` at [`RolloutState::next_deadline`].
//!
//! Effects that lead straight to another input (materialize, gate) queue it; the queue is
//! drained before the next command, so an API call returns with the rollout as far as it can
//! get without waiting on the world.
//!
//! On start the driver loads every rollout and carries out [`RolloutState::resume_effects`]:
//! whatever a crash interrupted is done again (effects are idempotent), and nothing already
//! committed is repeated.

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

use crate::runner::{self, Plan};
use crate::tables::Tables;
use crate::workload::Workloads;
use vireo_core::analysis::RunView;
use vireo_core::events::CloudEvent;
use vireo_core::flags::{Cohort, Cohorts, Flag, FlagSet};
use vireo_core::fleet::Fleet;
use vireo_core::rollout::{Action, Effect, Input, Millis, Phase, Rejected, Verdict, Wait};
use vireo_core::routes::{self, CANARY};
use vireo_core::spec::{FieldError, Rollout, SpecError};
use vireo_evidence::provenance::ProvenanceFacts;
use vireo_evidence::PlannedMetric;
use vireo_store::events::EvalWriter;
use vireo_store::{HistoryEntry, Store, StoreError, StoredRollout};

pub use vireo_core::spec::APPROVAL_ANNOTATION;

pub use vireo_core::clock::now_ms;

/// What the driver and the API share.
pub struct Shared {
    pub fleet: Arc<RwLock<Fleet>>,
    pub tables: Tables,
    wake: Notify,
    /// The flags as last stored (swapped whole on each change; OFREP reads it lock-free).
    pub flags: ArcSwap<FlagSet>,
    /// Every rollout's cohort as of the route table last published.
    pub cohorts: ArcSwap<Cohorts>,
    /// The newest committed event's `seq`: SSE followers wait on it, then read the log.
    pub latest_event: Arc<watch::Sender<u64>>,
    /// The database, for readers with connections of their own (events, SSE, DORA).
    pub db: std::path::PathBuf,
    /// Flag-evaluation events, written in batches off the request path.
    pub eval_events: EvalWriter,
    /// This control plane in event sources (`/vireo/<instance>/…`).
    pub instance: String,
    /// Ids of evaluation events: `<boot ms>-<n>`, unique across restarts.
    eval_ids: (u64, AtomicU64),
}

impl Shared {
    /// A fresh id for an evaluation event.
    pub fn eval_id(&self) -> String {
        let n = self.eval_ids.1.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.eval_ids.0)
    }

    /// Records a proxy heartbeat and wakes the driver (an applied version or a finished drain
    /// may be what a rollout waits for).
    pub fn heartbeat(&self, report: StatusReport) {
        self.fleet
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .record(report, now_ms());
        self.wake.notify_one();
    }
}

pub use vireo_api::{AppliedWeight, RollbackView, RolloutView, Status, Timeline, TimelineEntry};

/// Errors as the API reports them.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Invalid(SpecError),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(name) => ApiError::NotFound(format!("no rollout named {name:?}")),
            StoreError::Busy { .. } => ApiError::Conflict(e.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<Rejected> for ApiError {
    fn from(r: Rejected) -> Self {
        ApiError::Conflict(r.to_string())
    }
}

type Reply<T> = oneshot::Sender<Result<T, ApiError>>;

enum Command {
    ApplyRollout(Box<Rollout>, Reply<RolloutView>),
    ApplyTemplate(Box<AnalysisTemplate>, Reply<()>),
    Act(String, Action, String, Reply<RolloutView>),
    Get(String, Reply<RolloutView>),
    List(Reply<Vec<RolloutView>>),
    Timeline(String, Reply<Timeline>),
    /// A read or small write of the store on the driver's task (evidence queries).
    WithStore(Box<dyn FnOnce(&mut Store) + Send>),
    RunProgress {
        rollout: String,
        generation: u64,
        view: RunView,
        done: bool,
    },
    Schedule(
        String,
        Option<Box<vireo_core::schedule::Schedule>>,
        Reply<()>,
    ),
    /// The schedule's gate task: a note for status, or (with `passed`) its decision.
    Gate {
        rollout: String,
        seq: u64,
        note: String,
        passed: Option<bool>,
    },
    PutFlag(Box<Flag>, Reply<Flag>),
    /// Enable (`true`) or disable a flag, by whom.
    ToggleFlag(String, bool, String, Reply<Flag>),
    /// Ingest events: (new, already stored).
    Ingest(Vec<CloudEvent>, Reply<(usize, usize)>),
    /// A rollback's down-migration command ended.
    Migration {
        rollout: String,
        generation: u64,
        ok: bool,
        detail: String,
    },
}

/// The API's way in.
#[derive(Clone)]
pub struct Handle {
    tx: mpsc::Sender<Command>,
    pub shared: Arc<Shared>,
}

impl Handle {
    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| ApiError::Internal("the driver has stopped".into()))?;
        answer
            .await
            .map_err(|_| ApiError::Internal("the driver dropped the request".into()))?
    }

    pub async fn apply_rollout(&self, r: Rollout) -> Result<RolloutView, ApiError> {
        self.call(|reply| Command::ApplyRollout(Box::new(r), reply))
            .await
    }
    pub async fn apply_template(&self, t: AnalysisTemplate) -> Result<(), ApiError> {
        self.call(|reply| Command::ApplyTemplate(Box::new(t), reply))
            .await
    }
    /// An action by `actor` (the API caller's identity, recorded on the timeline).
    pub async fn act(
        &self,
        name: &str,
        action: Action,
        actor: &str,
    ) -> Result<RolloutView, ApiError> {
        self.call(|reply| Command::Act(name.to_string(), action, actor.to_string(), reply))
            .await
    }
    pub async fn get(&self, name: &str) -> Result<RolloutView, ApiError> {
        self.call(|reply| Command::Get(name.to_string(), reply))
            .await
    }
    pub async fn list(&self) -> Result<Vec<RolloutView>, ApiError> {
        self.call(Command::List).await
    }
    /// Sets (`Some`) or cancels (`None`) a rollout's schedule.
    pub async fn schedule(
        &self,
        name: &str,
        schedule: Option<vireo_core::schedule::Schedule>,
    ) -> Result<(), ApiError> {
        self.call(|reply| Command::Schedule(name.to_string(), schedule.map(Box::new), reply))
            .await
    }

    pub async fn put_flag(&self, flag: Flag) -> Result<Flag, ApiError> {
        self.call(|reply| Command::PutFlag(Box::new(flag), reply))
            .await
    }

    pub async fn toggle_flag(
        &self,
        key: &str,
        enabled: bool,
        actor: &str,
    ) -> Result<Flag, ApiError> {
        self.call(|reply| Command::ToggleFlag(key.to_string(), enabled, actor.to_string(), reply))
            .await
    }

    /// Stores events (deduplicated on source + id): (new, duplicates).
    pub async fn ingest(&self, events: Vec<CloudEvent>) -> Result<(usize, usize), ApiError> {
        self.call(|reply| Command::Ingest(events, reply)).await
    }

    pub async fn timeline(&self, name: &str) -> Result<Timeline, ApiError> {
        self.call(|reply| Command::Timeline(name.to_string(), reply))
            .await
    }

    /// Runs `f` with the store on the driver's task (the store has one owner; the evidence
    /// endpoints read it this way rather than through a second connection).
    pub async fn with_store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        self.call(|reply| {
            Command::WithStore(Box::new(move |store: &mut Store| {
                let _ = reply.send(f(store));
            }))
        })
        .await
    }
}

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
    /// Numbers gate tasks, so a stale task's message (before a retry) is not taken.
    gate_seq: u64,
    /// The provenance facts of a gate that passed them and waits on its schedule.
    gate_provenance: Option<Box<ProvenanceFacts>>,
    /// The running down-migration (dropping it kills the command).
    migration: Option<AbortOnDrop>,
    /// SLO windows its analysis steps measure over (see [`proxy_windows`]).
    windows: Vec<u64>,
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

pub struct Driver {
    store: Store,
    shared: Arc<Shared>,
    workloads: Arc<dyn Workloads>,
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

impl Driver {
    /// Loads every stored rollout, redoes what a crash may have interrupted, publishes the
    /// route table, and runs the driver on the current tokio runtime.
    pub fn start(
        store: Store,
        workloads: Arc<dyn Workloads>,
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
        let shared = Arc::new(Shared {
            fleet: Arc::new(RwLock::new(Fleet::default())),
            tables: Tables::default(),
            wake: Notify::new(),
            flags: ArcSwap::from_pointee(flags),
            cohorts: ArcSwap::from_pointee(Cohorts::default()),
            latest_event,
            db: store.path().to_path_buf(),
            eval_events,
            instance: store.instance(),
            eval_ids: (now_ms(), AtomicU64::new(0)),
        });
        let mut d = Driver {
            store,
            shared: shared.clone(),
            workloads,
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
                .map(|d| Duration::from_millis(d.saturating_sub(now_ms())))
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
            if let Some(c) = command {
                self.command(c);
            }
            self.check_progress();
            self.drain_queue();
            self.publish_events();
        }
    }

    /// Hands committed events to the live stream (SSE followers).
    fn publish_events(&mut self) {
        if let Some(max) = self.store.take_appended().iter().map(|e| e.seq).max() {
            vireo_store::events::publish_latest(&self.shared.latest_event, max);
        }
    }

    fn put_flag(&mut self, flag: Flag) -> Result<Flag, ApiError> {
        let spec = serde_json::to_string(&flag).map_err(|e| ApiError::Internal(e.to_string()))?;
        let event = self.flag_event(
            &flag.key,
            vireo_core::events::FLAG_DEFINED,
            serde_json::to_value(&flag).unwrap_or_default(),
        )?;
        self.store.put_flag(&flag.key, &spec, now_ms(), event)?;
        self.swap_flag(flag.clone());
        self.publish_events();
        tracing::info!(flag = %flag.key, "flag stored");
        Ok(flag)
    }

    /// An event about a flag, with an id from a durable counter (unique across restarts).
    fn flag_event(
        &mut self,
        key: &str,
        ty: &str,
        data: serde_json::Value,
    ) -> Result<CloudEvent, ApiError> {
        let n = self.store.next("event_id")?;
        Ok(vireo_core::events::event(
            format!("flag-{n}"),
            vireo_core::events::flag_source(&self.shared.instance, key),
            ty,
            now_ms(),
            key,
            data,
        ))
    }

    fn swap_flag(&self, flag: Flag) {
        let mut set = FlagSet::clone(&self.shared.flags.load());
        set.version += 1;
        set.flags.insert(flag.key.clone(), Arc::new(flag));
        self.shared.flags.store(Arc::new(set));
    }

    /// Enables or disables a flag; the toggle is an event (`dev.vireo.flag.toggled`).
    fn toggle_flag(&mut self, key: &str, enabled: bool, actor: &str) -> Result<Flag, ApiError> {
        let Some(flag) = self.shared.flags.load().flags.get(key).cloned() else {
            return Err(ApiError::NotFound(format!("no flag {key:?}")));
        };
        let mut flag = Flag::clone(&flag);
        let was = flag.enabled;
        flag.enabled = enabled;
        let spec = serde_json::to_string(&flag).map_err(|e| ApiError::Internal(e.to_string()))?;
        let event = self.flag_event(
            key,
            vireo_core::events::FLAG_TOGGLED,
            serde_json::json!({"flag": key, "enabled": enabled, "was": was, "actor": actor}),
        )?;
        self.store.put_flag(key, &spec, now_ms(), event)?;
        self.swap_flag(flag.clone());
        self.publish_events();
        tracing::info!(flag = %key, enabled, by = %actor, "flag toggled");
        Ok(flag)
    }

    fn next_deadline(&self) -> Option<Millis> {
        self.live
            .values()
            .filter_map(|l| l.stored.state.next_deadline())
            .min()
    }

    fn command(&mut self, c: Command) {
        match c {
            Command::ApplyRollout(r, reply) => {
                let result = self.apply_rollout(*r);
                let _ = reply.send(result);
            }
            Command::ApplyTemplate(t, reply) => {
                let result = self
                    .store
                    .put_template(&t, now_ms())
                    .map_err(ApiError::from);
                if result.is_ok() {
                    tracing::info!(template = %t.metadata.name, "analysis template stored");
                }
                let _ = reply.send(result);
            }
            Command::Act(name, action, actor, reply) => {
                let result = match self.input_as(&name, Input::Action(action), Some(&actor)) {
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
            Command::List(reply) => {
                let names: Vec<String> = self.live.keys().cloned().collect();
                let _ = reply.send(names.iter().map(|n| self.view(n)).collect());
            }
            Command::Timeline(name, reply) => {
                let _ = reply.send(self.timeline(&name));
            }
            Command::WithStore(f) => f(&mut self.store),
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
            } => self.gate_progress(&rollout, seq, note, passed),
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

    fn apply_rollout(&mut self, r: Rollout) -> Result<RolloutView, ApiError> {
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
        let effects = self.store.create_rollout(&r, now_ms())?;
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
        actor: Option<&str>,
    ) -> Result<Result<(), Rejected>, StoreError> {
        let input_kind = input.clone();
        if let (Input::Action(a), Some(who)) = (&input, actor) {
            tracing::info!(rollout = %name, action = ?a, by = %who, "action");
        }
        let effects = match self.store.apply_as(name, now_ms(), input, actor)? {
            Ok(fx) => fx,
            Err(rejected) => return Ok(Err(rejected)),
        };
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
                    tracing::error!(rollout = %name, ?input, "cannot record input: {e}; dropped");
                }
            }
        }
        self.flush();
    }

    fn carry_out(&mut self, name: &str, effects: Vec<Effect>) {
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
                    if let Err(e) = self.workloads.start(name, &spec.spec.canary) {
                        tracing::warn!(rollout = %name, "canary start: {e}");
                    }
                    self.queue
                        .push_back((name.to_string(), Input::InputsMaterialized));
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
                    if let Err(e) = self.workloads.force_close(name, &spec.spec.canary) {
                        tracing::warn!(rollout = %name, "canary force-close: {e}");
                    }
                }
                Effect::StopCanary => {
                    if let Err(e) = self.workloads.stop(name, &spec.spec.canary) {
                        tracing::warn!(rollout = %name, "canary stop: {e}");
                    }
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

    /// The rollout generation's logged rollback envelope, verified with our signing key.
    fn rollback_plan(&self, name: &str) -> Result<vireo_evidence::rollback::Plan, String> {
        let live = self.live.get(name).ok_or("no such rollout")?;
        let generation = live.stored.generation;
        let signer = self
            .store
            .signer()
            .ok_or("evidence is disabled on this store (no signing key)")?;
        let entry = self
            .store
            .rollback_envelope(name, generation)
            .map_err(|e| e.to_string())?
            .ok_or("no rollback envelope was logged for this generation")?;
        vireo_evidence::rollback::open(&entry, signer.signing.public(), name, generation)
    }

    /// Runs the envelope's down-migration as `sh -c COMMAND` (embedded mode); the result comes
    /// back as [`Command::Migration`]. Its start is already committed (at most once).
    fn run_down_migration(&mut self, name: &str) {
        use vireo_core::spec::DownMigration;
        let plan = self.rollback_plan(name);
        let Some(live) = self.live.get_mut(name) else {
            return;
        };
        let command = match plan {
            Ok(p) => match p.migration {
                DownMigration::Command { command, .. } => command,
                DownMigration::None => {
                    self.queue.push_back((
                        name.to_string(),
                        Input::MigrationFinished {
                            ok: true,
                            detail: "no down-migration in the envelope".into(),
                        },
                    ));
                    return;
                }
            },
            Err(e) => {
                self.queue.push_back((
                    name.to_string(),
                    Input::MigrationFinished {
                        ok: false,
                        detail: format!("not run: {e}"),
                    },
                ));
                return;
            }
        };
        let generation = live.stored.generation;
        let tx = self.tx.clone();
        let rollout = name.to_string();
        tracing::info!(rollout = %name, "running the down-migration: {command}");
        let task = tokio::spawn(async move {
            let (ok, detail) = run_command(&command, &rollout, generation).await;
            let _ = tx
                .send(Command::Migration {
                    rollout,
                    generation,
                    ok,
                    detail,
                })
                .await;
        });
        live.migration = Some(AbortOnDrop(task));
    }

    /// The gate: provenance first (when a trust config is set), then the schedule.
    fn evaluate_gate(&mut self, name: &str) {
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

    fn start_run(&mut self, name: &str, step: usize, run: u64) {
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
        let fleet = self.shared.fleet.clone();
        let tx = self.tx.clone();
        let rollout = name.to_string();
        let task = tokio::spawn(async move {
            let reporter = Reporter {
                tx: tx.clone(),
                rollout: rollout.clone(),
                generation,
            };
            let view = runner::execute(plan, fleet, now_ms, reporter).await;
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

    fn set_schedule(
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
                self.store.put_schedule(name, &s, now_ms())?;
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

    /// Waits for the schedule's window and preconditions in a task of its own.
    fn start_gate(&mut self, name: &str, schedule: vireo_core::schedule::Schedule) {
        let Some(live) = self.live.get_mut(name) else {
            return;
        };
        live.gate_seq += 1;
        let seq = live.gate_seq;
        let spec = live.stored.spec.clone();
        let templates: Vec<AnalysisTemplate> = schedule
            .preconditions
            .iter()
            .filter_map(|p| p.analysis.as_deref())
            .filter_map(|t| self.store.template(t).ok().flatten())
            .collect();
        let tx = self.tx.clone();
        let fleet = self.shared.fleet.clone();
        let rollout = name.to_string();
        let task = tokio::spawn(async move {
            let (passed, note) =
                gate_check(&schedule, &spec, &templates, fleet, &tx, &rollout, seq).await;
            let _ = tx
                .send(Command::Gate {
                    rollout,
                    seq,
                    note,
                    passed: Some(passed),
                })
                .await;
        });
        live.gate = Some(AbortOnDrop(task));
        live.gate_note = Some("waiting for the schedule".into());
    }

    fn gate_progress(&mut self, name: &str, seq: u64, note: String, passed: Option<bool>) {
        let Some(live) = self.live.get_mut(name) else {
            return;
        };
        let waiting = live.gate.is_some() && live.stored.state.phase == Phase::GateEval;
        if live.gate_seq != seq || !waiting {
            return;
        }
        live.gate_note = Some(note.clone());
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

    fn run_progress(&mut self, name: &str, generation: u64, view: RunView, done: bool) {
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
                // Sealed before the verdict moves the rollout: a decision is on record before
                // anything acts on it. A sealing failure is logged; the rollout still follows
                // its analysis (the verdict is also in the run's stored view).
                let planned = task.as_ref().map(|t| t.planned.as_slice()).unwrap_or(&[]);
                if let Err(e) =
                    self.store
                        .record_analysis(name, generation, planned, &view, now_ms())
                {
                    tracing::error!(rollout = %name, "cannot seal the analysis verdict: {e}");
                }
                self.queue.push_back((
                    name.to_string(),
                    Input::AnalysisCompleted {
                        run: view.run,
                        verdict,
                        message: view.message,
                    },
                ));
            }
        }
    }

    /// Turns what the fleet and the clock say into inputs.
    fn check_progress(&mut self) {
        let now = now_ms();
        let newest = self.shared.tables.current().version;
        let fleet = self.shared.fleet.read().unwrap_or_else(|e| e.into_inner());
        for (name, live) in self.live.iter_mut() {
            let state = &live.stored.state;
            if let Some((w, Some(version))) = live.awaiting {
                if fleet.applied(version, newest, now) {
                    // Only what the state machine waits for is recorded (an ended rollout's
                    // re-published weight, after a restart, is not news). `awaiting` is cleared
                    // once the input is committed, so a failed commit is retried.
                    let zero_pending = state.phase.is_backing_out()
                        && state.abort.as_ref().is_some_and(|a| a.zero_at.is_none());
                    if state.wait == Some(Wait::Weight(w)) || (w == 0 && zero_pending) {
                        self.queue
                            .push_back((name.clone(), Input::WeightApplied { weight: w }));
                    } else {
                        live.awaiting = None;
                    }
                }
            }
            if let (true, Some(a)) = (state.phase.is_backing_out(), &state.abort) {
                if a.zero_at.is_some()
                    && !a.is_done()
                    && fleet.drained(&live.stored.spec.spec.route, CANARY, now)
                {
                    self.queue.push_back((name.clone(), Input::CanaryDrained));
                }
            }
            if state.next_deadline().is_some_and(|d| d <= now) {
                self.queue.push_back((name.clone(), Input::Tick));
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
        self.shared.tables.publish(ConfigUpdate {
            version,
            routes,
            slo_windows_s: windows.into_iter().collect(),
        });
    }

    fn view(&self, name: &str) -> Result<RolloutView, ApiError> {
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
        let now = now_ms();
        let proxy_errors = self
            .shared
            .fleet
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .connected(now)
            .filter_map(|r| {
                let t = r.rejected.as_ref()?;
                Some(format!(
                    "proxy {} refused table {}: {}",
                    r.proxy, t.version, t.error
                ))
            })
            .collect();
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

    fn timeline(&self, name: &str) -> Result<Timeline, ApiError> {
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

/// The gate's decision as an input: the approval annotation still applies after a schedule.
fn gate_input(
    spec: &Rollout,
    passed: bool,
    note: Option<String>,
    provenance: Option<Box<ProvenanceFacts>>,
) -> Input {
    let needs_approval = spec
        .metadata
        .annotations
        .get(APPROVAL_ANNOTATION)
        .is_some_and(|v| v == "required");
    let mut reason = note.unwrap_or_else(|| match &provenance {
        Some(_) => "provenance verified; no schedule".into(),
        None => "no gate configured".into(),
    });
    if passed && needs_approval {
        reason = format!("{reason}; waiting for approval ({APPROVAL_ANNOTATION}: required)");
    }
    Input::GateEvaluated {
        passed,
        needs_approval,
        reason,
        provenance,
    }
}

/// Runs a down-migration command, bounded by [`MIGRATION_TIMEOUT`]: (succeeded, what happened).
async fn run_command(command: &str, rollout: &str, generation: u64) -> (bool, String) {
    let child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("VIREO_ROLLOUT", rollout)
        .env("VIREO_GENERATION", generation.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        // Its own process group, so a timeout kills what the command started too.
        .process_group(0)
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) => return (false, format!("cannot start sh: {e}")),
    };
    let group = child.id().and_then(|p| i32::try_from(p).ok());
    let Ok(waited) = tokio::time::timeout(MIGRATION_TIMEOUT, child.wait_with_output()).await else {
        if let Some(pid) = group {
            // SAFETY: kill(2) on the process group we created; no memory is touched.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
        let limit = humantime::format_duration(MIGRATION_TIMEOUT);
        return (false, format!("killed after {limit}"));
    };
    match waited {
        Err(e) => (false, format!("cannot wait for the command: {e}")),
        Ok(out) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: String = stderr
                .trim()
                .chars()
                .rev()
                .take(300)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            let status = out.status;
            let mut detail = format!("exited with {status}");
            if !tail.is_empty() {
                detail.push_str(&format!("; stderr: {tail}"));
            }
            (status.success(), detail)
        }
    }
}

/// Waits for the window, then checks the preconditions until they hold or it closes.
/// Returns the decision and its reason. Bounded by the window's end.
async fn gate_check(
    schedule: &vireo_core::schedule::Schedule,
    spec: &Rollout,
    templates: &[AnalysisTemplate],
    fleet: Arc<RwLock<Fleet>>,
    tx: &mpsc::Sender<Command>,
    rollout: &str,
    seq: u64,
) -> (bool, String) {
    use vireo_core::schedule::{next_step, Next, RECHECK};
    let window = match schedule.window() {
        Ok(w) => w,
        Err(e) => return (false, format!("invalid schedule: {e}")),
    };
    let http = crate::prometheus::client();
    let mut last = String::from("the window closed before it was checked");
    loop {
        let now = now_ms();
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
                });
                tokio::time::sleep(Duration::from_millis(t - now)).await;
                continue;
            }
            Next::Missed => return (false, format!("schedule window closed: {last}")),
            Next::Check => {}
        }
        let mut failing = Vec::new();
        for p in &schedule.preconditions {
            // No check may outlast the window.
            let left = Duration::from_millis(window.closes.saturating_sub(now_ms()).max(1_000));
            let check = async {
                match &p.analysis {
                    Some(name) => precondition_analysis(spec, name, templates, fleet.clone()).await,
                    None => crate::precondition::check_http(&http, p).await,
                }
            };
            let result = tokio::time::timeout(left, check).await.unwrap_or_else(|_| {
                Err("a precondition was still being checked when the window closed".into())
            });
            if let Err(e) = result {
                failing.push(e);
            }
        }
        if failing.is_empty() && now_ms() <= window.closes {
            return (true, "schedule window open and preconditions hold".into());
        }
        if failing.is_empty() {
            failing.push("the preconditions held only after the window closed".into());
        }
        last = failing.join("; ");
        let _ = tx.try_send(Command::Gate {
            rollout: rollout.into(),
            seq,
            note: format!("preconditions not met: {last}"),
            passed: None,
        });
        let left = window.closes.saturating_sub(now_ms()) + 1;
        tokio::time::sleep(RECHECK.min(Duration::from_millis(left))).await;
    }
}

async fn precondition_analysis(
    spec: &Rollout,
    template: &str,
    templates: &[AnalysisTemplate],
    fleet: Arc<RwLock<Fleet>>,
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
    let view = runner::execute(plan, fleet, now_ms, Quiet).await;
    match view.verdict() {
        Some(Verdict::Successful) => Ok(()),
        _ => Err(format!(
            "analysis {template:?}: {:?} — {}",
            view.phase, view.message
        )),
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
            gate_seq: 0,
            gate_provenance: None,
            migration: None,
            windows,
        }
    }
}

/// The SLO windows (seconds) a rollout's analysis steps measure over with the proxy provider.
/// Proxies are asked to report them from the moment the rollout is applied, so a run's first
/// measurement finds them.
fn proxy_windows(store: &Store, rollout: &Rollout) -> Vec<u64> {
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

struct Reporter {
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
