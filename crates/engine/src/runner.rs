//! Analysis runs: taking an analysis step's measurements on their schedule and judging them.
//!
//! A [`Plan`] is built when the state machine asks for `StartAnalysis`: the step's templates
//! with their args resolved (the rollout's route is passed as the `route` arg unless the step
//! gives one), each metric's provider query rendered. [`execute`] then measures each metric at
//! the times [`Metric::next_measurement_at`] gives (Argo's `initialDelay`, `interval`, `count`,
//! error retries), judges every measurement with the metric's conditions, and reports the run's
//! progress and, once [`run_phase`] decides it, its verdict. Judging is the pure code in
//! [`vireo_core::analysis`]; this module only schedules and fetches.
//!
//! Providers: `proxy` reads the fleet's heartbeat figures for the metric's route and backend
//! (args `route` and `backend`, default the rollout's route and `canary`); `prometheus` runs
//! the rendered PromQL ([`crate::prometheus`]).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::prometheus;
use futures_util::future::BoxFuture;
use vireo_core::analysis::{
    AnalysisTemplate, Measurement, MeasurementPhase, Metric, MetricView, RunPhase, RunView, Value,
};
use vireo_core::clock::Clock;
use vireo_core::fleet::Fleet;
use vireo_core::rollout::Millis;
use vireo_core::routes::CANARY;
use vireo_core::spec::{AnalysisStep, Arg, Rollout};

/// The proxy provider's window when a metric gives none (as in the spec's example).
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(60);

/// The heartbeat window (seconds) a metric reads from the proxies, if it does.
pub fn proxy_window(m: &Metric) -> Option<u64> {
    let p = &m.provider;
    match (&p.proxy, &p.judge) {
        (Some(px), _) => Some(window_secs(px.window.unwrap_or(DEFAULT_WINDOW))),
        (_, Some(j)) if j.prometheus.is_none() => {
            Some(window_secs(j.window.unwrap_or(DEFAULT_WINDOW)))
        }
        _ => None,
    }
}

/// A window in whole seconds, rounded up (heartbeats report whole-second windows).
pub fn window_secs(w: Duration) -> u64 {
    w.as_millis().div_ceil(1000).max(1) as u64
}

/// One metric, ready to measure (a Prometheus provider's address, query and header values
/// have their args substituted).
#[derive(Debug, Clone)]
pub struct Planned {
    pub template: String,
    pub metric: Metric,
    pub route: String,
    pub backend: String,
    /// Measured and shown, but not counted (Argo's `dryRun`).
    pub dry_run: bool,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub run: u64,
    pub step: usize,
    pub metrics: Vec<Planned>,
}

impl Plan {
    /// Resolves the step's templates (looked up by `template`) into metrics to measure.
    pub fn build(
        rollout: &Rollout,
        step: usize,
        run: u64,
        analysis: &AnalysisStep,
        template: impl Fn(&str) -> Option<AnalysisTemplate>,
    ) -> Result<Plan, String> {
        let mut overrides = analysis.args.clone();
        if !overrides.iter().any(|a| a.name == "route") {
            overrides.push(Arg {
                name: "route".into(),
                value: Some(rollout.spec.route.clone()),
            });
        }
        let mut metrics = Vec::new();
        for r in &analysis.templates {
            let t = template(&r.template_name)
                .ok_or_else(|| format!("no AnalysisTemplate named {:?}", r.template_name))?;
            let args = t.resolve_args(&overrides)?;
            let arg = |name: &str| {
                args.get(name)
                    .cloned()
                    .or_else(|| overrides.iter().find(|a| a.name == name)?.value.clone())
            };
            for m in &t.spec.metrics {
                let mut metric = m.clone();
                if let Some(j) = &mut metric.provider.judge {
                    // Without conditions, the judge's bad direction fails the metric.
                    if metric.success_condition.is_none() && metric.failure_condition.is_none() {
                        metric.success_condition =
                            Some(j.direction.default_condition().to_string());
                    }
                    if let Some(p) = &mut j.prometheus {
                        p.address = vireo_core::analysis::render(&p.address, &args)?;
                        p.canary = vireo_core::analysis::render(&p.canary, &args)?;
                        p.stable = vireo_core::analysis::render(&p.stable, &args)?;
                    }
                }
                if let Some(p) = &mut metric.provider.prometheus {
                    p.address = vireo_core::analysis::render(&p.address, &args)?;
                    p.query = vireo_core::analysis::render(&p.query, &args)?;
                    for h in &mut p.headers {
                        h.value = vireo_core::analysis::render(&h.value, &args)?;
                    }
                }
                metrics.push(Planned {
                    template: r.template_name.clone(),
                    metric,
                    route: arg("route").unwrap_or_else(|| rollout.spec.route.clone()),
                    backend: arg("backend").unwrap_or_else(|| CANARY.to_string()),
                    dry_run: t.spec.is_dry_run(&m.name),
                });
            }
        }
        Ok(Plan { run, step, metrics })
    }

