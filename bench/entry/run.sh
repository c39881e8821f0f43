#!/usr/bin/env bash
# Figures for entrypoint mode (`moonlit -- CMD`) beside tini-static and
# dumb-init, one run, peers side by side: the static binary's size, the idle
# RSS of the init as PID 1 of a pid namespace holding one `sleep` child, and
# the time from the init's exec to its child's exec.
#
#   bench/entry/run.sh [--write]
#
# Needs root (pid namespaces). Installs what it lacks with apt-get, builds
# moonlit with build-musl.sh (or uses MOONLIT_BIN), prints a markdown table;
# --write also writes it, with the methodology, to docs/bench-entry.md.
# Knobs (environment): TRIALS (300 exec-to-exec runs per init). This is a
# benchmark: it never fails on a slow figure, only when a step does not work.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
write=0
for a in "$@"; do
  case "$a" in
    --write) write=1 ;;
    -h | --help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument '$a' (try --help)" >&2; exit 2 ;;
  esac
done
TRIALS="${TRIALS:-300}"

log() { echo "bench: $*" >&2; }
die() { echo "bench: error: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (it creates pid namespaces)"

need=()
command -v tini-static >/dev/null || need+=(tini)
command -v dumb-init >/dev/null || need+=(dumb-init)
command -v unshare >/dev/null || need+=(util-linux)
command -v musl-gcc >/dev/null || need+=(musl-tools)
command -v python3 >/dev/null || need+=(python3)
if [ "${#need[@]}" -gt 0 ]; then
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi
tini_bin="$(command -v tini-static)"
dumb_bin="$(command -v dumb-init)"

if [ -n "${MOONLIT_BIN:-}" ]; then
  bin="$MOONLIT_BIN"
else
  command -v cargo >/dev/null || export PATH="$HOME/.cargo/bin:$PATH"
  log "building moonlit with build-musl.sh"
  bin="$("$repo/build-musl.sh" | tail -n 1)"
  case "$bin" in /*) ;; *) bin="$repo/$bin" ;; esac
fi
[ -x "$bin" ] || die "no moonlit binary at $bin"

work="$(mktemp -d /tmp/moonlit-bench-entry.XXXXXX)"
mount -t tmpfs -o size=64m,mode=0700 moonlit-bench-entry "$work" || die "cannot mount a tmpfs on $work"
cleanup() { umount "$work" 2>/dev/null || true; rmdir "$work" 2>/dev/null || true; }
trap cleanup EXIT
# Copies on the tmpfs: no disk in any figure, and RssFile counts only them.
cp "$bin" "$work/moonlit"
cp "$tini_bin" "$work/tini-static"
cp "$dumb_bin" "$work/dumb-init"
musl-gcc -static -O2 -o "$work/stamp" "$here/stamp.c" || die "cannot build stamp.c"

declare -A argv_of=(
  [moonlit]="$work/moonlit --"
  [tini-static]="$work/tini-static --"
  [dumb-init]="$work/dumb-init --"
)
inits=(moonlit tini-static dumb-init)

kb() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }

# ---------------------------------------------------------- idle RSS --
declare -A rss anon file
for i in "${inits[@]}"; do
  # shellcheck disable=SC2086
  unshare --pid --fork --mount-proc ${argv_of[$i]} /bin/sleep 100000 &
  outer=$!
  pid=""
  for _ in $(seq 100); do
    pid="$(cat "/proc/$outer/task/$outer/children" 2>/dev/null | awk '{print $1}')"
    [ -n "$pid" ] && [ -n "$(cat "/proc/$pid/task/$pid/children" 2>/dev/null)" ] && break
    sleep 0.05
  done
  [ -n "$pid" ] || die "$i did not start"
  sleep 1
  rss[$i]="$(kb "$pid" VmRSS)"
  anon[$i]="$(kb "$pid" RssAnon)"
  file[$i]="$(( $(kb "$pid" RssFile) + $(kb "$pid" RssShmem) ))"
  kill -TERM "$pid"
  wait "$outer" || true
  log "$i: VmRSS ${rss[$i]} kB"
done

# ---------------------------------------------------- exec to child exec --
# median and range (microseconds) of TRIALS runs of `stamp launch` + init.
measure() {
  local out="$work/t" vals=() k
  for k in $(seq "$TRIALS"); do
    # shellcheck disable=SC2068
    "$work/stamp" launch "$out" $@ "$work/stamp" child "$out" >/dev/null 2>&1 || die "run $k of $* failed"
    vals+=("$(awk '{printf "%d\n", ($2 - $1) / 1000}' "$out")")
  done
  printf '%s\n' "${vals[@]}" | sort -n | awk '{a[NR]=$1} END {printf "%d %d %d\n", a[int((NR+1)/2)], a[1], a[NR]}'
}
declare -A lat
lat[baseline]="$(measure)"
for i in "${inits[@]}"; do
  # -s for the inits that have it: not PID 1 here, and no warning printed.
  case "$i" in
    moonlit) lat[$i]="$(measure "$work/moonlit" -s --)" ;;
    tini-static) lat[$i]="$(measure "$work/tini-static" -s --)" ;;
    dumb-init) lat[$i]="$(measure "$work/dumb-init" --)" ;;
  esac
  log "$i: exec to child exec ${lat[$i]} us (median min max)"
done
log "baseline (no init): ${lat[baseline]} us"

size() { stat -c %s "$1"; }
static_of() { if file "$1" 2>/dev/null | grep -q 'statically linked'; then echo static; else echo "dynamic (libc.so not counted)"; fi; }
row() { # name path
  local i="$1" m lo hi
  read -r m lo hi <<<"${lat[$i]}"
  echo "| $i | $(size "$2") bytes, $(static_of "$2") | ${rss[$i]} kB (anon ${anon[$i]}, binary pages ${file[$i]}) | $m us ($lo to $hi) |"
}
table="$(
  echo "| init | binary | idle VmRSS as PID 1 with one child | exec to child exec, median ($TRIALS runs, min to max) |"
  echo "|---|---|---|---|"
  row moonlit "$work/moonlit"
  row tini-static "$work/tini-static"
  row dumb-init "$work/dumb-init"
  read -r m lo hi <<<"${lat[baseline]}"
  echo "| (no init: the child exec'd directly) | - | - | $m us ($lo to $hi) |"
)"
echo "$table"

if [ "$write" = 1 ]; then
  cores="$(nproc)"
  os="$(. /etc/os-release && echo "$PRETTY_NAME")"
  cat >"$repo/docs/bench-entry.md" <<DOC
# moonlit entrypoint mode: figures

Produced by \`bench/entry/run.sh --write\` (root; installs tini, dumb-init and
musl-tools when missing, builds moonlit with \`build-musl.sh\`). One run, the
three inits side by side. Measured $(date -u +%Y-%m-%d) on $cores cores, $os.
Timings on a shared 2-core machine are noisy: rerun for figures of your own.

$table

## Methodology

**Binary.** \`stat\` of the file. moonlit and tini-static are static; Debian's
dumb-init is dynamically linked against glibc, so its size leaves out libc,
which its RSS includes (the upstream dumb-init release is a static binary of
about the same code).

**Idle RSS.** Each init runs as PID 1 of a fresh pid namespace (\`unshare
--pid --fork --mount-proc INIT -- /bin/sleep 100000\`), from a copy on a tmpfs;
one second after its child exists, \`VmRSS\`, \`RssAnon\` and RssFile + RssShmem
("binary pages": the touched pages of its own file and libraries) are read
from /proc/PID/status. moonlit in this mode runs no Lua and reads no
configuration (there is none): the figure is the loop of entry.rs plus the
pages of the binary that loop touches.

**Exec to child exec.** \`stamp launch\` takes CLOCK_MONOTONIC and execs the
init in the same process; the init starts \`stamp child\`, whose first act is
to take the clock again. The difference covers the init's exec, its set-up
and its spawn of the child, and the child's own exec; the last row is that
exec alone (\`stamp launch\` execing \`stamp child\` directly). moonlit and tini
run with \`-s\` (not PID 1 here; the subreaper call is part of their set-up);
dumb-init has no such flag.
DOC
  log "wrote docs/bench-entry.md"
fi
