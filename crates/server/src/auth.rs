//! Authentication, authorization and the browser rules, as one layer over every router.
//!
//! For each request, after routing (so the matched route template is known):
//! 1. The access the route needs comes from `vireo_auth::policy` by method and template. A
//!    route the table does not list is refused to everyone (fail closed); public routes
//!    (`/healthz`, the console's page) pass.
//! 2. A state-changing request (anything but GET/HEAD/OPTIONS) that carries an `Origin` must
//!    come from this server's own origin or one of `auth.allowedOrigins`, and one that says
//!    `Sec-Fetch-Site: cross-site` is refused outright: a web page the operator has open
//!    cannot make their browser act. Credentials are only ever a header (`Authorization`,
//!    or a trusted proxy's `X-Remote-User`), never a cookie, so a cross-site request carries
//!    none of ours anyway; the Origin rule also covers a cookie-authenticating proxy in front.
//! 3. The caller is authenticated: `Authorization: Bearer` with an API token (`vireo_…`,
//!    looked up by SHA-256 in memory) or an OIDC ID token; else a trusted proxy's
//!    `X-Remote-User`, only from its configured sources. None of these: 401.
//! 4. The caller's roles must grant the route's permission: else 403, naming what is missing.
//!
//! The [`Principal`] is put in the request's extensions; handlers record its
//! [`Principal::actor`] on timelines, in events and in evidence. No header names the actor.
//!
//! Tokens live in the store (hashed); the active ones are cached here and reloaded after
//! every change this server makes, so a revoked token stops working with the next request.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use vireo_auth::oidc::{OidcConfig, OidcError, Verifier};
use vireo_auth::policy::{self, Access};
use vireo_auth::remote::{TrustedProxy, TrustedProxyConfig};
use vireo_auth::{token, Permission, Principal, Role, Roles, Via};
use vireo_core::clock::Clock;
use vireo_store::tokens::{TokenError, TokenRecord, Tokens};

/// The file the first start writes the admin token to, in the data dir.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";
/// The name of the token the first start makes.
pub const ADMIN_TOKEN_NAME: &str = "admin";

/// `auth` in `control.yaml`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(default)]
    pub oidc: Option<OidcConfig>,
    #[serde(default)]
    pub trusted_proxy: Option<TrustedProxyConfig>,
    /// Origins (`https://console.example.com`) besides this server's own that may send
    /// state-changing requests, and get CORS headers. Empty: CORS stays closed.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// OFREP evaluation without credentials (applications that cannot hold a token).
    #[serde(default)]
    pub ofrep_public: bool,
}

/// An active token as the layer keeps it.
#[derive(Clone)]
struct ActiveToken {
    name: String,
    role: Role,
    expires_ms: Option<u64>,
}

