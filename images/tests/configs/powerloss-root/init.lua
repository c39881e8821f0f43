-- The configuration on the ext4 disk of the power-loss tests, run by the
-- moonlit that the initramfs (examples/switch-root) hands over to.
local sys = require "sys"
local m = {}
for _, e in ipairs(sys.util.mounts()) do
  if e.target == "/" then m[#m + 1] = e.source .. " " .. e.type .. " " .. e.options end
end
print("powerloss-root: running on / = " .. table.concat(m, "; "))
