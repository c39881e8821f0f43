#!/bin/busybox sh
# /init of the small initramfs used to boot the systemd root (the Debian
# kernel has virtio_blk and ext4 as modules). It loads them (the list is
# made by bench/images/systemd.sh from modules.dep), mounts /dev/vda read-write
# at /newroot, leaves no mount behind (systemd does all mounts itself), marks
# the hand-over on the kernel's printk clock and switches root to systemd.
bb=/bin/busybox
for m in $($bb cat /modules.order); do
  $bb insmod "/$m" 2>/dev/null || echo "systemd-bench-shim: insmod $m failed (ignored)"
done
$bb mkdir -p /devtmp /newroot /proc
$bb mount -t devtmpfs devtmpfs /devtmp
i=0
while [ ! -b /devtmp/vda ] && [ $i -lt 100 ]; do $bb usleep 100000; i=$((i + 1)); done
$bb mount -t ext4 -o rw /devtmp/vda /newroot || {
  echo "systemd-bench-shim: cannot mount /dev/vda"; $bb poweroff -f; }
$bb umount /devtmp
echo "systemd-bench: exec systemd" > /dev/kmsg
exec $bb switch_root /newroot /sbin/init
echo "systemd-bench-shim: switch_root failed"
$bb poweroff -f
