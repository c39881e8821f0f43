---@meta sys
-- LuaLS type stubs for moonlit's `sys` module, kept in step with docs/lua/sys.md.
-- Every call returns its value (or true) on success and `nil, err` on an OS
-- failure; wrong argument types raise.

---A flag argument: a number, or a comma list of names without the C prefix in any case ("rdonly,creat").
---@alias sys.flags string|integer
---A mode: a number or an octal string ("0755"), possibly with type and permission names ("fchr,0666").
---@alias sys.mode string|integer
---An fd object or a plain fd number.
---@alias sys.fdarg sys.fd|integer
---A directory fd for the *at calls: an fd, nil or "fdcwd".
---@alias sys.dirfd sys.fd|integer|"fdcwd"|nil
---A socket address: "127.0.0.1:80", "[::1]:80", "/path", "@abstract", or a table.
---@alias sys.sockaddr string|{family?:"inet"|"inet6", addr?:string, port?:integer, path?:string, abstract?:string}

---An OS failure: `err.errno`, `err.sym` ("NOENT"), `err.NOENT`/`err.noent` booleans, `tostring(err)` = "call(path): strerror".
---@class sys.err
---@field errno integer
---@field sym string?
---@field call string
---@field path string?
---@field detail string?
---@field msg string
---@field [string] boolean

---A file descriptor owned by the script: closed on GC unless :nogc() (never 0-2), usable as `local f <close> = ...`.
---Every fd-taking function of `sys` is also a method (`fd:read(10)`).
---@class sys.fd
local fd = {}
---@return integer fd the number (-1 once closed)
function fd:getfd() end
---@return integer
function fd:fileno() end
---Do not close on garbage collection.
---@return sys.fd self
function fd:nogc() end
---@return true|nil ok
---@return sys.err? err
function fd:close() end
---@param count? integer
---@return string|nil data
---@return sys.err? err
function fd:read(count) end
---@param data string
---@return integer|nil written
---@return sys.err? err
function fd:write(data) end
---@return sys.stat|nil
---@return sys.err? err
function fd:fstat() end
---@return fun():sys.dirent?,string?
function fd:getdents() end

---@class sys.dev
---@field device integer
---@field major integer
---@field minor integer

---@class sys.stat
---@field dev sys.dev
---@field ino integer
---@field mode integer
---@field perm integer
---@field type "reg"|"dir"|"lnk"|"chr"|"blk"|"fifo"|"sock"|"unknown"
---@field nlink integer
---@field uid integer
---@field gid integer
---@field rdev sys.dev
---@field size integer
---@field blksize integer
---@field blocks integer
---@field atime integer
---@field mtime integer
---@field ctime integer
---@field atime_nsec integer
---@field mtime_nsec integer
---@field ctime_nsec integer
---@field isreg boolean
---@field isdir boolean
---@field islnk boolean
---@field ischr boolean
---@field isblk boolean
---@field isfifo boolean
---@field issock boolean

---@class sys.statfs
---@field type integer
---@field bsize integer
---@field blocks integer
---@field bfree integer
---@field bavail integer
---@field files integer
---@field ffree integer
---@field namelen integer
---@field frsize integer
---@field flags integer

---@class sys.dirent
---@field name string
---@field ino integer
---@field type string "reg", "dir", "lnk", "chr", "blk", "fifo", "sock" or "unknown"
---@field isdir boolean
---@field isreg boolean
---@field islnk boolean
---@field reg boolean? ljsyscall's type tests: the field named by `type` is true
---@field dir boolean?
---@field lnk boolean?
---@field chr boolean?
---@field blk boolean?
---@field fifo boolean?
---@field sock boolean?

---@class sys.mountspec
---@field source string?
---@field target string
---@field type string?
---@field flags sys.flags?
---@field data string?

---@class sys.rlimit
---@field cur integer
---@field max integer
---@field rlim_cur integer
---@field rlim_max integer

---@class sys.waitstatus
---@field status integer
---@field WIFEXITED boolean
---@field WIFSIGNALED boolean
---@field WIFSTOPPED boolean
---@field WIFCONTINUED boolean
---@field WCOREDUMP boolean
---@field EXITSTATUS integer?
---@field TERMSIG integer?
---@field STOPSIG integer?
---@field exited boolean
---@field code integer?
---@field signal integer?

