//! The admission chain for pod creation: each MutatingWebhookConfiguration whose rules cover
//! `pods` CREATE and whose `namespaceSelector`/`objectSelector` (`matchLabels` only) match is
//! called over HTTPS with an AdmissionReview v1, trusting only its `caBundle`; its JSON patch
//! is applied before the pod is stored. `failurePolicy: Ignore` lets the pod through when the
//! webhook fails; `Fail` (the default, as in Kubernetes) refuses it.
//!
//! Not emulated: `clientConfig.service` (use `url`), validating webhooks, `matchExpressions`,
//! `reinvocationPolicy`, `matchPolicy`, `sideEffects`/dry-run handling, timeouts other than
//! `timeoutSeconds` (default 10).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::store::Cluster;

fn labels_match(selector: &Value, labels: &Value) -> bool {
    match selector["matchLabels"].as_object() {
        None => true,
        Some(m) => m.iter().all(|(k, v)| labels.get(k) == Some(v)),
    }
}

fn covers_pod_create(webhook: &Value) -> bool {
    webhook["rules"].as_array().into_iter().flatten().any(|r| {
        let has = |field: &str, want: &str| {
            r[field]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == want || x == "*"))
        };
        has("operations", "CREATE") && has("resources", "pods") && has("apiGroups", "")
    })
}

/// Runs `pod` through every matching mutating webhook.
pub async fn admit_pod(
    cluster: Arc<Cluster>,
    ns: String,
    mut pod: Value,
) -> Result<Value, ApiError> {
    let (Some(configs_t), Some(ns_t)) = (
        cluster.resource(
            "admissionregistration.k8s.io",
            "mutatingwebhookconfigurations",
        ),
        cluster.resource("", "namespaces"),
    ) else {
        return Ok(pod);
    };
    let ns_labels = cluster
        .get(&ns_t, "", &ns)
        .map(|n| n["metadata"]["labels"].clone())
        .unwrap_or(Value::Null);
    let (configs, _) = cluster.list(&configs_t, None);
    for config in configs {
        for webhook in config["webhooks"].as_array().into_iter().flatten() {
            if !covers_pod_create(webhook)
                || !labels_match(&webhook["namespaceSelector"], &ns_labels)
                || !labels_match(&webhook["objectSelector"], &pod["metadata"]["labels"])
            {
                continue;
            }
            let name = webhook["name"].as_str().unwrap_or_default().to_string();
            let ignore = webhook["failurePolicy"] == "Ignore";
            match call(webhook, &ns, &pod).await {
                Ok(Some(patched)) => pod = patched,
                Ok(None) => {}
                Err(e) if ignore => {
                    tracing::warn!(webhook = %name, "kubesim: webhook failed, ignored (failurePolicy Ignore): {e}")
                }
                Err(e) => {
                    return Err(ApiError::new(
                        500,
                        "InternalError",
                        format!("Internal error occurred: failed calling webhook \"{name}\": {e}"),
                    ))
                }
            }
        }
    }
    Ok(pod)
}

/// One webhook call: the patched pod, `None` for no patch, or why it failed (a refusal is an
/// error too).
async fn call(webhook: &Value, ns: &str, pod: &Value) -> Result<Option<Value>, String> {
    let url = webhook["clientConfig"]["url"]
        .as_str()
        .ok_or("clientConfig.url is required (service references are not emulated)")?;
    let ca = webhook["clientConfig"]["caBundle"]
        .as_str()
        .unwrap_or_default();
    let ca = base64::engine::general_purpose::STANDARD
        .decode(ca)
        .map_err(|e| format!("caBundle: {e}"))?;
    let timeout = Duration::from_secs(webhook["timeoutSeconds"].as_u64().unwrap_or(10));
    let client =
        vireo_http::HttpClient::with_ca_pem(timeout, "caBundle", &ca).map_err(|e| e.to_string())?;
    let uid = format!("kubesim-{}", fastrand::u64(..));
    let review = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": ns,
            "name": pod["metadata"]["name"],
            "operation": "CREATE",
            "userInfo": {"username": "kubesim-admin"},
            "object": pod,
            "dryRun": false,
        }
    });
    let limits = vireo_http::Limits::new(timeout, 3 << 20);
    let answer = tokio::time::timeout(
        timeout,
        client.post(
            url,
            "application/json",
            serde_json::to_vec(&review).unwrap_or_default().into(),
            limits,
        ),
    )
    .await
    .map_err(|_| format!("timed out after {timeout:?}"))?
    .map_err(|e| e.to_string())?;
    if answer.status != http::StatusCode::OK {
        return Err(format!("HTTP {}", answer.status));
    }
    let body: Value =
        serde_json::from_slice(&answer.body).map_err(|e| format!("not an AdmissionReview: {e}"))?;
    let response = &body["response"];
    if response["uid"] != uid.as_str() {
        return Err("the response's uid is not the request's".into());
    }
    if response["allowed"] != true {
        return Err(format!(
            "denied: {}",
            response["status"]["message"]
                .as_str()
                .unwrap_or("no reason given")
        ));
    }
    let Some(patch) = response["patch"].as_str() else {
        return Ok(None);
    };
    if response["patchType"] != "JSONPatch" {
        return Err("patchType must be JSONPatch".into());
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(patch)
        .map_err(|e| format!("patch: {e}"))?;
    let ops: json_patch::Patch =
        serde_json::from_slice(&bytes).map_err(|e| format!("patch: {e}"))?;
    let mut patched = pod.clone();
    json_patch::patch(&mut patched, &ops).map_err(|e| format!("patch does not apply: {e}"))?;
    Ok(Some(patched))
}
