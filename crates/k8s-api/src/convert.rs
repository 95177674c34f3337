//! From a `Rollout` resource to the core's model, and the list of what it asks for that Vireo
//! does not do. Pure: the controller passes in what it looked up (the Services' addresses, the
//! pod-template hashes, the names its store gives templates).
//!
//! The core model is built as a JSON document and read by the core's own parser, so Kubernetes
//! mode and embedded mode validate a recipe with the same rules and name the same field paths
//! (`spec.strategy.canary.steps[2].setWeight`), which the controller puts in a condition.

use serde_json::{json, Map, Value};
use vireo_core::spec::{self, SpecError, Workload};
use vireo_types::config::FieldError;

use crate::analysis::{TemplateArg, TemplateBody};
use crate::rollout::{AnalysisArg, AnalysisRef, Rollout, TemplateRef};

/// What the controller resolved for one conversion.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The rollout's name in the control plane's store.
    pub name: String,
    pub stable: Workload,
    pub canary: Workload,
    /// The stable Service's ClusterIPs with each of its ports (`10.96.0.10:80`): the original
    /// destinations an intercepted pod's calls to it have, which the route then matches.
    pub destinations: Vec<String>,
}

/// Field paths of every Argo Rollouts field set on `ro` that Vireo does not implement, for the
/// `Unsupported` condition. Empty when the rollout uses only what Vireo does.
pub fn unsupported_fields(ro: &Rollout) -> Vec<String> {
    let mut out = Vec::new();
    let note = |out: &mut Vec<String>, set: bool, path: String| {
        if set {
            out.push(path)
        }
    };
    let s = &ro.spec;
    note(
        &mut out,
        s.progress_deadline_abort.is_some(),
        "spec.progressDeadlineAbort".into(),
    );
    note(&mut out, s.restart_at.is_some(), "spec.restartAt".into());
    note(
        &mut out,
        s.rollback_window.is_some(),
        "spec.rollbackWindow".into(),
    );
    if let Some(w) = &s.workload_ref {
        note(
            &mut out,
            w.scale_down.is_some(),
            "spec.workloadRef.scaleDown".into(),
        );
    }
    note(
        &mut out,
        s.strategy.blue_green.is_some(),
        "spec.strategy.blueGreen".into(),
    );
    let Some(c) = &s.strategy.canary else {
        return out;
    };
    let p = "spec.strategy.canary";
    for (set, field) in [
        (c.max_surge.is_some(), "maxSurge"),
        (c.max_unavailable.is_some(), "maxUnavailable"),
        (c.anti_affinity.is_some(), "antiAffinity"),
        (c.canary_metadata.is_some(), "canaryMetadata"),
        (c.stable_metadata.is_some(), "stableMetadata"),
        (
            c.scale_down_delay_revision_limit.is_some(),
            "scaleDownDelayRevisionLimit",
        ),
        (c.min_pods_per_replica_set.is_some(), "minPodsPerReplicaSet"),
        (c.ping_pong.is_some(), "pingPong"),
    ] {
        note(&mut out, set, format!("{p}.{field}"));
    }
    for (i, step) in c.steps.iter().enumerate() {
        for (set, field) in [
            (step.experiment.is_some(), "experiment"),
            (step.set_canary_scale.is_some(), "setCanaryScale"),
            (step.set_header_route.is_some(), "setHeaderRoute"),
            (step.set_mirror_route.is_some(), "setMirrorRoute"),
            (step.plugin.is_some(), "plugin"),
        ] {
            note(&mut out, set, format!("{p}.steps[{i}].{field}"));
        }
        if let Some(a) = &step.analysis {
            args_unsupported(&a.args, &format!("{p}.steps[{i}].analysis"), &mut out);
        }
    }
    if let Some(a) = &c.analysis {
        args_unsupported(&a.args, &format!("{p}.analysis"), &mut out);
    }
    if let Some(a) = &c.post_deploy_verify {
        args_unsupported(&a.args, &format!("{p}.postDeployVerify"), &mut out);
    }
    if let Some(t) = &c.traffic_routing {
        for (set, field) in [
            (t.istio.is_some(), "istio"),
            (t.nginx.is_some(), "nginx"),
            (t.alb.is_some(), "alb"),
            (t.smi.is_some(), "smi"),
            (t.ambassador.is_some(), "ambassador"),
            (t.app_mesh.is_some(), "appMesh"),
            (t.traefik.is_some(), "traefik"),
            (t.apisix.is_some(), "apisix"),
            (t.plugins.is_some(), "plugins"),
            (t.managed_routes.is_some(), "managedRoutes"),
        ] {
            note(&mut out, set, format!("{p}.trafficRouting.{field}"));
        }
    }
    out
}

fn args_unsupported(args: &[AnalysisArg], path: &str, out: &mut Vec<String>) {
    for (j, a) in args.iter().enumerate() {
        if a.value_from.is_some() {
            out.push(format!("{path}.args[{j}].valueFrom"));
        }
    }
}

/// Field paths of the unsupported fields a template sets (its providers are checked by the
/// core's parser, which names an unknown one).
pub fn unsupported_template_fields(t: &TemplateBody) -> Vec<String> {
    let mut out = Vec::new();
    if t.measurement_retention.is_some() {
        out.push("spec.measurementRetention".to_string());
    }
    for (j, a) in t.args.iter().enumerate() {
        if a.value_from.is_some() {
            out.push(format!("spec.args[{j}].valueFrom"));
        }
    }
    out
}

