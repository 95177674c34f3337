//! OIDC ID tokens from one configured issuer.
//!
//! The issuer's keys come from its discovery document (`ISSUER/.well-known/openid-configuration`,
//! whose `issuer` must be the configured one) and the `jwks_uri` it names. They are cached;
//! a token signed with a key id the cache does not have triggers a re-fetch (key rotation),
//! at most once per [`REFETCH_AFTER`] so a stream of made-up key ids cannot make us hammer
//! the issuer, and the cache is refreshed anyway once it is older than [`MAX_AGE`] (a key the
//! issuer withdrew stops working). Checked: the signature with an asymmetric algorithm only
//! (`HS*` would let a public key be used as a shared secret), `iss`, `aud` and `exp` (all
//! required), `nbf` when present, 30 s of clock leeway.
//!
//! Claims map to roles: `rolesClaim` (default `groups`, a string or a list of strings) through
//! `roles`; the name on timelines is `usernameClaim` (default `sub`).

use std::collections::BTreeMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;
use vireo_http::{HttpClient, Limits};

use crate::principal::{Principal, Via};
use crate::role::{Role, Roles};

/// The cache is refreshed when older than this.
pub const MAX_AGE: Duration = Duration::from_secs(600);
/// An unknown key id re-fetches the keys at most this often.
pub const REFETCH_AFTER: Duration = Duration::from_secs(10);
const FETCH: Limits = Limits::new(Duration::from_secs(5), 1 << 20);
const LEEWAY_S: u64 = 30;

/// `auth.oidc` in `control.yaml`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OidcConfig {
    /// The issuer URL, exactly as tokens' `iss` spells it.
    pub issuer: String,
    /// The audience tokens must be for (`aud`): the client id Vireo is registered as.
    pub audience: String,
    /// The claim that names the user (default `sub`; `email` is common).
    #[serde(default = "default_username_claim")]
    pub username_claim: String,
    /// The claim that lists the user's groups (default `groups`).
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
    /// Group (a value of `rolesClaim`) → role.
    #[serde(default)]
    pub roles: BTreeMap<String, Role>,
    /// The role of a user none of whose groups is mapped (absent: refused).
    #[serde(default)]
    pub default_role: Option<Role>,
    /// The JWKS URL, when the issuer has no discovery document.
    #[serde(default)]
    pub jwks_uri: Option<String>,
}

fn default_username_claim() -> String {
    "sub".into()
}
fn default_roles_claim() -> String {
    "groups".into()
}

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OidcError {
    /// The token is not acceptable (401): the message says which check failed.
    #[error("{0}")]
    Rejected(String),
    /// The issuer's keys cannot be had (503): nobody can be checked right now.
    #[error("cannot check ID tokens: {0}")]
    Unavailable(String),
}

struct Keys {
    keys: Vec<(Option<String>, DecodingKey)>,
    fetched: Option<Instant>,
    attempted: Option<Instant>,
}

pub struct Verifier {
    config: OidcConfig,
    client: HttpClient,
    keys: RwLock<Keys>,
    /// One fetch at a time; others wait for its result.
    fetching: tokio::sync::Mutex<()>,
}

/// The algorithms accepted: asymmetric ones only.
fn accepted(alg: Algorithm) -> bool {
    use Algorithm::*;
    matches!(
        alg,
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 | ES256 | ES384 | EdDSA
    )
}

