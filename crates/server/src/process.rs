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
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use vireo_types::config::Route;

use vireo_core::spec::SpecError;
use vireo_engine::driver::{Driver, Handle, ProvenanceTrust};
use vireo_engine::workload::Workloads;
pub use vireo_evidence::provenance::TrustConfig;
use vireo_store::{Store, StoreError};

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

/// Opens the store, starts the driver and serves the API on `listener`. Returns the driver's
/// handle; the API runs until the runtime stops.
pub async fn start(
    listener: tokio::net::TcpListener,
    data_dir: &Path,
    workloads: Arc<dyn Workloads>,
    options: Options,
) -> Result<Handle, StartError> {
    let trust = options.provenance.as_ref().map(load_trust).transpose()?;
    let signer = vireo_evidence::Signer::open(data_dir, options.signing_key.as_deref())?;
    let store = Store::open(data_dir)?.with_signer(Arc::new(signer));
    let db = store.path().to_path_buf();
    let handle = Driver::start(
        store,
        vireo_engine::driver::Seams::embedded(workloads),
        options.static_routes,
        trust,
    )?;
    if let Some(url) = options.event_sink {
        let refused = |reason: String| StartError::EventSink {
            url: url.clone(),
            reason,
        };
        let uri = url
            .parse::<http::Uri>()
            .map_err(|e| refused(e.to_string()))?;
        if uri.scheme_str() != Some("http") {
            return Err(refused(
                "only http:// sinks are supported (put a TLS proxy in front for https)".into(),
            ));
        }
        tracing::info!(sink = %url, "pushing events");
        tokio::spawn(vireo_engine::sink::run_sink(db, url));
    }
    let api = handle.clone();
    tokio::spawn(async move {
        if let Err(e) = crate::serve(listener, api).await {
            tracing::error!("API server stopped: {e}");
        }
    });
    Ok(handle)
}
