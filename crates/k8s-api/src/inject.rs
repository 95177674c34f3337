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
//!   proxy is an ordinary container, first in the list with a postStart hook that waits for
//!   `/ready` (the kubelet starts the app after it); in a Job's pod (owned by a Job) it answers
//!   `POST http://127.0.0.1:<admin>/shutdown` from inside the pod, which the Job's last
//!   command calls so that the pod completes (Linkerd's answer too; the status annotation
//!   says so).
//! - **Hardened**: non-root uid 2102, read-only root filesystem, no privilege escalation, all
//!   capabilities dropped, the runtime's seccomp profile.
//! - **Identity**: the pod, namespace and service account from the downward API, and a
//!   projected service-account token for the audience `vireo`, which the control plane checks
//!   with TokenReview.
//! - **Metrics**: Prometheus scrape annotations for the admin port.
//! - **Transparent interception** (the default; `vireo.dev/interception: explicit` on the pod
//!   opts out): an init container [`INIT_CONTAINER`] runs `vireo-proxy iptables` with
//!   `NET_ADMIN` and `NET_RAW` (as root, no other capability, read-only root filesystem) to
//!   redirect the pod's outbound TCP to the proxy, which runs with `--transparent`. Ports and
//!   networks to leave alone come from `vireo.dev/skip-outbound-ports` (default: protocols
//!   whose server speaks first, [`DEFAULT_SKIP_PORTS`]) and `vireo.dev/skip-outbound-networks`.
//!   With native sidecars the init step runs first, then the proxy, then the app's own init
//!   containers (whose calls the proxy then carries); with the classic container it runs
//!   last, after the app's init containers, which would otherwise have no proxy to reach.
//!   A namespace that enforces the `baseline` or `restricted` Pod Security Standard refuses
//!   `NET_ADMIN`: opt such pods out (explicit mode; a CNI plugin is not built).
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
pub const INIT_CONTAINER: &str = "vireo-init";
pub const INTERCEPTION: &str = "vireo.dev/interception";
pub const SKIP_PORTS: &str = "vireo.dev/skip-outbound-ports";
pub const SKIP_NETWORKS: &str = "vireo.dev/skip-outbound-networks";
/// kubectl's choice of container for `logs` and `exec` without `-c`.
pub const DEFAULT_CONTAINER: &str = "kubectl.kubernetes.io/default-container";
/// Ports not redirected unless the pod says otherwise: SMTP (25, 587), MySQL (3306) and
/// Galera (4444, 4567-4568), whose servers speak first — an intercepted client would wait
/// for protocol detection's 10 s before its bytes are relayed.
pub const DEFAULT_SKIP_PORTS: &str = "25,587,3306,4444,4567-4568";

/// What the webhook is configured with.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub image: String,
    /// The init step's image: the proxy binary and iptables.
    pub init_image: String,
    /// Intercept pods' traffic unless they say `vireo.dev/interception: explicit`.
    pub transparent: bool,
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
            init_image: "ghcr.io/vireo-dev/vireo-init:0.1.0".into(),
            transparent: true,
            control_url: "https://vireo.vireo-system.svc:8080".into(),
            data_port: 4140,
            admin_port: 4191,
            kubernetes_minor: 29,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Inject(Interception),
    /// Leave the pod alone; the reason goes in [`STATUS_ANNOTATION`] unless `None` (already
    /// injected: nothing at all changes).
    Skip(Option<String>),
}

/// The reason of a pod that neither it nor its namespace opted in: every other pod of the
/// cluster, so it is recorded on the pod but not as an Event (one per pod created would drown
/// the namespace's Events).
pub const NOT_OPTED_IN: &str =
    "not opted in (vireo.dev/inject: enabled on the namespace or the pod)";

/// The reason of a pod whose namespace opted out: as quiet as [`NOT_OPTED_IN`] (the namespace
/// said it wants nothing of Vireo, Events included).
pub const NAMESPACE_DISABLED: &str = "disabled by the namespace's vireo.dev/inject";

/// Whether a skip's reason is worth an Event on the pod: one the pod asked for or needs to
/// know (its own `disabled`, a bad annotation, hostNetwork), not the cluster's pods that never
/// opted in or whose namespace opted out.
pub fn reason_is_news(reason: &str) -> bool {
    reason != NOT_OPTED_IN && reason != NAMESPACE_DISABLED
}

