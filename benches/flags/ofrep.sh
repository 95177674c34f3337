#!/usr/bin/env bash
# Flag evaluations per second on one core, with evaluation events on: `vireo serve` pinned to
# CPU 0 (its evaluation-event writer thread included), wrk pinned to CPU 1, OFREP single-flag
# evaluations of a fraction flag with a new targeting key per request.
#   benches/flags/ofrep.sh            DURATION=10s CONNECTIONS=32 to vary
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/ensure-deps.sh bench
cargo build --release -q -p vireo-control --bin vireo
duration=${DURATION:-10s}
connections=${CONNECTIONS:-32}
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
taskset -c 0 target/release/vireo serve --listen "127.0.0.1:$port" --data-dir "$dir/data" \
  >"$dir/serve.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
curl -sf -X POST "http://127.0.0.1:$port/api/v1/flags" --data-binary @- >/dev/null <<'YAML'
key: bench
variants: { on: true, off: false }
defaultVariant: off
rules: [ { attribute: tenant, in: [ acme ], variant: on } ]
fraction: { buckets: 100, variants: [ { variant: on, weight: 5 }, { variant: off, weight: 95 } ] }
YAML
cat >"$dir/ofrep.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, "/ofrep/v1/evaluate/flags/bench", nil,
    '{"context":{"targetingKey":"u-' .. n .. '","region":"eu-west"}}')
end
LUA
# Warm-up, then the measured run.
taskset -c 1 wrk -t1 -c"$connections" -d2s -s "$dir/ofrep.lua" "http://127.0.0.1:$port" >/dev/null
taskset -c 1 wrk -t1 -c"$connections" -d"$duration" --latency -s "$dir/ofrep.lua" "http://127.0.0.1:$port"
sleep 1
echo "evaluation events (queued, written, batches, waited for queue room):"
curl -sf "http://127.0.0.1:$port/api/v1/flags" | python3 -c 'import json,sys; print(json.load(sys.stdin)["evaluationEvents"])'
