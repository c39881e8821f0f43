//! Process creation: every child of moonlit (services, Lua's `spawn{}`, `sh()`)
//! starts here, clean.
//!
//! Owns: turning a [`SpawnSpec`] into a running child whose signal mask is
//! empty, whose dispositions are the defaults, who leads its own session, and
//! who holds only the file descriptors meant for it (stdio plus nothing else).
//! Does not own: reaping (the init's reaper does that for every pid) or
//! deciding when to start anything (the supervisor).
#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::PathBuf;

use nix::sys::signal::{self, SigSet, SigmaskHow, Signal};

/// The kernel's `struct sigaction` on x86_64 (not libc's).
#[repr(C)]
struct KernelSigaction {
    handler: usize,
    flags: u64,
    restorer: usize,
    mask: u64,
}

/// rt_sigaction(sig, SIG_DFL) straight to the kernel. Async-signal-safe.
fn reset_disposition(sig: i32) {
    let act = KernelSigaction {
        handler: 0, // SIG_DFL
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    // SAFETY: rt_sigaction reads `act` (a valid, properly laid-out kernel
    // sigaction that lives across the call), writes nothing (old = NULL), and
    // 8 is the kernel's sigset size on x86_64.
    unsafe {
        nix::libc::syscall(
            nix::libc::SYS_rt_sigaction,
            sig,
            &act as *const KernelSigaction,
            std::ptr::null_mut::<KernelSigaction>(),
            8usize,
        );
    }
}

/// The PATH a child gets when its spec does not set one.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Where one of a child's standard streams goes.
#[derive(Debug)]
pub enum StdioSpec {
    /// `/dev/null`.
    Null,
    /// The same file moonlit's own stream points at.
    Inherit,
    /// A descriptor moonlit opened for the child (a log pipe, a memfd, a file).
    Fd(OwnedFd),
}

/// A resource limit to set in the child (`setrlimit(2)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    pub resource: rustix::process::Resource,
    pub soft: Option<u64>,
    pub hard: Option<u64>,
}

/// The resource limits a service or `spawn{}` may set, by setrlimit(2)'s
/// RLIMIT_* name without the prefix, lower case.
pub const LIMITS: [(&str, rustix::process::Resource); 16] = {
    use rustix::process::Resource as R;
    [
        ("as", R::As),
        ("core", R::Core),
        ("cpu", R::Cpu),
        ("data", R::Data),
        ("fsize", R::Fsize),
        ("locks", R::Locks),
        ("memlock", R::Memlock),
        ("msgqueue", R::Msgqueue),
        ("nice", R::Nice),
        ("nofile", R::Nofile),
        ("nproc", R::Nproc),
        ("rss", R::Rss),
        ("rtprio", R::Rtprio),
        ("rttime", R::Rttime),
        ("sigpending", R::Sigpending),
        ("stack", R::Stack),
    ]
};

/// The resource of a limit name ("nofile").
pub fn resource_of(name: &str) -> Option<rustix::process::Resource> {
    LIMITS.iter().find(|(n, _)| *n == name).map(|(_, r)| *r)
}

/// The limits of the service schema ([`crate::plan::parse_limits`]) as
/// setrlimit calls, in name order.
pub fn rlimits_of(limits: &BTreeMap<String, crate::plan::Limit>) -> Vec<Rlimit> {
    limits
        .iter()
        .filter_map(|(n, l)| {
            resource_of(n).map(|resource| Rlimit {
                resource,
                soft: l.soft,
                hard: l.hard,
            })
        })
        .collect()
}

/// Everything needed to start one process.
#[derive(Debug)]
pub struct SpawnSpec {
    pub argv: Vec<String>,
    /// Variables added to the clean default environment (`PATH`, `HOME` for a
    /// user, `USER`/`LOGNAME`).
    pub env: BTreeMap<String, String>,
    pub cwd: Option<PathBuf>,
    pub user: Option<String>,
    pub group: Option<String>,
    pub stdin: StdioSpec,
    pub stdout: StdioSpec,
    pub stderr: StdioSpec,
    /// Start a new session (and so a process group led by the child).
    pub setsid: bool,
    pub umask: Option<u32>,
    pub rlimits: Vec<Rlimit>,
    /// Make stdin the controlling terminal (after `setsid`): for a shell on
    /// a console tty.
    pub ctty: bool,
    /// Start from this process's own environment (in its order, bytes
    /// unchanged) instead of the clean default; `env` is still added on top.
    pub inherit_env: bool,
    /// Without `setsid`: lead a new process group in the caller's session.
    pub pgroup: bool,
    /// With `pgroup`: make that group the foreground of the terminal on
    /// stdin, if it is one (what tini does for `docker run -it`).
    pub foreground: bool,
    /// The arguments as raw bytes, for callers handed non-UTF-8 ones (an
    /// entrypoint's argv); `argv` then only names the program in messages.
    pub raw_argv: Option<Vec<std::ffi::OsString>>,
    /// Namespaces, mounts, chroot, capabilities, no_new_privs.
    pub isolation: Isolation,
    /// A directory descriptor of the cgroup (v2) the child joins before it
    /// does anything else: no process of a service runs outside its cgroup.
    pub cgroup_fd: Option<RawFd>,
    /// Socket activation (systemd's protocol): these descriptors become the
    /// child's 3, 4, ... in this order, with `LISTEN_FDS`, `LISTEN_FDNAMES`
    /// (`listen_names` joined by ':') and `LISTEN_PID` (written by the child
    /// itself, so it is the pid that execs). The caller keeps them open.
    pub listen_fds: Vec<RawFd>,
    pub listen_names: Vec<String>,
}

/// A namespace a service gets of its own (`namespaces = { "net" }`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Namespace {
    Net,
    Mount,
    Pid,
    Uts,
    Ipc,
}

impl Namespace {
    pub fn parse(s: &str) -> Result<Namespace, String> {
        Ok(match s {
            "net" => Namespace::Net,
            "mount" | "mnt" => Namespace::Mount,
            "pid" => Namespace::Pid,
            "uts" => Namespace::Uts,
            "ipc" => Namespace::Ipc,
            other => {
                return Err(format!(
                    "namespaces: unknown namespace \"{other}\" (net, mount, pid, uts, ipc)"
                ))
            }
        })
    }
    fn flag(self) -> nix::sched::CloneFlags {
        use nix::sched::CloneFlags as F;
        match self {
            Namespace::Net => F::CLONE_NEWNET,
            Namespace::Mount => F::CLONE_NEWNS,
            Namespace::Pid => F::CLONE_NEWPID,
            Namespace::Uts => F::CLONE_NEWUTS,
            Namespace::Ipc => F::CLONE_NEWIPC,
        }
    }
}

