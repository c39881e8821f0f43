#!/usr/bin/env bash
# Builds the static release binary of moonlit for x86_64-unknown-linux-musl
# and fails unless it really is static: no program interpreter, no dynamic
# section. Prints the binary's path on success.
set -euo pipefail
cd "$(dirname "$0")"
target=x86_64-unknown-linux-musl
if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
  rustup target add "$target"
fi
cargo build --release --locked --target "$target" -p moonlit >&2
bin="${CARGO_TARGET_DIR:-target}/$target/release/moonlit"
[ -x "$bin" ] || { echo "build-musl.sh: $bin was not built" >&2; exit 1; }
# panic = "abort" and no C++: nothing ever unwinds (Lua errors longjmp, and
# the panic hook prints no backtrace), so the unwind tables are dead weight
# (about 0.38 MB). objcopy leaves an empty GNU_EH_FRAME header behind.
# The profile does not strip (see Cargo.toml); the shipped file is stripped.
objcopy --strip-all --remove-section=.eh_frame --remove-section=.eh_frame_hdr \
  --remove-section=.gcc_except_table "$bin"
if readelf -SW "$bin" | grep -Eq '\.(eh_frame|gcc_except_table)\b'; then
  echo "build-musl.sh: $bin still has unwind tables" >&2; exit 1
fi
# No program interpreter, no DYNAMIC segment, no dynamic section.
if readelf -lW "$bin" | grep -Eq '^\s*(INTERP|DYNAMIC)\b'; then
  echo "build-musl.sh: $bin has an interpreter or a dynamic segment: not static" >&2; exit 1
fi
if readelf -SW "$bin" | grep -Eq '\.(dynamic|interp)\b'; then
  echo "build-musl.sh: $bin has a .dynamic or .interp section: not static" >&2; exit 1
fi
echo "$bin"
