#!/bin/sh
# bench/net: add then delete 1,000 IPv4 addresses on one link, three ways, in one
# run, inside a fresh network namespace (never the host's):
#   1. moonlit's `net` from Lua (release build of the net-lua runner),
#   2. `ip addr add` / `ip addr del` run once per address,
#   3. `ip -batch` with the same 2,000 commands.
# Usage (as root, from the repository root): bench/net/run.sh [N]
# Prints a Markdown table; docs/bench-net.md records a run.
set -eu
N=${1:-1000}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
if [ -z "${MOONLIT_BENCH_INNER:-}" ]; then
    [ "$(id -u)" = 0 ] || { echo "bench/net needs root (network namespaces)" >&2; exit 1; }
    command -v ip >/dev/null || { echo "bench/net needs iproute2" >&2; exit 1; }
    (cd "$root" && cargo build --release -q -p moonlit-net --bin net-lua)
    tgt=${CARGO_TARGET_DIR:-$root/target}
    bin=$(ls "$tgt"/*/release/net-lua "$tgt"/release/net-lua 2>/dev/null | head -n1)
    [ -x "$bin" ] || { echo "net-lua release binary not found under $tgt" >&2; exit 1; }
    MOONLIT_BENCH_INNER=1 NET_LUA="$bin" exec unshare -n "$0" "$N"
fi

now() { date +%s.%N; }
fresh_link() {
    ip link del b0 2>/dev/null || true
    ip link add b0 type veth peer name b0p
    ip link set b0 up
}
addrs() { i=1; while [ "$i" -le "$N" ]; do echo "10.200.$((i / 256)).$((i % 256))/32"; i=$((i + 1)); done; }
count() { ip -o -4 addr show dev b0 | wc -l; }

ip link set lo up
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
addrs > "$tmp/list"
sed 's|^|addr add |; s|$| dev b0|' "$tmp/list" > "$tmp/add.batch"
sed 's|^|addr del |; s|$| dev b0|' "$tmp/list" > "$tmp/del.batch"

# Each method runs R times (the ip loop 3 times: it is slow); the table shows the
# best and the median run, since the machine is shared and noisy.
R=${R:-5}
best_med() { sort -n | awk '{v[NR]=$1} END {printf "%.4f %.4f", v[1], v[int((NR+1)/2)]}'; }

run_moonlit() {
    fresh_link
    t0=$(now)
    "$NET_LUA" "$here/addr1000.lua" b0 "$N" 2>> "$tmp/lua.err"
    t1=$(now)
    [ "$(count)" = 0 ] || { echo "moonlit left addresses behind" >&2; exit 1; }
    echo "$t1 - $t0" | bc -l
}
run_iploop() {
    fresh_link
    t0=$(now)
    while read -r a; do ip addr add "$a" dev b0; done < "$tmp/list"
    [ "$(count)" = "$N" ] || { echo "ip loop: wrong address count" >&2; exit 1; }
    while read -r a; do ip addr del "$a" dev b0; done < "$tmp/list"
    t1=$(now)
    [ "$(count)" = 0 ] || { echo "ip loop left addresses behind" >&2; exit 1; }
    echo "$t1 - $t0" | bc -l
}
run_ipbatch() {
    fresh_link
    t0=$(now)
    ip -batch "$tmp/add.batch"
    [ "$(count)" = "$N" ] || { echo "ip -batch: wrong address count" >&2; exit 1; }
    ip -batch "$tmp/del.batch"
    t1=$(now)
    [ "$(count)" = 0 ] || { echo "ip -batch left addresses behind" >&2; exit 1; }
    echo "$t1 - $t0" | bc -l
}
: > "$tmp/m"; : > "$tmp/l"; : > "$tmp/b"
i=0
while [ "$i" -lt "$R" ]; do
    run_moonlit >> "$tmp/m"
    run_ipbatch >> "$tmp/b"
    [ "$i" -lt 3 ] && run_iploop >> "$tmp/l"
    i=$((i + 1))
done
set -- $(best_med < "$tmp/m"); lua_s=$1; lua_m=$2
set -- $(best_med < "$tmp/l"); ipl_s=$1; ipl_m=$2
set -- $(best_med < "$tmp/b"); ipb_s=$1; ipb_m=$2

printf '| method | add+delete %s addresses, best (s) | median (s) | best vs moonlit |\n|---|---|---|---|\n' "$N"
printf '| moonlit `net` from Lua (one process, incl. start) | %.4f | %.4f | 1x |\n' "$lua_s" "$lua_m"
printf '| `ip addr add/del` once per address | %.4f | %.4f | %.0fx slower |\n' "$ipl_s" "$ipl_m" "$(echo "$ipl_s / $lua_s" | bc -l)"
printf '| `ip -batch` (same %s commands) | %.4f | %.4f | %.2fx slower |\n' "$((2 * N))" "$ipb_s" "$ipb_m" "$(echo "$ipb_s / $lua_s" | bc -l)"
echo
echo "moonlit's own timer (excluding process start), per run:"
cat "$tmp/lua.err"