/// What a service may do and see, applied in the child between clone and
/// exec (systemd's AmbientCapabilities=/CapabilityBoundingSet=,
/// NoNewPrivileges=, PrivateNetwork=, PrivateTmp=, RootDirectory=,
/// ReadOnlyPaths=).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Isolation {
    /// The capabilities kept (bits by CAP_* number): the bounding set is
    /// trimmed to them and they are raised in the ambient set, so a
    /// non-root user keeps them across exec. `None`: unchanged.
    pub capabilities: Option<u64>,
    pub no_new_privs: bool,
    pub namespaces: Vec<Namespace>,
    /// A fresh tmpfs on /tmp (implies a mount namespace).
    pub private_tmp: bool,
    /// chroot(2) into this directory before exec.
    pub root: Option<String>,
    /// Bind-mounted read-only onto themselves (implies a mount namespace).
    pub read_only_paths: Vec<String>,
}

impl Isolation {
    fn needs_mount_ns(&self) -> bool {
        self.private_tmp
            || !self.read_only_paths.is_empty()
            || self.namespaces.contains(&Namespace::Mount)
            || self.namespaces.contains(&Namespace::Pid)
    }
}

/// The bit of a capability name ("net_bind_service", "CAP_NET_ADMIN").
pub fn capability_bit(name: &str) -> Result<u64, String> {
    let up = name.to_ascii_uppercase();
    let bare = up.strip_prefix("CAP_").unwrap_or(&up);
    rustix::thread::CapabilitySet::from_name(bare)
        .map(|c| c.bits())
        .ok_or_else(|| {
            format!("capabilities: unknown capability \"{name}\" (e.g. \"net_bind_service\")")
        })
}

impl SpawnSpec {
    /// A spec with defaults: null stdin, inherited stdout/stderr, own session.
    pub fn new(argv: Vec<String>) -> SpawnSpec {
        SpawnSpec {
            argv,
            env: BTreeMap::new(),
            cwd: None,
            user: None,
            group: None,
            stdin: StdioSpec::Null,
            stdout: StdioSpec::Inherit,
            stderr: StdioSpec::Inherit,
            setsid: true,
            umask: None,
            rlimits: Vec::new(),
            ctty: false,
            inherit_env: false,
            pgroup: false,
            foreground: false,
            raw_argv: None,
            isolation: Isolation::default(),
            cgroup_fd: None,
            listen_fds: Vec::new(),
            listen_names: Vec::new(),
        }
    }
}

/// Why a child could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("empty argv")]
    EmptyArgv,
    #[error("unknown user '{0}' (not in /etc/passwd)")]
    UnknownUser(String),
    #[error("unknown group '{0}' (not in /etc/group)")]
    UnknownGroup(String),
    #[error("cannot start {argv0}: {source}")]
    Exec {
        argv0: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot prepare stdio for {argv0}: {source}")]
    Stdio {
        argv0: String,
        #[source]
        source: std::io::Error,
    },
}

/// A user resolved from `/etc/passwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

fn passwd_lookup(file: &str, name: &str, by_field: usize) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines()
        .map(|l| l.split(':').map(str::to_string).collect::<Vec<_>>())
        .find(|f| f.get(by_field).map(String::as_str) == Some(name))
}

/// Resolves a user name or a numeric uid through `/etc/passwd`.
pub fn resolve_user(name: &str) -> Result<UserEntry, SpawnError> {
    let fields =
        passwd_lookup("/etc/passwd", name, 0).or_else(|| passwd_lookup("/etc/passwd", name, 2));
    match fields {
        Some(f) if f.len() >= 6 => Ok(UserEntry {
            name: f[0].clone(),
            uid: f[2]
                .parse()
                .map_err(|_| SpawnError::UnknownUser(name.into()))?,
            gid: f[3]
                .parse()
                .map_err(|_| SpawnError::UnknownUser(name.into()))?,
            home: f[5].clone(),
        }),
        _ => match name.parse::<u32>() {
            // A bare number with no passwd entry is still a valid uid.
            Ok(uid) => Ok(UserEntry {
                name: name.into(),
                uid,
                gid: uid,
                home: "/".into(),
            }),
            Err(_) => Err(SpawnError::UnknownUser(name.into())),
        },
    }
}

/// Resolves a group name or numeric gid through `/etc/group`.
pub fn resolve_group(name: &str) -> Result<u32, SpawnError> {
    if let Some(f) = passwd_lookup("/etc/group", name, 0) {
        if let Some(gid) = f.get(2).and_then(|g| g.parse().ok()) {
            return Ok(gid);
        }
    }
    name.parse()
        .map_err(|_| SpawnError::UnknownGroup(name.into()))
}

/// Supplementary groups of `user` from `/etc/group`.
fn supplementary_groups(user: &str, primary: u32) -> Vec<u32> {
    let mut groups = vec![primary];
    if let Ok(text) = std::fs::read_to_string("/etc/group") {
        for line in text.lines() {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() >= 4 && f[3].split(',').any(|m| m == user) {
                if let Ok(g) = f[2].parse::<u32>() {
                    if !groups.contains(&g) {
                        groups.push(g);
                    }
                }
            }
        }
    }
    groups
}

/// Descriptors >= 3 of this process that lack `FD_CLOEXEC` and so would leak
/// into a child. moonlit opens everything close-on-exec; what shows up here
/// was opened by a Lua script or kept on purpose for a re-exec.
fn leaky_fds() -> Vec<RawFd> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<RawFd>().ok())
        else {
            continue;
        };
        if fd < 3 {
            continue;
        }
        // SAFETY: `fd` was listed in /proc/self/fd a moment ago and this
        // process is single-threaded, so it is open for the duration of
        // this borrow (the directory's own fd may be gone: the call then
        // fails with EBADF and is skipped).
        let bfd = unsafe { BorrowedFd::borrow_raw(fd) };
        if let Ok(flags) = rustix::io::fcntl_getfd(bfd) {
            if !flags.contains(rustix::io::FdFlags::CLOEXEC) {
                out.push(fd);
            }
        }
    }
    out
}

/// close_range(2) with CLOSE_RANGE_CLOEXEC on every fd >= `first`.
/// Async-signal-safe (one system call). False where the kernel lacks it.
fn cloexec_from(first: u32) -> bool {
    // SAFETY: close_range only changes descriptor flags; the arguments are
    // plain integers and no memory is passed.
    let r = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_close_range,
            first,
            u32::MAX,
            nix::libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    r == 0
}

/// Whether this kernel has close_range with CLOSE_RANGE_CLOEXEC (5.11+),
/// probed once on a range that holds no descriptor.
fn have_close_range() -> bool {
    use std::sync::OnceLock;
    static HAVE: OnceLock<bool> = OnceLock::new();
    *HAVE.get_or_init(|| {
        // SAFETY: as in `cloexec_from`; the range is the topmost possible
        // descriptor number, which is never open.
        let r = unsafe {
            nix::libc::syscall(
                nix::libc::SYS_close_range,
                u32::MAX - 1,
                u32::MAX - 1,
                nix::libc::CLOSE_RANGE_CLOEXEC,
            )
        };
        r == 0
    })
}

/// The child's stack: mapped once, with a guard page below it, and reused by
/// every spawn (the parent is suspended while a child runs on it).
struct ChildStack {
    top: usize,
}

const CHILD_STACK: usize = 128 * 1024;
const GUARD: usize = 4096;

