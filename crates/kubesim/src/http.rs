//! The HTTP face of the simulator: discovery, resource paths, verbs, watch streams, tables.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::registry::ResourceType;
use crate::selector::Selector;
use crate::store::{scale_of, Cluster, Event, Part, PatchType, WriteOptions};
use crate::table;

/// Largest request body accepted (the API server's own limit is 3 MiB).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

pub struct Shared {
    pub cluster: Arc<Cluster>,
    pub token: String,
    pub bookmark_interval: Duration,
    /// Called for writes the simulator hands to someone else (admission, token review).
    pub hooks: crate::Hooks,
}

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .fallback(handle)
        .with_state(shared)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
}

fn json_response(code: u16, v: &Value) -> Response {
    let mut r = (
        StatusCode::from_u16(code).unwrap_or(StatusCode::OK),
        serde_json::to_vec(v).unwrap_or_default(),
    )
        .into_response();
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn error(e: ApiError) -> Response {
    json_response(e.code, &e.status())
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().trim_end_matches('/').to_string();
    if matches!(path.as_str(), "/healthz" | "/readyz" | "/livez") {
        return "ok".into_response();
    }
    let authorized = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| t == shared.token);
    if !authorized {
        return error(ApiError::new(401, "Unauthorized", "Unauthorized"));
    }
    tracing::debug!(%method, %uri, "request");
    let protobuf = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/vnd.kubernetes.protobuf"));
    if protobuf && !body.is_empty() {
        // Not emulated: typed clients (kubectl create …) fall back to JSON on a 415.
        return error(ApiError::new(
            415,
            "UnsupportedMediaType",
            "the simulator reads JSON and YAML bodies, not protobuf",
        ));
    }
    match route(&shared, &method, &path, &q, &headers, body).await {
        Ok(r) => r,
        Err(e) => error(e),
    }
}

