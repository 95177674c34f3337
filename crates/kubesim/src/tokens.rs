//! Service-account tokens: TokenRequest (`POST …/serviceaccounts/NAME/token`, what a kubelet
//! does for a projected token) issues them, TokenReview checks them. The tokens are opaque
//! random strings, not JWTs: Vireo's control plane only ever asks the API about them.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::{json, Value};

use crate::error::ApiError;

#[derive(Debug, Clone)]
struct Issued {
    namespace: String,
    service_account: String,
    audiences: Vec<String>,
    expires: chrono::DateTime<chrono::Utc>,
}

#[derive(Default)]
pub struct Tokens {
    issued: Mutex<HashMap<String, Issued>>,
}

fn random_token() -> String {
    (0..24)
        .map(|_| format!("{:02x}", fastrand::u8(..)))
        .collect()
}

impl Tokens {
    /// TokenRequest: `spec.audiences`, `spec.expirationSeconds` (default 3600).
    pub fn request(&self, ns: &str, sa: &str, body: &Value) -> Result<Value, ApiError> {
        let audiences: Vec<String> = crate::registry::string_list(&body["spec"]["audiences"]);
        let secs = body["spec"]["expirationSeconds"].as_i64().unwrap_or(3600);
        if secs < 600 {
            return Err(ApiError::invalid("TokenRequest", sa, vec!["spec.expirationSeconds: Invalid value: may not specify a duration less than 10 minutes".into()]));
        }
        let expires = chrono::Utc::now() + chrono::Duration::seconds(secs);
        let token = format!("kubesim.{}", random_token());
        self.issued
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                token.clone(),
                Issued {
                    namespace: ns.into(),
                    service_account: sa.into(),
                    audiences: audiences.clone(),
                    expires,
                },
            );
        Ok(json!({
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": sa, "namespace": ns},
            "spec": {"audiences": audiences, "expirationSeconds": secs},
            "status": {"token": token, "expirationTimestamp": expires.format("%Y-%m-%dT%H:%M:%SZ").to_string()},
        }))
    }

    /// TokenReview: authenticated when the token was issued, has not expired, and (when the
    /// review names audiences) was issued for one of them.
    pub fn review(&self, body: &Value) -> Value {
        let token = body["spec"]["token"].as_str().unwrap_or_default();
        let wanted: Vec<String> = crate::registry::string_list(&body["spec"]["audiences"]);
        let issued = self
            .issued
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
            .cloned();
        let status = match issued {
            None => json!({"authenticated": false, "error": "invalid bearer token"}),
            Some(i) if i.expires < chrono::Utc::now() => {
                json!({"authenticated": false, "error": "token has expired"})
            }
            Some(i) if !wanted.is_empty() && !wanted.iter().any(|a| i.audiences.contains(a)) => {
                json!({"authenticated": false, "error": "token audiences do not match the requested audiences"})
            }
            Some(i) => json!({
                "authenticated": true,
                "user": {
                    "username": format!("system:serviceaccount:{}:{}", i.namespace, i.service_account),
                    "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{}", i.namespace), "system:authenticated"],
                },
                "audiences": if wanted.is_empty() { i.audiences.clone() } else { wanted.iter().filter(|a| i.audiences.contains(a)).cloned().collect() },
            }),
        };
        json!({
            "kind": "TokenReview",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": null},
            "spec": body["spec"],
            "status": status,
        })
    }
}
