#!/usr/bin/env bash
# Installs what building and testing moonlit needs on Debian (run as root).
# Idempotent: only missing packages are installed.
set -euo pipefail
pkgs=(
  musl-tools
  lld
  iproute2
  util-linux
  procps
  busybox-static
  cpio e2fsprogs
  qemu-system-x86
  linux-image-amd64
  runc umoci skopeo buildah
  tini runit dumb-init catatonit python3
  curl
  systemd
  kmod
  librsvg2-bin
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
if ! rustup target list --installed | grep -qx x86_64-unknown-linux-musl; then
  rustup target add x86_64-unknown-linux-musl
fi
# build-musl.sh compiles std with the program (-Z build-std needs its source).
if ! rustup component list --installed | grep -q '^rust-src'; then
  rustup component add rust-src
fi
