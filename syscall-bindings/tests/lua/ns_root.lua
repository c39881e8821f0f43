-- Root tests of `sys`, run by tests/lua.rs inside fresh mount, uts, ipc and net
-- namespaces (unshare --mount --uts --ipc --net --propagation private).
local sys = require "sys"
local T = require "testlib"
local c = sys.c
T.need_root()
local tmp = T.tmpdir()
local TMPFS_MAGIC = 0x01021994

-- we really are in a fresh net namespace: lo is down, loopback is unreachable
local s0 <close> = assert(sys.socket("inet", "stream"))
T.ok(s0:bind("127.0.0.1:0") and s0:listen(), "listen on 127.0.0.1")
local s1 <close> = assert(sys.socket("inet", "stream"))
T.fails("NETUNREACH", s1:connect("127.0.0.1", s0:getsockname().port))
T.eq(sys.util.sysctl("net.ipv4.ip_forward", "1"), "0", "per-netns sysctl, old value")
T.eq(sys.util.sysctl("net.ipv4.ip_forward"), "1", "sysctl written")

-- mount a tmpfs, bind-mount it, remount read-only, umount -----------------------
local mnt, bind = tmp .. "/mnt", tmp .. "/bind"
assert(sys.mkdir(mnt) and sys.mkdir(bind))
T.ok(sys.mount("tmpfs", mnt, "tmpfs", "nosuid,nodev", "size=4m,mode=0755"), "mount tmpfs")
T.eq(sys.statfs(mnt).type, TMPFS_MAGIC, "statfs sees tmpfs")
local found
for _, m in ipairs(sys.util.mounts()) do if m.target == mnt then found = m end end
T.ok(found and found.type == "tmpfs" and found.options:find("nosuid", 1, true), "util.mounts lists it")
T.ok(sys.util.writefile(mnt .. "/hello", "world"), "write into tmpfs")
T.ok(sys.mount(mnt, bind, nil, "bind"), "bind mount")
T.eq(sys.util.readfile(bind .. "/hello"), "world", "bind shows the file")
T.ok(sys.mount(nil, bind, nil, "remount,bind,rdonly"), "remount bind read-only")
T.fails("ROFS", sys.open(bind .. "/new", "wronly,creat")) -- write on the read-only bind fails
T.fails("ROFS", sys.mkdir(bind .. "/d"))
T.ok(sys.util.writefile(mnt .. "/still", "rw"), "original mount still writable")
T.ok(sys.umount(bind), "umount bind")
T.fails("INVAL", sys.umount(bind)) -- not a mount point any more
T.ok(sys.mount{ target = mnt, flags = "remount,rdonly", type = "tmpfs" }, "table form remount ro")
T.fails("ROFS", sys.open(mnt .. "/x", "wronly,creat"))
T.ok(sys.mount{ target = mnt, flags = c.MS.REMOUNT }, "remount rw (numeric flags)")
T.ok(sys.util.writefile(mnt .. "/x", ""), "writable again")
T.ok(sys.umount(mnt, "detach"), "umount detach")
T.fails("NOENT", sys.umount(tmp .. "/nope"))
T.fails("NOENT", sys.mount("tmpfs", tmp .. "/nope", "tmpfs"))
T.fails("NODEV", sys.mount("x", mnt, "nosuchfs"))
T.raises("target must be a string", sys.mount, "tmpfs", nil, "tmpfs")

-- propagation flags
assert(sys.mount("tmpfs", mnt, "tmpfs"))
T.ok(sys.mount(nil, mnt, nil, "private,rec"), "make private")
T.ok(sys.mount(nil, mnt, nil, "shared"), "make shared")
T.ok(sys.umount2(mnt), "umount2 alias")

