//! The `Rollout` resource in Kubernetes form: Argo Rollouts' workload fields (`replicas`,
//! `selector`, `template` or `workloadRef`) and canary strategy (`canaryService`,
//! `stableService`, `steps`, `analysis`, `trafficRouting`, the scale-down delays), plus
//! Vireo's own `postDeployVerify`, `rollback` and the `vireo` and `gatewayAPI` routers.
//!
//! Embedded mode (`vireo apply` against `vireo serve` on its own) reads the process form of
//! the same kind (`route`, `stable`/`canary` addresses), defined in `vireo_core::spec`; the
//! controller turns this form into that one ([`crate::convert`]).

use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::schema::Unsupported;

/// A progressive delivery of one workload: its pods, the Services that reach the stable and
/// canary versions, and the steps that move traffic between them.
// `printcolumn(...)` repeats its keys once per column, which clippy takes for a mistake.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "vireo.dev",
    version = "v1alpha1",
    kind = "Rollout",
    doc = "A progressive delivery of one workload, driven by Vireo's controller (Argo Rollouts' field names).",
    namespaced,
    status = "RolloutStatus",
    shortname = "vro",
    category = "vireo",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "The phase, as vireo status shows it"
    ),
    printcolumn(
        name = "Step",
        type_ = "integer",
        json_path = ".status.currentStepIndex",
        description = "Index of the current step"
    ),
    printcolumn(
        name = "Weight",
        type_ = "integer",
        json_path = ".status.canaryWeight",
        description = "Percent of traffic on the canary"
    ),
    printcolumn(
        name = "Desired",
        type_ = "integer",
        json_path = ".spec.replicas",
        priority = 1
    ),
    printcolumn(
        name = "Ready",
        type_ = "integer",
        json_path = ".status.readyReplicas",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    /// Pods of the workload (default 1), shared between stable and canary as the weights say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Selects the workload's pods; must match the template's labels.
    pub selector: LabelSelector,
    /// The pods to run. Exactly one of `template` and `workloadRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::pod_template")]
    pub template: Option<PodTemplateSpec>,
    /// A Deployment whose pod template is used instead of `template` (Argo's `workloadRef`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_ref: Option<WorkloadRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_ready_seconds: Option<i32>,
    /// Old ReplicaSets kept at zero replicas, for `kubectl rollout history`-style inspection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_history_limit: Option<i32>,
    /// Held at the current step, as `vireo pause` does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline_seconds: Option<i32>,
    pub strategy: RolloutStrategy,
    /// What a rollback does besides moving traffic back: `{flag: {key, disable}}` and
    /// `downMigration` (see the evidence spec); checked by the controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::free_object")]
    pub rollback: Option<serde_json::Value>,

    // Argo Rollouts fields that Vireo accepts and reports as unsupported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline_abort: Option<Unsupported>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_at: Option<Unsupported>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_window: Option<Unsupported>,
    /// How many finished AnalysisRuns of earlier canaries to keep (Argo's field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisRunHistory>,
}

/// Argo's `spec.analysis`: AnalysisRuns kept per outcome, newest first; older ones of earlier
/// canaries are deleted. The current canary's runs are always kept.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRunHistory {
    /// Successful runs to keep (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub successful_run_history_limit: Option<i32>,
    /// Failed, errored and inconclusive runs to keep (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub unsuccessful_run_history_limit: Option<i32>,
}

