//! A trusted authenticating proxy in front of the control plane (oauth2-proxy, an ingress with
//! external auth, Kubernetes' front proxy) says who the user is in `X-Remote-User` and their
//! groups in `X-Remote-Group` (repeated or comma-separated). Those headers are believed only
//! when the connection comes from a configured source address; from anywhere else they are
//! ignored, as if absent, and the caller must authenticate itself.

use std::collections::BTreeMap;
use std::net::IpAddr;

use http::HeaderMap;
use ipnet::IpNet;
use serde::Deserialize;

use crate::principal::{Principal, Via};
use crate::role::{Role, Roles};

pub const USER_HEADER: &str = "x-remote-user";
pub const GROUP_HEADER: &str = "x-remote-group";

/// `auth.trustedProxy` in `control.yaml`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrustedProxyConfig {
    /// Source addresses or CIDR blocks the authenticating proxy connects from.
    pub sources: Vec<String>,
    /// Group → role.
    #[serde(default)]
    pub roles: BTreeMap<String, Role>,
    /// The role of a user none of whose groups is mapped (absent: such a user is refused).
    #[serde(default)]
    pub default_role: Option<Role>,
}

#[derive(Debug, Clone)]
pub struct TrustedProxy {
    sources: Vec<IpNet>,
    roles: BTreeMap<String, Role>,
    default_role: Option<Role>,
}

impl TrustedProxy {
    pub fn new(config: &TrustedProxyConfig) -> Result<TrustedProxy, String> {
        if config.sources.is_empty() {
            return Err("auth.trustedProxy.sources: list the proxy's addresses".into());
        }
        let mut sources = Vec::new();
        for (i, s) in config.sources.iter().enumerate() {
            let net = s
                .parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    format!("auth.trustedProxy.sources[{i}]: {s:?} is not an address or CIDR block")
                })?;
            sources.push(net);
        }
        Ok(TrustedProxy {
            sources,
            roles: config.roles.clone(),
            default_role: config.default_role,
        })
    }

    pub fn trusts(&self, peer: IpAddr) -> bool {
        let peer = match peer {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(peer),
            v4 => v4,
        };
        self.sources.iter().any(|n| n.contains(&peer))
    }

    /// The user the proxy vouches for, if `peer` is trusted and it named one. `Err` when the
    /// user is named but none of their groups maps to a role (and there is no default).
    pub fn principal(
        &self,
        peer: IpAddr,
        headers: &HeaderMap,
    ) -> Option<Result<Principal, String>> {
        if !self.trusts(peer) {
            return None;
        }
        let user = headers.get(USER_HEADER)?.to_str().ok()?.trim();
        if user.is_empty() || user.len() > 256 || user.chars().any(char::is_control) {
            return None;
        }
        let mut roles: Roles = headers
            .get_all(GROUP_HEADER)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|g| self.roles.get(g.trim()).copied())
            .collect();
        if roles.is_empty() {
            match self.default_role {
                Some(r) => roles = Roles::of(r),
                None => {
                    return Some(Err(format!(
                        "{user:?} (via the trusted proxy) is in no group that auth.trustedProxy.roles maps to a role"
                    )))
                }
            }
        }
        Some(Ok(Principal::new(user, Via::Remote, roles)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy() -> TrustedProxy {
        TrustedProxy::new(&TrustedProxyConfig {
            sources: vec!["10.0.0.0/8".into(), "127.0.0.1".into()],
            roles: [("release".to_string(), Role::Operator)].into(),
            default_role: Some(Role::Viewer),
        })
        .unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn only_trusted_sources_are_believed() {
        let h = headers(&[
            ("x-remote-user", "alice"),
            ("x-remote-group", "ops, release"),
        ]);
        let p = proxy()
            .principal("10.1.2.3".parse().unwrap(), &h)
            .unwrap()
            .unwrap();
        assert_eq!(p.actor(), "remote:alice");
        assert!(p.roles.contains(Role::Operator));
        assert!(proxy()
            .principal("192.168.0.1".parse().unwrap(), &h)
            .is_none());
        // IPv4-mapped IPv6 is the same source.
        assert!(proxy()
            .principal("::ffff:127.0.0.1".parse().unwrap(), &h)
            .is_some());
    }

    #[test]
    fn unmapped_users_get_the_default_or_are_refused() {
        let h = headers(&[("x-remote-user", "bob")]);
        let p = proxy().principal("127.0.0.1".parse().unwrap(), &h).unwrap();
        assert_eq!(p.unwrap().roles, Roles::of(Role::Viewer));
        let strict = TrustedProxy::new(&TrustedProxyConfig {
            sources: vec!["127.0.0.1/32".into()],
            roles: Default::default(),
            default_role: None,
        })
        .unwrap();
        let e = strict
            .principal("127.0.0.1".parse().unwrap(), &h)
            .unwrap()
            .unwrap_err();
        assert!(e.contains("no group"), "{e}");
    }

    #[test]
    fn bad_sources_are_named() {
        let e = TrustedProxy::new(&TrustedProxyConfig {
            sources: vec!["10.0.0.0/8".into(), "nope".into()],
            roles: Default::default(),
            default_role: None,
        })
        .unwrap_err();
        assert!(e.contains("sources[1]"), "{e}");
    }
}
