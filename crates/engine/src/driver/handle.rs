//! The driver's way in and what it shares: [`Handle`] (the API's named commands, each a
//! [`Command`] on the driver's channel with a typed reply, and the reads that go to read-only
//! connections instead), [`Shared`] (the state the API and the proxies' endpoints read
//! without the driver: the fleet, the tables, the flag set) and [`ApiError`].

use super::*;

/// What the driver and the API share.
pub struct Shared {
    /// The proxies as their heartbeats describe them (the embedded traffic and analyses read it).
    pub fleet: Arc<RwLock<Fleet>>,
    /// A recent SLO series per route and backend, sampled from the fleet as reports arrive
    /// (lock order: `fleet`, then this).
    pub slo_series: std::sync::Mutex<vireo_core::fleet::series::Series>,
    /// The route tables the proxies long-poll.
    pub tables: Arc<Tables>,
    /// The engine's clock (heartbeats are stamped with it).
    pub clock: Arc<dyn Clock>,
    pub(super) wake: Notify,
    /// The flags as last stored (swapped whole on each change; OFREP reads it lock-free).
    pub flags: ArcSwap<FlagSet>,
    /// Every rollout's cohort as of the route table last published.
    pub cohorts: ArcSwap<Cohorts>,
    /// The newest committed event's `seq`: SSE followers wait on it, then read the log.
    pub latest_event: Arc<watch::Sender<u64>>,
    /// The database, for readers with connections of their own (events, SSE, DORA, evidence).
    pub db: std::path::PathBuf,
    /// The store's signer, for readers that answer with receipts and checkpoints.
    pub signer: Option<Arc<vireo_evidence::Signer>>,
    /// Bounds the store readers at work at once (each holds a blocking thread and a
    /// connection): a burst of evidence requests queues instead of exhausting either.
    pub(super) readers: tokio::sync::Semaphore,
    /// Flag-evaluation events, written in batches off the request path.
    pub eval_events: EvalWriter,
    /// This control plane in event sources (`/vireo/<instance>/…`).
    pub instance: String,
    /// Ids of evaluation events: `<boot ms>-<n>`, unique across restarts.
    pub(super) eval_ids: (u64, AtomicU64),
    /// The event sink's loop, when `--event-sink` is set (set once, at start).
    pub sink: std::sync::OnceLock<Arc<crate::sink::SinkStatus>>,
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
        let now = self.clock.now_ms();
        let mut fleet = self.fleet.write().unwrap_or_else(|e| e.into_inner());
        fleet.record(report, now);
        self.sample(&fleet, now);
        drop(fleet);
        self.wake.notify_one();
    }

    /// Samples the SLO series (at most every two seconds; cheap otherwise).
    fn sample(&self, fleet: &Fleet, now: Millis) {
        self.slo_series
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .sample(fleet, now);
    }

    /// Records a proxy's report and returns how long it should wait before its next
    /// keep-alive report (milliseconds), spaced by the fleet's size
    /// ([`vireo_core::fleet::report_every`]). A proxy with an open watch stream (`streaming`)
    /// stays connected for three of those; one without, for
    /// [`vireo_core::fleet::CONNECTED_FOR`] (it heartbeats every second).
    pub fn report(&self, report: StatusReport, streaming: bool) -> u64 {
        let now = self.clock.now_ms();
        let every = {
            let mut fleet = self.fleet.write().unwrap_or_else(|e| e.into_inner());
            let every = vireo_core::fleet::report_every(fleet.connected_count(now) + 1);
            let lasts = if streaming {
                vireo_core::fleet::deadline_after(every)
            } else {
                vireo_core::fleet::CONNECTED_FOR
            };
            fleet.record_until(report, now, now + lasts);
            self.sample(&fleet, now);
            every
        };
        self.wake.notify_one();
        every
    }

    /// A proxy's last watch stream closed: it is waited for a few seconds more at most.
    pub fn disconnected(&self, proxy: &str) {
        self.fleet
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .disconnect(proxy, self.clock.now_ms());
        self.wake.notify_one();
    }

    /// Wakes the driver to look at the world again (what heartbeats do; tests that move a
    /// manual clock do it too).
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// Errors as the API reports them.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Invalid(SpecError),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// Authenticated, but this caller may not do this (four-eyes approval).
    #[error("{0}")]
    Forbidden(String),
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

