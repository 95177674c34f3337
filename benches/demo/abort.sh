#!/usr/bin/env bash
# Abort figures: runs the faulty demo N times (default 5) with the release build and prints
# abort_to_zero_ms, drain_ms and the process's peak RSS of each run, then the medians.
#   benches/demo/abort.sh [N] [SPEED]
set -euo pipefail
cd "$(dirname "$0")/../.."
runs="${1:-5}"
speed="${2:-60}"
scripts/ensure-deps.sh build
cargo build --release --locked -p vireo-control --bin vireo >&2
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
for i in $(seq 1 "$runs"); do
  code=0
  target/release/vireo demo --scenario faulty --speed "$speed" --once --data-dir "$tmp/run-$i" \
    2>"$tmp/log-$i" | tail -n 1 >"$tmp/summary-$i.json" || code=$?
  if [ "$code" -ne 2 ]; then
    echo "run $i: expected exit 2 (aborted), got $code; log: " >&2
    cat "$tmp/log-$i" >&2
    exit 1
  fi
done
python3 - "$tmp" "$runs" <<'PY'
import json, statistics, sys
tmp, runs = sys.argv[1], int(sys.argv[2])
rows = [json.load(open(f"{tmp}/summary-{i}.json")) for i in range(1, runs + 1)]
print("| run | abort_to_zero_ms | drain_ms | canary requests after | peak RSS MB |")
print("|---:|---:|---:|---:|---:|")
for i, r in enumerate(rows, 1):
    print(f"| {i} | {r['abort_to_zero_ms']} | {r['drain_ms']} | {r['canary_requests_after_abort']} | {r.get('peak_rss_mb')} |")
med = lambda k: statistics.median(r[k] for r in rows)
print(f"| median | {med('abort_to_zero_ms')} | {med('drain_ms')} | | {med('peak_rss_mb')} |")
PY
