//! Sidecar injection, the pure part: whether a pod gets Vireo's proxy, and the JSON patch that
//! adds it. The admission webhook (next to the controller) feeds AdmissionReviews through
//! [`decide`] and [`patch`]; nothing here does I/O.
//!
//! - **Opt-in**: `vireo.dev/inject: enabled` on the namespace (label) or the pod (annotation
//!   or label); the pod's wins; `disabled` opts out. A pod that is skipped gets the reason in
//!   the annotation [`STATUS_ANNOTATION`].
//! - **Idempotent**: a pod that already has the sidecar (the annotation [`INJECTED`] or a
//!   container named [`CONTAINER`]) is left alone, so a second admission is a no-op.
//! - **Native sidecar** on Kubernetes 1.29 and later: an init container with
//!   `restartPolicy: Always` and a startupProbe on `/ready`, so the app starts after the
//!   proxy is ready and a Job's pod completes when its main container does. Before 1.29 the
//!   proxy is an ordinary container (a Job's pod then keeps running until the proxy is told to
//!   stop; that shutdown hook is not built yet).
//! - **Hardened**: non-root uid 2102, read-only root filesystem, no privilege escalation, all
//!   capabilities dropped, the runtime's seccomp profile.
//! - **Identity**: the pod, namespace and service account from the downward API, and a
//!   projected service-account token for the audience `vireo`, which the control plane checks
//!   with TokenReview.
//! - **Metrics**: Prometheus scrape annotations for the admin port.
//!
//! The proxy's file config (listen and admin addresses, timeouts) comes from the ConfigMap
//! [`CONFIG_MAP`] in the pod's namespace, mounted read-only.

use serde_json::{json, Value};

pub const INJECT: &str = "vireo.dev/inject";
pub const INJECTED: &str = "vireo.dev/injected";
pub const STATUS_ANNOTATION: &str = "vireo.dev/inject-status";
pub const CONTAINER: &str = "vireo-proxy";
pub const CONFIG_MAP: &str = "vireo-proxy";
pub const TOKEN_DIR: &str = "/var/run/secrets/vireo.dev/serviceaccount";
pub const PROXY_UID: i64 = 2102;

/// What the webhook is configured with.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub image: String,
    /// The control plane the sidecar follows (`https://vireo.vireo-system.svc:8080`).
    pub control_url: String,
    pub data_port: u16,
    pub admin_port: u16,
    /// The cluster's minor version (`29` for 1.29): native sidecars from 29 on.
    pub kubernetes_minor: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            image: "ghcr.io/vireo-dev/vireo:0.1.0".into(),
            control_url: "https://vireo.vireo-system.svc:8080".into(),
            data_port: 4140,
            admin_port: 4191,
            kubernetes_minor: 29,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Inject,
    /// Leave the pod alone; the reason goes in [`STATUS_ANNOTATION`] unless `None` (already
    /// injected: nothing at all changes).
    Skip(Option<String>),
}

fn setting(v: &Value) -> Option<&str> {
    v.get(INJECT).and_then(Value::as_str)
}

/// Whether `pod` (in a namespace labelled `namespace_labels`) gets the sidecar.
pub fn decide(pod: &Value, namespace_labels: &Value) -> Decision {
    let meta = &pod["metadata"];
    let already = meta["annotations"][INJECTED] == "true"
        || ["containers", "initContainers"].iter().any(|list| {
            pod["spec"][list]
                .as_array()
                .is_some_and(|cs| cs.iter().any(|c| c["name"] == CONTAINER))
        });
    if already {
        return Decision::Skip(None);
    }
    if pod["spec"]["hostNetwork"] == true {
        return Decision::Skip(Some(
            "hostNetwork pods share the node's network; not injected".into(),
        ));
    }
    let from_pod = setting(&meta["annotations"]).or_else(|| setting(&meta["labels"]));
    let from_ns = setting(namespace_labels);
    match (from_pod, from_ns) {
        (Some("enabled"), _) => Decision::Inject,
        (Some("disabled"), _) => {
            Decision::Skip(Some("disabled by the pod's vireo.dev/inject".into()))
        }
        (Some(other), _) => Decision::Skip(Some(format!(
            "the pod's vireo.dev/inject is {other:?}: use enabled or disabled"
        ))),
        (None, Some("enabled")) => Decision::Inject,
        (None, Some("disabled")) => {
            Decision::Skip(Some("disabled by the namespace's vireo.dev/inject".into()))
        }
        (None, _) => Decision::Skip(Some(
            "not opted in (vireo.dev/inject: enabled on the namespace or the pod)".into(),
        )),
    }
}

