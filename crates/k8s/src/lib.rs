//! Kubernetes mode: `vireo serve --kubernetes` runs this controller beside the API and the
//! engine.
//!
//! What lives here: [`reconcile`] (kube-rs `Controller` over Rollouts and the ReplicaSets they
//! own: read the world, ask [`vireo_k8s_api::plan`] what it should be, write the difference,
//! project the engine's state into `status` with Events), the workloads seam on ReplicaSets
//! ([`workloads::ReplicaSets`]), and the store names of Kubernetes objects ([`names`]).
//!
//! The engine stays the one place decisions are made: the controller hands it the recipe
//! (converted by `vireo_k8s_api::convert`, so the same rules as embedded mode apply), and the
//! engine's weights, analyses, evidence and events follow unchanged. The CR status is a
//! projection of the store, never read back as state.

pub mod check;
pub mod gateway;
pub mod lease;
pub mod names;
pub mod reconcile;
pub mod tokenreview;
pub mod webhook;
pub mod workloads;

pub use reconcile::{run, Context};

/// The finalizer that restores the Services' selectors when a Rollout is deleted.
pub const FINALIZER: &str = "vireo.dev/rollout";
/// Labels on the ReplicaSets a Rollout owns.
pub const ROLLOUT_LABEL: &str = "vireo.dev/rollout";

/// Why a reconcile failed (retried with backoff by the error policy).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("control plane: {0}")]
    Engine(String),
    #[error("{0}")]
    Invalid(String),
}
