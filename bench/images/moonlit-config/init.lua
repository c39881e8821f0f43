-- Boot-time benchmark, moonlit side: the same work as the busybox inittab
-- (stage 1 already mounted /proc /sys /dev /dev/pts /dev/shm /run), a
-- hostname, then one service (services/web.lua) and the READY marker
-- (services/marker.lua).
local sys = require "sys"
sys.sethostname("bench")