---@class sys.uname
---@field sysname string
---@field nodename string
---@field release string
---@field version string
---@field machine string
---@field domainname string

---@class sys.sysinfo
---@field uptime integer
---@field loads number[]
---@field totalram integer
---@field freeram integer
---@field sharedram integer
---@field bufferram integer
---@field totalswap integer
---@field freeswap integer
---@field procs integer
---@field totalhigh integer
---@field freehigh integer
---@field mem_unit integer

---@class sys.timespec
---@field sec integer
---@field nsec integer
---@field tv_sec integer
---@field tv_nsec integer
---@field time number

---@class sys.addr
---@field family "inet"|"inet6"|"unix"|integer
---@field addr string?
---@field port integer?
---@field path string?
---@field abstract string?

---@class sys.mount_entry
---@field source string
---@field target string
---@field type string
---@field options string
---@field ro boolean

---@class sys.util
local util = {}
---Parsed /proc/self/mounts.
---@return sys.mount_entry[]|nil
---@return sys.err? err
function util.mounts() end
---mkdir -p; an existing directory is success.
---@param path string
---@param mode? sys.mode default 0755
---@return true|nil
---@return sys.err? err
function util.mkdir_p(path, mode) end
---@param path string
---@return string|nil
---@return sys.err? err
function util.readfile(path) end
---@param path string
---@param data string
---@param mode? sys.mode default 0644
---@param how? "w"|"a" truncate (default) or append
---@return true|nil
---@return sys.err? err
function util.writefile(path, data, mode, how) end
---Reads /proc/sys/<name> ("net.ipv4.ip_forward" or "net/ipv4/ip_forward"); with a value, writes it. Returns the (old) value.
---@param name string
---@param value? string|integer|boolean
---@return string|nil
---@return sys.err? err
function util.sysctl(name, value) end
---Sorted names in a directory, without . and ..
---@param dir string
---@return string[]|nil
---@return sys.err? err
function util.ls(dir) end
---The kernel command line (/proc/cmdline, or the given string): t[i] the words in order, t[key] = value or true.
---@param text? string
---@return table<string|integer, string|boolean>|nil
---@return sys.err? err
function util.cmdline(text) end

---@class sys
---@field c table<string, table<string, integer>> constants: c.O, c.MS, c.UMOUNT (MNT), c.CLONE, c.S (MODE), c.AT, c.SEEK, c.OK, c.SOCK, c.AF, c.SOL, c.SO, c.IPPROTO, c.TCP, c.MSG, c.SHUT, c.F, c.FD, c.PR, c.RLIMIT, c.RLIM, c.PRIO, c.RB, c.CLOCK, c.W, c.IOCTL, c.SWAP, c.E, c.SIG, c.MODULE_INIT, c.FSOPEN, c.FSMOUNT, c.MOUNT_ATTR, c.MOVE_MOUNT, c.OPEN_TREE, c.FSCONFIG, c.SYSLOG_ACTION
---@field util sys.util
local sys = {}

---open(2); O_CLOEXEC is always added. Mode defaults to 0666 (umask applies).
---@param path string
---@param flags? sys.flags
---@param mode? sys.mode
---@return sys.fd|nil
---@return sys.err? err
function sys.open(path, flags, mode) end

---openat(2).
---@param dirfd sys.dirfd
---@param path string
---@param flags? sys.flags
---@param mode? sys.mode
---@return sys.fd|nil
---@return sys.err? err
function sys.openat(dirfd, path, flags, mode) end

---close(2); idempotent on fd objects.
---@param fd sys.fdarg
---@return true|nil
---@return sys.err? err
function sys.close(fd) end

---read(2) of up to count bytes (default 4096); "" at end of file. ljsyscall's read(fd, nil, count) also works.
---@param fd sys.fdarg
---@param count? integer
---@return string|nil
---@return sys.err? err
function sys.read(fd, count) end

---pread(2).
---@param fd sys.fdarg
---@param count integer
---@param offset integer
---@return string|nil
---@return sys.err? err
function sys.pread(fd, count, offset) end

