//! The cluster's own controllers, simulated: ReplicaSets make Pods, a kubelet makes Pods
//! ready (after a delay, or never for a pod annotated [`FAIL_ANNOTATION`]), Services get
//! EndpointSlices of their ready pods, and (when asked) a service proxy in the role of
//! kube-proxy listens on each Service's ClusterIP and port and forwards each connection to one
//! of its ready endpoints, round robin. Level-triggered: each pass compares what is with what
//! should be and writes the difference through the same store the API serves, so clients see
//! ordinary watch events.
//!
//! Not emulated: scheduling and nodes, container restarts and probes (readiness is the
//! delay), graceful termination (a pod removed by its ReplicaSet is gone at once), Deployments
//! making ReplicaSets, StatefulSet pods, EndpointSlice limits (one slice per Service).

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::store::{now, Cluster, Part, PatchType, WriteOptions};

/// A pod with this annotation set to `"true"` starts but never becomes ready.
pub const FAIL_ANNOTATION: &str = "kubesim.vireo.dev/fail";

#[derive(Debug, Clone)]
pub struct ControllerOptions {
    /// How long a pod takes from created to ready.
    pub pod_ready_delay: Duration,
    /// Pod IPs come from here on (each pod gets the next address). Tests pick loopback
    /// addresses (127.1.0.1, …) so that a backend can listen on a pod's IP.
    pub first_pod_ip: Ipv4Addr,
    /// Run the service proxy, with ClusterIPs from this address on (a loopback one, so that
    /// it can listen there): what kube-proxy does with iptables, done with sockets.
    pub service_proxy: Option<Ipv4Addr>,
}

impl Default for ControllerOptions {
    fn default() -> Self {
        ControllerOptions {
            pod_ready_delay: Duration::from_millis(300),
            first_pod_ip: Ipv4Addr::new(10, 244, 0, 10),
            service_proxy: None,
        }
    }
}

/// Runs the controllers until the task is dropped.
pub async fn run(cluster: Arc<Cluster>, opts: ControllerOptions) {
    let mut events = cluster.subscribe();
    let mut next_ip = u32::from(opts.first_pod_ip);
    let mut proxy = ServiceProxy::default();
    loop {
        pass(&cluster, &opts, &mut next_ip);
        if opts.service_proxy.is_some() {
            proxy.sync(&cluster);
        }
        // Woken by any change, and at least every 50 ms for the kubelet's delays.
        let _ = tokio::time::timeout(Duration::from_millis(50), events.recv()).await;
    }
}

fn owned_by(obj: &Value, uid: &Value) -> bool {
    obj["metadata"]["ownerReferences"]
        .as_array()
        .is_some_and(|refs| refs.iter().any(|r| r["uid"] == *uid))
}

