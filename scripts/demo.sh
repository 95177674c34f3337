#!/usr/bin/env bash
# `vireo demo` through cargo: installs cmake when missing (aws-lc-sys's build needs it), builds the
# release binary, and runs the demo with any arguments given, e.g.
#   scripts/demo.sh --speed 12                      # the 12-minute rollout in one minute
#   scripts/demo.sh --scenario faulty --speed 12    # a bad canary, aborted to 0 %
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-deps.sh build
exec cargo run --release --locked -q -p vireo-control --bin vireo -- demo "$@"