fn child_stack() -> Result<&'static ChildStack, std::io::Error> {
    use std::sync::OnceLock;
    static STACK: OnceLock<Result<ChildStack, i32>> = OnceLock::new();
    let r = STACK.get_or_init(|| {
        // SAFETY: a fresh private anonymous mapping chosen by the kernel; its
        // lowest page is then made inaccessible (the guard). Nothing else
        // refers to this memory; it lives as long as the process.
        unsafe {
            let base = rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                CHILD_STACK + GUARD,
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                rustix::mm::MapFlags::PRIVATE | rustix::mm::MapFlags::NORESERVE,
            )
            .map_err(|e| e.raw_os_error())?;
            rustix::mm::mprotect(base, GUARD, rustix::mm::MprotectFlags::empty())
                .map_err(|e| e.raw_os_error())?;
            Ok(ChildStack {
                top: base as usize + GUARD + CHILD_STACK,
            })
        }
    });
    r.as_ref()
        .map_err(|&e| std::io::Error::from_raw_os_error(e))
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
/// Set once clone3 was refused with ENOSYS: spawns use clone from then on.
static CLONE3_OFF: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
#[cfg(target_arch = "x86_64")]
const SYS_CLONE3: i64 = 435;

/// clone3(2)'s argument block (Linux 5.7 layout, with `cgroup`).
#[cfg(target_arch = "x86_64")]
#[repr(C)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Runs in the clone3 child on its own stack: calls the child closure and
/// exits with what it returns (it returns only on a failure before exec).
#[cfg(target_arch = "x86_64")]
extern "C" fn clone3_entry(f: *mut &mut dyn FnMut() -> isize) -> ! {
    // SAFETY: `f` points to the closure reference on the suspended
    // parent's stack (CLONE_VM | CLONE_VFORK): alive until the child
    // execs or exits.
    let code = unsafe { (*f)() };
    // SAFETY: exit(2) of this task only (not exit_group: the parent shares
    // the thread group's memory, not its threads, so either is this task).
    unsafe {
        nix::libc::syscall(nix::libc::SYS_exit, code as i32);
    }
    loop {
        std::hint::spin_loop();
    }
}

/// clone3 with a caller-prepared stack, the way musl's clone wrapper does
/// it for clone: the child starts on `stack` and calls [`clone3_entry`],
/// never returning into this function's frame. x86_64 only.
///
/// # Safety
/// `flags` must include CLONE_VM | CLONE_VFORK, `stack` must be unused
/// memory that lives until the child execs or exits, and `child` must be
/// safe to run in a task sharing this one's memory, as for
/// `nix::sched::clone`.
#[cfg(target_arch = "x86_64")]
unsafe fn clone3_vfork(
    flags: u64,
    stack: &mut [u8],
    cgroup: std::os::fd::RawFd,
    child: &mut dyn FnMut() -> isize,
) -> Result<nix::unistd::Pid, nix::errno::Errno> {
    let mut child = child;
    let arg: *mut &mut dyn FnMut() -> isize = &mut child;
    let args = CloneArgs {
        flags,
        pidfd: 0,
        child_tid: 0,
        parent_tid: 0,
        exit_signal: nix::libc::SIGCHLD as u64,
        stack: stack.as_mut_ptr() as u64,
        // The kernel starts the child at stack + stack_size: keep it
        // 16-byte aligned, as a call site must be.
        stack_size: (stack.len() & !15) as u64,
        tls: 0,
        set_tid: 0,
        set_tid_size: 0,
        cgroup: cgroup as u64,
    };
    let ret: i64;
    // SAFETY: the syscall returns twice. In the parent (rax = pid or
    // -errno) execution goes on at label 2. In the child (rax = 0) the
    // stack pointer is the new stack: nothing of this frame is used; the
    // child moves the argument into rdi, clears the frame pointer and
    // calls the entry, which never returns. r12 and r13 survive the
    // syscall (only rax, rcx and r11 are clobbered by it).
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "xor ebp, ebp",
            "mov rdi, r13",
            "call r12",
            "ud2",
            "2:",
            inlateout("rax") SYS_CLONE3 => ret,
            in("rdi") &args as *const CloneArgs,
            in("rsi") std::mem::size_of::<CloneArgs>(),
            in("r12") clone3_entry as *const () as usize,
            in("r13") arg,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    if ret < 0 {
        Err(nix::errno::Errno::from_raw(-ret as i32))
    } else {
        Ok(nix::unistd::Pid::from_raw(ret as i32))
    }
}

/// Elsewhere than x86_64 there is no clone3 with a caller's stack yet: the
/// child joins its cgroup by its own cgroup.procs write.
#[cfg(not(target_arch = "x86_64"))]
unsafe fn clone3_vfork(
    _flags: u64,
    _stack: &mut [u8],
    _cgroup: std::os::fd::RawFd,
    _child: &mut dyn FnMut() -> isize,
) -> Result<nix::unistd::Pid, nix::errno::Errno> {
    Err(nix::errno::Errno::ENOSYS)
}

fn cstring(s: &str, what: &str, argv0: &str) -> Result<std::ffi::CString, SpawnError> {
    cbytes(s.as_bytes(), what, argv0)
}

fn cbytes(s: &[u8], what: &str, argv0: &str) -> Result<std::ffi::CString, SpawnError> {
    std::ffi::CString::new(s).map_err(|_| SpawnError::Exec {
        argv0: argv0.to_string(),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{what} contains a NUL byte"),
        ),
    })
}

/// The length of "LISTEN_PID=".
const LISTEN_PID_PREFIX: usize = 11;

