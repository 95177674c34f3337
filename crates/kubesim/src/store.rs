//! The cluster's state: every object, one resourceVersion counter, the recent history that
//! watches resume from, and the API's write semantics (conflicts, subresources, generation,
//! finalizers, garbage collection). Synchronous under one lock: the simulator serves a test,
//! not a fleet.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tokio::sync::broadcast;

use crate::error::ApiError;
use crate::registry::{self, ResourceType};
use crate::schema;

/// Events kept for watches that resume from a resourceVersion; an older one gets 410 Gone.
pub const HISTORY: usize = 2048;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as watches see it.
#[derive(Debug, Clone)]
pub struct Event {
    pub rv: u64,
    pub group: String,
    pub plural: String,
    pub namespace: String,
    pub type_: EventType,
    pub object: Value,
}

/// Which part of an object a write addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Main,
    Status,
    Scale,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    /// Approximated: a merge patch in which lists of objects with a `name` merge by name.
    Strategic,
    /// Server-side apply, approximated as a merge that creates a missing object; field
    /// ownership (`managedFields`) is not tracked.
    Apply,
}

#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// `fieldValidation=Strict`: unknown fields are an error instead of pruned.
    pub strict: bool,
    pub dry_run: bool,
}

type Key = (String, String, String, String); // group, plural, namespace, name

#[derive(Default)]
struct State {
    rv: u64,
    uid: u64,
    /// Service ClusterIPs handed out, and where they start (10.96.0.1 unless set).
    cluster_ips: u32,
    cluster_ip_base: Option<std::net::Ipv4Addr>,
    types: BTreeMap<(String, String), ResourceType>,
    objects: BTreeMap<Key, Value>,
    history: VecDeque<Event>,
}

/// The simulated cluster.
pub struct Cluster {
    state: Mutex<State>,
    events: broadcast::Sender<Arc<Event>>,
}

/// The time now, as the API server writes timestamps.
pub fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

