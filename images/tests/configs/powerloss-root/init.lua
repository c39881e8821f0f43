-- The configuration on the ext4 disk of the power-loss tests, run by the
-- moonlit that the initramfs (examples/switch-root) hands over to.
local sys = require "sys"
local m = {}
for _, e in ipairs(sys.util.mounts()) do
  if e.target == "/" then m[#m + 1] = e.source .. " " .. e.type .. " " .. e.options end
end
print("powerloss-root: running on / = " .. table.concat(m, "; "))

-- The negative control of the volatile-cache disk: without barriers ext4
-- sends no flushes, so even fsynced records stay in the disk's cache.
if moonlit.cmdline["powerloss.nobarrier"] then
  local ok, err = sys.mount { target = "/", flags = "remount", data = "barrier=0" }
  print("powerloss-root: remount barrier=0: " .. tostring(ok) .. " " .. tostring(err or ""))
end
