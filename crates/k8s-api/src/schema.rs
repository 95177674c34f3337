//! Schema helpers for fields whose structure the API server should not check.

use std::borrow::Cow;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

/// An Argo Rollouts field that Vireo does not implement. The schema keeps whatever it holds
/// (`x-kubernetes-preserve-unknown-fields`), so a converted Argo manifest applies, and
/// [`crate::convert`] reports the field's path in the `Unsupported` condition instead of
/// ignoring it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Unsupported(pub serde_json::Value);

impl JsonSchema for Unsupported {
    fn schema_name() -> Cow<'static, str> {
        "Unsupported".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "Accepted for compatibility with Argo Rollouts but not implemented by Vireo: the Rollout gets an Unsupported condition naming this field.",
            "x-kubernetes-preserve-unknown-fields": true
        })
    }
}

/// An object the API server keeps as given; the controller validates it (with field paths)
/// when it converts the resource, and reports errors in a condition.
pub fn free_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// A pod template: `metadata` with labels and annotations checked, `spec` kept as given. The
/// full PodSpec schema would make the CRD hundreds of kilobytes (and hit the annotation limit
/// of client-side apply); the API server validates the spec when the controller creates the
/// ReplicaSet, and a rejection becomes the Rollout's condition.
pub fn pod_template(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "description": "The pod template of the workload (as in a Deployment). Its spec is validated when the controller creates the ReplicaSet.",
        "properties": {
            "metadata": {
                "type": "object",
                "properties": {
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "annotations": {"type": "object", "additionalProperties": {"type": "string"}}
                }
            },
            "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
        }
    })
}

/// Argo's durations: a number of seconds or a string such as `"3m"`.
pub fn int_or_string(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "x-kubernetes-int-or-string": true,
        "anyOf": [{"type": "integer"}, {"type": "string"}]
    })
}
