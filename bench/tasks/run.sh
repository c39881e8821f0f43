#!/usr/bin/env bash
# Figures for Lua tasks on moonlit's loop, one run, with a peer beside it:
#  - task switch: a task yielding to the loop (`coroutine.yield()`, one turn
#    each) and two tasks handing a token back and forth through join-style
#    parking (`task` + `:join`), per switch;
#  - a loopback line echo through io.tcp (one connection, one line out, the
#    echo back, N times), in requests per second, beside Debian's lua5.4
#    with luasocket's blocking calls (server and client in two processes),
#    and moonlit with the server and the client as two tasks of one loop.
#
#   bench/tasks/run.sh [--write]
#
# Needs root (moonlit runs as PID 1 of a sandbox). Installs lua5.4 and
# lua-socket with apt-get if missing, builds moonlit with build-musl.sh (or
# uses MOONLIT_BIN); prints a markdown table; --write also writes
# docs/bench-tasks.md. Knobs: N (echo requests, 20000), SWITCHES (100000).
# A benchmark: it never fails on a slow figure, only when a step fails.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
write=0
for a in "$@"; do
  case "$a" in
    --write) write=1 ;;
    -h | --help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument '$a' (try --help)" >&2; exit 2 ;;
  esac
done
N="${N:-20000}"
SWITCHES="${SWITCHES:-100000}"
log() { echo "bench: $*" >&2; }
die() { echo "bench: error: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (moonlit runs as PID 1 of a sandbox)"

if ! command -v lua5.4 >/dev/null || ! lua5.4 -e 'require "socket"' 2>/dev/null; then
  log "installing lua5.4 and lua-socket"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends lua5.4 lua-socket >/dev/null
fi
bin="${MOONLIT_BIN:-}"
if [ -z "$bin" ]; then
  bin="$repo/$(cd "$repo" && ./build-musl.sh | tail -1)"
fi
[ -x "$bin" ] || die "no moonlit binary at $bin"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# --- moonlit: switches and echo, in one sandbox boot -----------------------
mkdir -p "$work/cfg"
cat > "$work/cfg/init.lua" <<LUA
local sys = require "sys"
local function now() return sys.clock_gettime("monotonic").time end
assert(require("net").link("lo"):up())
task(function()
  local S, N = $SWITCHES, $N
  -- One task, one loop turn per yield.
  local t = now()
  for i = 1, S do coroutine.yield() end
  local yield_us = (now() - t) / S * 1e6
  -- Two tasks handing a token back and forth (each hand-over parks one
  -- task and wakes the other through the loop).
  local rounds = S // 10
  t = now()
  local prev = task(function() end)
  for i = 1, rounds do
    local p = prev
    prev = task(function() p:join() end)
  end
  prev:join()
  local chain_us = (now() - t) / rounds * 1e6
  -- Echo through io.tcp: server and client tasks of this loop.
  local server = assert(io.tcp.listen("127.0.0.1", 7100))
  task(function()
    server:autospawn(function(c)
      for line in c:lines() do c:write(line, "\n") end
    end)
  end)
  local c = assert(io.tcp.connect("127.0.0.1", 7100))
  t = now()
  for i = 1, N do
    c:write("ping ", i, "\n")
    assert(c:read("*l") == "ping " .. i)
  end
  local rps = N / (now() - t)
  print(string.format("RESULT yield_us=%.3f chain_us=%.3f echo_rps=%.0f", yield_us, chain_us, rps))
  moonlit.poweroff()
end)
LUA
log "moonlit: $SWITCHES switches, $N echo requests"
out="$("$bin" run --sandbox --control "$work/ctl.sock" "$work/cfg" 2>&1 || true)"
res="$(grep -o 'RESULT .*' <<<"$out" | head -1)"
[ -n "$res" ] || { echo "$out" >&2; die "moonlit printed no result"; }
get() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" <<<"$res"; }
m_yield="$(get yield_us)"; m_chain="$(get chain_us)"; m_rps="$(get echo_rps)"

# --- lua5.4 + luasocket, blocking calls, two processes ----------------------
cat > "$work/server.lua" <<'LUA'
local socket = require "socket"
local s = assert(socket.bind("127.0.0.1", tonumber(arg[1])))
io.stdout:write("ready\n"); io.stdout:flush()
local c = assert(s:accept())
c:setoption("tcp-nodelay", true)
while true do
  local l = c:receive("*l")
  if not l then break end
  c:send(l .. "\n")
end
LUA
cat > "$work/client.lua" <<'LUA'
local socket = require "socket"
local N = tonumber(arg[2])
local c = assert(socket.connect("127.0.0.1", tonumber(arg[1])))
c:setoption("tcp-nodelay", true)
local t = socket.gettime()
for i = 1, N do
  c:send("ping " .. i .. "\n")
  assert(c:receive("*l") == "ping " .. i)
end
print(string.format("%.0f", N / (socket.gettime() - t)))
LUA
log "lua5.4 + luasocket: $N echo requests"
mkfifo "$work/ready"
lua5.4 "$work/server.lua" 7101 > "$work/ready" &
srv=$!
read -r _ < "$work/ready"
l_rps="$(lua5.4 "$work/client.lua" 7101 "$N")"
wait "$srv" || true

cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
table="| figure | moonlit (tasks on one loop) | lua5.4 + luasocket (blocking, 2 processes) |
|---|---|---|
| task switch through the loop (\`coroutine.yield()\`) | ${m_yield} us | - |
| start + park + wake, per task of a join chain | ${m_chain} us | - |
| loopback line echo, one connection | ${m_rps} req/s | ${l_rps} req/s |"
echo "$table"
if [ "$write" = 1 ]; then
  cat > "$repo/docs/bench-tasks.md" <<MD
# Lua tasks: switch cost and a loopback echo

Measured by \`bench/tasks/run.sh\` on $(date -u +%Y-%m-%d), $(nproc) cores ($cpu),
moonlit as PID 1 of a sandbox (\`moonlit run --sandbox\`), Debian's lua5.4 with
lua-socket beside it in the same run. $SWITCHES yields, $((SWITCHES / 10)) chained
tasks, $N echo requests.

$table

How: the yield figure is one task doing \`coroutine.yield()\` $SWITCHES times (each
is a request to the loop: one pass of \`Init::process\`, with epoll not waited on
because a task is ready). The chain starts $((SWITCHES / 10)) tasks, each joining the
previous one, and times until the last is joined: a task start, a park and a wake
per link. The echo is one TCP connection on 127.0.0.1: the client writes a line and
reads it back, N times; in moonlit the server (\`io.tcp.listen\` + \`autospawn\`) and
the client are tasks of the same loop, so each request is two fd waits through
epoll; luasocket's server and client are two processes with blocking calls (the
kernel switches between them), the way such a script is written without an event
loop.
MD
  log "wrote docs/bench-tasks.md"
fi