/// The escaped JSON-pointer segment of an annotation key (`/` is `~1`).
fn pointer_key(k: &str) -> String {
    k.replace('~', "~0").replace('/', "~1")
}

fn annotations_ops(pod: &Value, set: &[(&str, String)]) -> Vec<Value> {
    let mut ops = Vec::new();
    if !pod["metadata"]["annotations"].is_object() {
        ops.push(json!({"op": "add", "path": "/metadata/annotations", "value": {}}));
    }
    for (k, v) in set {
        ops.push(json!({"op": "add", "path": format!("/metadata/annotations/{}", pointer_key(k)), "value": v}));
    }
    ops
}

/// The sidecar container.
pub fn sidecar(o: &Options, native: bool) -> Value {
    let mut c = json!({
        "name": CONTAINER,
        "image": o.image,
        "command": ["/usr/local/bin/vireo-proxy"],
        "args": [
            "--config", "/etc/vireo/proxy.yaml",
            "--control", o.control_url,
            "--proxy-id", "$(POD_NAMESPACE)/$(POD_NAME)",
            "--control-token-file", format!("{TOKEN_DIR}/token"),
        ],
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "SERVICE_ACCOUNT", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
        ],
        "ports": [
            {"name": "vireo-data", "containerPort": o.data_port},
            {"name": "vireo-admin", "containerPort": o.admin_port},
        ],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": o.admin_port}, "periodSeconds": 2},
        "livenessProbe": {"httpGet": {"path": "/live", "port": o.admin_port}, "periodSeconds": 10},
        "resources": {"requests": {"cpu": "10m", "memory": "20Mi"}, "limits": {"memory": "250Mi"}},
        "securityContext": {
            "runAsNonRoot": true,
            "runAsUser": PROXY_UID,
            "runAsGroup": PROXY_UID,
            "readOnlyRootFilesystem": true,
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {"name": "vireo-proxy-config", "mountPath": "/etc/vireo", "readOnly": true},
            {"name": "vireo-token", "mountPath": TOKEN_DIR, "readOnly": true},
        ],
    });
    if native {
        c["restartPolicy"] = json!("Always");
        // The app's containers start once this passes: the proxy is ready before them.
        c["startupProbe"] = json!({"httpGet": {"path": "/ready", "port": o.admin_port}, "periodSeconds": 1, "failureThreshold": 120});
    }
    c
}

/// The JSON patch (RFC 6902) for `decision` on `pod`: the sidecar, volumes and annotations for
/// `Inject`, the reason for `Skip(Some)`, nothing for `Skip(None)`.
pub fn patch(pod: &Value, decision: &Decision, o: &Options) -> Vec<Value> {
    match decision {
        Decision::Skip(None) => Vec::new(),
        Decision::Skip(Some(reason)) => {
            annotations_ops(pod, &[(STATUS_ANNOTATION, format!("skipped: {reason}"))])
        }
        Decision::Inject => {
            let native = o.kubernetes_minor >= 29;
            let mut ops = Vec::new();
            let list = if native {
                "initContainers"
            } else {
                "containers"
            };
            if native {
                // First, so that it starts before any other init container needs the network.
                if pod["spec"][list].is_array() {
                    ops.push(json!({"op": "add", "path": format!("/spec/{list}/0"), "value": sidecar(o, true)}));
                } else {
                    ops.push(json!({"op": "add", "path": format!("/spec/{list}"), "value": [sidecar(o, true)]}));
                }
            } else {
                ops.push(json!({"op": "add", "path": format!("/spec/{list}/-"), "value": sidecar(o, false)}));
            }
            let volumes = [
                // Optional: a namespace without the ConfigMap must not leave its pods stuck in
                // ContainerCreating (the proxy then exits and says why; `vireo check` helps).
                json!({"name": "vireo-proxy-config", "configMap": {"name": CONFIG_MAP, "optional": true}}),
                json!({"name": "vireo-token", "projected": {"sources": [{"serviceAccountToken": {
                    "audience": AUDIENCE, "expirationSeconds": 3600, "path": "token"}}]}}),
            ];
            if !pod["spec"]["volumes"].is_array() {
                ops.push(json!({"op": "add", "path": "/spec/volumes", "value": []}));
            }
            for v in volumes {
                ops.push(json!({"op": "add", "path": "/spec/volumes/-", "value": v}));
            }
            let kind = if native {
                "native sidecar"
            } else {
                "container"
            };
            let mut set = vec![
                (INJECTED, "true".to_string()),
                (STATUS_ANNOTATION, format!("injected: {kind}")),
            ];
            // The app's own scrape annotations win: they may point at its own metrics.
            if pod["metadata"]["annotations"]
                .get("prometheus.io/scrape")
                .is_none()
            {
                set.extend([
                    ("prometheus.io/scrape", "true".to_string()),
                    ("prometheus.io/port", o.admin_port.to_string()),
                    ("prometheus.io/path", "/metrics".to_string()),
                ]);
            }
            ops.extend(annotations_ops(pod, &set));
            ops
        }
    }
}

