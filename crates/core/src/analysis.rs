//! Argo-compatible analysis: `AnalysisTemplate` resources, and the pure rules that turn
//! measurements into a metric's phase and a run's phase.
//!
//! An Argo `AnalysisTemplate` or `ClusterAnalysisTemplate` (`argoproj.io/v1alpha1`) with a
//! Prometheus provider is accepted as is; Vireo's own `vireo.dev/v1alpha1` adds the `proxy`
//! provider, which reads the proxies' native SLO figures.
//!
//! Conditions (`successCondition`, `failureCondition`) are expr-lang expressions, the language
//! Argo uses, evaluated with the `expr-lang` crate over `result` (a number, or a list of numbers
//! for a Prometheus vector), with Argo's helpers `isNaN` and `isInf` added. A condition that
//! cannot be evaluated (an empty vector indexed with `result[0] >= …`, a non-boolean result)
//! makes an `Error` measurement, never a crash and never a success.
//!
//! Everything here is pure: taking measurements (HTTP to Prometheus or the proxies) and timing
//! them is the driver's job; it asks [`Metric::next_measurement_at`] when to measure and feeds
//! the values back through [`Metric::assess`].

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::spec::{argo_duration, ser_duration, Arg, FieldError, Metadata, SpecError};

/// How soon an errored measurement is retried when the metric has no `interval` (Argo: 10 s).
pub const ERROR_RETRY: Duration = Duration::from_secs(10);

/// Argo's default `consecutiveErrorLimit`.
pub const DEFAULT_CONSECUTIVE_ERROR_LIMIT: u32 = 4;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AnalysisTemplate {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    pub spec: TemplateSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TemplateSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<Arg>,
    pub metrics: Vec<Metric>,
    /// Argo's dry run: these metrics are measured and shown but do not decide the run
    /// (`metricName: "*"` for all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dry_run: Vec<DryRun>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DryRun {
    pub metric_name: String,
}

impl TemplateSpec {
    pub fn is_dry_run(&self, metric: &str) -> bool {
        self.dry_run
            .iter()
            .any(|d| d.metric_name == "*" || d.metric_name == metric)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metric {
    pub name: String,
    /// Time between measurements.
    #[serde(
        default,
        deserialize_with = "argo_duration",
        serialize_with = "ser_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub interval: Option<Duration>,
    #[serde(
        default,
        deserialize_with = "argo_duration",
        serialize_with = "ser_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub initial_delay: Option<Duration>,
    /// Measurements to take. Default: 1 without `interval`; without end with one (background
    /// analysis, which ends with the rollout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_condition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_condition: Option<String>,
    /// Limits: `-1` means no limit, as in Argo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_limit: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inconclusive_limit: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_error_limit: Option<i64>,
    pub provider: Provider,
}

/// Where measurements come from. Exactly one provider per metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Provider {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxyProvider>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusProvider>,
    /// The statistical judge: canary against stable ([`crate::judge`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<JudgeProvider>,
}

/// `provider.judge`: samples of canary and stable over the same window, compared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JudgeProvider {
    /// What to compare, from the proxies' own figures: `latency` (default) or `errors`.
    #[serde(default)]
    pub metric: JudgeMetric,
    /// Rolling window of the proxies' figures; default 1 min.
    #[serde(
        default,
        deserialize_with = "argo_duration",
        serialize_with = "ser_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub window: Option<Duration>,
    /// Which change is bad: `increase` (default), `decrease` or `either`.
    #[serde(default)]
    pub direction: crate::judge::Direction,
    /// Effect size below which a difference does not count: relative median shift for
    /// latency (default 0.1), absolute rate difference for errors (default 0.01).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<f64>,
    /// Significance level; default 0.05.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    /// Take the samples from Prometheus instead: each query's values are one version's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<JudgePrometheus>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JudgeMetric {
    #[default]
    Latency,
    Errors,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JudgePrometheus {
    pub address: String,
    pub canary: String,
    pub stable: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range_query: Option<RangeQuery>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
}

impl JudgePrometheus {
    /// One side's query as a Prometheus provider.
    pub fn provider(&self, query: &str) -> PrometheusProvider {
        PrometheusProvider {
            address: self.address.clone(),
            query: query.to_string(),
            timeout: self.timeout,
            headers: Vec::new(),
            insecure: false,
            range_query: self.range_query.clone(),
        }
    }
}

/// The proxies' own `/slo` figures (no Prometheus needed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyProvider {
    pub metric: ProxyMetric,
    /// Rolling window, 1 s – 10 min; default 1 min. Proxies report it in their heartbeats
    /// (1-second slots up to a minute, 10-second slots beyond).
    #[serde(
        default,
        deserialize_with = "argo_duration",
        serialize_with = "ser_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub window: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProxyMetric {
    SuccessRate,
    ErrorRate,
    LatencyP50,
    LatencyP95,
    LatencyP99,
    RequestRate,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrometheusProvider {
    pub address: String,
    pub query: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<Header>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
    /// Argo's range query: `start`/`end` as `now()` or `now() - 5m`, `step` a duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range_query: Option<RangeQuery>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeQuery {
    pub start: String,
    pub end: String,
    pub step: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub key: String,
    pub value: String,
}

/// A measured value: a scalar, or a Prometheus vector's sample values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    Scalar(f64),
    Vector(Vec<f64>),
}

