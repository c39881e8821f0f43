#!/bin/sh
# Where moonlit's boot time goes under TCG: runs `moonlit check` on the boot
# benchmark's configuration (it creates the Lua runtime and evaluates the
# modules: the "lua runtime" and "modules" steps of a boot) natively and
# under qemu's user-mode TCG (qemu-x86_64, Debian package qemu-user), counts
# the guest code blocks TCG had to translate, and, with perf, splits qemu's
# time between translating and running translated code.
# Usage: bench/images/tcg-profile.sh [RUNS]   (default 10)
# Prints a Markdown snippet; docs/bench-images.md quotes a run.
set -eu
cd "$(dirname "$0")/../.."
RUNS=${1:-10}
command -v qemu-x86_64 >/dev/null || {
  apt-get install -y -qq qemu-user >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq qemu-user >/dev/null; }
}
BIN=${MOONLIT_BIN:-$(./build-musl.sh)}
CFG=bench/images/moonlit-config
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ms() { # CMD...: median wall time of RUNS runs, in ms
  i=0
  while [ "$i" -lt "$RUNS" ]; do
    a=$(date +%s%N); "$@" >/dev/null 2>&1; b=$(date +%s%N)
    echo $(( (b - a) / 1000 ))
    i=$((i + 1))
  done | sort -n | awk '{v[NR]=$1} END {printf "%.1f", v[int((NR+1)/2)]/1000}'
}
native=$(ms "$BIN" check "$CFG")
tcg=$(ms qemu-x86_64 "$BIN" check "$CFG")
tcg_version=$(ms qemu-x86_64 "$BIN" --version)
qemu-x86_64 -d in_asm -D "$tmp/in_asm.log" "$BIN" check "$CFG" >/dev/null 2>&1
tbs=$(grep -c '^IN:' "$tmp/in_asm.log")
qemu-x86_64 -d in_asm -D "$tmp/in_asm_v.log" "$BIN" --version >/dev/null 2>&1
tbs_v=$(grep -c '^IN:' "$tmp/in_asm_v.log")
split="(perf not available)"
if command -v perf >/dev/null && perf record -q -o "$tmp/perf.data" -F 20000 qemu-x86_64 "$BIN" check "$CFG" >/dev/null 2>&1; then
  split=$(perf report -i "$tmp/perf.data" --no-children --sort dso 2>/dev/null |
    awk '/%/ && $1 ~ /%$/ {printf "%s %s; ", $1, $2}')
fi
echo "| moonlit check (runtime + 2 modules) | median of $RUNS |"
echo "|---|---|"
echo "| native | $native ms |"
echo "| qemu-x86_64 (TCG) | $tcg ms |"
echo "| qemu-x86_64, \`moonlit --version\` (qemu's own start) | $tcg_version ms |"
echo "| guest code blocks translated by TCG | $tbs (\`--version\`: $tbs_v) |"
echo
echo "perf, share of samples by object under TCG: $split"
