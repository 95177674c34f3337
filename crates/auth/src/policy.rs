//! The endpoint table: what every route of the control plane's API needs.
//!
//! The server's router matches a request to a route template (`/api/v1/rollouts/{name}`);
//! the auth layer looks the method and the template up here. A route that is not in the
//! table is refused to everyone, admins included: adding a route without deciding who owns
//! it fails the first test that calls it, instead of shipping it open. The README's
//! "Endpoints and roles" table is [`markdown_table`]'s output, and a test keeps the two equal.

use http::Method;

use crate::role::Permission;

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, no credentials: liveness, and the console's static page (it holds no data).
    Public,
    /// Any authenticated caller, whatever its roles (who am I).
    Authenticated,
    /// A caller whose roles grant this permission.
    Needs(Permission),
    /// OFREP evaluation: public when the operator configures it so, else `Needs(Read)`.
    Ofrep,
}

/// One row: method, route template (axum's syntax), access, and what it is.
#[derive(Debug, Clone, Copy)]
pub struct Endpoint {
    pub method: &'static str,
    pub path: &'static str,
    pub access: Access,
    pub what: &'static str,
}

const fn e(
    method: &'static str,
    path: &'static str,
    access: Access,
    what: &'static str,
) -> Endpoint {
    Endpoint {
        method,
        path,
        access,
        what,
    }
}

use Access::{Authenticated, Needs, Ofrep, Public};
use Permission::{Admin, Approve, Ingest, Operate, ProxyWatch, Read};

/// Every route the server has, grouped by audience as its routers are.
pub const ENDPOINTS: &[Endpoint] = &[
    // console
    e("GET", "/healthz", Public, "liveness"),
    e(
        "GET",
        "/",
        Public,
        "the console (a static page; its data comes from the API)",
    ),
    e(
        "GET",
        "/ui/{*path}",
        Public,
        "the console's scripts and styles (static; no data)",
    ),
    e(
        "GET",
        "/api/v1/whoami",
        Authenticated,
        "the caller's name, roles and permissions",
    ),
    // operator
    e("GET", "/api/v1/rollouts", Needs(Read), "list rollouts"),
    e(
        "POST",
        "/api/v1/rollouts",
        Needs(Operate),
        "apply a rollout",
    ),
    e(
        "GET",
        "/api/v1/rollouts/{name}",
        Needs(Read),
        "one rollout and its status",
    ),
    e(
        "GET",
        "/api/v1/rollouts/{name}/timeline",
        Needs(Read),
        "its checkpoints",
    ),
    e(
        "GET",
        "/api/v1/rollouts/{name}/generations",
        Needs(Read),
        "its earlier generations too, newest first",
    ),
    e(
        "GET",
        "/api/v1/rollouts/{name}/rollback",
        Needs(Read),
        "what a rollback would do (the armed envelope's summary)",
    ),
    e(
        "POST",
        "/api/v1/rollouts/{name}/rollback",
        Needs(Operate),
        "roll it back (replay the rollback envelope)",
    ),
    e(
        "GET",
        "/api/v1/rollouts/{name}/routes",
        Needs(Read),
        "every route it published, in order",
    ),
    e(
        "GET",
        "/api/v1/rollouts/{name}/health",
        Needs(Read),
        "its health banner: proxies, event sink, Prometheus",
    ),
    e(
        "GET",
        "/api/v1/rollouts/{name}/schedule",
        Needs(Read),
        "its schedule and the gate's checks so far",
    ),
    e(
        "POST",
        "/api/v1/rollouts/{name}/schedule",
        Needs(Operate),
        "schedule it",
    ),
    e(
        "DELETE",
        "/api/v1/rollouts/{name}/schedule",
        Needs(Operate),
        "cancel its schedule",
    ),
    e(
        "POST",
        "/api/v1/rollouts/{name}/approve",
        Needs(Approve),
        "approve it",
    ),
    e(
        "POST",
        "/api/v1/rollouts/{name}/{action}",
        Needs(Operate),
        "pause, resume, promote, abort, retry",
    ),
    e(
        "POST",
        "/api/v1/analysistemplates",
        Needs(Operate),
        "apply an analysis template",
    ),
    e(
        "GET",
        "/api/v1/analysistemplates/{name}",
        Needs(Read),
        "an analysis template",
    ),
    // proxies
    e(
        "GET",
        "/api/v1/proxy/config",
        Needs(ProxyWatch),
        "long poll for route tables",
    ),
    e(
        "GET",
        "/api/v1/proxy/watch",
        Needs(ProxyWatch),
        "route tables as a stream",
    ),
    e(
        "POST",
        "/api/v1/proxy/status",
        Needs(ProxyWatch),
        "heartbeat",
    ),
    e("GET", "/api/v1/proxies", Needs(Read), "the fleet"),
    e(
        "GET",
        "/api/v1/slo/{route}",
        Needs(Read),
        "a route's recent SLO series per backend (the canary chart)",
    ),
    // evidence
    e(
        "GET",
        "/api/v1/rollouts/{name}/evidence",
        Needs(Read),
        "the evidence bundle",
    ),
    e(
        "GET",
        "/api/v1/rollouts/{name}/evidence/index",
        Needs(Read),
        "its log entries: kind, digest, log index, sealed",
    ),
    e(
        "GET",
        "/api/v1/log/checkpoint",
        Needs(Read),
        "the log's signed checkpoint",
    ),
    e(
        "GET",
        "/api/v1/log/entries/{index}",
        Needs(Read),
        "one log entry with its proof",
    ),
    e(
        "GET",
        "/api/v1/log/consistency",
        Needs(Read),
        "a consistency proof",
    ),
    e(
        "POST",
        "/api/v1/replays",
        Needs(Read),
        "replay a decision (recomputes; changes no rollout)",
    ),
    e("GET", "/api/v1/replays", Needs(Read), "replays run so far"),
    e(
        "POST",
        "/api/v1/attestations",
        Needs(Ingest),
        "upload an attestation (SLSA provenance)",
    ),
    // events
    e("GET", "/api/v1/events", Needs(Read), "query events"),
    e(
        "POST",
        "/api/v1/events",
        Needs(Ingest),
        "ingest CloudEvents",
    ),
    e(
        "GET",
        "/api/v1/events/stream",
        Needs(Read),
        "follow events (SSE)",
    ),
    e(
        "GET",
        "/api/v1/dora",
        Needs(Read),
        "DORA's four keys with receipts",
    ),
    e(
        "GET",
        "/api/v1/dora/summary",
        Needs(Read),
        "a period, the one before and the weekly trend, with receipts",
    ),
    // flags
    e(
        "POST",
        "/ofrep/v1/evaluate/flags/{key}",
        Ofrep,
        "evaluate one flag (OFREP)",
    ),
    e(
        "POST",
        "/ofrep/v1/evaluate/flags",
        Ofrep,
        "evaluate all flags (OFREP)",
    ),
    e("GET", "/api/v1/flags", Needs(Read), "list flags"),
    e("POST", "/api/v1/flags", Needs(Operate), "define a flag"),
    e("GET", "/api/v1/flags/{key}", Needs(Read), "one flag"),
    e(
        "GET",
        "/api/v1/flags/{key}/evaluations",
        Needs(Read),
        "its evaluations per variant over time",
    ),
    e(
        "POST",
        "/api/v1/flags/{key}/{action}",
        Needs(Operate),
        "enable or disable it",
    ),
    // tokens
    e(
        "GET",
        "/api/v1/tokens",
        Needs(Admin),
        "list API tokens (never their secrets)",
    ),
    e(
        "POST",
        "/api/v1/tokens",
        Needs(Admin),
        "create a token (its secret is shown once)",
    ),
    e(
        "DELETE",
        "/api/v1/tokens/{name}",
        Needs(Admin),
        "revoke a token",
    ),
];

