#!/usr/bin/env bash
# The cost of authentication and TLS on the control plane's API and on the proxies' watch
# (heartbeats), as requests per second, same machine, same run.
#
#   benches/api/overhead.sh            # builds the release `vireo`, 10 s per case
#   SECONDS_PER=5 CONNECTIONS=32 benches/api/overhead.sh
#
# Two `vireo serve` processes (plaintext, and `--tls auto`), each pinned to CPU 0; wrk (one
# thread, keep-alive connections) pinned to CPU 1. Cases:
#   healthz    GET /healthz             public: no authentication (the baseline)
#   whoami     GET /api/v1/whoami       a token checked, a trivial handler
#   rollouts   GET /api/v1/rollouts     a viewer's read (an empty list: the handler's own cost is small)
#   heartbeat  POST /api/v1/proxy/status  a proxy-role token, a heartbeat body (the watch's write path)
# Auth's cost is whoami against healthz; TLS's is each case's https run against its plaintext
# one. Connections are kept alive, as proxies and the CLI's pool keep them: the figures are
# per request, not per handshake. Writes benches/api/last-run.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_PER=${SECONDS_PER:-10}
CONNECTIONS=${CONNECTIONS:-16}
work=$(mktemp -d)
source benches/load/lib.sh
command -v wrk >/dev/null || scripts/ensure-deps.sh bench

if [ -z "${VIREO_BIN:-}" ]; then
  cargo build --release -q -p vireo-control --bin vireo
  VIREO_BIN=target/release/vireo
fi

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
plain=127.0.0.1:$(port)
tls=127.0.0.1:$(port)
RUST_LOG=warn taskset -c 0 "$VIREO_BIN" serve --listen "$plain" --data-dir "$work/plain" 2>"$work/plain.log" & pids+=($!)
RUST_LOG=warn taskset -c 0 "$VIREO_BIN" serve --listen "$tls" --data-dir "$work/tls" --tls auto 2>"$work/tls.log" & pids+=($!)
wait_port "$plain"; wait_port "$tls"
for _ in $(seq 1 100); do [ -s "$work/tls/admin.token" ] && [ -s "$work/tls/tls/ca.pem" ] && break; sleep 0.05; done

token() { # base data-dir role name
  local ca=(); [ "$1" = "https://$tls" ] && ca=(--ca "$2/tls/ca.pem")
  "$VIREO_BIN" token create --server "$1" --token-file "$2/admin.token" "${ca[@]}" --role "$3" --name "$4" 2>/dev/null | tail -1
}

cat > "$work/heartbeat.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.body = '{"proxy":"bench-0","applied_version":1,"in_flight":{},"slo":{}}'
LUA

run() { # url token [script]
  local args=(-t1 -c"$CONNECTIONS" -d"${SECONDS_PER}s" --latency)
  [ -n "$2" ] && args+=(-H "Authorization: Bearer $2")
  [ -n "${3:-}" ] && args+=(-s "$3")
  taskset -c 1 wrk "${args[@]}" "$1" | awk '/Requests\/sec/ {print $2}'
}

declare -A rps
for side in plain tls; do
  if [ $side = plain ]; then base="http://$plain"; dir="$work/plain"; else base="https://$tls"; dir="$work/tls"; fi
  viewer=$(token "$base" "$dir" viewer bench-viewer)
  proxy=$(token "$base" "$dir" proxy bench-proxy)
  rps[$side,healthz]=$(run "$base/healthz" "")
  rps[$side,whoami]=$(run "$base/api/v1/whoami" "$viewer")
  rps[$side,rollouts]=$(run "$base/api/v1/rollouts" "$viewer")
  rps[$side,heartbeat]=$(run "$base/api/v1/proxy/status" "$proxy" "$work/heartbeat.lua")
done

ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
{
  echo "# API overhead: authentication and TLS (requests/s)"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs, server on CPU 0, wrk -t1 -c$CONNECTIONS on CPU 1, ${SECONDS_PER}s per case, keep-alive."
  echo
  echo "| case | plaintext | TLS | TLS / plaintext |"
  echo "|---|---|---|---|"
  for c in healthz whoami rollouts heartbeat; do
    echo "| $c | ${rps[plain,$c]} | ${rps[tls,$c]} | $(ratio "${rps[tls,$c]}" "${rps[plain,$c]}") |"
  done
  echo
  echo "Authentication (whoami / healthz): plaintext $(ratio "${rps[plain,whoami]}" "${rps[plain,healthz]}"), TLS $(ratio "${rps[tls,whoami]}" "${rps[tls,healthz]}")."
} | tee benches/api/last-run.md
