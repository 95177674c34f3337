#!/usr/bin/env bash
# h2c: gRPC-style unary calls (POST, application/grpc, a 10-byte length-prefixed message, over
# HTTP/2 with prior knowledge) direct to an h2c backend, through nginx (`grpc_pass`) and
# through vireo-proxy (`protocol: h2c`). h2load: 16 connections, 10 streams each.
#
#   benches/load/h2c.sh                 # 3 rounds of 100 000 calls per target
#   ROUNDS=5 CALLS=300000 benches/load/h2c.sh
#
# The proxies run on core 1 with one worker, h2load and the backend (one nginx worker with a
# plaintext HTTP/2 listener) on core 0. Reported: calls/s and the proxy's CPU µs per call
# (utime+stime from /proc), medians over rounds. Results: stdout and benches/load/h2c-last-run.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-3}
CALLS=${CALLS:-100000}
work=$(mktemp -d /tmp/vireo-h2c.XXXXXX)
out=benches/load/h2c-last-run.md
. benches/load/lib.sh

scripts/ensure-deps.sh bench
cargo build --release --locked -p vireo-proxy --bin vireo-proxy
bin=target/release

BACKEND=127.0.0.1:19051 P_NGINX=18151 P_VIREO=18153 A_VIREO=18253
mkdir -p "$work/backend/logs" "$work/nginx/logs"
cat > "$work/backend/nginx.conf" <<NGINX
worker_processes 1; daemon off; pid $work/backend/pid; error_log stderr error;
events { worker_connections 4096; }
http { $(temp_paths "$work/backend") http2_max_requests 10000000; keepalive_requests 10000000;
  server { listen $BACKEND http2;
    location / { add_header grpc-status 0; return 200 "\0\0\0\0\5hello"; } } }
NGINX
taskset -c 0 nginx -p "$work/backend" -c "$work/backend/nginx.conf" & pids+=($!)
wait_port $BACKEND

cat > "$work/nginx/nginx.conf" <<NGINX
worker_processes 1; daemon off; pid $work/nginx/pid; error_log stderr error;
events { worker_connections 4096; }
http { $(temp_paths "$work/nginx") http2_max_requests 10000000; keepalive_requests 10000000;
  upstream be { server $BACKEND; keepalive 64; keepalive_requests 10000000; }
  server { listen 127.0.0.1:$P_NGINX http2;
    location / { grpc_pass grpc://be; } } }
NGINX
cat > "$work/vireo.yaml" <<VIREO
listen: 127.0.0.1:$P_VIREO
admin: 127.0.0.1:$A_VIREO
threads: 1
routes:
  - name: grpc
    split:
      backends:
        - { name: echo, version: v1, addrs: ["$BACKEND"], weight: 1, protocol: h2c }
VIREO
printf '\0\0\0\0\5hello' > "$work/message"

rows="$work/rows.tsv"
printf 'round\ttarget\tcalls_s\tcpu_us\tfailed\n' > "$rows"
measure() { # round name port pids...
  local round=$1 name=$2 port=$3; shift 3
  local h2=(taskset -c 0 h2load -c 16 -m 10 -d "$work/message" -H 'content-type: application/grpc' -H 'te: trailers' "http://127.0.0.1:$port/vireo.bench.Echo/Say")
  "${h2[@]}" -n 5000 >/dev/null
  local before=0; [ $# -gt 0 ] && before=$(cpu_ticks "$@")
  "${h2[@]}" -n "$CALLS" > "$work/$name.h2load"
  local after=0; [ $# -gt 0 ] && after=$(cpu_ticks "$@")
  local rps failed cpu=0
  rps=$(awk '/^finished in/ {printf "%.0f", $4}' "$work/$name.h2load")
  failed=$(awk '/^requests:/ {print $10}' "$work/$name.h2load")
  [ $# -gt 0 ] && cpu=$(awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v n="$CALLS" 'BEGIN {printf "%.1f", t / hz / n * 1e6}')
  printf '%s\t%s\t%s\t%s\t%s\n' "$round" "$name" "$rps" "$cpu" "$failed" >> "$rows"
  echo "round $round $name: $rps calls/s, cpu/call ${cpu}µs, failed $failed" >&2
}

for round in $(seq 1 "$ROUNDS"); do
  measure "$round" direct "${BACKEND#*:}"
  taskset -c 1 nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" & ngx=$!; pids+=($ngx)
  wait_port 127.0.0.1:$P_NGINX
  # shellcheck disable=SC2046
  measure "$round" nginx-grpc_pass $P_NGINX $(pgrep -P $ngx | tr '\n' ' ')
  kill $ngx; wait $ngx 2>/dev/null || true
  RUST_LOG=error taskset -c 1 "$bin/vireo-proxy" --config "$work/vireo.yaml" & vp=$!; pids+=($vp)
  wait_port 127.0.0.1:$P_VIREO
  measure "$round" vireo-proxy $P_VIREO $vp
  kill $vp; wait $vp 2>/dev/null || true
done

{
  echo "h2c unary calls, $(date -u +%Y-%m-%dT%H:%MZ), $ROUNDS rounds of $CALLS calls, h2load -c16 -m10, proxy on core 1, client and backend on core 0"
  echo
  echo "| target | calls/s | proxy CPU µs/call | failed |"
  echo "|---|---|---|---|"
  python3 - "$rows" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
for t in dict.fromkeys(r["target"] for r in rows):
    mine = [r for r in rows if r["target"] == t]
    rps = statistics.median(float(r["calls_s"]) for r in mine)
    cpu = statistics.median(float(r["cpu_us"]) for r in mine)
    failed = sum(int(r["failed"] or 0) for r in mine)
    print(f"| {t} | {rps:.0f} | {'—' if t == 'direct' else f'{cpu:.1f}'} | {failed} |")
PY
} | tee "$out"
