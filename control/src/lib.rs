//! `vireo-control`: Vireo's control plane.
//!
//! What lives here so far is the pure core the control plane is built around:
//! - [`spec`]: the `Rollout` resource (Argo Rollouts field names), parsed from YAML or JSON and
//!   validated with field paths;
//! - [`analysis`]: Argo-compatible `AnalysisTemplate`s (Argo's own files accepted as is), args
//!   templating, condition evaluation (expr-lang) and Argo's limit rules for metric and run
//!   phases;
//! - [`routes`]: the proxy route a rollout's state implies;
//! - [`fleet`]: the proxies as their heartbeats describe them (applied, drained, measured);
//! - [`store`]: durable state in SQLite, one fsynced transaction per state-machine input;
//! - [`rollout`]: the rollout state machine: lifecycle, steps, actions, abort. It does no I/O
//!   and reads no clock; a driver feeds it inputs stamped with the time and carries out the
//!   effects it returns (publish a weight, start an analysis, drain, checkpoint).
//!
//! The server, the driver, the CLI and `vireo demo` are to come
//! (issue 3); they wrap these modules and must not move decisions out of them, since replaying
//! recorded inputs through the state machine is what makes a rollout's history checkable.

pub mod analysis;
pub mod fleet;
pub mod rollout;
pub mod routes;
pub mod spec;
pub mod store;
#[cfg(test)]
mod testdata;
