-- modules.dep / modules.alias / modules.builtin resolution against a fake tree
-- (no root, no kernel module support needed).
local sys = require "sys"
local T = require "testlib"
local dir = T.tmpdir()
local W = sys.util.writefile
assert(W(dir .. "/modules.dep", table.concat({
  "kernel/drivers/net/e1000/e1000.ko.xz:",
  "kernel/drivers/net/virtio_net.ko.zst: kernel/drivers/net/net_failover.ko.zst kernel/net/core/failover.ko.zst",
  "kernel/drivers/net/net_failover.ko.zst: kernel/net/core/failover.ko.zst",
  "kernel/net/core/failover.ko.zst:",
  "kernel/fs/fuse/cuse-mod.ko: kernel/fs/fuse/fuse.ko",
  "kernel/fs/fuse/fuse.ko:",
  "",
}, "\n")))
assert(W(dir .. "/modules.alias", table.concat({
  "# Aliases extracted from modules themselves.",
  "alias pci:v00008086d0000100Esv*sd*bc*sc*i* e1000",
  "alias virtio:d00000001v* virtio_net",
  "alias char-major-10-229 fuse",
  "alias fs-veth veth",
  "",
}, "\n")))
assert(W(dir .. "/modules.builtin", "kernel/drivers/net/veth.ko\n"))

local function rel(list)
  local out = {}
  for i, p in ipairs(list) do out[i] = p:sub(#dir + 2) end
  return table.concat(out, " ")
end

T.eq(rel(assert(sys.modprobe_resolve("virtio_net", dir))),
  "kernel/net/core/failover.ko.zst kernel/drivers/net/net_failover.ko.zst kernel/drivers/net/virtio_net.ko.zst",
  "dependencies first, each once")
T.eq(rel(assert(sys.modprobe_resolve("virtio-net", dir))), rel(sys.modprobe_resolve("virtio_net", dir)), "- and _ are one")
T.eq(rel(assert(sys.modprobe_resolve("cuse_mod", dir))), "kernel/fs/fuse/fuse.ko kernel/fs/fuse/cuse-mod.ko", "file names with -")
T.eq(rel(assert(sys.modprobe_resolve("pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00", dir))),
  "kernel/drivers/net/e1000/e1000.ko.xz", "alias glob")
T.eq(rel(assert(sys.modprobe_resolve("char-major-10-229", dir))), "kernel/fs/fuse/fuse.ko", "alias with -")
T.eq(#assert(sys.modprobe_resolve("veth", dir)), 0, "built-in: nothing to load")
T.eq(#assert(sys.modprobe_resolve("fs-veth", dir)), 0, "alias of a built-in")
local none, err = sys.modprobe_resolve("nosuchmodule", dir)
T.fails("NOENT", none, err)
T.ok(tostring(err):find("'nosuchmodule' not found", 1, true), "names the missing module: " .. tostring(err))
T.eq(err.path, "nosuchmodule", "err.path is the module")
local none2, err2 = sys.modprobe("nosuchmodule", nil, dir)
T.fails("NOENT", none2, err2)
local none3, err3 = sys.modprobe_resolve("e1000", dir .. "/nope")
T.fails("NOENT", none3, err3)
T.ok(tostring(err3):find("modules.dep", 1, true), "says modules.dep is missing")
T.raises("module directory must be a string", sys.modprobe, "x", nil, {})
-- modules.softdep: "pre" before, "post" after, unknown ones skipped
assert(W(dir .. "/modules.softdep", table.concat({
  "# Soft dependencies extracted from modules themselves.",
  "softdep virtio_net pre: pci:v00008086d0000100Esv0sd0bc0sc0i0 post: cuse-mod nosuchmodule",
  "",
}, "\n")))
T.eq(rel(assert(sys.modprobe_resolve("virtio_net", dir))),
  "kernel/drivers/net/e1000/e1000.ko.xz kernel/net/core/failover.ko.zst kernel/drivers/net/net_failover.ko.zst "
  .. "kernel/drivers/net/virtio_net.ko.zst kernel/fs/fuse/fuse.ko kernel/fs/fuse/cuse-mod.ko",
  "soft dependencies around the module")
T.rm_rf(dir)
T.done()
