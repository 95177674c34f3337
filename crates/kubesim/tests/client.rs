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
