//! The sidecar-injection webhook: AdmissionReview v1 over HTTPS (`POST /inject`), answered
//! with [`vireo_k8s_api::inject`]'s decision and patch. It reads the pod's namespace labels
//! from the API (the opt-in may be there) and never refuses a pod: a webhook failure must not
//! block workloads, and the configuration says `failurePolicy: Ignore` too; `vireo check`-style
//! auditing finds pods that should have been injected and were not.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use serde_json::{json, Value};
use vireo_k8s_api::inject::{self, Decision, Options};

/// Largest AdmissionReview read (the API server's own request limit).
pub const MAX_REVIEW: usize = 3 << 20;

/// The response to one AdmissionReview (`request` as the API server sent it).
pub fn respond(request: &Value, namespace_labels: &Value, opts: &Options) -> Value {
    respond_with(request, namespace_labels, opts).0
}

/// [`respond`], and the decision it answered.
pub fn respond_with(
    request: &Value,
    namespace_labels: &Value,
    opts: &Options,
) -> (Value, Decision) {
    let uid = request["uid"].clone();
    let pod = &request["object"];
    let decision = inject::decide(pod, namespace_labels, opts);
    let ops = inject::patch(pod, &decision, opts);
    let mut response = json!({"uid": uid, "allowed": true});
    if !ops.is_empty() {
        let patch = serde_json::to_vec(&ops).unwrap_or_default();
        response["patchType"] = json!("JSONPatch");
        response["patch"] = json!(base64::engine::general_purpose::STANDARD.encode(patch));
    }
    let name = pod["metadata"]["name"]
        .as_str()
        .or(pod["metadata"]["generateName"].as_str())
        .unwrap_or_default();
    match &decision {
        Decision::Inject(how) => {
            tracing::info!(namespace = %request["namespace"], pod = name, interception = ?how, "injected the sidecar")
        }
        Decision::Skip(Some(reason)) => {
            tracing::info!(namespace = %request["namespace"], pod = name, "not injected: {reason}")
        }
        Decision::Skip(None) => {
            tracing::debug!(namespace = %request["namespace"], pod = name, "already injected")
        }
    }
    let review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response});
    (review, decision)
}

/// Events being sent at most at once; beyond it (a burst of pods against a slow Events API) a
/// skip is only logged, so neither tasks nor memory grow without bound.
const EVENTS_IN_FLIGHT: usize = 64;
/// How long one Event may take to be recorded.
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

static EVENT_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(EVENTS_IN_FLIGHT);

/// An Event on the pod saying why it was not injected. The pod does not exist yet (admission
/// comes first), so the Event names it without a uid, as the API server allows. Sent off the
/// admission's path: a slow Events API must not slow pod creation.
fn skip_event(client: kube::Client, ns: &str, pod: &Value, reason: &str) {
    let Ok(slot) = EVENT_SLOTS.try_acquire() else {
        tracing::debug!(
            namespace = ns,
            "too many Events in flight; the skip is only logged"
        );
        return;
    };
    use k8s_openapi::api::core::v1::Event;
    let name = pod["metadata"]["name"]
        .as_str()
        .or(pod["metadata"]["generateName"].as_str())
        .unwrap_or("pod")
        .to_string();
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let event = json!({
        "metadata": {"generateName": format!("{}.", name.trim_end_matches('-')), "namespace": ns},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": name, "namespace": ns},
        "reason": "InjectionSkipped",
        "message": format!("Vireo's sidecar was not injected: {reason}"),
        "type": "Normal",
        "source": {"component": "vireo-injector"},
        "reportingComponent": "vireo.dev/injector",
        "reportingInstance": std::env::var("POD_NAME").unwrap_or_else(|_| "vireo-injector".into()),
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
    });
    let Ok(event) = serde_json::from_value::<Event>(event) else {
        return;
    };
    let ns = ns.to_string();
    tokio::spawn(async move {
        // Held until the Event is recorded or given up on.
        let _slot = slot;
        let api: Api<Event> = Api::namespaced(client, &ns);
        match tokio::time::timeout(EVENT_TIMEOUT, api.create(&Default::default(), &event)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::debug!(namespace = %ns, "recording the skip as an Event: {e}"),
            Err(_) => tracing::debug!(namespace = %ns, "recording the skip as an Event timed out"),
        }
    });
}

