//! A CRD's structural schema applied to an object: types checked, `required`, `enum`,
//! `minimum`/`maximum`, int-or-string, and unknown fields pruned (or refused with
//! `fieldValidation=Strict`, as `kubectl apply` asks), `x-kubernetes-preserve-unknown-fields`
//! honoured. Not emulated: CEL rules (`x-kubernetes-validations`), formats, patterns,
//! `oneOf`/`anyOf` beyond int-or-string, list-type semantics, defaults.

use serde_json::{Map, Value};

/// What the schema made of an object.
#[derive(Debug, Default)]
pub struct Checked {
    /// Validation errors, each `path: reason`.
    pub errors: Vec<String>,
    /// Fields not in the schema (pruned unless strict).
    pub unknown: Vec<String>,
}

/// Checks `obj` (the whole object; `apiVersion`, `kind` and `metadata` are not the schema's
/// business) and prunes unknown fields in place.
pub fn apply(schema: &Value, obj: &mut Value) -> Checked {
    let mut out = Checked::default();
    if let Value::Object(top) = obj {
        let props = &schema["properties"];
        for (k, v) in top.iter_mut() {
            if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            match props.get(k) {
                Some(s) => walk(s, v, k, &mut out),
                None => out.unknown.push(k.clone()),
            }
        }
        if schema["x-kubernetes-preserve-unknown-fields"] != Value::Bool(true) {
            top.retain(|k, _| {
                matches!(k.as_str(), "apiVersion" | "kind" | "metadata") || props.get(k).is_some()
            });
        }
        if let Some(req) = schema["required"].as_array() {
            for r in req.iter().filter_map(Value::as_str) {
                if !top.contains_key(r) {
                    out.errors.push(format!("{r}: Required value"));
                }
            }
        }
    }
    out
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn walk(schema: &Value, v: &mut Value, path: &str, out: &mut Checked) {
    if v.is_null() && schema["nullable"] == Value::Bool(true) {
        return;
    }
    let preserve = schema["x-kubernetes-preserve-unknown-fields"] == Value::Bool(true);
    if schema["x-kubernetes-int-or-string"] == Value::Bool(true) {
        if !matches!(type_name(v), "integer" | "string") {
            out.errors.push(format!(
                "{path}: Invalid value: \"{}\": {path} in body must be of type integer,string",
                type_name(v)
            ));
        }
        return;
    }
    let want = schema["type"].as_str();
    if let Some(want) = want {
        let got = type_name(v);
        let ok = got == want || (want == "number" && got == "integer");
        if !ok {
            out.errors.push(format!(
                "{path}: Invalid value: \"{got}\": {path} in body must be of type {want}: \"{got}\""
            ));
            return;
        }
    }
    if let Some(choices) = schema["enum"].as_array() {
        if !choices.contains(v) {
            out.errors.push(format!(
                "{path}: Unsupported value: {v}: supported values: {}",
                choices
                    .iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    if let Some(n) = v.as_f64() {
        if let Some(min) = schema["minimum"].as_f64() {
            if n < min {
                out.errors.push(format!(
                    "{path}: Invalid value: {n}: {path} in body should be greater than or equal to {min}"
                ));
            }
        }
        if let Some(max) = schema["maximum"].as_f64() {
            if n > max {
                out.errors.push(format!(
                    "{path}: Invalid value: {n}: {path} in body should be less than or equal to {max}"
                ));
            }
        }
    }
    match v {
        Value::Object(map) => object(schema, map, path, preserve, out),
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    walk(item_schema, item, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

fn object(
    schema: &Value,
    map: &mut Map<String, Value>,
    path: &str,
    preserve: bool,
    out: &mut Checked,
) {
    let props = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties").filter(|a| a.is_object());
    if let Some(req) = schema["required"].as_array() {
        for r in req.iter().filter_map(Value::as_str) {
            if !map.contains_key(r) {
                out.errors.push(format!("{path}.{r}: Required value"));
            }
        }
    }
    let mut unknown = Vec::new();
    for (k, val) in map.iter_mut() {
        let child = format!("{path}.{k}");
        if let Some(s) = props.and_then(|p| p.get(k)) {
            walk(s, val, &child, out);
        } else if let Some(a) = additional {
            walk(a, val, &child, out);
        } else if !preserve && schema["additionalProperties"] != Value::Bool(true) {
            unknown.push(k.clone());
            out.unknown.push(child);
        }
    }
    for k in unknown {
        map.remove(&k);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn types_required_ranges_and_pruning() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "required": ["selector"],
            "properties": {"selector": {"type": "object"}, "replicas": {"type": "integer", "minimum": 0},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "d": {"x-kubernetes-int-or-string": true}}}}});
        let mut obj = json!({"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "a"},
            "spec": {"selector": {}, "replicas": -1, "free": {"any": 1}, "d": "3m", "typo": 1}, "extra": 2});
        let c = apply(&schema, &mut obj);
        assert_eq!(c.unknown, ["extra", "spec.typo"]);
        assert_eq!(c.errors.len(), 1, "{:?}", c.errors);
        assert!(
            c.errors[0].starts_with("spec.replicas: Invalid value: -1"),
            "{:?}",
            c.errors
        );
        assert_eq!(obj["spec"]["free"]["any"], 1);
        assert!(obj["spec"].get("typo").is_none() && obj.get("extra").is_none());

        let mut missing = json!({"spec": {"d": 1.5}});
        let c = apply(&schema, &mut missing);
        assert!(
            c.errors
                .iter()
                .any(|e| e == "spec.selector: Required value"),
            "{:?}",
            c.errors
        );
        assert!(
            c.errors
                .iter()
                .any(|e| e.starts_with("spec.d: Invalid value")),
            "{:?}",
            c.errors
        );
    }
}