/// Checks a bearer credential that is not a Vireo token with someone else (Kubernetes mode:
/// TokenReview of a sidecar's projected service-account token). `Ok(Some(user))` for a valid
/// one, `Ok(None)` for one it does not accept, `Err` when it cannot tell now.
pub trait TokenReviewer: Send + Sync + std::fmt::Debug {
    fn review(
        &self,
        credential: String,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Option<String>, String>> + Send>>;
}

/// What the layer checks against.
pub struct AuthState {
    reviewer: Option<Arc<dyn TokenReviewer>>,
    tokens: Mutex<Tokens>,
    /// Active tokens by hash.
    active: RwLock<HashMap<String, ActiveToken>>,
    oidc: Option<Verifier>,
    trusted: Option<TrustedProxy>,
    allowed_origins: Vec<String>,
    ofrep_public: bool,
    /// `https` when the API is served over TLS (the origin a same-origin request names).
    scheme: &'static str,
    clock: Arc<dyn Clock>,
}

/// Why the auth layer could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error("auth: {0}")]
    Config(String),
    #[error("tokens: {0}")]
    Store(#[from] vireo_store::StoreError),
    #[error("{path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl AuthState {
    pub fn new(
        config: &AuthConfig,
        db: &Path,
        http: vireo_http::HttpClient,
        tls: bool,
        clock: Arc<dyn Clock>,
    ) -> Result<AuthState, AuthSetupError> {
        let oidc = config
            .oidc
            .clone()
            .map(|c| Verifier::new(c, http))
            .transpose()
            .map_err(AuthSetupError::Config)?;
        let trusted = config
            .trusted_proxy
            .as_ref()
            .map(TrustedProxy::new)
            .transpose()
            .map_err(AuthSetupError::Config)?;
        for (i, o) in config.allowed_origins.iter().enumerate() {
            if !(o.starts_with("https://") || o.starts_with("http://")) || o.ends_with('/') {
                return Err(AuthSetupError::Config(format!(
                    "allowedOrigins[{i}]: {o:?} is not an origin (scheme://host[:port], no path)"
                )));
            }
        }
        let state = AuthState {
            reviewer: None,
            tokens: Mutex::new(Tokens::open(db)?),
            active: RwLock::new(HashMap::new()),
            oidc,
            trusted,
            allowed_origins: config.allowed_origins.clone(),
            ofrep_public: config.ofrep_public,
            scheme: if tls { "https" } else { "http" },
            clock,
        };
        state.reload()?;
        Ok(state)
    }

    fn tokens(&self) -> std::sync::MutexGuard<'_, Tokens> {
        self.tokens.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Re-reads the active tokens from the store.
    pub fn reload(&self) -> Result<(), vireo_store::StoreError> {
        let now = self.clock.now_ms();
        let mut active = HashMap::new();
        for t in self.tokens().list()? {
            if !t.active(now) {
                continue;
            }
            match t.role.parse::<Role>() {
                Ok(role) => {
                    let token = ActiveToken {
                        name: t.name.clone(),
                        role,
                        expires_ms: t.expires_ms,
                    };
                    active.insert(t.hash.clone(), token);
                }
                Err(e) => tracing::warn!(token = %t.name, "ignoring a stored token: {e}"),
            }
        }
        *self.active.write().unwrap_or_else(|e| e.into_inner()) = active;
        Ok(())
    }

    /// Mints and stores a token; returns its secret (shown once) and its record.
    pub fn issue(
        &self,
        name: &str,
        role: Role,
        expires_ms: Option<u64>,
        created_by: &str,
    ) -> Result<(String, TokenRecord), TokenError> {
        let secret = token::mint().map_err(|e| {
            TokenError::Store(vireo_store::StoreError::Dir {
                path: PathBuf::from("/dev/urandom"),
                source: std::io::Error::other(e.to_string()),
            })
        })?;
        let record = TokenRecord {
            name: name.to_string(),
            role: role.as_str().to_string(),
            hash: token::hash(&secret),
            created_ms: self.clock.now_ms(),
            expires_ms,
            revoked_ms: None,
            created_by: created_by.to_string(),
        };
        self.tokens().create(&record)?;
        self.reload()?;
        tracing::info!(token = %name, role = %role, by = %created_by, "token created");
        Ok((secret, record))
    }

    /// [`AuthState::issue`] under a name used before: the old token of that name (if any) is
    /// revoked and renamed first, so a process that makes its own token at each start (the
    /// demo's proxy) can reuse a data dir.
    pub fn reissue(
        &self,
        name: &str,
        role: Role,
        created_by: &str,
    ) -> Result<(String, TokenRecord), TokenError> {
        self.tokens().retire(name, self.clock.now_ms())?;
        self.issue(name, role, None, created_by)
    }

    pub fn revoke(&self, name: &str, by: &str) -> Result<(), TokenError> {
        self.tokens().revoke(name, self.clock.now_ms())?;
        self.reload()?;
        tracing::info!(token = %name, by = %by, "token revoked");
        Ok(())
    }

    pub fn list(&self) -> Result<Vec<TokenRecord>, vireo_store::StoreError> {
        self.tokens().list()
    }

    /// On first start (no `admin.token` in the data dir), makes the admin token and writes
    /// it there, readable by this user only. Deleting the file and restarting replaces it:
    /// whoever can write the data dir already holds the signing keys. Returns the path when
    /// a token was written.
    pub fn bootstrap(&self, data_dir: &Path) -> Result<Option<PathBuf>, AuthSetupError> {
        let path = data_dir.join(ADMIN_TOKEN_FILE);
        if path.exists() {
            return Ok(None);
        }
        let now = self.clock.now_ms();
        // A token from an earlier first start (its file since deleted) is revoked and renamed,
        // so the record of who held it stays.
        self.tokens().retire(ADMIN_TOKEN_NAME, now)?;
        let (secret, _) = self
            .issue(
                ADMIN_TOKEN_NAME,
                Role::Admin,
                None,
                "vireo serve (first start)",
            )
            .map_err(|e| AuthSetupError::Config(e.to_string()))?;
        // Readable by this user only; a crash leaves no file or the whole token.
        let text = format!("{secret}\n");
        vireo_evidence::keys::write_atomic(&path, text.as_bytes(), 0o600).map_err(|source| {
            AuthSetupError::File {
                path: path.clone(),
                source,
            }
        })?;
        Ok(Some(path))
    }

    /// Service-account tokens are checked with `reviewer` (before OIDC, which would not know
    /// the cluster's issuer); they authenticate sidecars, with the proxy role only.
    pub fn with_reviewer(mut self, reviewer: Option<Arc<dyn TokenReviewer>>) -> AuthState {
        self.reviewer = reviewer;
        self
    }

    /// The principal of an `Authorization: Bearer` credential.
    async fn bearer(&self, credential: &str) -> Result<Principal, Refusal> {
        if token::looks_like_token(credential) {
            let found = self
                .active
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(&token::hash(credential))
                .cloned();
            return match found {
                Some(ActiveToken {
                    name,
                    role,
                    expires_ms,
                }) => {
                    if expires_ms.is_some_and(|e| self.clock.now_ms() >= e) {
                        Err(Refusal::unauthenticated(format!(
                            "token {name:?} has expired: ask an admin for a new one (vireo token create)"
                        )))
                    } else {
                        Ok(Principal::new(name, Via::Token, Roles::of(role)))
                    }
                }
                None => Err(Refusal::unauthenticated(
                    "the token is not valid (unknown, revoked or expired)".into(),
                )),
            };
        }
        if let Some(reviewer) = &self.reviewer {
            match reviewer.review(credential.to_string()).await {
                Ok(Some(user)) => {
                    return Ok(Principal::new(user, Via::ServiceAccount, Roles::of(Role::Proxy)))
                }
                Ok(None) if self.oidc.is_none() => {
                    return Err(Refusal::unauthenticated(
                        "the bearer credential is neither a Vireo token nor a service-account token with the audience \"vireo\" (inject the sidecar, or give it a token with the proxy role)".into(),
                    ))
                }
                Ok(None) => {}
                Err(e) => {
                    return Err(Refusal {
                        status: StatusCode::SERVICE_UNAVAILABLE,
                        message: format!("cannot check the service-account token with the Kubernetes API: {e}"),
                        extra: None,
                    })
                }
            }
        }
        match &self.oidc {
            Some(v) => v.verify(credential).await.map_err(|e| match e {
                OidcError::Rejected(m) => Refusal::unauthenticated(m),
                OidcError::Unavailable(m) => Refusal {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    message: format!("cannot check ID tokens from {}: {m}", v.issuer()),
                    extra: None,
                },
            }),
            None => Err(Refusal::unauthenticated(
                "the bearer credential is not a Vireo token (vireo_…), and no OIDC issuer is configured".into(),
            )),
        }
    }

    async fn authenticate(
        &self,
        headers: &HeaderMap,
        peer: Option<SocketAddr>,
    ) -> Result<Principal, Refusal> {
        if let Some(value) = headers.get(header::AUTHORIZATION) {
            let text = value.to_str().unwrap_or("");
            // The scheme is case-insensitive (RFC 9110 §11.1).
            let credential = text
                .split_once(' ')
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, c)| c.trim())
                .filter(|c| !c.is_empty())
                .ok_or_else(|| {
                    Refusal::unauthenticated("Authorization must be \"Bearer <token>\"".into())
                })?;
            return self.bearer(credential).await;
        }
        if let (Some(trusted), Some(peer)) = (&self.trusted, peer) {
            if let Some(p) = trusted.principal(peer.ip(), headers) {
                return p.map_err(|m| Refusal::forbidden(m, None));
            }
        }
        Err(Refusal::unauthenticated(
            "authentication required: send \"Authorization: Bearer <token>\" (the CLI takes --token, $VIREO_TOKEN or --token-file; the first start wrote an admin token to DATA_DIR/admin.token)".into(),
        ))
    }

    /// Whether `origin` may send state-changing requests to a server reached as `host`.
    fn origin_allowed(&self, origin: &str, host: Option<&str>) -> bool {
        if host.is_some_and(|h| origin == format!("{}://{h}", self.scheme)) {
            return true;
        }
        self.allowed_origins.iter().any(|o| o == origin)
    }
}