/// Writes `pid` in decimal and a NUL at `out` (at most 11 bytes). Only
/// stack and `out` are written: safe in the vfork-style child.
///
/// # Safety
/// `out` must be valid for writes of 11 bytes.
unsafe fn write_pid(out: *mut u8, pid: u32) {
    let mut digits = [0u8; 10];
    let mut n = 0;
    let mut v = pid;
    loop {
        digits[n] = b'0' + (v % 10) as u8;
        n += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for i in 0..n {
        // SAFETY: i < n <= 10 < 11 bytes (caller's contract).
        unsafe { *out.add(i) = digits[n - 1 - i] };
    }
    // SAFETY: n <= 10.
    unsafe { *out.add(n) = 0 };
}

/// Where a child's set-up failed, reported back through shared memory.
const STAGE_EXEC: i32 = 0;
const STAGE_STDIO: i32 = 1;
const STAGE_CWD: i32 = 2;
const STAGE_SETUP: i32 = 3;
const STAGE_LIMIT: i32 = 4;
const STAGE_ISOLATE: i32 = 5;
const STAGE_CGROUP: i32 = 6;

/// The isolation steps, for the error message of the one that failed.
const ISOLATION_STEPS: &[&str] = &[
    "making the mount namespace private",
    "mounting /proc for the pid namespace",
    "mounting a private /tmp",
    "making a read_only_paths entry read-only",
    "changing root",
    "trimming the capability bounding set",
    "keeping capabilities across the user change",
    "setting the capabilities",
    "raising an ambient capability",
    "setting no_new_privs",
];

/// Starts a child per `spec` and returns its pid. Never waits for it (except
/// to reap a child that failed before exec, whose error is returned).
///
/// The child is made with clone(CLONE_VM | CLONE_VFORK), as posix_spawn does:
/// no copy of PID 1's page tables, no copy-on-write faults in PID 1 afterwards,
/// and PID 1 resumes when the child has exec'd (or failed). Everything the
/// child needs (C strings, the program's candidate paths, descriptors) is
/// prepared here first; the child itself only makes system calls, allocates
/// nothing and writes no memory but its own stack and the two error words.
pub fn spawn(spec: SpawnSpec) -> Result<u32, SpawnError> {
    use std::ffi::CString;
    use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

    use std::os::unix::ffi::OsStrExt;

    let argv0 = spec.argv.first().ok_or(SpawnError::EmptyArgv)?.clone();
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    if !spec.inherit_env {
        env.insert("PATH".into(), DEFAULT_PATH.into());
    }
    let mut ids: Option<(u32, u32, Vec<u32>)> = None;
    if let Some(u) = &spec.user {
        let entry = resolve_user(u)?;
        let gid = match &spec.group {
            Some(g) => resolve_group(g)?,
            None => entry.gid,
        };
        env.insert("HOME".into(), entry.home.clone());
        env.insert("USER".into(), entry.name.clone());
        env.insert("LOGNAME".into(), entry.name.clone());
        ids = Some((entry.uid, gid, supplementary_groups(&entry.name, gid)));
    } else if let Some(g) = &spec.group {
        let gid = resolve_group(g)?;
        ids = Some((rustix::process::getuid().as_raw(), gid, vec![gid]));
    }
    for (k, v) in &spec.env {
        env.insert(k.clone(), v.clone());
    }
    let n_listen = spec.listen_fds.len();
    if n_listen > 0 {
        env.insert("LISTEN_FDS".into(), n_listen.to_string());
        env.insert("LISTEN_FDNAMES".into(), spec.listen_names.join(":"));
    }
    // LISTEN_PID is the child's own pid, which only the child knows: its
    // entry is a buffer with room for any pid, filled in just before exec.
    env.remove("LISTEN_PID");
    let mut listen_pid: Vec<u8> = Vec::new();
    if n_listen > 0 {
        listen_pid.extend_from_slice(b"LISTEN_PID=");
        listen_pid.resize(LISTEN_PID_PREFIX + 21, 0);
    }

    // C strings and the NULL-terminated pointer arrays execve takes.
    let c_argv = match &spec.raw_argv {
        Some(raw) => raw
            .iter()
            .map(|a| cbytes(a.as_bytes(), "an argument", &argv0))
            .collect::<Result<Vec<CString>, _>>()?,
        None => spec
            .argv
            .iter()
            .map(|a| cstring(a, "an argument", &argv0))
            .collect::<Result<Vec<CString>, _>>()?,
    };
    let mut c_env = Vec::new();
    // The inherited environment keeps its order and bytes; a name also in
    // `env` takes the value given there.
    let mut inherited_path = None;
    if spec.inherit_env {
        for (k, v) in std::env::vars_os() {
            if k.to_str().is_some_and(|k| env.contains_key(k)) || k == "LISTEN_PID" {
                continue;
            }
            if k == "PATH" {
                inherited_path = Some(v.to_string_lossy().into_owned());
            }
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            c_env.push(cbytes(&kv, "the environment", &argv0)?);
        }
    }
    for (k, v) in &env {
        c_env.push(cstring(&format!("{k}={v}"), "the environment", &argv0)?);
    }
    let mut argv_p: Vec<*const nix::libc::c_char> = c_argv.iter().map(|c| c.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut env_p: Vec<*const nix::libc::c_char> = c_env.iter().map(|c| c.as_ptr()).collect();
    // The child writes its pid into this buffer (shared memory: CLONE_VM)
    // through this pointer; nothing else touches it until the clone returns.
    let listen_pid_p: *mut u8 = listen_pid.as_mut_ptr();
    if n_listen > 0 {
        env_p.push(listen_pid_p as *const nix::libc::c_char);
    }
    env_p.push(std::ptr::null());
    // The program: a path as given, else each directory of the child's PATH
    // in turn (execvp's rules: go on after ENOENT, ENOTDIR, EACCES).
    let candidates: Vec<CString> = if argv0.contains('/') {
        vec![cstring(&argv0, "the program path", &argv0)?]
    } else if argv0.is_empty() {
        return Err(SpawnError::EmptyArgv);
    } else {
        env.get("PATH")
            .or(inherited_path.as_ref())
            .map(String::as_str)
            .unwrap_or(DEFAULT_PATH)
            .split(':')
            .map(|d| if d.is_empty() { "." } else { d })
            .map(|d| cstring(&format!("{d}/{argv0}"), "PATH", &argv0))
            .collect::<Result<_, _>>()?
    };
    let cwd = match &spec.cwd {
        Some(c) => Some(cstring(
            &c.to_string_lossy(),
            "the working directory",
            &argv0,
        )?),
        None => None,
    };

    // Standard streams: descriptors the child dup2s onto 0, 1 and 2, then
    // the listening sockets onto 3, 4, ... A source that is itself in that
    // range (0 to 2 + the number of sockets) is moved above it first, so no
    // dup2 can clobber a source still to be copied.
    let lowest = 3 + n_listen as RawFd;
    let stdio_err = |source: std::io::Error| SpawnError::Stdio {
        argv0: argv0.clone(),
        source,
    };
    let mut keep: Vec<OwnedFd> = Vec::new();
    let mut sources: [Option<RawFd>; 3] = [None; 3];
    for (i, s) in [spec.stdin, spec.stdout, spec.stderr]
        .into_iter()
        .enumerate()
    {
        let fd = match s {
            StdioSpec::Inherit => continue,
            StdioSpec::Null => rustix::fs::open(
                "/dev/null",
                rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            )
            .map_err(|e| stdio_err(e.into()))?,
            StdioSpec::Fd(fd) => fd,
        };
        let fd = if fd.as_raw_fd() < lowest {
            rustix::io::fcntl_dupfd_cloexec(&fd, lowest).map_err(|e| stdio_err(e.into()))?
        } else {
            fd
        };
        sources[i] = Some(fd.as_raw_fd());
        keep.push(fd);
    }
    let mut listen_sources: Vec<RawFd> = Vec::with_capacity(n_listen);
    for &fd in &spec.listen_fds {
        if fd < lowest {
            // SAFETY: the caller keeps `fd` open for the duration of the
            // call (the field's contract); it is only duplicated here.
            let b = unsafe { BorrowedFd::borrow_raw(fd) };
            let moved =
                rustix::io::fcntl_dupfd_cloexec(b, lowest).map_err(|e| stdio_err(e.into()))?;
            listen_sources.push(moved.as_raw_fd());
            keep.push(moved);
        } else {
            listen_sources.push(fd);
        }
    }

    // With close_range the child marks everything >= 3 itself; otherwise the
    // leaky descriptors are listed here, before the clone.
    let use_close_range = have_close_range();
    let leaky: Vec<RawFd> = if use_close_range {
        Vec::new()
    } else {
        leaky_fds().into_iter().filter(|&fd| fd >= lowest).collect()
    };
    let setsid = spec.setsid;
    let ctty = spec.ctty;
    let pgroup = spec.pgroup && !spec.setsid;
    let foreground = pgroup && spec.foreground;
    let iso = &spec.isolation;
    let iso_mount = iso.needs_mount_ns();
    let iso_pid = iso.namespaces.contains(&Namespace::Pid);
    let private_tmp = iso.private_tmp;
    let caps = iso.capabilities;
    let no_new_privs = iso.no_new_privs;
    let mut ns_flags = nix::sched::CloneFlags::empty();
    for n in &iso.namespaces {
        ns_flags |= n.flag();
    }
    if iso_mount {
        ns_flags |= nix::sched::CloneFlags::CLONE_NEWNS;
    }
    let root_c = match &iso.root {
        Some(r) => Some(cstring(r, "root", &argv0)?),
        None => None,
    };
    let ro_c = iso
        .read_only_paths
        .iter()
        .map(|p| cstring(p, "read_only_paths", &argv0))
        .collect::<Result<Vec<CString>, _>>()?;
    let no_cwd = spec.cwd.is_none();
    let cgroup_fd = spec.cgroup_fd;
    let umask = spec.umask;
    let rlimits = spec.rlimits;
    // For the error message only: the limits as the user wrote them.
    let rlimits_desc: Vec<String> = rlimits
        .iter()
        .map(|r| {
            let v = |x: Option<u64>| match x {
                None => "unchanged".to_string(),
                Some(u64::MAX) => "unlimited".to_string(),
                Some(n) => n.to_string(),
            };
            let name = LIMITS
                .iter()
                .find(|(_, res)| *res == r.resource)
                .map_or("?", |(n, _)| *n);
            format!("{name} (soft {}, hard {})", v(r.soft), v(r.hard))
        })
        .collect();
    let groups: Vec<rustix::process::Gid> = ids
        .as_ref()
        .map(|(_, _, g)| {
            g.iter()
                .map(|g| rustix::process::Gid::from_raw(*g))
                .collect()
        })
        .unwrap_or_default();
    let change_ids = ids.as_ref().map(|(u, g, _)| (*u, *g));
    let stack = child_stack().map_err(|source| SpawnError::Exec {
        argv0: argv0.clone(),
        source,
    })?;

    // Written by the child before it exits on a failure; read after the
    // clone returns (CLONE_VFORK: the child has exec'd or exited by then).
    let fail_errno = AtomicI32::new(0);
    let fail_stage = AtomicI32::new(STAGE_EXEC);
    let fail_index = AtomicI32::new(0);

    // Set when clone3 put the child into its cgroup (CLONE_INTO_CGROUP):
    // then it does not write cgroup.procs itself.
    let joined_by_clone3 = std::cell::Cell::new(false);

    // Set by the child as its first step: a clone3 child that never ran
    // was killed at birth (see below).
    let started = AtomicBool::new(false);

    let mut child = || -> isize {
        started.store(true, Ordering::Relaxed);
        let fail = |stage: i32, errno: i32| -> isize {
            fail_stage.store(stage, Ordering::Relaxed);
            fail_errno.store(errno.max(1), Ordering::Relaxed);
            127
        };
        // SAFETY (whole child): this runs in the vfork-style child on its
        // own stack, sharing memory with the suspended parent. It only makes
        // system calls on data prepared above (live until the parent
        // resumes) and stores into the two atomics.
        unsafe {
            // Into its cgroup first ("0" is the writer itself): the child
            // runs nothing of the service outside it.
            if let Some(dir) = cgroup_fd.filter(|_| !joined_by_clone3.get()) {
                let f = nix::libc::openat(
                    dir,
                    c"cgroup.procs".as_ptr(),
                    nix::libc::O_WRONLY | nix::libc::O_CLOEXEC,
                );
                if f < 0 {
                    return fail(STAGE_CGROUP, nix::errno::Errno::last_raw());
                }
                let w = nix::libc::write(f, b"0".as_ptr().cast(), 1);
                let e = nix::errno::Errno::last_raw();
                nix::libc::close(f);
                if w != 1 {
                    return fail(STAGE_CGROUP, e);
                }
            }
            for (target, src) in sources.iter().enumerate() {
                if let Some(src) = *src {
                    if nix::libc::dup2(src, target as i32) < 0 {
                        return fail(STAGE_STDIO, nix::errno::Errno::last_raw());
                    }
                }
            }
            // Every source is >= `lowest`, so none is overwritten; dup2
            // leaves the copies without close-on-exec.
            for (i, &src) in listen_sources.iter().enumerate() {
                if nix::libc::dup2(src, 3 + i as i32) < 0 {
                    return fail(STAGE_STDIO, nix::errno::Errno::last_raw());
                }
            }
            // Isolation: mounts in the new mount namespace, then the root.
            let step = |i: usize, errno: i32| -> isize {
                fail_index.store(i as i32, Ordering::Relaxed);
                fail(STAGE_ISOLATE, errno)
            };
            let null = std::ptr::null::<nix::libc::c_char>();
            if iso_mount {
                if nix::libc::mount(
                    null,
                    c"/".as_ptr(),
                    null,
                    nix::libc::MS_REC | nix::libc::MS_PRIVATE,
                    std::ptr::null(),
                ) < 0
                {
                    return step(0, nix::errno::Errno::last_raw());
                }
                if iso_pid
                    && nix::libc::mount(
                        c"proc".as_ptr(),
                        c"/proc".as_ptr(),
                        c"proc".as_ptr(),
                        nix::libc::MS_NOSUID | nix::libc::MS_NODEV | nix::libc::MS_NOEXEC,
                        std::ptr::null(),
                    ) < 0
                {
                    return step(1, nix::errno::Errno::last_raw());
                }
                if private_tmp
                    && nix::libc::mount(
                        c"tmpfs".as_ptr(),
                        c"/tmp".as_ptr(),
                        c"tmpfs".as_ptr(),
                        nix::libc::MS_NOSUID | nix::libc::MS_NODEV,
                        c"mode=1777".as_ptr().cast(),
                    ) < 0
                {
                    return step(2, nix::errno::Errno::last_raw());
                }
                for p in &ro_c {
                    if nix::libc::mount(
                        p.as_ptr(),
                        p.as_ptr(),
                        null,
                        nix::libc::MS_BIND | nix::libc::MS_REC,
                        std::ptr::null(),
                    ) < 0
                        || nix::libc::mount(
                            null,
                            p.as_ptr(),
                            null,
                            nix::libc::MS_BIND | nix::libc::MS_REMOUNT | nix::libc::MS_RDONLY,
                            std::ptr::null(),
                        ) < 0
                    {
                        return step(3, nix::errno::Errno::last_raw());
                    }
                }
            }
            if let Some(r) = &root_c {
                if nix::libc::chroot(r.as_ptr()) < 0
                    || (no_cwd && nix::libc::chdir(c"/".as_ptr()) < 0)
                {
                    return step(4, nix::errno::Errno::last_raw());
                }
            }
            if let Some(dir) = &cwd {
                if nix::libc::chdir(dir.as_ptr()) < 0 {
                    return fail(STAGE_CWD, nix::errno::Errno::last_raw());
                }
            }
            // Dispositions: exec resets caught signals; ignored ones (Rust
            // ignores PIPE; a parent may have ignored others, real-time
            // ones included) must be reset by hand. The raw system call,
            // because libc wrappers refuse the signals libc keeps for
            // itself (32-34), which a child must still get as default.
            // Without CLONE_SIGHAND the child's dispositions are its own.
            for sig in 1..=64 {
                if sig != nix::libc::SIGKILL && sig != nix::libc::SIGSTOP {
                    reset_disposition(sig);
                }
            }
            if setsid {
                if let Err(e) = rustix::process::setsid() {
                    return fail(STAGE_SETUP, e.raw_os_error());
                }
            }
            if ctty {
                if let Err(e) = rustix::process::ioctl_tiocsctty(BorrowedFd::borrow_raw(0)) {
                    return fail(STAGE_SETUP, e.raw_os_error());
                }
            }
            if pgroup {
                if let Err(e) = rustix::process::setpgid(None, None) {
                    return fail(STAGE_SETUP, e.raw_os_error());
                }
                // Still with every signal blocked, so taking the terminal
                // from the background raises no SIGTTOU. Not a terminal (or
                // not ours): nothing to take.
                if foreground {
                    let _ = rustix::termios::tcsetpgrp(
                        BorrowedFd::borrow_raw(0),
                        rustix::process::getpid(),
                    );
                }
            }
            if let Err(e) =
                signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
            {
                return fail(STAGE_SETUP, e as i32);
            }
            if let Some(m) = umask {
                rustix::process::umask(rustix::fs::Mode::from_raw_mode(m));
            }
            for (i, r) in rlimits.iter().enumerate() {
                let cur = rustix::process::getrlimit(r.resource);
                let lim = rustix::process::Rlimit {
                    current: r.soft.or(cur.current),
                    maximum: r.hard.or(cur.maximum),
                };
                if let Err(e) = rustix::process::setrlimit(r.resource, lim) {
                    fail_index.store(i as i32, Ordering::Relaxed);
                    return fail(STAGE_LIMIT, e.raw_os_error());
                }
            }
            if !use_close_range || !cloexec_from(lowest as u32) {
                for &fd in &leaky {
                    let bfd = BorrowedFd::borrow_raw(fd);
                    let _ = rustix::io::fcntl_setfd(bfd, rustix::io::FdFlags::CLOEXEC);
                }
            }
            // The kernel's per-thread calls, not libc's: musl's setuid and
            // friends synchronise every thread of the process (__synccall),
            // which a vfork-style child sharing the parent's memory must not
            // attempt. The child is a single thread, so per-thread is all.
            if let Some(bits) = caps {
                for cap in 0..64u64 {
                    // EINVAL: a capability this kernel does not have.
                    if bits & (1 << cap) == 0
                        && nix::libc::prctl(nix::libc::PR_CAPBSET_DROP, cap, 0, 0, 0) < 0
                        && nix::errno::Errno::last_raw() != nix::libc::EINVAL
                    {
                        return step(5, nix::errno::Errno::last_raw());
                    }
                }
                if change_ids.is_some() {
                    if let Err(e) = rustix::thread::set_keep_capabilities(true) {
                        return step(6, e.raw_os_error());
                    }
                }
            }
            if let Some((uid, gid)) = change_ids {
                if let Err(e) = rustix::thread::set_thread_groups(&groups) {
                    return fail(STAGE_SETUP, e.raw_os_error());
                }
                if let Err(e) = rustix::thread::set_thread_gid(rustix::process::Gid::from_raw(gid))
                {
                    return fail(STAGE_SETUP, e.raw_os_error());
                }
                if let Err(e) = rustix::thread::set_thread_uid(rustix::process::Uid::from_raw(uid))
                {
                    return fail(STAGE_SETUP, e.raw_os_error());
                }
            }
            if let Some(bits) = caps {
                let set = rustix::thread::CapabilitySet::from_bits_retain(bits);
                let sets = rustix::thread::CapabilitySets {
                    effective: set,
                    permitted: set,
                    inheritable: set,
                };
                if let Err(e) = rustix::thread::set_capabilities(None, sets) {
                    return step(7, e.raw_os_error());
                }
                for cap in 0..64u64 {
                    if bits & (1 << cap) != 0
                        && nix::libc::prctl(
                            nix::libc::PR_CAP_AMBIENT,
                            nix::libc::PR_CAP_AMBIENT_RAISE,
                            cap,
                            0,
                            0,
                        ) < 0
                    {
                        return step(8, nix::errno::Errno::last_raw());
                    }
                }
            }
            if no_new_privs {
                if let Err(e) = rustix::thread::set_no_new_privs(true) {
                    return step(9, e.raw_os_error());
                }
            }
            if n_listen > 0 {
                // SAFETY: `listen_pid_p` points at LISTEN_PID_PREFIX + 21
                // bytes owned by the suspended parent; the digits and the
                // NUL fit in the 21.
                write_pid(
                    listen_pid_p.add(LISTEN_PID_PREFIX),
                    rustix::process::getpid().as_raw_nonzero().get() as u32,
                );
            }
            let mut err = nix::libc::ENOENT;
            let mut seen_eacces = false;
            for path in &candidates {
                nix::libc::execve(path.as_ptr(), argv_p.as_ptr(), env_p.as_ptr());
                err = nix::errno::Errno::last_raw();
                match err {
                    nix::libc::EACCES => seen_eacces = true,
                    nix::libc::ENOENT | nix::libc::ENOTDIR => {}
                    _ => break,
                }
            }
            if seen_eacces && (err == nix::libc::ENOENT || err == nix::libc::ENOTDIR) {
                err = nix::libc::EACCES;
            }
            fail(STAGE_EXEC, err)
        }
    };

    // One child stack for the process: in threaded programs (tests, tools)
    // two spawns must not run children on it at once.
    static STACK_IN_USE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _stack_guard = STACK_IN_USE.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: the mapping made by child_stack(), CHILD_STACK bytes below
    // `top`, writable, never freed, and used by nobody else while the guard
    // is held.
    let stack_slice = unsafe {
        std::slice::from_raw_parts_mut((stack.top - CHILD_STACK) as *mut u8, CHILD_STACK)
    };
    // No signal handler of the parent may run in the child before it has
    // reset its dispositions (it would run on the shared memory): every
    // signal is blocked around the clone, as posix_spawn does. PID 1 has them
    // all blocked already; programs embedding this (tests) may not.
    let mut old_mask = SigSet::empty();
    let blocked = signal::sigprocmask(
        SigmaskHow::SIG_SETMASK,
        Some(&SigSet::all()),
        Some(&mut old_mask),
    )
    .is_ok();
    // SAFETY: CLONE_VM | CLONE_VFORK: the child runs `child` on the reserved
    // stack (guard page below; the closure needs a few KiB) while this
    // thread is suspended, so nothing else touches the shared memory; PID 1
    // is single-threaded and, where this runs in a threaded test, the
    // other threads never touch what the child reads. SIGCHLD reports the
    // child's end to the reaper like any other child.
    // With a cgroup, clone3 first: the kernel creates the child inside it
    // (CLONE_INTO_CGROUP), which skips the RCU grace period a write to
    // cgroup.procs waits for (5-25 ms, between a crash and the restart's
    // exec). A refused clone3 (ENOSYS: old kernel or seccomp; anything
    // else) or a child killed at birth falls back to clone and the child's
    // own write (docs/DESIGN.md, Joining).
    let via_clone3 = cgroup_fd
        .filter(|_| !CLONE3_OFF.load(Ordering::Relaxed))
        .and_then(|dir| {
            let flags =
                nix::sched::CloneFlags::CLONE_VM | nix::sched::CloneFlags::CLONE_VFORK | ns_flags;
            joined_by_clone3.set(true);
            // SAFETY: as for the clone below: the same prepared stack, the
            // same child, the parent suspended until it execs or exits.
            let r = unsafe {
                clone3_vfork(
                    flags.bits() as u64 | CLONE_INTO_CGROUP,
                    stack_slice,
                    dir,
                    &mut child,
                )
            };
            match r {
                Ok(pid) if started.load(Ordering::Relaxed) => Some(pid),
                Ok(pid) => {
                    // The child never ran one instruction: the kernel
                    // killed it as it was born. Kernels with cgroup.kill's
                    // kill_seq (6.14 and later, seen on 6.18) compare the
                    // parent's cgroup's count with the target's and SIGKILL
                    // every CLONE_INTO_CGROUP child of a cgroup that was
                    // ever killed through cgroup.kill. Reap it here (it is
                    // this call's, nobody else has seen its pid) and start
                    // the service the other way.
                    let _ = nix::sys::wait::waitpid(pid, None);
                    joined_by_clone3.set(false);
                    None
                }
                Err(e) => {
                    if e == nix::errno::Errno::ENOSYS {
                        // No clone3 here (a kernel before 5.3, or a seccomp
                        // profile answering ENOSYS, as Docker's does): do
                        // not ask again.
                        CLONE3_OFF.store(true, Ordering::Relaxed);
                    }
                    joined_by_clone3.set(false);
                    None
                }
            }
        });
    let cloned = match via_clone3 {
        Some(pid) => Ok(pid),
        // SAFETY: see above.
        None => unsafe {
            nix::sched::clone(
                Box::new(child),
                stack_slice,
                nix::sched::CloneFlags::CLONE_VM | nix::sched::CloneFlags::CLONE_VFORK | ns_flags,
                Some(nix::libc::SIGCHLD),
            )
        },
    };
    if blocked {
        let _ = signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old_mask), None);
    }
    let pid = cloned.map_err(|e| SpawnError::Exec {
        argv0: argv0.clone(),
        source: if ns_flags.is_empty() {
            std::io::Error::from(e)
        } else {
            let e = std::io::Error::from(e);
            std::io::Error::new(e.kind(), format!("creating the namespaces: {e}"))
        },
    })?;
    drop(keep);
    let errno = fail_errno.load(Ordering::Relaxed);
    if errno != 0 {
        // The child exited before exec: reap it here (it is ours, not an
        // orphan) and say why.
        let _ = nix::sys::wait::waitpid(pid, None);
        let source = std::io::Error::from_raw_os_error(errno);
        return Err(match fail_stage.load(Ordering::Relaxed) {
            STAGE_STDIO => SpawnError::Stdio { argv0, source },
            STAGE_CWD => SpawnError::Exec {
                argv0,
                source: std::io::Error::new(
                    source.kind(),
                    format!(
                        "working directory {}: {source}",
                        spec.cwd
                            .as_deref()
                            .unwrap_or(std::path::Path::new("?"))
                            .display()
                    ),
                ),
            },
            STAGE_LIMIT => {
                let which = rlimits_desc
                    .get(fail_index.load(Ordering::Relaxed) as usize)
                    .cloned()
                    .unwrap_or_default();
                SpawnError::Exec {
                    argv0,
                    source: std::io::Error::new(
                        source.kind(),
                        format!("setting the resource limit {which}: {source}"),
                    ),
                }
            }
            STAGE_ISOLATE => {
                let which = ISOLATION_STEPS
                    .get(fail_index.load(Ordering::Relaxed) as usize)
                    .copied()
                    .unwrap_or("isolating the child");
                SpawnError::Exec {
                    argv0,
                    source: std::io::Error::new(source.kind(), format!("{which}: {source}")),
                }
            }
            STAGE_CGROUP => SpawnError::Exec {
                argv0,
                source: std::io::Error::new(source.kind(), format!("joining its cgroup: {source}")),
            },
            STAGE_SETUP => SpawnError::Exec {
                argv0,
                source: std::io::Error::new(
                    source.kind(),
                    format!("setting up the child: {source}"),
                ),
            },
            _ => SpawnError::Exec { argv0, source },
        });
    }
    Ok(pid.as_raw() as u32)
}

