-- `syscall.nl`: the common subset of ljsyscall's netlink helpers, on top of `net`.
local net = ...
local nl = {}

local iface = {}
local iface_mt = { __index = iface }

local function addrs_of(index)
  local v4, v6 = {}, {}
  local list, err = net.addresses()
  if not list then return nil, nil, err end
  for _, a in ipairs(list) do
    if a.index == index then
      local e = { addr = a.address, prefixlen = a.prefix, broadcast = a.broadcast, scope = a.scope }
      if a.family == "inet6" then v6[#v6 + 1] = e else v4[#v4 + 1] = e end
    end
  end
  return v4, v6
end

-- IFF_* by ljsyscall's lower-case names.
local IFF = {
  up = 0x1, broadcast = 0x2, debug = 0x4, loopback = 0x8, pointopoint = 0x10,
  notrailers = 0x20, running = 0x40, noarp = 0x80, promisc = 0x100,
  allmulti = 0x200, master = 0x400, slave = 0x800, multicast = 0x1000,
  portsel = 0x2000, automedia = 0x4000, dynamic = 0x8000, lower_up = 0x10000,
  dormant = 0x20000, echo = 0x40000,
}
local flags_mt = {
  -- Any case (`flags.UP`); a name that is no IFF_ flag is an error, not a
  -- silent false.
  __index = function(f, k)
    local bit = type(k) == "string" and IFF[k:lower():gsub("^iff_", "")]
    if not bit then error("interface flags: no flag named " .. tostring(k), 2) end
    return f.value & bit ~= 0
  end,
  __tostring = function(f)
    local on = {}
    for name, bit in pairs(IFF) do if f.value & bit ~= 0 then on[#on + 1] = name:upper() end end
    table.sort(on)
    return table.concat(on, ",")
  end,
}

-- ljsyscall's shape: a table of booleans by flag name, `value` the number.
local function flags_of(value)
  local f = { value = value }
  for name, bit in pairs(IFF) do f[name] = value & bit ~= 0 end
  return setmetatable(f, flags_mt)
end

local function fill(i, link, v4, v6)
  i._link = link
  i.name, i.index, i.flags, i.mtu = link.name, link.index, flags_of(link.flags), link.mtu
  i.macaddr, i.kind, i.carrier, i.master = link.mac, link.kind, link.carrier, link.master
  i.stats = link.stats
  i.inet, i.inet6 = v4 or {}, v6 or {}
  return i
end

local function mkiface(link, v4, v6)
  return fill(setmetatable({}, iface_mt), link, v4, v6)
end

iface_mt.__tostring = function(i)
  local s = { i.name .. "  index " .. i.index .. "  mtu " .. i.mtu .. (i._link.is_up and "  UP" or "") }
  if i.macaddr then s[#s + 1] = "  HWaddr " .. i.macaddr end
  for _, a in ipairs(i.inet) do s[#s + 1] = "  inet " .. a.addr .. "/" .. a.prefixlen end
  for _, a in ipairs(i.inet6) do s[#s + 1] = "  inet6 " .. a.addr .. "/" .. a.prefixlen end
  return table.concat(s, "\n")
end

function iface.refresh(i)
  local ok, err = i._link:refresh()
  if not ok then return nil, err end
  local v4, v6, aerr = addrs_of(i.index)
  if not v4 then return nil, aerr end
  return fill(i, i._link, v4, v6)
end

local function after(i, ok, err)
  if not ok then return nil, err end
  return i:refresh()
end

function iface.up(i) return after(i, i._link:up()) end
function iface.down(i) return after(i, i._link:down()) end
function iface.setmtu(i, mtu) return after(i, i._link:set_mtu(mtu)) end
function iface.setmac(i, mac) return after(i, i._link:set_mac(mac)) end
function iface.rename(i, name) return after(i, i._link:rename(name)) end

local function cidr(address, netmask)
  if type(address) ~= "string" then
    error("bad argument #1 (address string expected, got " .. type(address) .. ")", 3)
  end
  if netmask ~= nil then
    if type(netmask) ~= "number" then
      error("bad argument #2 (prefix length expected, got " .. type(netmask) .. ")", 3)
    end
    return address .. "/" .. math.tointeger(netmask)
  end
  return address
end

function iface.address(i, address, netmask)
  return after(i, i._link:add_address(cidr(address, netmask)))
end

function iface.deladdress(i, address, netmask)
  return after(i, i._link:del_address(cidr(address, netmask)))
end

function iface.delete(i)
  local ok, err = i._link:delete()
  if not ok then return nil, err end
  return true
end

function iface.move_ns(i, ns)
  return i._link:move_to(ns)
end

local ifaces_mt = {}
ifaces_mt.__index = {
  refresh = function(is)
    local new, err = nl.interfaces()
    if not new then return nil, err end
    for k in pairs(is) do is[k] = nil end
    for k, v in pairs(new) do is[k] = v end
    return is
  end,
}
ifaces_mt.__tostring = function(is)
  local s = {}
  for _, i in ipairs(is) do s[#s + 1] = tostring(i) end
  return table.concat(s, "\n")
end

--- All interfaces, by name and in order, with their addresses (inet, inet6).
function nl.interfaces()
  local links, err = net.links()
  if not links then return nil, err end
  local addrs, aerr = net.addresses()
  if not addrs then return nil, aerr end
  local r = {}
  local byindex = {}
  for _, l in ipairs(links) do
    local i = mkiface(l)
    r[#r + 1] = i
    r[l.name] = i
    byindex[l.index] = i
  end
  for _, a in ipairs(addrs) do
    local i = byindex[a.index]
    if i then
      local e = { addr = a.address, prefixlen = a.prefix, broadcast = a.broadcast, scope = a.scope }
      if a.family == "inet6" then i.inet6[#i.inet6 + 1] = e else i.inet[#i.inet + 1] = e end
    end
  end
  return setmetatable(r, ifaces_mt)
end

--- One interface by name or index.
function nl.interface(name)
  local l, err = net.link(name)
  if not l then return nil, err end
  local v4, v6, aerr = addrs_of(l.index)
  if not v4 then return nil, aerr end
  return mkiface(l, v4, v6)
end

--- nl.create_interface{name=, type=, link=, id=, peer={name=}, address=, mode=}
function nl.create_interface(t)
  if type(t) ~= "table" then
    error("bad argument #1 to 'create_interface' (table expected, got " .. type(t) .. ")", 2)
  end
  local spec = { name = t.name, kind = t.type or t.kind, link = t.link, id = t.id, mode = t.mode,
                 mac = t.address or t.mac, mtu = t.mtu }
  local peer = t.peer
  if type(peer) == "table" then peer = peer.name end
  spec.peer = peer
  local l, err = net.create(spec)
  if not l then return nil, err end
  return true
end

local routes_mt = {}
routes_mt.__index = {
  match = function(rs, addr, len)
    if type(addr) == "string" and addr:find("/", 1, true) then
      local a, l = addr:match("^(.*)/(%d+)$")
      addr, len = a, tonumber(l)
    end
    local m = setmetatable({ family = rs.family }, routes_mt)
    for _, r in ipairs(rs) do
      if r.dst_len == len and r.dest == addr then m[#m + 1] = r end
    end
    return m
  end,
  refresh = function(rs)
    local new, err = nl.routes(rs.family)
    if not new then return nil, err end
    for k in pairs(rs) do rs[k] = nil end
    for k, v in pairs(new) do rs[k] = v end
    return rs
  end,
}

local families = { [2] = "inet", [10] = "inet6", inet = "inet", inet6 = "inet6", ipv4 = "inet", ipv6 = "inet6" }

--- nl.routes(af): routes of the main table, ljsyscall-shaped (dest, dst_len, gw, output).
function nl.routes(af)
  local fam = af and families[af]
  if af and not fam then error("bad argument #1 to 'routes' (unknown family " .. tostring(af) .. ")", 2) end
  local list, err = net.routes{ family = fam }
  if not list then return nil, err end
  local r = setmetatable({ family = fam }, routes_mt)
  for _, x in ipairs(list) do
    local dest = x.to
    if dest == "default" then dest = (x.family == "inet6") and "::" or "0.0.0.0" else dest = dest:match("^(.*)/") end
    r[#r + 1] = { family = x.family, dest = dest, dst_len = x.dst_len, gw = x.via, output = x.dev, oif = x.oif,
                  metric = x.metric, source = x.src, table = x.table, protocol = x.protocol, type = x.type }
  end
  return r
end

nl.add_route = net.add_route
nl.replace_route = net.replace_route
nl.delete_route = net.del_route
nl.del_route = net.del_route

return nl