async fn route(
    shared: &Arc<Shared>,
    method: &Method,
    path: &str,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let c = &shared.cluster;
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (group, version, rest) = match segs.as_slice() {
        ["version"] => {
            return Ok(json_response(
                200,
                &json!({"major": "1", "minor": "35", "gitVersion": "v1.35.0-vireo-kubesim", "platform": "linux/amd64"}),
            ));
        }
        ["api"] => {
            return Ok(json_response(
                200,
                &json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}),
            ));
        }
        ["apis"] => return Ok(json_response(200, &group_list(c))),
        ["openapi", "v3"] => return Ok(json_response(200, &openapi_root(c))),
        ["openapi", "v3", gv @ ..] => {
            return openapi_gv(c, &gv.join("/")).map(|v| json_response(200, &v))
        }
        ["api", "v1", rest @ ..] => ("", "v1", rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        ["apis", g] => {
            let groups = group_list(c);
            let found = groups["groups"]
                .as_array()
                .and_then(|gs| gs.iter().find(|x| x["name"] == *g).cloned());
            return found
                .map(|mut g| {
                    g["kind"] = json!("APIGroup");
                    g["apiVersion"] = json!("v1");
                    json_response(200, &g)
                })
                .ok_or_else(|| ApiError::not_found("apigroups", g));
        }
        _ => {
            return Err(ApiError::new(
                404,
                "NotFound",
                format!("the server could not find the requested resource ({path})"),
            ))
        }
    };
    if rest.is_empty() {
        return resource_list(c, group, version).map(|v| json_response(200, &v));
    }
    // Resource paths: [ns/NS/]PLURAL[/NAME[/SUB]]; `namespaces/NAME[/status]` is the
    // namespace itself.
    let (ns, rest) = match rest {
        ["namespaces", ns, plural, tail @ ..]
            if group.is_empty() && !matches!(*plural, "status" | "finalize") =>
        {
            (Some(*ns), {
                let mut v = vec![*plural];
                v.extend_from_slice(tail);
                v
            })
        }
        ["namespaces", ns, plural, tail @ ..] if !group.is_empty() => (Some(*ns), {
            let mut v = vec![*plural];
            v.extend_from_slice(tail);
            v
        }),
        other => (None, other.to_vec()),
    };
    let plural = rest[0];
    let t = c
        .resource(group, plural)
        .filter(|t| t.version == version)
        .ok_or_else(|| {
            ApiError::new(
                404,
                "NotFound",
                format!("the server could not find the requested resource ({path})"),
            )
        })?;
    if t.namespaced != ns.is_some() && !(t.namespaced && rest.len() == 1 && *method == Method::GET)
    {
        return Err(ApiError::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        ));
    }
    let ns = ns.unwrap_or("");
    let name = rest.get(1).copied();
    let part = match rest.get(2).copied() {
        None => Part::Main,
        Some("status") if t.status => Part::Status,
        Some("scale") if t.scale.is_some() => Part::Scale,
        Some("token") if t.kind == "ServiceAccount" && *method == Method::POST => {
            let name = name.unwrap_or_default();
            c.get(&t, ns, name)?;
            let body: Value = parse_body(&body)?;
            return (shared.hooks.token_request)(ns, name, &body).map(|v| json_response(201, &v));
        }
        Some(sub) => {
            return Err(ApiError::not_found(
                &format!("{}/{sub}", t.qualified()),
                name.unwrap_or_default(),
            ))
        }
    };
    let opts = WriteOptions {
        strict: q.get("fieldValidation").is_some_and(|v| v == "Strict"),
        dry_run: q.get("dryRun").is_some_and(|v| v == "All"),
    };
    let wants_table = headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("as=Table"));
    match (method.as_str(), name) {
        ("GET", None) => {
            let sel = Selector::parse(
                q.get("labelSelector").map(String::as_str),
                q.get("fieldSelector").map(String::as_str),
            )?;
            let ns_filter = (t.namespaced && !ns.is_empty()).then_some(ns);
            if q.get("watch").is_some_and(|w| w == "true" || w == "1") {
                return Ok(watch(shared, &t, ns_filter, sel, q));
            }
            let (items, rv) = c.list(&t, ns_filter);
            let items: Vec<Value> = items.into_iter().filter(|o| sel.matches(o)).collect();
            if wants_table {
                return Ok(json_response(200, &table::table(&t, &items, rv)));
            }
            Ok(json_response(
                200,
                &json!({
                    "kind": format!("{}List", t.kind),
                    "apiVersion": t.api_version(),
                    "metadata": {"resourceVersion": rv.to_string()},
                    "items": items,
                }),
            ))
        }
        ("GET", Some(name)) => {
            let obj = c.get(&t, ns, name)?;
            if part == Part::Scale {
                return Ok(json_response(200, &scale_of(&t, &obj)));
            }
            if wants_table {
                return Ok(json_response(
                    200,
                    &table::table(&t, &[obj], c.resource_version()),
                ));
            }
            Ok(json_response(200, &obj))
        }
        ("POST", None) => {
            let obj = parse_body(&body)?;
            if t.create_only {
                return (shared.hooks.create_only)(&t, &obj).map(|v| json_response(201, &v));
            }
            let obj = if t.kind == "Pod" {
                (shared.hooks.admit_pod)(ns, obj).await?
            } else {
                obj
            };
            c.create(&t, ns, obj, &opts).map(|v| json_response(201, &v))
        }
        ("PUT", Some(name)) => {
            let obj = parse_body(&body)?;
            c.update(&t, ns, name, obj, part, &opts)
                .map(|v| written(&t, part, v))
        }
        ("PATCH", Some(name)) => {
            let ctype = headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let kind = match ctype.split(';').next().unwrap_or_default().trim() {
                "application/json-patch+json" => PatchType::Json,
                "application/merge-patch+json" => PatchType::Merge,
                "application/strategic-merge-patch+json" if !t.custom => PatchType::Strategic,
                "application/apply-patch+yaml" | "application/apply-patch+cbor" => PatchType::Apply,
                other => {
                    return Err(ApiError::new(
                        415,
                        "UnsupportedMediaType",
                        format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {other:?})"),
                    ))
                }
            };
            let patch: Value = if kind == PatchType::Apply {
                serde_yaml_ng::from_slice(&body)
                    .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?
            } else {
                parse_body(&body)?
            };
            c.patch(&t, ns, name, kind, patch, part, &opts)
                .map(|v| written(&t, part, v))
        }
        ("DELETE", Some(name)) => c.delete(&t, ns, name).map(|v| json_response(200, &v)),
        _ => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            format!(
                "the server does not allow this method on the requested resource ({method} {path})"
            ),
        )),
    }
}

