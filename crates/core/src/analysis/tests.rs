use std::time::Duration;

use super::*;
use MeasurementPhase::{Error as E, Failed as F, Inconclusive as I, Successful as S};

/// The spec's example (shared/spec/control.md).
const VIREO_TEMPLATE: &str = r#"
apiVersion: vireo.dev/v1alpha1
kind: AnalysisTemplate
metadata: { name: canary-slo }
spec:
  args: [ { name: route }, { name: backend, value: canary } ]
  metrics:
    - name: success-rate
      interval: 30s
      count: 3
      failureLimit: 0
      successCondition: result >= 0.99
      provider:
        proxy: { metric: success-rate, window: 1m }
    - name: p95-latency
      interval: 30s
      count: 3
      successCondition: result < 0.25
      provider:
        prometheus:
          address: http://127.0.0.1:9090
          query: histogram_quantile(0.95, sum(rate(vireo_request_duration_seconds_bucket{route="{{args.route}}",backend="{{args.backend}}"}[1m])) by (le))
"#;

/// Argo Rollouts' documented example, unchanged.
const ARGO_TEMPLATE: &str = r#"
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: success-rate
spec:
  args:
  - name: service-name
  metrics:
  - name: success-rate
    interval: 5m
    successCondition: result[0] >= 0.95
    failureLimit: 3
    provider:
      prometheus:
        address: http://prometheus.example.com:9090
        query: |
          sum(irate(
            istio_requests_total{reporter="source",destination_service=~"{{args.service-name}}",response_code!~"5.*"}[5m]
          )) /
          sum(irate(
            istio_requests_total{reporter="source",destination_service=~"{{args.service-name}}"}[5m]
          ))
"#;

fn metric(success: Option<&str>, failure: Option<&str>) -> Metric {
    let t = AnalysisTemplate::parse(VIREO_TEMPLATE).unwrap();
    let mut m = t.spec.metrics[0].clone();
    m.success_condition = success.map(str::to_string);
    m.failure_condition = failure.map(str::to_string);
    m
}