/// How an injected pod's traffic reaches its proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interception {
    /// The app calls the proxy's port itself.
    Explicit,
    /// iptables redirects the pod's outbound TCP, except these (as the init step's flags).
    Transparent {
        skip_ports: String,
        skip_networks: String,
    },
}

/// The pod's interception, from its annotations and the webhook's default; an annotation that
/// does not parse is an error naming it (the pod is then not injected, with that reason).
fn interception(pod: &Value, o: &Options) -> Result<Interception, String> {
    let ann = &pod["metadata"]["annotations"];
    let transparent = match ann.get(INTERCEPTION).and_then(Value::as_str) {
        None => o.transparent,
        Some("transparent") => true,
        Some("explicit") => false,
        Some(other) => {
            return Err(format!(
                "{INTERCEPTION} is {other:?}: use transparent or explicit"
            ))
        }
    };
    if !transparent {
        return Ok(Interception::Explicit);
    }
    use vireo_types::intercept::{parse_list, Cidr, Ports};
    // The init step's flags are written from the parsed values, never from the annotation's
    // text: what reaches `vireo-proxy iptables` is exactly what was checked here.
    fn list<T>(ann: &Value, key: &str, default: &str) -> Result<String, String>
    where
        T: std::str::FromStr<Err = String> + std::fmt::Display,
    {
        let v = ann.get(key).and_then(Value::as_str).unwrap_or(default);
        let items = parse_list::<T>(v).map_err(|e| format!("{key}: {e}"))?;
        Ok(items.iter().map(T::to_string).collect::<Vec<_>>().join(","))
    }
    Ok(Interception::Transparent {
        skip_ports: list::<Ports>(ann, SKIP_PORTS, DEFAULT_SKIP_PORTS)?,
        skip_networks: list::<Cidr>(ann, SKIP_NETWORKS, "")?,
    })
}

fn setting(v: &Value) -> Option<&str> {
    v.get(INJECT).and_then(Value::as_str)
}