impl Verifier {
    pub fn new(config: OidcConfig, client: HttpClient) -> Result<Verifier, String> {
        if !(config.issuer.starts_with("https://") || config.issuer.starts_with("http://")) {
            return Err(format!(
                "auth.oidc.issuer: {:?} is not an http(s) URL",
                config.issuer
            ));
        }
        if config.audience.is_empty() {
            return Err("auth.oidc.audience: name the client id tokens are issued for".into());
        }
        Ok(Verifier {
            config,
            client,
            keys: RwLock::new(Keys {
                keys: Vec::new(),
                fetched: None,
                attempted: None,
            }),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    /// Checks an ID token and maps it to a principal.
    pub async fn verify(&self, jwt: &str) -> Result<Principal, OidcError> {
        let header = jsonwebtoken::decode_header(jwt)
            .map_err(|e| OidcError::Rejected(format!("not a JWT: {e}")))?;
        if !accepted(header.alg) {
            return Err(OidcError::Rejected(format!(
                "ID tokens signed with {:?} are not accepted (use an asymmetric algorithm: RS*, PS*, ES256/384, EdDSA)",
                header.alg
            )));
        }
        let kid = header.kid.as_deref();
        let key = match self.key(kid, false) {
            Some(k) => k,
            None => {
                self.refresh(kid).await?;
                self.key(kid, true).ok_or_else(|| {
                    OidcError::Rejected(format!(
                        "the token's signing key (kid {:?}) is not in {}'s JWKS",
                        kid.unwrap_or(""),
                        self.config.issuer
                    ))
                })?
            }
        };
        let mut v = Validation::new(header.alg);
        v.set_issuer(&[&self.config.issuer]);
        v.set_audience(&[&self.config.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        v.leeway = LEEWAY_S;
        v.validate_nbf = true;
        let data = jsonwebtoken::decode::<Value>(jwt, &key, &v).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            OidcError::Rejected(match e.kind() {
                K::ExpiredSignature => "the ID token has expired (exp)".into(),
                K::ImmatureSignature => "the ID token is not valid yet (nbf)".into(),
                K::InvalidAudience => {
                    format!("the ID token is not for {:?} (aud)", self.config.audience)
                }
                K::InvalidIssuer => {
                    format!("the ID token is not from {} (iss)", self.config.issuer)
                }
                K::InvalidSignature => "the ID token's signature does not verify".into(),
                K::MissingRequiredClaim(c) => format!("the ID token has no {c:?} claim"),
                other => format!("the ID token is not acceptable: {other:?}"),
            })
        })?;
        self.principal(&data.claims)
    }

    fn principal(&self, claims: &Value) -> Result<Principal, OidcError> {
        let c = &self.config;
        let name = claims
            .get(&c.username_claim)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty() && s.len() <= 256)
            .ok_or_else(|| {
                OidcError::Rejected(format!(
                    "the ID token has no string claim {:?} (auth.oidc.usernameClaim)",
                    c.username_claim
                ))
            })?;
        let groups: Vec<&str> = match claims.get(&c.roles_claim) {
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let mut roles: Roles = groups
            .iter()
            .filter_map(|g| c.roles.get(*g).copied())
            .collect();
        if roles.is_empty() {
            roles = c.default_role.map(Roles::of).ok_or_else(|| {
                OidcError::Rejected(format!(
                    "{name:?} has no group in {:?} that auth.oidc.roles maps to a role",
                    c.roles_claim
                ))
            })?;
        }
        Ok(Principal::new(name, Via::Oidc, roles))
    }

    /// The cached key for `kid` (the only key, when the token names none). Unless `stale_ok`,
    /// a cache older than [`MAX_AGE`] counts as empty.
    fn key(&self, kid: Option<&str>, stale_ok: bool) -> Option<DecodingKey> {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        let fresh = keys.fetched.is_some_and(|t| t.elapsed() < MAX_AGE);
        if !fresh && !stale_ok {
            return None;
        }
        match kid {
            Some(kid) => keys
                .keys
                .iter()
                .find(|(k, _)| k.as_deref() == Some(kid))
                .map(|(_, key)| key.clone()),
            None if keys.keys.len() == 1 => Some(keys.keys[0].1.clone()),
            None => None,
        }
    }

    /// Re-fetches the keys unless another caller just did (or tried).
    async fn refresh(&self, kid: Option<&str>) -> Result<(), OidcError> {
        let _one = self.fetching.lock().await;
        {
            let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
            let stale = keys.fetched.is_none_or(|t| t.elapsed() >= MAX_AGE);
            let recent = keys.attempted.is_some_and(|t| t.elapsed() < REFETCH_AFTER);
            if recent && !stale {
                return Ok(()); // someone fetched a moment ago: the answer is what it is
            }
        }
        self.keys
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .attempted = Some(Instant::now());
        let fetched = self.fetch().await;
        let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
        match fetched {
            Ok(set) => {
                tracing::info!(issuer = %self.config.issuer, keys = set.len(), wanted = kid.unwrap_or(""), "fetched the issuer's signing keys");
                keys.keys = set;
                keys.fetched = Some(Instant::now());
                Ok(())
            }
            // Keys fetched before stay usable (a token they verify is still good), but a
            // cache that never filled cannot check anyone.
            Err(e) if keys.fetched.is_some() => {
                tracing::warn!(issuer = %self.config.issuer, error = %e, "cannot refresh the issuer's signing keys; keeping the cached ones");
                Ok(())
            }
            Err(e) => Err(OidcError::Unavailable(e)),
        }
    }

    async fn fetch(&self) -> Result<Vec<(Option<String>, DecodingKey)>, String> {
        let jwks_uri = match &self.config.jwks_uri {
            Some(u) => u.clone(),
            None => {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    self.config.issuer.trim_end_matches('/')
                );
                let doc = self.get_json(&url).await?;
                let issuer = doc.get("issuer").and_then(Value::as_str).unwrap_or("");
                if issuer != self.config.issuer {
                    return Err(format!(
                        "{url} names issuer {issuer:?}, not {:?}",
                        self.config.issuer
                    ));
                }
                doc.get("jwks_uri")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("{url} has no jwks_uri"))?
                    .to_string()
            }
        };
        let set: JwkSet = serde_json::from_value(self.get_json(&jwks_uri).await?)
            .map_err(|e| format!("{jwks_uri}: not a JWK set: {e}"))?;
        let mut out = Vec::new();
        for jwk in &set.keys {
            // Keys for encryption, or of a kind we cannot use, are skipped, not fatal.
            if matches!(
                &jwk.common.public_key_use,
                Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
            ) {
                continue;
            }
            match DecodingKey::from_jwk(jwk) {
                Ok(k) => out.push((jwk.common.key_id.clone(), k)),
                Err(e) => tracing::debug!(kid = ?jwk.common.key_id, error = %e, "skipping a JWK"),
            }
        }
        if out.is_empty() {
            return Err(format!("{jwks_uri} has no usable signing key"));
        }
        Ok(out)
    }

    async fn get_json(&self, url: &str) -> Result<Value, String> {
        let a = self
            .client
            .get(url, FETCH)
            .await
            .map_err(|e| e.to_string())?;
        if !a.status.is_success() {
            return Err(format!("{url}: HTTP {}", a.status.as_u16()));
        }
        serde_json::from_slice(&a.body).map_err(|e| format!("{url}: not JSON: {e}"))
    }
}

/// A test issuer: an Ed25519 key, its JWKS and ID tokens signed with it (feature `testkit`;
/// the unit tests and the end-to-end tests serve its JWKS on loopback).
#[cfg(any(test, feature = "testkit"))]
pub mod testing {
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
    use base64::Engine;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use serde_json::{json, Value};

