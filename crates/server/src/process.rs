//! `vireo serve`: the control plane process (store, driver, API), and its config file.
//!
//! `control.yaml` (all optional; flags override it):
//! ```yaml
//! listen: 127.0.0.1:8080
//! dataDir: ./vireo-data
//! routes: []        # static proxy routes, published beside the rollouts' routes
//! signingKey: ./keys/signing.pem   # default <dataDir>/keys/signing.pem, made on first start
//! eventSink: http://127.0.0.1:9999/events   # push every event there (at least once)
//! provenance:                      # set: the gate requires SLSA provenance for canary images
//!   trustedKeys: [./builder.pub]   #   Ed25519 SPKI PEM of the builders that sign it
//!   builders: [https://ci.example.com/builder]   # runDetails.builder.id allow-list
//! auth:                            # API tokens always work; these add other ways in
//!   oidc: { issuer: https://idp.example.com, audience: vireo, usernameClaim: email,
//!           rolesClaim: groups, roles: { release-eng: operator, sre: viewer } }
//!   trustedProxy: { sources: [10.0.0.5/32], roles: { admins: admin }, defaultRole: viewer }
//!   allowedOrigins: [https://console.example.com]   # CORS and cross-origin actions
//!   ofrepPublic: false             # true: OFREP evaluation needs no credentials
//! caFile: ./ca.pem                 # trusted for outbound https instead of the system's roots
//! headerReadTimeout: 30s           # slowloris: a request head must arrive within this
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use vireo_types::config::Route;

use vireo_core::spec::SpecError;
use vireo_engine::driver::{Driver, Handle, ProvenanceTrust};
use vireo_engine::workload::Workloads;
pub use vireo_evidence::provenance::TrustConfig;
use vireo_store::{Store, StoreError};

use crate::auth::{AuthConfig, AuthState};
pub use crate::tls::TlsFiles;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATA_DIR: &str = "./vireo-data";

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ControlConfig {
    #[serde(default)]
    pub listen: Option<String>,
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    #[serde(default)]
    pub routes: Vec<Route>,
    /// A PKCS#8 PEM Ed25519 key to sign evidence with (default: `<dataDir>/keys/signing.pem`,
    /// created on first start).
    #[serde(default)]
    pub signing_key: Option<PathBuf>,
    /// The provenance gate's trust (absent: provenance is not required).
    #[serde(default)]
    pub provenance: Option<TrustConfig>,
    /// Push every event to this URL (`application/cloudevents-batch+json`).
    #[serde(default)]
    pub event_sink: Option<String>,
    /// Who may call the API besides API-token holders, and the browser rules.
    #[serde(default)]
    pub auth: AuthConfig,
    /// CA certificates (PEM) trusted for outbound https — Prometheus, the event sink,
    /// schedule checks, the OIDC issuer — instead of the system's roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// How long a client may take to send a request head (slowloris), and how long an idle
    /// keep-alive connection stays open [default: 30s].
    #[serde(default, with = "humantime_serde")]
    pub header_read_timeout: Option<Duration>,
}

/// What [`start`] runs with besides the listener and the data dir.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Static proxy routes, published beside the rollouts' routes.
    pub static_routes: Vec<Route>,
    /// A PKCS#8 PEM Ed25519 signing key to use instead of `<dataDir>/keys/signing.pem`.
    pub signing_key: Option<PathBuf>,
    pub provenance: Option<TrustConfig>,
    /// `--event-sink URL`.
    pub event_sink: Option<String>,
    pub auth: AuthConfig,
    /// Serve the API over TLS.
    pub tls: Option<TlsChoice>,
    /// Trust only these CAs for outbound https (`caFile`).
    pub ca_file: Option<PathBuf>,
    /// `headerReadTimeout` ([`crate::HEADER_READ_TIMEOUT`] when `None`).
    pub header_read_timeout: Option<Duration>,
    /// Also moves traffic elsewhere (Kubernetes mode: Gateway API HTTPRoutes).
    pub traffic_layer: Option<vireo_engine::driver::TrafficLayer>,
    /// Checks service-account tokens (Kubernetes mode: TokenReview).
    pub token_reviewer: Option<Arc<dyn crate::auth::TokenReviewer>>,
}

/// `--tls-cert/--tls-key` or `--tls auto`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsChoice {
    Files(TlsFiles),
    Auto,
}

/// A started control plane.
pub struct Control {
    /// The driver's handle.
    pub handle: Handle,
    /// Tokens and the checks (the demo mints its proxy's token here).
    pub auth: Arc<AuthState>,
    /// `DATA_DIR/admin.token`.
    pub admin_token: PathBuf,
    /// Whether this start wrote it (the first start).
    pub admin_token_created: bool,
    /// With `--tls auto`, the CA certificate clients trust.
    pub tls_ca: Option<PathBuf>,
}

impl Control {
    /// The admin token's text, from its file.
    pub fn read_admin_token(&self) -> std::io::Result<String> {
        Ok(std::fs::read_to_string(&self.admin_token)?
            .trim()
            .to_string())
    }
}

/// Why `vireo serve` (or the demo's control plane) could not start: each names the setting
/// or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("provenance.trustedKeys: list at least one builder key (SPKI PEM file)")]
    NoTrustedKeys,
    #[error("provenance.builders: list at least one builder id")]
    NoBuilders,
    #[error("provenance.trustedKeys: {path}: {reason}")]
    TrustedKey { path: PathBuf, reason: String },
    #[error("the control plane's keys: {0}")]
    Keys(#[from] vireo_evidence::keys::KeyError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("--event-sink {url:?}: {reason}")]
    EventSink { url: String, reason: String },
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthSetupError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("caFile: {0}")]
    Ca(vireo_http::HttpError),
    #[error("the listener: {0}")]
    Listener(std::io::Error),
}

