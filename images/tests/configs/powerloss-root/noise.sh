#!/bin/sh
# See services/noise.lua. Rewrites 64 KiB of a 256 KiB file every 0.05 s.
grep -qw powerloss.noise /proc/cmdline || exit 0
echo 50 > /proc/sys/vm/dirty_expire_centisecs
echo 20 > /proc/sys/vm/dirty_writeback_centisecs
echo "noise: rewriting /var/lib/noise.dat without fsync"
i=0
while :; do
  dd if=/dev/urandom of=/var/lib/noise.dat bs=4096 count=16 seek=$((i % 4 * 16)) conv=notrunc 2>/dev/null
  i=$((i + 1))
  usleep 50000
done
