#!/usr/bin/env bash
# Builds the static moonlit and boots the demo configuration (examples/demo)
# in a VM: the Debian kernel under qemu (TCG), moonlit as /init, the network
# declared, busybox httpd supervised and reachable from this host on
# http://127.0.0.1:${PORT:-8080}/ (power off: curl .../cgi-bin/poweroff).
# `./demo.sh --sandbox` boots examples/sandbox as PID 1 of fresh namespaces
# instead (ctrl-c powers it off).
set -euo pipefail
cd "$(dirname "$0")"
if [ "$(id -u)" -ne 0 ]; then
  echo "demo.sh: run as root (it installs packages and creates namespaces)" >&2
  exit 1
fi
bash ./setup.sh
if [ "${1:-}" = "--sandbox" ]; then
  bin=$(./build-musl.sh)
  echo "moonlit: booting examples/sandbox as PID 1 of new namespaces; ctrl-c to power off"
  exec "$bin" run --sandbox --control /run/moonlit/demo.sock examples/sandbox
fi
exec bash images/demo.sh
