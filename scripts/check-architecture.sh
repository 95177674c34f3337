#!/usr/bin/env bash
# The crate boundaries that ARCHITECTURE.md calls invariants, checked on the resolved
# dependency graph (`cargo tree -e normal`: what a crate links, dev-dependencies aside).
# Exits 1 naming every violation. Part of scripts/test.sh, so CI fails on one.
#
#   scripts/check-architecture.sh          check
#   scripts/check-architecture.sh --self-test   also prove each rule can fail
set -euo pipefail
cd "$(dirname "$0")/.."

# crate: packages that must not be in its normal dependency tree.
declare -A forbidden=(
  [vireo-types]="tokio hyper hyper-util axum rusqlite pingora sigstore"
  [vireo-core]="tokio hyper hyper-util axum rusqlite pingora sigstore"
  [vireo-api]="tokio hyper hyper-util axum rusqlite pingora"
  [vireo-evidence]="rusqlite hyper-util axum pingora"
  [vireo-store]="hyper-util axum pingora"
  [vireo-engine]="axum pingora"
  [vireo-server]="pingora vireo-kubesim"
  # The controller drives the engine through its Handle, as the API does; it is not part of
  # the API server, and never links the simulator it is tested against.
  [vireo-k8s]="axum pingora vireo-server vireo-kubesim"
  # The API simulator is a test fixture: nothing that ships links it.
  [vireo-control]="vireo-kubesim"
  [vireo-auth]="rusqlite axum pingora sigstore"
  # The Kubernetes resources are a wire API: no client, runtime or store (the controller is
  # another crate).
  [vireo-k8s-api]="tokio hyper hyper-util axum rusqlite pingora sigstore kube-client kube-runtime"
  # The data plane: no database, no API server, no evidence stack, and the request path on hyper
  # + tower, not pingora's proxy framework (the data-plane issue's measurements; see
  # ARCHITECTURE.md). No Vireo crate but the allowed ones, below.
  [vireo-proxy]="rusqlite axum sigstore pingora pingora-core pingora-proxy"
)
# crate: the only Vireo crates allowed in its tree (an allow-list, so a new crate is caught).
declare -A vireo_allowed=(
  [vireo-proxy]="vireo-proxy vireo-types vireo-http"
  [vireo-types]="vireo-types"
  [vireo-core]="vireo-core vireo-types"
  [vireo-api]="vireo-api vireo-core vireo-types"
  [vireo-evidence]="vireo-evidence vireo-core vireo-types"
  [vireo-auth]="vireo-auth vireo-http"
  [vireo-k8s-api]="vireo-k8s-api vireo-core vireo-types"
)

tree() {
  cargo tree -p "$1" -e normal --prefix none --locked --offline 2>/dev/null |
    awk '{print $1}' | sort -u
}

violations=0
check() { # crate, forbidden list, dependency list (one per line)
  local crate=$1 deny=$2 deps=$3 bad=()
  for d in $deny; do
    if grep -qx -- "$d" <<<"$deps"; then bad+=("$d"); fi
  done
  if [ ${#bad[@]} -gt 0 ]; then
    echo "architecture: $crate depends on ${bad[*]} (forbidden: see ARCHITECTURE.md, Invariants)" >&2
    return 1
  fi
}

# The Vireo crates in `deps` that `allowed` does not list (empty: none).
strays() { # allowed list, dependency list
  local allowed=" $1 " d out=()
  while read -r d; do
    case "$d" in vireo-*) [[ "$allowed" == *" $d "* ]] || out+=("$d") ;; esac
  done <<<"$2"
  echo "${out[*]:-}"
}

for crate in "${!forbidden[@]}"; do
  deps=$(tree "$crate")
  if [ -z "$deps" ]; then
    echo "architecture: cannot read the dependency tree of $crate" >&2
    violations=$((violations + 1))
    continue
  fi
  check "$crate" "${forbidden[$crate]}" "$deps" || violations=$((violations + 1))
  if [ -n "${vireo_allowed[$crate]:-}" ]; then
    bad=$(strays "${vireo_allowed[$crate]}" "$deps")
    if [ -n "$bad" ]; then
      echo "architecture: $crate depends on $bad (allowed: ${vireo_allowed[$crate]})" >&2
      violations=$((violations + 1))
    fi
  fi
done

if [ "${1:-}" = --self-test ]; then
  # Each rule must be able to fail: feed it a tree that contains what it forbids.
  for crate in "${!forbidden[@]}"; do
    first=${forbidden[$crate]%% *}
    if check "$crate" "${forbidden[$crate]}" "$(printf 'serde\n%s\n' "$first")" 2>/dev/null; then
      echo "architecture: the rule for $crate does not catch $first" >&2
      violations=$((violations + 1))
    fi
  done
  for crate in "${!vireo_allowed[@]}"; do
    if [ -z "$(strays "${vireo_allowed[$crate]}" "$(printf 'serde\nvireo-someday\n')")" ]; then
      echo "architecture: the allow-list of $crate does not catch a new vireo crate" >&2
      violations=$((violations + 1))
    fi
  done
fi

if [ "$violations" -gt 0 ]; then
  exit 1
fi
echo "architecture: crate boundaries hold (${#forbidden[@]} crates checked)"
