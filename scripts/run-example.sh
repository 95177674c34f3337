#!/usr/bin/env bash
# Runs the proxy on deploy/examples/proxy.yaml with two example backends (stable v1 on :9001,
# canary v2 on :9002). Ctrl-C stops all three.
#   curl -H 'x-user-id: u-42' http://127.0.0.1:4140/      # the same user always gets the same version
#   curl http://127.0.0.1:4191/slo?window=60s             # native SLO figures
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-deps.sh build
cargo build --release --locked -p vireo-proxy -p vireo-benches --bin vireo-proxy --bin example-backend
bin=target/release
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
"$bin/example-backend" --listen 127.0.0.1:9001 --name stable-v1 & pids+=($!)
"$bin/example-backend" --listen 127.0.0.1:9002 --name canary-v2 & pids+=($!)
# A copy, so editing it (hot reload) leaves the tracked example alone.
mkdir -p target && cp deploy/examples/proxy.yaml target/example-proxy.yaml
"$bin/vireo-proxy" --config target/example-proxy.yaml & pids+=($!)
sleep 1
cat <<TXT

vireo-proxy is listening on 127.0.0.1:4140 (admin 127.0.0.1:4191), canary at 5 %.
  for u in \$(seq 1 20); do curl -s -H "x-user-id: u-\$u" http://127.0.0.1:4140/; done
  curl -s http://127.0.0.1:4191/slo?window=60s
  edit target/example-proxy.yaml (e.g. canary weight 50): it reloads within a second
Ctrl-C to stop.
TXT
wait "${pids[2]}"
