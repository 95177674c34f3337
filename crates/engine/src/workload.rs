//! Starting and stopping a version's workload: the one interface between a rollout and whatever
//! runs the service's processes.
//!
//! The driver calls [`Workloads::start`] when a rollout's inputs are materialized (so a `retry`
//! brings a stopped canary back), [`Workloads::stop`] at the end of an abort, and
//! [`Workloads::force_close`] when the abort deadline passes with requests still in flight.
//! `vireo serve` uses [`Recorded`] (it manages no processes: the calls are logged, and the
//! rollout's timeline holds the `StopCanary` effect); `vireo demo` stops its in-process canary
//! server; a Kubernetes implementation would scale the canary's Deployment.

use vireo_core::spec::Workload;

pub trait Workloads: Send + Sync {
    fn start(&self, rollout: &str, workload: &Workload) -> Result<(), String>;
    /// Stop the workload after its traffic drained.
    fn stop(&self, rollout: &str, workload: &Workload) -> Result<(), String>;
    /// Stop it now, closing connections that still carry requests.
    fn force_close(&self, rollout: &str, workload: &Workload) -> Result<(), String> {
        self.stop(rollout, workload)
    }
}

/// Manages nothing; logs what a process manager would have been asked to do.
pub struct Recorded;

impl Workloads for Recorded {
    fn start(&self, rollout: &str, w: &Workload) -> Result<(), String> {
        tracing::info!(rollout, version = %w.version, "workload start requested (not managed by this control plane)");
        Ok(())
    }
    fn stop(&self, rollout: &str, w: &Workload) -> Result<(), String> {
        tracing::info!(rollout, version = %w.version, "workload stop requested (not managed by this control plane)");
        Ok(())
    }
}
