//! The reconciler: `reconcile(rollout, ctx) -> Action`, level-triggered and idempotent.
//!
//! Each pass reads the Rollout, its ReplicaSets, its Services and the engine's view of the
//! rollout; [`plan`] says what the world should be; the pass writes only the differences
//! (ReplicaSet replicas and deadlines, Service selectors, a new recipe for the engine, the
//! status subresource) and records an Event when the phase changes. Besides the watches of
//! Rollouts and their ReplicaSets, every event the engine commits triggers a pass (and one
//! runs every second while the engine drives a rollout, as a safety net).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{PodTemplateSpec, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;
use vireo_core::spec::Workload;
use vireo_engine::driver::ApiError as EngineError;
use vireo_engine::driver::Handle;
use vireo_k8s_api::analysis::{AnalysisTemplate, ClusterAnalysisTemplate};
use vireo_k8s_api::convert;
use vireo_k8s_api::plan::{self, ObservedSet, Stored, HASH_LABEL, SCALE_DOWN_DEADLINE};
use vireo_k8s_api::rollout::{Rollout, RolloutStatus, TemplateRef};

use crate::workloads::Sources;
use crate::{names, Error, FINALIZER, ROLLOUT_LABEL};

/// What every reconcile shares.
pub struct Context {
    pub client: kube::Client,
    pub handle: Handle,
    pub sources: Sources,
    /// Routes whose weights go to a Gateway API HTTPRoute.
    pub gateway: crate::gateway::Routes,
    pub recorder: Recorder,
    failures: Mutex<HashMap<String, u32>>,
    /// Per Rollout uid, the canary hash whose AnalysisRun history was last pruned: the history
    /// only grows when the canary changes, so it is listed once per canary (and once after a
    /// restart), not on every pass.
    pruned: Mutex<HashMap<String, String>>,
}

impl Context {
    pub fn new(
        client: kube::Client,
        handle: Handle,
        sources: Sources,
        gateway: crate::gateway::Routes,
    ) -> Arc<Context> {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "vireo".into(),
                instance: std::env::var("POD_NAME").ok(),
            },
        );
        Arc::new(Context {
            client,
            handle,
            sources,
            gateway,
            recorder,
            failures: Mutex::default(),
            pruned: Mutex::default(),
        })
    }
}

/// Runs the controller over every namespace until the stream ends.
pub async fn run(ctx: Arc<Context>) {
    let rollouts: Api<Rollout> = Api::all(ctx.client.clone());
    let sets: Api<ReplicaSet> = Api::all(ctx.client.clone());
    // The engine's progress is not a Kubernetes event: every event it commits (a weight, an
    // analysis, a phase) reconciles the Rollouts again, so the status follows each transition.
    let engine = ctx.handle.shared.latest_event.subscribe();
    let progress = futures_util::stream::unfold(engine, |mut rx| async move {
        rx.changed().await.ok()?;
        Some(((), rx))
    });
    Controller::new(rollouts, watcher::Config::default())
        .owns(sets, watcher::Config::default().labels(ROLLOUT_LABEL))
        .reconcile_all_on(progress)
        .with_config(
            kube::runtime::controller::Config::default().debounce(Duration::from_millis(20)),
        )
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            match res {
                Ok((obj, _)) => tracing::debug!(rollout = %obj, "reconciled"),
                Err(e) => tracing::warn!("reconcile: {e}"),
            }
        })
        .await;
}

/// Failed reconciles back off exponentially per object: 0.5 s doubling to 60 s.
fn error_policy(ro: Arc<Rollout>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = format!("{}/{}", ro.namespace().unwrap_or_default(), ro.name_any());
    let mut failures = ctx.failures.lock().unwrap_or_else(|p| p.into_inner());
    let n = failures.entry(key.clone()).or_insert(0);
    *n = (*n + 1).min(8);
    let wait = Duration::from_millis(500 * (1 << (*n - 1))).min(Duration::from_secs(60));
    tracing::warn!(rollout = %key, retry_in = ?wait, "{error}");
    Action::requeue(wait)
}

pub async fn reconcile(ro: Arc<Rollout>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = ro.namespace().unwrap_or_default();
    let api: Api<Rollout> = Api::namespaced(ctx.client.clone(), &ns);
    let key = format!("{ns}/{}", ro.name_any());
    let result = finalizer(&api, FINALIZER, ro, |event| async {
        match event {
            Finalizer::Apply(ro) => apply(&ro, &ctx).await,
            Finalizer::Cleanup(ro) => cleanup(&ro, &ctx).await,
        }
    })
    .await;
    match result {
        Ok(action) => {
            ctx.failures
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key);
            Ok(action)
        }
        Err(
            kube::runtime::finalizer::Error::ApplyFailed(e)
            | kube::runtime::finalizer::Error::CleanupFailed(e),
        ) => Err(e),
        Err(e) => Err(Error::Invalid(e.to_string())),
    }
}