    /// Every proxy window the plan measures over, in seconds (what heartbeats must carry).
    pub fn proxy_windows_s(&self) -> Vec<u64> {
        self.metrics
            .iter()
            .filter_map(|p| proxy_window(&p.metric))
            .collect()
    }
}

/// A new run of `plan`, started at `now`, nothing measured yet.
fn new_view(plan: &Plan, now: Millis) -> RunView {
    RunView {
        run: plan.run,
        step: plan.step,
        phase: RunPhase::Pending,
        started_ms: now,
        finished_ms: None,
        message: String::new(),
        metrics: plan
            .metrics
            .iter()
            .map(|p| MetricView {
                name: p.metric.name.clone(),
                phase: RunPhase::Pending,
                dry_run: p.dry_run,
                measurements: Vec::new(),
            })
            .collect(),
    }
}

/// Where [`execute`] reports to.
pub trait Report: Send + 'static {
    fn progress(&self, view: &RunView);
}

impl Report for Box<dyn Report> {
    fn progress(&self, view: &RunView) {
        (**self).progress(view)
    }
}

/// The analysis seam: how the engine runs a planned analysis and learns its verdict.
/// [`Embedded`] measures here (the proxies' heartbeat figures, Prometheus, the judge); a test
/// gives verdicts of its own, and another provider (a Kubernetes Job, a vendor's API) could
/// slot in the same way. The future resolves with the decided run; dropping it cancels.
pub trait Analyses: Send + Sync {
    fn run(&self, plan: Plan, report: Box<dyn Report>) -> BoxFuture<'static, RunView>;
}

/// Runs analyses in this process with [`execute`].
pub struct Embedded {
    pub fleet: Arc<RwLock<Fleet>>,
    pub clock: Arc<dyn Clock>,
}

impl Analyses for Embedded {
    fn run(&self, plan: Plan, report: Box<dyn Report>) -> BoxFuture<'static, RunView> {
        let clock = self.clock.clone();
        Box::pin(execute(
            plan,
            self.fleet.clone(),
            move || clock.now_ms(),
            report,
        ))
    }
}

