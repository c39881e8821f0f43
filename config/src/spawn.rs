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
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

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

fn to_stdio(s: StdioSpec) -> Stdio {
    match s {
        StdioSpec::Null => Stdio::null(),
        StdioSpec::Inherit => Stdio::inherit(),
        StdioSpec::Fd(fd) => Stdio::from(fd),
    }
}

/// Starts a child per `spec` and returns its pid. Never waits for it.
pub fn spawn(spec: SpawnSpec) -> Result<u32, SpawnError> {
    let argv0 = spec.argv.first().ok_or(SpawnError::EmptyArgv)?.clone();
    let mut cmd = Command::new(&argv0);
    cmd.args(&spec.argv[1..]);
    cmd.env_clear();
    cmd.env("PATH", DEFAULT_PATH);

    let mut ids: Option<(u32, u32, Vec<u32>)> = None;
    if let Some(u) = &spec.user {
        let entry = resolve_user(u)?;
        let gid = match &spec.group {
            Some(g) => resolve_group(g)?,
            None => entry.gid,
        };
        cmd.env("HOME", &entry.home);
        cmd.env("USER", &entry.name);
        cmd.env("LOGNAME", &entry.name);
        ids = Some((entry.uid, gid, supplementary_groups(&entry.name, gid)));
    } else if let Some(g) = &spec.group {
        let gid = resolve_group(g)?;
        ids = Some((rustix::process::getuid().as_raw(), gid, vec![gid]));
    }
    for (k, v) in &spec.env {
        cmd.env(k, v);
    }
    if let Some(cwd) = &spec.cwd {
        cmd.current_dir(cwd);
    }
    cmd.stdin(to_stdio(spec.stdin));
    cmd.stdout(to_stdio(spec.stdout));
    cmd.stderr(to_stdio(spec.stderr));

    // With close_range the child marks everything >= 3 itself; otherwise the
    // leaky descriptors are listed here, before the fork.
    let use_close_range = have_close_range();
    let leaky = if use_close_range {
        Vec::new()
    } else {
        leaky_fds()
    };
    let setsid = spec.setsid;
    let ctty = spec.ctty;
    let umask = spec.umask;
    let rlimits = spec.rlimits.clone();
    let groups: Vec<nix::unistd::Gid> = ids
        .as_ref()
        .map(|(_, _, g)| g.iter().map(|g| nix::unistd::Gid::from_raw(*g)).collect())
        .unwrap_or_default();
    let change_ids = ids.as_ref().map(|(u, g, _)| (*u, *g));

    // SAFETY: the closure runs in the forked child before exec. It only makes
    // async-signal-safe system calls (sigaction, sigprocmask, setsid, umask,
    // setrlimit, fcntl, setgroups, setgid, setuid) on data prepared in the
    // parent, and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            // Dispositions: exec resets caught signals; ignored ones (Rust
            // ignores PIPE; a parent may have ignored others, real-time
            // ones included) must be reset by hand. The raw system call,
            // because libc wrappers refuse the signals libc keeps for
            // itself (32-34), which a child must still get as default.
            for sig in 1..=64 {
                if sig != nix::libc::SIGKILL && sig != nix::libc::SIGSTOP {
                    reset_disposition(sig);
                }
            }
            signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
                .map_err(std::io::Error::from)?;
            if setsid {
                rustix::process::setsid()?;
            }
            if ctty {
                rustix::process::ioctl_tiocsctty(BorrowedFd::borrow_raw(0))?;
            }
            if let Some(m) = umask {
                rustix::process::umask(rustix::fs::Mode::from_raw_mode(m));
            }
            for r in &rlimits {
                let cur = rustix::process::getrlimit(r.resource);
                let lim = rustix::process::Rlimit {
                    current: r.soft.or(cur.current),
                    maximum: r.hard.or(cur.maximum),
                };
                rustix::process::setrlimit(r.resource, lim)?;
            }
            if !use_close_range || !cloexec_from(3) {
                for &fd in &leaky {
                    let bfd = BorrowedFd::borrow_raw(fd);
                    let _ = rustix::io::fcntl_setfd(bfd, rustix::io::FdFlags::CLOEXEC);
                }
            }
            if let Some((uid, gid)) = change_ids {
                nix::unistd::setgroups(&groups).map_err(std::io::Error::from)?;
                nix::unistd::setgid(nix::unistd::Gid::from_raw(gid))
                    .map_err(std::io::Error::from)?;
                nix::unistd::setuid(nix::unistd::Uid::from_raw(uid))
                    .map_err(std::io::Error::from)?;
            }
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(|source| SpawnError::Exec { argv0, source })?;
    // The child is reaped by the init's central reaper; dropping `Child`
    // neither waits nor kills.
    Ok(child.id())
}

/// How a process ended, decoded in exactly one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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

    #[test]
    fn exit_codes() {
        assert_eq!(ExitStatus::Exited(3).code(), 3);
        assert_eq!(ExitStatus::Signaled(9).code(), 137);
        assert!(ExitStatus::Exited(0).success());
        assert!(!ExitStatus::Signaled(15).success());
    }
}
