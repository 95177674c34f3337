//! The analysis resources: `AnalysisTemplate` (namespaced) and `ClusterAnalysisTemplate`
//! (cluster-wide, referenced with `clusterScope: true`), which release engineers write, and
//! `AnalysisRun`, which the controller writes as the projection of a run in its store.
//!
//! A metric's `provider` is kept as given by the API server (Vireo's providers are `proxy`,
//! `prometheus` and `judge`; Argo's others are reported as unsupported by name) and checked by
//! the core's template parser when the controller reads it, with field paths.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::schema::Unsupported;

/// The body shared by both template kinds (Argo's `AnalysisTemplateSpec`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateBody {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<TemplateArg>,
    pub metrics: Vec<Metric>,
    /// Metrics measured and shown but not deciding the run (`metricName: "*"` for all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dry_run: Vec<DryRun>,
    /// Argo's measurement retention: Vireo keeps every measurement in its store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measurement_retention: Option<Unsupported>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateArg {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<Unsupported>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DryRun {
    pub metric_name: String,
}

/// One measured quantity with its rules (Argo's field names).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Metric {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::int_or_string")]
    pub interval: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::int_or_string")]
    pub initial_delay: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_condition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_condition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_limit: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inconclusive_limit: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_error_limit: Option<i64>,
    /// Exactly one of `proxy`, `prometheus`, `judge`.
    #[schemars(schema_with = "crate::schema::free_object")]
    pub provider: serde_json::Value,
}

/// Analysis rules a Rollout in the same namespace refers to by name.
// `printcolumn(...)` repeats its keys once per column, which clippy takes for a mistake.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "vireo.dev",
    version = "v1alpha1",
    kind = "AnalysisTemplate",
    doc = "Analysis rules that Rollouts in this namespace refer to by name.",
    namespaced,
    shortname = "vat",
    category = "vireo",
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
pub struct AnalysisTemplateSpec {
    #[serde(flatten)]
    pub body: TemplateBody,
}

/// Analysis rules any Rollout may use with `clusterScope: true`.
// `printcolumn(...)` repeats its keys once per column, which clippy takes for a mistake.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "vireo.dev",
    version = "v1alpha1",
    kind = "ClusterAnalysisTemplate",
    doc = "Analysis rules any Rollout may use with clusterScope: true.",
    shortname = "vcat",
    category = "vireo",
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
pub struct ClusterAnalysisTemplateSpec {
    #[serde(flatten)]
    pub body: TemplateBody,
}

/// One analysis as it ran: written by the controller (owned by its Rollout, labelled with the
/// rollout, step and generation), never by users. Its status is the store's run.
// `printcolumn(...)` repeats its keys once per column, which clippy takes for a mistake.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "vireo.dev",
    version = "v1alpha1",
    kind = "AnalysisRun",
    doc = "One analysis as it ran, written by Vireo's controller.",
    namespaced,
    status = "AnalysisRunStatus",
    shortname = "var",
    category = "vireo",
    printcolumn(name = "Status", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Rollout", type_ = "string", json_path = ".spec.rollout"),
    printcolumn(name = "Step", type_ = "integer", json_path = ".spec.step"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRunSpec {
    /// The Rollout that ran it.
    pub rollout: String,
    /// The step index; absent for the background and post-deploy analyses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<i32>,
    /// The control plane's run id (`vireo status` and the evidence name it).
    pub run_id: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<TemplateArg>,
    pub metrics: Vec<Metric>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRunStatus {
    /// `Running`, `Successful`, `Failed`, `Error` or `Inconclusive`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metric_results: Vec<MetricResult>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricResult {
    pub name: String,
    pub phase: String,
    #[serde(default)]
    pub count: u32,
    #[serde(default)]
    pub successful: u32,
    #[serde(default)]
    pub failed: u32,
    #[serde(default)]
    pub inconclusive: u32,
    #[serde(default)]
    pub error: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub measurements: Vec<Measurement>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Measurement {
    pub phase: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
