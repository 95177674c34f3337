//! The driver with fake seams: a manual clock, a temp-dir store, traffic whose application
//! and drains the test decides, analyses with verdicts the test picks, workloads that record
//! what they were asked and can start late. No network, no proxy, no Prometheus.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Mutex;

use tokio::sync::Notify;
use vireo_core::clock::ManualClock;
use vireo_core::rollout::ABORT_DEADLINE;

use super::*;
use crate::runner::Report;

const T0: Millis = 1_800_000_000_000;

const TEMPLATE: &str = "apiVersion: argoproj.io/v1alpha1\nkind: AnalysisTemplate\n\
metadata: { name: canary-slo }\nspec:\n  metrics:\n    - name: success\n      \
successCondition: result >= 0.99\n      provider: { proxy: { metric: success-rate, window: 1m } }\n";

/// 5 %, an analysis, 100 % (so the rollback envelope is armed first), with a down-migration
/// that appends to `log`.
fn full_rollout(log: &std::path::Path, annotations: &str) -> Rollout {
    Rollout::parse(&format!(
        r#"
apiVersion: vireo.dev/v1alpha1
kind: Rollout
metadata: {{ name: checkout{annotations} }}
spec:
  route: checkout
  stable: {{ version: v1, addrs: ["127.0.0.1:9001"] }}
  canary: {{ version: v2, addrs: ["127.0.0.1:9002"] }}
  strategy:
    canary:
      steps:
        - setWeight: 5
        - analysis: {{ templates: [ {{ templateName: canary-slo }} ] }}
        - setWeight: 100
  rollback:
    downMigration: {{ command: "echo down >> {}" }}
"#,
        log.display()
    ))
    .unwrap()
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vireo-engine-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn open_store(dir: &std::path::Path) -> Store {
    let signer = vireo_evidence::Signer::open(dir, None).unwrap();
    Store::open(dir).unwrap().with_signer(Arc::new(signer))
}

/// Tables published, and how far targets have applied them.
#[derive(Default)]
struct FakeTraffic {
    published: Mutex<Vec<ConfigUpdate>>,
    /// Apply every table as soon as it is published.
    auto_apply: AtomicBool,
    applied_upto: AtomicU64,
    drained: AtomicBool,
}

use std::sync::atomic::AtomicBool;

impl FakeTraffic {
    /// The canary's weight in each published table, repeats folded.
    fn canary_weights(&self) -> Vec<i64> {
        let mut out: Vec<i64> = self
            .published
            .lock()
            .unwrap()
            .iter()
            .filter_map(|t| t.routes.iter().find(|r| r.name == "checkout"))
            .filter_map(|r| r.split.backends.iter().find(|b| b.name == CANARY))
            .map(|b| b.weight)
            .collect();
        out.dedup();
        out
    }
    fn newest(&self) -> u64 {
        self.published
            .lock()
            .unwrap()
            .last()
            .map_or(0, |t| t.version)
    }
    fn apply_all(&self) {
        self.applied_upto.store(self.newest(), Ordering::SeqCst);
    }
}

impl Traffic for FakeTraffic {
    fn publish(&self, table: ConfigUpdate) {
        let v = table.version;
        self.published.lock().unwrap().push(table);
        if self.auto_apply.load(Ordering::SeqCst) {
            self.applied_upto.store(v, Ordering::SeqCst);
        }
    }
    fn applied(&self, version: u64, _now: Millis) -> bool {
        self.applied_upto.load(Ordering::SeqCst) >= version
    }
    fn drained(&self, _route: &str, _backend: &str, _now: Millis) -> bool {
        self.drained.load(Ordering::SeqCst)
    }
    fn refusals(&self, _now: Millis) -> Vec<String> {
        Vec::new()
    }
}

/// Every analysis decides at once with the next verdict queued (Successful when none is).
#[derive(Default)]
struct FakeAnalyses {
    verdicts: Mutex<VecDeque<RunPhase>>,
}

use vireo_core::analysis::RunPhase;

impl Analyses for FakeAnalyses {
    fn run(&self, plan: Plan, report: Box<dyn Report>) -> BoxFuture<'static, RunView> {
        let phase = self
            .verdicts
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(RunPhase::Successful);
        let view = RunView {
            run: plan.run,
            step: plan.step,
            phase,
            started_ms: T0,
            finished_ms: Some(T0),
            message: format!("the test decided {phase:?}"),
            metrics: Vec::new(),
        };
        report.progress(&view);
        Box::pin(std::future::ready(view))
    }
}