impl Cluster {
    pub fn new() -> Arc<Cluster> {
        let (events, _) = broadcast::channel(4096);
        let mut state = State::default();
        for t in registry::builtins() {
            state.types.insert((t.group.clone(), t.plural.clone()), t);
        }
        let cluster = Arc::new(Cluster {
            state: Mutex::new(state),
            events,
        });
        for ns in ["default", "kube-system", "kube-public"] {
            let t = cluster.resource("", "namespaces").unwrap();
            cluster
                .create(
                    &t,
                    "",
                    json!({"metadata": {"name": ns}}),
                    &WriteOptions::default(),
                )
                .expect("a fresh cluster takes its namespaces");
        }
        cluster
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock is a bug in the simulator; its state is still the
        // last committed one, so carrying on is the useful choice for a test fixture.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where Service ClusterIPs start (tests use loopback addresses, which the simulated
    /// service proxy can listen on).
    pub fn set_first_cluster_ip(&self, ip: std::net::Ipv4Addr) {
        self.lock().cluster_ip_base = Some(ip);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.events.subscribe()
    }

    pub fn resource_version(&self) -> u64 {
        self.lock().rv
    }

    /// The oldest resourceVersion a watch can resume from.
    pub fn oldest_resumable(&self) -> u64 {
        let s = self.lock();
        s.history.front().map(|e| e.rv - 1).unwrap_or(s.rv)
    }

    /// History after `rv`, or `None` when it is no longer kept (410 Gone).
    pub fn events_since(&self, rv: u64) -> Option<Vec<Event>> {
        let s = self.lock();
        let oldest = s.history.front().map(|e| e.rv - 1).unwrap_or(s.rv);
        if rv < oldest {
            return None;
        }
        Some(s.history.iter().filter(|e| e.rv > rv).cloned().collect())
    }

    pub fn resource(&self, group: &str, plural: &str) -> Option<ResourceType> {
        self.lock()
            .types
            .get(&(group.to_string(), plural.to_string()))
            .cloned()
    }

    pub fn types(&self) -> Vec<ResourceType> {
        self.lock().types.values().cloned().collect()
    }

    pub fn get(&self, t: &ResourceType, ns: &str, name: &str) -> Result<Value, ApiError> {
        self.lock()
            .objects
            .get(&key(t, ns, name))
            .cloned()
            .ok_or_else(|| ApiError::not_found(&t.qualified(), name))
    }

    /// Every object of a type (in one namespace, or all), and the resourceVersion of the list.
    pub fn list(&self, t: &ResourceType, ns: Option<&str>) -> (Vec<Value>, u64) {
        let s = self.lock();
        let items = s
            .objects
            .iter()
            .filter(|((g, p, n, _), _)| {
                *g == t.group && *p == t.plural && ns.is_none_or(|ns| ns == n)
            })
            .map(|(_, v)| v.clone())
            .collect();
        (items, s.rv)
    }

    pub fn create(
        &self,
        t: &ResourceType,
        ns: &str,
        mut obj: Value,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        }
        let mut s = self.lock();
        let ns = if t.namespaced { ns } else { "" };
        let meta = obj
            .as_object_mut()
            .unwrap()
            .entry("metadata")
            .or_insert_with(|| json!({}));
        if !meta.is_object() {
            return Err(ApiError::bad_request("metadata must be an object"));
        }
        if let Some(body_ns) = meta["namespace"].as_str() {
            if t.namespaced && body_ns != ns {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
        }
        let mut name = meta["name"].as_str().unwrap_or_default().to_string();
        if name.is_empty() {
            let Some(prefix) = meta["generateName"].as_str() else {
                return Err(ApiError::invalid(
                    &t.kind,
                    "",
                    vec!["metadata.name: Required value: name or generateName is required".into()],
                ));
            };
            name = format!("{prefix}{}", suffix(s.uid + s.rv));
        }
        if let Err(e) = check_name(&name) {
            return Err(ApiError::invalid(
                &t.kind,
                &name,
                vec![format!("metadata.name: Invalid value: \"{name}\": {e}")],
            ));
        }
        if t.namespaced
            && !s.objects.contains_key(&(
                String::new(),
                "namespaces".into(),
                String::new(),
                ns.to_string(),
            ))
        {
            return Err(ApiError::not_found("namespaces", ns));
        }
        if t.create_only {
            // TokenReview and friends: answered by the caller, never stored.
            return Ok(obj);
        }
        if s.objects.contains_key(&key(t, ns, &name)) {
            return Err(ApiError::already_exists(&t.qualified(), &name));
        }
        validate(t, &mut obj, &name, opts)?;
        defaults(&mut s, t, &mut obj);
        if t.status && t.kind != "Pod" {
            // The status subresource owns `.status`; a create cannot set it.
            obj.as_object_mut().unwrap().remove("status");
        }
        s.uid += 1;
        let uid = format!("00000000-0000-4000-8000-{:012x}", s.uid);
        let meta = obj["metadata"].as_object_mut().unwrap();
        meta.insert("name".into(), json!(name));
        if t.namespaced {
            meta.insert("namespace".into(), json!(ns));
        }
        meta.insert("uid".into(), json!(uid));
        meta.insert("creationTimestamp".into(), json!(now()));
        meta.insert("generation".into(), json!(1));
        meta.remove("deletionTimestamp");
        obj["apiVersion"] = json!(t.api_version());
        obj["kind"] = json!(t.kind);
        if opts.dry_run {
            return Ok(obj);
        }
        if t.group == "apiextensions.k8s.io" {
            register_crd(&mut s, &mut obj)?;
        }
        let out = self.commit(&mut s, t, ns, &name, obj, EventType::Added);
        self.mirror_event(&mut s, t, ns, &name, &out);
        Ok(out)
    }

    /// PUT: replaces the object (or its status, or its scale), checking resourceVersion.
    pub fn update(
        &self,
        t: &ResourceType,
        ns: &str,
        name: &str,
        body: Value,
        part: Part,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let mut s = self.lock();
        let ns = if t.namespaced { ns } else { "" };
        let current = s
            .objects
            .get(&key(t, ns, name))
            .cloned()
            .ok_or_else(|| ApiError::not_found(&t.qualified(), name))?;
        if let Some(rv) = body["metadata"]["resourceVersion"].as_str() {
            if rv
                != current["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or_default()
            {
                return Err(ApiError::conflict(&t.qualified(), name));
            }
        } else if t.custom && part != Part::Scale {
            return Err(ApiError::invalid(
                &t.kind,
                name,
                vec![
                    "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update"
                        .into(),
                ],
            ));
        }
        if body["metadata"]["name"].as_str().is_some_and(|n| n != name) {
            return Err(ApiError::bad_request(
                "the name of the object does not match the name on the URL",
            ));
        }
        let next = merge_part(t, &current, body, part)?;
        self.write(&mut s, t, ns, name, current, next, opts)
    }

    /// PATCH of any kind; `Apply` creates a missing object.
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &self,
        t: &ResourceType,
        ns: &str,
        name: &str,
        kind: PatchType,
        patch: Value,
        part: Part,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let ns = if t.namespaced { ns } else { "" };
        let mut s = self.lock();
        let Some(current) = s.objects.get(&key(t, ns, name)).cloned() else {
            if kind == PatchType::Apply && part == Part::Main {
                drop(s);
                let mut obj = patch;
                obj["metadata"]["name"] = json!(name);
                return self.create(t, ns, obj, opts);
            }
            return Err(ApiError::not_found(&t.qualified(), name));
        };
        let mut patched = match part {
            Part::Scale => scale_of(t, &current),
            _ => current.clone(),
        };
        match kind {
            PatchType::Json => {
                // As the API server's JSON patch library does (and kube-rs' finalizer helper
                // relies on): `test` of a missing path against null succeeds.
                let patch = match patch {
                    Value::Array(ops) => Value::Array(
                        ops.into_iter()
                            .filter(|op| {
                                !(op["op"] == "test"
                                    && op["value"].is_null()
                                    && op["path"]
                                        .as_str()
                                        .is_some_and(|p| patched.pointer(p).is_none()))
                            })
                            .collect(),
                    ),
                    other => other,
                };
                let ops: json_patch::Patch = serde_json::from_value(patch)
                    .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
                json_patch::patch(&mut patched, &ops).map_err(|e| {
                    ApiError::invalid(
                        &t.kind,
                        name,
                        vec![format!("the JSON patch did not apply: {e}")],
                    )
                })?;
            }
            PatchType::Merge | PatchType::Apply => json_patch::merge(&mut patched, &patch),
            PatchType::Strategic => strategic_merge(&mut patched, &patch),
        }
        // A resourceVersion in the patch is a precondition.
        if let Some(rv) = patched["metadata"]["resourceVersion"].as_str() {
            if rv
                != current["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or_default()
            {
                return Err(ApiError::conflict(&t.qualified(), name));
            }
        }
        let next = merge_part(t, &current, patched, part)?;
        self.write(&mut s, t, ns, name, current, next, opts)
    }

    /// DELETE: with finalizers, marks the object; without, removes it and collects what it
    /// owned.
    pub fn delete(&self, t: &ResourceType, ns: &str, name: &str) -> Result<Value, ApiError> {
        let mut s = self.lock();
        let ns = if t.namespaced { ns } else { "" };
        let k = key(t, ns, name);
        let mut obj = s
            .objects
            .get(&k)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&t.qualified(), name))?;
        let finalizers = obj["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if finalizers {
            if obj["metadata"].get("deletionTimestamp").is_none() {
                obj["metadata"]["deletionTimestamp"] = json!(now());
                obj["metadata"]["deletionGracePeriodSeconds"] = json!(0);
                return Ok(self.commit(&mut s, t, ns, name, obj, EventType::Modified));
            }
            return Ok(obj);
        }
        Ok(self.remove(&mut s, t, ns, name))
    }

