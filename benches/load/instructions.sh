#!/usr/bin/env bash
# User-space instructions per request, counted by callgrind: stable on this noisy VM where
# CPU time swings with steal. Same workload as compare.sh (keep-alive, a 5 % split hashed on a
# varying x-user-id), smaller: valgrind runs the proxy ~50 times slower.
#
#   benches/load/instructions.sh                      # nginx and vireo-proxy, 10 s each
#   TARGETS=vireo-proxy SECS=20 benches/load/instructions.sh
#   VIREO_BIN=/path/to/other/vireo-proxy benches/load/instructions.sh   # e.g. an older build
#   ANNOTATE=1 benches/load/instructions.sh           # also the load run's top functions
#                     (benches/load/TARGET.callgrind-top.txt) and its profile (/tmp/TARGET.load.cg)
#
# Each target runs twice under callgrind for SECS seconds: idle, then under load. Instructions
# per request = (load total - idle total) / requests served, so start-up, the idle timers and
# shutdown cancel out. The backends (one nginx worker) run outside valgrind.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${SECS:-10}
TARGETS=${TARGETS:-nginx vireo-proxy}
CONNS=${CONNS:-16}
work=$(mktemp -d /tmp/vireo-instr.XXXXXX)
. benches/load/lib.sh

scripts/ensure-deps.sh bench
if [ -z "${VIREO_BIN:-}" ]; then
  cargo build --release --locked -p vireo-proxy --bin vireo-proxy
  VIREO_BIN=target/release/vireo-proxy
fi

STABLE=127.0.0.1:19011 CANARY=127.0.0.1:19012 PORT=18091 ADMIN=18191
mkdir -p "$work/backends/logs" "$work/nginx/logs"
cat > "$work/backends/nginx.conf" <<NGINX
worker_processes 1; daemon off; pid $work/backends/pid; error_log stderr error;
events { worker_connections 4096; }
http { $(temp_paths "$work/backends") keepalive_requests 1000000;
  server { listen $STABLE; location / { return 200 "stable-v1"; } }
  server { listen $CANARY; location / { return 200 "canary-v2"; } } }
NGINX
nginx -p "$work/backends" -c "$work/backends/nginx.conf" & pids+=($!)
wait_port $STABLE

# The nginx under measurement: no master process, so callgrind sees the one serving process.
cat > "$work/nginx/nginx.conf" <<NGINX
worker_processes 1; master_process off; daemon off; pid $work/nginx/pid; error_log stderr error;
events { worker_connections 4096; }
http { $(temp_paths "$work/nginx") keepalive_requests 1000000;
  upstream stable { server $STABLE; keepalive 64; keepalive_requests 1000000; }
  upstream canary { server $CANARY; keepalive 64; keepalive_requests 1000000; }
  split_clients "\${http_x_user_id}" \$backend { 5% canary; * stable; }
  server { listen 127.0.0.1:$PORT;
    location / { proxy_pass http://\$backend; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
NGINX
cat > "$work/vireo.yaml" <<VIREO
listen: 127.0.0.1:$PORT
admin: 127.0.0.1:$ADMIN
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
cat > "$work/users.lua" <<'LUA'
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/", { ["x-user-id"] = "user-" .. tostring(math.random(1, 1000000)) .. "-" .. n })
end
LUA

# run TARGET MODE(idle|load) -> prints "total_instructions requests"
run() {
  local target=$1 mode=$2 out="$work/$1.$2.cg" cmd
  case $target in
    nginx) cmd=(nginx -p "$work/nginx" -c "$work/nginx/nginx.conf") ;;
    *) cmd=("$VIREO_BIN" --config "$work/vireo.yaml") ;;
  esac
  RUST_LOG=error valgrind --tool=callgrind --callgrind-out-file="$out" "${cmd[@]}" 2>"$work/$target.$mode.log" & local p=$!
  pids+=($p)
  wait_port 127.0.0.1:$PORT 1200
  local reqs=0
  if [ "$mode" = load ]; then
    wrk -t1 -c"$CONNS" -d"${SECS}s" -s "$work/users.lua" "http://127.0.0.1:$PORT/" > "$work/$target.wrk"
    reqs=$(awk '/requests in/ {print $1}' "$work/$target.wrk")
    if grep -q "Non-2xx\|Socket errors" "$work/$target.wrk"; then
      echo "$target: errors under load:" >&2; cat "$work/$target.wrk" >&2
    fi
  else
    sleep "$SECS"
  fi
  kill -TERM $p; wait $p 2>/dev/null || true
  local total
  total=$(awk '/^(summary|totals):/ {print $2}' "$out" | tail -1)
  echo "$total $reqs"
  if [ "$mode" = load ] && [ -n "${ANNOTATE:-}" ]; then
    callgrind_annotate --inclusive=no "$out" 2>/dev/null | sed -n '1,45p' > "$work/$target.top"
    cp "$work/$target.top" "benches/load/$target.callgrind-top.txt"; cp "$out" "/tmp/$target.load.cg"
  fi
  if [ "$mode" = load ] && [ "$reqs" = 0 ]; then
    echo "$target served nothing; its log:" >&2; cat "$work/$target.$mode.log" >&2; cat "$work/$target.wrk" >&2
  fi
}

printf '| target | instructions/request | requests measured |\n|---|---|---|\n'
for t in $TARGETS; do
  read -r idle _ < <(run "$t" idle)
  read -r load reqs < <(run "$t" load)
  awk -v t="$t" -v i="$idle" -v l="$load" -v n="$reqs" \
    'BEGIN { printf "| %s | %.1f k | %d |\n", t, (l - i) / n / 1000, n }'
done
