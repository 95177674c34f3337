#!/usr/bin/env bash
# The test command: everything CI checks, from a fresh clone.
# Installs cmake and prometheus (Debian) when missing, then: rustfmt, clippy -D warnings, the
# crate-boundary check (scripts/check-architecture.sh), and every test of the workspace in one
# cargo profile.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-deps.sh test
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
scripts/check-architecture.sh --self-test
# The end-to-end tests run the real binaries (tests/e2e), so they are built first.
cargo build --workspace --bins --locked
cargo test --workspace --locked
