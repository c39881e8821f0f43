#!/bin/sh
# Builds the sys binding benchmark in release for musl and runs it.
# Usage: bench/sys/run.sh [PATH-TO-STAT]   (default /etc/hostname)
# Results are recorded by hand in docs/bench-sys.md.
set -eu
cd "$(dirname "$0")/../.."
cargo build --release -p moonlit-sys --example bench-sys
bin="${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-musl/release/examples/bench-sys"
echo "date: $(date -u +%Y-%m-%d)  kernel: $(uname -r)  cpus: $(nproc)"
exec "$bin" "$@"