fn millis_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The pod template of `spec.template`, or of the Deployment `spec.workloadRef` names.
async fn template(ro: &Rollout, ctx: &Context, ns: &str) -> Result<PodTemplateSpec, String> {
    match (&ro.spec.template, &ro.spec.workload_ref) {
        (Some(t), None) => Ok(t.clone()),
        (None, Some(w)) if w.kind == "Deployment" => {
            let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), ns);
            deployments
                .get(&w.name)
                .await
                .map(|d| d.spec.map(|s| s.template).unwrap_or_default())
                .map_err(|e| format!("spec.workloadRef: Deployment {:?}: {e}", w.name))
        }
        (None, Some(w)) => Err(format!(
            "spec.workloadRef.kind: {:?} is not supported; use a Deployment",
            w.kind
        )),
        _ => Err("exactly one of spec.template and spec.workloadRef is required".into()),
    }
}

fn condition(
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    old: &[Condition],
) -> Condition {
    let status = if status { "True" } else { "False" }.to_string();
    let since = old
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| Time(k8s_openapi::jiff::Timestamp::now()));
    Condition {
        type_: type_.into(),
        status,
        reason: reason.into(),
        message,
        last_transition_time: since,
        observed_generation: None,
    }
}

/// The address a proxy uses for a Service: its ClusterIP and first port (kube-proxy's, or
/// the mesh's, job from there); and every ClusterIP with every port, the original
/// destinations of calls to it.
async fn service_workload(
    ctx: &Context,
    ns: &str,
    name: &str,
    hash: &str,
    image: Option<String>,
) -> Result<(Workload, Vec<String>), String> {
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), ns);
    let svc = services
        .get(name)
        .await
        .map_err(|e| format!("Service {name:?}: {e}"))?;
    let spec = svc.spec.unwrap_or_default();
    // Dual-stack Services list both families in clusterIPs; clusterIP is the first.
    let ips: Vec<std::net::IpAddr> = spec
        .cluster_ips
        .clone()
        .filter(|ips| !ips.is_empty())
        .or_else(|| spec.cluster_ip.clone().map(|ip| vec![ip]))
        .unwrap_or_default()
        .iter()
        .filter_map(|ip| ip.parse().ok())
        .collect();
    let ports: Vec<u16> = spec
        .ports
        .unwrap_or_default()
        .iter()
        .filter_map(|p| u16::try_from(p.port).ok())
        .collect();
    let (Some(&ip), Some(&port)) = (ips.first(), ports.first()) else {
        return Err(format!(
            "Service {name:?} needs a ClusterIP and a port (a headless Service has no address to split)"
        ));
    };
    let destinations = ips
        .iter()
        .flat_map(|ip| {
            ports
                .iter()
                .map(|p| std::net::SocketAddr::new(*ip, *p).to_string())
        })
        .collect();
    let workload = Workload {
        version: hash.to_string(),
        image,
        addrs: vec![std::net::SocketAddr::new(ip, port).to_string()],
    };
    Ok((workload, destinations))
}

fn image_of(t: &PodTemplateSpec) -> Option<String> {
    t.spec.as_ref()?.containers.first()?.image.clone()
}

