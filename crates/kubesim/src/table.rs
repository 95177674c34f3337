//! Server-side printing (`Accept: application/json;as=Table;g=meta.k8s.io;v=v1`), which is
//! how kubectl 1.36 prints `get`: a CRD's `additionalPrinterColumns` (simple JSONPaths only),
//! a few columns for the built-in kinds the tests look at, and Name and Age for the rest.

use serde_json::{json, Value};

use crate::registry::{Column, ResourceType};
use crate::store::get_path;

fn col(name: &str, type_: &str, path: &str) -> Column {
    Column {
        name: name.into(),
        type_: type_.into(),
        format: String::new(),
        description: String::new(),
        priority: 0,
        json_path: path.into(),
    }
}

fn columns(t: &ResourceType) -> Vec<Column> {
    let mut cols = vec![Column {
        format: "name".into(),
        ..col("Name", "string", ".metadata.name")
    }];
    let age = col("Age", "date", ".metadata.creationTimestamp");
    if t.custom {
        cols.extend(t.columns.iter().cloned());
        if !t.columns.iter().any(|c| c.type_ == "date") {
            cols.push(age);
        }
        return cols;
    }
    match t.kind.as_str() {
        "Pod" => cols.extend([
            col("Ready", "string", "#ready"),
            col("Status", "string", ".status.phase"),
            age,
        ]),
        "ReplicaSet" | "Deployment" | "StatefulSet" => cols.extend([
            col("Desired", "integer", ".spec.replicas"),
            col("Current", "integer", ".status.replicas"),
            col("Ready", "integer", ".status.readyReplicas"),
            age,
        ]),
        "Service" => cols.extend([
            col("Type", "string", ".spec.type"),
            col("Cluster-IP", "string", ".spec.clusterIP"),
            age,
        ]),
        "Lease" => cols.extend([col("Holder", "string", ".spec.holderIdentity"), age]),
        "Event" if t.group.is_empty() => cols.extend([
            col("Type", "string", ".type"),
            col("Reason", "string", ".reason"),
            col("Object", "string", "#object"),
            col("Message", "string", ".message"),
            age,
        ]),
        _ => cols.push(age),
    }
    cols
}

fn cell(c: &Column, obj: &Value) -> Value {
    if c.json_path == "#ready" {
        let statuses = obj["status"]["containerStatuses"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let total = obj["spec"]["containers"]
            .as_array()
            .map(Vec::len)
            .unwrap_or(0);
        let ready = statuses.iter().filter(|s| s["ready"] == true).count();
        return json!(format!("{ready}/{total}"));
    }
    if c.json_path == "#object" {
        let o = &obj["involvedObject"];
        return json!(format!(
            "{}/{}",
            o["kind"].as_str().unwrap_or_default().to_lowercase(),
            o["name"].as_str().unwrap_or_default()
        ));
    }
    let v = get_path(obj, &c.json_path);
    match (c.type_.as_str(), &v) {
        ("date", Value::String(ts)) => json!(age(ts)),
        (_, Value::Null) => Value::Null,
        ("string", Value::String(_)) => v,
        ("string", other) => json!(other.to_string()),
        _ => v,
    }
}

/// kubectl's human duration since a timestamp.
pub fn age(ts: &str) -> String {
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(ts) else {
        return "<invalid>".into();
    };
    let secs = (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
        .num_seconds()
        .max(0);
    let (m, h, d) = (secs / 60, secs / 3600, secs / 86400);
    match secs {
        s if s < 120 => format!("{s}s"),
        _ if m < 10 && secs % 60 != 0 => format!("{m}m{}s", secs % 60),
        _ if m < 180 => format!("{m}m"),
        _ if h < 8 && m % 60 != 0 => format!("{h}h{}m", m % 60),
        _ if h < 48 => format!("{h}h"),
        _ if d < 8 && h % 24 != 0 => format!("{d}d{}h", h % 24),
        _ if d < 730 => format!("{d}d"),
        _ => format!("{}y", d / 365),
    }
}

/// The Table for `items`.
pub fn table(t: &ResourceType, items: &[Value], rv: u64) -> Value {
    let cols = columns(t);
    let defs: Vec<Value> = cols
        .iter()
        .map(|c| {
            json!({"name": c.name, "type": c.type_, "format": c.format,
                   "description": c.description, "priority": c.priority})
        })
        .collect();
    let rows: Vec<Value> = items
        .iter()
        .map(|obj| {
            json!({
                "cells": cols.iter().map(|c| cell(c, obj)).collect::<Vec<_>>(),
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": obj["metadata"],
                },
            })
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": rv.to_string()},
        "columnDefinitions": defs,
        "rows": rows,
    })
}