/// The audience of the sidecar's projected token (what TokenReview is asked about).
pub const AUDIENCE: &str = "vireo";

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(annotations: Value) -> Value {
        json!({"metadata": {"name": "web-0", "annotations": annotations},
               "spec": {"containers": [{"name": "web", "image": "web:1"}]}})
    }

    fn apply(pod: &Value, ops: Vec<Value>) -> Value {
        let mut out = pod.clone();
        let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops)).unwrap();
        json_patch::patch(&mut out, &patch).unwrap();
        out
    }

    #[test]
    fn the_pod_wins_over_the_namespace() {
        let enabled = json!({INJECT: "enabled"});
        let disabled = json!({INJECT: "disabled"});
        assert_eq!(decide(&pod(json!({})), &enabled), Decision::Inject);
        assert_eq!(
            decide(&pod(json!({})), &json!({})),
            Decision::Skip(Some(
                "not opted in (vireo.dev/inject: enabled on the namespace or the pod)".into()
            ))
        );
        assert_eq!(
            decide(&pod(json!({INJECT: "disabled"})), &enabled),
            Decision::Skip(Some("disabled by the pod's vireo.dev/inject".into()))
        );
        assert_eq!(
            decide(&pod(json!({INJECT: "enabled"})), &disabled),
            Decision::Inject
        );
        assert!(
            matches!(decide(&pod(json!({INJECT: "yes"})), &enabled), Decision::Skip(Some(r)) if r.contains("\"yes\""))
        );
    }

    #[test]
    fn a_native_sidecar_hardened_with_identity_and_metrics_and_a_second_pass_is_a_no_op() {
        let o = Options::default();
        let p = pod(Value::Null);
        let injected = apply(&p, patch(&p, &decide(&p, &json!({INJECT: "enabled"})), &o));
        let side = &injected["spec"]["initContainers"][0];
        assert_eq!(side["name"], CONTAINER);
        assert_eq!(side["restartPolicy"], "Always");
        assert_eq!(side["startupProbe"]["httpGet"]["path"], "/ready");
        let sc = &side["securityContext"];
        assert_eq!(
            (
                sc["runAsNonRoot"].clone(),
                sc["readOnlyRootFilesystem"].clone(),
                sc["capabilities"]["drop"][0].clone()
            ),
            (json!(true), json!(true), json!("ALL"))
        );
        assert_eq!(
            injected["spec"]["containers"].as_array().unwrap().len(),
            1,
            "the app is untouched"
        );
        let token =
            &injected["spec"]["volumes"][1]["projected"]["sources"][0]["serviceAccountToken"];
        assert_eq!(token["audience"], AUDIENCE);
        let ann = &injected["metadata"]["annotations"];
        assert_eq!(
            (ann[INJECTED].clone(), ann["prometheus.io/port"].clone()),
            (json!("true"), json!("4191"))
        );
        assert_eq!(
            decide(&injected, &json!({INJECT: "enabled"})),
            Decision::Skip(None)
        );
        assert!(patch(&injected, &Decision::Skip(None), &o).is_empty());
    }

    #[test]
    fn before_1_29_the_sidecar_is_a_container() {
        let o = Options {
            kubernetes_minor: 28,
            ..Options::default()
        };
        let p = pod(json!({}));
        let injected = apply(&p, patch(&p, &Decision::Inject, &o));
        let containers = injected["spec"]["containers"].as_array().unwrap();
        assert_eq!(containers.len(), 2);
        assert_eq!(containers[1]["name"], CONTAINER);
        assert!(containers[1].get("restartPolicy").is_none());
    }

    #[test]
    fn a_skipped_pod_gets_only_the_reason() {
        let p = pod(json!({INJECT: "disabled"}));
        let out = apply(
            &p,
            patch(
                &p,
                &decide(&p, &json!({INJECT: "enabled"})),
                &Options::default(),
            ),
        );
        assert_eq!(out["spec"], p["spec"]);
        assert_eq!(
            out["metadata"]["annotations"][STATUS_ANNOTATION],
            "skipped: disabled by the pod's vireo.dev/inject"
        );
    }
}
