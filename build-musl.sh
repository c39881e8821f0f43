#!/usr/bin/env bash
# Builds the static release binary of moonlit for x86_64-unknown-linux-musl
# and fails unless it really is static: no program interpreter, no dynamic
# section. Prints the binary's path on success.
#
#   ./build-musl.sh [--keep-symbols]
#
# --keep-symbols leaves the symbol table in (bench/core/order.sh and
# breakdown.sh map addresses to functions); run it with its own
# CARGO_TARGET_DIR, as they do, so that the stripped file stays stripped.
set -euo pipefail
keep=""
case "${1:-}" in
  "") ;;
  --keep-symbols) keep=1 ;;
  *) echo "build-musl.sh: unknown argument '$1' (expected --keep-symbols or nothing)" >&2; exit 2 ;;
esac
cd "$(dirname "$0")"
target=x86_64-unknown-linux-musl
if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
  rustup target add "$target"
fi
# std is compiled here with the program (-Z build-std, from the toolchain's
# rust-src; RUSTC_BOOTSTRAP lets the stable toolchain take the flag): at
# opt-level z, without the backtrace symbolizer, with the size-optimised
# algorithms, and with panic = abort, so no landing pads. That is 0.27 MB
# less than the prebuilt std (docs/DESIGN.md, "std built for size").
# MOONLIT_OWN_STD tells init/build.rs to leave libunwind out (no_unwind.rs).
# MOONLIT_PREBUILT_STD=1 links the toolchain's prebuilt std instead (no
# unstable flag; 0.33 MB larger), should a toolchain's -Z build-std break.
# LLVM inlines less than at opt-level z's default threshold (5): -20 keeps
# only the inlining its cost model expects to shrink the code (-44 KB;
# docs/DESIGN.md, "std built for size"). Appended to the target's rustflags
# of .cargo/config.toml; the std compiled here gets it too.
inline=(--config "target.$target.rustflags=[\"-C\", \"llvm-args=-inline-threshold=-20\"]")
if [ -n "${MOONLIT_PREBUILT_STD:-}" ]; then
  cargo build --release --locked --target "$target" -p moonlit "${inline[@]}" >&2
else
  if ! rustup component list --installed 2>/dev/null | grep -q '^rust-src'; then
    rustup component add rust-src || {
      echo "build-musl.sh: cannot add the rust-src component, from which std is compiled;" \
        "MOONLIT_PREBUILT_STD=1 builds with the prebuilt std (0.33 MB larger)" >&2
      exit 1
    }
  fi
  MOONLIT_OWN_STD=1 RUSTC_BOOTSTRAP=1 cargo build --release --locked --target "$target" -p moonlit \
    "${inline[@]}" -Z build-std=std,panic_abort -Z build-std-features=optimize_for_size >&2
fi
bin="${CARGO_TARGET_DIR:-target}/$target/release/moonlit"
[ -x "$bin" ] || { echo "build-musl.sh: $bin was not built" >&2; exit 1; }
# panic = "abort" and no C++: nothing ever unwinds (Lua errors longjmp, and
# the panic hook prints no backtrace), so the unwind tables are dead weight
# (about 0.38 MB). objcopy leaves an empty GNU_EH_FRAME header behind.
# The profile does not strip (see Cargo.toml); the shipped file is stripped.
strip_args=(--strip-all)
[ -n "$keep" ] && strip_args=()
objcopy "${strip_args[@]}" --remove-section=.eh_frame --remove-section=.eh_frame_hdr \
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