---write(2); returns the bytes written.
---@param fd sys.fdarg
---@param data string
---@param count? integer
---@return integer|nil
---@return sys.err? err
function sys.write(fd, data, count) end

---pwrite(2).
---@param fd sys.fdarg
---@param data string
---@param offset integer
---@return integer|nil
---@return sys.err? err
function sys.pwrite(fd, data, offset) end

---lseek(2); whence "set" (default), "cur", "end", "data", "hole".
---@param fd sys.fdarg
---@param offset? integer
---@param whence? sys.flags
---@return integer|nil
---@return sys.err? err
function sys.lseek(fd, offset, whence) end

---dup(2) (F_DUPFD_CLOEXEC).
---@param fd sys.fdarg
---@return sys.fd|nil
---@return sys.err? err
function sys.dup(fd) end

---dup2(2); the returned object owns `new` (closed on GC unless :nogc(), never 0-2).
---@param old sys.fdarg
---@param new sys.fdarg
---@return sys.fd|nil
---@return sys.err? err
function sys.dup2(old, new) end

---dup3(2); flags "cloexec".
---@param old sys.fdarg
---@param new sys.fdarg
---@param flags? sys.flags
---@return sys.fd|nil
---@return sys.err? err
function sys.dup3(old, new, flags) end

---pipe2(2); returns r, w (O_CLOEXEC always).
---@param flags? sys.flags
---@return sys.fd|nil
---@return sys.fd|sys.err
function sys.pipe(flags) end

---Same as pipe.
---@param flags? sys.flags
---@return sys.fd|nil
---@return sys.fd|sys.err
function sys.pipe2(flags) end

---fcntl(2): getfd, setfd, getfl, setfl, dupfd, dupfd_cloexec.
---@param fd sys.fdarg
---@param cmd sys.flags
---@param arg? any
---@return integer|boolean|sys.fd|nil
---@return sys.err? err
function sys.fcntl(fd, cmd, arg) end

---fsync(2).
---@param fd sys.fdarg
---@return true|nil
---@return sys.err? err
function sys.fsync(fd) end

---fdatasync(2).
---@param fd sys.fdarg
---@return true|nil
---@return sys.err? err
function sys.fdatasync(fd) end

---sync(2).
---@return true|nil
---@return sys.err? err
function sys.sync() end

---syncfs(2).
---@param fd sys.fdarg
---@return true|nil
---@return sys.err? err
function sys.syncfs(fd) end

---truncate(2).
---@param path string
---@param length integer
---@return true|nil
---@return sys.err? err
function sys.truncate(path, length) end

---ftruncate(2).
---@param fd sys.fdarg
---@param length integer
---@return true|nil
---@return sys.err? err
function sys.ftruncate(fd, length) end

---ioctl(2): TIOCSCTTY, TIOCNOTTY (true), FIONREAD (the count), or a number with an integer argument.
---@param fd sys.fdarg
---@param request sys.flags
---@param arg? integer|boolean
---@return integer|true|nil
---@return sys.err? err
function sys.ioctl(fd, request, arg) end

---posix_openpt: a pty master (default rdwr,noctty).
---@param flags? sys.flags
---@return sys.fd|nil
---@return sys.err? err
function sys.openpt(flags) end

---grantpt(3).
---@param fd sys.fdarg
---@return true|nil
---@return sys.err? err
function sys.grantpt(fd) end

---unlockpt(3).
---@param fd sys.fdarg
---@return true|nil
---@return sys.err? err
function sys.unlockpt(fd) end

---ptsname(3).
---@param fd sys.fdarg
---@return string|nil
---@return sys.err? err
function sys.ptsname(fd) end

---stat(2).
---@param path string
---@return sys.stat|nil
---@return sys.err? err
function sys.stat(path) end

---lstat(2).
---@param path string
---@return sys.stat|nil
---@return sys.err? err
function sys.lstat(path) end

---fstat(2).
---@param fd sys.fdarg
---@return sys.stat|nil
---@return sys.err? err
function sys.fstat(fd) end

