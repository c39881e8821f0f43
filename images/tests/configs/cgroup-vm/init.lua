-- A VM for per-service cgroups (cgroup2 with every controller, mounted by
-- moonlit itself): a memory hog under memory_max, a forker under pids_max,
-- an idle service whose cpu_weight a reload changes, and a web server whose
-- CGI pages show the status beside the cgroup files.
local sys = require "sys"
local net = require "net"
assert(sys.mount("tmpfs", "/tmp", "tmpfs", "nosuid,nodev", "mode=1777"))
assert(sys.util.mkdir_p("/run/www", "0755"))
assert(sys.modprobe("e1000"))
assert(net.link("lo"):up())
assert(net.wait_link("eth0", { timeout = 10 }))
assert(sys.util.writefile("/run/www/index.html", "moonlit cgroup vm\n"))
assert(sys.symlink("/etc/moonlit/www/cgi-bin", "/run/www/cgi-bin"))

-- How moonlit mounted cgroup2 (the test wants favordynmods).
for line in io.lines("/proc/self/mounts") do
  if line:match("^cgroup2 ") then print("cgroup2 mount: " .. line) end
end
