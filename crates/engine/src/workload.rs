//! The workloads seam: starting and stopping a version's processes, the one interface between
//! a rollout and whatever runs the service.
//!
//! Calls are asynchronous and report back when done: the driver spawns each one and, for
//! [`Workloads::start`], feeds `InputsMaterialized` to the state machine only once the start
//! has returned, so a Kubernetes implementation can scale a ReplicaSet up and wait for its
//! pods to be ready, however long that takes. A failed start is logged and the rollout goes
//! on (its analysis judges a canary that does not answer); only the newest start's answer
//! counts, and a start that returns after an abort is followed by a stop. The driver calls `start` when a rollout's inputs are
//! to be materialized (so a `retry` brings a stopped canary back), [`Workloads::stop`] at the
//! end of an abort, and [`Workloads::force_close`] when the abort deadline passes with
//! requests still in flight. `vireo serve` uses [`Recorded`] (it manages no processes: the
//! calls are logged, and the rollout's timeline holds the `StopCanary` effect); `vireo demo`
//! stops its in-process canary server.

use futures_util::future::BoxFuture;
use vireo_core::spec::Workload;

/// Why a workload call failed (logged with the rollout's name).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WorkloadError(pub String);

pub trait Workloads: Send + Sync {
    /// Start the workload; resolves once it can take traffic.
    fn start(
        &self,
        rollout: &str,
        workload: &Workload,
    ) -> BoxFuture<'static, Result<(), WorkloadError>>;
    /// Stop the workload after its traffic drained.
    fn stop(
        &self,
        rollout: &str,
        workload: &Workload,
    ) -> BoxFuture<'static, Result<(), WorkloadError>>;
    /// Stop it now, closing connections that still carry requests.
    fn force_close(
        &self,
        rollout: &str,
        workload: &Workload,
    ) -> BoxFuture<'static, Result<(), WorkloadError>> {
        self.stop(rollout, workload)
    }
}

/// Manages nothing; logs what a process manager would have been asked to do.
pub struct Recorded;

impl Workloads for Recorded {
    fn start(&self, rollout: &str, w: &Workload) -> BoxFuture<'static, Result<(), WorkloadError>> {
        tracing::info!(rollout, version = %w.version, "workload start requested (not managed by this control plane)");
        Box::pin(async { Ok(()) })
    }
    fn stop(&self, rollout: &str, w: &Workload) -> BoxFuture<'static, Result<(), WorkloadError>> {
        tracing::info!(rollout, version = %w.version, "workload stop requested (not managed by this control plane)");
        Box::pin(async { Ok(()) })
    }
}
