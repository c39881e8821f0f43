-- moonlit side of bench/net: add then delete N IPv4 addresses on one link,
-- one netlink request each (the same requests `ip addr add/del` sends).
local net = require "net"
local dev, n = arg[1], tonumber(arg[2])
local l = assert(net.link(dev))
local addrs = {}
for i = 1, n do addrs[i] = string.format("10.200.%d.%d/32", i // 256, i % 256) end
local t0 = net._now()
for i = 1, n do assert(l:add_address(addrs[i])) end
local t1 = net._now()
for i = 1, n do assert(l:del_address(addrs[i])) end
local t2 = net._now()
io.stderr:write(string.format("lua-internal add %.4f del %.4f\n", t1 - t0, t2 - t1))
