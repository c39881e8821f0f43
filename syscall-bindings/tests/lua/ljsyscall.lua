-- A port of a set of ljsyscall's behavioural tests, written from ljsyscall's
-- documented behaviour (not copied), run against `require "syscall"`.
-- Root, inside fresh namespaces (tests/lua.rs runs it through unshare).
local S = require "syscall"
local T = require "testlib"
T.need_root()
local base = T.tmpdir()
local tmpfile = base .. "/tmp"

-- errors: nil, err with err.NOENT and a strerror text
local fd, err = S.open("/this/does/not/exist", "rdonly")
T.ok(fd == nil and err.NOENT, "open missing: NOENT")
T.ok(tostring(err):find("No such file or directory", 1, true), "tostring(err)")

-- mkdir / stat / rmdir
T.ok(S.mkdir(tmpfile, "0755"), "mkdir")
local st = assert(S.stat(tmpfile))
T.ok(st.isdir and not st.isreg, "stat isdir")
T.eq(st.mode & 0x1ff, 493, "mode 0755")
T.ok(S.rmdir(tmpfile), "rmdir")
local st2, err2 = S.stat(tmpfile)
T.ok(st2 == nil and err2.NOENT, "stat after rmdir: NOENT")
local ok, e = S.mkdir(base, "0755")
T.ok(ok == nil and e.EXIST, "mkdir existing: EXIST")

-- pipe read/write, ljsyscall shape: true, nil, r, w
local pok, perr, r, w = S.pipe()
T.ok(pok == true and perr == nil and r and w, "pipe shape")
T.eq(w:write("test"), 4, "pipe write")
T.eq(r:read(), "test", "pipe read")
T.ok(r:close() and w:close(), "pipe close")

-- dup2
local z = assert(S.open("/dev/zero", "rdonly"))
local d = assert(S.dup2(z, 17))
T.eq(d:getfd(), 17, "dup2 number")
T.eq(#d:read(nil, 8), 8, "read via the dup")
T.ok(d:close() and z:close(), "close")

-- rename
assert(S.util.writefile(tmpfile, "data"))
T.ok(S.rename(tmpfile, tmpfile .. "2"), "rename")
T.ok(S.stat(tmpfile) == nil and S.stat(tmpfile .. "2").isreg, "renamed")
T.ok(S.unlink(tmpfile .. "2"), "unlink")

-- symlink / readlink
T.ok(S.symlink("/etc/passwd", tmpfile), "symlink")
T.eq(S.readlink(tmpfile), "/etc/passwd", "readlink")
T.ok(S.lstat(tmpfile).islnk, "lstat islnk")
T.ok(S.unlink(tmpfile), "unlink link")

-- umask
local old = S.umask("0022")
T.eq(S.umask(old), 18, "umask returns the previous value (0022)")

-- mknod with t.device, fifo via mknod
T.ok(S.mknod(tmpfile, "fchr,0666", S.t.device(1, 5)), "mknod char device")
local ns = S.stat(tmpfile)
T.ok(ns.ischr and ns.rdev.major == 1 and ns.rdev.minor == 5, "device 1:5")
T.ok(S.unlink(tmpfile), "unlink node")
T.ok(S.mknod(tmpfile, "fifo,0600"), "mknod fifo")
T.ok(S.stat(tmpfile).isfifo, "fifo")
T.ok(S.unlink(tmpfile), "unlink fifo")

-- Constant tables take what a flag string takes, as ljsyscall's do.
local c = S.c
T.eq(c.O["creat, excl, rdwr"], c.O.CREAT | c.O.EXCL | c.O.RDWR, "comma list with spaces")
T.eq(c.O["CREAT,Excl , rdwr"], c.O.CREAT | c.O.EXCL | c.O.RDWR, "any case")
T.eq(c.O.creat, c.O.CREAT, "lower case name")
T.eq(c.O.O_CREAT, c.O.CREAT, "with the prefix")
T.eq(c.O["nosuchflag"], nil, "unknown names are nil")
T.eq(c.MS["rdonly, nosuid"], c.MS.RDONLY | c.MS.NOSUID, "another set")

-- getdents
assert(S.mkdir(tmpfile, "0700"))
for _, n in ipairs { "a", "b", "c" } do assert(S.util.writefile(tmpfile .. "/" .. n, n)) end
local dfd = assert(S.open(tmpfile, "directory,rdonly"))
local seen = {}
-- ljsyscall's own shape: each entry is a table with name and type tests.
for d in dfd:getdents() do seen[d.name] = d end
T.ok(seen.a and seen.b and seen.c and seen["."] and seen[".."], "getdents names")
T.ok(seen.a.reg and seen["."].dir and seen[".."].dir and not seen.a.dir, "getdents type tests")
T.ok(seen.a.REG and seen["."].DIR and seen.a.isreg, "getdents older spellings")
T.ok(not seen["."].chr and not seen["."].sock and not seen["."].lnk, "getdents negative type tests")
dfd:close()

-- uname
local u = assert(S.uname())
T.eq(u.sysname, "Linux", "uname sysname")
T.ok(u.release and u.machine and u.nodename, "uname fields")

-- sethostname in a new uts namespace
T.ok(S.unshare("newuts"), "unshare newuts")
T.ok(S.sethostname("myhostname"), "sethostname")
T.eq(S.gethostname(), "myhostname", "gethostname")
T.eq(S.uname().nodename, "myhostname", "uname nodename")

-- mount in a new mount namespace
T.ok(S.unshare("newns"), "unshare newns")
T.ok(S.mount("none", "/", nil, "rec,private"), "make / private")
T.ok(S.mount{ source = "none", target = tmpfile, type = "tmpfs", flags = "rdonly, noatime" }, "mount tmpfs table form")
local wf, werr = S.open(tmpfile .. "/x", "creat,wronly")
T.ok(wf == nil and werr.ROFS, "read-only mount")
T.ok(S.umount(tmpfile), "umount")
T.ok(S.stat(tmpfile .. "/a"), "underlying dir back")

-- waitpid shape: pid, nil, status
local child = testutil.spawn("/bin/sh", "-c", "exit 7")
local wp, wnil, status = S.waitpid(child)
T.ok(wp == child and wnil == nil, "waitpid shape")
T.ok(status.WIFEXITED and status.EXITSTATUS == 7, "status")
local ok2, err3 = S.waitpid(-1)
T.ok(ok2 == nil and err3.CHILD, "waitpid without children: CHILD")

-- socketpair shape: true, nil, a, b
local sok, snil, a, b = S.socketpair("unix", "stream")
T.ok(sok == true and snil == nil, "socketpair shape")
T.eq(a:write("hi"), 2, "write on a socket")
T.eq(b:read(2), "hi", "read on a socket")

T.rm_rf(base)
T.done()