    pub struct Issuer {
        pub kid: String,
        der: Vec<u8>,
        public: Vec<u8>,
    }

    impl Issuer {
        pub fn new(kid: &str) -> Issuer {
            let rng = aws_lc_rs::rand::SystemRandom::new();
            let der = Ed25519KeyPair::generate_pkcs8(&rng)
                .unwrap()
                .as_ref()
                .to_vec();
            let pair = Ed25519KeyPair::from_pkcs8(&der).unwrap();
            Issuer {
                kid: kid.into(),
                public: pair.public_key().as_ref().to_vec(),
                der,
            }
        }

        /// This key as a JWK.
        pub fn jwk(&self) -> Value {
            json!({
                "kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA", "kid": self.kid,
                "x": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&self.public),
            })
        }

        /// A token with these claims, signed with this key.
        pub fn sign(&self, claims: &Value) -> String {
            let header = Header {
                kid: Some(self.kid.clone()),
                ..Header::new(Algorithm::EdDSA)
            };
            jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_der(&self.der)).unwrap()
        }
    }

    /// Seconds since the epoch, for `exp`/`iat`.
    pub fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{now, Issuer};
    use super::*;
    use serde_json::json;
    use std::sync::{Arc, Mutex};

    /// Serves discovery and a JWKS (whatever `keys` holds at the time) on loopback; counts
    /// JWKS fetches.
    async fn serve(keys: Arc<Mutex<Vec<Value>>>, fetches: Arc<Mutex<u32>>) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", l.local_addr().unwrap());
        let issuer = base.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = l.accept().await else {
                    return;
                };
                let (keys, fetches, issuer) = (keys.clone(), fetches.clone(), issuer.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    let head = String::from_utf8_lossy(&buf[..n]).to_string();
                    let body = if head.starts_with("GET /.well-known/openid-configuration") {
                        json!({"issuer": issuer, "jwks_uri": format!("{issuer}/jwks")})
                    } else {
                        *fetches.lock().unwrap() += 1;
                        json!({"keys": keys.lock().unwrap().clone()})
                    }
                    .to_string();
                    let _ = s
                        .write_all(
                            format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                                body.len()
                            )
                            .as_bytes(),
                        )
                        .await;
                });
            }
        });
        base
    }

    fn config(issuer: &str) -> OidcConfig {
        OidcConfig {
            issuer: issuer.into(),
            audience: "vireo".into(),
            username_claim: "email".into(),
            roles_claim: "groups".into(),
            roles: [("release".to_string(), Role::Operator)].into(),
            default_role: None,
            jwks_uri: None,
        }
    }

    fn claims(issuer: &str) -> Value {
        json!({"iss": issuer, "aud": "vireo", "sub": "u1", "email": "alice@example.com",
               "groups": ["release"], "exp": now() + 300, "iat": now()})
    }

    #[tokio::test]
    async fn a_good_token_maps_to_its_roles_and_bad_ones_say_why() {
        let key = Issuer::new("k1");
        let keys = Arc::new(Mutex::new(vec![key.jwk()]));
        let issuer = serve(keys, Default::default()).await;
        let v = Verifier::new(config(&issuer), HttpClient::default()).unwrap();
        let p = v.verify(&key.sign(&claims(&issuer))).await.unwrap();
        assert_eq!(p.actor(), "oidc:alice@example.com");
        assert_eq!(p.roles, Roles::of(Role::Operator));

        let mut expired = claims(&issuer);
        expired["exp"] = json!(now() - 120);
        let e = v.verify(&key.sign(&expired)).await.unwrap_err();
        assert!(e.to_string().contains("expired"), "{e}");

        let mut other_aud = claims(&issuer);
        other_aud["aud"] = json!("someone-else");
        let e = v.verify(&key.sign(&other_aud)).await.unwrap_err();
        assert!(e.to_string().contains("(aud)"), "{e}");

        let mut other_iss = claims(&issuer);
        other_iss["iss"] = json!("http://evil.example");
        let e = v.verify(&key.sign(&other_iss)).await.unwrap_err();
        assert!(e.to_string().contains("(iss)"), "{e}");

        let mut no_group = claims(&issuer);
        no_group["groups"] = json!(["nobody"]);
        let e = v.verify(&key.sign(&no_group)).await.unwrap_err();
        assert!(e.to_string().contains("maps to a role"), "{e}");

        // Same kid, another key: the signature fails.
        let e = v
            .verify(&Issuer::new("k1").sign(&claims(&issuer)))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("signature"), "{e}");

        // HS256 is refused before any key is looked at.
        let hs = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &claims(&issuer),
            &jsonwebtoken::EncodingKey::from_secret(b"x"),
        )
        .unwrap();
        let e = v.verify(&hs).await.unwrap_err();
        assert!(e.to_string().contains("not accepted"), "{e}");
        assert!(matches!(
            v.verify("garbage").await,
            Err(OidcError::Rejected(_))
        ));
    }

    #[tokio::test]
    async fn a_rotated_key_is_fetched_and_unknown_kids_do_not_hammer_the_issuer() {
        let old = Issuer::new("old");
        let keys = Arc::new(Mutex::new(vec![old.jwk()]));
        let fetches = Arc::new(Mutex::new(0));
        let issuer = serve(keys.clone(), fetches.clone()).await;
        let v = Verifier::new(config(&issuer), HttpClient::default()).unwrap();
        v.verify(&old.sign(&claims(&issuer))).await.unwrap();
        assert_eq!(*fetches.lock().unwrap(), 1);

        // The issuer rotates; a token with the new kid makes us fetch again.
        let new = Issuer::new("new");
        keys.lock().unwrap().push(new.jwk());
        // (The last attempt was just now: pretend it was long ago, as it would be.)
        v.keys.write().unwrap().attempted = None;
        v.verify(&new.sign(&claims(&issuer))).await.unwrap();
        assert_eq!(*fetches.lock().unwrap(), 2);

        // Made-up kids right after: refused without another fetch.
        for i in 0..5 {
            let e = v
                .verify(&Issuer::new(&format!("x{i}")).sign(&claims(&issuer)))
                .await
                .unwrap_err();
            assert!(e.to_string().contains("not in"), "{e}");
        }
        assert_eq!(*fetches.lock().unwrap(), 2);
    }

    #[tokio::test]
    async fn an_unreachable_issuer_is_unavailable_not_rejected() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let issuer = format!("http://127.0.0.1:{port}");
        let v = Verifier::new(config(&issuer), HttpClient::default()).unwrap();
        let e = v
            .verify(&Issuer::new("k").sign(&claims(&issuer)))
            .await
            .unwrap_err();
        assert!(matches!(e, OidcError::Unavailable(_)), "{e}");
    }
}