/// Measures the plan's metrics on their schedule until the run is decided, reporting progress
/// after every round. Returns the finished view. Cancel by dropping (aborting) the task.
pub async fn execute(
    plan: Plan,
    fleet: Arc<RwLock<Fleet>>,
    clock: impl Fn() -> Millis + Send + 'static,
    report: impl Report,
) -> RunView {
    let started = clock();
    let mut view = new_view(&plan, started);
    let mut taken: Vec<Vec<MeasurementPhase>> = vec![Vec::new(); plan.metrics.len()];
    let mut last: Vec<Option<Millis>> = vec![None; plan.metrics.len()];
    let http = prometheus::client();
    report.progress(&view);
    loop {
        let due: BTreeMap<usize, Millis> = plan
            .metrics
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                p.metric
                    .next_measurement_at(started, last[i], &taken[i])
                    .map(|t| (i, t))
            })
            .collect();
        let Some(&next) = due.values().min() else {
            break; // every metric decided
        };
        let now = clock();
        if next > now {
            tokio::time::sleep(Duration::from_millis(next - now)).await;
        } else {
            // Never spin without yielding: cancellation (abort) takes effect at an await.
            tokio::task::yield_now().await;
        }
        let now = clock();
        for (&i, _) in due.iter().filter(|(_, &t)| t <= now) {
            let p = &plan.metrics[i];
            let measured = measure(p, &fleet, &http, now).await;
            let (value, note) = match measured {
                Ok((v, note)) => (Ok(v), note),
                Err(e) => (Err(e), None),
            };
            let (phase, message) = p.metric.assess(value.as_ref().map_err(|e| e.as_str()));
            let message = message.or(note);
            taken[i].push(phase);
            last[i] = Some(now);
            let m = &mut view.metrics[i];
            m.measurements.push(Measurement {
                at_ms: now,
                phase,
                value: value.ok(),
                message,
            });
            m.phase = p.metric.phase(&taken[i]);
        }
        view.phase = view.decided();
        if view.phase.is_done() {
            break;
        }
        report.progress(&view);
    }
    // A run with no metric left to measure and none failed is decided by its metrics' phases.
    view.phase = view.decided();
    if !view.phase.is_done() {
        view.phase = RunPhase::Error; // unreachable with validated templates; never hang
    }
    view.finished_ms = Some(clock());
    view.message = view.summary();
    report.progress(&view);
    view
}

/// One measurement: the value, and a note worth keeping beside it (the judge's figures).
async fn measure(
    p: &Planned,
    fleet: &RwLock<Fleet>,
    http: &prometheus::HttpClient,
    now: Millis,
) -> Result<(Value, Option<String>), String> {
    if let Some(j) = &p.metric.provider.judge {
        let judgement = judge(p, j, fleet, http, now).await?;
        return Ok((
            Value::Scalar(judgement.outcome.score()),
            Some(judgement.to_string()),
        ));
    }
    measure_value(p, fleet, http, now).await.map(|v| (v, None))
}

async fn judge(
    p: &Planned,
    j: &vireo_core::analysis::JudgeProvider,
    fleet: &RwLock<Fleet>,
    http: &prometheus::HttpClient,
    now: Millis,
) -> Result<vireo_core::judge::Judgement, String> {
    use vireo_core::analysis::JudgeMetric;
    use vireo_core::judge::{samples, Effect};
    let (canary, stable, effect) = match &j.prometheus {
        Some(q) => {
            let t = now as f64 / 1000.0;
            let c = prometheus::query(http, &q.provider(&q.canary), t)
                .await
                .map_err(|e| e.to_string())?;
            let s = prometheus::query(http, &q.provider(&q.stable), t)
                .await
                .map_err(|e| e.to_string())?;
            let flat = |v: Value| match v {
                Value::Scalar(x) => vec![x],
                Value::Vector(xs) => xs,
            };
            (flat(c), flat(s), Effect::Relative)
        }
        None => {
            let w = window_secs(j.window.unwrap_or(DEFAULT_WINDOW));
            let fleet = fleet.read().unwrap_or_else(|e| e.into_inner());
            match j.metric {
                JudgeMetric::Latency => (
                    samples(&fleet.latency_histogram(&p.route, &p.backend, w, now)),
                    samples(&fleet.latency_histogram(&p.route, vireo_core::routes::STABLE, w, now)),
                    Effect::Relative,
                ),
                JudgeMetric::Errors => {
                    let side = |backend: &str| {
                        let a = fleet.aggregate(&p.route, backend, Some(w), now);
                        let failures = a.failures.min(a.requests);
                        samples(&[(1.0, failures), (0.0, a.requests - failures)])
                    };
                    (
                        side(&p.backend),
                        side(vireo_core::routes::STABLE),
                        Effect::Absolute,
                    )
                }
            }
        }
    };
    vireo_core::judge::judge(
        &canary,
        &stable,
        j.direction,
        effect,
        j.tolerance.unwrap_or(effect.default_tolerance()),
        j.alpha.unwrap_or(vireo_core::judge::DEFAULT_ALPHA),
    )
}

