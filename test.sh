#!/usr/bin/env bash
# Sets up a fresh Debian machine (as root) and runs every moonlit test:
# unit tests, Lua-written binding tests, the real binary as PID 1 in fresh
# namespaces, netlink tests in fresh network namespaces, VM boots under qemu
# (TCG) and a container under runc.
set -euo pipefail
cd "$(dirname "$0")"
if [ "$(id -u)" -ne 0 ]; then
  echo "test.sh: the suite creates namespaces, boots VMs and runs containers: run it as root" >&2
  exit 1
fi
bash ./setup.sh
./build-musl.sh >/dev/null
cargo test --workspace --locked -- --test-threads=2
