#!/usr/bin/env bash
# The reliability campaign's long pass (issue 14): the fuzzers at the
# issue's sizes (10^6 control messages, 10^5 configurations), the fault
# storms at their long sizes, the signal-state check and 20 rounds each of
# power loss and power-off under qemu. The short versions of all of these
# run in .ci/run as ordinary tests; this script runs the same tests bigger.
#
#   bench/reliability/run.sh [PART...]   PART: fuzz storms signals power (default: all)
#
# Needs root (namespaces, cgroups, qemu). Raw output of each step goes to
# target/reliability/STEP.log; the summary (each step's result, wall time
# and the figure lines the tests print) goes to stdout and to
# target/reliability/summary.txt. docs/reliability.md quotes the last run.
# Env: MOONLIT_FUZZ_SEED, MOONLIT_STORM_SCALE (default long),
# POWER_ROUNDS (default 20).
set -uo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "run.sh: needs root" >&2; exit 1; }
parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(fuzz storms signals power)
out=target/reliability
mkdir -p "$out"
summary="$out/summary.txt"
: >"$summary"
failed=0

say() { echo "$*" >>"$summary"; echo "$*" >&2; }

# step NAME FILTER ENV... -- CARGO-TEST-ARGS...: one cargo test run, its log,
# its figure lines (those matching FILTER) in the summary.
step() {
  local name=$1 filter=$2; shift 2
  local envs=()
  while [ "$1" != -- ]; do envs+=("$1"); shift; done
  shift
  local log="$out/$name.log" t0 t1 rc
  t0=$(date +%s)
  env "${envs[@]}" cargo test --locked "$@" -- --nocapture --test-threads=1 >"$log" 2>&1
  rc=$?
  t1=$(date +%s)
  if [ $rc -eq 0 ]; then say "## $name: passed in $((t1 - t0)) s"; else say "## $name: FAILED (exit $rc) after $((t1 - t0)) s, see $log"; failed=1; fi
  grep -E "$filter" "$log" | sed 's/^/    /' >>"$summary"
  grep -E "^test result|panicked at" "$log" | sed 's/^/    /' >>"$summary"
}

say "# moonlit reliability long pass, $(date -u +%F' '%H:%M) UTC, $(nproc) cores, $(uname -r)"
./build-musl.sh >/dev/null || { echo "run.sh: build-musl.sh failed" >&2; exit 1; }
for p in "${parts[@]}"; do
  case "$p" in
    fuzz)
      step fuzz-control 'fuzz_control|seed' MOONLIT_FUZZ_SCALE=100 -- -p moonlit --test fuzz_control
      step fuzz-decls 'fuzz_decls|seed' MOONLIT_FUZZ_SCALE=50 -- -p moonlit-config --test fuzz_decls
      step fuzz-handover-doc 'fuzz|seed' MOONLIT_FUZZ_SCALE=50 -- -p moonlit --bin moonlit fuzz
      step fuzz-handover-live 'fuzz_handover|seed' MOONLIT_FUZZ_SCALE=10 -- -p moonlit --test fuzz_handover
      step fuzz-netlink 'fuzz|seed' MOONLIT_FUZZ_SCALE=50 -- -p moonlit-net --lib fuzz_tests
      step fuzz-inputs 'fuzz|seed' MOONLIT_FUZZ_SCALE=20 -- -p moonlit-sys --test fuzz_inputs
      ;;
    storms)
      step storms 'storm' "MOONLIT_STORM_SCALE=${MOONLIT_STORM_SCALE:-long}" -- -p moonlit --test storms --test storms_limits
      ;;
    signals)
      step signal-state 'probe|signal' X=1 -- -p moonlit --test signal_state
      ;;
    power)
      t0=$(date +%s)
      if LOG="$out/power.log" bench/reliability/powerloss.sh "${POWER_ROUNDS:-20}" >"$out/power-summary.txt" 2>&1; then
        say "## power: passed in $(( $(date +%s) - t0 )) s"
      else
        say "## power: FAILED after $(( $(date +%s) - t0 )) s, see $out/power.log"; failed=1
      fi
      sed 's/^/    /' "$out/power-summary.txt" >>"$summary"
      ;;
    *) echo "run.sh: unknown part '$p' (fuzz storms signals power)" >&2; exit 2 ;;
  esac
done
say "# done: $([ $failed = 0 ] && echo 'every step passed' || echo 'SOME STEPS FAILED')"
cat "$summary"
exit $failed
