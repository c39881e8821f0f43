-- A VM whose only network configuration is `dhcp = true` (network.lua):
-- the NIC's driver, lo, and a page for the host to fetch.
--
-- The figure (bench/dhcp/run.sh): the VM has two e1000 NICs, each on its
-- own qemu user network with its own DHCP server. eth0 is moonlit's (its
-- client starts when the declared network is applied, right after this
-- script); eth1 is busybox udhcpc's, started by this script just before it
-- ends. Both links are brought up here and have had carrier for one second
-- before either client sends its first packet, so both ask at the same
-- moment of their links' lives.
local sys = require "sys"
local net = require "net"
assert(sys.mount("tmpfs", "/tmp", "tmpfs", "nosuid,nodev", "mode=1777"))
assert(sys.util.mkdir_p("/run/www", "0755"))
assert(sys.modprobe("e1000"))
assert(net.link("lo"):up())
assert(sys.util.writefile("/run/www/index.html", "moonlit dhcp vm\n"))
assert(sys.symlink("/etc/moonlit/www/cgi-bin", "/run/www/cgi-bin"))
for _, n in ipairs({ "eth0", "eth1" }) do
  assert(net.wait_link(n, { timeout = 10 }))
  assert(net.link(n):up())
end
for _, n in ipairs({ "eth0", "eth1" }) do
  assert(net.wait_link(n, { carrier = true, timeout = 10 }))
end
sleep(1)
moonlit.log("figure: both links have had carrier for 1 s; clients start")
-- udhcpc's script is /bin/true: it changes nothing, only the time is kept.
spawn { "/bin/sh", "-c", [[
  t0=$(/bin/busybox cut -d' ' -f1 /proc/uptime)
  /bin/busybox udhcpc -i eth1 -n -q -f -s /bin/true >/dev/null 2>&1; rc=$?
  t1=$(/bin/busybox cut -d' ' -f1 /proc/uptime)
  echo "figure: udhcpc rc=$rc bound in $(/bin/busybox awk "BEGIN { printf \"%d\", ($t1 - $t0) * 1000 }") ms"
]] }
