//! `vireo-control`: the `vireo` command line. The binary (`main.rs`) parses arguments, sets
//! up logging and maps outcomes to exit codes; [`client`] is its side of the operator API
//! (one request per command, answers rendered for people or as JSON).
//!
//! Everything else lives in the crates below it (see ARCHITECTURE.md): `vireo-server` for
//! `vireo serve`, `vireo-demo` for `vireo demo` (the default `demo` feature; without it the
//! binary builds without the proxy).

pub mod client;