fn matches_selector(labels: &Value, selector: &Value) -> bool {
    let Some(sel) = selector.as_object() else {
        return false;
    };
    !sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// One level-triggered pass of every controller.
pub fn pass(c: &Cluster, opts: &ControllerOptions, next_ip: &mut u32) {
    let opts_w = WriteOptions::default();
    let (Some(rs_t), Some(pod_t), Some(svc_t), Some(eps_t)) = (
        c.resource("apps", "replicasets"),
        c.resource("", "pods"),
        c.resource("", "services"),
        c.resource("discovery.k8s.io", "endpointslices"),
    ) else {
        return;
    };
    let (pods, _) = c.list(&pod_t, None);

    // ReplicaSets → Pods.
    let (sets, _) = c.list(&rs_t, None);
    for rs in &sets {
        let ns = rs["metadata"]["namespace"].as_str().unwrap_or_default();
        let name = rs["metadata"]["name"].as_str().unwrap_or_default();
        let uid = &rs["metadata"]["uid"];
        let want = rs["spec"]["replicas"].as_i64().unwrap_or(1).max(0) as usize;
        let mut mine: Vec<&Value> = pods
            .iter()
            .filter(|p| owned_by(p, uid) && p["metadata"].get("deletionTimestamp").is_none())
            .collect();
        if rs["metadata"].get("deletionTimestamp").is_none() {
            for _ in mine.len()..want {
                let mut pod = json!({
                    "metadata": rs["spec"]["template"]["metadata"].clone(),
                    "spec": rs["spec"]["template"]["spec"].clone(),
                });
                pod["metadata"]["generateName"] = json!(format!("{name}-"));
                pod["metadata"]["namespace"] = json!(ns);
                pod["metadata"]["ownerReferences"] = json!([{
                    "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": name, "uid": uid,
                    "controller": true, "blockOwnerDeletion": true,
                }]);
                if let Err(e) = c.create(&pod_t, ns, pod, &opts_w) {
                    tracing::warn!(replicaset = name, "kubesim: creating a pod: {}", e.message);
                }
            }
            // Scale down: newest pods go first.
            mine.sort_by_key(|p| {
                p["metadata"]["creationTimestamp"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            });
            while mine.len() > want {
                let p = mine.pop().unwrap();
                let _ = c.delete(
                    &pod_t,
                    ns,
                    p["metadata"]["name"].as_str().unwrap_or_default(),
                );
            }
        }
    }

    // The kubelet: an IP at once, ready after the delay (unless told to fail).
    let (pods, _) = c.list(&pod_t, None);
    for p in &pods {
        let ns = p["metadata"]["namespace"].as_str().unwrap_or_default();
        let name = p["metadata"]["name"].as_str().unwrap_or_default();
        if p["metadata"].get("deletionTimestamp").is_some() {
            continue;
        }
        if p["status"].get("podIP").is_none() {
            let ip = Ipv4Addr::from(*next_ip).to_string();
            *next_ip += 1;
            let status = json!({"status": {"phase": "Pending", "podIP": ip, "podIPs": [{"ip": ip}], "startTime": now(),
                "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "False"}]}});
            let _ = c.patch(
                &pod_t,
                ns,
                name,
                PatchType::Merge,
                status,
                Part::Status,
                &opts_w,
            );
            continue;
        }
        if p["status"]["phase"] == "Pending" {
            // Timestamps have second resolution; the delay is counted from the annotation the
            // first pass writes, in milliseconds.
            let since_ms = p["metadata"]["annotations"]["kubesim.vireo.dev/started-ms"]
                .as_str()
                .and_then(|s| s.parse::<i64>().ok());
            let now_ms = chrono::Utc::now().timestamp_millis();
            let Some(since_ms) = since_ms else {
                let patch = json!({"metadata": {"annotations": {"kubesim.vireo.dev/started-ms": now_ms.to_string()}}});
                let _ = c.patch(
                    &pod_t,
                    ns,
                    name,
                    PatchType::Merge,
                    patch,
                    Part::Main,
                    &opts_w,
                );
                continue;
            };
            if now_ms - since_ms < opts.pod_ready_delay.as_millis() as i64 {
                continue;
            }
            let fail = p["metadata"]["annotations"][FAIL_ANNOTATION] == "true";
            let containers: Vec<Value> = p["spec"]["containers"]
                .as_array()
                .map(|cs| {
                    cs.iter()
                        .map(|ct| json!({"name": ct["name"], "image": ct["image"], "ready": !fail, "restartCount": 0,
                            "state": if fail { json!({"waiting": {"reason": "CrashLoopBackOff"}}) } else { json!({"running": {"startedAt": now()}}) }}))
                        .collect()
                })
                .unwrap_or_default();
            let ready = if fail { "False" } else { "True" };
            let status = json!({"status": {"phase": "Running", "containerStatuses": containers,
                "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": ready, "lastTransitionTime": now()}]}});
            let _ = c.patch(
                &pod_t,
                ns,
                name,
                PatchType::Merge,
                status,
                Part::Status,
                &opts_w,
            );
        }
    }

    // ReplicaSet status.
    let (pods, _) = c.list(&pod_t, None);
    for rs in &sets {
        let ns = rs["metadata"]["namespace"].as_str().unwrap_or_default();
        let name = rs["metadata"]["name"].as_str().unwrap_or_default();
        let mine: Vec<&Value> = pods
            .iter()
            .filter(|p| owned_by(p, &rs["metadata"]["uid"]))
            .collect();
        let ready = mine.iter().filter(|p| is_ready(p)).count();
        let status = json!({"replicas": mine.len(), "readyReplicas": ready, "availableReplicas": ready,
            "fullyLabeledReplicas": mine.len(), "observedGeneration": rs["metadata"]["generation"]});
        if rs["status"] != status {
            let _ = c.patch(
                &rs_t,
                ns,
                name,
                PatchType::Merge,
                json!({"status": status}),
                Part::Status,
                &opts_w,
            );
        }
    }

    // Services → EndpointSlices of the pods their selector matches.
    let (services, _) = c.list(&svc_t, None);
    let (slices, _) = c.list(&eps_t, None);
    for svc in &services {
        let ns = svc["metadata"]["namespace"].as_str().unwrap_or_default();
        let name = svc["metadata"]["name"].as_str().unwrap_or_default();
        let selector = &svc["spec"]["selector"];
        if !selector.is_object() {
            continue;
        }
        let members: Vec<&Value> = pods
            .iter()
            .filter(|p| {
                p["metadata"]["namespace"] == ns
                    && p["status"].get("podIP").is_some()
                    && matches_selector(&p["metadata"]["labels"], selector)
            })
            .collect();
        let ports: Vec<Value> = svc["spec"]["ports"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .map(|sp| {
                        let port = resolve_target(&sp["targetPort"], members.first().copied()).unwrap_or(sp["port"].clone());
                        json!({"name": sp.get("name").cloned().unwrap_or(json!("")), "port": port, "protocol": "TCP"})
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut endpoints: Vec<Value> = members
            .iter()
            .map(|p| {
                let terminating = p["metadata"].get("deletionTimestamp").is_some();
                json!({"addresses": [p["status"]["podIP"]],
                    "conditions": {"ready": is_ready(p) && !terminating, "serving": is_ready(p), "terminating": terminating},
                    "targetRef": {"kind": "Pod", "namespace": ns, "name": p["metadata"]["name"], "uid": p["metadata"]["uid"]}})
            })
            .collect();
        endpoints.sort_by_key(|e| {
            e["targetRef"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        });
        let slice_name = format!("{name}-kubesim");
        let body = json!({
            "metadata": {"name": slice_name, "namespace": ns,
                "labels": {"kubernetes.io/service-name": name, "endpointslice.kubernetes.io/managed-by": "kubesim"},
                "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": name, "uid": svc["metadata"]["uid"], "controller": true}]},
            "addressType": "IPv4",
            "endpoints": endpoints,
            "ports": ports,
        });
        match slices.iter().find(|s| {
            s["metadata"]["namespace"] == ns && s["metadata"]["name"] == slice_name.as_str()
        }) {
            None => {
                let _ = c.create(&eps_t, ns, body, &opts_w);
            }
            Some(s) if s["endpoints"] != body["endpoints"] || s["ports"] != body["ports"] => {
                let patch = json!({"endpoints": body["endpoints"], "ports": body["ports"]});
                let _ = c.patch(
                    &eps_t,
                    ns,
                    &slice_name,
                    PatchType::Merge,
                    patch,
                    Part::Main,
                    &opts_w,
                );
            }
            Some(_) => {}
        }
    }
}

fn is_ready(p: &Value) -> bool {
    p["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// A Service's targetPort: a number, or a container port's name in the pod.
fn resolve_target(target: &Value, pod: Option<&Value>) -> Option<Value> {
    match target {
        Value::Number(_) => Some(target.clone()),
        Value::String(name) => pod?["spec"]["containers"]
            .as_array()?
            .iter()
            .find_map(|ct| {
                ct["ports"]
                    .as_array()?
                    .iter()
                    .find(|p| p["name"] == name.as_str())
                    .map(|p| p["containerPort"].clone())
            }),
        _ => None,
    }
}

type Backends = Arc<std::sync::RwLock<Vec<std::net::SocketAddr>>>;

/// kube-proxy, with sockets: a listener on each Service's ClusterIP:port, forwarding every
/// connection to one ready endpoint (round robin), refused when there is none.
#[derive(Default)]
struct ServiceProxy {
    fronts:
        std::collections::HashMap<std::net::SocketAddr, (Backends, tokio::task::JoinHandle<()>)>,
}

impl Drop for ServiceProxy {
    fn drop(&mut self) {
        for (_, (_, task)) in self.fronts.drain() {
            task.abort();
        }
    }
}

impl ServiceProxy {
    fn sync(&mut self, c: &Cluster) {
        let (Some(svc_t), Some(eps_t)) = (
            c.resource("", "services"),
            c.resource("discovery.k8s.io", "endpointslices"),
        ) else {
            return;
        };
        let (services, _) = c.list(&svc_t, None);
        let (slices, _) = c.list(&eps_t, None);
        let mut wanted = std::collections::HashMap::new();
        for svc in &services {
            let Some(ip) = svc["spec"]["clusterIP"]
                .as_str()
                .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
            else {
                continue;
            };
            let ns = &svc["metadata"]["namespace"];
            let name = svc["metadata"]["name"].as_str().unwrap_or_default();
            let slice = slices.iter().find(|s| {
                s["metadata"]["namespace"] == *ns
                    && s["metadata"]["labels"]["kubernetes.io/service-name"] == name
            });
            for (i, port) in svc["spec"]["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                let Some(p) = port["port"].as_u64().and_then(|p| u16::try_from(p).ok()) else {
                    continue;
                };
                let target = slice
                    .and_then(|s| s["ports"].get(i))
                    .and_then(|sp| sp["port"].as_u64())
                    .and_then(|p| u16::try_from(p).ok())
                    .unwrap_or(p);
                let backends: Vec<std::net::SocketAddr> = slice
                    .and_then(|s| s["endpoints"].as_array())
                    .into_iter()
                    .flatten()
                    .filter(|e| e["conditions"]["ready"] == true)
                    .filter_map(|e| e["addresses"][0].as_str()?.parse::<Ipv4Addr>().ok())
                    .map(|a| std::net::SocketAddr::from((a, target)))
                    .collect();
                wanted.insert(std::net::SocketAddr::from((ip, p)), backends);
            }
        }
        self.fronts.retain(|front, (_, task)| {
            let keep = wanted.contains_key(front);
            if !keep {
                task.abort();
            }
            keep
        });
        for (front, backends) in wanted {
            if let Some((current, _)) = self.fronts.get(&front) {
                *current.write().unwrap_or_else(|p| p.into_inner()) = backends;
                continue;
            }
            let listener = match std::net::TcpListener::bind(front).and_then(|l| {
                l.set_nonblocking(true)?;
                tokio::net::TcpListener::from_std(l)
            }) {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(%front, "kubesim service proxy: cannot listen: {e}");
                    continue;
                }
            };
            let shared: Backends = Arc::new(std::sync::RwLock::new(backends));
            let task = tokio::spawn(forward(listener, shared.clone()));
            self.fronts.insert(front, (shared, task));
        }
    }
}

async fn forward(listener: tokio::net::TcpListener, backends: Backends) {
    let next = std::sync::atomic::AtomicUsize::new(0);
    loop {
        let Ok((mut client, _)) = listener.accept().await else {
            continue;
        };
        let pick = {
            let b = backends.read().unwrap_or_else(|p| p.into_inner());
            (!b.is_empty())
                .then(|| b[next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % b.len()])
        };
        let Some(backend) = pick else {
            continue; // no ready endpoint: the connection is closed, as a REJECT rule does
        };
        tokio::spawn(async move {
            if let Ok(mut upstream) = tokio::net::TcpStream::connect(backend).await {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            }
        });
    }
}
