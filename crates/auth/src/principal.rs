//! The authenticated caller.

use serde::Serialize;

use crate::role::{Permission, Roles};

/// How a caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    Token,
    Oidc,
    /// A trusted authenticating proxy's `X-Remote-User`.
    Remote,
    /// A Kubernetes service-account token with Vireo's audience, checked by TokenReview (a
    /// sidecar's projected token; always and only the proxy role).
    ServiceAccount,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Token => "token",
            Via::Oidc => "oidc",
            Via::Remote => "remote",
            Via::ServiceAccount => "serviceaccount",
        }
    }
}

/// Who is calling. [`Principal::actor`] is what timelines, events and evidence record: the
/// source and the name (`token:ci`, `oidc:alice@example.com`, `remote:alice`), so a token
/// named like a person is never mistaken for that person's own login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    pub name: String,
    pub via: Via,
    pub roles: Roles,
}

impl Principal {
    pub fn new(name: impl Into<String>, via: Via, roles: Roles) -> Principal {
        Principal {
            name: name.into(),
            via,
            roles,
        }
    }

    pub fn actor(&self) -> String {
        format!("{}:{}", self.via.as_str(), self.name)
    }

    pub fn may(&self, p: Permission) -> bool {
        self.roles.grant(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::role::Role;

    #[test]
    fn the_actor_names_the_source() {
        let p = Principal::new("ci", Via::Token, Roles::of(Role::Operator));
        assert_eq!(p.actor(), "token:ci");
        assert!(p.may(Permission::Operate));
        assert!(!p.may(Permission::Approve));
    }
}
