#!/usr/bin/env bash
# Load comparison: direct to the backend, nginx (split_clients), haproxy, vireo-proxy, and
# vireo-proxy with metrics and SLO recording switched off (what Vireo's measuring costs); on
# request, vireo-proxy-pool-per-connection (the upstream pool design not chosen).
# Same machine, same run, same workload: HTTP/1.1 keep-alive, 64 connections, small responses,
# a 5 % canary split hashed on x-user-id with a different id per request. Loopback only; every
# run is bounded by DURATION.
#
#   benches/load/compare.sh                       # 5 rounds x 10 s per target, one worker each
#   ROUNDS=7 DURATION=20 benches/load/compare.sh
#   THREADS=2 benches/load/compare.sh             # every proxy with two workers
#   TARGETS="nginx vireo-proxy" benches/load/compare.sh    # a subset
#   BASELINE_BIN=/tmp/old/vireo-proxy benches/load/compare.sh   # adds target `baseline`: another
#                                                 # vireo-proxy build (e.g. an older commit)
#
# With THREADS=1 (the default) each proxy runs on core 1 alone (taskset), and wrk and the
# backends (one nginx worker returning a fixed 9-byte body) on core 0, so the proxies do not
# compete with the load for a core. With THREADS=2 nothing is pinned.
#
# Each round runs every target once, in the same order, so a slow stretch of this shared VM
# hits every target of that round alike; the summary gives medians over rounds and, per round,
# each target's ratio to nginx. Reported per target: requests/s, p50 and p99 latency (wrk), peak
# RSS of the serving processes (VmHWM), and their CPU time per request (utime+stime from /proc,
# before/after the measured run). Results go to stdout and benches/load/last-run.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-5}
THREADS=${THREADS:-1}
TARGETS=${TARGETS:-direct nginx haproxy vireo-proxy vireo-proxy-unrecorded}
CONNS=${CONNS:-64}
WRK_THREADS=${WRK_THREADS:-2}
WARMUP=${WARMUP:-2}
work=$(mktemp -d /tmp/vireo-load.XXXXXX)
out=benches/load/last-run.md

scripts/ensure-deps.sh bench
cargo build --release --locked -p vireo-proxy --bin vireo-proxy
bin=target/release
. benches/load/lib.sh

if [ "$THREADS" = 1 ]; then
  load_cpu=(taskset -c 0) proxy_cpu=(taskset -c 1)
else
  load_cpu=() proxy_cpu=()
fi

STABLE=127.0.0.1:19001 CANARY=127.0.0.1:19002
P_NGINX=18081 P_HAPROXY=18082 P_VIREO=18083 A_VIREO=18183

nginx_common() { # dir
  cat <<NGINX
daemon off;
pid $1/nginx.pid;
error_log stderr error;
events { worker_connections 8192; }
NGINX
}
nginx_temp() { # dir
  cat <<NGINX
  access_log off;
  client_body_temp_path $1/body;
  proxy_temp_path $1/proxy;
  fastcgi_temp_path $1/fastcgi;
  uwsgi_temp_path $1/uwsgi;
  scgi_temp_path $1/scgi;
NGINX
}

# The backends: one nginx worker, two ports, a fixed body naming the version.
mkdir -p "$work/backends/logs"
{
  echo "worker_processes 1;"; nginx_common "$work/backends"
  echo "http {"; nginx_temp "$work/backends"
  cat <<NGINX
  keepalive_requests 1000000;
  server { listen $STABLE; location / { return 200 "stable-v1"; } }
  server { listen $CANARY; location / { return 200 "canary-v2"; } }
}
NGINX
} > "$work/backends/nginx.conf"
"${load_cpu[@]}" nginx -p "$work/backends" -c "$work/backends/nginx.conf" & pids+=($!)
wait_port $STABLE; wait_port $CANARY

cat > "$work/users.lua" <<'LUA'
-- A different user id per request, so the split hashes real variety.
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/", { ["x-user-id"] = "user-" .. tostring(math.random(1, 1000000)) .. "-" .. n })
end
LUA