/// A refused request: 401, 403 or 503 with a JSON body that says what is missing.
#[derive(Debug)]
pub(crate) struct Refusal {
    status: StatusCode,
    message: String,
    extra: Option<serde_json::Value>,
}

impl Refusal {
    fn unauthenticated(message: String) -> Refusal {
        Refusal {
            status: StatusCode::UNAUTHORIZED,
            message,
            extra: None,
        }
    }
    fn forbidden(message: String, extra: Option<serde_json::Value>) -> Refusal {
        Refusal {
            status: StatusCode::FORBIDDEN,
            message,
            extra,
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({ "error": self.message });
        if let Some(serde_json::Value::Object(extra)) = self.extra {
            for (k, v) in extra {
                body[k] = v;
            }
        }
        let mut r = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"vireo\""),
            );
        }
        r
    }
}

/// The layer (`axum::middleware::from_fn_with_state`).
pub async fn authorize(
    State(auth): State<Arc<AuthState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let method = req.method().clone();
    let Some(template) = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
    else {
        return next.run(req).await; // no route matched: the router's 404, which tells nothing
    };
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let cors = origin
        .as_deref()
        .filter(|o| auth.allowed_origins.iter().any(|a| a == o))
        .map(str::to_string);
    if method == Method::OPTIONS {
        return preflight(cors);
    }
    let access = match policy::lookup(&method, &template) {
        Some(a) => a,
        None if policy::ENDPOINTS.iter().any(|e| e.path == template) => {
            return (
                StatusCode::METHOD_NOT_ALLOWED,
                Json(
                    serde_json::json!({"error": format!("{method} is not allowed on {template}")}),
                ),
            )
                .into_response()
        }
        None => {
            tracing::error!(%method, route = %template, "a route with no entry in the endpoint table was called; refused");
            return Refusal::forbidden(
                format!(
                    "no role may call {method} {template} (the endpoint table does not list it)"
                ),
                None,
            )
            .into_response();
        }
    };
    if access == Access::Public || (access == Access::Ofrep && auth.ofrep_public) {
        return with_cors(next.run(req).await, cors);
    }
    if policy::changes_state(&method) {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok());
        if let Some(o) = &origin {
            if !auth.origin_allowed(o, host) {
                return Refusal::forbidden(
                    format!("cross-origin request from {o} refused: state-changing requests must come from this server's origin or one listed in auth.allowedOrigins"),
                    None,
                )
                .into_response();
            }
        } else if req
            .headers()
            .get("sec-fetch-site")
            .is_some_and(|v| v == "cross-site")
        {
            return Refusal::forbidden("cross-site request refused".into(), None).into_response();
        }
    }
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let principal = match auth.authenticate(req.headers(), peer).await {
        Ok(p) => p,
        Err(refusal) => return with_cors(refusal.into_response(), cors),
    };
    let needed = match access {
        Access::Needs(p) => Some(p),
        Access::Ofrep => Some(Permission::Read),
        Access::Authenticated | Access::Public => None,
    };
    if let Some(p) = needed {
        if !principal.may(p) {
            let granted_by: Vec<&str> = p.granted_by().map(Role::as_str).collect();
            let roles: Vec<&str> = principal.roles.iter().map(Role::as_str).collect();
            return with_cors(
                Refusal::forbidden(
                    format!(
                        "{} ({}) may not {method} {template}: it needs the {p} permission, which {} grant",
                        principal.actor(),
                        roles.join(", "),
                        granted_by.join(" and ")
                    ),
                    Some(serde_json::json!({"needs": p, "grantedBy": granted_by, "roles": roles})),
                )
                .into_response(),
                cors,
            );
        }
    }
    req.extensions_mut().insert(principal);
    with_cors(next.run(req).await, cors)
}

fn preflight(cors: Option<String>) -> Response {
    match cors {
        Some(origin) => {
            let mut r = StatusCode::NO_CONTENT.into_response();
            let h = r.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&origin) {
                h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
            }
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, POST, DELETE"),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("authorization, content-type"),
            );
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("600"),
            );
            h.insert(header::VARY, HeaderValue::from_static("origin"));
            r
        }
        None => Refusal::forbidden(
            "CORS is closed: list the origin in auth.allowedOrigins".into(),
            None,
        )
        .into_response(),
    }
}

fn with_cors(mut r: Response, cors: Option<String>) -> Response {
    if let Some(v) = cors.and_then(|o| HeaderValue::from_str(&o).ok()) {
        r.headers_mut()
            .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        r.headers_mut()
            .insert(header::VARY, HeaderValue::from_static("origin"));
    }
    r
}