async fn apply(ro: &Rollout, ctx: &Context) -> Result<Action, Error> {
    let ns = ro.namespace().unwrap_or_default();
    let name = ro.name_any();
    let store_name = names::namespaced(&ns, &name);
    ctx.sources.set(
        &store_name,
        crate::workloads::Source {
            namespace: ns.clone(),
            name: name.clone(),
            progress_deadline: ro
                .spec
                .progress_deadline_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map(Duration::from_secs),
        },
    );
    let old_status = ro.status.clone().unwrap_or_default();
    let mut status = RolloutStatus {
        observed_generation: ro.metadata.generation,
        ..Default::default()
    };
    let mut conditions = Vec::new();
    let unsupported = convert::unsupported_fields(ro);
    if !unsupported.is_empty() {
        conditions.push(condition(
            "Unsupported",
            true,
            "UnsupportedFields",
            format!("Vireo does not implement: {}", unsupported.join(", ")),
            &old_status.conditions,
        ));
    }
    let canary = ro.spec.strategy.canary.clone().unwrap_or_default();
    let old = &old_status;
    let invalid = |message: String, mut status: RolloutStatus, mut conditions: Vec<Condition>| async move {
        tracing::warn!(rollout = %format!("{}/{}", ro.namespace().unwrap_or_default(), ro.name_any()), "{message}");
        conditions.push(condition(
            "Invalid",
            true,
            "InvalidSpec",
            message.clone(),
            &old.conditions,
        ));
        status.phase = Some("Invalid".into());
        status.message = Some(message);
        status.conditions = conditions;
        write_status(ro, ctx, old, status).await?;
        // Some causes are other objects (a Service or template created later) that no watch
        // reports: look again in a while, besides on every change of the Rollout.
        Ok::<_, Error>(Action::requeue(Duration::from_secs(30)))
    };
    let (Some(stable_svc), Some(canary_svc)) =
        (canary.stable_service.clone(), canary.canary_service.clone())
    else {
        return invalid(
            "spec.strategy.canary: stableService and canaryService are required".into(),
            status,
            conditions,
        )
        .await;
    };
    // Where the weights go besides Vireo's proxies. A Rollout moves only an HTTPRoute of its
    // own namespace (the controller may patch HTTPRoutes everywhere; a tenant may not).
    let routing = canary.traffic_routing.clone().unwrap_or_default();
    let route = routing
        .vireo
        .as_ref()
        .and_then(|v| v.route.clone())
        .unwrap_or_else(|| name.clone());
    if let Some(other) = routing
        .gateway_api
        .as_ref()
        .and_then(|g| g.namespace.clone())
        .filter(|n| *n != ns)
    {
        return invalid(format!("spec.strategy.canary.trafficRouting.gatewayAPI.namespace: {other:?} is not the Rollout's namespace; a Rollout moves only its own namespace's HTTPRoutes"), status, conditions).await;
    }
    let gateway_target = routing
        .gateway_api
        .as_ref()
        .map(|g| crate::gateway::Target {
            namespace: ns.clone(),
            http_route: g.http_route.clone(),
            canary_service: canary_svc.clone(),
            stable_service: stable_svc.clone(),
            proxies: routing.vireo.is_some(),
        });
    let template = match template(ro, ctx, &ns).await {
        Ok(t) => t,
        Err(e) => return invalid(e, status, conditions).await,
    };
    let hash = plan::pod_template_hash(&template);
    let replicas = ro.spec.replicas.unwrap_or(1);

    let sets_api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
    let uid = ro.uid().unwrap_or_default();
    let sets: Vec<ReplicaSet> = sets_api
        .list(&ListParams::default().labels(&format!("{ROLLOUT_LABEL}={name}")))
        .await?
        .items
        .into_iter()
        .filter(|rs| rs.owner_references().iter().any(|o| o.uid == uid))
        .collect();
    let hash_of = |rs: &ReplicaSet| rs.labels().get(HASH_LABEL).cloned().unwrap_or_default();

    let view = match ctx.handle.get(&store_name).await {
        Ok(v) => Some(v),
        Err(EngineError::NotFound(_)) => None,
        Err(e) => return Err(Error::Engine(e.to_string())),
    };
    let stored = view.as_ref().map(|v| Stored {
        stable: v.rollout.spec.stable.version.clone(),
        canary: v.rollout.spec.canary.version.clone(),
        phase: v.status.phase,
        weight: v.status.canary_weight,
        settled: v.status.settled,
    });
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), &ns);
    let stable_service = services
        .get_opt(&stable_svc)
        .await?
        .and_then(|s| s.spec?.selector?.get(HASH_LABEL).cloned())
        .filter(|h| sets.iter().any(|rs| hash_of(rs) == *h));
    let delay = |s: Option<i32>| {
        u64::try_from(s.unwrap_or(plan::DEFAULT_SCALE_DOWN_DELAY_S)).unwrap_or(0) * 1000
    };
    let observed = plan::Observed {
        replicas,
        hash: hash.clone(),
        stored: stored.clone(),
        stable_service,
        sets: sets
            .iter()
            .map(|rs| ObservedSet {
                hash: hash_of(rs),
                replicas: rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0),
                ready: rs
                    .status
                    .as_ref()
                    .and_then(|s| s.ready_replicas)
                    .unwrap_or(0),
                deadline: rs
                    .annotations()
                    .get(SCALE_DOWN_DEADLINE)
                    .and_then(|d| d.parse().ok()),
            })
            .collect(),
        dynamic_stable_scale: canary.dynamic_stable_scale.unwrap_or(false),
        scale_down_delay_ms: delay(canary.scale_down_delay_seconds),
        abort_scale_down_delay_ms: delay(canary.abort_scale_down_delay_seconds),
        now: millis_now(),
    };
    let p = plan::plan(&observed);
    if p.holding {
        conditions.push(condition(
            "StableReady",
            false,
            "PodsStarting",
            format!(
                "the stable Service stays on the pods serving now until the stable ReplicaSet has {} ready pods ({} now)",
                p.hold_ready.1, p.hold_ready.0
            ),
            &old_status.conditions,
        ));
    }

    // The canary the engine runs: this template's, or (p.waiting) an older one still running.
    let effective = if p.waiting {
        stored
            .as_ref()
            .map(|s| s.canary.clone())
            .unwrap_or_else(|| hash.clone())
    } else {
        hash.clone()
    };
    let current = stored.as_ref().filter(|s| s.canary == effective);
    if p.waiting {
        conditions.push(condition("TemplateWaiting", true, "CanaryRunning", format!("the template changed while canary {effective} runs; it becomes the next canary once that one ends (vireo rollout abort {store_name} to end it now)"), &old_status.conditions));
    }
    let ours = format!("{ns}/{name} uid={uid}");
    let stored_source = view.as_ref().and_then(|v| {
        v.rollout
            .metadata
            .annotations
            .get(names::SOURCE_ANNOTATION)
            .cloned()
    });
    if stored_source.as_deref() == Some(ours.as_str()) {
        ctx.gateway.set(&route, gateway_target.clone());
    }
    let (stable_hash, canary_hash) = p.apply.clone().unwrap_or_else(|| {
        (
            current
                .map(|s| s.stable.clone())
                .unwrap_or_else(|| effective.clone()),
            effective.clone(),
        )
    });
    if stable_hash != canary_hash {
        let stable_image = sets
            .iter()
            .find(|rs| hash_of(rs) == stable_hash)
            .and_then(|rs| rs.spec.as_ref()?.template.as_ref().and_then(image_of));
        let resolved = async {
            let (stable, destinations) =
                service_workload(ctx, &ns, &stable_svc, &stable_hash, stable_image).await?;
            let (canary, _) =
                service_workload(ctx, &ns, &canary_svc, &canary_hash, image_of(&template)).await?;
            Ok::<_, String>(convert::Resolved {
                name: store_name.clone(),
                stable,
                canary,
                destinations,
            })
        }
        .await;
        let resolved = match resolved {
            Ok(r) => r,
            Err(e) => return invalid(e, status, conditions).await,
        };
        let name_of = |t: &TemplateRef| template_store_name(&ns, t);
        let mut core = match convert::to_core(ro, &resolved, &name_of) {
            Ok(c) => c,
            Err(e) => return invalid(e.to_string(), status, conditions).await,
        };
        core.metadata
            .annotations
            .insert(names::SOURCE_ANNOTATION.into(), ours.clone());
        if stored_source.as_ref().is_some_and(|s| *s != ours) {
            return invalid(format!("the control plane's rollout {store_name:?} belongs to another object; rename this Rollout"), status, conditions).await;
        }
        // The engine takes a recipe for a new canary; edits to a running one's steps wait for
        // its next canary (the engine runs one recipe at a time).
        let changed = view.is_none() || p.apply.is_some();
        if changed {
            if let Err(e) = apply_templates(ro, ctx, &ns, &name_of).await {
                return invalid(e, status, conditions).await;
            }
            match ctx
                .handle
                .apply_rollout(core, &format!("kubernetes:{ns}/{name}"))
                .await
            {
                Ok(_) => {
                    ctx.gateway.set(&route, gateway_target.clone());
                    tracing::info!(rollout = %format!("{ns}/{name}"), stable = %stable_hash, canary = %canary_hash, "handed the recipe to the engine");
                    publish(
                        ctx,
                        ro,
                        EventType::Normal,
                        "RolloutStarted",
                        format!("canary {canary_hash} of stable {stable_hash}"),
                    )
                    .await;
                }
                Err(EngineError::Invalid(e)) => {
                    return invalid(e.to_string(), status, conditions).await
                }
                Err(e) => return Err(Error::Engine(e.to_string())),
            }
            // The next pass sees the stored rollout.
            return Ok(Action::requeue(Duration::from_millis(100)));
        }
    }

    // ReplicaSets.
    for sp in &p.sets {
        let existing = sets.iter().find(|rs| hash_of(rs) == sp.hash);
        match existing {
            Some(rs) => {
                let have = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
                let mut patch = json!({});
                if have != sp.replicas {
                    patch["spec"] = json!({"replicas": sp.replicas});
                }
                if let Some(at) = sp.deadline {
                    patch["metadata"] =
                        json!({"annotations": {SCALE_DOWN_DEADLINE: at.to_string()}});
                } else if sp.clear_deadline && rs.annotations().contains_key(SCALE_DOWN_DEADLINE) {
                    patch["metadata"] = json!({"annotations": {SCALE_DOWN_DEADLINE: null}});
                }
                if patch != json!({}) {
                    sets_api
                        .patch(
                            &rs.name_any(),
                            &PatchParams::default(),
                            &Patch::Merge(patch),
                        )
                        .await?;
                    if have != sp.replicas {
                        publish(
                            ctx,
                            ro,
                            EventType::Normal,
                            "ScalingReplicaSet",
                            format!(
                                "scaled ReplicaSet {} from {have} to {}",
                                rs.name_any(),
                                sp.replicas
                            ),
                        )
                        .await;
                    }
                }
            }
            None if sp.hash == hash => {
                let rs = replica_set(ro, &template, &hash, sp.replicas);
                match sets_api.create(&PostParams::default(), &rs).await {
                    Ok(_) => {
                        publish(
                            ctx,
                            ro,
                            EventType::Normal,
                            "ScalingReplicaSet",
                            format!(
                                "created ReplicaSet {}-{hash} with {} replicas",
                                name, sp.replicas
                            ),
                        )
                        .await
                    }
                    Err(kube::Error::Api(e)) if e.code == 409 => {}
                    Err(e) => return Err(e.into()),
                }
            }
            None if sp.replicas > 0 => {
                conditions.push(condition("StableMissing", true, "ReplicaSetMissing", format!("the ReplicaSet of stable hash {} is gone; re-apply its template to bring it back", sp.hash), &old_status.conditions));
            }
            None => {}
        }
    }

    // Service selectors.
    for (svc, want) in [
        (&stable_svc, &p.stable_selector),
        (&canary_svc, &p.canary_selector),
    ] {
        let have = services
            .get_opt(svc)
            .await?
            .and_then(|s| s.spec?.selector?.get(HASH_LABEL).cloned());
        if have.as_ref() != Some(want) {
            let patch = json!({"spec": {"selector": {HASH_LABEL: want}}});
            services
                .patch(svc, &PatchParams::default(), &Patch::Merge(patch))
                .await?;
            publish(
                ctx,
                ro,
                EventType::Normal,
                "SwitchService",
                format!("Service {svc} selects {HASH_LABEL}={want}"),
            )
            .await;
        }
    }

    // Status: a projection of the engine's view.
    let counts = |f: fn(&k8s_openapi::api::apps::v1::ReplicaSetStatus) -> Option<i32>,
                  only: Option<&str>| {
        sets.iter()
            .filter(|rs| only.is_none_or(|h| hash_of(rs) == h))
            .filter_map(|rs| rs.status.as_ref().and_then(f))
            .sum::<i32>()
    };
    status.current_pod_hash = Some(hash.clone());
    status.stable_pod_hash = Some(p.stable_selector.clone());
    status.replicas = Some(counts(|s| Some(s.replicas), None));
    status.ready_replicas = Some(counts(|s| s.ready_replicas, None));
    status.available_replicas = Some(counts(|s| s.available_replicas, None));
    status.updated_replicas = Some(counts(|s| Some(s.replicas), Some(&hash)));
    status.selector = Some(
        ro.spec
            .selector
            .match_labels
            .clone()
            .unwrap_or_default()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
    );
    match (&view, current) {
        (Some(v), Some(_)) => {
            status.phase = Some(format!("{:?}", v.status.phase));
            status.current_step_index = i32::try_from(v.status.current_step_index).ok();
            status.canary_weight = Some(i32::from(v.status.canary_weight));
            status.message = Some(v.status.message.clone()).filter(|m| !m.is_empty());
        }
        _ => {
            status.phase = Some("Healthy".into());
            status.canary_weight = Some(0);
            status.message = Some(format!("stable {hash}, nothing to promote"));
        }
    }
    let ready = status.ready_replicas.unwrap_or(0) >= replicas;
    conditions.push(condition(
        "Available",
        ready,
        if ready {
            "AvailableReplicas"
        } else {
            "NotEnoughReplicas"
        },
        format!(
            "{} of {replicas} pods ready",
            status.ready_replicas.unwrap_or(0)
        ),
        &old_status.conditions,
    ));
    if let (Some(v), Some(_)) = (&view, current) {
        // Best-effort: the AnalysisRuns are a view of the store's runs, and an API error
        // writing them must not keep the Rollout's own status (the phase, the weight) from
        // being written. The condition says so; the next pass tries again.
        let name_of = |t: &TemplateRef| template_store_name(&ns, t);
        let runs = &v.status.analysis_runs;
        if !runs.is_empty() {
            let projected = project_runs(ro, ctx, &ns, &effective, runs, &name_of).await;
            if let Err(e) = &projected {
                tracing::warn!(rollout = %ro.name_any(), error = %e, "cannot write AnalysisRuns");
            }
            conditions.push(condition(
                "AnalysisRunsWritten",
                projected.is_ok(),
                if projected.is_ok() {
                    "Written"
                } else {
                    "WriteFailed"
                },
                match &projected {
                    Ok(()) => format!("{} AnalysisRuns of this canary", runs.len()),
                    Err(e) => format!("cannot write AnalysisRuns: {e}"),
                },
                &old_status.conditions,
            ));
        }
    }
    status.conditions = conditions;
    let phase_changed = old_status.phase != status.phase;
    let new_phase = status.phase.clone();
    let new_message = status.message.clone();
    write_status(ro, ctx, &old_status, status).await?;
    if phase_changed {
        let warning = matches!(new_phase.as_deref(), Some("Aborted" | "RolledBack"));
        publish(
            ctx,
            ro,
            if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            &new_phase.clone().unwrap_or_default(),
            // The status's message: the engine's, or the controller's own for a Rollout with
            // nothing to promote (a Healthy Event with no text says nothing).
            new_message.unwrap_or_default(),
        )
        .await;
    }

    let driving = current.is_some_and(|s| !(s.phase.is_terminal() && s.settled));
    let wake = p
        .wake_at
        .map(|at| Duration::from_millis(at.saturating_sub(millis_now()).max(100)));
    Ok(match (driving, wake) {
        (true, w) => {
            Action::requeue(w.map_or(Duration::from_secs(1), |w| w.min(Duration::from_secs(1))))
        }
        (false, Some(w)) => Action::requeue(w),
        (false, None) => Action::requeue(Duration::from_secs(300)),
    })
}

