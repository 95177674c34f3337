//! `vireo-core`: the decisions, with no I/O.
//!
//! - [`spec`]: the `Rollout` resource (Argo Rollouts field names), parsed from YAML or JSON and
//!   validated with field paths;
//! - [`analysis`]: Argo-compatible `AnalysisTemplate`s (Argo's own files accepted as is), args
//!   templating, condition evaluation (expr-lang), Argo's limit rules for metric and run
//!   phases, and the run view with the rule that decides a run's phase;
//! - [`rollout`]: the rollout state machine: lifecycle, steps, actions, abort, the rollback
//!   envelope. It does no I/O and reads no clock; the engine feeds it inputs stamped with the
//!   time and carries out the effects it returns;
//! - [`routes`]: the proxy route a rollout's state implies;
//! - [`fleet`]: the proxies as their heartbeats describe them (applied, drained, measured);
//! - [`judge`]: the statistical canary judge (Mann–Whitney U and an effect size);
//! - [`flags`]: OpenFeature flags tied to a rollout's cohort, evaluated as OFREP does;
//! - [`events`]: CloudEvents of transitions and their validation at ingest; [`dora`]: DORA's
//!   four keys from an event stream;
//! - [`schedule`]: start windows and preconditions;
//! - [`attestation`]: the data of the provenance gate's facts; [`decision`]: decision ids;
//!   [`digest`]: digests, times and base64 as records spell them; [`clock`]: the time seam.
//!
//! Invariants (checked by `scripts/check-architecture.sh`): no async runtime, HTTP stack,
//! database or proxy framework in this crate's dependency tree, so nothing here can do I/O;
//! every module's imports point down this list's layers, never in a circle. Replaying recorded
//! inputs through the state machine is what makes a rollout's history checkable.

pub mod analysis;
pub mod attestation;
pub mod clock;
pub mod decision;
pub mod digest;
pub mod dora;
pub mod events;
pub mod flags;
pub mod fleet;
pub mod judge;
pub mod rollout;
pub mod routes;
pub mod schedule;
pub mod spec;
#[cfg(any(test, feature = "testkit"))]
pub mod testdata;
