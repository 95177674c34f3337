//! Roles and permissions.
//!
//! An endpoint needs one [`Permission`]; a caller has one or more [`Role`]s (a token has one;
//! an OIDC identity or a proxy-authenticated user can map to several), and a role grants a
//! fixed set of permissions. `admin` grants everything. `approve` is deliberately not part of
//! `operator`: the person who applies a release and the one who approves it can be kept
//! apart (see the `four-eyes` approval in the README).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What an endpoint needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    /// Read anything: rollouts, timelines, evidence, events, DORA, flags, the fleet; replay.
    Read,
    /// Change rollouts and flags: apply, pause, resume, promote, abort, retry, rollback,
    /// schedule, flag definitions and toggles, analysis templates.
    Operate,
    /// Approve a rollout waiting for approval.
    Approve,
    /// The data plane: long-poll route tables, send heartbeats.
    ProxyWatch,
    /// Push data in: CloudEvents and attestations.
    Ingest,
    /// Manage API tokens.
    Admin,
}

impl Permission {
    pub const ALL: [Permission; 6] = [
        Permission::Read,
        Permission::Operate,
        Permission::Approve,
        Permission::ProxyWatch,
        Permission::Ingest,
        Permission::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Operate => "operate",
            Permission::Approve => "approve",
            Permission::ProxyWatch => "proxywatch",
            Permission::Ingest => "ingest",
            Permission::Admin => "admin",
        }
    }

    /// The roles that grant this permission, for error messages ("needs operator or admin").
    pub fn granted_by(self) -> impl Iterator<Item = Role> {
        Role::ALL.into_iter().filter(move |r| r.grants(self))
    }
}

/// A role, as tokens, OIDC mappings and proxy mappings name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Operator,
    Approver,
    Proxy,
    Ingest,
    Admin,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Viewer,
        Role::Operator,
        Role::Approver,
        Role::Proxy,
        Role::Ingest,
        Role::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Approver => "approver",
            Role::Proxy => "proxy",
            Role::Ingest => "ingest",
            Role::Admin => "admin",
        }
    }

    /// The permissions of this role.
    pub fn grants(self, p: Permission) -> bool {
        use Permission as P;
        match self {
            Role::Viewer => p == P::Read,
            Role::Operator => matches!(p, P::Read | P::Operate),
            Role::Approver => matches!(p, P::Read | P::Approve),
            Role::Proxy => p == P::ProxyWatch,
            Role::Ingest => p == P::Ingest,
            Role::Admin => true,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}: use viewer, operator, approver, proxy, ingest or admin")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Role, UnknownRole> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_string()))
    }
}

/// A caller's roles: a small set (a bit per role).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Roles(u8);

impl Roles {
    pub const NONE: Roles = Roles(0);

    pub fn of(role: Role) -> Roles {
        Roles(1 << role as u8)
    }

    pub fn with(self, role: Role) -> Roles {
        Roles(self.0 | 1 << role as u8)
    }

    pub fn contains(self, role: Role) -> bool {
        self.0 & (1 << role as u8) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Role> {
        Role::ALL.into_iter().filter(move |r| self.contains(*r))
    }

    /// Whether any of these roles grants `p`.
    pub fn grant(self, p: Permission) -> bool {
        self.iter().any(|r| r.grants(p))
    }

    /// Every permission these roles grant, in a fixed order.
    pub fn permissions(self) -> Vec<Permission> {
        Permission::ALL
            .into_iter()
            .filter(|p| self.grant(*p))
            .collect()
    }
}

impl FromIterator<Role> for Roles {
    fn from_iter<I: IntoIterator<Item = Role>>(iter: I) -> Roles {
        iter.into_iter().fold(Roles::NONE, Roles::with)
    }
}

impl fmt::Debug for Roles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl Serialize for Roles {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_and_print() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
        }
        let e = "root".parse::<Role>().unwrap_err();
        assert!(e.to_string().contains("viewer, operator"), "{e}");
    }

    #[test]
    fn operators_do_not_approve_and_proxies_read_nothing() {
        assert!(Role::Operator.grants(Permission::Operate));
        assert!(!Role::Operator.grants(Permission::Approve));
        assert!(Role::Approver.grants(Permission::Approve));
        assert!(!Role::Approver.grants(Permission::Operate));
        assert!(!Role::Proxy.grants(Permission::Read));
        assert!(!Role::Ingest.grants(Permission::Read));
        assert!(!Role::Viewer.grants(Permission::Operate));
        for p in Permission::ALL {
            assert!(Role::Admin.grants(p));
        }
    }

    #[test]
    fn a_set_grants_what_any_member_grants() {
        let r: Roles = [Role::Viewer, Role::Approver].into_iter().collect();
        assert!(r.grant(Permission::Approve));
        assert!(!r.grant(Permission::Operate));
        assert_eq!(r.permissions(), vec![Permission::Read, Permission::Approve]);
        assert!(Roles::NONE.permissions().is_empty());
        assert_eq!(
            Permission::Operate.granted_by().collect::<Vec<_>>(),
            vec![Role::Operator, Role::Admin]
        );
    }
}
