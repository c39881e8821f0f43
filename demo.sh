#!/usr/bin/env bash
# Builds the static moonlit and boots the demo configuration as PID 1 of
# fresh namespaces (root). `./demo.sh --vm` boots it in qemu instead.
set -euo pipefail
cd "$(dirname "$0")"
bash ./setup.sh
bin=$(./build-musl.sh)
if [ "${1:-}" = "--vm" ]; then
  exec bash images/demo-vm.sh "$bin"
fi
echo "moonlit: booting examples/sandbox as PID 1 of new namespaces; ctrl-c to power off"
exec "$bin" run --sandbox --control /run/moonlit/demo.sock examples/sandbox
