//! A Kubernetes API server simulator, for Vireo's tests and for trying the controller by hand.
//!
//! No real API server can run on the machines Vireo is built on, so the repository carries
//! this one as a test fixture. It speaks enough of the API that the real `kubectl` (1.36) and
//! kube-rs clients work against it unchanged: `vireo-kubesim --kubeconfig FILE` serves on
//! loopback and writes a kubeconfig.
//!
//! What it emulates:
//! - discovery (`/api`, `/apis`, legacy APIResourceLists), built-in resources and any
//!   CustomResourceDefinition created through it, with its structural schema (types,
//!   required, ranges, enums, pruning; unknown fields refused under `fieldValidation=Strict`);
//! - get, list and watch with `resourceVersion` (history of [`store::HISTORY`] events;
//!   older gives `410 Gone`), bookmarks, label and field selectors, server-side tables with a
//!   CRD's printer columns;
//! - create (generateName, namespace checks), update with `409 Conflict` on a stale
//!   resourceVersion, JSON, merge, strategic-merge and apply patches, the status and scale
//!   subresources, `generation`;
//! - delete with finalizers (`deletionTimestamp`, removal when the last finalizer goes) and
//!   background garbage collection through `ownerReferences`;
//! - service-account TokenRequest and TokenReview;
//! - ReplicaSets, a kubelet, EndpointSlices and (optionally) kube-proxy, in
//!   [`controllers`];
//! - mutating admission webhooks for pods created through the API, called over HTTPS
//!   ([`admission`]; pods the simulated ReplicaSet controller makes skip admission).
//!
//! What it does not emulate (see also each module): authentication beyond one bearer token,
//! RBAC (every request is allowed), validating admission, CEL validation and
//! defaulting, server-side apply's field ownership (`managedFields`; apply is a merge),
//! strategic merge's patch directives (lists of named objects merge by name, others are
//! replaced), foreground deletion and orphaning, pagination (`limit` is ignored: one page),
//! protobuf bodies (kubectl's imperative `create` of built-in kinds sends protobuf and gets a
//! 415; `kubectl apply` sends JSON), OpenAPI documents (kubectl falls back to no client-side schema), aggregated
//! discovery (kubectl falls back to legacy), multiple versions of one resource,
//! resourceVersion semantics on list beyond "the latest", the wide (`-o wide`, priority 1)
//! columns of built-in kinds' tables, and a kubelet's container lifecycle (init containers,
//! probes, postStart hooks: a simulated pod becomes ready after a delay, whatever its spec).

pub mod admission;
pub mod controllers;
pub mod error;
mod http;
pub mod kubectl;
pub mod registry;
pub mod schema;
pub mod selector;
pub mod store;
pub mod table;
mod tls;
pub mod tokens;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde_json::Value;

pub use error::ApiError;
pub use store::Cluster;

type AdmitPod = dyn Fn(&str, Value) -> BoxFuture<'static, Result<Value, ApiError>> + Send + Sync;
type CreateOnly = dyn Fn(&registry::ResourceType, &Value) -> Result<Value, ApiError> + Send + Sync;
type TokenRequest = dyn Fn(&str, &str, &Value) -> Result<Value, ApiError> + Send + Sync;

/// What the simulator hands to code outside the store.
pub struct Hooks {
    /// Pod creation's admission chain (the injection webhook, in Vireo's tests).
    pub admit_pod: Box<AdmitPod>,
    /// Create-only resources (TokenReview).
    pub create_only: Box<CreateOnly>,
    /// `POST …/serviceaccounts/NAME/token`.
    pub token_request: Box<TokenRequest>,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub listen: SocketAddr,
    /// The bearer token clients must send; the kubeconfig carries it.
    pub token: String,
    pub bookmark_interval: Duration,
    /// The simulated ReplicaSet, kubelet and EndpointSlice controllers.
    pub controllers: controllers::ControllerOptions,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            token: "kubesim-admin".into(),
            bookmark_interval: Duration::from_secs(5),
            controllers: Default::default(),
        }
    }
}

/// A running simulator.
pub struct Running {
    pub addr: SocketAddr,
    pub cluster: Arc<Cluster>,
    pub tokens: Arc<tokens::Tokens>,
    pub token: String,
    /// The CA that signed the server's certificate (PEM).
    pub ca_pem: String,
    task: tokio::task::JoinHandle<()>,
    controllers: tokio::task::JoinHandle<()>,
}

impl Running {
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// A kubeconfig for this simulator (context `kubesim`, namespace `default`).
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: kubesim\n  cluster:\n    server: {}\n    certificate-authority-data: {}\nusers:\n- name: kubesim-admin\n  user:\n    token: {}\ncontexts:\n- name: kubesim\n  context:\n    cluster: kubesim\n    user: kubesim-admin\n    namespace: default\ncurrent-context: kubesim\n",
            self.url(),
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &self.ca_pem),
            self.token
        )
    }

    pub fn write_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
        self.controllers.abort();
    }
}

/// Starts the simulator on `opts.listen`.
pub async fn start(opts: Options) -> std::io::Result<Running> {
    let cluster = Cluster::new();
    let tokens = Arc::new(tokens::Tokens::default());
    let (review, request) = (tokens.clone(), tokens.clone());
    let hooks = Hooks {
        admit_pod: {
            let cluster = cluster.clone();
            Box::new(move |ns, pod| {
                Box::pin(admission::admit_pod(cluster.clone(), ns.to_string(), pod))
            })
        },
        create_only: Box::new(move |t, body| match t.kind.as_str() {
            "TokenReview" => Ok(review.review(body)),
            other => Err(ApiError::new(
                405,
                "MethodNotAllowed",
                format!("{other} is not served"),
            )),
        }),
        token_request: Box::new(move |ns, sa, body| request.request(ns, sa, body)),
    };
    let shared = Arc::new(http::Shared {
        cluster: cluster.clone(),
        token: opts.token.clone(),
        bookmark_interval: opts.bookmark_interval,
        hooks,
    });
    let made = tls::make().map_err(std::io::Error::other)?;
    let listener = tokio::net::TcpListener::bind(opts.listen).await?;
    let addr = listener.local_addr()?;
    let app = http::router(shared);
    let task = tokio::spawn(serve(listener, app, made.config));
    if let Some(first) = opts.controllers.service_proxy {
        cluster.set_first_cluster_ip(first);
    }
    let controllers = tokio::spawn(controllers::run(cluster.clone(), opts.controllers.clone()));
    Ok(Running {
        controllers,
        addr,
        cluster,
        tokens,
        token: opts.token,
        ca_pem: made.ca_pem,
        task,
    })
}

/// HTTPS (HTTP/2 or HTTP/1.1 by ALPN), one task per connection.
async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    tls: Arc<rustls::ServerConfig>,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                tracing::warn!("kubesim: accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await;
        });
    }
}