/// Reads the provenance gate's trusted keys (each must be an Ed25519 SPKI PEM).
pub fn load_trust(config: &TrustConfig) -> Result<ProvenanceTrust, StartError> {
    if config.trusted_keys.is_empty() {
        return Err(StartError::NoTrustedKeys);
    }
    if config.builders.is_empty() {
        return Err(StartError::NoBuilders);
    }
    let mut keys_pem = Vec::new();
    for path in &config.trusted_keys {
        let key_error = |reason: String| StartError::TrustedKey {
            path: path.clone(),
            reason,
        };
        let pem = std::fs::read_to_string(path).map_err(|e| key_error(e.to_string()))?;
        vireo_evidence::keys::PublicKey::from_pem(&pem).map_err(|e| key_error(e.to_string()))?;
        keys_pem.push(pem);
    }
    Ok(ProvenanceTrust {
        keys_pem,
        builders: config.builders.clone(),
    })
}

impl ControlConfig {
    pub fn load(path: &Path) -> Result<ControlConfig, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let c: ControlConfig = vireo_types::config::parse_document(&text)
            .map_err(|e: SpecError| format!("{}: {e}", path.display()))?;
        // The static routes must be a table proxies accept: compile them as a proxy would.
        vireo_engine::driver::proxy_accepts(&c.routes)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(c)
    }
}

/// Opens the store, starts the driver and serves the API on `listener`, behind the auth layer
/// (on first start, writing the admin token). The API runs until the runtime stops.
pub async fn start(
    listener: tokio::net::TcpListener,
    data_dir: &Path,
    workloads: Arc<dyn Workloads>,
    options: Options,
) -> Result<Control, StartError> {
    let trust = options.provenance.as_ref().map(load_trust).transpose()?;
    let outbound =
        vireo_http::HttpClient::with_ca(Duration::from_secs(5), options.ca_file.as_deref())
            .map_err(StartError::Ca)?;
    vireo_engine::prometheus::set_outbound_client(outbound.clone());
    let local = listener.local_addr().map_err(StartError::Listener)?;
    let (tls_files, tls_ca) = match options.tls.clone() {
        None => (None, None),
        Some(TlsChoice::Files(f)) => (Some(f), None),
        Some(TlsChoice::Auto) => {
            let (f, ca) = crate::tls::auto(data_dir, local)?;
            (Some(f), Some(ca))
        }
    };
    let tls = match tls_files {
        Some(files) => {
            let reloading = crate::tls::Reloading::open(files)?;
            tokio::spawn(reloading.clone().watch());
            Some(Arc::new(reloading.server_config()))
        }
        None => None,
    };
    let signer = vireo_evidence::Signer::open(data_dir, options.signing_key.as_deref())?;
    let store = Store::open(data_dir)?.with_signer(Arc::new(signer));
    let db = store.path().to_path_buf();
    let mut seams = vireo_engine::driver::Seams::embedded(workloads);
    seams.traffic_layer = options.traffic_layer.clone();
    let handle = Driver::start(store, seams, options.static_routes, trust)?;
    if let Some(url) = options.event_sink {
        let refused = |reason: String| StartError::EventSink {
            url: url.clone(),
            reason,
        };
        let uri = url
            .parse::<http::Uri>()
            .map_err(|e| refused(e.to_string()))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            return Err(refused("use an http:// or https:// URL".into()));
        }
        tracing::info!(sink = %url, "pushing events");
        let status = Arc::new(vireo_engine::sink::SinkStatus::new(&url));
        let _ = handle.shared.sink.set(status.clone());
        tokio::spawn(vireo_engine::sink::run_sink(
            db.clone(),
            status,
            handle.shared.clock.clone(),
        ));
    }
    let auth = Arc::new(
        AuthState::new(
            &options.auth,
            &db,
            outbound,
            tls.is_some(),
            handle.shared.clock.clone(),
        )?
        .with_reviewer(options.token_reviewer.clone()),
    );
    let created = auth.bootstrap(data_dir)?;
    let admin_token = data_dir.join(crate::auth::ADMIN_TOKEN_FILE);
    match &created {
        Some(path) => {
            tracing::info!(path = %path.display(), "first start: wrote the admin token (readable by this user only)")
        }
        None => tracing::info!(path = %admin_token.display(), "the admin token is in"),
    }
    match (&tls, local.ip().is_loopback()) {
        (Some(_), _) => tracing::info!(%local, "serving the API over TLS"),
        (None, true) => tracing::info!(%local, "serving the API in plaintext, on loopback only"),
        (None, false) => {
            tracing::warn!(%local, "serving the API in PLAINTEXT on a non-loopback address: tokens cross the network unencrypted (use --tls auto or --tls-cert/--tls-key)")
        }
    }
    let (api, layer) = (handle.clone(), auth.clone());
    let head_timeout = options
        .header_read_timeout
        .unwrap_or(crate::HEADER_READ_TIMEOUT);
    tokio::spawn(async move {
        if let Err(e) = crate::serve(listener, api, layer, tls, head_timeout).await {
            tracing::error!("API server stopped: {e}");
        }
    });
    Ok(Control {
        handle,
        auth,
        admin_token,
        admin_token_created: created.is_some(),
        tls_ca,
    })
}