    /// Objects of every type whose ownerReferences name `uid`.
    fn dependents(s: &State, uid: &str) -> Vec<Key> {
        s.objects
            .iter()
            .filter(|(_, v)| {
                v["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid))
            })
            .map(|(k, _)| k.clone())
            .collect()
    }

    fn remove(&self, s: &mut State, t: &ResourceType, ns: &str, name: &str) -> Value {
        let obj = s.objects.remove(&key(t, ns, name)).unwrap_or(Value::Null);
        s.rv += 1;
        let rv = s.rv;
        let mut gone = obj.clone();
        gone["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.record(s, t, ns, EventType::Deleted, gone.clone());
        if t.group == "apiextensions.k8s.io" {
            let group = obj["spec"]["group"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let plural = obj["spec"]["names"]["plural"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if let Some(ct) = s.types.remove(&(group.clone(), plural.clone())) {
                let keys: Vec<Key> = s
                    .objects
                    .keys()
                    .filter(|(g, p, _, _)| *g == group && *p == plural)
                    .cloned()
                    .collect();
                for (_, _, n, nm) in keys {
                    self.remove(s, &ct, &n, &nm);
                }
            }
        }
        if t.kind == "Namespace" {
            let keys: Vec<Key> = s.objects.keys().filter(|k| k.2 == name).cloned().collect();
            for (g, p, n, nm) in keys {
                if let Some(ct) = s.types.get(&(g, p)).cloned() {
                    self.remove(s, &ct, &n, &nm);
                }
            }
        }
        // Background garbage collection of dependents (their finalizers are honoured).
        let uid = obj["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        for (g, p, n, nm) in Self::dependents(s, &uid) {
            let Some(dt) = s.types.get(&(g, p)).cloned() else {
                continue;
            };
            let Some(mut dep) = s.objects.get(&key(&dt, &n, &nm)).cloned() else {
                continue;
            };
            if dep["metadata"]["finalizers"]
                .as_array()
                .is_some_and(|f| !f.is_empty())
            {
                if dep["metadata"].get("deletionTimestamp").is_none() {
                    dep["metadata"]["deletionTimestamp"] = json!(now());
                    self.commit(s, &dt, &n, &nm, dep, EventType::Modified);
                }
            } else {
                self.remove(s, &dt, &n, &nm);
            }
        }
        gone
    }

    #[allow(clippy::too_many_arguments)]
    fn write(
        &self,
        s: &mut State,
        t: &ResourceType,
        ns: &str,
        name: &str,
        current: Value,
        mut next: Value,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        validate(t, &mut next, name, opts)?;
        // Identity and bookkeeping are the server's.
        for field in [
            "uid",
            "creationTimestamp",
            "name",
            "namespace",
            "generation",
        ] {
            match current["metadata"].get(field) {
                Some(v) => next["metadata"][field] = v.clone(),
                None => {
                    if let Some(m) = next["metadata"].as_object_mut() {
                        m.remove(field);
                    }
                }
            }
        }
        if let Some(dt) = current["metadata"].get("deletionTimestamp") {
            next["metadata"]["deletionTimestamp"] = dt.clone();
        } else if let Some(m) = next["metadata"].as_object_mut() {
            m.remove("deletionTimestamp");
        }
        next["apiVersion"] = json!(t.api_version());
        next["kind"] = json!(t.kind);
        if spec_of(&next) != spec_of(&current) {
            let g = current["metadata"]["generation"].as_i64().unwrap_or(1);
            next["metadata"]["generation"] = json!(g + 1);
        }
        let mut cmp = next.clone();
        cmp["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
        if cmp == current || opts.dry_run {
            return Ok(if opts.dry_run { next } else { current });
        }
        if t.group == "apiextensions.k8s.io" {
            register_crd(s, &mut next)?;
        }
        let finalized = next["metadata"].get("deletionTimestamp").is_some()
            && next["metadata"]["finalizers"]
                .as_array()
                .is_none_or(|f| f.is_empty());
        if finalized {
            s.objects.insert(key(t, ns, name), next);
            return Ok(self.remove(s, t, ns, name));
        }
        let out = self.commit(s, t, ns, name, next, EventType::Modified);
        self.mirror_event(s, t, ns, name, &out);
        Ok(out)
    }

    /// `events.k8s.io/v1` and core `v1` Events are one store in a real API server: an event
    /// written through the first is readable through the second (`kubectl get events`).
    fn mirror_event(&self, s: &mut State, t: &ResourceType, ns: &str, name: &str, ev: &Value) {
        if t.group != "events.k8s.io" {
            return;
        }
        let Some(core) = s.types.get(&(String::new(), "events".to_string())).cloned() else {
            return;
        };
        let series_count = ev["series"]["count"].as_i64().unwrap_or(1);
        let mut v1 = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": ns},
            "involvedObject": ev["regarding"],
            "reason": ev["reason"],
            "message": ev["note"],
            "type": ev["type"],
            "action": ev["action"],
            "source": {"component": ev["reportingController"]},
            "reportingComponent": ev["reportingController"],
            "reportingInstance": ev["reportingInstance"],
            "firstTimestamp": ev["eventTime"],
            "lastTimestamp": ev["series"]["lastObservedTime"].as_str().map(|_| ev["series"]["lastObservedTime"].clone()).unwrap_or(ev["eventTime"].clone()),
            "count": series_count,
        });
        let k = key(&core, ns, name);
        let kind = match s.objects.get(&k) {
            Some(old) => {
                v1["metadata"] = old["metadata"].clone();
                EventType::Modified
            }
            None => {
                s.uid += 1;
                v1["metadata"]["uid"] = json!(format!("00000000-0000-4000-8000-{:012x}", s.uid));
                v1["metadata"]["creationTimestamp"] = json!(now());
                EventType::Added
            }
        };
        self.commit(s, &core, ns, name, v1, kind);
    }

    fn commit(
        &self,
        s: &mut State,
        t: &ResourceType,
        ns: &str,
        name: &str,
        mut obj: Value,
        type_: EventType,
    ) -> Value {
        s.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(s.rv.to_string());
        s.objects.insert(key(t, ns, name), obj.clone());
        self.record(s, t, ns, type_, obj.clone());
        obj
    }

    fn record(&self, s: &mut State, t: &ResourceType, ns: &str, type_: EventType, object: Value) {
        let e = Event {
            rv: s.rv,
            group: t.group.clone(),
            plural: t.plural.clone(),
            namespace: ns.to_string(),
            type_,
            object,
        };
        if s.history.len() == HISTORY {
            s.history.pop_front();
        }
        s.history.push_back(e.clone());
        let _ = self.events.send(Arc::new(e));
    }
}

/// The defaults the API server fills in on create for the kinds the tests read back.
fn defaults(s: &mut State, t: &ResourceType, obj: &mut Value) {
    if !t.group.is_empty() && t.group != "apps" {
        return;
    }
    match t.kind.as_str() {
        "Service" => {
            let spec = &mut obj["spec"];
            if spec.get("type").is_none() {
                spec["type"] = json!("ClusterIP");
            }
            if spec.get("clusterIP").is_none() && spec["type"] != "ExternalName" {
                let base = u32::from(
                    s.cluster_ip_base
                        .unwrap_or(std::net::Ipv4Addr::new(10, 96, 0, 1)),
                );
                let ip = std::net::Ipv4Addr::from(base + s.cluster_ips).to_string();
                s.cluster_ips += 1;
                spec["clusterIP"] = json!(ip);
                spec["clusterIPs"] = json!([ip]);
            }
            if let Some(ports) = spec["ports"].as_array_mut() {
                for p in ports {
                    if p.get("protocol").is_none() {
                        p["protocol"] = json!("TCP");
                    }
                    if p.get("targetPort").is_none() {
                        p["targetPort"] = p["port"].clone();
                    }
                }
            }
        }
        "Deployment" | "ReplicaSet" | "StatefulSet" if obj["spec"].get("replicas").is_none() => {
            obj["spec"]["replicas"] = json!(1);
        }
        "Pod" => {
            if obj["spec"].get("restartPolicy").is_none() {
                obj["spec"]["restartPolicy"] = json!("Always");
            }
            if obj.get("status").is_none() {
                obj["status"] = json!({"phase": "Pending"});
            }
        }
        _ => {}
    }
}

fn key(t: &ResourceType, ns: &str, name: &str) -> Key {
    let ns = if t.namespaced { ns } else { "" };
    (
        t.group.clone(),
        t.plural.clone(),
        ns.to_string(),
        name.to_string(),
    )
}

/// Everything but metadata and status: what `generation` counts changes of.
fn spec_of(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
        m.remove("apiVersion");
        m.remove("kind");
    }
    v
}

fn validate(
    t: &ResourceType,
    obj: &mut Value,
    name: &str,
    opts: &WriteOptions,
) -> Result<(), ApiError> {
    let Some(schema) = &t.schema else {
        return Ok(());
    };
    let checked = schema::apply(schema, obj);
    if opts.strict && !checked.unknown.is_empty() {
        return Err(ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
            t.kind,
            t.version,
            t.kind,
            checked
                .unknown
                .iter()
                .map(|f| format!("unknown field \"{f}\""))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    if !checked.errors.is_empty() {
        return Err(ApiError::invalid(&t.kind, name, checked.errors));
    }
    Ok(())
}

/// The object after a write to `part`: the main endpoint keeps the stored status when a status
/// subresource exists; `/status` takes only the status; `/scale` only the replica count.
fn merge_part(
    t: &ResourceType,
    current: &Value,
    body: Value,
    part: Part,
) -> Result<Value, ApiError> {
    let mut next = match part {
        Part::Main => {
            let mut next = body;
            if t.status {
                match current.get("status") {
                    Some(st) => next["status"] = st.clone(),
                    None => {
                        if let Some(m) = next.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
            }
            next
        }
        Part::Status => {
            let mut next = current.clone();
            match body.get("status") {
                Some(st) => next["status"] = st.clone(),
                None => {
                    if let Some(m) = next.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
            next
        }
        Part::Scale => {
            let paths = t
                .scale
                .as_ref()
                .ok_or_else(|| ApiError::not_found("scale", ""))?;
            let replicas = body["spec"]["replicas"]
                .as_i64()
                .ok_or_else(|| ApiError::bad_request("spec.replicas: Required value"))?;
            let mut next = current.clone();
            set_path(&mut next, &paths.spec_replicas, json!(replicas));
            next
        }
    };
    next["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
    if part != Part::Main {
        next["metadata"] = current["metadata"].clone();
    }
    Ok(next)
}

/// The `autoscaling/v1` Scale of an object.
pub fn scale_of(t: &ResourceType, obj: &Value) -> Value {
    let paths = t.scale.as_ref();
    let get = |p: Option<&str>| p.map(|p| get_path(obj, p)).unwrap_or(Value::Null);
    let mut meta = obj["metadata"].clone();
    if let Some(m) = meta.as_object_mut() {
        m.retain(|k, _| {
            matches!(
                k.as_str(),
                "name" | "namespace" | "uid" | "resourceVersion" | "creationTimestamp"
            )
        });
    }
    let mut status =
        json!({"replicas": get(paths.map(|p| p.status_replicas.as_str())).as_i64().unwrap_or(0)});
    if let Some(sel) = get(paths.and_then(|p| p.label_selector.as_deref())).as_str() {
        status["selector"] = json!(sel);
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": meta,
        "spec": {"replicas": get(paths.map(|p| p.spec_replicas.as_str())).as_i64().unwrap_or(0)},
        "status": status,
    })
}

/// A value at a simple JSONPath (`.spec.replicas`, `.status.conditions[0].type`).
pub fn get_path(v: &Value, path: &str) -> Value {
    let mut cur = v;
    for seg in path
        .trim_start_matches('.')
        .split('.')
        .filter(|s| !s.is_empty())
    {
        let (field, index) = match seg.split_once('[') {
            Some((f, rest)) => (f, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (seg, None),
        };
        cur = &cur[field];
        if let Some(i) = index {
            cur = &cur[i];
        }
    }
    cur.clone()
}

fn set_path(v: &mut Value, path: &str, value: Value) {
    let segs: Vec<&str> = path.trim_start_matches('.').split('.').collect();
    let mut cur = v;
    for s in &segs[..segs.len() - 1] {
        cur = &mut cur[*s];
    }
    cur[segs[segs.len() - 1]] = value;
}

/// Strategic merge, approximated: a merge patch, except that a list of objects that all have
/// `name` merges element by element on it (containers, env, volumes, ports with names).
fn strategic_merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, pv) in p {
                if k.starts_with('$') {
                    continue;
                }
                if pv.is_null() {
                    t.remove(k);
                    continue;
                }
                match t.get_mut(k) {
                    Some(tv) => strategic_merge(tv, pv),
                    None => {
                        t.insert(k.clone(), pv.clone());
                    }
                }
            }
        }
        (Value::Array(t), Value::Array(p))
            if !p.is_empty()
                && p.iter().all(|x| x.get("name").is_some())
                && t.iter().all(|x| x.get("name").is_some()) =>
        {
            for pv in p {
                match t.iter_mut().find(|x| x["name"] == pv["name"]) {
                    Some(tv) => strategic_merge(tv, pv),
                    None => t.push(pv.clone()),
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

fn register_crd(s: &mut State, crd: &mut Value) -> Result<(), ApiError> {
    let name = crd["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let t = ResourceType::from_crd(crd)
        .map_err(|e| ApiError::invalid("CustomResourceDefinition", &name, vec![e]))?;
    let names = crd["spec"]["names"].clone();
    crd["status"] = json!({
        "acceptedNames": names,
        "storedVersions": [t.version],
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now()},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now()},
        ],
    });
    s.types.insert((t.group.clone(), t.plural.clone()), t);
    Ok(())
}

fn check_name(name: &str) -> Result<(), &'static str> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character")
    }
}

/// generateName's five characters, from a counter (deterministic, as tests like).
fn suffix(n: u64) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (0..5)
        .map(|_| {
            let c = ALPHABET[(x % ALPHABET.len() as u64) as usize] as char;
            x /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

#[cfg(test)]
mod tests;