/// A template's name in the control plane's store.
fn template_store_name(ns: &str, t: &TemplateRef) -> String {
    if t.cluster_scope == Some(true) {
        names::cluster(&t.template_name)
    } else {
        names::namespaced(ns, &t.template_name)
    }
}

/// The AnalysisTemplates and ClusterAnalysisTemplates a rollout names, into the store.
async fn apply_templates(
    ro: &Rollout,
    ctx: &Context,
    ns: &str,
    name_of: &(dyn Fn(&TemplateRef) -> String + Sync),
) -> Result<(), String> {
    for (t, body) in templates(ro, ctx, ns, name_of).await? {
        let core = convert::template_to_core(&name_of(&t), &body)
            .map_err(|e| format!("template {:?}: {e}", t.template_name))?;
        ctx.handle
            .apply_template(core)
            .await
            .map_err(|e| format!("template {:?}: {e}", t.template_name))?;
    }
    Ok(())
}

/// The templates a rollout names (each once), as they are in the cluster now.
async fn templates(
    ro: &Rollout,
    ctx: &Context,
    ns: &str,
    name_of: &(dyn Fn(&TemplateRef) -> String + Sync),
) -> Result<Vec<(TemplateRef, vireo_k8s_api::analysis::TemplateBody)>, String> {
    let c = ro.spec.strategy.canary.clone().unwrap_or_default();
    let mut refs: Vec<TemplateRef> = c
        .steps
        .iter()
        .filter_map(|s| s.analysis.as_ref())
        .flat_map(|a| a.templates.clone())
        .collect();
    refs.extend(c.analysis.iter().flat_map(|a| a.templates.clone()));
    refs.extend(
        c.post_deploy_verify
            .iter()
            .flat_map(|a| a.templates.clone()),
    );
    let mut done = BTreeMap::new();
    let mut out = Vec::new();
    for t in refs {
        let store_name = name_of(&t);
        if done.insert(store_name.clone(), ()).is_some() {
            continue;
        }
        let body = if t.cluster_scope == Some(true) {
            let api: Api<ClusterAnalysisTemplate> = Api::all(ctx.client.clone());
            api.get(&t.template_name).await.map(|x| x.spec.body)
        } else {
            let api: Api<AnalysisTemplate> = Api::namespaced(ctx.client.clone(), ns);
            api.get(&t.template_name).await.map(|x| x.spec.body)
        }
        .map_err(|e| format!("template {:?}: {e}", t.template_name))?;
        out.push((t, body));
    }
    Ok(out)
}