---fstatat(2); flags AT_* ("symlink_nofollow", "empty_path").
---@param dirfd sys.dirfd
---@param path string
---@param flags? sys.flags
---@return sys.stat|nil
---@return sys.err? err
function sys.fstatat(dirfd, path, flags) end

---statfs(2).
---@param path string
---@return sys.statfs|nil
---@return sys.err? err
function sys.statfs(path) end

---fstatfs(2).
---@param fd sys.fdarg
---@return sys.statfs|nil
---@return sys.err? err
function sys.fstatfs(fd) end

---access(2); mode "r", "rw", "rwx", "f" or OK names/numbers.
---@param path string
---@param mode? string|integer
---@return true|nil
---@return sys.err? err
function sys.access(path, mode) end

---mkdir(2); mode defaults to 0777 (umask applies).
---@param path string
---@param mode? sys.mode
---@return true|nil
---@return sys.err? err
function sys.mkdir(path, mode) end

---mkdirat(2).
---@param dirfd sys.dirfd
---@param path string
---@param mode? sys.mode
---@return true|nil
---@return sys.err? err
function sys.mkdirat(dirfd, path, mode) end

---rmdir(2).
---@param path string
---@return true|nil
---@return sys.err? err
function sys.rmdir(path) end

---chdir(2).
---@param path string
---@return true|nil
---@return sys.err? err
function sys.chdir(path) end

---fchdir(2).
---@param fd sys.fdarg
---@return true|nil
---@return sys.err? err
function sys.fchdir(fd) end

---getcwd(3).
---@return string|nil
---@return sys.err? err
function sys.getcwd() end

---getdents64(2) as an iterator of entries, ljsyscall's shape: `for ent in sys.getdents(dir) do print(ent.name, ent.type) end` (the name also comes second: `for ent, name in ...`). Includes . and ..
---@param dir sys.fdarg|string
---@return fun():sys.dirent?,string?|nil
---@return sys.err? err
function sys.getdents(dir) end

---unlink(2).
---@param path string
---@return true|nil
---@return sys.err? err
function sys.unlink(path) end

---unlinkat(2); flags "removedir".
---@param dirfd sys.dirfd
---@param path string
---@param flags? sys.flags
---@return true|nil
---@return sys.err? err
function sys.unlinkat(dirfd, path, flags) end

---rename(2).
---@param old string
---@param new string
---@return true|nil
---@return sys.err? err
function sys.rename(old, new) end

---link(2).
---@param old string
---@param new string
---@return true|nil
---@return sys.err? err
function sys.link(old, new) end

---symlink(2).
---@param target string
---@param linkpath string
---@return true|nil
---@return sys.err? err
function sys.symlink(target, linkpath) end

---readlink(2).
---@param path string
---@return string|nil
---@return sys.err? err
function sys.readlink(path) end

---chmod(2).
---@param path string
---@param mode sys.mode
---@return true|nil
---@return sys.err? err
function sys.chmod(path, mode) end

---fchmod(2).
---@param fd sys.fdarg
---@param mode sys.mode
---@return true|nil
---@return sys.err? err
function sys.fchmod(fd, mode) end

---chown(2); nil or -1 leaves an id unchanged.
---@param path string
---@param uid? integer
---@param gid? integer
---@return true|nil
---@return sys.err? err
function sys.chown(path, uid, gid) end

---fchown(2).
---@param fd sys.fdarg
---@param uid? integer
---@param gid? integer
---@return true|nil
---@return sys.err? err
function sys.fchown(fd, uid, gid) end

---lchown(2).
---@param path string
---@param uid? integer
---@param gid? integer
---@return true|nil
---@return sys.err? err
function sys.lchown(path, uid, gid) end

---umask(2); returns the previous mask (never fails).
---@param mask? sys.mode
---@return integer|nil
---@return sys.err? err
function sys.umask(mask) end

---mknod(2); mode carries the type ("fchr,0666", "fblk,0600", "fifo,0644").
---@param path string
---@param mode sys.mode
---@param dev? integer|{major:integer,minor:integer}
---@param minor? integer
---@return true|nil
---@return sys.err? err
function sys.mknod(path, mode, dev, minor) end