/// Whether `pod` (in a namespace labelled `namespace_labels`) gets the sidecar, and how.
pub fn decide(pod: &Value, namespace_labels: &Value, o: &Options) -> Decision {
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
    let inject = || match interception(pod, o) {
        Ok(i) => Decision::Inject(i),
        Err(e) => Decision::Skip(Some(e)),
    };
    match (from_pod, from_ns) {
        (Some("enabled"), _) => inject(),
        (Some("disabled"), _) => {
            Decision::Skip(Some("disabled by the pod's vireo.dev/inject".into()))
        }
        (Some(other), _) => Decision::Skip(Some(format!(
            "the pod's vireo.dev/inject is {other:?}: use enabled or disabled"
        ))),
        (None, Some("enabled")) => inject(),
        (None, Some("disabled")) => Decision::Skip(Some(NAMESPACE_DISABLED.into())),
        (None, _) => Decision::Skip(Some(NOT_OPTED_IN.into())),
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

/// The init step of transparent interception.
pub fn init_container(o: &Options, skip_ports: &str, skip_networks: &str) -> Value {
    let mut args = vec![
        "iptables".to_string(),
        "--proxy-uid".into(),
        PROXY_UID.to_string(),
        "--proxy-port".into(),
        o.data_port.to_string(),
    ];
    for (flag, v) in [
        ("--skip-outbound-ports", skip_ports),
        ("--skip-outbound-networks", skip_networks),
    ] {
        if !v.is_empty() {
            args.extend([flag.to_string(), v.to_string()]);
        }
    }
    json!({
        "name": INIT_CONTAINER,
        "image": o.init_image,
        "command": ["/usr/local/bin/vireo-proxy"],
        "args": args,
        "resources": {"requests": {"cpu": "10m", "memory": "10Mi"}, "limits": {"memory": "50Mi"}},
        // iptables needs root with NET_ADMIN and NET_RAW in the pod's network namespace; nothing
        // else: no other capability, no escalation, a read-only root (the xtables lock lives in
        // an emptyDir on /run).
        "securityContext": {
            "runAsUser": 0,
            "runAsNonRoot": false,
            "privileged": false,
            "readOnlyRootFilesystem": true,
            "allowPrivilegeEscalation": false,
            "capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [{"name": "vireo-xtables-lock", "mountPath": "/run"}],
    })
}

/// Whether the pod belongs to a Job (its pod must be able to complete).
fn owned_by_job(pod: &Value) -> bool {
    pod["metadata"]["ownerReferences"]
        .as_array()
        .is_some_and(|os| os.iter().any(|o| o["kind"] == "Job"))
}

/// The sidecar container.
pub fn sidecar(o: &Options, native: bool, transparent: bool) -> Value {
    let mut c = json!({
        "name": CONTAINER,
        "image": o.image,
        "command": ["/usr/local/bin/vireo-proxy"],
        // The ports come from here, not the namespace's shared file: the iptables redirect,
        // the probes and the scrape annotations name these, and must find the proxy there.
        "args": [
            "--config", "/etc/vireo/proxy.yaml",
            "--listen", format!("127.0.0.1:{}", o.data_port),
            "--admin", format!("0.0.0.0:{}", o.admin_port),
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
    if transparent {
        if let Some(args) = c["args"].as_array_mut() {
            args.push(json!("--transparent"));
        }
    }
    if native {
        c["restartPolicy"] = json!("Always");
        // The app's containers start once this passes: the proxy is ready before them.
        c["startupProbe"] = json!({"httpGet": {"path": "/ready", "port": o.admin_port}, "periodSeconds": 1, "failureThreshold": 120});
    } else {
        // The kubelet starts a pod's containers in order and the next one only once this
        // hook returned: first in the list, the proxy is ready before the app starts (what
        // Linkerd and Istio do before native sidecars).
        c["lifecycle"] = json!({"postStart": {"exec": {"command": [
            "/usr/local/bin/vireo-proxy", "wait-ready",
            "--admin", format!("127.0.0.1:{}", o.admin_port), "--timeout", "120s",
        ]}}});
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
        Decision::Inject(interception) => {
            let native = o.kubernetes_minor >= 29;
            let init = match interception {
                Interception::Explicit => None,
                Interception::Transparent {
                    skip_ports,
                    skip_networks,
                } => Some(init_container(o, skip_ports, skip_networks)),
            };
            let mut ops = Vec::new();
            let has_inits = pod["spec"]["initContainers"].is_array();
            if native {
                // First (after the init step), so that it starts before any other init
                // container needs the network.
                let first: Vec<Value> = init
                    .iter()
                    .cloned()
                    .chain([sidecar(o, true, init.is_some())])
                    .collect();
                if has_inits {
                    for (i, c) in first.into_iter().enumerate() {
                        ops.push(json!({"op": "add", "path": format!("/spec/initContainers/{i}"), "value": c}));
                    }
                } else {
                    ops.push(json!({"op": "add", "path": "/spec/initContainers", "value": first}));
                }
            } else {
                if let Some(init) = init.clone() {
                    // Last: the app's init containers run before any proxy exists.
                    if has_inits {
                        ops.push(
                            json!({"op": "add", "path": "/spec/initContainers/-", "value": init}),
                        );
                    } else {
                        ops.push(
                            json!({"op": "add", "path": "/spec/initContainers", "value": [init]}),
                        );
                    }
                }
                let mut side = sidecar(o, false, init.is_some());
                if owned_by_job(pod) {
                    if let Some(args) = side["args"].as_array_mut() {
                        args.push(json!("--shutdown-endpoint"));
                    }
                }
                ops.push(json!({"op": "add", "path": "/spec/containers/0", "value": side}));
            }
            let mut volumes = vec![
                // Optional: a namespace without the ConfigMap must not leave its pods stuck in
                // ContainerCreating (the proxy then exits and says why; `vireo check` helps).
                json!({"name": "vireo-proxy-config", "configMap": {"name": CONFIG_MAP, "optional": true}}),
                json!({"name": "vireo-token", "projected": {"sources": [{"serviceAccountToken": {
                    "audience": AUDIENCE, "expirationSeconds": 3600, "path": "token"}}]}}),
            ];
            if init.is_some() {
                volumes.push(json!({"name": "vireo-xtables-lock", "emptyDir": {}}));
            }
            if !pod["spec"]["volumes"].is_array() {
                ops.push(json!({"op": "add", "path": "/spec/volumes", "value": []}));
            }
            for v in volumes {
                ops.push(json!({"op": "add", "path": "/spec/volumes/-", "value": v}));
            }
            let kind = match (native, init.is_some()) {
                (true, true) => "native sidecar, transparent interception",
                (true, false) => "native sidecar, explicit",
                (false, true) => "container, transparent interception",
                (false, false) => "container, explicit",
            };
            let status = if !native && owned_by_job(pod) {
                format!(
                    "injected: {kind}; the Job ends the proxy with POST http://127.0.0.1:{}/shutdown",
                    o.admin_port
                )
            } else {
                format!("injected: {kind}")
            };
            let mut set = vec![(INJECTED, "true".to_string()), (STATUS_ANNOTATION, status)];
            // The proxy is the first container before 1.29: `kubectl logs` and `kubectl exec`
            // still default to the app's.
            let app = pod["spec"]["containers"][0]["name"].as_str();
            if let (false, Some(app)) = (native, app) {
                if pod["metadata"]["annotations"]
                    .get(DEFAULT_CONTAINER)
                    .is_none()
                {
                    set.push((DEFAULT_CONTAINER, app.to_string()));
                }
            }
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
        let o = Options::default();
        let transparent = Decision::Inject(Interception::Transparent {
            skip_ports: DEFAULT_SKIP_PORTS.into(),
            skip_networks: String::new(),
        });
        let enabled = json!({INJECT: "enabled"});
        let disabled = json!({INJECT: "disabled"});
        assert_eq!(decide(&pod(json!({})), &enabled, &o), transparent);
        assert_eq!(
            decide(&pod(json!({})), &json!({}), &o),
            Decision::Skip(Some(
                "not opted in (vireo.dev/inject: enabled on the namespace or the pod)".into()
            ))
        );
        assert_eq!(
            decide(&pod(json!({INJECT: "disabled"})), &enabled, &o),
            Decision::Skip(Some("disabled by the pod's vireo.dev/inject".into()))
        );
        assert_eq!(
            decide(&pod(json!({INJECT: "enabled"})), &disabled, &o),
            transparent
        );
        assert!(
            matches!(decide(&pod(json!({INJECT: "yes"})), &enabled, &o), Decision::Skip(Some(r)) if r.contains("\"yes\""))
        );
    }

    #[test]
    fn a_native_sidecar_hardened_with_identity_and_metrics_and_a_second_pass_is_a_no_op() {
        let o = Options::default();
        let p = pod(Value::Null);
        let injected = apply(
            &p,
            patch(
                &p,
                &decide(&p, &json!({INJECT: "enabled"}), &Options::default()),
                &o,
            ),
        );
        let side = &injected["spec"]["initContainers"][1];
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
            decide(&injected, &json!({INJECT: "enabled"}), &Options::default()),
            Decision::Skip(None)
        );
        assert!(patch(&injected, &Decision::Skip(None), &o).is_empty());
    }

    fn names(list: &Value) -> Vec<&str> {
        list.as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str())
            .collect()
    }

    #[test]
    fn transparent_interception_runs_the_init_step_first_with_only_net_admin() {
        let o = Options::default();
        // Written loosely; the init step gets the list as parsed (an empty item would be a
        // bad command line for `vireo-proxy iptables`, and the pod would never start).
        let mut p = pod(json!({SKIP_PORTS: "25,, 5432,", SKIP_NETWORKS: " 169.254.169.254/32"}));
        p["spec"]["initContainers"] = json!([{"name": "migrate", "image": "web:1"}]);
        let injected = apply(
            &p,
            patch(&p, &decide(&p, &json!({INJECT: "enabled"}), &o), &o),
        );
        // The init step, the proxy, then the app's own init containers (which the proxy carries).
        assert_eq!(
            names(&injected["spec"]["initContainers"]),
            [INIT_CONTAINER, CONTAINER, "migrate"]
        );
        let init = &injected["spec"]["initContainers"][0];
        assert_eq!(
            init["args"],
            json!([
                "iptables",
                "--proxy-uid",
                "2102",
                "--proxy-port",
                "4140",
                "--skip-outbound-ports",
                "25,5432",
                "--skip-outbound-networks",
                "169.254.169.254/32"
            ])
        );
        let sc = &init["securityContext"];
        assert_eq!(sc["capabilities"]["add"], json!(["NET_ADMIN", "NET_RAW"]));
        assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
        assert_eq!(sc["allowPrivilegeEscalation"], false);
        // The proxy's uid is the one the rules exempt, and it serves redirected connections.
        let side = &injected["spec"]["initContainers"][1];
        assert_eq!(side["securityContext"]["runAsUser"], json!(PROXY_UID));
        let args = side["args"].as_array().unwrap();
        assert!(args.contains(&json!("--transparent")));
        // It listens where the rules redirect, whatever the namespace's file says.
        let at = args.iter().position(|a| a == "--listen").unwrap();
        assert_eq!(args[at + 1], "127.0.0.1:4140");
        assert!(names(&injected["spec"]["volumes"]).contains(&"vireo-xtables-lock"));
        assert_eq!(
            injected["metadata"]["annotations"][STATUS_ANNOTATION],
            "injected: native sidecar, transparent interception"
        );
    }

    #[test]
    fn explicit_pods_get_no_init_step_and_bad_annotations_a_reason() {
        let o = Options::default();
        let p = pod(json!({INTERCEPTION: "explicit"}));
        let injected = apply(
            &p,
            patch(&p, &decide(&p, &json!({INJECT: "enabled"}), &o), &o),
        );
        assert_eq!(names(&injected["spec"]["initContainers"]), [CONTAINER]);
        let args = injected["spec"]["initContainers"][0]["args"].clone();
        assert!(!args.as_array().unwrap().contains(&json!("--transparent")));
        for (key, value, says) in [
            (INTERCEPTION, "sometimes", "use transparent or explicit"),
            (
                SKIP_PORTS,
                "25,smtp",
                "vireo.dev/skip-outbound-ports: \"smtp\"",
            ),
            (
                SKIP_NETWORKS,
                "10.0.0.0/40",
                "vireo.dev/skip-outbound-networks: \"10.0.0.0/40\"",
            ),
        ] {
            let p = pod(json!({key: value}));
            match decide(&p, &json!({INJECT: "enabled"}), &o) {
                Decision::Skip(Some(reason)) => assert!(reason.contains(says), "{reason}"),
                other => panic!("{key}: {value}: {other:?}"),
            }
        }
    }

    #[test]
    fn before_1_29_the_sidecar_is_a_container() {
        let o = Options {
            kubernetes_minor: 28,
            ..Options::default()
        };
        let p = pod(json!({}));
        let injected = apply(
            &p,
            patch(&p, &decide(&p, &json!({INJECT: "enabled"}), &o), &o),
        );
        let containers = injected["spec"]["containers"].as_array().unwrap();
        assert_eq!(containers.len(), 2);
        // First, and the app starts only once its postStart hook saw the proxy ready.
        assert_eq!(containers[0]["name"], CONTAINER);
        assert!(containers[0].get("restartPolicy").is_none());
        assert_eq!(
            containers[0]["lifecycle"]["postStart"]["exec"]["command"][1],
            "wait-ready"
        );
        let app = containers[1]["name"].as_str().unwrap();
        assert_eq!(injected["metadata"]["annotations"][DEFAULT_CONTAINER], app);
        assert!(!containers[0]["args"]
            .as_array()
            .unwrap()
            .contains(&json!("--shutdown-endpoint")));
        // A Job's pod: its proxy can be told to stop, and the annotation says how.
        let mut job = pod(json!({}));
        job["metadata"]["ownerReferences"] = json!([{"kind": "Job", "name": "nightly"}]);
        let injected = apply(
            &job,
            patch(&job, &decide(&job, &json!({INJECT: "enabled"}), &o), &o),
        );
        assert!(injected["spec"]["containers"][0]["args"]
            .as_array()
            .unwrap()
            .contains(&json!("--shutdown-endpoint")));
        assert!(injected["metadata"]["annotations"][STATUS_ANNOTATION]
            .as_str()
            .unwrap()
            .ends_with("POST http://127.0.0.1:4191/shutdown"));
        // The init step runs last: the app's init containers have no proxy to reach yet.
        let mut p = pod(json!({}));
        p["spec"]["initContainers"] = json!([{"name": "migrate", "image": "web:1"}]);
        let injected = apply(
            &p,
            patch(&p, &decide(&p, &json!({INJECT: "enabled"}), &o), &o),
        );
        assert_eq!(
            names(&injected["spec"]["initContainers"]),
            ["migrate", INIT_CONTAINER]
        );
    }

    #[test]
    fn a_skipped_pod_gets_only_the_reason() {
        let p = pod(json!({INJECT: "disabled"}));
        let out = apply(
            &p,
            patch(
                &p,
                &decide(&p, &json!({INJECT: "enabled"}), &Options::default()),
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
