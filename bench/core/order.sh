#!/usr/bin/env bash
# Regenerates init/link-order.txt, the linker's symbol ordering file
# (docs/footprint.md, "Code laid out by when it runs").
#
# Runs the unstripped release build as PID 1 of a sandbox under qemu's
# user-mode TCG with every executed block logged (qemu-x86_64 -d exec,
# nochain), with the RSS benchmark's configuration (20 services), waits for
# READY, asks for `ctl status` (text and JSON) as bench/core/run.sh does,
# five times 2 s apart, with one restart of a service and one reload among
# them (what PID 1 does now and then when idle), and stops. The functions run after READY (the idle set) go first
# in the file, then those run only before it (the boot set); lld places
# them in that order and the rest after. After READY moonlit drops the
# binary's pages (init/src/sys.rs, drop_boot_pages), so what faults back is
# mostly the idle set, packed together instead of spread over all of .text.
#
# A stale file costs only locality: names no longer in the binary are
# ignored. Rerun after larger changes to the loop's code paths.
#   bench/core/order.sh            (needs qemu-user, python3, nsenter)
set -euo pipefail
cd "$(dirname "$0")/../.."
repo="$(pwd)"
command -v qemu-x86_64 >/dev/null || {
  apt-get install -y -qq qemu-user >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq qemu-user >/dev/null; }
}
dir="${CARGO_TARGET_DIR:-target}/breakdown"
CARGO_TARGET_DIR="$dir" ./build-musl.sh --keep-symbols >/dev/null
bin="$dir/x86_64-unknown-linux-musl/release/moonlit"
case "$bin" in /*) ;; *) bin="$repo/$bin" ;; esac

work="$(mktemp -d /tmp/moonlit-order.XXXXXX)"
qpid=""
cleanup() {
  [ -n "$qpid" ] && kill -KILL "$qpid" 2>/dev/null || true
  pkill -KILL -f "qemu-x86_64 -d exec,nochain -D $work" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/idle/services"
echo 'print("idle bench: boot script ran")' >"$work/idle/init.lua"
for i in $(seq 1 20); do
  printf 'service "sleep%02d" { exec = { "/bin/sleep", "100000" }, restart = "always", console = false }\n' "$i"
done >"$work/idle/services/idle.lua"

# qemu writes the trace of the forked PID 1 to its stderr.
qemu-x86_64 -d exec,nochain -D "$work/qemu.log" "$bin" run --sandbox \
  --control "$work/idle.sock" "$work/idle" >"$work/trace" 2>&1 &
qpid=$!
end=$((SECONDS + 180))
until grep -q "moonlit: READY" "$work/trace" 2>/dev/null; do
  [ "$SECONDS" -lt "$end" ] || { echo "order.sh: no READY under qemu-user in 180 s" >&2; tail -5 "$work/trace" >&2; exit 1; }
  kill -0 "$qpid" 2>/dev/null || { echo "order.sh: the sandbox under qemu-user ended" >&2; tail -5 "$work/trace" >&2; exit 1; }
  sleep 1
done
ready_line=$(grep -n -m1 "moonlit: READY" "$work/trace" | cut -d: -f1)
init_pid=$(pgrep -P "$qpid" | head -n1)
[ -n "$init_pid" ] || { echo "order.sh: no PID 1 under the sandbox" >&2; exit 1; }
# What bench/core/run.sh does after READY (status polls, then 1 s idle),
# then more idle and requests, so that the timers' and Lua's collector's
# steps run too.
marks=()
for round in 1 2 3 4 5; do
  marks+=("$(grep -c "" "$work/trace")")
  case $round in
    2) extra="restart sleep02" ;; # the supervisor's stop, kill, spawn and restart paths
    3) extra="reload" ;;          # a reload that changes nothing
    *) extra="status" ;;
  esac
  for q in "status --json" "status" "status sleep01" "$extra"; do
    # shellcheck disable=SC2086
    nsenter --target "$init_pid" --pid --mount -- "$bin" ctl --socket "$work/idle.sock" $q >/dev/null ||
      { echo "order.sh: ctl $q failed (round $round)" >&2; exit 1; }
  done
  sleep 2
done
kill -KILL "$qpid" 2>/dev/null || true
pkill -KILL -P "$qpid" 2>/dev/null || true
wait "$qpid" 2>/dev/null || true
qpid=""

# Three tiers: the idle loop (rounds 1, 4 and 5: status requests only,
# before and after the rare work), the rare work (rounds 2 and 3: the
# restart and the reload), the boot. Each tier goes after the one before,
# without the functions already placed.
# Each executed block's guest pc (the second field in brackets) is mapped
# to the function holding it, also where qemu names none (musl's assembly
# memcpy and memset have symbols of size 0).
nm -n "$bin" | awk '$2 ~ /^[tTwW]$/ { print $1, $3 }' >"$work/syms"
python3 - "$work/trace" "$work/syms" "$ready_line" "${marks[1]}" "${marks[3]}" >init/link-order.txt <<'EOF'
import bisect, sys
path, syms, ready, rare_from, rare_to = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:])
addrs, names = [], []
for line in open(syms):
    a, n = line.split()
    addrs.append(int(a, 16))
    names.append(n)
tiers = [{}, {}, {}]  # idle, rare, boot
with open(path, errors="replace") as f:
    for n, line in enumerate(f, 1):
        if not line.startswith("Trace "):
            continue
        try:
            pc = int(line.split("[", 1)[1].split("/")[1], 16)
        except (IndexError, ValueError):
            continue
        i = bisect.bisect_right(addrs, pc) - 1
        if i < 0:
            continue
        name = names[i]
        t = 2 if n <= ready else 1 if rare_from < n <= rare_to else 0
        tiers[t][name] = tiers[t].get(name, 0) + 1
placed = set()
counts = []
for t in tiers:
    names = [k for k in sorted(t, key=lambda k: -t[k]) if k not in placed]
    counts.append(len(names))
    for name in names:
        print(name)
    placed.update(names)
print("idle %d, rare %d, boot %d functions" % tuple(counts), file=sys.stderr)
EOF
wc -l init/link-order.txt >&2
