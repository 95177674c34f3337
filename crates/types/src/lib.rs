//! `vireo-types`: the vocabulary the data plane and the control plane share.
//!
//! - [`split`]: the normative split algorithm (bucket a key, pick a backend by weight).
//! - [`config`]: the proxy's config and route schema (`shared/spec/proxy.md`), parsed and
//!   validated in one step with field paths in every error.
//! - [`intercept`]: transparent interception's ports and networks, as the init step and the
//!   injector parse them.
//! - [`slo`]: the SLO latency-histogram layout and window bounds.
//! - [`wire`]: `GET /api/v1/proxy/config` and `POST /api/v1/proxy/status` bodies, and the
//!   `/slo` report.
//!
//! Invariant (checked by `scripts/check-architecture.sh`): this crate depends on no async
//! runtime, HTTP stack, database or proxy framework, so both sides can agree on these types
//! without building each other.

pub mod config;
pub mod intercept;
pub mod slo;
pub mod split;
pub mod wire;