/// The access a request needs, by method and matched route template; `None` for a route the
/// table does not know (refused). `HEAD` is `GET`'s.
pub fn lookup(method: &Method, template: &str) -> Option<Access> {
    let method = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    ENDPOINTS
        .iter()
        .find(|e| e.method == method && e.path == template)
        .map(|e| e.access)
}

/// Methods that change state: these also need a same-origin `Origin` (CSRF).
pub fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The table as Markdown: method, path, who may call it (the README's table).
pub fn markdown_table() -> String {
    let mut out = String::from("| method | path | who may call it | what |\n|---|---|---|---|\n");
    for e in ENDPOINTS {
        let who = match e.access {
            Public => "anyone".to_string(),
            Authenticated => "any authenticated caller".to_string(),
            Ofrep => "viewer, operator, approver, admin (anyone, with `auth.ofrepPublic: true`)"
                .to_string(),
            Needs(p) => p
                .granted_by()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        };
        out.push_str(&format!(
            "| `{}` | `{}` | {who} | {} |\n",
            e.method, e.path, e.what
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_listed_once() {
        let mut seen = std::collections::BTreeSet::new();
        for e in ENDPOINTS {
            assert!(
                seen.insert((e.method, e.path)),
                "{} {} twice",
                e.method,
                e.path
            );
        }
    }

    #[test]
    fn lookups_follow_the_table_and_fail_closed() {
        assert_eq!(lookup(&Method::GET, "/healthz"), Some(Public));
        assert_eq!(lookup(&Method::HEAD, "/api/v1/rollouts"), Some(Needs(Read)));
        assert_eq!(
            lookup(&Method::POST, "/api/v1/rollouts/{name}/approve"),
            Some(Needs(Approve))
        );
        assert_eq!(lookup(&Method::PUT, "/api/v1/rollouts"), None);
        assert_eq!(lookup(&Method::GET, "/api/v1/secret"), None);
    }

    #[test]
    fn the_markdown_names_the_roles() {
        let t = markdown_table();
        assert!(
            t.contains("| `POST` | `/api/v1/rollouts/{name}/approve` | approver, admin |"),
            "{t}"
        );
        assert!(
            t.contains("| `GET` | `/api/v1/proxy/config` | proxy, admin |"),
            "{t}"
        );
    }
}
