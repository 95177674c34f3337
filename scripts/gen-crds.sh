#!/usr/bin/env bash
# Regenerates crds/ from the resource types in crates/k8s-api (one CRD per file). A test
# (crates/k8s-api/tests/crds.rs) fails when the checked-in files differ from this output.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -f crds/*.yaml
cargo run -q -p vireo-k8s-api --bin vireo-gen-crds -- crds
