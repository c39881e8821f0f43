#!/bin/sh
# Boot-time benchmark, systemd side: the same figure as bench/images/run.sh
# (guest time from init's start to a READY marker on the kernel's printk
# clock, same Debian kernel, same qemu flags, TCG) for systemd on a minimal
# Debian root made by debootstrap (minbase + systemd, systemd-sysv, udev,
# busybox-static), booted from an ext4 disk image.
#
# Usage: bench/images/systemd.sh [RUNS] [--write-doc]   (default 3 boots)
#   --write-doc  put the result section into docs/bench-images.md (replaces
#                the section between the systemd-bench markers, or appends it)
# Env: MOONLIT_SYSTEMD_CACHE (default /var/tmp/moonlit-bench-systemd: the
#      debootstrap tree, cached between runs, never in the repository),
#      DEBIAN_MIRROR (default: the Debian URI of apt's sources), BENCH_DATE,
#      BENCH_MACHINE, MOONLIT_MS (moonlit's median to compare with; default:
#      read from docs/bench-images.md).
# Needs root (debootstrap, device nodes in the initramfs), debootstrap,
# qemu-system-x86_64, mkfs.ext4, cpio, modprobe, the Debian kernel.
set -eu
cd "$(dirname "$0")/../.."
RUNS=3
WRITE_DOC=0
for a in "$@"; do
  case "$a" in
    --write-doc) WRITE_DOC=1 ;;
    *[!0-9]* | '') echo "usage: $0 [RUNS] [--write-doc]" >&2; exit 2 ;;
    *) RUNS=$a ;;
  esac
