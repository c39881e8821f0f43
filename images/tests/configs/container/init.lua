-- A container's boot script: the runtime did the mounts already.
local sys = require "sys"
print("container: boot script ran, hostname " .. tostring(sys.gethostname()))
