//! Traffic through Gateway API: the weights of an `HTTPRoute`'s `backendRefs` (the canary and
//! stable Services), for users of any Gateway implementation.
//!
//! A layer over the engine's traffic seam ([`vireo_engine::driver::TrafficLayer`]): every
//! table the engine publishes still goes to Vireo's proxies, and for each route that a Rollout
//! sends through Gateway API the layer patches the HTTPRoute with a JSON patch that first tests
//! the old weight, so a concurrent edit by someone else fails the patch instead of being
//! overwritten; the next attempt re-reads. A table counts as applied once every such patch
//! succeeded and, for routes Vireo's proxies carry too, once the proxies applied it. A Gateway
//! reports no in-flight requests, so a Gateway-only route counts as drained once the weight
//! patch is in.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::{json, Value};
use vireo_core::rollout::Millis;
use vireo_engine::traffic::Traffic;
use vireo_types::wire::ConfigUpdate;

/// Where one route's weights go.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub namespace: String,
    pub http_route: String,
    pub canary_service: String,
    pub stable_service: String,
    /// Vireo's proxies carry the route too (`trafficRouting.vireo` as well).
    pub proxies: bool,
}

/// Route name → target, filled in by the reconciler.
#[derive(Clone, Default)]
pub struct Routes(Arc<Mutex<HashMap<String, Target>>>);

impl Routes {
    pub fn set(&self, route: &str, target: Option<Target>) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match target {
            Some(t) => m.insert(route.to_string(), t),
            None => m.remove(route),
        };
    }
    fn get(&self, route: &str) -> Option<Target> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(route)
            .cloned()
    }
}

#[derive(Default)]
struct State {
    /// The newest table published, and whether its Gateway patches are all in.
    version: u64,
    gateway_done: bool,
    /// Routes of the newest table: whether each needs the proxies.
    needs_proxies: BTreeMap<String, bool>,
    error: Option<String>,
}

pub struct GatewayTraffic {
    inner: Arc<dyn Traffic>,
    routes: Routes,
    state: Arc<Mutex<State>>,
    tables: tokio::sync::watch::Sender<Option<ConfigUpdate>>,
}

