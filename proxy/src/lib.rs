//! `vireo-proxy`: Vireo's data plane.
//!
//! An HTTP proxy on hyper that sends each request to one backend of its route (stable or canary)
//! by weight, or by hashing a user key into buckets so every user keeps their cohort, and that
//! measures every request natively (Prometheus metrics and rolling SLO windows).
//!
//! Module map (see also `ARCHITECTURE.md` at the repository root):
//! - [`split`], [`config`]: the split algorithm and the config file format with its
//!   validation, re-exported from `vireo-types` (the control plane uses the same code).
//! - [`route`]: the compiled, immutable route table the request path reads.
//! - [`metrics`], [`slo`]: lock-free recording; Prometheus series and rolling SLO windows.
//! - [`proxy`]: the request path: pick, forward, relay, record.
//! - [`upstream`]: each worker's upstream connections (pooled, bounded) and dialling.
//! - [`headers`]: hop-by-hop fields, removed in both directions.
//! - [`detect`], [`io`]: HTTP/1 vs h2c detection per connection with a time limit, and the
//!   client stream (rewind, write-stall deadline).
//! - [`intercept`]: transparent interception: the iptables init step and each redirected
//!   connection's original destination.
//! - [`admin`]: the admin HTTP server (`/metrics`, `/slo`, `/config`, health).
//! - [`reload`]: the config file source (poll + SIGHUP).
//! - [`watch`]: the control-plane config source (long poll + heartbeat) and its wire types.
//! - [`server`]: the workers (a runtime and listener per thread), the admin runtime, graceful
//!   shutdown and drain.

pub mod admin;
pub use vireo_types::{config, split};
pub mod detect;
pub mod headers;
pub mod intercept;
pub mod io;
pub mod metrics;
pub mod proxy;
pub mod reload;
pub mod route;
pub mod server;
pub mod slo;
pub mod upstream;
pub mod watch;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::{Config, ConfigError};
use crate::metrics::Metrics;
use crate::route::RouteTable;

/// The active route table, swappable as a whole.
///
/// This is the seam between config sources and the request path: the file watcher calls
/// [`TableHandle::apply`] today; the control plane's watch does the same with the versions it
/// publishes. Readers get the old table or the new one, never a mix.
pub struct TableHandle {
    table: ArcSwap<RouteTable>,
    metrics: Arc<Metrics>,
}

impl TableHandle {
    pub fn new(config: Config, version: u64, metrics: Arc<Metrics>) -> Result<Self, ConfigError> {
        let table = RouteTable::compile(config, version, &metrics)?;
        metrics.set_config_version(version);
        Ok(TableHandle {
            table: ArcSwap::from_pointee(table),
            metrics,
        })
    }

    /// The current table; cheap, lock-free. Do not hold the guard across an `.await`.
    #[inline]
    pub fn load(&self) -> arc_swap::Guard<Arc<RouteTable>> {
        self.table.load()
    }

    /// Compiles `config` and makes it the active table. On error the old table stays.
    pub fn apply(&self, config: Config, version: u64) -> Result<(), ConfigError> {
        let table = RouteTable::compile(config, version, &self.metrics)?;
        self.table.store(Arc::new(table));
        self.metrics.set_config_version(version);
        Ok(())
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Frees the series of versions the active table no longer has, once idle for the longest
    /// SLO window (so nothing pruned could still show in any `/slo` window). Returns how many
    /// series went.
    pub fn prune_metrics(&self) -> usize {
        let active = self.load();
        let now = self.metrics.now_ms(std::time::Instant::now());
        self.metrics
            .prune(now, slo::MAX_WINDOW, |route, backend, version| {
                route == metrics::UNMATCHED
                    || route == metrics::PASSTHROUGH
                    || active
                        .backends()
                        .any(|(r, b)| r == route && b.name() == backend && b.version() == version)
            })
    }
}

/// Process-wide readiness, read by `/ready`.
#[derive(Default)]
pub struct Lifecycle {
    ready: AtomicBool,
    shutting_down: AtomicBool,
}

impl Lifecycle {
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst) && !self.is_shutting_down()
    }
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }
}