#[test]
fn parses_the_spec_example_and_renders_its_query() {
    let t = AnalysisTemplate::parse(VIREO_TEMPLATE).unwrap();
    assert_eq!(t.spec.metrics.len(), 2);
    let px = t.spec.metrics[0].provider.proxy.as_ref().unwrap();
    assert_eq!(
        (px.metric, px.window),
        (ProxyMetric::SuccessRate, Some(Duration::from_secs(60)))
    );
    let args = t
        .resolve_args(&[Arg {
            name: "route".into(),
            value: Some("checkout".into()),
        }])
        .unwrap();
    let q = render(
        &t.spec.metrics[1]
            .provider
            .prometheus
            .as_ref()
            .unwrap()
            .query,
        &args,
    )
    .unwrap();
    assert!(q.contains(r#"{route="checkout",backend="canary"}"#), "{q}");
}

#[test]
fn an_argo_template_is_accepted_unchanged() {
    let t = AnalysisTemplate::parse(ARGO_TEMPLATE).unwrap();
    let m = &t.spec.metrics[0];
    assert_eq!(m.failure_limit(), 3);
    assert_eq!(
        m.effective_count(),
        None,
        "interval without count: until the rollout ends"
    );
    let args = t
        .resolve_args(&[Arg {
            name: "service-name".into(),
            value: Some("checkout.default.svc".into()),
        }])
        .unwrap();
    let q = render(&m.provider.prometheus.as_ref().unwrap().query, &args).unwrap();
    assert!(q.contains(r#"destination_service=~"checkout.default.svc""#));
    let cluster = ARGO_TEMPLATE.replace("kind: AnalysisTemplate", "kind: ClusterAnalysisTemplate");
    assert!(AnalysisTemplate::parse(&cluster).is_ok());
}

#[test]
fn args_need_values_and_render_rejects_unknown_names() {
    let t = AnalysisTemplate::parse(VIREO_TEMPLATE).unwrap();
    let err = t.resolve_args(&[]).unwrap_err();
    assert!(
        err.contains("\"route\"") && err.contains("no value"),
        "{err}"
    );
    let args: BTreeMap<String, String> = [("a".to_string(), "1".to_string())].into();
    assert_eq!(render("x{{ args.a }}y{{args.a}}", &args).unwrap(), "x1y1");
    assert!(render("{{args.b}}", &args)
        .unwrap_err()
        .contains("no arg named \"b\""));
    assert!(render("{{secrets.x}}", &args).is_err());
    assert!(render("{{args.a", &args).unwrap_err().contains("unclosed"));
}

#[test]
fn conditions_follow_ieee_floats_and_never_panic() {
    let sc = |c: &str, v: Value| condition(c, &v);
    let nan = f64::NAN;
    assert_eq!(sc("result < 0.01", Value::Scalar(0.005)), Ok(true));
    assert_eq!(sc("result < 0.01", Value::Scalar(nan)), Ok(false));
    assert_eq!(sc("result >= 0.99", Value::Scalar(f64::INFINITY)), Ok(true));
    assert_eq!(sc("result[0] >= 0.95", Value::Vector(vec![0.97])), Ok(true));
    assert_eq!(sc("result[0] >= 0.95", Value::Vector(vec![nan])), Ok(false));
    assert_eq!(
        sc(
            "len(result) > 0 && result[0] >= 0.95",
            Value::Vector(vec![])
        ),
        Ok(false)
    );
    assert_eq!(sc("isNaN(result)", Value::Scalar(nan)), Ok(true));
    assert_eq!(
        sc("isInf(result)", Value::Scalar(f64::NEG_INFINITY)),
        Ok(true)
    );
    assert_eq!(
        sc("!(result > 5) || result == 0", Value::Scalar(0.0)),
        Ok(true)
    );
    // Errors, not panics and not successes:
    let empty = sc("result[0] >= 0.95", Value::Vector(vec![])).unwrap_err();
    assert!(empty.contains("empty vector"), "{empty}");
    // A one-sample vector also reads as its number (the spec's `result < 0.25` on a
    // histogram_quantile); several samples do not.
    assert_eq!(sc("result < 0.01", Value::Vector(vec![0.0])), Ok(true));
    assert!(sc("result < 0.01", Value::Vector(vec![0.0, 1.0])).is_err());
    assert!(sc("result", Value::Scalar(1.0))
        .unwrap_err()
        .contains("not true or false"));
    assert!(sc("result >", Value::Scalar(1.0)).is_err());
    assert!(sc("isNaN(result)", Value::Vector(vec![])).is_err());
}

#[test]
fn measurements_are_judged_by_argo_rules() {
    let v = Value::Scalar(0.5);
    // only successCondition
    assert_eq!(metric(Some("result > 0.4"), None).assess(Ok(&v)).0, S);
    assert_eq!(metric(Some("result > 0.6"), None).assess(Ok(&v)).0, F);
    // only failureCondition
    assert_eq!(metric(None, Some("result > 0.4")).assess(Ok(&v)).0, F);
    assert_eq!(metric(None, Some("result > 0.6")).assess(Ok(&v)).0, S);
    // both true: failure wins (Argo checks it first)
    assert_eq!(
        metric(Some("result < 0.9"), Some("result < 0.6"))
            .assess(Ok(&v))
            .0,
        F
    );
    // both: neither true is inconclusive
    assert_eq!(
        metric(Some("result > 0.9"), Some("result < 0.1"))
            .assess(Ok(&v))
            .0,
        I
    );
    assert_eq!(
        metric(Some("result > 0.4"), Some("result < 0.1"))
            .assess(Ok(&v))
            .0,
        S
    );
    // none: recorded, successful
    assert_eq!(metric(None, None).assess(Ok(&v)).0, S);
    // provider error, or a condition that fails to evaluate
    let (p, msg) = metric(Some("result > 0.4"), None).assess(Err("prometheus: connection refused"));
    assert_eq!(
        (p, msg.as_deref()),
        (E, Some("prometheus: connection refused"))
    );
    assert_eq!(
        metric(Some("result[0] > 0.4"), None)
            .assess(Ok(&Value::Vector(vec![])))
            .0,
        E
    );
}

#[test]
fn metric_phases_apply_the_limits() {
    let mut m = metric(Some("result > 0"), None); // count 3, failureLimit 0
    assert_eq!(m.phase(&[]), RunPhase::Pending);
    assert_eq!(m.phase(&[S]), RunPhase::Running);
    assert_eq!(m.phase(&[S, S, S]), RunPhase::Successful);
    assert_eq!(m.phase(&[S, F]), RunPhase::Failed);
    m.failure_limit = Some(1);
    assert_eq!(m.phase(&[F, S]), RunPhase::Running);
    assert_eq!(m.phase(&[F, S, S]), RunPhase::Successful);
    assert_eq!(m.phase(&[F, F]), RunPhase::Failed);
    // errors do not count toward `count`: a metric that only errors never passes
    m.failure_limit = Some(0);
    assert_eq!(m.phase(&[E, E, E]), RunPhase::Running);
    assert_eq!(m.phase(&[E, S, S]), RunPhase::Running);
    assert_eq!(m.phase(&[E, S, S, S]), RunPhase::Successful);
    let mut once = m.clone();
    (once.count, once.interval) = (None, None);
    assert_eq!(
        once.phase(&[E]),
        RunPhase::Running,
        "count 1: an error is retried"
    );
    m.failure_limit = Some(1);
    // Argo checks inconclusive before error
    m.count = Some(10);
    assert_eq!(m.phase(&[I, E, E, E, E, E]), RunPhase::Inconclusive);
    // consecutiveErrorLimit defaults to 4: the fifth error in a row ends the metric
    assert_eq!(m.phase(&[E, E, E, E]), RunPhase::Running);
    assert_eq!(m.phase(&[E, E, E, E, E]), RunPhase::Error);
    assert_eq!(
        m.phase(&[E, E, E, S, E, E, E]),
        RunPhase::Running,
        "only consecutive errors count"
    );
    // inconclusiveLimit defaults to 0
    assert_eq!(m.phase(&[S, I]), RunPhase::Inconclusive);
    m.inconclusive_limit = Some(2);
    assert_eq!(m.phase(&[S, I, I]), RunPhase::Running);
    assert_eq!(m.phase(&[S, I, I, I]), RunPhase::Inconclusive);
}

#[test]
fn runs_take_their_worst_metric() {
    use RunPhase::*;
    assert_eq!(run_phase([Successful, Successful]), Successful);
    assert_eq!(run_phase([Successful, Running]), Running);
    assert_eq!(run_phase([Pending, Pending]), Pending);
    assert_eq!(
        run_phase([Inconclusive, Running]),
        Running,
        "wait for every metric"
    );
    assert_eq!(
        run_phase([Failed, Running]),
        Failed,
        "a failure ends the run at once"
    );
    assert_eq!(run_phase([Inconclusive, Successful]), Inconclusive);
    assert_eq!(run_phase([Inconclusive, Error]), Error);
    assert_eq!(run_phase([Error, Failed, Successful]), Failed);
}

#[test]
fn measurements_are_scheduled_by_interval_count_and_initial_delay() {
    let mut m = metric(Some("result > 0"), None); // interval 30s, count 3
    assert_eq!(m.next_measurement_at(1_000, None, &[]), Some(1_000));
    assert_eq!(
        m.next_measurement_at(1_000, Some(31_000), &[S]),
        Some(61_000)
    );
    assert_eq!(
        m.next_measurement_at(1_000, Some(61_000), &[S, S, S]),
        None,
        "decided"
    );
    assert_eq!(
        m.next_measurement_at(1_000, Some(61_000), &[S, E, S]),
        Some(91_000),
        "error retried"
    );
    assert_eq!(
        m.next_measurement_at(1_000, Some(1_000), &[F]),
        None,
        "failed: decided"
    );
    m.initial_delay = Some(Duration::from_secs(10));
    assert_eq!(m.next_measurement_at(1_000, None, &[]), Some(11_000));
    // no interval: count 1, errors retried after 10 s
    (m.count, m.interval) = (None, None);
    assert_eq!(m.next_measurement_at(0, Some(5_000), &[E]), Some(15_000));
    assert_eq!(m.next_measurement_at(0, Some(5_000), &[E, S]), None);
    // background: an interval and no count measures until stopped
    m.interval = Some(Duration::from_secs(30));
    assert_eq!(
        m.next_measurement_at(0, Some(9_000_000), &[S; 300]),
        Some(9_030_000)
    );
}

#[test]
fn bad_templates_name_the_field() {
    let errs = |t: &str| -> Vec<String> {
        AnalysisTemplate::parse(t)
            .unwrap_err()
            .errors
            .iter()
            .map(ToString::to_string)
            .collect()
    };
    let t = VIREO_TEMPLATE
        .replace(
            "successCondition: result >= 0.99",
            "successCondition: result >=",
        )
        .replace("address: http://127.0.0.1:9090", "address: 127.0.0.1:9090");
    let e = errs(&t);
    assert!(
        e[0].starts_with("spec.metrics[0].successCondition: \"result >=\" does not parse"),
        "{e:?}"
    );
    assert!(
        e[1].starts_with("spec.metrics[1].provider.prometheus.address"),
        "{e:?}"
    );
    let both = VIREO_TEMPLATE.replace(
        "proxy: { metric: success-rate, window: 1m }",
        "proxy: { metric: success-rate }\n        prometheus: { address: http://x:1, query: up }",
    );
    assert!(errs(&both)[0].contains("exactly one of proxy, prometheus"));
    let unknown = VIREO_TEMPLATE.replace(
        "proxy: { metric: success-rate, window: 1m }",
        "datadog: { query: x }",
    );
    assert!(
        errs(&unknown)[0].contains("datadog"),
        "{:?}",
        errs(&unknown)
    );
    let bad_metric = VIREO_TEMPLATE.replace("metric: success-rate", "metric: happiness");
    assert!(errs(&bad_metric)[0].contains("happiness"));
}

#[test]
fn argo_forms_unlimited_limits_count_zero_and_helpers() {
    let t = ARGO_TEMPLATE.replace("failureLimit: 3", "failureLimit: -1\n    count: 0");
    let m = &AnalysisTemplate::parse(&t).unwrap().spec.metrics[0];
    assert_eq!(
        m.effective_count(),
        None,
        "count 0 is unset: with an interval, until stopped"
    );
    assert_eq!(
        m.phase(&[F; 50]),
        RunPhase::Running,
        "failureLimit -1: never fails"
    );
    let sc = |c: &str, v: Value| condition(c, &v);
    assert_eq!(sc("asInt(result) == 3", Value::Scalar(3.7)), Ok(true));
    assert_eq!(
        sc("asFloat(\"0.5\") < result", Value::Scalar(0.9)),
        Ok(true)
    );
    assert_eq!(sc("isNil(result[0])", Value::Vector(vec![])), Ok(true));
    assert_eq!(
        sc("default(result[0], 1) >= 0.95", Value::Vector(vec![])),
        Ok(true)
    );
    assert!(sc("asInt(\"x\") > 0", Value::Scalar(1.0)).is_err());
}

#[test]
fn no_data_is_never_a_verdict_unless_the_condition_asks() {
    let nan = Value::Scalar(f64::NAN);
    // failureCondition alone would call NaN a success (NaN > 0.01 is false).
    let (phase, why) = metric(None, Some("result > 0.01")).assess(Ok(&nan));
    assert_eq!(phase, MeasurementPhase::Error);
    assert!(why.unwrap().contains("not a finite number"));
    let inf = Value::Vector(vec![0.5, f64::INFINITY]);
    assert_eq!(
        metric(Some("result[0] < 1"), None).assess(Ok(&inf)).0,
        MeasurementPhase::Error
    );
    // A condition that tests for it judges it.
    assert_eq!(
        metric(None, Some("isNaN(result) || result > 0.01"))
            .assess(Ok(&nan))
            .0,
        F
    );
    // An empty vector indexed is an Error measurement, not a crash.
    assert_eq!(
        metric(Some("result[0] >= 0.95"), None)
            .assess(Ok(&Value::Vector(vec![])))
            .0,
        MeasurementPhase::Error
    );
}

/// Found by fuzzing (`fuzz/`, target `analysis_condition`): this condition kept expr-lang's
/// parser busy for over 10 s. It is refused, saying why, before anything parses it — at
/// template validation and at evaluation.
#[test]
fn a_deeply_nested_condition_is_refused_before_it_is_parsed() {
    let found = "kssN[[iNs[[Na[[[[c[[if[[is[[[[[_[[Z[[[[if[[[[if[[is[[[[[_[[Z[[[[[";
    let e = condition(found, &Value::Scalar(0.5)).unwrap_err();
    assert!(e.contains("nests brackets"), "{e}");
    let template = format!(
        "apiVersion: vireo.dev/v1alpha1\nkind: AnalysisTemplate\nmetadata: {{ name: t }}\nspec:\n  metrics:\n    - name: m\n      successCondition: '{found}'\n      provider: {{ proxy: {{ metric: success-rate, window: 10s }} }}\n"
    );
    let e = AnalysisTemplate::parse(&template).unwrap_err();
    assert!(
        e.errors
            .iter()
            .any(|f| f.path.ends_with("successCondition") && f.reason.contains("nests brackets")),
        "{e}"
    );
    // Real conditions pass.
    for ok in [
        "result >= 0.99",
        "len(result) > 0 && all(result, {# < 0.5})",
        "isNaN(result) || result[0] < 0.25",
    ] {
        assert!(check_condition(ok).is_ok(), "{ok}");
    }
    assert!(check_condition(&"1 + ".repeat(300)).is_err(), "too long");
}