---mkfifo(3).
---@param path string
---@param mode? sys.mode
---@return true|nil
---@return sys.err? err
function sys.mkfifo(path, mode) end

---makedev(3).
---@param major integer
---@param minor integer
---@return integer
function sys.makedev(major, minor) end

---major(3).
---@param dev integer
---@return integer
function sys.major(dev) end

---minor(3).
---@param dev integer
---@return integer
function sys.minor(dev) end

---mount(2); also mount{source=, target=, type=, flags=, data=}. nil source/type are passed as NULL.
---@param source string|sys.mountspec|nil
---@param target? string
---@param fstype? string
---@param flags? sys.flags
---@param data? string
---@return true|nil
---@return sys.err? err
function sys.mount(source, target, fstype, flags, data) end

---umount2(2); flags "force", "detach", "expire", "nofollow".
---@param target string
---@param flags? sys.flags
---@return true|nil
---@return sys.err? err
function sys.umount(target, flags) end

---Same as umount.
---@param target string
---@param flags? sys.flags
---@return true|nil
---@return sys.err? err
function sys.umount2(target, flags) end

---pivot_root(2).
---@param new_root string
---@param put_old string
---@return true|nil
---@return sys.err? err
function sys.pivot_root(new_root, put_old) end

---chroot(2).
---@param path string
---@return true|nil
---@return sys.err? err
function sys.chroot(path) end

---fsopen(2) (new mount API, Linux 5.2+).
---@param fstype string
---@param flags? sys.flags
---@return sys.fd|nil
---@return sys.err? err
function sys.fsopen(fstype, flags) end

---fsconfig(2): set_flag, set_string, set_fd, create, reconfigure, create_excl.
---@param fd sys.fdarg
---@param cmd sys.flags
---@param key? string
---@param value? string|integer|sys.fdarg
---@return true|nil
---@return sys.err? err
function sys.fsconfig(fd, cmd, key, value) end

---fsmount(2); attrs MOUNT_ATTR_* ("rdonly,nodev").
---@param fd sys.fdarg
---@param flags? sys.flags
---@param attrs? sys.flags
---@return sys.fd|nil
---@return sys.err? err
function sys.fsmount(fd, flags, attrs) end

---move_mount(2); flags MOVE_MOUNT_* ("f_empty_path").
---@param from_dirfd sys.dirfd
---@param from_path string?
---@param to_dirfd sys.dirfd
---@param to_path string
---@param flags? sys.flags
---@return true|nil
---@return sys.err? err
function sys.move_mount(from_dirfd, from_path, to_dirfd, to_path, flags) end

---open_tree(2); flags "clone", "recursive", ...
---@param dirfd sys.dirfd
---@param path string
---@param flags? sys.flags
---@return sys.fd|nil
---@return sys.err? err
function sys.open_tree(dirfd, path, flags) end

---getpid(2) (never fails).
---@return integer
function sys.getpid() end

---getppid(2).
---@return integer
function sys.getppid() end

---getuid(2).
---@return integer
function sys.getuid() end

---geteuid(2).
---@return integer
function sys.geteuid() end

---getgid(2).
---@return integer
function sys.getgid() end

---getegid(2).
---@return integer
function sys.getegid() end

---getgroups(2).
---@return integer[]|nil
---@return sys.err? err
function sys.getgroups() end

---setuid(2), process-wide.
---@param uid integer
---@return true|nil
---@return sys.err? err
function sys.setuid(uid) end

---setgid(2), process-wide.
---@param gid integer
---@return true|nil
---@return sys.err? err
function sys.setgid(gid) end

---setgroups(2).
---@param gids integer[]
---@return true|nil
---@return sys.err? err
function sys.setgroups(gids) end

---setsid(2); returns the new session id.
---@return integer|nil
---@return sys.err? err
function sys.setsid() end

---getsid(2).
---@param pid? integer
---@return integer|nil
---@return sys.err? err
function sys.getsid(pid) end

---setpgid(2); nil/0 is the caller.
---@param pid? integer
---@param pgid? integer
---@return true|nil
---@return sys.err? err
function sys.setpgid(pid, pgid) end

