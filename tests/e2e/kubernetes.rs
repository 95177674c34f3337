//! Kubernetes mode end to end: `vireo serve --kubernetes` against the API simulator
//! (crates/kubesim), a real vireo-proxy applying the weights, and the real kubectl 1.36
//! applying the manifests and reading the Rollout back.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use vireo_kubesim::kubectl::Kubectl;

/// `vireo serve --kubernetes` against the simulator of `kubeconfig`, its data under `dir`.
fn control_plane(dir: &Path, kubeconfig: &Path) -> Server {
    Server::start_with(
        free_addr(),
        &dir.join("data"),
        &["--kubernetes", "--kubeconfig", kubeconfig.to_str().unwrap()],
    )
}

/// A Rollout with quick steps (pauses of a second) and short scale-down delays.
fn rollout(image: &str) -> String {
    format!(
        r#"apiVersion: vireo.dev/v1alpha1
kind: Rollout
metadata:
  name: checkout
  namespace: shop
spec:
  replicas: 4
  selector:
    matchLabels: {{app: checkout}}
  template:
    metadata:
      labels: {{app: checkout}}
    spec:
      containers:
        - name: checkout
          image: {image}
          ports: [{{name: http, containerPort: 8080}}]
  strategy:
    canary:
      canaryService: checkout-canary
      stableService: checkout-stable
      scaleDownDelaySeconds: 2
      abortScaleDownDelaySeconds: 2
      trafficRouting:
        vireo: {{key: {{header: x-user-id}}}}
      steps:
        - setWeight: 5
        - pause: {{duration: 1}}
        - setWeight: 25
        - pause: {{duration: 1}}
        - setWeight: 50
        - pause: {{duration: 1}}
        - setWeight: 100
"#
    )
}

/// The weights the engine saw applied by every connected proxy, in order.
fn applied_weights(status: &Value) -> Vec<i64> {
    status["appliedWeights"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["weight"].as_i64().unwrap())
        .collect()
}

fn sets_by_hash(k: &Kubectl) -> std::collections::BTreeMap<String, i64> {
    k.json(&["-n", "shop", "get", "replicasets"])["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|rs| {
            (
                rs["metadata"]["labels"]["rollouts-pod-template-hash"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                rs["spec"]["replicas"].as_i64().unwrap_or(0),
            )
        })
        .collect()
}