-- the new mount API -----------------------------------------------------------
local fsfd, ferr = sys.fsopen("tmpfs")
if not fsfd then error("fsopen(tmpfs) failed: " .. tostring(ferr) .. " (kernel without the new mount API?)") end
T.ok(sys.fsconfig(fsfd, "set_string", "size", "1m"), "fsconfig set_string")
T.fails("INVAL", sys.fsconfig(fsfd, "set_string", "nosuchoption", "1"))
T.ok(sys.fsconfig(fsfd, "create"), "fsconfig create")
local mfd = assert(sys.fsmount(fsfd, nil, "nodev,noexec"))
T.ok(sys.move_mount(mfd, "", nil, mnt, "f_empty_path"), "move_mount")
T.eq(sys.statfs(mnt).type, TMPFS_MAGIC, "new-API mount is a tmpfs")
T.ok(sys.util.writefile(mnt .. "/n", "new"), "write on new-API mount")
local tree = assert(sys.open_tree(nil, mnt, "clone"))
T.ok(sys.move_mount(tree, "", "fdcwd", bind, "f_empty_path"), "open_tree clone + move_mount")
T.eq(sys.util.readfile(bind .. "/n"), "new", "cloned tree shows the file")
tree:close(); mfd:close() -- an open mount fd keeps the mount busy
T.fails("BUSY", (function() local x <close> = assert(sys.open_tree(nil, bind, 0)); return sys.umount(bind) end)())
T.ok(sys.umount(bind) and sys.umount(mnt), "umount new-API mounts")
T.fails("NODEV", sys.fsopen("nosuchfs"))
T.raises("key required", sys.fsconfig, fsfd, "set_flag")

-- host name and domain in the uts namespace ---------------------------------
T.ok(sys.sethostname("moonlit-test"), "sethostname")
T.eq(sys.uname().nodename, "moonlit-test", "uname after sethostname")
T.eq(sys.gethostname(), "moonlit-test", "gethostname")
T.ok(sys.setdomainname("example.org"), "setdomainname")
T.eq(sys.uname().domainname, "example.org", "uname domainname")
T.fails("INVAL", sys.sethostname(string.rep("x", 65)))
T.eq(sys.util.sysctl("kernel.hostname", "via-sysctl"), "moonlit-test", "sysctl write returns the old value")
T.eq(sys.uname().nodename, "via-sysctl", "sysctl write took")
assert(sys.sethostname("moonlit-test"))

-- unshare and setns --------------------------------------------------------------
local uts <close> = assert(sys.open("/proc/self/ns/uts", "rdonly"))
T.ok(sys.unshare("newuts"), "unshare newuts")
T.ok(sys.sethostname("inner"), "hostname in the inner namespace")
T.eq(sys.gethostname(), "inner", "inner hostname")
T.ok(sys.setns(uts, "newuts"), "setns back")
T.eq(sys.gethostname(), "moonlit-test", "outer hostname again")
T.fails("INVAL", sys.setns(assert(sys.open(tmp, "rdonly,directory")), 0))
T.fails("INVAL", sys.unshare(0x40000000 | 1)) -- an invalid flag bit

-- device nodes and ownership -----------------------------------------------------
assert(sys.mount("tmpfs", mnt, "tmpfs"))
T.ok(sys.mknod(mnt .. "/null", "fchr,0666", sys.makedev(1, 3)), "mknod char device")
local nst = sys.stat(mnt .. "/null")
T.ok(nst.ischr and nst.rdev.major == 1 and nst.rdev.minor == 3, "device numbers")
T.ok(sys.mknod(mnt .. "/null2", "fchr,0666", { major = 1, minor = 3 }), "mknod with a dev table")
local nf <close> = assert(sys.open(mnt .. "/null2", "wronly"))
T.eq(nf:write("discarded"), 9, "write to the new null device")
T.fails("EXIST", sys.mknod(mnt .. "/null", "fchr,0666", sys.makedev(1, 3)))
assert(sys.util.writefile(mnt .. "/owned", ""))
T.ok(sys.chown(mnt .. "/owned", 65534, 65534), "chown")
T.eq(sys.stat(mnt .. "/owned").uid, 65534, "chown applied")