fn error(path: &str, reason: impl Into<String>) -> SpecError {
    SpecError {
        errors: vec![FieldError {
            path: path.to_string(),
            reason: reason.into(),
        }],
    }
}

/// The core rollout this resource runs as. `template_name` maps a reference to the name the
/// store knows the template by (namespaced and cluster templates live in one store).
pub fn to_core(
    ro: &Rollout,
    resolved: &Resolved,
    template_name: &dyn Fn(&TemplateRef) -> String,
) -> Result<spec::Rollout, SpecError> {
    let c = ro.spec.strategy.canary.as_ref().ok_or_else(|| {
        error(
            "spec.strategy.canary",
            "Vireo runs canary strategies: add strategy.canary with its steps",
        )
    })?;
    let routing = c.traffic_routing.as_ref();
    if routing.is_none_or(|t| t.vireo.is_none() && t.gateway_api.is_none()) {
        return Err(error(
            "spec.strategy.canary.trafficRouting",
            "name a router: trafficRouting.vireo (Vireo's proxies), trafficRouting.gatewayAPI.httpRoute, or both",
        ));
    }
    let vireo = routing.and_then(|t| t.vireo.clone()).unwrap_or_default();
    let name = ro.metadata.name.clone().unwrap_or_default();
    let analysis = |a: &AnalysisRef| {
        json!({
            "templates": a.templates.iter().map(|t| json!({"templateName": template_name(t)})).collect::<Vec<_>>(),
            "args": args(&a.args),
        })
    };
    let steps: Vec<Value> = c
        .steps
        .iter()
        .map(|s| {
            let mut m = Map::new();
            if let Some(w) = s.set_weight {
                m.insert("setWeight".into(), json!(w));
            }
            if let Some(p) = &s.pause {
                m.insert(
                    "pause".into(),
                    match &p.duration {
                        Some(d) => json!({ "duration": d }),
                        None => json!({}),
                    },
                );
            }
            if let Some(a) = &s.analysis {
                m.insert("analysis".into(), analysis(a));
            }
            Value::Object(m)
        })
        .collect();
    let mut canary = Map::new();
    canary.insert("steps".into(), Value::Array(steps));
    if let Some(b) = &c.analysis {
        let mut bg = analysis(&AnalysisRef {
            templates: b.templates.clone(),
            args: b.args.clone(),
        });
        if let Some(from) = b.starting_step {
            bg["startingStep"] = json!(from);
        }
        canary.insert("analysis".into(), bg);
    }
    if let Some(v) = &c.post_deploy_verify {
        canary.insert("postDeployVerify".into(), analysis(v));
    }
    let mut split = Map::new();
    if let Some(k) = &vireo.key {
        split.insert("key".into(), k.clone());
    }
    if let Some(b) = vireo.buckets {
        split.insert("buckets".into(), json!(b));
    }
    if let Some(s) = &vireo.salt {
        split.insert("salt".into(), json!(s));
    }
    let mut spec = json!({
        "route": vireo.route.clone().unwrap_or(name),
        "match": {"destinations": resolved.destinations},
        "stable": resolved.stable,
        "canary": resolved.canary,
        "split": split,
        "strategy": {"canary": canary},
    });
    if let Some(r) = &ro.spec.rollback {
        spec["rollback"] = r.clone();
    }
    let mut metadata = json!({ "name": resolved.name });
    if let Some(ns) = &ro.metadata.namespace {
        metadata["namespace"] = json!(ns);
    }
    if let Some(labels) = ro.metadata.labels.as_ref().filter(|m| !m.is_empty()) {
        metadata["labels"] = json!(labels);
    }
    // Only Vireo's annotations mean anything to the engine (kubectl's last-applied
    // configuration, for one, is a copy of the whole object).
    let annotations: std::collections::BTreeMap<&String, &String> = ro
        .metadata
        .annotations
        .iter()
        .flatten()
        .filter(|(k, _)| k.starts_with("vireo.dev/"))
        .collect();
    if !annotations.is_empty() {
        metadata["annotations"] = json!(annotations);
    }
    let doc = json!({
        "apiVersion": spec::API_VERSION,
        "kind": "Rollout",
        "metadata": metadata,
        "spec": spec,
    });
    spec::Rollout::parse(&doc.to_string())
}

fn args(args: &[AnalysisArg]) -> Vec<Value> {
    args.iter()
        .map(|a| match &a.value {
            Some(v) => json!({"name": a.name, "value": v}),
            None => json!({"name": a.name}),
        })
        .collect()
}

/// The core template this resource body runs as, under the store's `name`.
pub fn template_to_core(
    name: &str,
    body: &TemplateBody,
) -> Result<vireo_core::analysis::AnalysisTemplate, SpecError> {
    let targs: Vec<Value> = body
        .args
        .iter()
        .map(|a: &TemplateArg| match &a.value {
            Some(v) => json!({"name": a.name, "value": v}),
            None => json!({"name": a.name}),
        })
        .collect();
    let mut spec = json!({
        "metrics": body.metrics,
    });
    if !targs.is_empty() {
        spec["args"] = Value::Array(targs);
    }
    if !body.dry_run.is_empty() {
        spec["dryRun"] = json!(body.dry_run);
    }
    let doc = json!({
        "apiVersion": spec::API_VERSION,
        "kind": "AnalysisTemplate",
        "metadata": {"name": name},
        "spec": spec,
    });
    vireo_core::analysis::AnalysisTemplate::parse(&doc.to_string())
}

#[cfg(test)]
mod tests;
