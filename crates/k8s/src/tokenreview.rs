//! Sidecars authenticate with their projected service-account token (audience `vireo`); the
//! control plane asks the Kubernetes API whether it is valid (TokenReview) before serving a
//! proxy its config. Answers are cached for a minute per token (by its SHA-256), so a fleet's
//! heartbeats do not each cost a TokenReview; a projected token is rotated long before it
//! expires, and a revoked one is refused again within the minute.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::api::{Api, PostParams};
use sha2::{Digest, Sha256};

/// The audience Vireo's sidecar tokens are issued for (what the injector projects).
pub use vireo_k8s_api::inject::AUDIENCE;
const TTL: Duration = Duration::from_secs(60);
const MAX_CACHED: usize = 100_000;

/// When a token was reviewed, and the user it names (none: refused).
type Answer = (Instant, Option<String>);

pub struct Reviewer {
    client: kube::Client,
    cache: Mutex<HashMap<[u8; 32], Answer>>,
}

impl std::fmt::Debug for Reviewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenReview reviewer")
    }
}

impl Reviewer {
    pub fn new(client: kube::Client) -> std::sync::Arc<Reviewer> {
        std::sync::Arc::new(Reviewer {
            client,
            cache: Mutex::default(),
        })
    }

    /// `Some("system:serviceaccount:NS:NAME")` for a valid token with Vireo's audience.
    pub async fn check(&self, token: &str) -> Result<Option<String>, String> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some((at, user)) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            if at.elapsed() < TTL {
                return Ok(user.clone());
            }
        }
        let api: Api<TokenReview> = Api::all(self.client.clone());
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: Some(vec![AUDIENCE.to_string()]),
            },
            ..Default::default()
        };
        let answer = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| format!("TokenReview: {e}"))?;
        let status = answer.status.unwrap_or_default();
        // The API server names the audiences it matched; none means its own, not Vireo's. And
        // only service accounts are sidecars: a person's token is no proxy's.
        let audience_ok = status
            .audiences
            .as_ref()
            .is_some_and(|a| a.iter().any(|x| x == AUDIENCE));
        let user = (status.authenticated == Some(true) && audience_ok)
            .then(|| status.user.and_then(|u| u.username))
            .flatten()
            .filter(|u| u.starts_with("system:serviceaccount:"));
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= MAX_CACHED {
            cache.retain(|_, (at, _)| at.elapsed() < TTL);
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
        }
        cache.insert(key, (Instant::now(), user.clone()));
        Ok(user)
    }
}
