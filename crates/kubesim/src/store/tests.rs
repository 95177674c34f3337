use serde_json::json;

use super::*;

fn crd() -> Value {
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.dev"},
        "spec": {"group": "example.dev", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {"replicas": {"type": "integer"}, "size": {"type": "string"}}},
                    "status": {"type": "object", "properties": {"replicas": {"type": "integer"}, "phase": {"type": "string"}}}}}}}]}})
}

fn setup() -> (Arc<Cluster>, ResourceType) {
    let c = Cluster::new();
    let crds = c
        .resource("apiextensions.k8s.io", "customresourcedefinitions")
        .unwrap();
    c.create(&crds, "", crd(), &WriteOptions::default())
        .unwrap();
    let t = c
        .resource("example.dev", "widgets")
        .expect("the CRD registers its type");
    (c, t)
}

#[test]
fn create_update_conflict_and_generation() {
    let (c, t) = setup();
    let o = c
        .create(
            &t,
            "default",
            json!({"metadata": {"name": "w"}, "spec": {"size": "s"}, "status": {"phase": "x"}}),
            &WriteOptions::default(),
        )
        .unwrap();
    assert!(o.get("status").is_none(), "status is the subresource's");
    assert_eq!(o["metadata"]["generation"], 1);
    let rv = o["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let mut changed = o.clone();
    changed["spec"]["size"] = json!("m");
    let o2 = c
        .update(
            &t,
            "default",
            "w",
            changed.clone(),
            Part::Main,
            &WriteOptions::default(),
        )
        .unwrap();
    assert_eq!(o2["metadata"]["generation"], 2);
    assert_ne!(o2["metadata"]["resourceVersion"], json!(rv));
    let stale = c
        .update(
            &t,
            "default",
            "w",
            changed,
            Part::Main,
            &WriteOptions::default(),
        )
        .unwrap_err();
    assert_eq!((stale.code, stale.reason), (409, "Conflict"));
    let dup = c
        .create(
            &t,
            "default",
            json!({"metadata": {"name": "w"}}),
            &WriteOptions::default(),
        )
        .unwrap_err();
    assert_eq!(dup.reason, "AlreadyExists");
    let nons = c
        .create(
            &t,
            "nowhere",
            json!({"metadata": {"name": "w"}}),
            &WriteOptions::default(),
        )
        .unwrap_err();
    assert_eq!(nons.code, 404);
}

#[test]
fn status_and_scale_subresources() {
    let (c, t) = setup();
    c.create(
        &t,
        "default",
        json!({"metadata": {"name": "w"}, "spec": {"replicas": 1}}),
        &WriteOptions::default(),
    )
    .unwrap();
    let s = c
        .patch(
            &t,
            "default",
            "w",
            PatchType::Merge,
            json!({"status": {"phase": "Ready", "replicas": 1}, "spec": {"replicas": 9}}),
            Part::Status,
            &WriteOptions::default(),
        )
        .unwrap();
    assert_eq!(s["status"]["phase"], "Ready");
    assert_eq!(s["spec"]["replicas"], 1, "/status does not touch spec");
    assert_eq!(s["metadata"]["generation"], 1);
    let m = c
        .patch(
            &t,
            "default",
            "w",
            PatchType::Merge,
            json!({"status": {"phase": "Lost"}}),
            Part::Main,
            &WriteOptions::default(),
        )
        .unwrap();
    assert_eq!(
        m["status"]["phase"], "Ready",
        "the main endpoint ignores status"
    );
    c.patch(
        &t,
        "default",
        "w",
        PatchType::Merge,
        json!({"spec": {"replicas": 3}}),
        Part::Scale,
        &WriteOptions::default(),
    )
    .unwrap();
    let scale = scale_of(&t, &c.get(&t, "default", "w").unwrap());
    assert_eq!(scale["spec"]["replicas"], 3);
    assert_eq!(scale["status"]["replicas"], 1);
}

#[test]
fn json_patch_test_op_guards_the_old_value() {
    let (c, t) = setup();
    c.create(
        &t,
        "default",
        json!({"metadata": {"name": "w"}, "spec": {"size": "s"}}),
        &WriteOptions::default(),
    )
    .unwrap();
    let ok = json!([{"op": "test", "path": "/spec/size", "value": "s"}, {"op": "replace", "path": "/spec/size", "value": "m"}]);
    c.patch(
        &t,
        "default",
        "w",
        PatchType::Json,
        ok.clone(),
        Part::Main,
        &WriteOptions::default(),
    )
    .unwrap();
    let e = c
        .patch(
            &t,
            "default",
            "w",
            PatchType::Json,
            ok,
            Part::Main,
            &WriteOptions::default(),
        )
        .unwrap_err();
    assert_eq!(e.code, 422, "{e:?}");
}

#[test]
fn finalizers_hold_deletion_and_owners_collect_dependents() {
    let (c, t) = setup();
    let owner = c
        .create(
            &t,
            "default",
            json!({"metadata": {"name": "w", "finalizers": ["example.dev/cleanup"]}}),
            &WriteOptions::default(),
        )
        .unwrap();
    let cms = c.resource("", "configmaps").unwrap();
    c.create(&cms, "default", json!({"metadata": {"name": "child", "ownerReferences": [{"apiVersion": "example.dev/v1", "kind": "Widget", "name": "w", "uid": owner["metadata"]["uid"]}]}}), &WriteOptions::default()).unwrap();
    let marked = c.delete(&t, "default", "w").unwrap();
    assert!(marked["metadata"]["deletionTimestamp"].is_string());
    assert!(c.get(&t, "default", "w").is_ok(), "held by its finalizer");
    assert!(c.get(&cms, "default", "child").is_ok());
    c.patch(
        &t,
        "default",
        "w",
        PatchType::Merge,
        json!({"metadata": {"finalizers": null}}),
        Part::Main,
        &WriteOptions::default(),
    )
    .unwrap();
    assert_eq!(
        c.get(&t, "default", "w").unwrap_err().code,
        404,
        "gone with its last finalizer"
    );
    assert_eq!(
        c.get(&cms, "default", "child").unwrap_err().code,
        404,
        "collected with its owner"
    );
}

#[test]
fn history_resumes_and_expires() {
    let (c, t) = setup();
    let start = c.resource_version();
    c.create(
        &t,
        "default",
        json!({"metadata": {"name": "a"}}),
        &WriteOptions::default(),
    )
    .unwrap();
    let events = c.events_since(start).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].type_, EventType::Added);
    for i in 0..HISTORY {
        c.patch(
            &t,
            "default",
            "a",
            PatchType::Merge,
            json!({"spec": {"replicas": i}}),
            Part::Main,
            &WriteOptions::default(),
        )
        .unwrap();
    }
    assert!(
        c.events_since(start).is_none(),
        "410 Gone once the history has moved on"
    );
}