done
[ "$RUNS" -ge 1 ] || RUNS=1
die() { echo "systemd.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (debootstrap, mknod)"
for p in debootstrap qemu-system-x86_64 mkfs.ext4 cpio modprobe; do
  command -v "$p" >/dev/null || [ -x "/usr/sbin/$p" ] || [ -x "/sbin/$p" ] ||
    die "missing $p (apt-get install debootstrap; images/setup.sh for the rest)"
done
PATH="$PATH:/usr/sbin:/sbin"
HERE=bench/images/systemd
CACHE=${MOONLIT_SYSTEMD_CACHE:-/var/tmp/moonlit-bench-systemd}
case "$CACHE" in "$(pwd)"/*) die "the cache must be outside the repository" ;; esac
mkdir -p "$CACHE"

# The guest kernel: the newest /boot/vmlinuz-* with its module tree (as
# moonlit-images' host::debian_kernel does).
KERNEL=
for k in /boot/vmlinuz-*; do
  [ -f "/lib/modules/${k#/boot/vmlinuz-}/modules.dep" ] && KERNEL=$k
done
[ -n "$KERNEL" ] || die "no Debian kernel (/boot/vmlinuz-* with modules): run images/setup.sh"
KVER=${KERNEL#/boot/vmlinuz-}

# 1. The minimal Debian root (cached).
ROOT=$CACHE/root
if [ ! -x "$ROOT/lib/systemd/systemd" ]; then
  MIRROR=${DEBIAN_MIRROR:-$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
    /etc/apt/sources.list.d/*.sources 2>/dev/null |
    sed -n 's,^\(URIs:\|deb\)[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]*/debian\)/\?\([[:space:]].*\)\?$,\3,p' |
    head -n 1)}
  MIRROR=${MIRROR:-http://deb.debian.org/debian}
  echo "systemd.sh: debootstrap bookworm from $MIRROR into $ROOT" >&2
  rm -rf "$ROOT.new"
  debootstrap --variant=minbase --include=systemd,systemd-sysv,udev,busybox-static \
    bookworm "$ROOT.new" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 ||
    die "debootstrap failed, see $CACHE/debootstrap.log"
  mv "$ROOT.new" "$ROOT"
fi
# The benchmark's additions (idempotent): hostname, the page, the units.
echo bench >"$ROOT/etc/hostname"
mkdir -p "$ROOT/www"
echo '<h1>bench</h1>' >"$ROOT/www/index.html"
for u in bench-httpd bench-ready bench-report; do
  cp "$HERE/$u.service" "$ROOT/etc/systemd/system/$u.service"
  ln -sf "/etc/systemd/system/$u.service" "$ROOT/etc/systemd/system/multi-user.target.wants/$u.service"
done
[ -s "$ROOT/etc/machine-id" ] || die "$ROOT/etc/machine-id is empty (first boot would run)"

# 2. The ext4 disk image (mkfs.ext4 -d: no loop mount), copied for each boot
#    so every boot starts from the same state.
IMG=$CACHE/root.img
SIZE=$(( $(du -sm "$ROOT/" | cut -f1) + 256 ))
rm -f "$IMG"
truncate -s "${SIZE}M" "$IMG"
mkfs.ext4 -q -F -t ext4 -L bench-root -E root_owner=0:0 -d "$ROOT" "$IMG"

# 3. The initramfs that loads virtio_blk and ext4 (modules in this kernel)
#    and switches root to systemd (bench/images/systemd/init.sh).
IRD=$CACHE/initramfs
rm -rf "$IRD"
mkdir -p "$IRD/bin" "$IRD/dev"
cp /bin/busybox "$IRD/bin/busybox"
cp "$HERE/init.sh" "$IRD/init"
chmod 755 "$IRD/init"
mknod -m 600 "$IRD/dev/console" c 5 1
mknod -m 666 "$IRD/dev/null" c 1 3
mknod -m 644 "$IRD/dev/kmsg" c 1 11
: >"$IRD/modules.order"
for m in virtio_pci virtio_blk ext4; do
  modprobe -S "$KVER" --show-depends "$m" | sed -n 's/^insmod \([^ ]*\).*/\1/p'
done | awk '!seen[$0]++' | while read -r f; do
  mkdir -p "$IRD$(dirname "$f")"
  cp "$f" "$IRD$f"
  echo "${f#/}" >>"$IRD/modules.order"
done
(cd "$IRD" && find . | cpio -o -H newc --quiet) >"$CACHE/shim.cpio"

# stamp FILE NEEDLE: the printk stamp of the first line holding NEEDLE (the
# nearest "[...]" before it, as moonlit-images' qemu::stamp_of).
stamp() {
  awk -v n="$2" 'index($0, n) {
      s = substr($0, 1, index($0, n) - 1); i = 0
      while ((j = index(substr(s, i + 1), "[")) > 0) i += j
      if (i == 0) exit
      t = substr(s, i + 1); sub(/\].*/, "", t); gsub(/ /, "", t); print t; exit
    }' "$1"
}
ms() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "") exit 1; printf "%.0f", (b - a) * 1000 }'; }
median() { tr ' ' '\n' | sed '/^$/d' | sort -n | awk '{ v[NR] = $1 } END { print v[int(NR / 2) + 1] }'; }

