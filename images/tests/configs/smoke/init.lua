-- The core smoke test's boot script (no busybox in this image: the only
-- program is moonlit itself). Reports what the kernel command line gave.
print("smoke: boot script ran")
print("smoke: debug=" .. tostring(moonlit.debug))
local keys = {}
for k, v in pairs(moonlit.cmdline) do keys[#keys + 1] = k .. "=[" .. v .. "]" end
table.sort(keys)
for _, k in ipairs(keys) do print("smoke: cmdline " .. k) end
