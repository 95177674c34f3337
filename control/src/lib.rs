//! `vireo-control`: Vireo's control plane.
//!
//! The pure core, which decides:
//! - [`spec`]: the `Rollout` resource (Argo Rollouts field names), parsed from YAML or JSON and
//!   validated with field paths;
//! - [`analysis`]: Argo-compatible `AnalysisTemplate`s (Argo's own files accepted as is), args
//!   templating, condition evaluation (expr-lang) and Argo's limit rules for metric and run
//!   phases;
//! - [`rollout`]: the rollout state machine: lifecycle, steps, actions, abort. It does no I/O
//!   and reads no clock; a driver feeds it inputs stamped with the time and carries out the
//!   effects it returns (publish a weight, start an analysis, drain, checkpoint);
//! - [`routes`]: the proxy route a rollout's state implies;
//! - [`fleet`]: the proxies as their heartbeats describe them (applied, drained, measured);
//! - [`judge`]: the statistical canary judge (Mann–Whitney U and an effect size);
//! - [`merkle`]: RFC 6962 hashing, proofs and their checks, for the transparency log.
//!
//! The edges, which do I/O around it:
//! - [`store`]: durable state in SQLite, one fsynced transaction per state-machine input;
//! - [`driver`]: the one task that feeds the state machine and carries out its effects;
//! - [`runner`]: analysis runs on their schedule, [`prometheus`] its PromQL provider; [`tables`]: the proxies' long poll;
//!   [`workload`]: stopping and starting a version's processes; [`schedule`]: start windows
//!   and preconditions checked at the gate;
//! - [`api`] and [`serve`]: the HTTP API and the `vireo serve` process; [`client`]: the CLI's
//!   side of the API; [`demo`]: `vireo demo`, everything in one process.
//!
//! The edges must not move decisions out of the core: replaying recorded inputs through the
//! state machine is what makes a rollout's history checkable.

pub mod client;
pub mod demo;