# 4. Boots. The qemu flags are moonlit-images' VmConfig::args as used by
#    bench/images/boot.rs (TCG, 1 vCPU, 512 MiB, no NIC, serial on stdio),
#    plus the virtio disk (cache=writeback, as the runner attaches disks).
T_SD= T_INIT= T_SF= OUT=$CACHE/runs
rm -rf "$OUT"; mkdir -p "$OUT"
i=0
while [ "$i" -lt "$RUNS" ]; do
  cp --sparse=always "$IMG" "$OUT/disk.img"
  log=$OUT/run-$i.log
  qemu-system-x86_64 -accel tcg -m 512 -smp 1 -nodefaults -no-user-config \
    -display none -no-reboot -chardev stdio,id=con0,signal=off -serial chardev:con0 \
    -kernel "$KERNEL" -initrd "$CACHE/shim.cpio" \
    -append "console=ttyS0 panic=-1 root=/dev/vda rw" -nic none \
    -drive "file=$OUT/disk.img,format=raw,if=virtio,cache=writeback" \
    </dev/null >"$OUT/raw-$i.log" 2>"$OUT/qemu-$i.err" &
  qpid=$!
  waited=0
  until grep -q 'systemd-bench: DONE' "$OUT/raw-$i.log" 2>/dev/null; do
    kill -0 "$qpid" 2>/dev/null || break
    [ "$waited" -lt 600 ] || break # hard timeout: 300 s
    sleep 0.5; waited=$((waited + 1))
  done
  kill "$qpid" 2>/dev/null || true
  wait "$qpid" 2>/dev/null || true
  tr -d '\r' <"$OUT/raw-$i.log" >"$log"
  grep -q 'systemd-bench: DONE' "$log" ||
    die "run $i: no DONE marker within 300 s (or qemu ended); see $log: $(tail -n 15 "$log")"
  grep -q 'Kernel panic' "$log" && die "run $i: kernel panic, see $log"
  # A failed unit would make systemd look faster than it is.
  grep -q 'systemd-bench: bench-httpd: active' "$log" || die "run $i: httpd is not running, see $log"
  grep -q 'systemd-bench: system state: running' "$log" ||
    die "run $i: systemd is not in state running (a unit failed?), see $log"
  if grep -q 'FAILED' "$log"; then
    die "run $i: a unit failed: $(grep FAILED "$log" | head -n 5)"
  fi
  t0=$(stamp "$log" 'Run /init as init process')
  t1=$(stamp "$log" 'systemd-bench: exec systemd')
  t2=$(stamp "$log" 'systemd-bench: READY')
  sd=$(ms "$t1" "$t2") || die "run $i: missing stamps in $log"
  all=$(ms "$t0" "$t2") || die "run $i: missing stamps in $log"
  sf=$(sed -n 's/.*systemd-bench: Startup finished in \(.*[^ ]\) *$/\1/p' "$log" | head -n 1)
  echo "systemd run $i: exec systemd -> READY $sd ms; Run /init -> READY $all ms; Startup finished in $sf" >&2
  T_SD="$T_SD $sd" T_INIT="$T_INIT $all"
  T_SF="$T_SF
- $sf"
  i=$((i + 1))
done
rm -f "$OUT/disk.img"

MED_SD=$(echo "$T_SD" | median)
MED_INIT=$(echo "$T_INIT" | median)
list() { echo "$1" | sed 's/^ //; s/ /, /g'; }
REPORT=$(sed -n 's/.*systemd-bench: //p' "$OUT/run-$((RUNS - 1)).log" |
  sed '/^READY$/d; /^exec systemd$/d; /^DONE$/d')
MOONLIT_MS=${MOONLIT_MS:-$(sed -n 's/^| moonlit ([^|]*| \([0-9]*\) ms |.*/\1/p' docs/bench-images.md | head -n 1)}
if [ -n "$MOONLIT_MS" ]; then
  RATIO=$(awk -v s="$MED_SD" -v m="$MOONLIT_MS" 'BEGIN { printf "%.1f", s / m }')
  if awk -v r="$RATIO" 'BEGIN { exit !(r >= 10) }'; then
    VERDICT="systemd's median ($MED_SD ms) is $RATIO times moonlit's ($MOONLIT_MS ms, the moonlit row of docs/bench-images.md when the script ran): the goal \"at least 10 times faster than systemd\" is met in this setup."
  else
    VERDICT="systemd's median ($MED_SD ms) is $RATIO times moonlit's ($MOONLIT_MS ms, the moonlit row of docs/bench-images.md when the script ran): the goal \"at least 10 times faster than systemd\" is NOT met in this setup."
  fi
else
  VERDICT="no moonlit figure found in docs/bench-images.md (set MOONLIT_MS): no ratio."