-- swap, kernel log, modules (error paths where success would touch the host) --------
assert(sys.util.writefile(mnt .. "/swapfile", string.rep("\0", 65536)))
T.fails("INVAL", sys.swapon(mnt .. "/swapfile")) -- tmpfs cannot hold swap
T.fails("INVAL", sys.swapoff(mnt .. "/swapfile")) -- not a swap area
T.fails("NOENT", sys.swapon(mnt .. "/noswap", "discard", 5))
T.ok(sys.klogctl("size_buffer") > 0, "klogctl SIZE_BUFFER")
T.ok(sys.klogctl("size_unread") >= 0, "klogctl SIZE_UNREAD")
T.ok(type(sys.klogctl("read_all", 256)) == "string", "klogctl READ_ALL")
T.raises("type required", sys.klogctl)
T.ok(sys.kmsg("moonlit-sys test: /dev/kmsg write", 6), "kmsg")
assert(sys.util.writefile(mnt .. "/garbage.ko", "not an ELF module"))
local gk <close> = assert(sys.open(mnt .. "/garbage.ko", "rdonly"))
local lok, lerr = sys.finit_module(gk, "")
T.ok(lok == nil and lerr.errno > 0, "finit_module refuses garbage: " .. tostring(lerr))
local dok, derr = sys.delete_module("moonlit_no_such_module")
-- ENOENT, or ENOSYS on a kernel built without module (unloading) support
T.ok(dok == nil and (derr.NOENT or derr.NOSYS), "delete_module of an unknown module: " .. tostring(derr))

-- modprobe against a fake tree: dependencies are loaded first ----------------------
local fake = tmp .. "/modules"
assert(sys.util.mkdir_p(fake .. "/kernel"))
assert(sys.util.writefile(fake .. "/modules.dep",
  "kernel/top.ko: kernel/dep.ko\nkernel/dep.ko:\n"))
assert(sys.util.writefile(fake .. "/kernel/dep.ko", "garbage"))
assert(sys.util.writefile(fake .. "/kernel/top.ko", "garbage"))
local mok, merr = sys.modprobe("top", nil, fake)
T.ok(mok == nil and merr.path == fake .. "/kernel/dep.ko", "modprobe loads the dependency first: " .. tostring(merr))

-- modprobe of a real module of the running kernel, or a clear skip ---------------------
local want = os.getenv("MOONLIT_TEST_MODULE") or "dummy"
local release = sys.uname().release
local files, rerr = sys.modprobe_resolve(want)
if not files then
  print(string.format("SKIP modprobe: module '%s' is not available for the running kernel %s (%s)",
    want, release, tostring(rerr)))
else
  local ok, err = sys.modprobe(want)
  T.ok(ok, "modprobe " .. want .. ": " .. tostring(err))
  T.ok(sys.stat("/sys/module/" .. want:gsub("-", "_")), "module visible in /sys/module")
end

-- pivot_root into a tmpfs, then chroot ---------------------------------------------
T.fails("NOENT", sys.pivot_root(tmp .. "/nope", tmp .. "/nope/old"))
local newroot = tmp .. "/newroot"
assert(sys.mkdir(newroot))
assert(sys.mount("tmpfs", newroot, "tmpfs"))
assert(sys.mkdir(newroot .. "/old"))
assert(sys.util.writefile(newroot .. "/marker", "pivoted"))
assert(sys.chdir(newroot))
T.ok(sys.pivot_root(".", "old"), "pivot_root")
assert(sys.chdir("/"))
T.eq(sys.util.readfile("/marker"), "pivoted", "new root is the tmpfs")
T.ok(sys.stat("/old" .. tmp), "old root under /old")
T.ok(sys.umount("/old", "detach"), "detach the old root")
T.fails("NOENT", sys.stat("/old" .. tmp))
T.ok(sys.chroot("/"), "chroot")
T.fails("NOENT", sys.chroot("/nope"))

-- credentials last: they cannot be undone -----------------------------------------
T.ok(sys.setgroups({}), "setgroups")
T.eq(#sys.getgroups(), 0, "no groups")
T.ok(sys.setgid(65534), "setgid")
T.ok(sys.setuid(65534), "setuid")
T.eq(sys.getuid(), 65534, "uid")
T.eq(sys.getegid(), 65534, "gid")
T.fails("PERM", sys.setuid(0))
T.fails("PERM", sys.sethostname("nope"))
T.done()
