//! The traffic seam: where the canary's weight goes, and how the engine learns it took hold.
//!
//! The driver publishes one numbered route table for everything it drives and then waits,
//! level-triggered, until [`Traffic::applied`] says every target routes by that version (a
//! weight counts as applied only then), or [`Traffic::drained`] says a backend carries
//! nothing any more. [`ProxyFleet`] is Vireo's own: the proxies long-poll the tables and their
//! heartbeats say what they applied and what is in flight. A Gateway API implementation would
//! write `HTTPRoute` backend weights and read the route's status.

use std::sync::{Arc, RwLock};

use vireo_core::fleet::Fleet;
use vireo_core::rollout::Millis;
use vireo_types::wire::ConfigUpdate;

use crate::tables::Tables;

pub trait Traffic: Send + Sync {
    /// Makes `table` what every target should route by. Returns at once; application is
    /// observed through [`Traffic::applied`].
    fn publish(&self, table: ConfigUpdate);
    /// Every connected target routes by table `version` (false while none is connected: a
    /// weight nobody applied is not applied).
    fn applied(&self, version: u64, now: Millis) -> bool;
    /// No target reports a request in flight to `backend` of `route`.
    fn drained(&self, route: &str, backend: &str, now: Millis) -> bool;
    /// Targets that refused the newest table, and why (a rollout waiting on them is stuck).
    fn refusals(&self, now: Millis) -> Vec<String>;
}

/// Vireo's proxies: tables over the long poll ([`Tables`]), applied versions and in-flight
/// counts from their heartbeats ([`Fleet`]).
#[derive(Clone, Default)]
pub struct ProxyFleet {
    pub tables: Arc<Tables>,
    pub fleet: Arc<RwLock<Fleet>>,
}

impl ProxyFleet {
    fn fleet(&self) -> std::sync::RwLockReadGuard<'_, Fleet> {
        self.fleet.read().unwrap_or_else(|e| e.into_inner())
    }
}

impl Traffic for ProxyFleet {
    fn publish(&self, table: ConfigUpdate) {
        self.tables.publish(table);
    }

    fn applied(&self, version: u64, now: Millis) -> bool {
        let newest = self.tables.current().version;
        self.fleet().applied(version, newest, now)
    }

    fn drained(&self, route: &str, backend: &str, now: Millis) -> bool {
        self.fleet().drained(route, backend, now)
    }

    fn refusals(&self, now: Millis) -> Vec<String> {
        self.fleet()
            .connected(now)
            .filter_map(|r| {
                let t = r.rejected.as_ref()?;
                Some(format!(
                    "proxy {} refused table {}: {}",
                    r.proxy, t.version, t.error
                ))
            })
            .collect()
    }
}