---getpgid(2).
---@param pid? integer
---@return integer|nil
---@return sys.err? err
function sys.getpgid(pid) end

---getpgrp(2).
---@return integer
function sys.getpgrp() end

---kill(2); sig defaults to TERM, 0 tests; negative pid is a process group.
---@param pid integer
---@param sig? sys.flags
---@return true|nil
---@return sys.err? err
function sys.kill(pid, sig) end

---killpg(3).
---@param pgrp integer
---@param sig? sys.flags
---@return true|nil
---@return sys.err? err
function sys.killpg(pgrp, sig) end

---prctl(2): set/get_child_subreaper, set/get_no_new_privs, set/get_name, set/get_pdeathsig.
---@param option sys.flags
---@param arg? any
---@return boolean|integer|string|nil
---@return sys.err? err
function sys.prctl(option, arg) end

---getrlimit(2); -1 is RLIM_INFINITY.
---@param resource sys.flags
---@return sys.rlimit|nil
---@return sys.err? err
function sys.getrlimit(resource) end

---setrlimit(2); "infinity" or -1 for no limit.
---@param resource sys.flags
---@param cur integer|string|sys.rlimit
---@param max? integer|string
---@return true|nil
---@return sys.err? err
function sys.setrlimit(resource, cur, max) end

---prlimit(2); returns the old limits.
---@param pid? integer
---@param resource sys.flags
---@param cur? integer|string|sys.rlimit
---@param max? integer|string
---@return sys.rlimit|nil
---@return sys.err? err
function sys.prlimit(pid, resource, cur, max) end

---getpriority(2) (the nice value).
---@param which? sys.flags
---@param who? integer
---@return integer|nil
---@return sys.err? err
function sys.getpriority(which, who) end

---setpriority(2).
---@param which sys.flags
---@param who integer
---@param prio integer
---@return true|nil
---@return sys.err? err
function sys.setpriority(which, who, prio) end

---sched_getaffinity(2): the CPU numbers.
---@param pid? integer
---@return integer[]|nil
---@return sys.err? err
function sys.sched_getaffinity(pid) end

---waitpid(2); returns pid, status (0 with WNOHANG and nothing to report). In the init the loop reaps: use proc:wait() there.
---@param pid? integer
---@param options? sys.flags
---@return integer|nil
---@return sys.waitstatus|sys.err
function sys.waitpid(pid, options) end

---unshare(2); CLONE names ("newns,newuts,newnet").
---@param flags sys.flags
---@return true|nil
---@return sys.err? err
function sys.unshare(flags) end

---setns(2).
---@param fd sys.fdarg
---@param nstype? sys.flags
---@return true|nil
---@return sys.err? err
function sys.setns(fd, nstype) end

---sethostname(2).
---@param name string
---@return true|nil
---@return sys.err? err
function sys.sethostname(name) end

---setdomainname(2).
---@param name string
---@return true|nil
---@return sys.err? err
function sys.setdomainname(name) end

---The uname node name.
---@return string|nil
---@return sys.err? err
function sys.gethostname() end

---uname(2).
---@return sys.uname|nil
---@return sys.err? err
function sys.uname() end

---sysinfo(2).
---@return sys.sysinfo|nil
---@return sys.err? err
function sys.sysinfo() end

---reboot(2): restart, halt, power_off, cad_on, cad_off, ... Refused (EPERM) unless the caller is PID 1.
---@param cmd sys.flags
---@return true|nil
---@return sys.err? err
function sys.reboot(cmd) end

---swapon(2); flags "prefer", "discard".
---@param path string
---@param flags? sys.flags
---@param prio? integer
---@return true|nil
---@return sys.err? err
function sys.swapon(path, flags, prio) end

---swapoff(2).
---@param path string
---@return true|nil
---@return sys.err? err
function sys.swapoff(path) end

---syslog(2): read, read_all, read_clear return text; others (size_buffer, console_level, ...) an integer.
---@param type sys.flags
---@param arg? integer
---@return integer|string|nil
---@return sys.err? err
function sys.klogctl(type, arg) end

