//! `crds/`: the CustomResourceDefinitions rendered from the types, one file per resource.
//!
//! `scripts/gen-crds.sh` writes them; a test fails when the checked-in files differ from what
//! the types render, so the schema cannot drift from the code that reads it.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::analysis::{AnalysisRun, AnalysisTemplate, ClusterAnalysisTemplate};
use crate::rollout::Rollout;

const HEADER: &str = "# Generated from crates/k8s-api by scripts/gen-crds.sh; do not edit.\n";

/// Every CRD Vireo installs.
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![
        Rollout::crd(),
        AnalysisTemplate::crd(),
        ClusterAnalysisTemplate::crd(),
        AnalysisRun::crd(),
    ]
}

/// `(file name, YAML)` for each CRD, as checked in under `crds/`, and the
/// `kustomization.yaml` that lists them (so `kubectl apply -k crds/` and the install in
/// `deploy/kubernetes/` can include the directory).
pub fn render() -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = all()
        .into_iter()
        .map(|crd| {
            let name = crd.metadata.name.clone().unwrap_or_default();
            let yaml = serde_yaml_ng::to_string(&crd).expect("a CRD serializes");
            (format!("{name}.yaml"), format!("{HEADER}{yaml}"))
        })
        .collect();
    let mut list = String::from(HEADER);
    list.push_str("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n");
    for (file, _) in &files {
        list.push_str(&format!("- {file}\n"));
    }
    files.push(("kustomization.yaml".into(), list));
    files
}
