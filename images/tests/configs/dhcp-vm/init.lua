-- A VM whose only network configuration is `dhcp = true` (network.lua):
-- the NIC's driver, lo, and a page for the host to fetch.
local sys = require "sys"
local net = require "net"
assert(sys.mount("tmpfs", "/tmp", "tmpfs", "nosuid,nodev", "mode=1777"))
assert(sys.util.mkdir_p("/run/www", "0755"))
assert(sys.modprobe("e1000"))
assert(net.link("lo"):up())
assert(net.wait_link("eth0", { timeout = 10 }))
assert(sys.util.writefile("/run/www/index.html", "moonlit dhcp vm\n"))
assert(sys.symlink("/etc/moonlit/www/cgi-bin", "/run/www/cgi-bin"))
