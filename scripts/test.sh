#!/usr/bin/env bash
# The test command: everything CI checks, from a fresh clone.
# Installs cmake and prometheus (Debian) when missing, then: rustfmt, clippy -D warnings, the
# crate-boundary check (scripts/check-architecture.sh), the Kubernetes manifests against the
# API schemas (scripts/validate-manifests.sh), and every test of the workspace in one
# cargo profile, the console's JavaScript tests and its browser tests, then a smoke run of every fuzz target.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-deps.sh test
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
scripts/check-architecture.sh --self-test
scripts/validate-manifests.sh
# The end-to-end tests run the real binaries (tests/e2e), so they are built first.
cargo build --workspace --bins --locked
cargo test --workspace --locked
# The console's logic (its in-browser verifier: Merkle vectors, canonical JSON, tar) under
# Node's test runner; the golden bundles it must agree on with `vireo verify` are a cargo test.
node --test crates/server/console/test/*.test.mjs
# The console end to end in Debian's chromium (playwright-core) against real `vireo demo`s:
# watched live, steered, verified, recomputed; screenshots in target/browser-shots/.
node --test tests/browser/
# Every fuzz target for a few seconds (nightly, cargo-fuzz): one that stops building or
# crashes at once is caught here; the long runs are `scripts/fuzz.sh --seconds 600`.
scripts/fuzz.sh --smoke
