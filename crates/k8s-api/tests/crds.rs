//! The checked-in `crds/` are exactly what the types render (regenerate with
//! scripts/gen-crds.sh), and each CRD says what kubectl users rely on.

use std::path::Path;

#[test]
fn checked_in_crds_match_the_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crds");
    let rendered = vireo_k8s_api::crds::render();
    for (file, yaml) in &rendered {
        let path = dir.join(file);
        let on_disk = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; run scripts/gen-crds.sh", path.display()));
        assert!(
            on_disk == *yaml,
            "{} differs from what the types render; run scripts/gen-crds.sh and commit",
            path.display()
        );
    }
    let mut expected: Vec<&str> = rendered.iter().map(|(f, _)| f.as_str()).collect();
    expected.sort();
    let mut found: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".yaml"))
        .collect();
    found.sort();
    assert_eq!(
        found, expected,
        "crds/ holds a file the types do not render"
    );
}

#[test]
fn rollout_crd_has_subresources_columns_and_short_names() {
    let crd = vireo_k8s_api::crds::all()
        .into_iter()
        .find(|c| c.spec.names.kind == "Rollout")
        .unwrap();
    assert_eq!(crd.spec.group, "vireo.dev");
    let names = &crd.spec.names;
    assert_eq!(names.plural, "rollouts");
    // Argo Rollouts' are `ro`; ours must not clash when both are installed.
    assert_eq!(names.short_names.as_deref(), Some(&["vro".to_string()][..]));
    let v = &crd.spec.versions[0];
    assert_eq!(v.name, "v1alpha1");
    let sub = v.subresources.as_ref().unwrap();
    assert!(sub.status.is_some());
    let scale = sub.scale.as_ref().unwrap();
    assert_eq!(scale.spec_replicas_path, ".spec.replicas");
    assert_eq!(
        scale.label_selector_path.as_deref(),
        Some(".status.selector")
    );
    let columns: Vec<&str> = v
        .additional_printer_columns
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    for c in ["Phase", "Step", "Weight", "Age"] {
        assert!(columns.contains(&c), "{c} column missing: {columns:?}");
    }
}