/// How a process ended, decoded in exactly one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum ExitStatus {
    Exited(i32),
    Signaled(i32),
}

impl ExitStatus {
    /// From a raw `wait` status.
    pub fn from_wait(st: rustix::process::WaitStatus) -> ExitStatus {
        if let Some(sig) = st.terminating_signal() {
            ExitStatus::Signaled(sig)
        } else {
            ExitStatus::Exited(st.exit_status().unwrap_or(0))
        }
    }
    /// The shell's convention: the exit code, or 128 + the signal number.
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Exited(c) => c,
            ExitStatus::Signaled(s) => 128 + s,
        }
    }
    pub fn success(self) -> bool {
        self == ExitStatus::Exited(0)
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Exited(c) => write!(f, "exited with code {c}"),
            ExitStatus::Signaled(s) => write!(f, "killed by signal {}", signal_name(*s)),
        }
    }
}

/// Signal number from a name ("TERM", "SIGTERM", "term", "RTMIN+3") or number.
pub fn parse_signal(s: &str) -> Option<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    if let Some(rest) = name.strip_prefix("RTMIN") {
        let off: i32 = if rest.is_empty() {
            0
        } else {
            rest.strip_prefix('+')?.parse().ok()?
        };
        let n = sigrtmin() + off;
        return (n <= 64).then_some(n);
    }
    Signal::iterator()
        .find(|sig| sig.as_str().strip_prefix("SIG") == Some(name))
        .map(|sig| sig as i32)
}