/// Records calls; `start` waits for [`FakeWorkloads::started`] when `late` is set.
#[derive(Default)]
struct FakeWorkloads {
    calls: Mutex<Vec<String>>,
    late: AtomicBool,
    started: Arc<Notify>,
}

impl FakeWorkloads {
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

impl Workloads for FakeWorkloads {
    fn start(&self, _rollout: &str, w: &Workload) -> BoxFuture<'static, Result<(), WorkloadError>> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("start {}", w.version));
        if !self.late.load(Ordering::SeqCst) {
            return Box::pin(std::future::ready(Ok(())));
        }
        let started = self.started.clone();
        Box::pin(async move {
            started.notified().await;
            Ok(())
        })
    }
    fn stop(&self, _rollout: &str, w: &Workload) -> BoxFuture<'static, Result<(), WorkloadError>> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("stop {}", w.version));
        Box::pin(std::future::ready(Ok(())))
    }
    fn force_close(
        &self,
        _rollout: &str,
        w: &Workload,
    ) -> BoxFuture<'static, Result<(), WorkloadError>> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("force-close {}", w.version));
        Box::pin(std::future::ready(Ok(())))
    }
}

use vireo_core::spec::Workload;

struct World {
    dir: PathBuf,
    clock: Arc<ManualClock>,
    traffic: Arc<FakeTraffic>,
    analyses: Arc<FakeAnalyses>,
    workloads: Arc<FakeWorkloads>,
}

impl World {
    fn new(tag: &str) -> World {
        let traffic = FakeTraffic::default();
        traffic.auto_apply.store(true, Ordering::SeqCst);
        World {
            dir: temp_dir(tag),
            clock: Arc::new(ManualClock::new(T0)),
            traffic: Arc::new(traffic),
            analyses: Arc::default(),
            workloads: Arc::default(),
        }
    }

    fn start(&self, trust: Option<ProvenanceTrust>) -> Handle {
        let seams = Seams {
            workloads: self.workloads.clone(),
            traffic: Some(self.traffic.clone()),
            analyses: Some(self.analyses.clone()),
            clock: self.clock.clone(),
            traffic_layer: None,
        };
        Driver::start(open_store(&self.dir), seams, Vec::new(), trust).unwrap()
    }

