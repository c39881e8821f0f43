#!/usr/bin/env bash
# Figures for moonlit's core: binary size, idle RSS of PID 1, time to reap
# 10,000 orphaned zombies beside tini, first-restart latency beside runit's
# runsv. Everything runs in one invocation, peers side by side.
#
#   bench/core/run.sh [--write]
#
# Needs root (namespaces). Installs what it lacks with apt-get, builds
# moonlit with build-musl.sh (or uses MOONLIT_BIN), prints a markdown table;
# --write also writes it, with the methodology, to docs/bench-core.md.
# Knobs (environment): ORPHANS (10000), REAP_TRIALS (3), SERVICES (20),
# RESTART_TRIALS (20). This is a benchmark: it never fails on a slow figure,
# only when a step does not work at all.
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

ORPHANS="${ORPHANS:-10000}"
REAP_TRIALS="${REAP_TRIALS:-3}"
SERVICES="${SERVICES:-20}"
RESTART_TRIALS="${RESTART_TRIALS:-20}"

# Before the bench adds its own (the live reaping run makes 10,000 runnable
# processes at once, which lifts the load average for minutes).
load_start="$(cut -d' ' -f1-3 /proc/loadavg)"

log() { echo "bench: $*" >&2; }
die() { echo "bench: error: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (it creates pid/mount/net namespaces)"

# ---------------------------------------------------------------- setup --
need=()
command -v tini-static >/dev/null || need+=(tini)
command -v runsv >/dev/null || need+=(runit)
command -v unshare >/dev/null && command -v nsenter >/dev/null || need+=(util-linux)
command -v readelf >/dev/null || need+=(binutils)
command -v musl-gcc >/dev/null || need+=(musl-tools)
command -v gcc >/dev/null || need+=(gcc libc6-dev)
command -v curl >/dev/null || need+=(curl ca-certificates)
if [ "${#need[@]}" -gt 0 ]; then
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi
tini_bin="$(command -v tini-static)"
runsv_bin="$(command -v runsv)"

if [ -n "${MOONLIT_BIN:-}" ]; then
  bin="$MOONLIT_BIN"
else
  if ! command -v cargo >/dev/null; then
    if [ -x "$HOME/.cargo/bin/cargo" ]; then
      export PATH="$HOME/.cargo/bin:$PATH"
    else
      echo "bench/core/run.sh: no cargo: install the Rust toolchain (rustup) first" >&2
      exit 1
    fi
  fi
  log "building moonlit with build-musl.sh"
  bin="$("$repo/build-musl.sh" | tail -n 1)"
  case "$bin" in /*) ;; *) bin="$repo/$bin" ;; esac
fi
[ -x "$bin" ] || die "no moonlit binary at $bin"

work="$(mktemp -d /tmp/moonlit-bench.XXXXXX)"
# A tmpfs for everything the bench and the supervisors write (service
# directories, runsv's supervise/ status files, time stamps), as /run is on
# a real system: no disk latency in any figure.
mount -t tmpfs -o size=256m,mode=0700 moonlit-bench "$work" || die "cannot mount a tmpfs on $work"
started=() # host pids of every long-lived process this script started
cleanup() {
  local p
  for p in "${started[@]}"; do
    kill -KILL "$p" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  umount "$work" 2>/dev/null || umount -l "$work" 2>/dev/null || true
  rm -rf "$work"
  if [ -n "$cg" ]; then rmdir "$cg" 2>/dev/null || { sleep 1; rmdir "$cg" 2>/dev/null; } || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The reaping observer: a pids cgroup around each init. Its pids.current
# counts every task in it, zombies included until they are reaped, and costs
# microseconds to read. Without a pids cgroup the bench falls back to
# counting PID 1's children in /proc (slow for 10,000 entries: noted).
cg="" counter="-" observer="PID 1's children in /proc/PID/task/PID/children (fallback: no pids cgroup)"
if [ -f /sys/fs/cgroup/cgroup.controllers ] && grep -qw pids /sys/fs/cgroup/cgroup.controllers; then
  grep -qw pids /sys/fs/cgroup/cgroup.subtree_control || echo +pids >/sys/fs/cgroup/cgroup.subtree_control || true
  cg="/sys/fs/cgroup/moonlit-bench-$$"
elif [ -d /sys/fs/cgroup/pids ]; then
  cg="/sys/fs/cgroup/pids/moonlit-bench-$$"
fi
if [ -n "$cg" ] && mkdir "$cg" 2>/dev/null && [ -f "$cg/pids.current" ]; then
  counter="$cg/pids.current"
  observer="pids.current of a pids cgroup holding the init"
else
  [ -n "$cg" ] && rmdir "$cg" 2>/dev/null
  cg=""
  log "no usable pids cgroup: falling back to /proc children lists (slower observer)"
fi

cc=gcc
command -v musl-gcc >/dev/null && cc=musl-gcc
"$cc" -static -O2 -o "$work/helper" "$here/helper.c" || die "cannot build helper.c with $cc"
helper="$work/helper"
# The moonlit binary is copied next to the helper so that a build running
# meanwhile cannot swap it under the benchmark.
cp "$bin" "$work/moonlit"
moonlit="$work/moonlit"

# --------------------------------------------------------------- helpers --
# now_ms: monotonic clock in ms (bash's EPOCHREALTIME is wall time; fine for timeouts).
now_ms() { local t="${EPOCHREALTIME/./}"; echo $((t / 1000)); }

# first_child PID TIMEOUT_S: the host pid of PID's (first) child.
first_child() {
  local p="$1" end=$(($(now_ms) + $2 * 1000)) c
  while [ "$(now_ms)" -lt "$end" ]; do
    c="$(cat "/proc/$p/task/$p/children" 2>/dev/null || true)"
    c="${c%% *}"
    if [ -n "$c" ]; then echo "$c"; return 0; fi
    sleep 0.01
  done
  return 1
}

# wait_file PATH TIMEOUT_S
wait_file() {
  local end=$(($(now_ms) + $2 * 1000))
  while [ ! -s "$1" ]; do
    [ "$(now_ms)" -lt "$end" ] || return 1
    sleep 0.01
  done
}

# wait_gone PID TIMEOUT_S
wait_gone() {
  local end=$(($(now_ms) + $2 * 1000))
  while kill -0 "$1" 2>/dev/null && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; do
    [ "$(now_ms)" -lt "$end" ] || return 1
    sleep 0.02
  done
}

# The control client is run inside the sandbox's pid and mount namespaces,
# the way a process of the sandbox would talk to its PID 1.
mctl() { # INIT_HOST_PID SOCKET ARGS...
  local init="$1" sock="$2"
  shift 2
  nsenter --target "$init" --pid --mount -- "$moonlit" ctl --socket "$sock" "$@"
}

# wait_ready INIT SOCKET TIMEOUT_S: polls `ctl status --json` until "ready":true.
wait_ready() {
  local end=$(($(now_ms) + $3 * 1000)) out
  while [ "$(now_ms)" -lt "$end" ]; do
    out="$(mctl "$1" "$2" status --json 2>/dev/null || true)"
    case "$out" in *'"ready":true'*) echo "$out"; return 0 ;; esac
    sleep 0.05
  done
  return 1
}

# in_cgroup CMD...: runs CMD (exec) inside the bench's pids cgroup, if any.
in_cgroup() {
  if [ -n "$cg" ]; then echo "$BASHPID" >"$cg/cgroup.procs"; fi
  exec "$@"
}

# start_sandbox NAME: boots $work/NAME as a sandbox; sets sb_pid (host side
# parent) and init_pid (moonlit's PID 1, host pid).
start_sandbox() {
  local name="$1"
  (in_cgroup "$moonlit" run --sandbox --control "$work/$name.sock" "$work/$name") >"$work/$name.log" 2>&1 &
  sb_pid=$!
  started+=("$sb_pid")
  init_pid="$(first_child "$sb_pid" 10)" || die "moonlit sandbox for $name did not start (see its log)"
  started+=("$init_pid")
}

stop_sandbox() {
  mctl "$init_pid" "$work/$1.sock" poweroff >/dev/null 2>&1 || true
  if ! wait_gone "$sb_pid" 20; then
    log "moonlit ($1) did not power off in 20 s; killing it"
    kill -KILL "$init_pid" 2>/dev/null || true
  fi
  wait "$sb_pid" 2>/dev/null || true
}

# start_tini ARGS...: tini-static as PID 1 of fresh pid/mount/uts/ipc/net
# namespaces (the same set moonlit's sandbox makes); sets us_pid, init_pid.
start_tini() {
  (in_cgroup unshare --pid --fork --mount-proc --uts --ipc --net -- "$tini_bin" -- "$@") >"$work/tini.log" 2>&1 &
  us_pid=$!
  started+=("$us_pid")
  init_pid="$(first_child "$us_pid" 10)" || die "tini did not start"
  started+=("$init_pid")
}

stop_tini() {
  kill -KILL "$init_pid" 2>/dev/null || true # ends the whole pid namespace
  wait "$us_pid" 2>/dev/null || true
}

kb_of() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }

# median / min / max of numbers on stdin
stats() { sort -g | awk '{v[NR]=$1} END {if (NR==0) {print "n/a n/a n/a 0"; exit}
  m = (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2; printf "%.2f %.2f %.2f %d\n", m, v[1], v[NR], NR}'; }

mib() { awk -v b="$1" 'BEGIN {printf "%.2f", b/1048576}'; }

# ------------------------------------------- 1. size and idle RSS of PID 1 --
size_bytes="$(stat -c %s "$moonlit")"
if readelf -SW "$moonlit" | grep -q '\.symtab'; then stripped="not stripped"; else stripped="stripped"; fi
log "binary: $size_bytes bytes ($stripped)"

mkdir -p "$work/idle/services"
echo 'print("idle bench: boot script ran")' >"$work/idle/init.lua"
for i in $(seq 1 "$SERVICES"); do
  printf 'service "sleep%02d" { exec = { "/bin/sleep", "100000" }, restart = "always", console = false }\n' "$i"
done >"$work/idle/services/idle.lua"
start_sandbox idle
status="$(wait_ready "$init_pid" "$work/idle.sock" 30)" || die "moonlit idle sandbox never became ready (log: $(tail -5 "$work/idle.log"))"
running="$(grep -o '"state":"running"' <<<"$status" | wc -l)"
[ "$running" -eq "$SERVICES" ] || die "only $running of $SERVICES services running"
sleep 1 # idle
rss_kb="$(kb_of "$init_pid" VmRSS)"
rss_anon_kb="$(kb_of "$init_pid" RssAnon)"
rss_file_kb=$(($(kb_of "$init_pid" RssFile) + $(kb_of "$init_pid" RssShmem)))
parent_rss_kb="$(kb_of "$sb_pid" VmRSS)"
kids="$(wc -w <"/proc/$init_pid/task/$init_pid/children")"
log "moonlit PID 1: VmRSS $rss_kb kB (anon $rss_anon_kb, binary pages $rss_file_kb) with $kids children; sandbox parent $parent_rss_kb kB"
stop_sandbox idle

start_tini /bin/sleep 100000
first_child "$init_pid" 10 >/dev/null || die "tini's child did not start"
sleep 1
tini_rss_kb="$(kb_of "$init_pid" VmRSS)"
tini_anon_kb="$(kb_of "$init_pid" RssAnon)"
tini_file_kb=$(($(kb_of "$init_pid" RssFile) + $(kb_of "$init_pid" RssShmem)))
log "tini-static PID 1: VmRSS $tini_rss_kb kB (anon $tini_anon_kb, binary pages $tini_file_kb)"
stop_tini

# ------------------------------------------------ 2. reaping 10,000 orphans --
# One trial: INIT (moonlit|tini) MODE (stopped|live). Sets trial_ms. (No
# command substitution around it: it starts processes the cleanup must know.)
reap_trial() {
  local which="$1" mode="$2" d="$work/reap-$1-$2" ms
  rm -rf "$d"
  mkdir -p "$d/services"
  mkfifo "$d/go"
  local argv=("$helper" orphans "$ORPHANS" "$mode" "$d/go" "$d/ready" "$d/done")
  if [ "$which" = moonlit ]; then
    echo 'print("reap bench")' >"$d/init.lua"
    {
      printf 'service "orphans" { exec = {'
      printf ' "%s",' "${argv[@]}"
      printf ' }, restart = "never" }\n'
    } >"$d/services/orphans.lua"
    ln -sfn "$d" "$work/reap"
    start_sandbox reap
    wait_ready "$init_pid" "$work/reap.sock" 30 >/dev/null || die "moonlit reap sandbox never became ready"
  else
    start_tini "${argv[@]}"
  fi
  wait_file "$d/ready" 30 || die "$which: orphan helper did not start"
  local base
  base="$("$helper" count "$counter" "$init_pid")"
  if [ "$mode" = stopped ]; then
    kill -STOP "$init_pid"
    while [ "$(awk '{print $3}' "/proc/$init_pid/stat")" != T ]; do sleep 0.005; done
    echo g >"$d/go"
    wait_file "$d/done" 120 || die "$which: helper did not finish forking"
    # All orphans must be zombies of the (stopped) init before the clock starts.
    local end=$(($(now_ms) + 60000)) c
    while :; do
      c="$("$helper" count "$counter" "$init_pid")"
      [ "$c" -ge $((base + ORPHANS)) ] && break
      [ "$(now_ms)" -lt "$end" ] || die "$which: counter at $c, not $((base + ORPHANS)), after 60 s"
      sleep 0.05
    done
    ms="$("$helper" reapwatch "$init_pid" "$counter" "$base" "$ORPHANS" stopped)" || die "$which: reapwatch failed"
  else
    echo g >"$d/go"
    wait_file "$d/done" 120 || die "$which: helper did not finish forking"
    ms="$("$helper" reapwatch "$init_pid" "$counter" "$base" "$ORPHANS" live "$d/go")" || die "$which: reapwatch failed"
  fi
  local made
  made="$(cat "$d/done")"
  [ "$made" -eq "$ORPHANS" ] || die "$which: helper made $made orphans, not $ORPHANS"
  local left
  left="$("$helper" childcount "$init_pid")"
  [ "${left#* }" -eq 0 ] || die "$which: zombies left after the run: $left"
  if [ "$which" = moonlit ]; then
    local st reaped
    st="$(mctl "$init_pid" "$work/reap.sock" status --json)"
    reaped="$(grep -o '"orphans_reaped":[0-9]*' <<<"$st" | cut -d: -f2)"
    [ "$reaped" -ge "$ORPHANS" ] || die "moonlit counted $reaped orphans, expected $ORPHANS"
    stop_sandbox reap
  else
    stop_tini
  fi
  trial_ms="${ms%% *}"
}

declare -A reap_ms
for mode in stopped live; do
  for t in $(seq 1 "$REAP_TRIALS"); do
    # Alternate which init goes first, so drift in the machine's load hits both.
    if [ $((t % 2)) -eq 1 ]; then order="moonlit tini"; else order="tini moonlit"; fi
    for which in $order; do
      reap_trial "$which" "$mode"
      log "reap $ORPHANS orphans ($mode), $which, trial $t: $trial_ms ms"
      reap_ms[$which-$mode]+="$trial_ms "
    done
  done
done

# --------------------------------------- 3. first-restart latency vs runsv --
# Each of RESTART_TRIALS services runs the helper's crash-once program in its
# own directory: it stamps its start, runs DELAY + i*STEP ms, stamps its exit
# and exits 1; the supervisor's restart stamps the second start.
# Writes the latencies (second start - first exit, microseconds) to DIR/lat.
restart_latencies() { # DIR
  local s
  for s in "$1"/svc*; do
    awk '$1=="E" && !e {e=$2} $1=="S" {n++; if (n==2) s=$2} END {if (e && s) printf "%.1f\n", (s-e)/1000}' "$s/stamps"
  done >"$1/lat"
}

wait_restarted() { # DIR TIMEOUT_S
  local end=$(($(now_ms) + $2 * 1000)) s n c
  while :; do
    n=0
    for s in "$1"/svc*; do
      c="$(grep -c '^S' "$s/stamps" 2>/dev/null || true)"
      [ "${c:-0}" -ge 2 ] && n=$((n + 1))
    done
    [ "$n" -ge "$RESTART_TRIALS" ] && return 0
    [ "$(now_ms)" -lt "$end" ] || return 1
    sleep 0.1
  done
}

prepare_dirs() { # DIR DELAY STEP
  local i
  rm -rf "$1"
  mkdir -p "$1"
  for i in $(seq 1 "$RESTART_TRIALS"); do
    mkdir -p "$1/svc$(printf %02d "$i")"
    echo $(($2 + (i - 1) * $3)) >"$1/svc$(printf %02d "$i")/delay_ms"
  done
}

restart_moonlit() { # VARIANT DELAY STEP
  local d="$work/restart-moonlit-$1" s
  prepare_dirs "$d" "$2" "$3"
  mkdir -p "$d/cfg/services"
  echo 'print("restart bench")' >"$d/cfg/init.lua"
  for s in "$d"/svc*; do
    printf 'service "%s" { exec = { "%s", "stamp" }, cwd = "%s", restart = "always", console = false }\n' \
      "$(basename "$s")" "$helper" "$s"
  done >"$d/cfg/services/crash.lua"
  ln -sfn "$d/cfg" "$work/restart"
  start_sandbox restart
  wait_ready "$init_pid" "$work/restart.sock" 30 >/dev/null || die "moonlit restart sandbox never became ready"
  # No control traffic from here on: only the crashes wake PID 1.
  wait_restarted "$d" 60 || die "moonlit: not every service restarted within 60 s"
  stop_sandbox restart
  restart_latencies "$d"
}

restart_runsv() { # VARIANT DELAY STEP
  local d="$work/restart-runsv-$1" s pids=()
  prepare_dirs "$d" "$2" "$3"
  for s in "$d"/svc*; do
    cp "$helper" "$s/run" # runsv execs ./run: the helper's crash-once mode
    "$runsv_bin" "$s" </dev/null >/dev/null 2>&1 &
    pids+=("$!")
    started+=("$!")
  done
  wait_restarted "$d" 60 || die "runsv: not every service restarted within 60 s"
  for s in "$d"/svc*; do printf dx >"$s/supervise/control"; done # down, then exit
  for s in "${pids[@]}"; do
    if ! wait_gone "$s" 10; then kill -KILL "$s" 2>/dev/null || true; fi
    wait "$s" 2>/dev/null || true
  done
  restart_latencies "$d"
}

declare -A rst
# "long": each first run lasts >= 1.1 s (runsv restarts at once only after a
# run of at least 1 s); "short": each first run lasts < 1 s.
for variant in long short; do
  if [ "$variant" = long ]; then delay=1100 step=100; else delay=20 step=40; fi
  for sup in moonlit runsv; do
    "restart_$sup" "$variant" "$delay" "$step"
    rst[$sup-$variant]="$(stats <"$work/restart-$sup-$variant/lat")"
    log "first restart ($variant run), $sup: median/min/max/n us: ${rst[$sup-$variant]}"
  done
done

# ----------------------------------------------------------------- table --
reap_cell() { # INIT MODE
  local s
  s="$(tr ' ' '\n' <<<"${reap_ms[$1-$2]}" | grep . | stats)"
  read -r med lo hi n <<<"$s"
  printf '%s ms (%s to %s, %s runs)' "$med" "$lo" "$hi" "$n"
}
rst_cell() { # KEY
  read -r med lo hi n <<<"${rst[$1]}"
  awk -v m="$med" -v l="$lo" -v h="$hi" -v n="$n" \
    'BEGIN {printf "%.3f ms (%.3f to %.3f, %d restarts)", m/1000, l/1000, h/1000, n}'
}

cores="$(nproc)"
. /etc/os-release
machine="$cores cores, ${NAME%% *} ${VERSION_ID:-}"
grep -qw hypervisor /proc/cpuinfo && machine="$machine VM"
when="$(date +%F)"

table="$(
  cat <<EOF
| Figure | moonlit | peer (same run) |
|---|---|---|
| Static binary size ($stripped) | $size_bytes bytes ($(mib "$size_bytes") MiB) | - |
| RSS of PID 1 idling with $SERVICES services, after READY (VmRSS) | $rss_kb kB ($(mib $((rss_kb * 1024))) MiB; anon $rss_anon_kb kB, binary pages $rss_file_kb kB) | tini-static with 1 child: $tini_rss_kb kB (anon $tini_anon_kb kB, binary pages $tini_file_kb kB) |
| Reap $ORPHANS orphaned zombies, init stopped while they pile up (SIGCONT to none left), median | $(reap_cell moonlit stopped) | tini: $(reap_cell tini stopped) |
| Reap $ORPHANS orphans exiting at once, init running (release to none left), median | $(reap_cell moonlit live) | tini: $(reap_cell tini live) |
| First restart, crashing service whose run lasted >= 1.1 s (exit to next exec), median | $(rst_cell moonlit-long) | runsv: $(rst_cell runsv-long) |
| First restart, crashing service whose run lasted < 1 s (exit to next exec), median | $(rst_cell moonlit-short) | runsv: $(rst_cell runsv-short) |
EOF
)"

size_goal=2097152
rss_goal=1500000
size_v="binary $size_bytes bytes (goal: under 2 MiB, 2,097,152 bytes): $( [ "$size_bytes" -lt "$size_goal" ] && echo met || echo '**not met**')"
rss_v="idle RSS $((rss_kb * 1024)) bytes (goal: under 1.5 MB, 1,500,000 bytes): $( [ $((rss_kb * 1024)) -lt "$rss_goal" ] && echo met || echo '**not met**')"
verdict="- $size_v
- $rss_v (of which anon $rss_anon_kb kB: heap, stacks and Lua; the rest is the pages of the binary the idle loop faulted back after PID 1 dropped them at READY: init/link-order.txt keeps that code together)"

echo
echo "Measured $when on $machine (load average before the bench: $load_start)."
echo "moonlit's sandbox parent process (host side, not PID 1): VmRSS $parent_rss_kb kB."
echo
echo "$table"
echo
echo "$verdict"

if [ "$write" = 1 ]; then
  log "building an unstripped copy for the size breakdown"
  breakdown="$("$here/breakdown.sh")"
  out="$repo/docs/bench-core.md"
  mkdir -p "$repo/docs"
  {
    cat <<EOF
# moonlit core: figures

Produced by \`bench/core/run.sh --write\` (root; it installs tini, runit and a C
compiler with apt-get when missing and builds moonlit with \`build-musl.sh\`).
All figures come from one run, peers side by side.

Measured $when on $machine. When the machine is shared with other work (builds), the timings are noisy;
rerun the script for figures of your own.

$table

The host-side parent of \`moonlit run --sandbox\` (it only forwards signals and
waits) had a VmRSS of $parent_rss_kb kB; it is not PID 1 and not in the table.

## Against the goals

$verdict

## Methodology

**Size.** \`stat\` of the binary \`build-musl.sh\` produced (release, musl,
static; "stripped" means it has no \`.symtab\` section).

**Idle RSS.** \`moonlit run --sandbox\` with $SERVICES services (\`/bin/sleep
100000\`, \`console = false\`); once \`ctl status --json\` says \`"ready":true\` and
all $SERVICES are running, one second of idling, then \`VmRSS\` (and its anon and
file parts) from \`/proc/PID/status\` of moonlit's PID 1, found on the host as the
child of the sandbox parent. tini-static runs as PID 1 of fresh pid, mount, uts,
ipc and net namespaces (\`unshare --pid --fork --mount-proc --uts --ipc --net\`)
with one \`/bin/sleep\` child and is measured the same way. "Binary pages" is
RssFile + RssShmem: the pages of the program's own file that were touched (the
bench runs copies of the binaries from its tmpfs). Most of moonlit's RSS is
that, not heap.

**Reaping.** A static C helper (\`bench/core/helper.c\`, mode \`orphans\`) runs as
a service of moonlit's sandbox (\`restart = "never"\`) or as tini's child, both
in the same set of fresh namespaces. On a signal from the bench it forks
$ORPHANS children; each forks a grandchild and exits, and the helper reaps its own
children, so the $ORPHANS grandchildren are orphans whose parent is PID 1. The
observer is outside, on the host: each init (with its host-side parent) is
started inside a pids cgroup, whose \`pids.current\` counts every task in it,
zombies included until they are reaped, and costs microseconds to read. The
observer polls it every 100 us and stops the clock (CLOCK_MONOTONIC) when it is
back to what it was before the orphans were made (parent, PID 1, helper).
Observer in this run: $observer. (Counting PID 1's children in
\`/proc/PID/task/PID/children\` instead would cost about 5 ms per read at 10,000
entries and hold the kernel's tasklist lock meanwhile, slowing the reaper
down: it is only the fallback when no pids cgroup can be made.) Two variants:

- *stopped*: the bench sends SIGSTOP to PID 1 first, the grandchildren exit at
  once and pile up as zombies; when all $ORPHANS are there (checked in
  \`/proc/PID/stat\`), the clock starts and SIGCONT is sent. This is the pure
  reaping time of $ORPHANS already-dead orphans, signalled by one coalesced
  SIGCHLD.
- *live*: PID 1 runs; the grandchildren block on a pipe until all $ORPHANS exist,
  then the helper closes the pipe and all of them exit together. The clock
  runs from the release to the last reap, so it includes the kernel's work of
  ending $ORPHANS processes on the machine's $cores cores.

Each variant runs $REAP_TRIALS times per init, alternating which init goes
first; the table shows the median and the range. After each run the bench
checks that no zombie is left and, for moonlit, that \`orphans_reaped\` counted
them all.

The bench's working directory (configurations, service directories, runsv's
\`supervise/\` status files, time stamps) is a tmpfs, as \`/run\` is on a real
system, so no figure includes disk latency.

**Restart latency.** The helper's crash-once mode writes CLOCK_MONOTONIC to a
file as the first thing its \`main\` does, runs for a while, writes the time
again just before \`_exit(1)\`, and on its second start only stamps and waits.
The latency is the second start's stamp minus the exit stamp: child exit to
the new child's exec (plus the few microseconds of a static binary's startup),
both read by the same program. Under moonlit, $RESTART_TRIALS services (\`restart =
"always"\`, each in its own directory through \`cwd\`) run in one sandbox; under
runit, $RESTART_TRIALS \`runsv\` processes (started by the bench on the host, outside
any namespace) each supervise a directory whose \`./run\` is the same helper
binary. Each service's first run lasts a different time (1.1 s + 100 ms per
service in the first variant, 20 ms + 40 ms per service in the second) so that
no two crashes overlap; each figure is therefore $RESTART_TRIALS fresh first restarts. No control traffic reaches moonlit
while they happen. Two variants, because runsv deliberately waits one second
before restarting a service that ran for less than one second:
first runs of 1.1 s and more (runsv restarts at once), and first runs under one
second (runsv's one-second pause shows). moonlit's first restart is immediate
in both (its backoff starts with the second restart).

No figure is asserted: the script fails only when a step does not work (a
service never restarts, zombies are left, the init does not start).

## Where the bytes go

From \`bench/core/breakdown.sh\` in the same run: the shipped build again with
its symbol table kept (\`build-musl.sh --keep-symbols\`, its own target
directory), its sections and its code grouped by crate (demangled symbol
paths; unmangled symbols are C). The shipped binary is this one stripped.
\`build-musl.sh\` compiles std with the program (opt-level z, no backtrace
symbolizer, panic = abort) and removes \`.eh_frame\`, \`.eh_frame_hdr\` and
\`.gcc_except_table\`: nothing unwinds, see docs/DESIGN.md ("std built for
size").

$breakdown
EOF
  } >"$out"
  log "wrote $out"
fi