/// Argo's `workloadRef`: the pod template comes from an existing Deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadRef {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    /// Argo's `never`, `onsuccess` or `progressively`; Vireo does not scale the Deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down: Option<Unsupported>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStrategy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryStrategy>,
    /// Argo's blue-green strategy: not implemented; a canary with one `setWeight: 100` step
    /// and an analysis before it does the same job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue_green: Option<Unsupported>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStrategy {
    /// The Service whose selector the controller pins to the canary's pod-template hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_service: Option<String>,
    /// The Service pinned to the stable hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_service: Option<String>,
    #[serde(default)]
    pub steps: Vec<CanaryStep>,
    /// Background analysis from `startingStep` until the steps are done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<BackgroundAnalysis>,
    /// Vireo: analysis once the canary holds 100 %, before it becomes stable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_deploy_verify: Option<AnalysisRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_routing: Option<TrafficRouting>,
    /// Seconds the old stable ReplicaSet keeps its pods after a promotion (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_delay_seconds: Option<i32>,
    /// Seconds the canary keeps its pods after an abort, once drained (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_scale_down_delay_seconds: Option<i32>,
    /// Scale the stable ReplicaSet down as the canary's weight grows, instead of keeping it at
    /// full size until the promotion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynamic_stable_scale: Option<bool>,

    // Argo Rollouts fields that Vireo accepts and reports as unsupported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_surge: Option<Unsupported>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<Unsupported>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anti_affinity: Option<Unsupported>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_metadata: Option<Unsupported>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_metadata: Option<Unsupported>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_delay_revision_limit: Option<Unsupported>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_pods_per_replica_set: Option<Unsupported>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ping_pong: Option<Unsupported>,
}

/// One step: exactly one of `setWeight`, `pause`, `analysis`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStep {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub set_weight: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<Pause>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisRef>,

    // Argo Rollouts steps that Vireo accepts and reports as unsupported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<Unsupported>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_canary_scale: Option<Unsupported>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_header_route: Option<Unsupported>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_mirror_route: Option<Unsupported>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<Unsupported>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Pause {
    /// Seconds (`30`) or a duration (`"3m"`); without it, wait for `resume` or `promote`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::int_or_string")]
    pub duration: Option<IntOrString>,
}

/// The templates of one analysis and the arguments they get.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRef {
    pub templates: Vec<TemplateRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<AnalysisArg>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackgroundAnalysis {
    pub templates: Vec<TemplateRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<AnalysisArg>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting_step: Option<i32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateRef {
    pub template_name: String,
    /// The name is a ClusterAnalysisTemplate's rather than an AnalysisTemplate's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_scope: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisArg {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Argo's `valueFrom` (`podTemplateHashValue`, `fieldRef`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<Unsupported>,
}

/// How traffic moves between the versions. At least one router: Vireo's proxies, a Gateway
/// API HTTPRoute, or both.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrafficRouting {
    /// Vireo's proxies (sidecars or a gateway), fed by the control plane's watch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vireo: Option<VireoRouting>,
    /// A Gateway API HTTPRoute whose `backendRefs` weights the controller sets.
    #[serde(
        rename = "gatewayAPI",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub gateway_api: Option<GatewayApiRouting>,

    // Argo Rollouts' routers, reported as unsupported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub istio: Option<Unsupported>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nginx: Option<Unsupported>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alb: Option<Unsupported>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smi: Option<Unsupported>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ambassador: Option<Unsupported>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_mesh: Option<Unsupported>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traefik: Option<Unsupported>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apisix: Option<Unsupported>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugins: Option<Unsupported>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_routes: Option<Unsupported>,
}

/// Vireo's own router: the proxies' route and how it splits.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VireoRouting {
    /// The proxy route this rollout drives; default: the Rollout's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// Sticky cohorts: hash this request key (`{header: x-user-id}`, `{cookie: …}` or
    /// `{query: …}`) into `buckets`; without it, each request is split at random by weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::free_object")]
    pub key: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub buckets: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt: Option<String>,
}

/// A Gateway API HTTPRoute (any implementation) that carries the weights.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayApiRouting {
    #[serde(rename = "httpRoute")]
    pub http_route: String,
    /// Default: the Rollout's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// What the controller observed and decided, projected from its store. Written through the
/// status subresource only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// The phase as the API and `vireo status` show it: `Pending`, `AwaitingApproval`,
    /// `Progressing`, `Paused`, `PostDeployVerify`, `Completed`, `Aborted`, `RolledBack`, …
    /// (Vireo's state machine has more phases than Argo's Healthy/Progressing/Paused/Degraded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_step_index: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_weight: Option<i32>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The pod-template hash of the template in `spec` (what the canary runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_pod_hash: Option<String>,
    /// The pod-template hash that the stable Service selects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_pod_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_replicas: Option<i32>,
    /// The pods' label selector as a string, for the scale subresource (and `kubectl scale`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