    fn migration_log(&self) -> PathBuf {
        self.dir.join("down.log")
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Polls the rollout until `done` holds (bounded: 10 s), waking the driver each time.
async fn until(h: &Handle, what: &str, done: impl Fn(&RolloutView) -> bool) -> RolloutView {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        h.shared.wake();
        let v = h.get("checkout").await.unwrap();
        if done(&v) {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}: {:?} {}",
            v.status.phase,
            v.status.message
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn applied(h: &Handle, template: bool, rollout: Rollout) -> RolloutView {
    if template {
        h.apply_template(AnalysisTemplate::parse(TEMPLATE).unwrap())
            .await
            .unwrap();
    }
    h.apply_rollout(rollout, "token:ci").await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_sends_weight_zero_waits_for_the_drain_and_forces_it_at_the_deadline() {
    let w = World::new("abort");
    w.analyses
        .verdicts
        .lock()
        .unwrap()
        .push_back(RunPhase::Failed);
    let h = w.start(None);
    applied(&h, true, full_rollout(&w.migration_log(), "")).await;
    // The analysis fails: abort, weight 0 published and applied.
    let v = until(&h, "the abort's weight 0 applied", |v| {
        v.status.phase == Phase::Aborted && v.status.abort_to_zero_ms.is_some()
    })
    .await;
    assert_eq!(v.status.canary_weight, 0);
    assert_eq!(w.traffic.canary_weights(), vec![5, 0]);
    // The canary still has requests in flight: not stopped before the deadline.
    w.clock.advance(ABORT_DEADLINE - 1);
    h.shared.wake();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!w.workloads.calls().iter().any(|c| c.starts_with("stop")));
    assert!(!h.get("checkout").await.unwrap().status.settled);
    // At the deadline it is closed by force, then stopped.
    w.clock.advance(2);
    let v = until(&h, "the forced drain", |v| v.status.settled).await;
    assert!(v.status.drain_forced, "{:?}", v.status);
    assert_eq!(
        w.workloads.calls(),
        vec!["start v2", "force-close v2", "stop v2"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_canary_is_stopped_without_force() {
    let w = World::new("drained");
    w.analyses
        .verdicts
        .lock()
        .unwrap()
        .push_back(RunPhase::Failed);
    w.traffic.drained.store(true, Ordering::SeqCst);
    let h = w.start(None);
    applied(&h, true, full_rollout(&w.migration_log(), "")).await;
    let v = until(&h, "the drain", |v| v.status.settled).await;
    assert!(!v.status.drain_forced);
    assert!(v.status.drain_ms.is_some());
    assert_eq!(w.workloads.calls(), vec!["start v2", "stop v2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_without_provenance_fails_and_no_traffic_moves() {
    let w = World::new("gate");
    let builder = vireo_evidence::keys::SigningKey::generate().unwrap();
    let trust = ProvenanceTrust {
        keys_pem: vec![builder.public().to_pem()],
        builders: vec!["https://ci.example/builder".into()],
    };
    let h = w.start(Some(trust));
    let v = applied(&h, true, full_rollout(&w.migration_log(), "")).await;
    assert_eq!(v.status.phase, Phase::Aborted, "{}", v.status.message);
    assert!(
        v.status.message.contains("provenance"),
        "{}",
        v.status.message
    );
    assert!(
        w.traffic.canary_weights().iter().all(|&w| w == 0),
        "{:?}",
        w.traffic.canary_weights()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_holds_the_first_step_and_names_the_approver() {
    let w = World::new("approval");
    let h = w.start(None);
    let annotations = ", annotations: { vireo.dev/approval: required }";
    let v = applied(&h, true, full_rollout(&w.migration_log(), annotations)).await;
    assert_eq!(v.status.phase, Phase::AwaitingApproval);
    assert!(w.traffic.canary_weights().iter().all(|&w| w == 0));
    h.act(
        "checkout",
        Action::Approve,
        Caller::new("alice@example", None),
    )
    .await
    .unwrap();
    until(&h, "completion", |v| v.status.phase == Phase::Completed).await;
    let t = h.timeline("checkout").await.unwrap();
    let approval = t
        .entries
        .iter()
        .find(|e| e.input == Input::Action(Action::Approve))
        .unwrap();
    assert_eq!(approval.by.as_deref(), Some("alice@example"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_replays_the_envelope_and_runs_the_migration_once() {
    let w = World::new("rollback");
    let h = w.start(None);
    applied(&h, true, full_rollout(&w.migration_log(), "")).await;
    until(&h, "completion", |v| v.status.phase == Phase::Completed).await;
    h.act("checkout", Action::Rollback, Caller::new("bob", None))
        .await
        .unwrap();
    let v = until(&h, "the rollback's round trip", |v| {
        v.status
            .rollback
            .as_ref()
            .is_some_and(|r| r.round_trip_ms.is_some())
    })
    .await;
    assert_eq!(v.status.phase, Phase::RolledBack);
    let r = v.status.rollback.unwrap();
    assert_eq!(r.verified, Some(Ok(())));
    assert!(
        matches!(
            r.migration,
            vireo_core::rollout::Migration::Finished { ok: true, .. }
        ),
        "{:?}",
        r.migration
    );
    assert_eq!(
        std::fs::read_to_string(w.migration_log()).unwrap(),
        "down\n"
    );
    // Traffic went back: the last table sends nothing to the canary.
    assert_eq!(w.traffic.canary_weights().last(), Some(&0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_driver_resumes_where_the_store_left_off() {
    let w = World::new("resume");
    // Weights are not applied until the test says so.
    w.traffic.auto_apply.store(false, Ordering::SeqCst);
    {
        let h = w.start(None);
        let v = applied(&h, true, full_rollout(&w.migration_log(), "")).await;
        assert_eq!(v.status.phase, Phase::Progressing);
        assert!(v.status.applied_weights.is_empty());
        // Dropping every handle ends the driver (its channel closes).
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = w.traffic.newest();
    let h = w.start(None);
    // The restarted driver republishes the rollout's route (weight 5) and waits for it.
    let v = h.get("checkout").await.unwrap();
    assert_eq!(v.status.phase, Phase::Progressing);
    assert!(
        w.traffic.newest() > before,
        "a new table version after restart"
    );
    assert_eq!(w.traffic.canary_weights().last(), Some(&5));
    w.traffic.auto_apply.store(true, Ordering::SeqCst);
    w.traffic.apply_all();
    let v = until(&h, "completion", |v| v.status.phase == Phase::Completed).await;
    let weights: Vec<u8> = v.status.applied_weights.iter().map(|a| a.weight).collect();
    assert_eq!(weights, vec![5, 100], "each weight applied once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_that_starts_late_holds_the_rollout_until_it_reports() {
    let w = World::new("late");
    w.workloads.late.store(true, Ordering::SeqCst);
    let h = w.start(None);
    let v = applied(&h, true, full_rollout(&w.migration_log(), "")).await;
    assert_eq!(v.status.phase, Phase::Pending, "inputs wait for the canary");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        h.get("checkout").await.unwrap().status.phase,
        Phase::Pending
    );
    assert!(w.traffic.canary_weights().iter().all(|&w| w == 0));
    w.workloads.started.notify_one();
    until(&h, "completion", |v| v.status.phase == Phase::Completed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_input_the_store_cannot_record_for_a_while_is_kept_and_recorded_once() {
    let w = World::new("busy");
    w.traffic.auto_apply.store(false, Ordering::SeqCst);
    let h = w.start(None);
    applied(&h, true, full_rollout(&w.migration_log(), "")).await;
    // Another writer holds the database: the driver's writes fail as busy (after the
    // store's busy timeout) until it lets go.
    let blocker = rusqlite::Connection::open(w.dir.join("vireo.db")).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    w.traffic.apply_all(); // weight 5 applied: an input only the driver has
    h.shared.wake();
    tokio::time::sleep(Duration::from_secs(7)).await;
    blocker.execute_batch("ROLLBACK").unwrap();
    drop(blocker);
    w.traffic.auto_apply.store(true, Ordering::SeqCst);
    w.traffic.apply_all();
    let v = until(&h, "completion", |v| v.status.phase == Phase::Completed).await;
    let weights: Vec<u8> = v.status.applied_weights.iter().map(|a| a.weight).collect();
    assert_eq!(weights, vec![5, 100]);
    let recorded = h
        .timeline("checkout")
        .await
        .unwrap()
        .entries
        .iter()
        .filter(|e| e.input == Input::WeightApplied { weight: 5 })
        .count();
    assert_eq!(recorded, 1, "kept at the head of the queue, recorded once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_newest_start_counts_and_a_start_after_an_abort_is_stopped_again() {
    let w = World::new("starts");
    w.workloads.late.store(true, Ordering::SeqCst);
    w.traffic.drained.store(true, Ordering::SeqCst);
    let h = w.start(None);
    applied(&h, true, full_rollout(&w.migration_log(), "")).await;
    // Aborted while its first start is still running.
    h.act("checkout", Action::Abort, Caller::new("carol", None))
        .await
        .unwrap();
    until(&h, "the abort to settle", |v| v.status.settled).await;
    h.act("checkout", Action::Retry, Caller::new("carol", None))
        .await
        .unwrap();
    let v = h.get("checkout").await.unwrap();
    assert_eq!(
        v.status.phase,
        Phase::Pending,
        "the retry waits for its own start"
    );
    // The first start ends now: it is not the newest, so it materializes nothing.
    w.workloads.started.notify_one();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        h.get("checkout").await.unwrap().status.phase,
        Phase::Pending
    );
    // The retry's start ends: the rollout goes on to completion.
    w.workloads.started.notify_one();
    until(&h, "completion", |v| v.status.phase == Phase::Completed).await;
    let starts = w
        .workloads
        .calls()
        .iter()
        .filter(|c| *c == "start v2")
        .count();
    assert_eq!(starts, 2);

    // A second rollout generation aborted while its start runs: when the start ends, the
    // canary is stopped again.
    let w2 = World::new("start-after-abort");
    w2.workloads.late.store(true, Ordering::SeqCst);
    w2.traffic.drained.store(true, Ordering::SeqCst);
    let h2 = w2.start(None);
    applied(&h2, true, full_rollout(&w2.migration_log(), "")).await;
    h2.act("checkout", Action::Abort, Caller::new("carol", None))
        .await
        .unwrap();
    until(&h2, "the abort to settle", |v| v.status.settled).await;
    let stops = |w: &World| {
        w.workloads
            .calls()
            .iter()
            .filter(|c| *c == "stop v2")
            .count()
    };
    let before = stops(&w2);
    w2.workloads.started.notify_one();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while stops(&w2) == before {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            w2.workloads.calls()
        );
        h2.shared.wake();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
