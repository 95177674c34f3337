//! `vireo-engine`: the control plane's moving part.
//!
//! - [`driver`]: the one task that owns the store, feeds the rollout state machine its inputs
//!   (stamped by a [`vireo_core::clock::Clock`]) and carries out the effects it returns; the
//!   API reaches it through [`driver::Handle`]'s named commands.
//! - Seams for what acts on the world, each with today's embedded implementation:
//!   [`workload::Workloads`] (start and stop a version; async, reporting back when done),
//!   [`traffic::Traffic`] (publish weights, know when they are applied and a version drained),
//!   [`runner::Analyses`] (run an analysis and report its measurements). A Kubernetes or
//!   Gateway API implementation slots in beside them without touching the state machine.
//! - [`runner`]: analysis runs on their schedule; [`prometheus`]: its PromQL provider;
//!   [`tables`]: the proxies' long poll; [`precondition`]: a schedule's HTTP checks;
//!   [`sink`]: the event sink.
//!
//! Invariant: decisions stay in `vireo-core`. The engine only stamps, records and carries out,
//! so replaying recorded inputs through the state machine gives back what happened.

pub mod driver;
pub mod precondition;
pub mod prometheus;
pub mod runner;
pub mod sink;
pub mod tables;
pub mod traffic;
pub mod workload;