fn reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(
        serde_json::to_vec(&body).unwrap_or_default(),
    )));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

async fn handle(
    req: Request<hyper::body::Incoming>,
    client: kube::Client,
    opts: Arc<Options>,
) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => return reply(StatusCode::OK, json!({"ok": true})),
        (&Method::POST, "/inject") => {}
        _ => {
            return reply(
                StatusCode::NOT_FOUND,
                json!({"error": "POST /inject (AdmissionReview v1) or GET /healthz"}),
            )
        }
    }
    let body = match Limited::new(req.into_body(), MAX_REVIEW).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return reply(
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({"error": format!("reading the AdmissionReview: {e}")}),
            )
        }
    };
    let review: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return reply(
                StatusCode::BAD_REQUEST,
                json!({"error": format!("not an AdmissionReview: {e}")}),
            )
        }
    };
    let request = &review["request"];
    if request["kind"]["kind"] != "Pod" {
        return reply(
            StatusCode::OK,
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "response": {"uid": request["uid"], "allowed": true}}),
        );
    }
    let ns = request["namespace"].as_str().unwrap_or("default");
    let labels = match Api::<Namespace>::all(client.clone()).get_opt(ns).await {
        Ok(Some(n)) => {
            serde_json::to_value(n.metadata.labels.unwrap_or_default()).unwrap_or_default()
        }
        Ok(None) => Value::Null,
        Err(e) => {
            // Without the namespace the opt-in is unknown: inject only on the pod's own say.
            tracing::warn!(namespace = ns, "reading the namespace: {e}");
            Value::Null
        }
    };
    let (review, decision) = respond_with(request, &labels, &opts);
    if let Decision::Skip(Some(reason)) = &decision {
        // Not for a dry run (nothing is created), nor for the cluster's pods that never
        // opted in or whose namespace opted out (see `inject::reason_is_news`).
        if request["dryRun"] != true && inject::reason_is_news(reason) {
            skip_event(client, ns, &request["object"], reason);
        }
    }
    reply(StatusCode::OK, review)
}

/// Serves the webhook over TLS on `listener` until the runtime stops.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    client: kube::Client,
    opts: Options,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let opts = Arc::new(opts);
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                tracing::warn!("accepting a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (acceptor, client, opts) = (acceptor.clone(), client.clone(), opts.clone());
        tokio::spawn(async move {
            let Ok(Ok(stream)) =
                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
            else {
                return;
            };
            let service = hyper::service::service_fn(move |req| {
                let (client, opts) = (client.clone(), opts.clone());
                async move { Ok::<_, std::convert::Infallible>(handle(req, client, opts).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_response_carries_the_uid_and_a_base64_json_patch() {
        let request = json!({"uid": "u-1", "namespace": "shop", "kind": {"kind": "Pod"},
            "object": {"metadata": {"name": "web"}, "spec": {"containers": [{"name": "web"}]}}});
        let r = respond(
            &request,
            &json!({"vireo.dev/inject": "enabled"}),
            &Options::default(),
        );
        assert_eq!(r["response"]["uid"], "u-1");
        assert_eq!(r["response"]["allowed"], true);
        let patch = base64::engine::general_purpose::STANDARD
            .decode(r["response"]["patch"].as_str().unwrap())
            .unwrap();
        let ops: Vec<Value> = serde_json::from_slice(&patch).unwrap();
        assert!(ops.iter().any(|o| o["path"] == "/spec/initContainers"));
        let none = respond(&request, &json!({}), &Options::default());
        assert!(
            none["response"]["patch"].is_string(),
            "a skipped pod still gets its reason"
        );
    }
}