async fn measure_value(
    p: &Planned,
    fleet: &RwLock<Fleet>,
    http: &prometheus::HttpClient,
    now: Millis,
) -> Result<Value, String> {
    if let Some(proxy) = &p.metric.provider.proxy {
        let fleet = fleet.read().unwrap_or_else(|e| e.into_inner());
        let window = proxy.window.unwrap_or(DEFAULT_WINDOW);
        let agg = fleet.aggregate(&p.route, &p.backend, Some(window_secs(window)), now);
        return agg
            .value(proxy.metric)
            .map_err(|e| format!("{}/{}: {e}", p.route, p.backend));
    }
    match &p.metric.provider.prometheus {
        Some(provider) => prometheus::query(http, provider, now as f64 / 1000.0)
            .await
            .map_err(|e| e.to_string()),
        None => Err(format!(
            "template {:?}, metric {:?}: no provider",
            p.template, p.metric.name
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vireo_types::wire::StatusReport;
    use vireo_types::wire::{BackendSlo, SloReport};

    /// A fleet of one proxy whose canary answered `ok` of 100 requests in the last 60 s.
    fn fleet(ok: u64) -> Arc<RwLock<Fleet>> {
        let slo = BackendSlo {
            requests: 100,
            failures: 100 - ok,
            success_ratio: None,
            latency_p50_s: Some(0.01),
            latency_p95_s: Some(0.02),
            latency_p99_s: Some(0.03),
            in_flight: 0,
            latency_histogram: Vec::new(),
        };
        let slo = SloReport {
            window_s: 60,
            routes: [("r".to_string(), [("canary".to_string(), slo)].into())].into(),
        };
        one_proxy(slo, Default::default())
    }

    /// A fleet of one proxy heard at time 0.
    fn one_proxy(
        slo: SloReport,
        slo_windows: std::collections::BTreeMap<u64, SloReport>,
    ) -> Arc<RwLock<Fleet>> {
        let mut f = Fleet::default();
        f.record(
            StatusReport {
                proxy: "p".into(),
                applied_version: 1,
                in_flight: Default::default(),
                slo,
                slo_windows,
                rejected: None,
            },
            0,
        );
        Arc::new(RwLock::new(f))
    }

    struct Quiet;
    impl Report for Quiet {
        fn progress(&self, _: &RunView) {}
    }

    fn plan(template: &str) -> Plan {
        let t = AnalysisTemplate::parse(template).unwrap();
        let rollout = vireo_core::spec::Rollout::parse(vireo_core::testdata::ROLLOUT).unwrap();
        let step = AnalysisStep {
            templates: vec![vireo_core::spec::TemplateRef {
                template_name: t.metadata.name.clone(),
            }],
            args: vec![Arg {
                name: "route".into(),
                value: Some("r".into()),
            }],
        };
        Plan::build(&rollout, 2, 1, &step, |_| Some(t.clone())).unwrap()
    }

    /// One proxy reporting 60 s histograms: stable around 10 ms, canary around `canary_ms`.
    fn histograms(canary_ms: u64) -> Arc<RwLock<Fleet>> {
        use vireo_types::slo::latency_bucket;
        let backend = |ms: u64| {
            // 400 requests spread over ms·[0.8, 1.2)
            let mut counts = std::collections::BTreeMap::new();
            for i in 0..400u64 {
                let us = ms * 1000 * (80 + i % 40) / 100;
                *counts.entry(latency_bucket(us) as u32).or_insert(0u64) += 1;
            }
            BackendSlo {
                requests: 400,
                failures: 0,
                success_ratio: Some(1.0),
                latency_p50_s: None,
                latency_p95_s: None,
                latency_p99_s: None,
                in_flight: 0,
                latency_histogram: counts.into_iter().collect(),
            }
        };
        let report = SloReport {
            window_s: 60,
            routes: [(
                "r".to_string(),
                [
                    ("canary".to_string(), backend(canary_ms)),
                    ("stable".to_string(), backend(10)),
                ]
                .into(),
            )]
            .into(),
        };
        let empty = SloReport {
            window_s: 60,
            routes: Default::default(),
        };
        one_proxy(empty, [(60, report)].into())
    }

    #[tokio::test]
    async fn the_judge_compares_canary_with_stable_from_the_proxies_histograms() {
        let template = "apiVersion: vireo.dev/v1alpha1
kind: AnalysisTemplate
metadata: { name: t }
spec:
  metrics:
    - name: latency
      provider: { judge: { metric: latency, direction: increase } }
";
        let slow = execute(plan(template), histograms(13), || 0, Quiet).await;
        assert_eq!(slow.phase, RunPhase::Failed, "{slow:?}");
        let m = &slow.metrics[0].measurements[0];
        assert_eq!(m.value, Some(Value::Scalar(1.0)));
        assert!(m.message.as_deref().unwrap().starts_with("High"), "{m:?}");
        let same = execute(plan(template), histograms(10), || 0, Quiet).await;
        assert_eq!(same.phase, RunPhase::Successful, "{same:?}");
        assert!(same.metrics[0].measurements[0]
            .message
            .as_deref()
            .unwrap()
            .starts_with("Pass"));
        let faster = execute(plan(template), histograms(7), || 0, Quiet).await;
        assert_eq!(
            faster.phase,
            RunPhase::Successful,
            "faster is fine with direction increase"
        );
        // No histograms for the window: an Error, not a pass.
        let strict = template.replace(
            "    - name: latency\n",
            "    - name: latency\n      interval: 1ms\n      consecutiveErrorLimit: 0\n",
        );
        let none = execute(plan(&strict), fleet(100), vireo_core::clock::now_ms, Quiet).await;
        assert_eq!(none.phase, RunPhase::Error, "{none:?}");
        assert!(none.metrics[0].measurements[0]
            .message
            .as_deref()
            .unwrap()
            .contains("too few samples"));
    }

    #[tokio::test]
    async fn dry_run_metrics_are_measured_but_do_not_decide() {
        let p = plan(
            "apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: { name: t }
spec:
  args: [ { name: route } ]
  dryRun: [ { metricName: strict } ]
  metrics:
    - name: strict
      successCondition: result > 0.99
      provider: { proxy: { metric: success-rate } }
    - name: lenient
      successCondition: result > 0.5
      provider: { proxy: { metric: success-rate } }
",
        );
        let view = execute(p, fleet(90), || 0, Quiet).await;
        assert_eq!(view.phase, RunPhase::Successful, "{view:?}");
        assert_eq!(view.metrics[0].phase, RunPhase::Failed);
        assert!(view.metrics[0].dry_run);
        assert!(
            view.message.contains("strict (dry run) Failed"),
            "{}",
            view.message
        );
    }

    #[tokio::test]
    async fn a_failing_metric_fails_the_run_and_an_unreachable_prometheus_is_an_error() {
        let failing = plan(
            "apiVersion: vireo.dev/v1alpha1
kind: AnalysisTemplate
metadata: { name: t }
spec:
  metrics:
    - name: sr
      successCondition: result > 0.99
      provider: { proxy: { metric: success-rate } }
",
        );
        assert_eq!(
            execute(failing, fleet(90), || 0, Quiet).await.phase,
            RunPhase::Failed
        );
        // Nothing listens on port 9 of loopback: every measurement is an Error, the run too.
        let down = plan(
            "apiVersion: vireo.dev/v1alpha1
kind: AnalysisTemplate
metadata: { name: t }
spec:
  metrics:
    - name: q
      interval: 1ms
      count: 3
      consecutiveErrorLimit: 1
      successCondition: result[0] < 1
      provider: { prometheus: { address: http://127.0.0.1:9, query: up } }
",
        );
        let view = execute(down, fleet(90), vireo_core::clock::now_ms, Quiet).await;
        assert_eq!(view.phase, RunPhase::Error, "{view:?}");
        let m = &view.metrics[0].measurements;
        assert_eq!(
            m.len(),
            2,
            "consecutiveErrorLimit 1: the second error decides"
        );
        assert!(
            m[0].message.as_deref().unwrap().contains("unreachable"),
            "{m:?}"
        );
    }
}
