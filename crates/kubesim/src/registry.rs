//! The resource types the simulator serves: a fixed table of built-in ones (what Vireo's
//! install, controller, webhook and tests touch) and those registered by creating a
//! CustomResourceDefinition.

use serde_json::{json, Value};

/// A printer column of a CRD (`additionalPrinterColumns`) or of a built-in table.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub type_: String,
    pub format: String,
    pub description: String,
    pub priority: i64,
    pub json_path: String,
}

#[derive(Debug, Clone)]
pub struct ScalePaths {
    pub spec_replicas: String,
    pub status_replicas: String,
    pub label_selector: Option<String>,
}

/// One resource (one group/version/plural).
#[derive(Debug, Clone)]
pub struct ResourceType {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    /// A status subresource: the main endpoint ignores `.status`, `/status` takes only it.
    pub status: bool,
    pub scale: Option<ScalePaths>,
    pub columns: Vec<Column>,
    /// The CRD's `openAPIV3Schema`, for validation and pruning.
    pub schema: Option<Value>,
    /// Served by a CRD (not built in).
    pub custom: bool,
    /// Only `create` (TokenReview): nothing is stored.
    pub create_only: bool,
}

impl ResourceType {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `plural.group`, as error messages and kubectl name a resource.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The discovery entries: the resource and its subresources.
    pub fn discovery(&self) -> Vec<Value> {
        let verbs: Vec<&str> = if self.create_only {
            vec!["create"]
        } else {
            vec![
                "create",
                "delete",
                "deletecollection",
                "get",
                "list",
                "patch",
                "update",
                "watch",
            ]
        };
        let mut out = vec![json!({
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": verbs,
            "shortNames": self.short_names,
            "categories": self.categories,
        })];
        if self.status {
            out.push(json!({"name": format!("{}/status", self.plural), "singularName": "", "namespaced": self.namespaced, "kind": self.kind, "verbs": ["get", "patch", "update"]}));
        }
        if self.scale.is_some() {
            out.push(json!({"name": format!("{}/scale", self.plural), "singularName": "", "namespaced": self.namespaced, "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]}));
        }
        out
    }

    /// The type a CustomResourceDefinition declares (its first served version).
    pub fn from_crd(crd: &Value) -> Result<ResourceType, String> {
        let spec = &crd["spec"];
        let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
        let names = &spec["names"];
        let version = spec["versions"]
            .as_array()
            .and_then(|vs| vs.iter().find(|v| v["served"].as_bool().unwrap_or(true)))
            .ok_or("spec.versions: at least one served version is required")?;
        let columns = version["additionalPrinterColumns"]
            .as_array()
            .map(|cols| {
                cols.iter()
                    .map(|c| Column {
                        name: s(&c["name"]),
                        type_: s(&c["type"]),
                        format: s(&c["format"]),
                        description: s(&c["description"]),
                        priority: c["priority"].as_i64().unwrap_or(0),
                        json_path: s(&c["jsonPath"]),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let sub = &version["subresources"];
        let scale = sub
            .get("scale")
            .filter(|v| v.is_object())
            .map(|sc| ScalePaths {
                spec_replicas: s(&sc["specReplicasPath"]),
                status_replicas: s(&sc["statusReplicasPath"]),
                label_selector: sc["labelSelectorPath"].as_str().map(String::from),
            });
        let t = ResourceType {
            group: s(&spec["group"]),
            version: s(&version["name"]),
            plural: s(&names["plural"]),
            singular: names["singular"]
                .as_str()
                .map(String::from)
                .unwrap_or_else(|| s(&names["kind"]).to_lowercase()),
            kind: s(&names["kind"]),
            namespaced: spec["scope"].as_str() != Some("Cluster"),
            short_names: string_list(&names["shortNames"]),
            categories: string_list(&names["categories"]),
            status: sub.get("status").is_some_and(|v| v.is_object()),
            scale,
            columns,
            schema: version["schema"].get("openAPIV3Schema").cloned(),
            custom: true,
            create_only: false,
        };
        let expected = format!("{}.{}", t.plural, t.group);
        if crd["metadata"]["name"].as_str() != Some(expected.as_str()) {
            return Err(format!(
                "metadata.name: must be spec.names.plural+\".\"+spec.group ({expected:?})"
            ));
        }
        if t.kind.is_empty() || t.plural.is_empty() || t.group.is_empty() {
            return Err("spec.group, spec.names.kind and spec.names.plural are required".into());
        }
        Ok(t)
    }
}

/// The strings of a JSON array (others, and a non-array, read as none).
pub fn string_list(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn builtin(
    group: &str,
    version: &str,
    plural: &str,
    kind: &str,
    namespaced: bool,
    short: &[&str],
) -> ResourceType {
    ResourceType {
        group: group.into(),
        version: version.into(),
        plural: plural.into(),
        singular: kind.to_lowercase(),
        kind: kind.into(),
        namespaced,
        short_names: short.iter().map(|s| s.to_string()).collect(),
        categories: Vec::new(),
        status: false,
        scale: None,
        columns: Vec::new(),
        schema: None,
        custom: false,
        create_only: false,
    }
}

/// The built-in resources the simulator serves.
pub fn builtins() -> Vec<ResourceType> {
    let with_status = |mut t: ResourceType| {
        t.status = true;
        t
    };
    let scalable = |mut t: ResourceType| {
        t.status = true;
        t.scale = Some(ScalePaths {
            spec_replicas: ".spec.replicas".into(),
            status_replicas: ".status.replicas".into(),
            label_selector: None,
        });
        t
    };
    let mut token_review = builtin(
        "authentication.k8s.io",
        "v1",
        "tokenreviews",
        "TokenReview",
        false,
        &[],
    );
    token_review.create_only = true;
    vec![
        with_status(builtin("", "v1", "namespaces", "Namespace", false, &["ns"])),
        with_status(builtin("", "v1", "pods", "Pod", true, &["po"])),
        with_status(builtin("", "v1", "services", "Service", true, &["svc"])),
        builtin("", "v1", "serviceaccounts", "ServiceAccount", true, &["sa"]),
        builtin("", "v1", "configmaps", "ConfigMap", true, &["cm"]),
        builtin("", "v1", "secrets", "Secret", true, &[]),
        builtin("", "v1", "events", "Event", true, &["ev"]),
        builtin("", "v1", "endpoints", "Endpoints", true, &["ep"]),
        with_status(builtin(
            "",
            "v1",
            "persistentvolumeclaims",
            "PersistentVolumeClaim",
            true,
            &["pvc"],
        )),
        scalable(builtin(
            "apps",
            "v1",
            "deployments",
            "Deployment",
            true,
            &["deploy"],
        )),
        scalable(builtin(
            "apps",
            "v1",
            "replicasets",
            "ReplicaSet",
            true,
            &["rs"],
        )),
        scalable(builtin(
            "apps",
            "v1",
            "statefulsets",
            "StatefulSet",
            true,
            &["sts"],
        )),
        builtin(
            "discovery.k8s.io",
            "v1",
            "endpointslices",
            "EndpointSlice",
            true,
            &[],
        ),
        builtin("coordination.k8s.io", "v1", "leases", "Lease", true, &[]),
        builtin("events.k8s.io", "v1", "events", "Event", true, &["ev"]),
        token_review,
        with_status(builtin(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            false,
            &["crd", "crds"],
        )),
        builtin(
            "admissionregistration.k8s.io",
            "v1",
            "mutatingwebhookconfigurations",
            "MutatingWebhookConfiguration",
            false,
            &[],
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "roles",
            "Role",
            true,
            &[],
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "rolebindings",
            "RoleBinding",
            true,
            &[],
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterroles",
            "ClusterRole",
            false,
            &[],
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterrolebindings",
            "ClusterRoleBinding",
            false,
            &[],
        ),
        with_status(builtin(
            "policy",
            "v1",
            "poddisruptionbudgets",
            "PodDisruptionBudget",
            true,
            &["pdb"],
        )),
        builtin(
            "networking.k8s.io",
            "v1",
            "networkpolicies",
            "NetworkPolicy",
            true,
            &["netpol"],
        ),
        // Gateway API ships as CRDs in a real cluster; built in here so that tests need not
        // vendor its CRDs. Stored without schema checks.
        with_status(builtin(
            "gateway.networking.k8s.io",
            "v1",
            "httproutes",
            "HTTPRoute",
            true,
            &[],
        )),
    ]
}