impl GatewayTraffic {
    /// Wraps `inner`; patches run on a task of the current runtime.
    pub fn new(
        inner: Arc<dyn Traffic>,
        client: kube::Client,
        routes: Routes,
    ) -> Arc<GatewayTraffic> {
        let (tables, rx) = tokio::sync::watch::channel(None);
        let state = Arc::new(Mutex::new(State::default()));
        tokio::spawn(apply_loop(client, routes.clone(), state.clone(), rx));
        Arc::new(GatewayTraffic {
            inner,
            routes,
            state,
            tables,
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The canary's weight in a published route (0 when only the stable is listed).
fn canary_weight(route: &vireo_types::config::Route) -> i64 {
    let total: i64 = route.split.backends.iter().map(|b| b.weight.max(0)).sum();
    let canary: i64 = route
        .split
        .backends
        .iter()
        .filter(|b| b.name == vireo_core::routes::CANARY)
        .map(|b| b.weight.max(0))
        .sum();
    if total == 0 {
        0
    } else {
        canary * 100 / total
    }
}

impl Traffic for GatewayTraffic {
    fn publish(&self, table: ConfigUpdate) {
        {
            let mut s = self.state();
            s.version = table.version;
            s.needs_proxies = table
                .routes
                .iter()
                .map(|r| {
                    (
                        r.name.clone(),
                        self.routes.get(&r.name).is_none_or(|t| t.proxies),
                    )
                })
                .collect();
            s.gateway_done = !table
                .routes
                .iter()
                .any(|r| self.routes.get(&r.name).is_some());
        }
        let _ = self.tables.send(Some(table.clone()));
        self.inner.publish(table);
    }

    fn applied(&self, version: u64, now: Millis) -> bool {
        let (gateway_ok, proxies_needed) = {
            let s = self.state();
            (
                s.version >= version && s.gateway_done,
                s.needs_proxies.values().any(|n| *n),
            )
        };
        gateway_ok && (!proxies_needed || self.inner.applied(version, now))
    }

    fn drained(&self, route: &str, backend: &str, now: Millis) -> bool {
        match self.routes.get(route) {
            Some(t) if !t.proxies => self.state().gateway_done,
            _ => self.inner.drained(route, backend, now),
        }
    }

    fn refusals(&self, now: Millis) -> Vec<String> {
        let mut out = self.inner.refusals(now);
        out.extend(self.state().error.clone());
        out
    }
}

fn http_routes(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute");
    Api::namespaced_with(client.clone(), ns, &ApiResource::from_gvk(&gvk))
}

/// The JSON patch that sets the two Services' weights, testing each old value.
pub fn weight_patch(route: &Value, target: &Target, canary: i64) -> Result<Option<Value>, String> {
    let mut ops = Vec::new();
    let mut found = (false, false);
    for (i, rule) in route["spec"]["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        for (j, backend) in rule["backendRefs"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let name = backend["name"].as_str().unwrap_or_default();
            let want = if name == target.canary_service {
                found.0 = true;
                canary
            } else if name == target.stable_service {
                found.1 = true;
                100 - canary
            } else {
                continue;
            };
            let old = backend.get("weight").cloned().unwrap_or(Value::Null);
            if old == json!(want) {
                continue;
            }
            let path = format!("/spec/rules/{i}/backendRefs/{j}/weight");
            ops.push(json!({"op": "test", "path": path, "value": old}));
            ops.push(json!({"op": if old.is_null() { "add" } else { "replace" }, "path": path, "value": want}));
        }
    }
    match found {
        (true, true) => Ok((!ops.is_empty()).then_some(Value::Array(ops))),
        (c, _) => Err(format!(
            "HTTPRoute {}/{} has no backendRef to the {} Service {:?}",
            target.namespace,
            target.http_route,
            if c { "stable" } else { "canary" },
            if c {
                &target.stable_service
            } else {
                &target.canary_service
            }
        )),
    }
}

async fn apply_loop(
    client: kube::Client,
    routes: Routes,
    state: Arc<Mutex<State>>,
    mut tables: tokio::sync::watch::Receiver<Option<ConfigUpdate>>,
) {
    loop {
        let table = tables.borrow_and_update().clone();
        if let Some(table) = table {
            let mut error = None;
            for route in &table.routes {
                let Some(target) = routes.get(&route.name) else {
                    continue;
                };
                let api = http_routes(&client, &target.namespace);
                let result = async {
                    let live = api.get(&target.http_route).await.map_err(|e| format!("HTTPRoute {}/{}: {e}", target.namespace, target.http_route))?;
                    let live = serde_json::to_value(&live).map_err(|e| e.to_string())?;
                    if let Some(patch) = weight_patch(&live, &target, canary_weight(route))? {
                        let patch: json_patch::Patch = serde_json::from_value(patch).map_err(|e| e.to_string())?;
                        api.patch(&target.http_route, &PatchParams::default(), &Patch::Json::<()>(patch))
                            .await
                            .map_err(|e| format!("patching HTTPRoute {}/{}: {e}", target.namespace, target.http_route))?;
                        tracing::info!(route = %route.name, httproute = %format!("{}/{}", target.namespace, target.http_route), canary = canary_weight(route), "Gateway API weights set");
                    }
                    Ok::<(), String>(())
                }
                .await;
                if let Err(e) = result {
                    tracing::warn!("{e}");
                    error = Some(e);
                }
            }
            {
                let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
                if s.version == table.version {
                    s.gateway_done = error.is_none();
                    s.error = error.clone();
                }
            }
            if error.is_some() {
                // Retry (re-reading the route) unless a newer table arrives first.
                let _ = tokio::time::timeout(Duration::from_secs(1), tables.changed()).await;
                continue;
            }
        }
        if tables.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            namespace: "shop".into(),
            http_route: "checkout".into(),
            canary_service: "checkout-canary".into(),
            stable_service: "checkout-stable".into(),
            proxies: false,
        }
    }

    #[test]
    fn the_patch_tests_each_old_weight_before_setting_it() {
        let route = json!({"spec": {"rules": [{"backendRefs": [
            {"name": "checkout-stable", "port": 80, "weight": 100},
            {"name": "checkout-canary", "port": 80},
        ]}]}});
        let patch = weight_patch(&route, &target(), 25).unwrap().unwrap();
        assert_eq!(
            patch,
            json!([
                {"op": "test", "path": "/spec/rules/0/backendRefs/0/weight", "value": 100},
                {"op": "replace", "path": "/spec/rules/0/backendRefs/0/weight", "value": 75},
                {"op": "test", "path": "/spec/rules/0/backendRefs/1/weight", "value": null},
                {"op": "add", "path": "/spec/rules/0/backendRefs/1/weight", "value": 25},
            ])
        );
        let set = json!({"spec": {"rules": [{"backendRefs": [
            {"name": "checkout-stable", "weight": 75}, {"name": "checkout-canary", "weight": 25}]}]}});
        assert_eq!(
            weight_patch(&set, &target(), 25).unwrap(),
            None,
            "nothing to do"
        );
        let missing = json!({"spec": {"rules": [{"backendRefs": [{"name": "checkout-stable"}]}]}});
        assert!(weight_patch(&missing, &target(), 5)
            .unwrap_err()
            .contains("canary Service"));
    }
}