fi
DATE=${BENCH_DATE:-$(date -u +%F)}
MACHINE=${BENCH_MACHINE:-$(nproc) cores}
SDVER=$(sed -n 's/.*\(systemd [0-9][^ ]*\) running in system mode.*/\1/p' "$OUT/run-0.log" | head -n 1)
ROOTMB=$(du -sm "$ROOT/" | cut -f1)

SECTION=$(cat <<EOF
<!-- systemd-bench:begin (written by bench/images/systemd.sh --write-doc) -->
## systemd on a minimal Debian root

Date: $DATE. Machine: $MACHINE. Same guest kernel ($KVER) and the same qemu flags as above (TCG, 1 vCPU, 512 MiB, no NIC, serial console), plus a virtio disk. Produced by \`bench/images/systemd.sh $RUNS\` ($RUNS boots, each from a fresh copy of the same image).

Root: \`debootstrap --variant=minbase --include=systemd,systemd-sysv,udev,busybox-static bookworm\` ($SDVER, $ROOTMB MB), left as Debian sets it up (its default units and timers, getty on the serial console, no /etc/fstab entries, volatile journal) with only these additions (bench/images/systemd/): hostname \`bench\`, the same page in /www, \`bench-httpd.service\` (busybox httpd, the one service) and \`bench-ready.service\`, a oneshot with \`Wants=\`/\`After=bench-httpd.service\` (and, by systemd's default dependencies, after basic.target: the mounts, udev, journald, tmpfiles) that writes \`systemd-bench: READY\` to /dev/kmsg, as the moonlit and busybox images do. systemd does all the mounts itself. Nothing is masked. The root is an ext4 image made with \`mkfs.ext4 -d\` (no loop mount), attached as /dev/vda.

This kernel has virtio_blk and ext4 as modules, so a small initramfs (busybox-static and those modules with their dependencies, bench/images/systemd/init.sh) loads them, mounts /dev/vda read-write, unmounts everything it mounted, writes \`systemd-bench: exec systemd\` to /dev/kmsg and switch_roots to /sbin/init (systemd). The figure is read on the kernel's printk clock from that hand-over marker to READY: the counterpart of the rows above, which start at the kernel's "Run /init as init process" line (the moonlit and busybox images need no initramfs step). From "Run /init" (the shim included) the times are also given.

| init | median | runs (ms) |
|---|---|---|
| systemd (exec of /sbin/init to READY) | $MED_SD ms | $(list "$T_SD") |
| systemd, from the kernel's "Run /init" (shim: insmod, mount, switch_root) | $MED_INIT ms | $(list "$T_INIT") |

systemd's own "Startup finished in" (kernel = until systemd started, shim included; userspace = until its default target was reached, later than READY), per run:
$T_SF

systemd-analyze in the last run (copied to the console by bench-report.service, which starts only after READY):

\`\`\`
$REPORT
\`\`\`

Verdict: $VERDICT Under TCG every guest instruction is emulated and the 2 cores were shared with other work: compare the rows, not the absolute numbers. Differences left in: systemd reads its root from an ext4 disk (the moonlit and busybox images run from the initramfs), it prints its status lines on the serial console, as Debian's default does, and the root holds no kernel modules (no kernel package is installed in it), so udev loads none: the last two favour systemd.
<!-- systemd-bench:end -->
EOF
)
echo "$SECTION" >"$CACHE/section.md"
echo "$SECTION"
if [ "$WRITE_DOC" = 1 ]; then
  doc=docs/bench-images.md
  if grep -q '^<!-- systemd-bench:begin' "$doc"; then
    awk -v f="$CACHE/section.md" '
      /^<!-- systemd-bench:begin/ { while ((getline l < f) > 0) print l; skip = 1; next }
      /^<!-- systemd-bench:end/ { skip = 0; next }
      !skip' "$doc" >"$doc.new"
  else
    { cat "$doc"; echo; cat "$CACHE/section.md"; } >"$doc.new"
  fi
  mv "$doc.new" "$doc"
  echo "systemd.sh: wrote $doc" >&2
fi