impl Value {
    fn has_non_finite(&self) -> bool {
        match self {
            Value::Scalar(f) => !f.is_finite(),
            Value::Vector(v) => v.iter().any(|f| !f.is_finite()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MeasurementPhase {
    Successful,
    Failed,
    Inconclusive,
    Error,
}

/// Argo's analysis phases, for a metric and for a whole run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunPhase {
    Pending,
    Running,
    Successful,
    Failed,
    Error,
    Inconclusive,
}

impl RunPhase {
    pub fn is_done(self) -> bool {
        !matches!(self, RunPhase::Pending | RunPhase::Running)
    }
}

impl AnalysisTemplate {
    /// Parses YAML or JSON and validates (conditions are compiled, so a syntax error is
    /// reported at apply time with its field path, not at the first measurement).
    pub fn parse(text: &str) -> Result<AnalysisTemplate, SpecError> {
        let t: AnalysisTemplate = vireo_types::config::parse_document(text)?;
        t.validate()?;
        Ok(t)
    }

    pub fn validate(&self) -> Result<(), SpecError> {
        let mut errors = Vec::new();
        let mut err = |path: String, reason: String| errors.push(FieldError { path, reason });
        if !matches!(
            self.api_version.as_str(),
            crate::spec::API_VERSION | "argoproj.io/v1alpha1"
        ) {
            err(
                "apiVersion".into(),
                format!(
                    "must be {:?} or \"argoproj.io/v1alpha1\"",
                    crate::spec::API_VERSION
                ),
            );
        }
        if !matches!(
            self.kind.as_str(),
            "AnalysisTemplate" | "ClusterAnalysisTemplate"
        ) {
            err(
                "kind".into(),
                "must be \"AnalysisTemplate\" or \"ClusterAnalysisTemplate\"".into(),
            );
        }
        if self.spec.metrics.is_empty() {
            err("spec.metrics".into(), "needs at least one metric".into());
        }
        let mut names = std::collections::HashSet::new();
        for (i, m) in self.spec.metrics.iter().enumerate() {
            let p = format!("spec.metrics[{i}]");
            if !names.insert(m.name.as_str()) {
                err(
                    format!("{p}.name"),
                    format!("duplicate metric name {:?}", m.name),
                );
            }
            for (field, cond) in [
                ("successCondition", &m.success_condition),
                ("failureCondition", &m.failure_condition),
            ] {
                if let Some(c) = cond {
                    if let Err(e) = check_condition(c) {
                        err(format!("{p}.{field}"), e);
                    } else if let Err(e) = expr::compile(c) {
                        err(format!("{p}.{field}"), format!("{c:?} does not parse: {e}"));
                    }
                }
            }
            if m.count.is_some_and(|c| c > 1) && m.interval.is_none() {
                err(format!("{p}.interval"), "is required when count > 1".into());
            }
            if m.interval.is_some_and(|i| i.is_zero()) {
                err(format!("{p}.interval"), "must be above 0".into());
            }
            match (&m.provider.proxy, &m.provider.prometheus, &m.provider.judge) {
                (None, None, Some(j)) => {
                    if let Some(w) = j.window {
                        if w < Duration::from_secs(1) || w > vireo_types::slo::MAX_WINDOW {
                            err(
                                format!("{p}.provider.judge.window"),
                                "must be between 1s and 10m".into(),
                            );
                        }
                    }
                    if j.alpha.is_some_and(|a| !(a > 0.0 && a < 1.0)) {
                        err(
                            format!("{p}.provider.judge.alpha"),
                            "must be between 0 and 1".into(),
                        );
                    }
                    if j.tolerance.is_some_and(|t| !(t >= 0.0 && t.is_finite())) {
                        err(
                            format!("{p}.provider.judge.tolerance"),
                            "must be 0 or more".into(),
                        );
                    }
                }
                (Some(px), None, None) => {
                    if let Some(w) = px.window {
                        if w < Duration::from_secs(1) || w > vireo_types::slo::MAX_WINDOW {
                            err(
                                format!("{p}.provider.proxy.window"),
                                "must be between 1s and 10m".into(),
                            );
                        }
                    }
                }
                (None, Some(pm), None) => {
                    // An address from an arg (`{{args.prometheus}}`) is checked once rendered.
                    let ok = pm.address.contains("{{")
                        || pm.address.starts_with("http://")
                        || pm.address.starts_with("https://");
                    if !ok {
                        err(
                            format!("{p}.provider.prometheus.address"),
                            format!("{:?} is not an http(s) URL", pm.address),
                        );
                    }
                    if pm.query.trim().is_empty() {
                        err(
                            format!("{p}.provider.prometheus.query"),
                            "must not be empty".into(),
                        );
                    }
                }
                _ => err(
                    format!("{p}.provider"),
                    "set exactly one of proxy, prometheus, judge".into(),
                ),
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(SpecError { errors })
        }
    }

    /// The template's args, with step-level values overriding defaults. Every arg must end up
    /// with a value.
    pub fn resolve_args(&self, overrides: &[Arg]) -> Result<BTreeMap<String, String>, String> {
        let mut out = BTreeMap::new();
        for a in &self.spec.args {
            let value = overrides
                .iter()
                .find(|o| o.name == a.name)
                .and_then(|o| o.value.clone())
                .or_else(|| a.value.clone())
                .ok_or_else(|| format!("arg {:?} of template {:?} has no value: give one in the rollout step's args", a.name, self.metadata.name))?;
            out.insert(a.name.clone(), value);
        }
        Ok(out)
    }
}

/// Replaces `{{args.NAME}}` (spaces inside the braces allowed) with the arg's value.
pub fn render(text: &str, args: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| format!("unclosed {{{{ in {text:?}"))?;
        let name = after[..end].trim();
        let key = name
            .strip_prefix("args.")
            .ok_or_else(|| format!("{{{{{name}}}}}: only args.NAME can be used"))?;
        let value = args
            .get(key)
            .ok_or_else(|| format!("{{{{{name}}}}}: no arg named {key:?}"))?;
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

impl Metric {
    pub fn failure_limit(&self) -> u32 {
        limit(self.failure_limit, 0)
    }
    pub fn inconclusive_limit(&self) -> u32 {
        limit(self.inconclusive_limit, 0)
    }
    pub fn consecutive_error_limit(&self) -> u32 {
        limit(
            self.consecutive_error_limit,
            DEFAULT_CONSECUTIVE_ERROR_LIMIT,
        )
    }

    /// Measurements to take; `None` means until the run is stopped (background analysis).
    pub fn effective_count(&self) -> Option<u32> {
        // Argo treats `count: 0` as not set.
        match (self.count.filter(|&c| c > 0), self.interval) {
            (Some(c), _) => Some(c),
            (None, None) => Some(1),
            (None, Some(_)) => None,
        }
    }

    /// When to take the next measurement, given those taken so far (and when the last one
    /// was), for a run started at `started_ms`; `None` once the metric is decided. As in Argo,
    /// an Error measurement does not count toward `count`: it is retried after `interval`
    /// (or [`ERROR_RETRY`] without one) until `consecutiveErrorLimit` is exceeded.
    pub fn next_measurement_at(
        &self,
        started_ms: u64,
        last_ms: Option<u64>,
        taken: &[MeasurementPhase],
    ) -> Option<u64> {
        if self.phase(taken).is_done() {
            return None;
        }
        let Some(last) = last_ms else {
            return Some(started_ms.saturating_add(crate::rollout::millis(
                self.initial_delay.unwrap_or_default(),
            )));
        };
        let wait = match (self.interval, taken.last()) {
            (Some(i), _) => i,
            (None, Some(MeasurementPhase::Error)) => ERROR_RETRY,
            // Without an interval the count is 1, so a non-error measurement decided it.
            (None, _) => return None,
        };
        Some(last.saturating_add(crate::rollout::millis(wait)))
    }

    /// Judges one measurement by the metric's conditions (Argo semantics):
    /// - both conditions: failed if `failureCondition` (checked first, as Argo does), success if
    ///   `successCondition`, otherwise inconclusive;
    /// - only one: it decides, and its negation gives the other outcome;
    /// - none: successful (the value is only recorded).
    ///
    /// A provider error, or a condition that cannot be evaluated, is an `Error` measurement.
    pub fn assess(&self, value: Result<&Value, &str>) -> (MeasurementPhase, Option<String>) {
        let value = match value {
            Ok(v) => v,
            Err(e) => return (MeasurementPhase::Error, Some(e.to_string())),
        };
        // NaN and ±Inf (a ratio over no traffic, a quantile of nothing) make comparisons quietly
        // false, so `failureCondition: result > 0.01` alone, or `!(result > 0.01)`, would pass
        // on no data. With them in the value, a success counts only from a successCondition
        // that tests for them itself; anything else that would pass is an Error.
        let odd = value.has_non_finite();
        let success_handles_odd = self
            .success_condition
            .as_deref()
            .is_some_and(|c| c.contains("isNaN") || c.contains("isInf"));
        let no_data = || {
            (
                MeasurementPhase::Error,
                Some(format!(
                    "result {} is not a finite number (no data in the window?); test it with isNaN/isInf in successCondition to judge it",
                    describe(value)
                )),
            )
        };
        let eval = |cond: &Option<String>| cond.as_deref().map(|c| condition(c, value));
        let judged = match (eval(&self.success_condition), eval(&self.failure_condition)) {
            (Some(Err(e)), _) | (_, Some(Err(e))) => (MeasurementPhase::Error, Some(e)),
            (_, Some(Ok(true))) => (MeasurementPhase::Failed, None),
            (Some(Ok(true)), _) => (MeasurementPhase::Successful, None),
            (Some(Ok(false)), Some(Ok(false))) => (MeasurementPhase::Inconclusive, None),
            (Some(Ok(false)), None) => (MeasurementPhase::Failed, None),
            (None, Some(Ok(false))) | (None, None) => (MeasurementPhase::Successful, None),
        };
        match judged.0 {
            MeasurementPhase::Successful if odd && !success_handles_odd => no_data(),
            _ => judged,
        }
    }

    /// The metric's phase after these measurements (Argo's limits, in Argo's order): Failed
    /// when failures exceed `failureLimit`, Inconclusive when inconclusive ones exceed
    /// `inconclusiveLimit`, Error when trailing consecutive errors exceed
    /// `consecutiveErrorLimit`, Successful once `count` measurements that are not errors are
    /// in, else Running (Pending before the first).
    pub fn phase(&self, measurements: &[MeasurementPhase]) -> RunPhase {
        use MeasurementPhase as M;
        let count = |p: M| measurements.iter().filter(|&&m| m == p).count() as u32;
        let consecutive_errors = measurements
            .iter()
            .rev()
            .take_while(|&&m| m == M::Error)
            .count() as u32;
        let counted = measurements.len() as u32 - count(M::Error);
        if count(M::Failed) > self.failure_limit() {
            RunPhase::Failed
        } else if count(M::Inconclusive) > self.inconclusive_limit() {
            RunPhase::Inconclusive
        } else if consecutive_errors > self.consecutive_error_limit() {
            RunPhase::Error
        } else if self.effective_count().is_some_and(|c| counted >= c) {
            RunPhase::Successful
        } else if measurements.is_empty() {
            RunPhase::Pending
        } else {
            RunPhase::Running
        }
    }
}

/// A limit as written: absent takes the default; `-1` (or any negative) means no limit.
fn limit(value: Option<i64>, default: u32) -> u32 {
    match value {
        None => default,
        Some(v) if v < 0 => u32::MAX,
        Some(v) => u32::try_from(v).unwrap_or(u32::MAX),
    }
}

/// A run's phase from its metrics' phases, as Argo decides it: a Failed metric ends the run at
/// once; otherwise the run is Running until every metric is done, and then the worst phase
/// decides (Error, then Inconclusive), Successful only when every metric is.
pub fn run_phase(metrics: impl IntoIterator<Item = RunPhase>) -> RunPhase {
    let phases: Vec<RunPhase> = metrics.into_iter().collect();
    if phases.contains(&RunPhase::Failed) {
        return RunPhase::Failed;
    }
    if phases.iter().any(|p| !p.is_done()) {
        return if phases.iter().all(|&p| p == RunPhase::Pending) {
            RunPhase::Pending
        } else {
            RunPhase::Running
        };
    }
    for worst in [RunPhase::Error, RunPhase::Inconclusive] {
        if phases.contains(&worst) {
            return worst;
        }
    }
    RunPhase::Successful
}

/// The longest condition accepted.
pub const MAX_CONDITION_LEN: usize = 1024;
/// The deepest nesting of brackets accepted in a condition.
pub const MAX_CONDITION_DEPTH: usize = 8;

/// Checks a condition's shape before anything parses it. expr-lang's parser takes time
/// exponential in how deeply brackets nest: fuzzing found a 65-byte condition of unclosed
/// `[` that ran for over 10 s, and a template is parsed on the API's request path. Real
/// conditions are short and shallow (`len(result) > 0 && all(result, {# < 0.5})` nests 2).
/// Brackets inside string literals count too: erring on the safe side.
pub fn check_condition(text: &str) -> Result<(), String> {
    if text.len() > MAX_CONDITION_LEN {
        return Err(format!(
            "is {} bytes long; at most {MAX_CONDITION_LEN}",
            text.len()
        ));
    }
    let (mut depth, mut deepest) = (0usize, 0usize);
    for c in text.chars() {
        match c {
            '(' | '[' | '{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    if deepest > MAX_CONDITION_DEPTH {
        return Err(format!(
            "nests brackets {deepest} deep; at most {MAX_CONDITION_DEPTH}"
        ));
    }
    Ok(())
}

/// Evaluates one condition over `result`; anything but a boolean is an error.
pub fn condition(text: &str, value: &Value) -> Result<bool, String> {
    check_condition(text).map_err(|e| format!("condition {text:?} {e}"))?;
    let mut env = expr::Environment::new();
    env.add_function("isNaN", |c| match c.args.as_slice() {
        [expr::Value::Float(f)] => Ok(f.is_nan().into()),
        [expr::Value::Integer(_)] => Ok(false.into()),
        other => Err(expr::Error::ExprError(format!(
            "isNaN takes one number, got {other:?}"
        ))),
    });
    env.add_function("isInf", |c| match c.args.as_slice() {
        [expr::Value::Float(f)] => Ok(f.is_infinite().into()),
        [expr::Value::Integer(_)] => Ok(false.into()),
        other => Err(expr::Error::ExprError(format!(
            "isInf takes one number, got {other:?}"
        ))),
    });
    // Argo's other helpers.
    env.add_function("isNil", |c| match c.args.as_slice() {
        [v] => Ok(matches!(v, expr::Value::Nil).into()),
        other => Err(expr::Error::ExprError(format!(
            "isNil takes one argument, got {other:?}"
        ))),
    });
    env.add_function("default", |c| match c.args.as_slice() {
        [expr::Value::Nil, d] => Ok(d.clone()),
        [v, _] => Ok(v.clone()),
        other => Err(expr::Error::ExprError(format!(
            "default takes two arguments, got {other:?}"
        ))),
    });
    env.add_function("asFloat", |c| match c.args.as_slice() {
        [expr::Value::Float(f)] => Ok((*f).into()),
        [expr::Value::Integer(i)] => Ok((*i as f64).into()),
        [expr::Value::String(t)] => t
            .trim()
            .parse::<f64>()
            .map(Into::into)
            .map_err(|e| expr::Error::ExprError(format!("asFloat({t:?}): {e}"))),
        other => Err(expr::Error::ExprError(format!(
            "asFloat takes a number or a string, got {other:?}"
        ))),
    });
    env.add_function("asInt", |c| match c.args.as_slice() {
        [expr::Value::Integer(i)] => Ok((*i).into()),
        [expr::Value::Float(f)] if f.is_finite() => Ok((f.trunc() as i64).into()),
        [expr::Value::String(t)] => t
            .trim()
            .parse::<i64>()
            .map(Into::into)
            .map_err(|e| expr::Error::ExprError(format!("asInt({t:?}): {e}"))),
        other => Err(expr::Error::ExprError(format!(
            "asInt takes a number or a string, got {other:?}"
        ))),
    });
    let mut ctx = expr::Context::default();
    match value {
        Value::Scalar(f) => ctx.insert("result", *f),
        Value::Vector(v) => ctx.insert("result", v.clone()),
    }
    let mut outcome = env.eval(text, &ctx);
    // A one-sample vector (a `sum(...)` or `histogram_quantile(...)` query) also reads as its
    // number, so both `result[0] < 0.25` and the spec's `result < 0.25` work on it.
    if let (Err(_), Value::Vector(v)) = (&outcome, value) {
        if let [only] = v.as_slice() {
            let mut scalar = expr::Context::default();
            scalar.insert("result", *only);
            if let Ok(ok) = env.eval(text, &scalar) {
                outcome = Ok(ok);
            }
        }
    }
    match outcome {
        Ok(expr::Value::Bool(b)) => Ok(b),
        Ok(other) => Err(format!(
            "condition {text:?} gave {other}, not true or false"
        )),
        Err(e) => Err(format!(
            "condition {text:?} on result {}: {e}",
            describe(value)
        )),
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Scalar(f) => f.to_string(),
        Value::Vector(v) if v.is_empty() => "[] (an empty vector)".into(),
        Value::Vector(v) => format!("{v:?}"),
    }
}

pub mod run;
pub use run::{decide, Measurement, MetricView, RunView};

#[cfg(test)]
mod tests;
