#!/usr/bin/env bash
# Installs what images/ and its tests need on a fresh Debian 12 machine (as
# root): the guest kernel, qemu, Debian's static busybox, cpio, e2fsprogs,
# runc and curl, and for the OCI image layout tests umoci (unpacks a layout
# into a runc bundle), skopeo (reads and copies layouts and oci-archives) and
# buildah (builds images/oci/Dockerfile). Installs only what is missing; safe
# to run again.
set -euo pipefail
pkgs=(linux-image-amd64 qemu-system-x86 busybox-static cpio e2fsprogs runc curl umoci skopeo buildah)
missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "images/setup.sh: needs root to install: ${missing[*]}" >&2
    exit 1
  fi
  echo "images/setup.sh: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
# The checks the tests rely on.
ls /boot/vmlinuz-* >/dev/null 2>&1 || { echo "images/setup.sh: no /boot/vmlinuz-*" >&2; exit 1; }
command -v qemu-system-x86_64 >/dev/null || { echo "images/setup.sh: no qemu-system-x86_64" >&2; exit 1; }
[ -x /bin/busybox ] || { echo "images/setup.sh: no /bin/busybox (busybox-static)" >&2; exit 1; }
for t in runc umoci skopeo buildah; do
  command -v "$t" >/dev/null || { echo "images/setup.sh: no $t" >&2; exit 1; }
done
echo "images/setup.sh: ready" >&2
