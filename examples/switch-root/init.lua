-- An initramfs that boots a real root filesystem, as a distribution's
-- initramfs does: load the disk and filesystem drivers, wait for the disk,
-- mount it and hand PID 1 over to its /sbin/init (moonlit again, with the
-- disk's own /etc/moonlit). Kernel command line: root=/dev/vda (default),
-- rootfstype=ext4 (default), init=/sbin/init (default).
local sys = require "sys"
local cmd = moonlit.cmdline

local function check(v, err, what)
  if v == nil then error((what or "") .. tostring(err), 0) end
  return v
end

-- Drivers of the Debian kernel that are modules (literal names: the image
-- builder copies exactly these, with their modules.dep closure).
check(sys.modprobe("virtio_pci"), nil, "virtio_pci: ")
check(sys.modprobe("virtio_blk"), nil, "virtio_blk: ")
-- ext4 wants crc32c (a soft dependency that sys.modprobe does not follow).
check(sys.modprobe("crc32c_generic"), nil, "crc32c: ")
check(sys.modprobe("ext4"), nil, "ext4: ")

local root = cmd["root"] or "/dev/vda"
local fstype = cmd["rootfstype"] or "ext4"
check(wait_path(root, 15))
check(sys.util.mkdir_p("/newroot", "0755"))
check(sys.mount(root, "/newroot", fstype, cmd["ro"] and "rdonly" or 0, nil), nil, "mount " .. root .. ": ")
print("switch-root: " .. root .. " (" .. fstype .. ") mounted on /newroot; switching")
-- Returns only on failure (the new root has no init, ...).
local _, err = moonlit.switch_root("/newroot", cmd["init"] or "/sbin/init")
error("switch_root failed: " .. tostring(err), 0)