---Writes "<level>message" to /dev/kmsg (level 0-7, default 6).
---@param message string
---@param level? integer
---@return true|nil
---@return sys.err? err
function sys.kmsg(message, level) end

---clock_gettime(2); default REALTIME. (Sleeping is the loop's sleep.)
---@param clock? sys.flags
---@return sys.timespec|nil
---@return sys.err? err
function sys.clock_gettime(clock) end

---finit_module(2).
---@param fd sys.fdarg
---@param params? string
---@param flags? sys.flags
---@return true|nil
---@return sys.err? err
function sys.finit_module(fd, params, flags) end

---delete_module(2); flags default O_NONBLOCK.
---@param name string
---@param flags? sys.flags
---@return true|nil
---@return sys.err? err
function sys.delete_module(name, flags) end

---Resolves name (module or alias) in modules.dep/alias/builtin of /lib/modules/$(uname -r) (or dir) and loads it with its dependencies first; already loaded is success.
---@param name string
---@param params? string
---@param dir? string
---@return true|nil
---@return sys.err? err
function sys.modprobe(name, params, dir) end

---The module files modprobe would load, in order (empty: built in).
---@param name string
---@param dir? string
---@return string[]|nil
---@return sys.err? err
function sys.modprobe_resolve(name, dir) end

---socket(2): ("inet"|"inet6"|"unix", "stream,nonblock"). CLOEXEC always.
---@param domain sys.flags
---@param type? sys.flags
---@param protocol? sys.flags
---@return sys.fd|nil
---@return sys.err? err
function sys.socket(domain, type, protocol) end

---socketpair(2); returns two fds.
---@param domain sys.flags
---@param type? sys.flags
---@param protocol? sys.flags
---@return sys.fd|nil
---@return sys.fd|sys.err
function sys.socketpair(domain, type, protocol) end

---bind(2).
---@param fd sys.fdarg
---@param addr sys.sockaddr
---@param port? integer
---@return true|nil
---@return sys.err? err
function sys.bind(fd, addr, port) end

---listen(2); backlog defaults to 128.
---@param fd sys.fdarg
---@param backlog? integer
---@return true|nil
---@return sys.err? err
function sys.listen(fd, backlog) end

---connect(2).
---@param fd sys.fdarg
---@param addr sys.sockaddr
---@param port? integer
---@return true|nil
---@return sys.err? err
function sys.connect(fd, addr, port) end

---accept4(2); returns fd, peer address table.
---@param fd sys.fdarg
---@param flags? sys.flags
---@return sys.fd|nil
---@return sys.addr|sys.err
function sys.accept(fd, flags) end

---Same as accept.
---@param fd sys.fdarg
---@param flags? sys.flags
---@return sys.fd|nil
---@return sys.addr|sys.err
function sys.accept4(fd, flags) end

---send(2); MSG_NOSIGNAL always.
---@param fd sys.fdarg
---@param data string
---@param flags? sys.flags
---@return integer|nil
---@return sys.err? err
function sys.send(fd, data, flags) end

---recv(2).
---@param fd sys.fdarg
---@param count? integer
---@param flags? sys.flags
---@return string|nil
---@return sys.err? err
function sys.recv(fd, count, flags) end

---shutdown(2): "rd", "wr", "rdwr".
---@param fd sys.fdarg
---@param how? sys.flags
---@return true|nil
---@return sys.err? err
function sys.shutdown(fd, how) end

---setsockopt(2) with an int value (SOL socket/tcp, SO_*/TCP_* names).
---@param fd sys.fdarg
---@param level sys.flags
---@param name sys.flags
---@param value integer|boolean
---@return true|nil
---@return sys.err? err
function sys.setsockopt(fd, level, name, value) end

---getsockopt(2) of an int option.
---@param fd sys.fdarg
---@param level sys.flags
---@param name sys.flags
---@return integer|nil
---@return sys.err? err
function sys.getsockopt(fd, level, name) end

---getsockname(2).
---@param fd sys.fdarg
---@return sys.addr|nil
---@return sys.err? err
function sys.getsockname(fd) end

---getpeername(2).
---@param fd sys.fdarg
---@return sys.addr|nil
---@return sys.err? err
function sys.getpeername(fd) end

return sys