pub(super) type Reply<T> = oneshot::Sender<Result<T, ApiError>>;

pub(super) enum Command {
    /// A rollout, and who applied it.
    ApplyRollout(Box<Rollout>, String, Reply<RolloutView>),
    ApplyTemplate(Box<AnalysisTemplate>, Reply<()>),
    Act(String, Action, Caller, Reply<RolloutView>),
    Get(String, Reply<RolloutView>),
    ScheduleStatus(String, Reply<vireo_api::ScheduleStatus>),
    List(Reply<Vec<RolloutView>>),
    Timeline(String, Reply<Timeline>),
    /// Evidence reads and writes, answered from the store on the driver's task.
    Evidence(evidence::Query),
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
        check: Option<vireo_api::ScheduleCheck>,
    },
    PutFlag(Box<Flag>, Reply<Flag>),
    /// Enable (`true`) or disable a flag, by whom.
    ToggleFlag(String, bool, String, Reply<Flag>),
    /// Ingest events: (new, already stored).
    Ingest(Vec<CloudEvent>, Reply<(usize, usize)>),
    /// A workload call that took a while ended.
    Workload {
        rollout: String,
        generation: u64,
        op: effects::WorkloadOp,
        result: Result<(), WorkloadError>,
    },
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
    pub(super) tx: mpsc::Sender<Command>,
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

    /// Applies a rollout on behalf of `actor` (recorded: a four-eyes approval needs someone else).
    pub async fn apply_rollout(&self, r: Rollout, actor: &str) -> Result<RolloutView, ApiError> {
        self.call(|reply| Command::ApplyRollout(Box::new(r), actor.to_string(), reply))
            .await
    }
    pub async fn apply_template(&self, t: AnalysisTemplate) -> Result<(), ApiError> {
        self.call(|reply| Command::ApplyTemplate(Box::new(t), reply))
            .await
    }
    /// An action by `caller` (the API caller's identity and reason, recorded on the timeline).
    pub async fn act(
        &self,
        name: &str,
        action: Action,
        caller: Caller,
    ) -> Result<RolloutView, ApiError> {
        self.call(|reply| Command::Act(name.to_string(), action, caller, reply))
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

    /// A rollout's schedule, where its gate stands, and the gate's checks so far.
    pub async fn schedule_status(&self, name: &str) -> Result<vireo_api::ScheduleStatus, ApiError> {
        self.call(|reply| Command::ScheduleStatus(name.to_string(), reply))
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

    /// A generation's timeline (`None`: the current one), from a reader.
    pub async fn timeline_of(
        &self,
        name: &str,
        generation: Option<u64>,
    ) -> Result<Timeline, ApiError> {
        let name = name.to_string();
        self.read_api(move |s| super::views::timeline(s, &name, generation))
            .await
    }

    /// An analysis template by name.
    pub async fn template(&self, name: &str) -> Result<Option<AnalysisTemplate>, ApiError> {
        let name = name.to_string();
        self.read(move |s| s.template(&name)).await
    }

    /// Every route a generation (`None`: the current one) published, in order.
    pub async fn route_history(
        &self,
        name: &str,
        generation: Option<u64>,
    ) -> Result<vireo_api::RouteHistory, ApiError> {
        let name = name.to_string();
        self.read_api(move |s| super::views::route_history(s, &name, generation))
            .await
    }

    /// Every kept generation of a rollout, newest first.
    pub async fn generations(&self, name: &str) -> Result<vireo_api::Generations, ApiError> {
        let name = name.to_string();
        self.read_api(move |s| super::views::generations(s, &name))
            .await
    }

    /// What a generation (`None`: the current one) has in the log.
    pub async fn evidence_index(
        &self,
        name: &str,
        generation: Option<u64>,
    ) -> Result<vireo_api::EvidenceIndex, ApiError> {
        let name = name.to_string();
        self.read_api(move |s| super::views::evidence_index(s, &name, generation))
            .await
    }

    /// What rolling the current generation back would do (the armed envelope's summary), and
    /// the proxies connected now (each is sent weight 0).
    pub async fn rollback_preview(
        &self,
        name: &str,
    ) -> Result<vireo_api::RollbackPreview, ApiError> {
        let name = name.to_string();
        let mut preview = self
            .read_api(move |s| super::views::rollback_preview(s, &name))
            .await?;
        let now = self.shared.clock.now_ms();
        let fleet = self.shared.fleet.read().unwrap_or_else(|e| e.into_inner());
        preview.proxies = fleet.connected(now).map(|r| r.proxy.clone()).collect();
        Ok(preview)
    }

    /// A rollout's evidence bundle: (files, log size, checkpoint, log origin).
    pub async fn evidence_files(&self, name: &str) -> Result<EvidenceFiles, ApiError> {
        self.evidence_files_of(name, None).await
    }

    /// The evidence bundle's files of one kept generation (`None`: the current one).
    pub async fn evidence_files_of(
        &self,
        name: &str,
        generation: Option<u64>,
    ) -> Result<EvidenceFiles, ApiError> {
        let name = name.to_string();
        self.read_api(move |s| super::views::evidence_files(s, &name, generation))
            .await
    }

    /// The log's current signed checkpoint.
    pub async fn log_checkpoint(&self) -> Result<String, ApiError> {
        self.read(|s| s.log_checkpoint()).await
    }

    /// Log entry `index` with its receipt.
    pub async fn log_entry(&self, index: u64) -> Result<Option<LogEntry>, ApiError> {
        self.read(move |s| s.log_entry(index)).await
    }

    /// The roots of sizes `from` and `to` and the consistency proof between them.
    pub async fn log_consistency(
        &self,
        from: u64,
        to: u64,
    ) -> Result<Option<Consistency>, ApiError> {
        self.read(move |s| s.log_consistency(from, to)).await
    }

    /// Recomputes a recorded decision and records the outcome.
    pub async fn replay(&self, decision: &str) -> Result<Outcome, ApiError> {
        let decision = decision.to_string();
        self.call(|reply| Command::Evidence(evidence::Query::Replay(decision, reply)))
            .await
    }

    /// Recomputes every recorded decision: (id, outcome), in log order.
    pub async fn replay_all(&self) -> Result<Vec<(String, Outcome)>, ApiError> {
        self.call(|reply| Command::Evidence(evidence::Query::ReplayAll(reply)))
            .await
    }

    /// The replays of a rollout's decisions, newest first (at most 500).
    pub async fn replays_for(
        &self,
        rollout: &str,
    ) -> Result<Vec<vireo_store::ReplayRecord>, ApiError> {
        let rollout = rollout.to_string();
        self.read(move |s| s.replays_for(&rollout, 500)).await
    }

    /// Replays run so far: (total, matches).
    pub async fn replay_totals(&self) -> Result<(u64, u64), ApiError> {
        self.read(|s| s.replay_totals()).await
    }

    /// Files an uploaded provenance envelope (`Err` inside: it is not SLSA provenance).
    pub async fn put_attestation(
        &self,
        envelope: Envelope,
    ) -> Result<Result<Filed, String>, ApiError> {
        self.call(|reply| Command::Evidence(evidence::Query::Attest(Box::new(envelope), reply)))
            .await
    }

    /// The events DORA is computed from.
    pub async fn dora_events(&self) -> Result<Vec<CloudEvent>, ApiError> {
        self.read(|s| s.dora_events()).await
    }

    /// [`Handle::read`] for a query that answers in API terms (not found, invalid).
    async fn read_api<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Store) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        // The snapshot's error type is the store's: the API error rides inside its `Ok`.
        self.read(move |s| Ok(query(s))).await?
    }

    /// A query on a read-only connection of its own, on a blocking thread, in one snapshot:
    /// reads neither wait behind the driver's writes nor block an async worker.
    async fn read<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let _permit = self
            .shared
            .readers
            .acquire()
            .await
            .map_err(|e| ApiError::Internal(format!("store readers closed: {e}")))?;
        let (db, signer) = (self.shared.db.clone(), self.shared.signer.clone());
        tokio::task::spawn_blocking(move || {
            Store::open_reader(&db, signer).and_then(|s| s.snapshot(query))
        })
        .await
        .map_err(|e| ApiError::Internal(format!("a store reader failed: {e}")))?
        .map_err(ApiError::from)
    }
}
