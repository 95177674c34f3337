//! Vireo's Kubernetes resources, group `vireo.dev`, version `v1alpha1`.
//!
//! What lives here: the CustomResource types a platform team applies (`Rollout`,
//! `AnalysisTemplate`, `ClusterAnalysisTemplate`) and the one the controller writes
//! (`AnalysisRun`, projected from the store's runs by [`runs`]); [`crds`], which renders
//! `crds/` from them; and [`convert`], the pure step
//! from a `Rollout` resource and the Services it names to the core's [`vireo_core::spec::Rollout`],
//! which the engine runs exactly as in embedded mode.
//!
//! Why a crate of its own: the resources are the wire API of Kubernetes mode, used by the
//! controller, by the CRD generator and by tests, and none of them needs a client. Like
//! linkerd2-proxy-api, it has no I/O; `kube` is here only for its derive and `kube-core`.
//!
//! Field names are Argo Rollouts' wherever Argo has the concept, so an Argo user's manifest
//! converts by changing `apiVersion` and the traffic router. Argo fields Vireo does not
//! implement are still accepted by the schema ([`schema::Unsupported`]) so that the controller
//! can name them in a status condition; nothing is dropped silently.

pub mod analysis;
pub mod convert;
pub mod crds;
pub mod inject;
pub mod plan;
pub mod rollout;
pub mod runs;
pub mod schema;

/// The API group of every Vireo resource.
pub const GROUP: &str = "vireo.dev";
/// The one version served today.
pub const VERSION: &str = "v1alpha1";
