#!/usr/bin/env bash
# Many connections: N idle keep-alive client connections (default 5 000), each having made one
# request, held open against nginx and vireo-proxy; reports the proxy's RSS with them open and
# the CPU it spends while they sit idle for SECS seconds.
#
#   benches/load/idle.sh                 # 5 000 connections, 10 s idle
#   CONNS=10000 SECS=20 benches/load/idle.sh
#
# One worker each. The client is a Python asyncio script (benches/load/hold.py). Results:
# stdout and benches/load/idle-last-run.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
CONNS=${CONNS:-5000}
SECS=${SECS:-10}
work=$(mktemp -d /tmp/vireo-idle.XXXXXX)
out=benches/load/idle-last-run.md
. benches/load/lib.sh

scripts/ensure-deps.sh bench
cargo build --release --locked -p vireo-proxy --bin vireo-proxy
bin=target/release
ulimit -n $((CONNS * 2 + 1024))

BACKEND=127.0.0.1:19061 P_NGINX=18161 P_VIREO=18163 A_VIREO=18263
mkdir -p "$work/backend/logs" "$work/nginx/logs"
cat > "$work/backend/nginx.conf" <<NGINX
worker_processes 1; daemon off; pid $work/backend/pid; error_log stderr error;
events { worker_connections 4096; }
http { $(temp_paths "$work/backend") server { listen $BACKEND; location / { return 200 "ok"; } } }
NGINX
nginx -p "$work/backend" -c "$work/backend/nginx.conf" & pids+=($!)
wait_port $BACKEND
cat > "$work/nginx/nginx.conf" <<NGINX
worker_processes 1; worker_rlimit_nofile $((CONNS * 2 + 1024)); daemon off; pid $work/nginx/pid; error_log stderr error;
events { worker_connections $((CONNS * 2 + 1024)); }
http { $(temp_paths "$work/nginx") keepalive_timeout 120s;
  upstream be { server $BACKEND; keepalive 64; }
  server { listen 127.0.0.1:$P_NGINX backlog=8192;
    location / { proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
NGINX
cat > "$work/vireo.yaml" <<VIREO
listen: 127.0.0.1:$P_VIREO
admin: 127.0.0.1:$A_VIREO
threads: 1
routes:
  - name: r
    split:
      backends: [ { name: b, version: v1, addrs: ["$BACKEND"], weight: 1 } ]
VIREO

rows=()
measure() { # name port pids...
  local name=$1 port=$2; shift 2
  local base
  base=$(rss_kb "$@")
  # hold.py opens the connections, prints "open", holds them SECS + 2 s, then exits.
  coproc HOLD { python3 benches/load/hold.py 127.0.0.1 "$port" "$CONNS" $((SECS + 2)); }
  local line
  read -r line <&"${HOLD[0]}"
  [ "${line%% *}" = open ] || { echo "$name: $line" >&2; return 1; }
  sleep 1
  local rss before after
  rss=$(rss_kb "$@")
  before=$(cpu_ticks "$@")
  sleep "$SECS"
  after=$(cpu_ticks "$@")
  wait "$HOLD_PID" 2>/dev/null || true
  local cpu_ms=$(( (after - before) * 1000 / $(getconf CLK_TCK) ))
  rows+=("| $name | $CONNS (${line#open }) | $((base / 1024)) MB | $((rss / 1024)) MB | $(( (rss - base) * 1024 / CONNS )) B | $cpu_ms ms in ${SECS}s |")
  echo "$name: ${line}, rss $((base / 1024)) -> $((rss / 1024)) MB, idle cpu ${cpu_ms} ms" >&2
}

nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" & ngx=$!; pids+=($ngx)
wait_port 127.0.0.1:$P_NGINX
# shellcheck disable=SC2046
measure nginx $P_NGINX $(pgrep -P $ngx | tr '\n' ' ')
kill $ngx; wait $ngx 2>/dev/null || true

RUST_LOG=error "$bin/vireo-proxy" --config "$work/vireo.yaml" & vp=$!; pids+=($vp)
wait_port 127.0.0.1:$P_VIREO
measure vireo-proxy $P_VIREO $vp
kill $vp; wait $vp 2>/dev/null || true

{
  echo "Idle keep-alive connections, $(date -u +%Y-%m-%dT%H:%MZ), one worker each"
  echo
  echo "| target | connections (answered) | RSS before | RSS with them open | per connection | CPU while idle |"
  echo "|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
} | tee "$out"
