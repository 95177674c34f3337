//! The workloads seam on ReplicaSets. The engine calls `start` when a rollout's inputs are
//! materialized; the reconciler (level-triggered, from the engine's phase) scales the canary's
//! ReplicaSet up, and `start` returns once it has a ready pod. `stop` has nothing to do: the
//! scale-down after an abort is the reconciler's, after `abortScaleDownDelaySeconds`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::api::{Api, ListParams};
use vireo_core::spec::Workload;
use vireo_engine::workload::{WorkloadError, Workloads};
use vireo_k8s_api::plan::HASH_LABEL;

use crate::ROLLOUT_LABEL;

/// A stored rollout's Kubernetes object, as the reconciler last saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    pub namespace: String,
    pub name: String,
    /// The Rollout's `progressDeadlineSeconds`, if it sets one.
    pub progress_deadline: Option<Duration>,
}

/// Where each stored rollout's Kubernetes object lives, filled in by the reconciler.
#[derive(Clone, Default)]
pub struct Sources(Arc<Mutex<HashMap<String, Source>>>);

impl Sources {
    pub fn set(&self, store_name: &str, source: Source) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(store_name.to_string(), source);
    }
    pub fn get(&self, store_name: &str) -> Option<Source> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(store_name)
            .cloned()
    }
}

pub struct ReplicaSets {
    pub client: kube::Client,
    pub sources: Sources,
    /// How long `start` waits for a ready canary pod when the Rollout does not say
    /// (`progressDeadlineSeconds`; Argo's default is 600 s).
    pub deadline: Duration,
}

impl Workloads for ReplicaSets {
    fn start(&self, rollout: &str, w: &Workload) -> BoxFuture<'static, Result<(), WorkloadError>> {
        let (client, sources, deadline) =
            (self.client.clone(), self.sources.clone(), self.deadline);
        let (rollout, hash) = (rollout.to_string(), w.version.clone());
        Box::pin(async move {
            let Some(source) = sources.get(&rollout) else {
                return Err(WorkloadError(format!(
                    "no Rollout object known for {rollout:?}"
                )));
            };
            let deadline = source.progress_deadline.unwrap_or(deadline);
            let (ns, name) = (source.namespace, source.name);
            let api: Api<ReplicaSet> = Api::namespaced(client, &ns);
            let selector = format!("{ROLLOUT_LABEL}={name},{HASH_LABEL}={hash}");
            let until = tokio::time::Instant::now() + deadline;
            loop {
                let ready = api
                    .list(&ListParams::default().labels(&selector))
                    .await
                    .map_err(|e| WorkloadError(e.to_string()))?
                    .items
                    .iter()
                    .filter_map(|rs| rs.status.as_ref().and_then(|s| s.ready_replicas))
                    .sum::<i32>();
                if ready > 0 {
                    tracing::info!(rollout, %hash, ready, "canary ReplicaSet has ready pods");
                    return Ok(());
                }
                if tokio::time::Instant::now() >= until {
                    return Err(WorkloadError(format!(
                        "no ready pod in ReplicaSet {name}-{hash} after {}s (progressDeadlineSeconds)",
                        deadline.as_secs()
                    )));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    }

    fn stop(&self, rollout: &str, w: &Workload) -> BoxFuture<'static, Result<(), WorkloadError>> {
        tracing::info!(rollout, version = %w.version, "canary stop: the reconciler scales it down after abortScaleDownDelaySeconds");
        Box::pin(async { Ok(()) })
    }
}
