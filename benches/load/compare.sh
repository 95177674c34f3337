#!/usr/bin/env bash
# Load comparison: direct to the backend, nginx (split_clients), haproxy, vireo-proxy.
# Same machine, same run, same workload: HTTP/1.1 keep-alive, 64 connections, small responses,
# a 5 % canary split hashed on x-user-id with a different id per request. Each proxy runs one
# worker thread. Loopback only; every run is bounded by DURATION.
#
#   benches/load/compare.sh              # 10 s per target
#   DURATION=30 benches/load/compare.sh
#   TARGETS="nginx vireo-proxy" benches/load/compare.sh    # a subset
#
# Reports per target: requests/s, p50 and p99 latency (wrk), peak RSS of the serving process
# (VmHWM), and the proxy's own CPU time per request (utime+stime from /proc, before/after).
# On 2 cores wrk and the backend compete with the proxy, so CPU per request is the figure that
# compares proxies fairly. Results go to stdout and benches/load/last-run.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=${DURATION:-10}
TARGETS=${TARGETS:-direct nginx haproxy vireo-proxy}
CONNS=${CONNS:-64}
WRK_THREADS=${WRK_THREADS:-2}
WARMUP=${WARMUP:-2}
work=$(mktemp -d /tmp/vireo-load.XXXXXX)
out=benches/load/last-run.md

scripts/ensure-deps.sh bench
cargo build --release --locked -p vireo-proxy -p vireo-benches --bin vireo-proxy --bin example-backend
bin=target/release
export PATH="$PATH:/usr/sbin"

STABLE=127.0.0.1:19001 CANARY=127.0.0.1:19002
P_NGINX=18081 P_HAPROXY=18082 P_VIREO=18083 A_VIREO=18183

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

wait_port() { # host:port
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listening on $1" >&2; return 1
}

"$bin/example-backend" --listen $STABLE --name stable-v1 --threads 1 & pids+=($!)
"$bin/example-backend" --listen $CANARY --name canary-v2 --threads 1 & pids+=($!)
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
cat > "$work/nginx/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $work/nginx/nginx.pid;
error_log stderr error;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  upstream stable { server $STABLE; keepalive 64; }
  upstream canary { server $CANARY; keepalive 64; }
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

cat > "$work/haproxy.cfg" <<HAPROXY
global
  nbthread 1
  maxconn 4096
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
threads: 1
routes:
  - name: bench
    split:
      key: { header: x-user-id }
      salt: bench-v2
      backends:
        - { name: canary, version: v2, addrs: ["$CANARY"], weight: 5 }
        - { name: stable, version: v1, addrs: ["$STABLE"], weight: 95 }
VIREO

cpu_ticks() { # pids... -> utime+stime in clock ticks, summed
  local t=0
  for p in "$@"; do
    # fields after the ")" of comm: state is $1, utime is $12, stime is $13
    t=$((t + $(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')))
  done
  echo $t
}
peak_rss_kb() { # pids... -> summed VmHWM
  local k=0
  for p in "$@"; do k=$((k + $(awk '/VmHWM/ {print $2}' "/proc/$p/status"))); done
  echo $k
}

rows=()
# run NAME PORT PID...  (PIDs: the processes that serve requests; empty for direct)
run() {
  local name=$1 port=$2; shift 2
  local url="http://127.0.0.1:$port/"
  wrk -t"$WRK_THREADS" -c"$CONNS" -d"${WARMUP}s" -s "$work/users.lua" "$url" >/dev/null
  local before=0; [ $# -gt 0 ] && before=$(cpu_ticks "$@")
  wrk -t"$WRK_THREADS" -c"$CONNS" -d"${DURATION}s" --latency -s "$work/users.lua" "$url" > "$work/$name.wrk"
  local after=0; [ $# -gt 0 ] && after=$(cpu_ticks "$@")
  local reqs rps p50 p99 errs rss cpu_us
  reqs=$(awk '/requests in/ {print $1}' "$work/$name.wrk")
  rps=$(awk '/Requests\/sec/ {printf "%.0f", $2}' "$work/$name.wrk")
  p50=$(awk '/^ +50%/ {print $2}' "$work/$name.wrk")
  p99=$(awk '/^ +99%/ {print $2}' "$work/$name.wrk")
  errs=$(awk '/Non-2xx|Socket errors/ {s = s $0 "; "} END {print (s == "" ? "0" : s)}' "$work/$name.wrk")
  if [ $# -gt 0 ]; then
    rss="$(( $(peak_rss_kb "$@") / 1024 )) MB"
    cpu_us=$(awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v n="$reqs" 'BEGIN {printf "%.1f", t / hz / n * 1e6}')
  else
    rss="—"; cpu_us="—"
  fi
  rows+=("| $name | $rps | $p50 | $p99 | $rss | $cpu_us | $errs |")
  echo "$name: $rps req/s, p50 $p50, p99 $p99, rss $rss, cpu/req ${cpu_us}µs, errors $errs" >&2
}

wanted() { [[ " $TARGETS " == *" $1 "* ]]; }

wanted direct && run direct "${STABLE#*:}"

if wanted nginx; then
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" & ngx=$!; pids+=($ngx)
wait_port 127.0.0.1:$P_NGINX
ngx_workers=$(pgrep -P $ngx | tr '\n' ' ')
# shellcheck disable=SC2086
run nginx $P_NGINX $ngx_workers
kill $ngx; wait $ngx 2>/dev/null || true
fi

if wanted haproxy; then
haproxy -f "$work/haproxy.cfg" -db & hap=$!; pids+=($hap)
wait_port 127.0.0.1:$P_HAPROXY
hap_workers=$(pgrep -P $hap | tr "\n" " " || true); hap_workers=${hap_workers:-$hap}
# shellcheck disable=SC2086
run haproxy $P_HAPROXY $hap_workers
kill $hap; wait $hap 2>/dev/null || true
fi

canary_share="(not run)"
if wanted vireo-proxy; then
RUST_LOG=error "$bin/vireo-proxy" --config "$work/vireo.yaml" & vp=$!; pids+=($vp)
wait_port 127.0.0.1:$P_VIREO
run vireo-proxy $P_VIREO $vp
canary_share=$(curl -s "http://127.0.0.1:$A_VIREO/slo?window=60s" | tr ',' '\n' | grep -o '"requests":[0-9]*' | head -2 | tr '\n' ' ')
kill $vp; wait $vp 2>/dev/null || true
fi

{
  echo "Load comparison, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, wrk -t$WRK_THREADS -c$CONNS -d${DURATION}s, 5 % split on x-user-id"
  echo
  echo "| target | req/s | p50 | p99 | peak RSS | proxy CPU µs/req | errors |"
  echo "|---|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
  echo
  echo "vireo /slo request counts (canary, stable) over the last minute: $canary_share"
  echo "versions: $(nginx -v 2>&1 | tr -d '\n'); $(haproxy -v | head -1); vireo-proxy $($bin/vireo-proxy --version | awk '{print $2}')"
} | tee "$out"
