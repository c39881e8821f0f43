#!/bin/sh
# Boot-time benchmark of images/: guest time from the kernel starting /init
# to READY, moonlit vs busybox init (same kernel, same qemu flags, TCG), and
# moonlit PID 1's RSS with the demo running. Writes docs/bench-images.md.
# Usage: bench/images/run.sh [RUNS]   (default 3 boots per init)
# Env: MOONLIT_BIN (prebuilt static moonlit), BENCH_DATE, BENCH_MACHINE.
set -eu
cd "$(dirname "$0")/../.."
images/setup.sh
if [ -z "${MOONLIT_BIN:-}" ]; then
  MOONLIT_BIN=$(./build-musl.sh)
  case "$MOONLIT_BIN" in /*) ;; *) MOONLIT_BIN="$(pwd)/$MOONLIT_BIN" ;; esac
fi
export MOONLIT_BIN
# The figures are dated: today (UTC) unless told otherwise.
BENCH_DATE=${BENCH_DATE:-$(date -u +%F)}
export BENCH_DATE
cargo build --release -q -p moonlit-images --example bench-images
exec "${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-musl/release/examples/bench-images" "$@"