/// A write's answer: the object, or its Scale for `/scale`.
fn written(t: &ResourceType, part: Part, obj: Value) -> Response {
    match part {
        Part::Scale => json_response(200, &scale_of(t, &obj)),
        _ => json_response(200, &obj),
    }
}

fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not JSON: {e}")))
}

fn group_list(c: &Cluster) -> Value {
    let mut groups: Vec<(String, String)> = c
        .types()
        .into_iter()
        .filter(|t| !t.group.is_empty())
        .map(|t| (t.group, t.version))
        .collect();
    groups.sort();
    groups.dedup();
    json!({
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": groups.iter().map(|(g, v)| {
            let gv = json!({"groupVersion": format!("{g}/{v}"), "version": v});
            json!({"name": g, "versions": [gv.clone()], "preferredVersion": gv})
        }).collect::<Vec<_>>(),
    })
}

fn resource_list(c: &Cluster, group: &str, version: &str) -> Result<Value, ApiError> {
    let types: Vec<ResourceType> = c
        .types()
        .into_iter()
        .filter(|t| t.group == group && t.version == version)
        .collect();
    if types.is_empty() {
        return Err(ApiError::not_found(
            "groupversion",
            &format!("{group}/{version}"),
        ));
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Ok(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": gv,
        "resources": types.iter().flat_map(|t| t.discovery()).collect::<Vec<_>>(),
    }))
}

/// `/openapi/v3`: one document per group-version. The documents say only what kubectl asks
/// of them: that PATCH takes `fieldValidation` (so validation is left to the server), and the
/// CRDs' schemas (for `kubectl explain`); built-in kinds have none.
fn openapi_root(c: &Cluster) -> Value {
    let mut paths = serde_json::Map::new();
    for t in c.types() {
        let gv = if t.group.is_empty() {
            format!("api/{}", t.version)
        } else {
            format!("apis/{}/{}", t.group, t.version)
        };
        paths.insert(
            gv.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{gv}?hash=kubesim")}),
        );
    }
    json!({"paths": paths})
}

