//! kube-rs, the client Vireo's controller uses, against the simulator: typed CRUD with
//! conflicts, the watcher's list-then-watch with bookmarks, and 410 Gone for a stale version.

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ObjectMeta, PostParams, WatchEvent, WatchParams};
use kube::runtime::watcher;

async fn client(sim: &vireo_kubesim::Running) -> kube::Client {
    let config = kube::config::Kubeconfig::from_yaml(&sim.kubeconfig()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(config, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

fn cm(name: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    }
}

#[tokio::test]
async fn typed_crud_and_conflicts() {
    let sim = vireo_kubesim::start(Default::default()).await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client(&sim).await, "default");
    let created = api.create(&PostParams::default(), &cm("a")).await.unwrap();
    let mut stale = created.clone();
    let mut fresh = created.clone();
    fresh.data = Some([("k".to_string(), "1".to_string())].into());
    api.replace("a", &PostParams::default(), &fresh)
        .await
        .unwrap();
    stale.data = Some([("k".to_string(), "2".to_string())].into());
    let err = api
        .replace("a", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => assert_eq!(s.code, 409),
        other => panic!("{other:?}"),
    }
    assert_eq!(api.get("a").await.unwrap().data.unwrap()["k"], "1");
}

#[tokio::test]
async fn the_watcher_sees_changes_and_a_stale_version_is_gone() {
    let sim = vireo_kubesim::start(vireo_kubesim::Options {
        bookmark_interval: std::time::Duration::from_millis(200),
        ..Default::default()
    })
    .await
    .unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client(&sim).await, "default");
    api.create(&PostParams::default(), &cm("before"))
        .await
        .unwrap();
    let start = sim.cluster.resource_version();

    let mut stream = watcher(api.clone(), watcher::Config::default()).boxed();
    let mut seen = Vec::new();
    let creator = {
        let api = api.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            api.create(&PostParams::default(), &cm("after"))
                .await
                .unwrap();
        })
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !seen.contains(&"after".to_string()) {
        let ev = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("the watcher reports the new object within 10 s")
            .unwrap()
            .unwrap();
        match ev {
            watcher::Event::InitApply(o) | watcher::Event::Apply(o) => {
                seen.push(o.metadata.name.unwrap())
            }
            _ => {}
        }
    }
    creator.await.unwrap();
    assert_eq!(seen, ["before", "after"]);

    // A raw watch from a version the history no longer holds gets 410 Gone.
    for i in 0..vireo_kubesim::store::HISTORY {
        let mut c = cm("churn");
        c.data = Some([("i".to_string(), i.to_string())].into());
        let _ = api.delete("churn", &Default::default()).await;
        api.create(&PostParams::default(), &c).await.unwrap();
        if sim.cluster.oldest_resumable() > start {
            break;
        }
    }
    let mut raw = api
        .watch(&WatchParams::default(), &start.to_string())
        .await
        .unwrap()
        .boxed();
    match raw.next().await.unwrap().unwrap() {
        WatchEvent::Error(e) => assert_eq!(e.code, 410, "{e:?}"),
        other => panic!("expected 410 Gone, got {other:?}"),
    }
}

async fn wait_for<T, F: Fn() -> Fut, Fut: std::future::Future<Output = Option<T>>>(
    what: &str,
    f: F,
) -> T {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn replicasets_make_ready_pods_and_services_get_endpoint_slices() {
    use k8s_openapi::api::apps::v1::ReplicaSet;
    use k8s_openapi::api::core::v1::{Pod, Service};
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use kube::api::{ListParams, Patch, PatchParams};

    let sim = vireo_kubesim::start(Default::default()).await.unwrap();
    let client = client(&sim).await;
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let rs = |name: &str, hash: &str, replicas: i32, fail: bool| -> ReplicaSet {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {"replicas": replicas,
                "selector": {"matchLabels": {"app": "web", "hash": hash}},
                "template": {"metadata": {"labels": {"app": "web", "hash": hash},
                        "annotations": if fail { serde_json::json!({vireo_kubesim::controllers::FAIL_ANNOTATION: "true"}) } else { serde_json::json!({}) }},
                    "spec": {"containers": [{"name": "web", "image": "web:1", "ports": [{"name": "http", "containerPort": 8080}]}]}}}
        }))
        .unwrap()
    };
    sets.create(&PostParams::default(), &rs("web-a", "a", 3, false))
        .await
        .unwrap();
    sets.create(&PostParams::default(), &rs("web-b", "b", 1, true))
        .await
        .unwrap();
    let svc: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}
    }))
    .unwrap();
    services.create(&PostParams::default(), &svc).await.unwrap();

    wait_for("web-a ready", || async {
        let s = sets.get("web-a").await.ok()?.status?;
        (s.ready_replicas == Some(3)).then_some(())
    })
    .await;
    let slice = wait_for("an EndpointSlice with the 3 ready pods", || async {
        let list = slices
            .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
            .await
            .ok()?;
        let s = list.items.into_iter().next()?;
        let ready = s
            .endpoints
            .iter()
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
            .count();
        (ready == 3 && s.endpoints.len() == 4).then_some(s)
    })
    .await;
    assert_eq!(
        slice.ports.unwrap()[0].port,
        Some(8080),
        "the named targetPort resolves to the container port"
    );
    let b_pods = pods
        .list(&ListParams::default().labels("hash=b"))
        .await
        .unwrap();
    assert_eq!(b_pods.items.len(), 1);
    let b_status = sets.get("web-b").await.unwrap().status.unwrap();
    assert_eq!(
        b_status.ready_replicas,
        Some(0),
        "a pod told to fail never becomes ready"
    );

    sets.patch(
        "web-a",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"replicas": 1}})),
    )
    .await
    .unwrap();
    wait_for("web-a scaled to 1", || async {
        let n = pods
            .list(&ListParams::default().labels("hash=a"))
            .await
            .ok()?
            .items
            .len();
        (n == 1).then_some(())
    })
    .await;
    // Deleting the ReplicaSet collects its pods.
    sets.delete("web-a", &Default::default()).await.unwrap();
    wait_for("web-a's pods collected", || async {
        let n = pods
            .list(&ListParams::default().labels("hash=a"))
            .await
            .ok()?
            .items
            .len();
        (n == 0).then_some(())
    })
    .await;
}