mkdir -p "$work/nginx/logs"
{
  echo "worker_processes $THREADS;"; nginx_common "$work/nginx"
  echo "http {"; nginx_temp "$work/nginx"
  cat <<NGINX
  keepalive_requests 1000000;
  upstream stable { server $STABLE; keepalive 64; keepalive_requests 1000000; }
  upstream canary { server $CANARY; keepalive 64; keepalive_requests 1000000; }
  split_clients "\${http_x_user_id}" \$backend { 5% canary; * stable; }
  server {
    listen 127.0.0.1:$P_NGINX;
    location / {
      proxy_pass http://\$backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
NGINX
} > "$work/nginx/nginx.conf"

cat > "$work/haproxy.cfg" <<HAPROXY
global
  nbthread $THREADS
  maxconn 8192
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend fe
  bind 127.0.0.1:$P_HAPROXY
  default_backend be
backend be
  balance hdr(x-user-id)
  hash-type consistent
  server canary $CANARY weight 5
  server stable $STABLE weight 95
HAPROXY

cat > "$work/vireo.yaml" <<VIREO
listen: 127.0.0.1:$P_VIREO
admin: 127.0.0.1:$A_VIREO
threads: $THREADS
routes:
  - name: bench
    split:
      key: { header: x-user-id }
      salt: bench-v2
      backends:
        - { name: canary, version: v2, addrs: ["$CANARY"], weight: 5 }
        - { name: stable, version: v1, addrs: ["$STABLE"], weight: 95 }
VIREO

rows="$work/rows.tsv"
printf 'round\ttarget\trps\tp50\tp99\trss_kb\tcpu_us\terrors\n' > "$rows"
# measure ROUND NAME PORT PID...  (PIDs: the processes that serve requests; none for direct)
measure() {
  local round=$1 name=$2 port=$3; shift 3
  local url="http://127.0.0.1:$port/"
  "${load_cpu[@]}" wrk -t"$WRK_THREADS" -c"$CONNS" -d"${WARMUP}s" -s "$work/users.lua" "$url" >/dev/null
  local before=0; [ $# -gt 0 ] && before=$(cpu_ticks "$@")
  "${load_cpu[@]}" wrk -t"$WRK_THREADS" -c"$CONNS" -d"${DURATION}s" --latency -s "$work/users.lua" "$url" > "$work/$name.wrk"
  local after=0; [ $# -gt 0 ] && after=$(cpu_ticks "$@")
  local reqs rps p50 p99 errs rss=0 cpu_us=0
  reqs=$(awk '/requests in/ {print $1}' "$work/$name.wrk")
  rps=$(awk '/Requests\/sec/ {printf "%.0f", $2}' "$work/$name.wrk")
  p50=$(awk '/^ +50%/ {print $2}' "$work/$name.wrk")
  p99=$(awk '/^ +99%/ {print $2}' "$work/$name.wrk")
  errs=$(awk '/Non-2xx|Socket errors/ {s = s $0 "; "} END {print (s == "" ? "0" : s)}' "$work/$name.wrk")
  if [ $# -gt 0 ]; then
    rss=$(peak_rss_kb "$@")
    cpu_us=$(awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v n="$reqs" 'BEGIN {printf "%.1f", t / hz / n * 1e6}')
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$name" "$rps" "$p50" "$p99" "$rss" "$cpu_us" "$errs" >> "$rows"
  echo "round $round $name: $rps req/s, p50 $p50, p99 $p99, rss $((rss / 1024)) MB, cpu/req ${cpu_us}µs, errors $errs" >&2
}

wanted() { [[ " $TARGETS " == *" $1 "* ]]; }

vireo() { # round name binary [env...]
  local round=$1 name=$2 exe=$3; shift 3
  env RUST_LOG=error "$@" "${proxy_cpu[@]}" "$exe" --config "$work/vireo.yaml" & local vp=$!
  pids+=($vp)
  wait_port 127.0.0.1:$P_VIREO
  measure "$round" "$name" $P_VIREO $vp
  kill $vp; wait $vp 2>/dev/null || true
}

for round in $(seq 1 "$ROUNDS"); do
  wanted direct && measure "$round" direct "${STABLE#*:}"

  if wanted nginx; then
    "${proxy_cpu[@]}" nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" & ngx=$!; pids+=($ngx)
    wait_port 127.0.0.1:$P_NGINX
    ngx_workers=$(pgrep -P $ngx | tr '\n' ' ')
    # shellcheck disable=SC2086
    measure "$round" nginx $P_NGINX $ngx_workers
    kill $ngx; wait $ngx 2>/dev/null || true
  fi

  if wanted haproxy; then
    "${proxy_cpu[@]}" haproxy -f "$work/haproxy.cfg" -db & hap=$!; pids+=($hap)
    wait_port 127.0.0.1:$P_HAPROXY
    measure "$round" haproxy $P_HAPROXY $hap
    kill $hap; wait $hap 2>/dev/null || true
  fi

  wanted vireo-proxy && vireo "$round" vireo-proxy "$bin/vireo-proxy"
  [ -n "${BASELINE_BIN:-}" ] && vireo "$round" baseline "$BASELINE_BIN"
  # Bench-only switch (see proxy/src/metrics.rs): in-flight counts stay, counters, histograms
  # and SLO windows are skipped.
  wanted vireo-proxy-unrecorded && vireo "$round" vireo-proxy-unrecorded "$bin/vireo-proxy" VIREO_PROXY_BENCH_UNRECORDED=1
  # Bench-only design comparison (proxy/src/server.rs): upstream connections owned by each
  # client connection instead of the worker's shared pool.
  wanted vireo-proxy-pool-per-connection && vireo "$round" vireo-proxy-pool-per-connection "$bin/vireo-proxy" VIREO_PROXY_BENCH_POOL=connection
done

{
  echo "Load comparison, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $ROUNDS rounds, wrk -t$WRK_THREADS -c$CONNS -d${DURATION}s, 5 % split on x-user-id, $THREADS worker(s) per proxy$([ "$THREADS" = 1 ] && echo ', proxy pinned to core 1, load and backends to core 0')"
  echo
  python3 benches/load/summarize.py "$rows"
  echo
  echo "versions: $(nginx -v 2>&1 | tr -d '\n'); $(haproxy -v | head -1); vireo-proxy $($bin/vireo-proxy --version | awk '{print $2}')"
} | tee "$out"
