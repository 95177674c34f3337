#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo-fuzz, libFuzzer) of every parser that reads network input.
#
#   scripts/fuzz.sh --smoke                 # every target a few seconds (what CI runs)
#   scripts/fuzz.sh --seconds 600 [TARGET…] # the long runs; crashes land in fuzz/artifacts/
#   scripts/fuzz.sh --list
#
# Targets are in fuzz/fuzz_targets/, seeds (small, hand-made or copied from the tests'
# vectors) in fuzz/seeds/TARGET, the corpus libFuzzer grows in fuzz/corpus/TARGET
# (committed minimised: `cargo +nightly fuzz cmin TARGET`). Needs the nightly toolchain
# (rustup) and installs cargo-fuzz from crates.io when missing. Built without a sanitizer:
# the code under test is safe Rust, so what we look for are panics, overflows (debug
# assertions are on), unbounded memory and time; that build is also a third of the time.
# Each run prints `TARGET: N execs, cov C, ft F` (libFuzzer's last status line).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=--seconds; seconds=600
case "${1:-}" in
  --smoke) mode=--smoke; seconds=${SMOKE_SECONDS:-5}; shift ;;
  --seconds) seconds=$2; shift 2 ;;
  --list) ls fuzz/fuzz_targets | sed 's/\.rs$//'; exit 0 ;;
esac
if ! rustup toolchain list | grep -q '^nightly'; then
  rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(ls fuzz/fuzz_targets | sed 's/\.rs$//')
flags=(--sanitizer none --debug-assertions --release)
(cd fuzz && cargo +nightly fuzz build "${flags[@]}")
status=0
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  log=$(mktemp)
  if (cd fuzz && cargo +nightly fuzz run "${flags[@]}" "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        -artifact_prefix="artifacts/$t/") >"$log" 2>&1; then
    line=$(grep -E '^#[0-9]+' "$log" | tail -1)
    execs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}')
    echo "$t: ${execs:-?} execs; ${line:-no status line}"
  else
    echo "$t: FAILED (crash or build error); the log:" >&2
    tail -40 "$log" >&2
    status=1
  fi
  rm -f "$log"
done
exit $status
