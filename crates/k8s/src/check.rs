//! `vireo check`: pods that the injection rules say should have the sidecar but do not —
//! created before the injector ran, or while it was unreachable (its webhook is
//! `failurePolicy: Ignore`, so an outage never blocks a workload; this finds what it missed).

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ListParams};
use vireo_k8s_api::inject::{self, Decision};

/// One pod that should have been injected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missed {
    pub namespace: String,
    pub pod: String,
}

/// Every such pod, in one namespace or all, sorted.
pub async fn missed(
    client: &kube::Client,
    namespace: Option<&str>,
) -> Result<Vec<Missed>, kube::Error> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let labels: std::collections::BTreeMap<String, serde_json::Value> = namespaces
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .map(|n| {
            let name = n.metadata.name.clone().unwrap_or_default();
            (
                name,
                serde_json::to_value(n.metadata.labels.unwrap_or_default()).unwrap_or_default(),
            )
        })
        .collect();
    let pods: Api<Pod> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let mut out = Vec::new();
    for pod in pods.list(&ListParams::default()).await?.items {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        // Finished pods need no proxy.
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        if matches!(phase.as_str(), "Succeeded" | "Failed") {
            continue;
        }
        let value = serde_json::to_value(&pod).unwrap_or_default();
        let ns_labels = labels.get(&ns).cloned().unwrap_or_default();
        // Default options: whether a pod should have had a proxy does not depend on how its
        // traffic would reach it.
        if matches!(
            inject::decide(&value, &ns_labels, &inject::Options::default()),
            Decision::Inject(_)
        ) {
            out.push(Missed {
                namespace: ns,
                pod: pod.metadata.name.unwrap_or_default(),
            });
        }
    }
    out.sort_by(|a, b| (&a.namespace, &a.pod).cmp(&(&b.namespace, &b.pod)));
    Ok(out)
}
