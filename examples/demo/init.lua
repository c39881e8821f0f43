-- The demo's boot script. moonlit runs it once, as PID 1, after its fixed
-- stage 1 (/proc, /sys, /dev, /dev/pts, /dev/shm, /run are mounted already)
-- and before any service starts. It reads like a shell script; calls that
-- wait (wait_link, sleep) yield to moonlit's event loop instead of blocking.
local sys = require "sys"
local net = require "net"

local steps = {}
local function now() return sys.clock_gettime("monotonic").time end

-- Runs one step, timing it; a failed step is reported and the boot goes on.
local function step(name, f)
  local t = now()
  local ok, err = pcall(f)
  local ms = (now() - t) * 1000
  steps[#steps + 1] = string.format("%-8s %7.1f ms  %s", name, ms, ok and "ok" or ("FAILED: " .. tostring(err)))
  if not ok then print("demo: step " .. name .. " failed: " .. tostring(err)) end
end

-- Raises with the OS error when a raw call returned nil, err.
local function check(v, err, what)
  if v == nil then error(what .. ": " .. tostring(err), 0) end
  return v
end

local cmd = moonlit.cmdline            -- kernel command line: key=value pairs
local hostname = cmd["demo.hostname"] or "moonlit-demo"

step("mounts", function()
  check(sys.mount("tmpfs", "/tmp", "tmpfs", "nosuid,nodev", "mode=1777"))
  check(sys.util.mkdir_p("/run/www", "0755"))
end)

step("hostname", function()
  check(sys.sethostname(hostname))
end)

step("modules", function()
  -- Resolved through /lib/modules/<kver>/modules.dep in the initramfs,
  -- loaded with finit_module(2): no udev, no kmod.
  check(sys.modprobe("e1000"))
end)

step("network", function()
  check(net.link("lo"):up())
  -- e1000 registers eth0 asynchronously: wait for it (this yields to the
  -- event loop). Its address and default route are declared in network.lua;
  -- moonlit applies that declaration when this script ends, before any
  -- service starts.
  check(net.wait_link("eth0", { timeout = 10 }))
end)

step("www", function()
  local token = cmd["demo.token"] or "none"
  check(sys.util.writefile("/run/www/index.html", table.concat({
    "<h1>moonlit demo</h1>",
    "<p>served by busybox httpd, supervised by moonlit, on " .. hostname .. "</p>",
    "<p>token: " .. token .. "</p>", "",
  }, "\n")))
  check(sys.symlink("/etc/moonlit/www/cgi-bin", "/run/www/cgi-bin"))
end)

-- The boot summary. moonlit adds its own line with the totals when every
-- service has started ("boot complete in N ms (...)"), then "READY".
print("demo: boot script summary (host " .. hostname .. ", debug " .. tostring(moonlit.debug) .. ")")
for _, s in ipairs(steps) do print("demo:   " .. s) end
local keys = {}
for k, v in pairs(cmd) do
  if k:match("^demo%.") then keys[#keys + 1] = k .. "=" .. v end
end
table.sort(keys)
print("demo: command line: " .. (#keys > 0 and table.concat(keys, " ") or "(no demo.* keys)"))
