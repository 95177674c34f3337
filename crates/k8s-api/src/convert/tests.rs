use vireo_core::spec::{Step, Workload};

use super::*;

const ARGO_LIKE: &str = r#"
apiVersion: vireo.dev/v1alpha1
kind: Rollout
metadata:
  name: checkout
  namespace: shop
  annotations:
    vireo.dev/approval: required
spec:
  replicas: 4
  selector:
    matchLabels: {app: checkout}
  template:
    metadata:
      labels: {app: checkout}
    spec:
      containers:
        - name: checkout
          image: registry.example/checkout:2.0.0
  strategy:
    canary:
      canaryService: checkout-canary
      stableService: checkout-stable
      scaleDownDelaySeconds: 30
      trafficRouting:
        vireo:
          key: {header: x-user-id}
          buckets: 1000
      steps:
        - setWeight: 5
        - pause: {duration: 30}
        - analysis:
            templates:
              - templateName: success-rate
              - templateName: latency
                clusterScope: true
            args:
              - {name: service, value: checkout}
        - setWeight: 25
        - pause: {duration: "1m"}
        - setWeight: 100
"#;

fn resolved() -> Resolved {
    Resolved {
        name: "shop-checkout".into(),
        stable: Workload {
            version: "6d4f9c".into(),
            image: Some("registry.example/checkout:1.9.0".into()),
            addrs: vec!["checkout-stable.shop.svc.cluster.local:80".into()],
        },
        canary: Workload {
            version: "7b8e21".into(),
            image: Some("registry.example/checkout:2.0.0".into()),
            addrs: vec!["checkout-canary.shop.svc.cluster.local:80".into()],
        },
        destinations: vec!["10.96.0.10:80".into(), "[fd00::10]:80".into()],
    }
}

fn store_name(t: &TemplateRef) -> String {
    if t.cluster_scope == Some(true) {
        format!("cluster.{}", t.template_name)
    } else {
        format!("shop.{}", t.template_name)
    }
}

fn parse(text: &str) -> Rollout {
    serde_yaml_ng::from_str(text).unwrap()
}

#[test]
fn an_argo_shaped_rollout_becomes_the_core_model() {
    let ro = parse(ARGO_LIKE);
    assert!(unsupported_fields(&ro).is_empty());
    let core = to_core(&ro, &resolved(), &store_name).unwrap();
    assert_eq!(core.metadata.name, "shop-checkout");
    assert_eq!(core.metadata.namespace.as_deref(), Some("shop"));
    assert_eq!(
        core.spec.route, "checkout",
        "the route defaults to the Rollout's name"
    );
    assert_eq!(core.spec.split.buckets, 1000);
    assert_eq!(
        core.spec.matches.destinations,
        ["10.96.0.10:80", "[fd00::10]:80"],
        "an intercepted call to the stable Service takes the route"
    );
    assert_eq!(core.spec.canary.version, "7b8e21");
    assert_eq!(core.approval(), vireo_core::spec::Approval::Required);
    let steps = core.steps();
    assert_eq!(steps.len(), 6);
    assert_eq!(steps[0], Step::SetWeight(5));
    assert_eq!(
        steps[1],
        Step::Pause(Some(std::time::Duration::from_secs(30)))
    );
    assert_eq!(
        steps[4],
        Step::Pause(Some(std::time::Duration::from_secs(60)))
    );
    let Step::Analysis(a) = &steps[2] else {
        panic!("{:?}", steps[2])
    };
    let names: Vec<&str> = a
        .templates
        .iter()
        .map(|t| t.template_name.as_str())
        .collect();
    assert_eq!(names, ["shop.success-rate", "cluster.latency"]);
    assert_eq!(a.args[0].value.as_deref(), Some("checkout"));
}

#[test]
fn argo_fields_vireo_does_not_implement_are_named_not_ignored() {
    let text = ARGO_LIKE
        .replace(
            "      scaleDownDelaySeconds: 30\n",
            "      scaleDownDelaySeconds: 30\n      maxSurge: \"25%\"\n      antiAffinity: {preferredDuringSchedulingIgnoredDuringExecution: {weight: 1}}\n",
        )
        .replace(
            "        - setWeight: 25\n",
            "        - setWeight: 25\n        - setCanaryScale: {replicas: 3}\n",
        )
        .replace("        vireo:\n", "        istio: {virtualService: {name: vs}}\n        vireo:\n");
    let ro = parse(&text);
    assert_eq!(
        unsupported_fields(&ro),
        [
            "spec.strategy.canary.maxSurge",
            "spec.strategy.canary.antiAffinity",
            "spec.strategy.canary.steps[4].setCanaryScale",
            "spec.strategy.canary.trafficRouting.istio",
        ]
    );
}

#[test]
fn a_rollout_without_a_router_is_refused_with_the_field() {
    let text = ARGO_LIKE.replace(
        "        vireo:\n          key: {header: x-user-id}\n          buckets: 1000\n",
        "        {}\n",
    );
    let text = text.replace("      trafficRouting:\n        {}\n", "");
    let err = to_core(&parse(&text), &resolved(), &store_name).unwrap_err();
    assert_eq!(err.errors[0].path, "spec.strategy.canary.trafficRouting");
}

#[test]
fn the_cores_rules_apply_with_the_same_field_paths() {
    let text = ARGO_LIKE.replace(
        "        - setWeight: 25\n",
        "        - setWeight: 25\n          pause: {}\n",
    );
    let err = to_core(&parse(&text), &resolved(), &store_name).unwrap_err();
    let shown = err.to_string();
    assert!(shown.contains("spec.strategy.canary.steps[3]"), "{shown}");
    assert!(
        shown.contains("exactly one of setWeight, pause, analysis"),
        "{shown}"
    );
}

#[test]
fn the_gateway_api_router_alone_is_enough() {
    let text = ARGO_LIKE.replace(
        "        vireo:\n          key: {header: x-user-id}\n          buckets: 1000\n",
        "        gatewayAPI: {httpRoute: checkout}\n",
    );
    let ro = parse(&text);
    let gw = ro
        .spec
        .strategy
        .canary
        .as_ref()
        .unwrap()
        .traffic_routing
        .as_ref()
        .unwrap();
    assert_eq!(gw.gateway_api.as_ref().unwrap().http_route, "checkout");
    let core = to_core(&ro, &resolved(), &store_name).unwrap();
    assert_eq!(core.spec.split.buckets, 100);
}

#[test]
fn a_template_converts_and_unknown_providers_are_named() {
    let body: TemplateBody = serde_yaml_ng::from_str(
        r#"
args: [{name: service}]
metrics:
  - name: success-rate
    interval: 10s
    count: 3
    successCondition: result[0] >= 0.99
    failureLimit: 1
    provider:
      proxy: {metric: success-rate, window: 30s}
"#,
    )
    .unwrap();
    assert!(unsupported_template_fields(&body).is_empty());
    let t = template_to_core("shop.success-rate", &body).unwrap();
    assert_eq!(t.metadata.name, "shop.success-rate");
    assert_eq!(t.spec.metrics[0].count, Some(3));

    let mut datadog = body.clone();
    datadog.metrics[0].provider = serde_json::json!({"datadog": {"query": "avg:x"}});
    let err = template_to_core("shop.dd", &datadog)
        .unwrap_err()
        .to_string();
    assert!(err.contains("spec.metrics[0].provider"), "{err}");
}