fn selector_hash(k: &Kubectl, svc: &str) -> String {
    k.json(&["-n", "shop", "get", "service", svc])["spec"]["selector"]["rollouts-pod-template-hash"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_healthy_rollout_steps_replicasets_services_and_status() {
    let dir = tempdir("k8s-healthy");
    let sim = runtime()
        .block_on(vireo_kubesim::start(Default::default()))
        .unwrap();
    let k = Kubectl::for_sim(&sim, &dir).unwrap();
    let kubeconfig = k.kubeconfig.clone();
    k.ok(&["apply", "-k", "crds/"]);
    k.ok(&["apply", "-f", "deploy/kubernetes/examples/namespace.yaml"]);
    k.ok(&["apply", "-f", "deploy/kubernetes/examples/services.yaml"]);

    let server = control_plane(&dir, &kubeconfig);
    let proxy = Proxy::start(&dir, "sidecar-1", &server.url(""));

    // The first template is stable at once: 4 pods, both Services pinned to it.
    k.ok_in(
        &["apply", "-f", "-"],
        Some(&rollout("registry.example/checkout:1.0")),
    );
    let first = wait_for(
        "the first template Healthy with 4 ready pods",
        Duration::from_secs(30),
        || {
            let ro = k.json(&["-n", "shop", "get", "rollout", "checkout"]);
            let s = &ro["status"];
            (s["phase"] == "Healthy" && s["readyReplicas"] == 4)
                .then(|| s["currentPodHash"].as_str().unwrap().to_string())
        },
    );
    assert_eq!(selector_hash(&k, "checkout-stable"), first);
    assert_eq!(selector_hash(&k, "checkout-canary"), first);
    let ro = k.json(&["-n", "shop", "get", "rollout", "checkout"]);
    assert!(ro["metadata"]["finalizers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f == "vireo.dev/rollout"));

    // A new image: the engine steps the canary; the controller scales by Argo's rule.
    k.ok_in(
        &["apply", "-f", "-"],
        Some(&rollout("registry.example/checkout:2.0")),
    );
    let mut weights = Vec::new();
    let mut canary_pods_at = std::collections::BTreeMap::new();
    let started = Instant::now();
    let second = loop {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no completion in 60 s; weights seen {weights:?}"
        );
        let ro = k.json(&["-n", "shop", "get", "rollout", "checkout"]);
        let s = &ro["status"];
        let hash = s["currentPodHash"].as_str().unwrap_or_default().to_string();
        if hash != first {
            if let Some(w) = s["canaryWeight"].as_i64() {
                if weights.last() != Some(&w) {
                    weights.push(w);
                    if w == 25 {
                        // What a release engineer watching it sees mid-way.
                        let table = k.ok(&["-n", "shop", "get", "rollouts"]);
                        assert!(table.contains("checkout"), "{table}");
                    }
                }
                let sets = sets_by_hash(&k);
                canary_pods_at
                    .entry(w)
                    .or_insert_with(|| sets.get(&hash).copied().unwrap_or(0));
                if s["phase"] == "Progressing" && w > 0 && w < 100 {
                    assert_eq!(
                        sets.get(&first),
                        Some(&4),
                        "the stable keeps its pods until the promotion"
                    );
                }
            }
            if s["phase"] == "Completed" {
                break hash;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    for w in [5, 25, 50, 100] {
        assert!(
            weights.contains(&w),
            "weight {w} never shown in status: {weights:?}"
        );
    }
    // ceil(weight × 4 / 100): 1 at 5 % and 25 %, 2 at 50 %, 4 at 100 % (read once the
    // status shows the weight; the scale follows within a pass).
    assert!(
        canary_pods_at.get(&50).is_some_and(|n| *n >= 1),
        "{canary_pods_at:?}"
    );
    let store = server.status("shop--checkout");
    assert_eq!(store["phase"], "Completed");
    let applied = applied_weights(&store);
    assert_eq!(
        applied,
        [5, 25, 50, 100],
        "every weight applied by the connected proxy"
    );
    // The route takes intercepted calls to the stable Service (its ClusterIP and port), and
    // its backends are the two Services.
    let svc = k.json(&["-n", "shop", "get", "service", "checkout-stable"]);
    let cluster_ip = svc["spec"]["clusterIP"].as_str().unwrap().to_string();
    let port = svc["spec"]["ports"][0]["port"].as_i64().unwrap();
    let table = http("GET", &format!("http://{}/config", proxy.admin), &[], "")
        .unwrap()
        .json();
    let route = &table["config"]["routes"][0];
    assert_eq!(
        route["match"]["destinations"],
        serde_json::json!([format!("{cluster_ip}:{port}")]),
        "{table:#}"
    );

    // The promotion: the stable Service moves, the old ReplicaSet goes to 0 after 2 s.
    wait_for(
        "the stable Service on the new hash",
        Duration::from_secs(10),
        || (selector_hash(&k, "checkout-stable") == second).then_some(()),
    );
    wait_for(
        "the old ReplicaSet scaled to 0 after scaleDownDelaySeconds",
        Duration::from_secs(15),
        || {
            let sets = sets_by_hash(&k);
            (sets.get(&first) == Some(&0) && sets.get(&second) == Some(&4)).then_some(())
        },
    );
    let out = k.ok(&["-n", "shop", "get", "rollouts"]);
    let row: Vec<&str> = out.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..4], ["checkout", "Completed", "7", "100"], "{out}");
    let sets = k.ok(&[
        "-n",
        "shop",
        "get",
        "replicasets",
        "-L",
        "rollouts-pod-template-hash",
    ]);
    assert!(sets.contains(&second), "{sets}");
    let services = k.ok(&[
        "-n",
        "shop",
        "get",
        "services",
        "-o",
        "custom-columns=NAME:.metadata.name,SELECTOR:.spec.selector",
    ]);
    assert!(
        services
            .lines()
            .any(|l| l.starts_with("checkout-stable") && l.contains(&second)),
        "{services}"
    );
    let events = k.ok(&["-n", "shop", "get", "events"]);
    for reason in [
        "RolloutStarted",
        "ScalingReplicaSet",
        "SwitchService",
        "Completed",
    ] {
        assert!(events.contains(reason), "no {reason} Event:\n{events}");
    }
    // Each scaling is an Event of its own (one series per distinct message, not one in all).
    let scalings = events
        .lines()
        .filter(|l| l.contains("ScalingReplicaSet"))
        .count();
    assert!(
        scalings >= 3,
        "{scalings} ScalingReplicaSet Events:\n{events}"
    );

    // The rollback envelope after the old set was scaled down: the pod swap. The old set comes
    // back; the stable Service stays on the serving pods until the old ones are ready, then
    // moves; the new set drains and goes to 0. RTO: the decision to the old version's
    // ReplicaSet ready and selected by the stable Service, which every proxy now sends all
    // traffic to.
    let decided = Instant::now();
    let (code, out, err) = server.vireo(&["rollout", "rollback", "shop--checkout"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let mut held = false;
    wait_for(
        "the old set ready and selected again",
        Duration::from_secs(20),
        || {
            // The selector first, readiness second: pods only become ready during the swap,
            // so a move seen here is checked against readiness at or after it. The other
            // order reported a false failure when all four pods became ready and the Service
            // moved between the two kubectl calls.
            let selected = selector_hash(&k, "checkout-stable");
            let ready = k.json(&["-n", "shop", "get", "replicasets"])["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|rs| rs["metadata"]["labels"]["rollouts-pod-template-hash"] == first)
                .and_then(|rs| rs["status"]["readyReplicas"].as_i64())
                .unwrap_or(0);
            if selected == second && ready < 4 {
                held = true;
            }
            assert!(
                selected == second || ready == 4,
                "the stable Service moved to pods that were not ready ({ready}/4)"
            );
            (selected == first && ready == 4).then_some(())
        },
    );
    let rto = decided.elapsed();
    let rolled = server.wait_status("shop--checkout", "the rollback replayed", |s| {
        s["rollback"]["roundTripMs"].is_u64()
    });
    assert_eq!(rolled["phase"], "RolledBack", "{rolled}");
    assert_eq!(
        rolled["canaryWeight"], 0,
        "every proxy back on the stable: {rolled}"
    );
    wait_for(
        "the rolled-back set scaled to 0 after abortScaleDownDelaySeconds",
        Duration::from_secs(15),
        || {
            let sets = sets_by_hash(&k);
            (sets.get(&first) == Some(&4) && sets.get(&second) == Some(&0)).then_some(())
        },
    );
    let round_trip = decided.elapsed();
    let out = k.ok(&["-n", "shop", "get", "rollouts"]);
    assert!(out.contains("RolledBack"), "{out}");
    eprintln!(
        "pod swap: rollback decided → old ReplicaSet ready and selected {} ms (held on the serving pods first: {held}); engine rtoMs {} roundTripMs {}; → rolled-back set at 0 {} ms",
        rto.as_millis(),
        rolled["rollback"]["rtoMs"],
        rolled["rollback"]["roundTripMs"],
        round_trip.as_millis()
    );

    // Deleting the Rollout: the finalizer gives the Services their selectors back, and its
    // ReplicaSets go with it.
    k.ok(&["-n", "shop", "delete", "rollout", "checkout"]);
    wait_for("the Services unpinned", Duration::from_secs(10), || {
        (selector_hash(&k, "checkout-stable").is_empty()
            && selector_hash(&k, "checkout-canary").is_empty())
        .then_some(())
    });
    wait_for("the ReplicaSets collected", Duration::from_secs(10), || {
        sets_by_hash(&k).is_empty().then_some(())
    });
}

fn lease_holder(k: &Kubectl) -> String {
    let (ok, out, _) = k.run(
        &[
            "-n",
            "default",
            "get",
            "lease",
            "vireo-control-plane",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ],
        None,
    );
    if ok {
        out
    } else {
        String::new()
    }
}

#[test]
fn kill9_of_the_leader_mid_rollout_hands_over_to_the_standby_which_resumes() {
    let dir = tempdir("k8s-lease");
    let sim = runtime()
        .block_on(vireo_kubesim::start(Default::default()))
        .unwrap();
    let k = Kubectl::for_sim(&sim, &dir).unwrap();
    let kubeconfig = k.kubeconfig.clone();
    k.ok(&["apply", "-k", "crds/"]);
    k.ok(&["apply", "-f", "deploy/kubernetes/examples/namespace.yaml"]);
    k.ok(&["apply", "-f", "deploy/kubernetes/examples/services.yaml"]);

    let addr = free_addr();
    let data = dir.join("data");
    let args = [
        "--kubernetes",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--lease-duration",
        "3s",
    ];
    let mut leader = Server::start_with(addr, &data, &args);
    let leader_pid = leader.child.id();
    wait_for(
        "the first replica holding the lease",
        Duration::from_secs(10),
        || {
            lease_holder(&k)
                .ends_with(&format!("-{leader_pid}"))
                .then_some(())
        },
    );
    // A second replica on the same port and data: it stands by (were it acting, its bind
    // would fail and it would exit).
    let mut standby = Server::spawn(addr, &data, &args);
    standby.admin = leader.admin.clone();
    let _proxy = Proxy::start(&dir, "sidecar-1", &leader.url(""));

    k.ok_in(
        &["apply", "-f", "-"],
        Some(&rollout("registry.example/checkout:1.0")),
    );
    wait_for("Healthy", Duration::from_secs(30), || {
        (k.json(&["-n", "shop", "get", "rollout", "checkout"])["status"]["phase"] == "Healthy")
            .then_some(())
    });
    let slow = rollout("registry.example/checkout:2.0")
        .replace("pause: {duration: 1}", "pause: {duration: 3}");
    k.ok_in(&["apply", "-f", "-"], Some(&slow));
    wait_for(
        "weight 25 in the leader's store",
        Duration::from_secs(30),
        || {
            let r = leader.get("/api/v1/rollouts/shop--checkout");
            (r.status == 200 && r.json()["status"]["canaryWeight"] == 25).then_some(())
        },
    );
    assert!(
        standby.child.try_wait().unwrap().is_none(),
        "the standby must not have exited"
    );
    assert!(lease_holder(&k).ends_with(&format!("-{leader_pid}")));

    leader.kill9();
    let standby_pid = standby.child.id();
    wait_for(
        "the standby taking the lease",
        Duration::from_secs(20),
        || {
            lease_holder(&k)
                .ends_with(&format!("-{standby_pid}"))
                .then_some(())
        },
    );
    wait_for("the standby serving", Duration::from_secs(20), || {
        http("GET", &standby.url("/healthz"), &[], "")
            .ok()
            .filter(|r| r.status == 200)
    });
    let done = standby.wait_status("shop--checkout", "Completed after the handover", |s| {
        s["phase"] == "Completed"
    });
    let applied = applied_weights(&done);
    assert_eq!(
        applied,
        [5, 25, 50, 100],
        "resumed where the dead leader stopped"
    );
    wait_for(
        "the Rollout's status Completed",
        Duration::from_secs(20),
        || {
            (k.json(&["-n", "shop", "get", "rollout", "checkout"])["status"]["phase"]
                == "Completed")
                .then_some(())
        },
    );
}

/// Stands in for the containers: an HTTP server on each pod's IP and port 8080, answering 500
/// when the pod's image tag says `bad`, 200 otherwise (with the tag in `x-version`). Runs until
/// the returned flag is set.
fn containers(
    cluster: std::sync::Arc<vireo_kubesim::Cluster>,
) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    use std::io::{Read, Write};
    use std::sync::atomic::Ordering;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        let pods_t = cluster.resource("", "pods").unwrap();
        let mut serving = std::collections::BTreeSet::new();
        let start = Instant::now();
        while !flag.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(600) {
            for pod in cluster.list(&pods_t, None).0 {
                let Some(ip) = pod["status"]["podIP"].as_str().map(String::from) else {
                    continue;
                };
                if !serving.insert(ip.clone()) {
                    continue;
                }
                let image = pod["spec"]["containers"][0]["image"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let tag = image.rsplit(':').next().unwrap_or_default().to_string();
                let Ok(listener) = std::net::TcpListener::bind(format!("{ip}:8080")) else {
                    continue;
                };
                let flag = flag.clone();
                std::thread::spawn(move || {
                    listener.set_nonblocking(true).unwrap();
                    while !flag.load(Ordering::Relaxed) {
                        let Ok((mut conn, _)) = listener.accept() else {
                            std::thread::sleep(Duration::from_millis(5));
                            continue;
                        };
                        let tag = tag.clone();
                        std::thread::spawn(move || {
                            conn.set_nonblocking(false).unwrap();
                            conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                            let mut head = Vec::new();
                            let mut buf = [0u8; 1024];
                            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                                match conn.read(&mut buf) {
                                    Ok(0) | Err(_) => return,
                                    Ok(n) => head.extend_from_slice(&buf[..n]),
                                }
                            }
                            let code = if tag.contains("bad") {
                                "500 Internal Server Error"
                            } else {
                                "200 OK"
                            };
                            let _ = write!(conn, "HTTP/1.1 {code}\r\ncontent-length: 2\r\nx-version: {tag}\r\nconnection: close\r\n\r\nok");
                        });
                    }
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    stop
}

#[test]
fn a_faulty_canary_aborts_to_zero_drains_and_scales_down() {
    let dir = tempdir("k8s-abort");
    let sim = runtime()
        .block_on(vireo_kubesim::start(vireo_kubesim::Options {
            controllers: vireo_kubesim::controllers::ControllerOptions {
                first_pod_ip: std::net::Ipv4Addr::new(127, 1, 0, 10),
                service_proxy: Some(std::net::Ipv4Addr::new(127, 2, 0, 1)),
                ..Default::default()
            },
            ..Default::default()
        }))
        .unwrap();
    let stop_containers = containers(sim.cluster.clone());
    let k = Kubectl::for_sim(&sim, &dir).unwrap();
    let kubeconfig = k.kubeconfig.clone();
    k.ok(&["apply", "-k", "crds/"]);
    k.ok(&["apply", "-f", "deploy/kubernetes/examples/namespace.yaml"]);
    k.ok(&["apply", "-f", "deploy/kubernetes/examples/services.yaml"]);
    k.ok_in(
        &["apply", "-f", "-"],
        Some(
            r#"
apiVersion: vireo.dev/v1alpha1
kind: AnalysisTemplate
metadata: {name: success-rate, namespace: shop}
spec:
  metrics:
    - name: success-rate
      interval: 1s
      count: 3
      successCondition: result >= 0.95
      failureLimit: 0
      provider:
        proxy: {metric: success-rate, window: 5s}
"#,
        ),
    );
    let server = control_plane(&dir, &kubeconfig);
    let proxy = Proxy::start(&dir, "sidecar-1", &server.url(""));
    let recipe = |image: &str| {
        rollout(image).replace(
            "        - setWeight: 5\n        - pause: {duration: 1}\n        - setWeight: 25\n        - pause: {duration: 1}\n        - setWeight: 50\n        - pause: {duration: 1}\n",
            "        - setWeight: 50\n        - analysis: {templates: [{templateName: success-rate}]}\n",
        )
    };
    k.ok_in(
        &["apply", "-f", "-"],
        Some(&recipe("registry.example/checkout:1.0")),
    );
    let stable = wait_for("Healthy", Duration::from_secs(30), || {
        let s = k.json(&["-n", "shop", "get", "rollout", "checkout"])["status"].clone();
        (s["phase"] == "Healthy" && s["readyReplicas"] == 4)
            .then(|| s["currentPodHash"].as_str().unwrap().to_string())
    });
    k.ok_in(
        &["apply", "-f", "-"],
        Some(&recipe("registry.example/checkout:2.0-bad")),
    );
    // Once the engine has the rollout, its route reaches the stable pods through the proxy
    // and the Service's ClusterIP.
    wait_for(
        "a 200 from a stable pod through the proxy",
        Duration::from_secs(20),
        || {
            http(
                "GET",
                &format!("http://{}/", proxy.listen),
                &[("x-user-id", "u-1")],
                "",
            )
            .ok()
            .filter(|r| r.status == 200 && r.version() == Some("1.0"))
        },
    );
    let stop_traffic = traffic(proxy.listen);
    let done = wait_for(
        "Aborted and settled in the store",
        Duration::from_secs(60),
        || {
            let r = server.get("/api/v1/rollouts/shop--checkout");
            (r.status == 200
                && r.json()["status"]["phase"] == "Aborted"
                && r.json()["status"]["settled"] == true)
                .then(|| r.json()["status"].clone())
        },
    );
    let abort_ms = done["abortToZeroMs"]
        .as_u64()
        .expect("abort-to-zero measured");
    let drain_ms = done["drainMs"].as_u64().unwrap_or(0);
    eprintln!("kubernetes mode: abort to weight 0 on every proxy in {abort_ms} ms, drained in {drain_ms} ms");
    let applied = applied_weights(&done);
    assert_eq!(
        applied.last(),
        Some(&0),
        "weight 0 applied by the proxy: {applied:?}"
    );

    // The status follows the engine: Aborted, and (once the abort settled) the reason, which
    // names the failing metric.
    let ro = wait_for(
        "the Rollout's status Aborted, naming the failing metric",
        Duration::from_secs(15),
        || {
            let ro = k.json(&["-n", "shop", "get", "rollout", "checkout"]);
            let message = ro["status"]["message"].as_str().unwrap_or_default();
            (ro["status"]["phase"] == "Aborted" && message.contains("success-rate")).then_some(ro)
        },
    );
    assert_eq!(
        selector_hash(&k, "checkout-stable"),
        stable,
        "the stable Service never moved"
    );
    let canary = ro["status"]["currentPodHash"].as_str().unwrap().to_string();
    wait_for(
        "the canary ReplicaSet at 0 after abortScaleDownDelaySeconds",
        Duration::from_secs(15),
        || {
            let sets = sets_by_hash(&k);
            (sets.get(&canary) == Some(&0) && sets.get(&stable) == Some(&4)).then_some(())
        },
    );
    let after = http(
        "GET",
        &format!("http://{}/", proxy.listen),
        &[("x-user-id", "u-1")],
        "",
    )
    .unwrap();
    assert_eq!(
        (after.status, after.version()),
        (200, Some("1.0")),
        "all traffic back on the stable pods"
    );
    let events = k.ok(&["-n", "shop", "get", "events"]);
    assert!(
        events.contains("Warning") && events.contains("Aborted"),
        "{events}"
    );
    // The analysis as an AnalysisRun, owned by the Rollout: Failed, with its measurements.
    let runs = wait_for("a Failed AnalysisRun", Duration::from_secs(10), || {
        let runs = k.json(&["-n", "shop", "get", "analysisruns"]);
        runs["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["status"]["phase"] == "Failed")
            .then_some(runs)
    });
    let run = &runs["items"][0];
    assert_eq!(run["spec"]["rollout"], "checkout", "{run:#}");
    assert_eq!(run["metadata"]["ownerReferences"][0]["kind"], "Rollout");
    assert_eq!(
        run["spec"]["metrics"][0]["successCondition"],
        "result >= 0.95"
    );
    let result = &run["status"]["metricResults"][0];
    assert_eq!(result["name"], "success-rate", "{run:#}");
    assert!(result["failed"].as_u64().unwrap() >= 1, "{run:#}");
    let table = k.ok(&["-n", "shop", "get", "var"]);
    assert!(
        table
            .lines()
            .nth(1)
            .is_some_and(|l| l.contains("Failed") && l.contains("checkout")),
        "printer columns: {table}"
    );
    // Writing them (and pruning the history, which lists them by label) worked, and says so.
    let ro = k.json(&["-n", "shop", "get", "rollout", "checkout"]);
    let written = ro["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "AnalysisRunsWritten")
        .cloned();
    assert_eq!(
        written.as_ref().map(|c| c["status"].clone()),
        Some(serde_json::json!("True")),
        "{:#}",
        ro["status"]
    );
    stop_traffic.store(true, std::sync::atomic::Ordering::Relaxed);
    stop_containers.store(true, std::sync::atomic::Ordering::Relaxed);
}

fn http_route_weights(cluster: &vireo_kubesim::Cluster) -> (i64, i64) {
    let t = cluster
        .resource("gateway.networking.k8s.io", "httproutes")
        .unwrap();
    let r = cluster.get(&t, "shop", "checkout").unwrap();
    let refs = r["spec"]["rules"][0]["backendRefs"]
        .as_array()
        .unwrap()
        .clone();
    let w = |name: &str| {
        refs.iter()
            .find(|b| b["name"] == name)
            .and_then(|b| b["weight"].as_i64())
            .unwrap_or(-1)
    };
    (w("checkout-stable"), w("checkout-canary"))
}

#[test]
fn the_gateway_api_variant_moves_httproute_weights_and_back_to_zero_on_abort() {
    let dir = tempdir("k8s-gateway");
    let sim = runtime()
        .block_on(vireo_kubesim::start(Default::default()))
        .unwrap();
    let k = Kubectl::for_sim(&sim, &dir).unwrap();
    let kubeconfig = k.kubeconfig.clone();
    k.ok(&["apply", "-k", "crds/"]);
    k.ok(&["apply", "-f", "deploy/kubernetes/examples/namespace.yaml"]);
    k.ok(&["apply", "-f", "deploy/kubernetes/examples/services.yaml"]);
    // No Vireo proxy anywhere: the Gateway carries the traffic.
    let server = control_plane(&dir, &kubeconfig);
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/kubernetes/examples/gateway-api.yaml"
    ))
    .unwrap();
    let (route, ro) = example.split_once("\n---\n").unwrap();
    k.ok_in(&["apply", "-f", "-"], Some(route));
    let fast = |image: &str| {
        ro.replace("registry.example/checkout:2.0.0", image)
            .replace("duration: 1m", "duration: 1")
    };
    k.ok_in(
        &["apply", "-f", "-"],
        Some(&fast("registry.example/checkout:1.0")),
    );
    wait_for("Healthy", Duration::from_secs(30), || {
        (k.json(&["-n", "shop", "get", "rollout", "checkout-gw"])["status"]["phase"] == "Healthy")
            .then_some(())
    });

    k.ok_in(
        &["apply", "-f", "-"],
        Some(&fast("registry.example/checkout:2.0")),
    );
    let mut seen = Vec::new();
    let started = Instant::now();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "weights seen: {seen:?}"
        );
        let w = http_route_weights(&sim.cluster);
        if seen.last() != Some(&w) {
            seen.push(w);
        }
        let r = server.get("/api/v1/rollouts/shop--checkout-gw");
        if r.status == 200 && r.json()["status"]["phase"] == "Completed" {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for w in [(95, 5), (75, 25), (50, 50), (0, 100)] {
        assert!(
            seen.contains(&w),
            "HTTPRoute never at stable/canary {w:?}: {seen:?}"
        );
    }

    // A third version, aborted by an operator at 5 %: the HTTPRoute goes back to 100/0.
    k.ok_in(
        &["apply", "-f", "-"],
        Some(&fast("registry.example/checkout:3.0").replace("duration: 1", "duration: 60")),
    );
    wait_for(
        "the canary at 5 % on the HTTPRoute",
        Duration::from_secs(30),
        || (http_route_weights(&sim.cluster) == (95, 5)).then_some(()),
    );
    let (code, out, err) = server.vireo(&[
        "rollout",
        "abort",
        "shop--checkout-gw",
        "--reason",
        "e2e: operator abort",
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    wait_for(
        "the HTTPRoute back to all-stable",
        Duration::from_secs(20),
        || (http_route_weights(&sim.cluster) == (100, 0)).then_some(()),
    );
    wait_for(
        "Aborted in the Rollout's status",
        Duration::from_secs(20),
        || {
            (k.json(&["-n", "shop", "get", "rollout", "checkout-gw"])["status"]["phase"]
                == "Aborted")
                .then_some(())
        },
    );
}

#[test]
fn a_proxy_gets_config_only_with_a_valid_service_account_token() {
    let dir = tempdir("k8s-sa-token");
    let sim = runtime()
        .block_on(vireo_kubesim::start(Default::default()))
        .unwrap();
    let k = Kubectl::for_sim(&sim, &dir).unwrap();
    let kubeconfig = k.kubeconfig.clone();
    k.ok(&["apply", "-k", "crds/"]);
    k.ok(&["apply", "-f", "deploy/kubernetes/examples/namespace.yaml"]);
    k.ok_in(
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: checkout, namespace: shop}\n"),
    );
    // What the kubelet projects into an injected pod: a token for Vireo's audience, from the
    // TokenRequest API (the simulator's own, as its HTTP endpoint serves it).
    let token = |audience: &str| {
        let req = serde_json::json!({"spec": {"audiences": [audience], "expirationSeconds": 3600}});
        sim.tokens.request("shop", "checkout", &req).unwrap()["status"]["token"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (good, other) = (token("vireo"), token("someone-else"));
    let server = control_plane(&dir, &kubeconfig);
    let config = |token: &str| {
        let auth = format!("Bearer {token}");
        let headers: Vec<(&str, &str)> = if token.is_empty() {
            vec![]
        } else {
            vec![("authorization", auth.as_str())]
        };
        http(
            "GET",
            &server.url("/api/v1/proxy/config?proxy=sa-test&since=0"),
            &headers,
            "",
        )
        .unwrap()
    };
    for (what, token) in [
        ("another audience", other.as_str()),
        ("a made-up token", "kubesim.0123456789abcdef"),
        ("no token", ""),
    ] {
        let r = config(token);
        assert_eq!(r.status, 401, "{what}: {}", r.body);
    }
    // The sidecar's identity is recorded as such: whoami names the service account.
    let who = http(
        "GET",
        &server.url("/api/v1/whoami"),
        &[("authorization", &format!("Bearer {good}"))],
        "",
    )
    .unwrap();
    assert!(
        who.body.contains("system:serviceaccount:shop:checkout"),
        "{}",
        who.body
    );
    assert!(who.body.contains("\"proxy\""), "{}", who.body);

    // A real proxy with the projected token follows the control plane.
    let sidecar = dir.join("sidecar");
    std::fs::create_dir_all(&sidecar).unwrap();
    std::fs::write(sidecar.join("proxy.token"), &good).unwrap();
    let proxy = Proxy::start(&sidecar, "shop/checkout-0", &server.url(""));
    wait_for(
        "the sidecar heartbeating to the control plane",
        Duration::from_secs(10),
        || {
            server
                .get("/api/v1/proxies")
                .body
                .contains("shop/checkout-0")
                .then_some(())
        },
    );
    drop(proxy);
}

#[test]
fn pods_are_injected_through_the_admission_chain_once_and_opted_out_pods_get_a_reason() {
    use base64::Engine;
    let dir = tempdir("k8s-inject");
    let sim = runtime()
        .block_on(vireo_kubesim::start(Default::default()))
        .unwrap();
    let k = Kubectl::for_sim(&sim, &dir).unwrap();
    let kubeconfig = k.kubeconfig.clone();
    k.ok(&["apply", "-f", "deploy/kubernetes/examples/namespace.yaml"]); // shop: enabled

    // A pod created before the injector exists: `vireo check` finds it.
    k.ok_in(&["apply", "-f", "-"], Some("apiVersion: v1\nkind: Pod\nmetadata: {name: early, namespace: shop}\nspec: {containers: [{name: app, image: app:1}]}\n"));
    let check = |args: &[&str]| {
        let out = Command::new(vireo_bin())
            .arg("check")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, out) = check(&[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("shop")
            && out.contains("early")
            && out.contains("1 pod(s) without the sidecar"),
        "{out}"
    );
    assert_eq!(check(&["-n", "default"]).0, Some(0));

    let addr = free_addr();
    let data = dir.join("injector");
    let mut webhook = Command::new(vireo_bin())
        .args([
            "inject-webhook",
            "--listen",
            &addr.to_string(),
            "--tls",
            "auto",
            "--data-dir",
        ])
        .arg(&data)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let ca = data.join("tls/ca.pem");
    let https = |body: &str| {
        let client = vireo_http::HttpClient::with_ca(Duration::from_secs(2), Some(&ca)).ok()?;
        let limits = vireo_http::Limits::new(Duration::from_secs(5), 1 << 20);
        runtime()
            .block_on(async {
                if body.is_empty() {
                    client.get(&format!("https://{addr}/healthz"), limits).await
                } else {
                    client
                        .post(
                            &format!("https://{addr}/inject"),
                            "application/json",
                            body.to_string().into(),
                            limits,
                        )
                        .await
                }
            })
            .ok()
    };
    wait_for("the webhook serving https", Duration::from_secs(20), || {
        ca.exists()
            .then(|| https(""))
            .flatten()
            .filter(|a| a.status == 200)
    });
    let bundle = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&ca).unwrap());
    k.ok_in(
        &["apply", "-f", "-"],
        Some(&format!(
            r#"
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata: {{name: vireo-injector}}
webhooks:
  - name: inject.vireo.dev
    admissionReviewVersions: [v1]
    sideEffects: None
    failurePolicy: Ignore
    clientConfig: {{url: "https://{addr}/inject", caBundle: {bundle}}}
    rules: [{{apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [pods]}}]
"#
        )),
    );
    let pod = |name: &str, annotations: &str| {
        format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: shop, annotations: {{{annotations}}}}}\nspec: {{containers: [{{name: app, image: app:1}}]}}\n")
    };
    k.ok_in(&["apply", "-f", "-"], Some(&pod("web", "")));
    let injected = k.json(&["-n", "shop", "get", "pod", "web"]);
    // Transparent interception by default: the iptables step, then the proxy.
    let init = &injected["spec"]["initContainers"][0];
    assert_eq!(init["name"], "vireo-init", "{injected:#}");
    assert_eq!(init["args"][0], "iptables");
    assert_eq!(
        init["securityContext"]["capabilities"]["add"],
        serde_json::json!(["NET_ADMIN", "NET_RAW"])
    );
    let side = &injected["spec"]["initContainers"][1];
    assert_eq!(side["name"], "vireo-proxy", "{injected:#}");
    assert!(side["args"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("--transparent")));
    assert_eq!(side["restartPolicy"], "Always", "a native sidecar on 1.29+");
    assert_eq!(side["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        injected["metadata"]["annotations"]["vireo.dev/injected"],
        "true"
    );
    assert_eq!(injected["spec"]["containers"].as_array().unwrap().len(), 1);

    // A second admission of the injected pod changes nothing.
    let review = serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "again", "kind": {"kind": "Pod"}, "namespace": "shop", "object": injected}});
    let again: Value = serde_json::from_slice(&https(&review.to_string()).unwrap().body).unwrap();
    assert_eq!(again["response"]["allowed"], true);
    assert!(
        again["response"].get("patch").is_none(),
        "no patch for an injected pod: {again}"
    );

    // Opted out on the pod: untouched but for the reason.
    k.ok_in(
        &["apply", "-f", "-"],
        Some(&pod("batch", "vireo.dev/inject: disabled")),
    );
    let skipped = k.json(&["-n", "shop", "get", "pod", "batch"]);
    assert!(skipped["spec"].get("initContainers").is_none());
    assert_eq!(
        skipped["metadata"]["annotations"]["vireo.dev/inject-status"],
        "skipped: disabled by the pod's vireo.dev/inject"
    );
    wait_for(
        "an InjectionSkipped Event on the pod",
        Duration::from_secs(5),
        || {
            let events = k.ok(&["-n", "shop", "get", "events"]);
            events
                .lines()
                .any(|l| l.contains("InjectionSkipped") && l.contains("pod/batch"))
                .then_some(())
        },
    );

    // Explicit mode on the pod: the proxy without the iptables step.
    k.ok_in(
        &["apply", "-f", "-"],
        Some(&pod("calls-the-proxy", "vireo.dev/interception: explicit")),
    );
    let explicit = k.json(&["-n", "shop", "get", "pod", "calls-the-proxy"]);
    let inits: Vec<&str> = explicit["spec"]["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(inits, ["vireo-proxy"], "{explicit:#}");
    assert_eq!(
        explicit["metadata"]["annotations"]["vireo.dev/inject-status"],
        "injected: native sidecar, explicit"
    );
    let _ = webhook.kill();
    let _ = webhook.wait();
}

#[test]
fn a_canary_whose_pods_never_start_ends_at_its_progress_deadline() {
    let dir = tempdir("k8s-deadline");
    let sim = runtime()
        .block_on(vireo_kubesim::start(Default::default()))
        .unwrap();
    let k = Kubectl::for_sim(&sim, &dir).unwrap();
    let kubeconfig = k.kubeconfig.clone();
    k.ok(&["apply", "-k", "crds/"]);
    k.ok(&["apply", "-f", "deploy/kubernetes/examples/namespace.yaml"]);
    k.ok(&["apply", "-f", "deploy/kubernetes/examples/services.yaml"]);
    let server = control_plane(&dir, &kubeconfig);
    let _proxy = Proxy::start(&dir, "sidecar-1", &server.url(""));
    let with_deadline = |image: &str| {
        rollout(image).replace(
            "  replicas: 4\n",
            "  replicas: 4\n  progressDeadlineSeconds: 2\n",
        )
    };
    k.ok_in(
        &["apply", "-f", "-"],
        Some(&with_deadline("registry.example/checkout:1.0")),
    );
    let stable = wait_for("Healthy", Duration::from_secs(30), || {
        let s = k.json(&["-n", "shop", "get", "rollout", "checkout"])["status"].clone();
        (s["phase"] == "Healthy" && s["readyReplicas"] == 4)
            .then(|| s["currentPodHash"].as_str().unwrap().to_string())
    });
    // The new template's pods crash (the simulator's kubelet never readies them).
    let crashing = with_deadline("registry.example/checkout:2.0-crash").replace(
        "      labels: {app: checkout}\n",
        "      labels: {app: checkout}\n      annotations: {kubesim.vireo.dev/fail: \"true\"}\n",
    );
    let applied = Instant::now();
    k.ok_in(&["apply", "-f", "-"], Some(&crashing));
    let ro = wait_for(
        "the rollout ended at its progress deadline",
        Duration::from_secs(20),
        || {
            let ro = k.json(&["-n", "shop", "get", "rollout", "checkout"]);
            let message = ro["status"]["message"].as_str().unwrap_or_default();
            message.contains("progressDeadlineSeconds").then_some(ro)
        },
    );
    let took = applied.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(15),
        "the Rollout's 2 s, not the default 600 s: {took:?}"
    );
    assert_eq!(ro["status"]["phase"], "Aborted", "{:#}", ro["status"]);
    assert_eq!(
        ro["status"]["canaryWeight"], 0,
        "no traffic ever went to it"
    );
    assert_eq!(
        selector_hash(&k, "checkout-stable"),
        stable,
        "the stable Service never moved"
    );
}
