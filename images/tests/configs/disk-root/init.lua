-- The configuration on the ext4 root, run by the moonlit that the
-- initramfs handed over to with switch_root.
local sys = require "sys"
local m = {}
for _, e in ipairs(sys.util.mounts()) do
  if e.target == "/" then m[#m + 1] = e.source .. " " .. e.type .. " " .. e.options end
end
print("disk-root: running on / = " .. table.concat(m, "; "))