#[test]
fn strict_field_validation_refuses_unknown_fields() {
    let (c, t) = setup();
    let strict = WriteOptions {
        strict: true,
        ..Default::default()
    };
    let e = c
        .create(
            &t,
            "default",
            json!({"metadata": {"name": "w"}, "spec": {"sise": "s"}}),
            &strict,
        )
        .unwrap_err();
    assert_eq!(e.code, 400);
    assert!(
        e.message.contains("unknown field \"spec.sise\""),
        "{}",
        e.message
    );
    let pruned = c
        .create(
            &t,
            "default",
            json!({"metadata": {"name": "w"}, "spec": {"sise": "s"}}),
            &WriteOptions::default(),
        )
        .unwrap();
    assert!(pruned["spec"].get("sise").is_none());
}

#[test]
fn a_test_of_a_missing_path_against_null_passes_as_in_the_api_server() {
    let (c, t) = setup();
    c.create(
        &t,
        "default",
        json!({"metadata": {"name": "w"}}),
        &WriteOptions::default(),
    )
    .unwrap();
    let add = json!([{"op": "test", "path": "/metadata/finalizers", "value": null},
                     {"op": "add", "path": "/metadata/finalizers", "value": ["x"]}]);
    let o = c
        .patch(
            &t,
            "default",
            "w",
            PatchType::Json,
            add.clone(),
            Part::Main,
            &WriteOptions::default(),
        )
        .unwrap();
    assert_eq!(o["metadata"]["finalizers"], json!(["x"]));
    assert_eq!(
        c.patch(
            &t,
            "default",
            "w",
            PatchType::Json,
            add,
            Part::Main,
            &WriteOptions::default()
        )
        .unwrap_err()
        .code,
        422
    );
}
