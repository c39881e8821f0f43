#!/usr/bin/env bash
# Hot-swap figures for moonlit: a reload with RELOAD_SERVICES service modules
# of which one changed (request to reply, and zero restarts of the others),
# and a re-exec of PID 1 with REEXEC_SERVICES services (request until the new
# image answers `status`, every service pid unchanged).
#
#   bench/hotswap/run.sh
#
# Needs root (moonlit run --sandbox makes namespaces) and python3. Builds
# moonlit with build-musl.sh (or uses MOONLIT_BIN) and prints a markdown
# table (docs/bench-hotswap.md holds a run of it). Knobs (environment):
# RELOAD_SERVICES (100), REEXEC_SERVICES (50), TRIALS (20), CLI_TRIALS (5).
# Timing is done by client.py over the control socket (time.perf_counter);
# the CLI is timed too, for reference. Exits non-zero (with FAIL lines) when
# a check fails: a service other than the edited one restarted or changed
# pid, a pid changed across a re-exec, a reply was not ok. Never on a slow
# figure. HOTSWAP_NEGATIVE=1 is the negative control: a second module is
# edited in the first reload and one service is restarted before the first
# re-exec, so the run must print FAIL lines and exit non-zero.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
for a in "$@"; do
  case "$a" in
    -h | --help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument '$a' (try --help)" >&2; exit 2 ;;
  esac
done

RELOAD_SERVICES="${RELOAD_SERVICES:-100}"
REEXEC_SERVICES="${REEXEC_SERVICES:-50}"
TRIALS="${TRIALS:-20}"
CLI_TRIALS="${CLI_TRIALS:-5}"

log() { echo "bench: $*" >&2; }
die() { echo "bench: error: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (moonlit run --sandbox creates namespaces)"
command -v python3 >/dev/null || die "needs python3 (the control-socket client)"

if [ -n "${MOONLIT_BIN:-}" ]; then
  bin="$MOONLIT_BIN"
else
  command -v cargo >/dev/null || export PATH="$HOME/.cargo/bin:$PATH"
  log "building moonlit with build-musl.sh"
  # build-musl.sh builds under the repo's own target/.
  bin="$(env -u CARGO_TARGET_DIR "$repo/build-musl.sh" | tail -n 1)"
  case "$bin" in /*) ;; *) bin="$repo/$bin" ;; esac
fi
[ -x "$bin" ] || die "no moonlit binary at $bin"

work="$(mktemp -d /tmp/moonlit-hotswap.XXXXXX)"
# Configurations and sockets on a tmpfs, as /run is on a real system: no
# disk latency in reading the modules.
mount -t tmpfs -o size=64m,mode=0700 moonlit-hotswap "$work" || die "cannot mount a tmpfs on $work"
sb_pid=""
cleanup() {
  if [ -n "$sb_pid" ] && kill -0 "$sb_pid" 2>/dev/null; then
    kill -TERM "$sb_pid" 2>/dev/null || true
    sleep 1
    kill -KILL "$sb_pid" 2>/dev/null || true
  fi
  wait 2>/dev/null || true
  umount "$work" 2>/dev/null || umount -l "$work" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# A private copy, so that a build running meanwhile cannot swap the binary
# under the benchmark (re-exec runs this same file again).
cp "$bin" "$work/moonlit"
moonlit="$work/moonlit"
client=(python3 "$here/client.py")
rc=0

# make_config NAME COUNT: NAME/services/s000.lua .. one service per module.
make_config() {
  local d="$work/$1" i
  mkdir -p "$d/services"
  echo 'print("hotswap bench")' >"$d/init.lua"
  for ((i = 0; i < $2; i++)); do
    printf 'service "s%03d" { exec = { "/bin/sleep", "100000" }, console = false }\n' "$i" \
      >"$d/services/s$(printf %03d "$i").lua"
  done
}

# start_sandbox NAME COUNT: boots $work/NAME, waits for READY and COUNT
# running services.
start_sandbox() {
  local name="$1" i
  # The console goes through a pipe, as to a terminal or a log collector.
  # (With stdout on a regular file, this build of moonlit does not start
  # its services until some other event wakes its loop: epoll refuses a
  # regular file, so the console's first writable event never comes.)
  "$moonlit" run --sandbox --control "$work/$name.sock" "$work/$name" > >(cat >"$work/$name.log") 2>&1 &
  sb_pid=$!
  for ((i = 0; i < 300; i++)); do
    grep -q 'moonlit: READY' "$work/$name.log" 2>/dev/null && break
    kill -0 "$sb_pid" 2>/dev/null || die "moonlit ($name) exited: $(tail -5 "$work/$name.log")"
    sleep 0.05
  done
  grep -q 'moonlit: READY' "$work/$name.log" || die "moonlit ($name) not READY in 15 s: $(tail -5 "$work/$name.log")"
  "${client[@]}" ready "$work/$name.sock" "$2" 30 || die "moonlit ($name): services did not all start"
}

stop_sandbox() {
  local i
  "${client[@]}" poweroff "$work/$1.sock" || rc=1
  for ((i = 0; i < 400; i++)); do
    kill -0 "$sb_pid" 2>/dev/null || break
    sleep 0.05
  done
  if kill -0 "$sb_pid" 2>/dev/null; then
    echo "FAIL: moonlit ($1) did not power off within 20 s; killing it" >&2
    kill -KILL "$sb_pid" 2>/dev/null || true
    rc=1
  fi
  wait "$sb_pid" 2>/dev/null || true
  sb_pid=""
}

# ------------------------------------------------------------- 1. reload --
make_config reload "$RELOAD_SERVICES"
start_sandbox reload "$RELOAD_SERVICES"
target="s$(printf %03d $((RELOAD_SERVICES / 2)))"
log "reload: $TRIALS trials + $CLI_TRIALS via the CLI, editing $target.lua's argv back and forth"
"${client[@]}" reload "$work/reload.sock" "$work/reload" "$target" "$TRIALS" "$CLI_TRIALS" \
  "$moonlit" "$work/reload.json" || rc=1
stop_sandbox reload

# ------------------------------------------------------------ 2. re-exec --
make_config reexec "$REEXEC_SERVICES"
start_sandbox reexec "$REEXEC_SERVICES"
log "reexec: $TRIALS trials + $CLI_TRIALS via the CLI"
"${client[@]}" reexec "$work/reexec.sock" "$TRIALS" "$CLI_TRIALS" "$moonlit" "$work/reexec.json" || rc=1
stop_sandbox reexec

# -------------------------------------------------------------- table --
[ -s "$work/reload.json" ] && [ -s "$work/reexec.json" ] || die "a measurement produced no results"
table="$("${client[@]}" table "$work/reload.json" "$work/reexec.json")"
cores="$(nproc)"
. /etc/os-release
machine="$cores cores, ${NAME%% *} ${VERSION_ID:-}"
grep -qw hypervisor /proc/cpuinfo && machine="$machine VM"
echo
echo "Measured $(date +%F) on $machine, kernel $(uname -r) (load average at the end: $(cut -d' ' -f1-3 /proc/loadavg))."
echo
echo "$table"
if [ "$rc" != 0 ]; then
  echo
  echo "FAIL: at least one check failed (see the FAIL lines above)"
fi
exit "$rc"
