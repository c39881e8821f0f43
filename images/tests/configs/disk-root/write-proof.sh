#!/bin/sh
# proof=TOKEN on the kernel command line names the file; proof.hold keeps
# this service (and so the machine) running after the write.
token=none
hold=
for w in $(cat /proc/cmdline); do
  case "$w" in
    proof=*) token=${w#proof=} ;;
    proof.hold) hold=1 ;;
  esac
done
mkdir -p /var/lib/proof
{ echo "moonlit proof $token"; seq 1 2000; } > "/var/lib/proof/$token.txt"
echo "proof: wrote /var/lib/proof/$token.txt"
if [ -n "$hold" ]; then
  exec sleep 100000
fi
exit 0