fn openapi_gv(c: &Cluster, gv: &str) -> Result<Value, ApiError> {
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    for t in c.types() {
        let this = if t.group.is_empty() {
            format!("api/{}", t.version)
        } else {
            format!("apis/{}/{}", t.group, t.version)
        };
        if this != gv {
            continue;
        }
        let gvk = json!({"group": t.group, "version": t.version, "kind": t.kind});
        if let Some(schema) = &t.schema {
            // A CRD's schema, so that `kubectl explain` works on it.
            let mut s = schema.clone();
            s["x-kubernetes-group-version-kind"] = json!([gvk]);
            let reversed: Vec<&str> = t.group.split('.').rev().collect();
            schemas.insert(
                format!("{}.{}.{}", reversed.join("."), t.version, t.kind),
                s,
            );
        }
        let params = json!([{"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}, {"name": "dryRun", "in": "query", "schema": {"type": "string"}}]);
        let op =
            json!({"x-kubernetes-group-version-kind": gvk, "parameters": params, "responses": {}});
        let base = if t.namespaced {
            format!("/{this}/namespaces/{{namespace}}/{}", t.plural)
        } else {
            format!("/{this}/{}", t.plural)
        };
        paths.insert(base.clone(), json!({"post": op}));
        paths.insert(format!("{base}/{{name}}"), json!({"patch": op, "put": op}));
    }
    if paths.is_empty() {
        return Err(ApiError::not_found("openapi", gv));
    }
    Ok(
        json!({"openapi": "3.0.0", "info": {"title": "Kubernetes (vireo-kubesim)", "version": "v1.35.0"}, "paths": paths, "components": {"schemas": schemas}}),
    )
}

fn event_line(type_: &str, object: &Value) -> Bytes {
    let mut line =
        serde_json::to_vec(&json!({"type": type_, "object": object})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

fn relevant(e: &Event, t: &ResourceType, ns: Option<&str>, sel: &Selector) -> bool {
    e.group == t.group
        && e.plural == t.plural
        && ns.is_none_or(|ns| ns == e.namespace)
        && sel.matches(&e.object)
}

/// A watch: the events after `resourceVersion` (or the current objects as ADDED when it is
/// absent or "0"), then every change, with BOOKMARKs when asked, until `timeoutSeconds`.
fn watch(
    shared: &Arc<Shared>,
    t: &ResourceType,
    ns: Option<&str>,
    sel: Selector,
    q: &HashMap<String, String>,
) -> Response {
    let c = shared.cluster.clone();
    let mut rx = c.subscribe();
    let t = t.clone();
    let ns = ns.map(String::from);
    let bookmarks = q.get("allowWatchBookmarks").is_some_and(|v| v == "true");
    let initial_end = q.get("sendInitialEvents").is_some_and(|v| v == "true");
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(300));
    let interval = shared.bookmark_interval;
    let since = q.get("resourceVersion").cloned().unwrap_or_default();
    let (tx, out) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    tokio::spawn(async move {
        let bookmark = |rv: u64, end: bool| {
            let mut meta = json!({"resourceVersion": rv.to_string()});
            if end {
                meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
            }
            event_line(
                "BOOKMARK",
                &json!({"kind": t.kind, "apiVersion": t.api_version(), "metadata": meta}),
            )
        };
        let mut last = match since.as_str() {
            "" | "0" => {
                let (items, rv) = c.list(&t, ns.as_deref());
                for o in items.iter().filter(|o| sel.matches(o)) {
                    if tx.send(Ok(event_line("ADDED", o))).await.is_err() {
                        return;
                    }
                }
                if initial_end && tx.send(Ok(bookmark(rv, true))).await.is_err() {
                    return;
                }
                rv
            }
            rv => {
                let Ok(rv) = rv.parse::<u64>() else {
                    let e = ApiError::bad_request(format!("invalid resourceVersion {rv:?}"));
                    let _ = tx.send(Ok(event_line("ERROR", &e.status()))).await;
                    return;
                };
                match c.events_since(rv) {
                    None => {
                        let e = ApiError::gone(format!(
                            "too old resource version: {rv} ({})",
                            c.oldest_resumable()
                        ));
                        let _ = tx.send(Ok(event_line("ERROR", &e.status()))).await;
                        return;
                    }
                    Some(events) => {
                        let mut last = rv;
                        for e in events {
                            last = e.rv;
                            if relevant(&e, &t, ns.as_deref(), &sel)
                                && tx
                                    .send(Ok(event_line(e.type_.as_str(), &e.object)))
                                    .await
                                    .is_err()
                            {
                                return;
                            }
                        }
                        last.max(rv)
                    }
                }
            }
        };
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(interval);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = tick.tick(), if bookmarks => {
                    if tx.send(Ok(bookmark(last, false))).await.is_err() { return; }
                }
                e = rx.recv() => match e {
                    Ok(e) => {
                        if e.rv <= last { continue; }
                        last = e.rv;
                        if relevant(&e, &t, ns.as_deref(), &sel)
                            && tx.send(Ok(event_line(e.type_.as_str(), &e.object))).await.is_err()
                        {
                            return;
                        }
                    }
                    // Fell behind: end the stream; the client re-watches from its last version.
                    Err(_) => return,
                },
                _ = tx.closed() => return,
            }
        }
    });
    let stream =
        futures_util::stream::unfold(
            out,
            |mut rx| async move { rx.recv().await.map(|x| (x, rx)) },
        );
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}