/// The first real-time signal number as user space sees it (musl and glibc
/// both reserve a few for themselves).
pub fn sigrtmin() -> i32 {
    // SAFETY-free: nix exposes no SIGRTMIN; 34 is the kernel value, and
    // libc implementations add their reserved ones (glibc and musl: 34/35).
    // moonlit uses the kernel's numbering as systemd does (RTMIN+3 = 37).
    34
}

/// "TERM" for 15, "RTMIN+3" for 37, the number otherwise.
pub fn signal_name(n: i32) -> String {
    if let Ok(sig) = Signal::try_from(n) {
        return sig.as_str().trim_start_matches("SIG").to_string();
    }
    if n >= sigrtmin() && n <= 64 {
        return format!("RTMIN+{}", n - sigrtmin());
    }
    n.to_string()
}

/// The raw fd number of an owned fd, for logs.
pub fn raw(fd: &OwnedFd) -> RawFd {
    fd.as_raw_fd()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names_round_trip() {
        assert_eq!(parse_signal("TERM"), Some(15));
        assert_eq!(parse_signal("sigusr1"), Some(10));
        assert_eq!(parse_signal("9"), Some(9));
        assert_eq!(parse_signal("RTMIN+3"), Some(37));
        assert_eq!(parse_signal("NOPE"), None);
        assert_eq!(parse_signal("0"), None);
        assert_eq!(signal_name(15), "TERM");
        assert_eq!(signal_name(37), "RTMIN+3");
    }

    fn wait(pid: u32) -> ExitStatus {
        let st = rustix::process::waitpid(
            rustix::process::Pid::from_raw(pid as i32),
            rustix::process::WaitOptions::empty(),
        )
        .unwrap()
        .unwrap()
        .1;
        ExitStatus::from_wait(st)
    }

    fn output(mut spec: SpawnSpec) -> (String, ExitStatus) {
        let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        spec.stdout = StdioSpec::Fd(w);
        let pid = spawn(spec).unwrap();
        let mut out = String::new();
        std::io::Read::read_to_string(&mut std::fs::File::from(r), &mut out).unwrap();
        (out, wait(pid))
    }

    fn sh(script: &str) -> SpawnSpec {
        SpawnSpec::new(vec!["sh".into(), "-c".into(), script.into()])
    }

    #[test]
    fn children_run_found_on_path_with_a_clean_environment() {
        let mut spec = sh("echo \"$0|$FOO|$PATH\"; env | sort | tr '\\n' ' '; exit 3");
        spec.env.insert("FOO".into(), "bar baz".into());
        let (out, st) = output(spec);
        assert_eq!(st, ExitStatus::Exited(3));
        let mut lines = out.lines();
        assert_eq!(
            lines.next(),
            Some(format!("sh|bar baz|{DEFAULT_PATH}").as_str())
        );
        // Only what moonlit sets (sh adds PWD, and SHLVL for some shells).
        let vars: Vec<&str> = lines
            .next()
            .unwrap()
            .split_whitespace()
            .filter(|v| !v.starts_with("PWD=") && !v.starts_with("SHLVL=") && !v.starts_with("_="))
            .collect();
        assert_eq!(vars, ["FOO=bar", "baz", &format!("PATH={DEFAULT_PATH}")]);
    }

    #[test]
    fn cwd_umask_and_stdin_are_set() {
        let mut spec = sh("pwd; umask; cat");
        spec.cwd = Some("/tmp".into());
        spec.umask = Some(0o027);
        let (out, st) = output(spec);
        assert!(st.success(), "{st}");
        // stdin is /dev/null: cat prints nothing and ends.
        assert_eq!(out, "/tmp\n0027\n");
    }

    #[test]
    fn failures_before_exec_are_reported_and_the_child_reaped() {
        let e = spawn(SpawnSpec::new(vec!["no-such-program-moonlit".into()])).unwrap_err();
        assert!(
            matches!(&e, SpawnError::Exec { argv0, source } if argv0 == "no-such-program-moonlit"
                && source.kind() == std::io::ErrorKind::NotFound),
            "{e}"
        );
        let e = spawn(SpawnSpec::new(vec!["/no/such/dir/prog".into()])).unwrap_err();
        assert!(e.to_string().contains("No such file"), "{e}");
        // A file without the execute bit: EACCES, as execvp says it.
        let f = std::env::temp_dir().join(format!("moonlit-noexec-{}", std::process::id()));
        std::fs::write(&f, "#!/bin/sh\n").unwrap();
        let e = spawn(SpawnSpec::new(vec![f.display().to_string()])).unwrap_err();
        let _ = std::fs::remove_file(&f);
        assert!(
            matches!(&e, SpawnError::Exec { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied),
            "{e}"
        );
        let mut spec = sh("true");
        spec.cwd = Some("/no/such/dir".into());
        let e = spawn(spec).unwrap_err();
        assert!(
            e.to_string().contains("working directory /no/such/dir"),
            "{e}"
        );
        let mut spec = sh("true");
        spec.argv.push("a\0b".into());
        let e = spawn(spec).unwrap_err();
        assert!(e.to_string().contains("NUL"), "{e}");
    }

    #[test]
    fn listen_fds_follow_systemds_protocol() {
        use std::io::Read as _;
        // Two pipes whose write ends become fds 3 and 4; their numbers are
        // low, so the swap must not clobber one with the other.
        let (r1, w1) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        let (r2, w2) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        let mut spec = sh(
            "echo one >&3; echo two >&4; echo \"$LISTEN_FDS|$LISTEN_FDNAMES|$LISTEN_PID|$$\"; [ -e /proc/self/fd/5 ] && echo leak; true",
        );
        spec.env.insert("LISTEN_PID".into(), "999".into());
        spec.listen_fds = vec![w2.as_raw_fd(), w1.as_raw_fd()];
        spec.listen_names = vec!["b".into(), "a".into()];
        let (out, st) = output(spec);
        drop((w1, w2));
        assert!(st.success(), "{st}");
        let line = out.lines().next().unwrap().to_string();
        let f: Vec<&str> = line.split('|').collect();
        assert_eq!(&f[..2], ["2", "b:a"], "{out}");
        assert_eq!(f[2], f[3], "LISTEN_PID is the exec'd pid: {out}");
        assert!(!out.contains("leak"), "{out}");
        let mut a = String::new();
        std::fs::File::from(r1).read_to_string(&mut a).unwrap();
        let mut b = String::new();
        std::fs::File::from(r2).read_to_string(&mut b).unwrap();
        assert_eq!((a.as_str(), b.as_str()), ("two\n", "one\n"));
    }

    #[test]
    fn many_children_in_a_row() {
        // The shared child stack is reused: each child must start clean.
        for i in 0..200 {
            let (out, st) = output(sh(&format!("echo {i}")));
            assert!(st.success());
            assert_eq!(out, format!("{i}\n"));
        }
    }

    #[test]
    fn exit_codes() {
        assert_eq!(ExitStatus::Exited(3).code(), 3);
        assert_eq!(ExitStatus::Signaled(9).code(), 137);
        assert!(ExitStatus::Exited(0).success());
        assert!(!ExitStatus::Signaled(15).success());
    }
}