/// Writes the current canary's analysis runs as AnalysisRun objects (created once, owned by
/// the Rollout; their status follows the store's run).
async fn project_runs(
    ro: &Rollout,
    ctx: &Context,
    ns: &str,
    hash: &str,
    runs: &[vireo_core::analysis::RunView],
    name_of: &(dyn Fn(&TemplateRef) -> String + Sync),
) -> Result<(), Error> {
    use vireo_k8s_api::analysis::AnalysisRun;
    use vireo_k8s_api::runs;
    let api: Api<AnalysisRun> = Api::namespaced(ctx.client.clone(), ns);
    let rollout = ro.name_any();
    let steps = ro
        .spec
        .strategy
        .canary
        .as_ref()
        .map(|c| c.steps.clone())
        .unwrap_or_default();
    let mut defined: Option<Vec<vireo_k8s_api::analysis::Metric>> = None;
    for run in runs {
        let name = runs::name(&rollout, hash, run.run);
        let want = runs::status(run);
        let have = match api.get_opt(&name).await? {
            Some(obj) => obj.status,
            None => {
                if defined.is_none() {
                    // A template that cannot be read now only costs the spec its definitions.
                    let bodies = templates(ro, ctx, ns, name_of).await.unwrap_or_default();
                    defined = Some(bodies.into_iter().flat_map(|(_, b)| b.metrics).collect());
                }
                let step = steps
                    .get(run.step)
                    .filter(|s| s.analysis.is_some())
                    .and_then(|_| i32::try_from(run.step).ok());
                let mut obj = AnalysisRun::new(
                    &name,
                    runs::spec(&rollout, run, step, defined.as_deref().unwrap_or_default()),
                );
                obj.metadata.namespace = Some(ns.to_string());
                obj.metadata.labels = Some(
                    [
                        (runs::ROLLOUT_LABEL.to_string(), rollout.clone()),
                        (HASH_LABEL.to_string(), hash.to_string()),
                    ]
                    .into(),
                );
                obj.metadata.owner_references = Some(vec![owner(ro)]);
                match api.create(&PostParams::default(), &obj).await {
                    Ok(_) => None,
                    // Another pass made it first: read what it wrote, so the patch below
                    // removes what no longer holds.
                    Err(kube::Error::Api(e)) if e.code == 409 => {
                        api.get_opt(&name).await?.and_then(|r| r.status)
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        };
        if let Some(patch) = runs::status_patch(have.as_ref(), &want) {
            api.patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
                .await?;
        }
    }
    prune_runs(ro, ctx, &api, hash).await
}

/// Deletes the AnalysisRuns of earlier canaries beyond the Rollout's history limits
/// (`spec.analysis`, Argo's defaults of 5 successful and 5 unsuccessful), once per canary.
/// Only runs this Rollout owns (by uid), not merely ones wearing its label.
async fn prune_runs(
    ro: &Rollout,
    ctx: &Context,
    api: &Api<vireo_k8s_api::analysis::AnalysisRun>,
    current: &str,
) -> Result<(), Error> {
    use vireo_k8s_api::runs;
    let uid = ro.uid().unwrap_or_default();
    let done = |m: &HashMap<String, String>| m.get(&uid).is_some_and(|h| h == current);
    if done(&ctx.pruned.lock().unwrap_or_else(|e| e.into_inner())) {
        return Ok(());
    }
    let limit = |v: Option<i32>| v.map_or(runs::DEFAULT_HISTORY_LIMIT, |n| n.max(0) as usize);
    let history = ro.spec.analysis.clone().unwrap_or_default();
    let selector = format!("{}={}", runs::ROLLOUT_LABEL, ro.name_any());
    let listed = api.list(&ListParams::default().labels(&selector)).await?;
    let kept: Vec<runs::Kept> = listed
        .items
        .iter()
        .filter(|r| r.owner_references().iter().any(|o| o.uid == uid))
        .map(|r| runs::Kept {
            name: r.name_any(),
            hash: r.labels().get(HASH_LABEL).cloned().unwrap_or_default(),
            phase: r.status.as_ref().and_then(|s| s.phase.clone()),
            created_ms: r
                .metadata
                .creation_timestamp
                .as_ref()
                .map_or(0, |t| t.0.as_millisecond()),
        })
        .collect();
    let gone = runs::expired(
        &kept,
        current,
        limit(history.successful_run_history_limit),
        limit(history.unsuccessful_run_history_limit),
    );
    for name in gone {
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    ctx.pruned
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(uid, current.to_string());
    Ok(())
}

/// The Rollout as the controlling owner of what the controller makes (ReplicaSets,
/// AnalysisRuns): garbage-collected with it.
fn owner(ro: &Rollout) -> OwnerReference {
    OwnerReference {
        api_version: Rollout::api_version(&()).into_owned(),
        kind: Rollout::kind(&()).into_owned(),
        name: ro.name_any(),
        uid: ro.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn replica_set(ro: &Rollout, template: &PodTemplateSpec, hash: &str, replicas: i32) -> ReplicaSet {
    let name = ro.name_any();
    let mut template = template.clone();
    let meta = template.metadata.get_or_insert_with(Default::default);
    let labels = meta.labels.get_or_insert_with(Default::default);
    labels.insert(HASH_LABEL.into(), hash.into());
    let mut selector = ro.spec.selector.clone();
    selector
        .match_labels
        .get_or_insert_with(Default::default)
        .insert(HASH_LABEL.into(), hash.into());
    let owner = owner(ro);
    serde_json::from_value(json!({
        "metadata": {
            "name": format!("{name}-{hash}"),
            "namespace": ro.namespace(),
            "labels": {ROLLOUT_LABEL: name, HASH_LABEL: hash},
            "ownerReferences": [owner],
        },
        "spec": {"replicas": replicas, "selector": selector, "template": template},
    }))
    .expect("a ReplicaSet built from typed parts deserializes")
}

async fn write_status(
    ro: &Rollout,
    ctx: &Context,
    old: &RolloutStatus,
    new: RolloutStatus,
) -> Result<(), Error> {
    if *old == new {
        return Ok(());
    }
    let api: Api<Rollout> =
        Api::namespaced(ctx.client.clone(), &ro.namespace().unwrap_or_default());
    api.patch_status(
        &ro.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({"status": new})),
    )
    .await?;
    Ok(())
}

async fn publish(ctx: &Context, ro: &Rollout, type_: EventType, reason: &str, note: String) {
    // kube's recorder folds Events with the same reason and action into one series that keeps
    // its first note: with one action for everything, "scaled to 1", "to 2", "to 4" showed as
    // the first alone. The note (within the API's 128 characters for an action) keeps each
    // distinct transition apart; the same transition repeated still folds.
    let action: String = note.chars().take(128).collect();
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action,
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &ro.object_ref(&())).await {
        tracing::warn!("publishing an Event: {e}");
    }
}

/// The Rollout is being deleted: give the Services their selectors back (without the hash
/// pin), so they select every pod of the app again.
async fn cleanup(ro: &Rollout, ctx: &Context) -> Result<Action, Error> {
    let ns = ro.namespace().unwrap_or_default();
    let store_name = names::namespaced(&ns, &ro.name_any());
    // A canary still running would keep moving weight toward pods that are about to go.
    if let Ok(view) = ctx.handle.get(&store_name).await {
        if !view.status.phase.is_terminal() {
            let caller = vireo_core::rollout::Caller {
                actor: format!("kubernetes:{ns}/{}", ro.name_any()),
                reason: Some("the Rollout was deleted".into()),
            };
            if let Err(e) = ctx
                .handle
                .act(&store_name, vireo_core::rollout::Action::Abort, caller)
                .await
            {
                tracing::warn!(rollout = %store_name, "aborting on delete: {e}");
            }
        }
    }
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), &ns);
    let c = ro.spec.strategy.canary.clone().unwrap_or_default();
    for svc in [c.stable_service, c.canary_service].into_iter().flatten() {
        if services.get_opt(&svc).await?.is_some() {
            let patch = json!({"spec": {"selector": {HASH_LABEL: null}}});
            services
                .patch(&svc, &PatchParams::default(), &Patch::Merge(patch))
                .await?;
        }
    }
    publish(
        ctx,
        ro,
        EventType::Normal,
        "Deleted",
        "restored the Services' selectors".into(),
    )
    .await;
    Ok(Action::await_change())
}
