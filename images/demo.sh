#!/usr/bin/env bash
# Boots the demo configuration (examples/demo) in a VM: builds the static
# moonlit, builds an initramfs with it, busybox and the e1000 module, and
# starts qemu (TCG) with the console on this terminal and the demo's web
# server on http://127.0.0.1:${PORT:-8080}/ . Power it off with
#   curl http://127.0.0.1:${PORT:-8080}/cgi-bin/poweroff
# or by typing on the console after booting with RESCUE=1 (a shell).
set -euo pipefail
cd "$(dirname "$0")/.."
images/setup.sh
bin=$(./build-musl.sh)
cargo build -q --release -p moonlit-images
tool="${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-musl/release/moonlit-images"
out="${OUT:-${TMPDIR:-/tmp}/moonlit-demo}"
mkdir -p "$out"
"$tool" initramfs --moonlit "$bin" --config examples/demo --busybox -o "$out/demo.cpio"
append="demo.hostname=moonlit-demo"
[ "${RESCUE:-}" = 1 ] && append="$append moonlit.rescue"
echo "demo: console log in $out/console.log; web server on http://127.0.0.1:${PORT:-8080}/" >&2
exec "$tool" boot --initrd "$out/demo.cpio" --forward "${PORT:-8080}:80" \
  --append "$append ${APPEND:-}" --console "$out/console.log"
