#!/usr/bin/env bash
# Figure for moonlit's DHCP client against qemu's own DHCP server (user
# network, TCG), beside busybox udhcpc in the same VM boot and from the same
# starting point: the VM has two e1000 NICs, each on its own qemu user
# network (its own DHCP server); eth0 is moonlit's, eth1 udhcpc's. init.lua
# brings both up, waits until both have carrier, waits one second more, then
# starts udhcpc and ends, which starts moonlit's client: both first packets
# leave within a few ms of each other, one second after carrier.
# Runs the VM test images/tests/vm_dhcp.rs RUNS times (default 5), one boot
# each, and reads the figures it prints; the table gives medians.
#
#   bench/dhcp/run.sh [--write]     (root; --write: docs/bench-dhcp.md)
#
# A benchmark: it never fails on a slow figure, only when a run fails.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
write=0
[ "${1:-}" = "--write" ] && write=1
RUNS="${RUNS:-5}"
[ "$(id -u)" = 0 ] || { echo "bench: needs root (qemu, the test's setup)" >&2; exit 1; }
cd "$repo"
./build-musl.sh >/dev/null
a=(); m=(); u=(); s=()
for i in $(seq "$RUNS"); do
  out="$(cargo test -q -p moonlit-images --test vm_dhcp -- --nocapture 2>&1)" || { echo "$out" >&2; exit 1; }
  a+=("$(echo "$out" | sed -n 's/.*figure: moonlit acked in \([0-9]*\) ms.*/\1/p' | head -1)")
  m+=("$(echo "$out" | sed -n 's/.*figure: moonlit bound in \([0-9]*\) ms.*/\1/p' | head -1)")
  u+=("$(echo "$out" | sed -n 's/.*figure: udhcpc rc=0 bound in \([0-9]*\) ms.*/\1/p' | head -1)")
  s+=("$(echo "$out" | sed -n "s/.*figure: carrier+1s to moonlit's DISCOVER \([0-9]*\) ms.*/\1/p" | head -1)")
  echo "bench: run $i: moonlit ACK ${a[-1]} ms, bound ${m[-1]} ms; udhcpc ${u[-1]} ms; moonlit's DISCOVER ${s[-1]} ms after the start mark" >&2
done
med() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
table="| client (own NIC and qemu DHCP server each, started 1 s after carrier) | median of $RUNS boots | runs |
|---|---|---|
| moonlit, first DISCOVER to the ACK | $(med "${a[@]}") ms | ${a[*]} |
| moonlit, first DISCOVER to bound (after its ARP probe, 3 probes + 400 ms) | $(med "${m[@]}") ms | ${m[*]} |
| busybox udhcpc \`-n -q\` (no ARP check), exec to bound | $(med "${u[@]}") ms | ${u[*]} |"
echo "$table"
if [ "$write" = 1 ]; then
  cat >docs/bench-dhcp.md <<DOC
# DHCP client: figures

Produced by \`bench/dhcp/run.sh --write\`, $(date -u +%Y-%m-%d), $(nproc) cores,
Debian $(. /etc/os-release && echo "$VERSION_ID") host, qemu TCG: the Debian
kernel with two e1000 NICs, each on its own qemu user network, whose
built-in DHCP server (libslirp) answers the client on that NIC.

$table

How it is measured: one VM boot per run, both clients in it. init.lua brings
eth0 and eth1 up, waits until both have carrier, waits one second more,
starts \`udhcpc -i eth1 -n -q -f -s /bin/true\` (timed with /proc/uptime
around it) and ends; the declared network is then applied and moonlit's
client sends its first DISCOVER on eth0 (median $(med "${s[@]}") ms after
init.lua's mark; runs: ${s[*]}). moonlit's figures are the differences of
its console stamps: \`dhcp eth0: discovering\` (just before the DISCOVER),
\`dhcp eth0: ACK for ...\` (the ACK arrives, the ARP probe starts) and
\`dhcp eth0: bound\`.

Reading it: the exchange itself (DISCOVER to ACK) is the comparable figure
(udhcpc's also holds the exec of busybox under TCG and /proc/uptime's 10 ms
steps); moonlit's bound time adds its conflict probe (RFC 5227 style: three
ARP probes 200 ms apart, then 400 ms of listening; \`probe = false\` drops
it), which udhcpc does only with \`-a\`. An earlier version of this page
timed moonlit from the carrier and udhcpc seconds later, and moonlit's OFFER
came about one second after its DISCOVER in every run; asked one second
after carrier, it comes within 0.1 s, so that second belonged to the link's
first moments after carrier (where the first packets go), not to the client.
DOC
  echo "bench: wrote docs/bench-dhcp.md" >&2
fi
