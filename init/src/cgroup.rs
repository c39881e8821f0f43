//! cgroups v2: one cgroup per service, moonlit itself in a leaf.
//!
//! Owns: finding (or, as the machine's PID 1, mounting) a writable cgroup2,
//! moving PID 1 into `init.scope` before enabling controllers (the "no
//! internal processes" rule), creating a service's cgroup and handing out a
//! descriptor of it for the spawn, watching each service's `cgroup.events`
//! (inotify) for `populated 0`, killing a whole cgroup (`cgroup.kill`, else
//! freeze + KILL each pid), and reading the figures shown by `ctl status`.
//! Does not own: deciding when a service is stopped (the supervisor, told by
//! the loop) or placing the child (the spawn, with the descriptor).
//!
//! Where no writable cgroup2 is available the state is "off" with a reason,
//! logged once and shown in `ctl status`; services then run without cgroups.

use std::collections::HashMap;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{inotify, Mode as FMode, OFlags};

use crate::mode::Mode;
use moonlit_config::cgroup_limits::Setting;

/// `CGROUP2_SUPER_MAGIC` (linux/magic.h).
const CGROUP2_MAGIC: i64 = 0x6367_7270;

/// Why a cgroup operation failed, with the file it was on.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cgroups are off: {0}")]
    Off(String),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CgroupError {
    let path = path.to_path_buf();
    move |source| CgroupError::Io { what, path, source }
}

/// Whether `path` is on a cgroup2 filesystem (a stale mountinfo entry hidden
/// under a newer mount is not).
// `f_type`'s integer type differs between libcs (i64 on glibc, unsigned on
// musl): the cast is a no-op only on some targets.
#[allow(clippy::unnecessary_cast)]
fn is_cgroup2(path: &Path) -> bool {
    rustix::fs::statfs(path).is_ok_and(|s| s.f_type as i64 == CGROUP2_MAGIC)
}

/// The cgroup2 directory of this process: the mount from
/// /proc/self/mountinfo joined with the path from /proc/self/cgroup.
/// `Err` says why there is none.
pub fn own_cgroup_dir() -> Result<PathBuf, String> {
    let cg = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
    let rel = cg
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or("no cgroup2 entry in /proc/self/cgroup")?
        .to_string();
    let mi = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
    let mut found_ro = None;
    for line in mi.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        if !post.starts_with("cgroup2 ") {
            continue;
        }
        let f: Vec<&str> = pre.split(' ').collect();
        if f.len() < 6 {
            continue;
        }
        let (root, mnt, opts) = (f[3], f[4], f[5]);
        let Some(sub) = rel.strip_prefix(root.trim_end_matches('/')) else {
            continue;
        };
        let dir = PathBuf::from(format!("{mnt}/{}", sub.trim_start_matches('/')));
        if !is_cgroup2(Path::new(mnt)) || !dir.is_dir() {
            continue;
        }
        if opts.split(',').any(|o| o == "ro") {
            found_ro = Some(mnt.to_string());
            continue;
        }
        return Ok(dir);
    }
    match found_ro {
        Some(m) => Err(format!(
            "the cgroup2 filesystem at {m} is mounted read-only"
        )),
        None => Err("no cgroup2 filesystem is mounted".into()),
    }
}

fn write_file(path: &Path, what: &'static str, data: &str) -> Result<(), CgroupError> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io(what, path))?;
    f.write_all(data.as_bytes()).map_err(io(what, path))
}

/// Moves the calling process into `dir` (writes "0" to its cgroup.procs).
pub fn join(dir: &Path) -> Result<(), CgroupError> {
    write_file(&dir.join("cgroup.procs"), "joining", "0")
}

/// The directory holding `dir`, opened now: the sandbox's parent removes
/// its cgroup through it after the sandbox's mounts have covered the path
/// (both are in the sandbox's mount namespace).
pub fn open_parent(dir: &Path) -> Option<OwnedFd> {
    rustix::fs::open(
        dir.parent()?,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        FMode::empty(),
    )
    .ok()
}

/// Removes the cgroup `name` under `base` and every cgroup below it,
/// deepest first. Returns true when it is gone.
pub fn remove_tree_at(base: &OwnedFd, name: &str) -> bool {
    fn walk(base: BorrowedFd<'_>, name: &std::ffi::CStr) -> rustix::io::Result<()> {
        let fd = rustix::fs::openat(
            base,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            FMode::empty(),
        )?;
        let mut subdirs = Vec::new();
        for e in rustix::fs::Dir::read_from(&fd)?.flatten() {
            let n = e.file_name();
            if e.file_type() == rustix::fs::FileType::Directory
                && n.to_bytes() != b"."
                && n.to_bytes() != b".."
            {
                subdirs.push(n.to_owned());
            }
        }
        for d in subdirs {
            let _ = walk(fd.as_fd(), &d);
        }
        rustix::fs::unlinkat(base, name, rustix::fs::AtFlags::REMOVEDIR)
    }
    let Ok(c) = std::ffi::CString::new(name) else {
        return false;
    };
    match walk(base.as_fd(), &c) {
        Ok(()) => true,
        Err(e) => e == rustix::io::Errno::NOENT,
    }
}

/// The sandbox's own cgroup on the host, made by its PID 1 before the
/// cgroup namespace is unshared: `<own cgroup>/moonlit-sandbox-<pid>`.
pub fn sandbox_cgroup(pid: u32) -> Result<PathBuf, String> {
    let base = own_cgroup_dir()?;
    Ok(base.join(format!("moonlit-sandbox-{pid}")))
}

/// Why a sandbox has no cgroup of its own (set by its PID 1 before the
/// init starts; see [`sandbox_prepare`]).
static SANDBOX_OFF: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// In a sandbox's PID 1, before stage 1: joins `dir` (the sandbox's cgroup
/// on the host, made here) and unshares the cgroup namespace, so that the
/// cgroup2 mounted by [`sandbox_mount`] has that cgroup as its root.
pub fn sandbox_prepare(dir: &Result<PathBuf, String>) {
    let r = dir.clone().and_then(|d| {
        std::fs::create_dir(&d)
            .or_else(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .map_err(|e| format!("cannot create {}: {e}", d.display()))?;
        join(&d).map_err(|e| e.to_string())?;
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP)
            .map_err(|e| format!("unshare(cgroup): {e}"))
    });
    if let Err(e) = r {
        let _ = SANDBOX_OFF.set(e);
    }
}

/// In a sandbox's PID 1, after its fresh /sys is mounted: a cgroup2 on
/// /sys/fs/cgroup (rooted at the sandbox's cgroup).
pub fn sandbox_mount() {
    if SANDBOX_OFF.get().is_some() {
        return;
    }
    let flags = rustix::mount::MountFlags::NOSUID
        | rustix::mount::MountFlags::NODEV
        | rustix::mount::MountFlags::NOEXEC;
    if let Err(e) = rustix::mount::mount("cgroup2", "/sys/fs/cgroup", "cgroup2", flags, None) {
        let _ = SANDBOX_OFF.set(format!("cannot mount cgroup2 on /sys/fs/cgroup: {e}"));
    }
}

/// Live cgroup figures of one service (`None`: the file is absent, its
/// controller not enabled). Shared with Lua's `moonlit.service_stats`.
pub use moonlit_config::runtime::ServiceStats as Stats;

/// The cgroup tree moonlit manages.
#[derive(Debug, Default)]
pub struct Cgroups {
    /// moonlit's own cgroup (services are its children); `None`: off.
    root: Option<PathBuf>,
    /// Why cgroups are off.
    pub off_reason: Option<String>,
    /// Controllers enabled for the services.
    pub controllers: Vec<String>,
    inotify: Option<OwnedFd>,
    watches: HashMap<i32, String>,
    /// Each service's `memory.events` oom_kill count when its run began.
    oom_base: HashMap<String, u64>,
    /// What the set-up did, for the log.
    pub notes: Vec<String>,
    /// Controllers this cgroup2 offers (`cgroup.controllers` of our root).
    pub available: Vec<String>,
    /// Our root's `cgroup.subtree_control`, where controllers are enabled.
    subtree_control: Option<PathBuf>,
}

/// Enabled at set-up: what `ctl status` and `moonlit.service_stats` read
/// (memory.current, cpu.stat, pids.current) and the limits most services
/// set. Any other controller (io, cpuset, hugetlb, rdma, misc) is enabled
/// when a service's limit first needs it: each enabled controller adds its
/// interface files to every service cgroup and its set-up to every cgroup
/// creation (docs/DESIGN.md, "Controllers on demand").
pub const DEFAULT_CONTROLLERS: [&str; 3] = ["memory", "cpu", "pids"];

impl Cgroups {
    /// Finds or mounts cgroup2 for `mode`, moves this process into
    /// `init.scope` and enables what controllers are there. Never fails:
    /// without a usable cgroup2 the state is off, with the reason.
    pub fn setup(mode: Mode) -> Cgroups {
        let mut cg = Cgroups::default();
        match cg.try_setup(mode) {
            Ok(root) => cg.root = Some(root),
            Err(reason) => cg.off_reason = Some(reason),
        }
        cg
    }

    fn try_setup(&mut self, mode: Mode) -> Result<PathBuf, String> {
        if mode == Mode::Sandbox {
            if let Some(r) = SANDBOX_OFF.get() {
                return Err(format!("sandbox: {r}"));
            }
        }
        if mode == Mode::System && !is_cgroup2(Path::new("/sys/fs/cgroup")) {
            let mounted = own_cgroup_dir().is_ok();
            if !mounted {
                let flags = rustix::mount::MountFlags::NOSUID
                    | rustix::mount::MountFlags::NODEV
                    | rustix::mount::MountFlags::NOEXEC;
                // favordynmods (Linux 6.0): moving a process into a cgroup
                // (every spawn) no longer waits for an RCU grace period
                // (5-25 ms measured on a 2-core host), for slightly dearer
                // forks and exits. Older kernels refuse the option.
                let r = rustix::mount::mount(
                    "cgroup2",
                    "/sys/fs/cgroup",
                    "cgroup2",
                    flags,
                    Some(c"nsdelegate,favordynmods"),
                )
                .or_else(|_| {
                    rustix::mount::mount(
                        "cgroup2",
                        "/sys/fs/cgroup",
                        "cgroup2",
                        flags,
                        Some(c"nsdelegate"),
                    )
                })
                .or_else(|_| {
                    rustix::mount::mount("cgroup2", "/sys/fs/cgroup", "cgroup2", flags, None)
                });
                match r {
                    Ok(()) => self.notes.push("mounted cgroup2 on /sys/fs/cgroup".into()),
                    Err(e) => return Err(format!("cannot mount cgroup2 on /sys/fs/cgroup: {e}")),
                }
            }
        }
        let mut dir = own_cgroup_dir()?;
        // Already in our leaf (a re-exec): the parent is ours.
        if dir.file_name().is_some_and(|n| n == "init.scope") {
            dir.pop();
        } else if mode == Mode::User && !rustix::process::geteuid().is_root() {
            return Err("user mode without root: the cgroup is not delegated".into());
        } else if mode == Mode::User {
            return Err("user mode: moonlit does not take over the caller's cgroup".into());
        }
        let leaf = dir.join("init.scope");
        match std::fs::create_dir(&leaf) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("cannot create {}: {e}", leaf.display())),
        }
        // Every process of our cgroup (this one, anything a runtime put
        // there with us) into the leaf, so controllers can be enabled. The
        // real root (it alone has no cgroup.events) is exempt from that
        // rule and holds the kernel's threads: only this process moves.
        if dir.join("cgroup.events").exists() {
            let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.split_whitespace() {
                let _ = write_file(&leaf.join("cgroup.procs"), "moving", pid);
            }
        }
        join(&leaf).map_err(|e| e.to_string())?;
        let avail = std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
        self.available = avail.split_whitespace().map(str::to_string).collect();
        // What an earlier run (before a re-exec) enabled stays enabled.
        let on = std::fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
        self.controllers = on.split_whitespace().map(str::to_string).collect();
        self.subtree_control = Some(dir.join("cgroup.subtree_control"));
        for c in DEFAULT_CONTROLLERS {
            let _ = self.enable(c);
        }
        match inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK) {
            Ok(fd) => self.inotify = Some(fd),
            Err(e) => return Err(format!("inotify_init: {e}")),
        }
        Ok(dir)
    }

    pub fn enabled(&self) -> bool {
        self.root.is_some()
    }

    /// Enables `controller` for the services (once; a no-op when it is
    /// already on). The error names the controller and why.
    pub fn enable(&mut self, controller: &str) -> Result<(), String> {
        if self.controllers.iter().any(|c| c == controller) {
            return Ok(());
        }
        if !self.available.iter().any(|c| c == controller) {
            return Err(format!("the {controller} controller is not offered"));
        }
        let file = self
            .subtree_control
            .clone()
            .ok_or_else(|| "cgroups are off".to_string())?;
        write_file(&file, "enabling", &format!("+{controller}"))
            .map_err(|e| format!("enabling the {controller} controller: {e}"))?;
        self.controllers.push(controller.to_string());
        Ok(())
    }

    /// The inotify descriptor of the `cgroup.events` watches (for epoll).
    pub fn watch_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.inotify.as_ref().map(|f| f.as_fd())
    }

    /// A service's cgroup directory.
    pub fn dir(&self, service: &str) -> Option<PathBuf> {
        self.root
            .as_ref()
            .map(|r| r.join(format!("{service}.service")))
    }

    /// Creates (or keeps) the service's cgroup, watches its events and
    /// returns a descriptor of the directory for the spawn.
    pub fn prepare(&mut self, service: &str) -> Result<OwnedFd, CgroupError> {
        let dir = self
            .dir(service)
            .ok_or_else(|| CgroupError::Off(self.off_reason.clone().unwrap_or_default()))?;
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io("creating", &dir)(e)),
        }
        self.watch(service);
        rustix::fs::open(
            &dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            FMode::empty(),
        )
        .map_err(|e| io("opening", &dir)(e.into()))
    }

    /// Watches the service's `cgroup.events` (kept across restarts).
    pub fn watch(&mut self, service: &str) {
        if self.watches.values().any(|s| s == service) {
            return;
        }
        let (Some(fd), Some(dir)) = (self.inotify.as_ref(), self.dir(service)) else {
            return;
        };
        if let Ok(wd) =
            inotify::add_watch(fd, dir.join("cgroup.events"), inotify::WatchFlags::MODIFY)
        {
            self.watches.insert(wd, service.to_string());
        }
    }

    /// Drains the inotify queue: the services whose `cgroup.events` changed.
    pub fn changed(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        let Some(fd) = self.inotify.as_ref() else {
            return out;
        };
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
        let mut reader = inotify::Reader::new(fd, &mut buf);
        while let Ok(ev) = reader.next() {
            if let Some(s) = self.watches.get(&ev.wd()) {
                if !out.contains(s) {
                    out.push(s.clone());
                }
            }
        }
        out
    }

    fn read_key(path: &Path, key: &str) -> Option<u64> {
        let text = std::fs::read_to_string(path).ok()?;
        text.lines().find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == key).then(|| v.trim().parse().ok()).flatten()
        })
    }

    /// Whether the service's cgroup has a process (false without a cgroup).
    pub fn populated(&self, service: &str) -> bool {
        self.dir(service)
            .and_then(|d| Self::read_key(&d.join("cgroup.events"), "populated"))
            == Some(1)
    }

    /// The pids in the service's cgroup.
    pub fn pids(&self, service: &str) -> Vec<i32> {
        self.dir(service)
            .and_then(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
            .map(|t| {
                t.split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Sends `sig` to every process of the service's cgroup. KILL goes
    /// through `cgroup.kill` (5.14+), else the cgroup is frozen, each pid
    /// killed, and thawed (a fork bomb cannot outrun a frozen cgroup).
    /// Returns false when the service has no cgroup.
    pub fn signal(&self, service: &str, sig: rustix::process::Signal) -> bool {
        let Some(dir) = self.dir(service).filter(|d| d.is_dir()) else {
            return false;
        };
        if sig == rustix::process::Signal::KILL {
            if write_file(&dir.join("cgroup.kill"), "killing", "1").is_ok() {
                return true;
            }
            let freeze = dir.join("cgroup.freeze");
            let frozen = write_file(&freeze, "freezing", "1").is_ok();
            for p in self.pids(service) {
                if let Some(p) = rustix::process::Pid::from_raw(p) {
                    let _ = rustix::process::kill_process(p, sig);
                }
            }
            if frozen {
                let _ = write_file(&freeze, "thawing", "0");
            }
            return true;
        }
        for p in self.pids(service) {
            if let Some(p) = rustix::process::Pid::from_raw(p) {
                let _ = rustix::process::kill_process(p, sig);
            }
        }
        true
    }

    /// The figures `ctl status` shows.
    pub fn stats(&self, service: &str) -> Option<Stats> {
        read_stats(&self.dir(service)?)
    }

    /// A reader of any service's figures by name, for Lua (it holds only
    /// the root path: no borrow of the loop's state).
    pub fn stats_reader(&self) -> impl Fn(&str) -> Result<Stats, String> + 'static {
        let root = self.root.clone();
        let off = self.off_reason.clone();
        move |service: &str| {
            let Some(root) = &root else {
                return Err(format!(
                    "cgroups are off: {}",
                    off.as_deref().unwrap_or("not set up")
                ));
            };
            if service.is_empty() || service.contains('/') || service.starts_with('.') {
                return Err(format!("\"{service}\" is not a service name"));
            }
            read_stats(&root.join(format!("{service}.service")))
                .ok_or_else(|| format!("service \"{service}\" has no cgroup"))
        }
    }

    /// Writes limits to the service's cgroup. Every setting whose
    /// controller is enabled is written (unset ones get the kernel's
    /// default back); a limit that was set but whose controller is missing
    /// is an error naming it.
    pub fn apply_limits(&mut self, service: &str, settings: &[Setting]) -> Result<(), String> {
        let dir = self
            .dir(service)
            .ok_or_else(|| "cgroups are off".to_string())?;
        let mut missing = Vec::new();
        for st in settings {
            if st.set {
                // On demand; a failure shows as the controller missing below.
                let _ = self.enable(st.controller);
            }
            let file = dir.join(st.file);
            if !st.set {
                // A default, to undo an earlier limit on a reused cgroup:
                // only where the file exists and says otherwise.
                match std::fs::read_to_string(&file) {
                    Ok(cur) if cur.trim() != st.value => {
                        let _ = write_file(&file, "writing", &st.value);
                    }
                    _ => {}
                }
                continue;
            }
            if !self.controllers.iter().any(|c| c == st.controller) {
                missing.push(format!(
                    "cgroup.{} needs the {} controller",
                    st.key, st.controller
                ));
                continue;
            }
            if !file.exists() {
                missing.push(format!(
                    "cgroup.{} needs {}, which this kernel does not provide",
                    st.key, st.file
                ));
                continue;
            }
            write_file(&file, "writing", &st.value)
                .map_err(|e| format!("cgroup.{} = {}: {e}", st.key, st.value))?;
        }
        if missing.is_empty() {
            return Ok(());
        }
        let avail = if self.controllers.is_empty() {
            "none".to_string()
        } else {
            self.controllers.join(", ")
        };
        Err(format!(
            "{}, which this system does not offer here (controllers: {avail})",
            missing.join("; ")
        ))
    }

    /// Starts counting OOM kills of the service's run from now.
    pub fn oom_mark(&mut self, service: &str) {
        let n = self.oom_kills(service).unwrap_or(0);
        self.oom_base.insert(service.to_string(), n);
    }

    /// Whether the kernel OOM-killed a process of the service since
    /// [`Self::oom_mark`] (then counts from the new total).
    pub fn oom_since_mark(&mut self, service: &str) -> bool {
        let Some(n) = self.oom_kills(service) else {
            return false;
        };
        let base = self.oom_base.insert(service.to_string(), n).unwrap_or(0);
        n > base
    }

    fn oom_kills(&self, service: &str) -> Option<u64> {
        Self::read_key(&self.dir(service)?.join("memory.events"), "oom_kill")
    }

    /// The services whose cgroups are watched.
    pub fn managed(&self) -> Vec<String> {
        let mut v: Vec<String> = self.watches.values().cloned().collect();
        v.sort();
        v.dedup();
        v
    }

    /// Removes the service's cgroup if it is empty; true when it is gone.
    pub fn remove(&mut self, service: &str) -> bool {
        let Some(dir) = self.dir(service) else {
            return true;
        };
        if let Some(fd) = self.inotify.as_ref() {
            let wds: Vec<i32> = self
                .watches
                .iter()
                .filter(|(_, s)| *s == service)
                .map(|(w, _)| *w)
                .collect();
            for wd in wds {
                let _ = inotify::remove_watch(fd, wd);
                self.watches.remove(&wd);
            }
        }
        std::fs::remove_dir(&dir).is_ok() || !dir.exists()
    }
}

/// Reads the figures of the cgroup at `dir` (`None`: no such cgroup).
fn read_stats(dir: &Path) -> Option<Stats> {
    if !dir.is_dir() {
        return None;
    }
    let one = |f: &str| {
        std::fs::read_to_string(dir.join(f))
            .ok()
            .and_then(|t| t.trim().parse().ok())
    };
    Some(Stats {
        memory_current: one("memory.current"),
        cpu_usage_usec: Cgroups::read_key(&dir.join("cpu.stat"), "usage_usec"),
        pids_current: one("pids.current"),
        populated: Cgroups::read_key(&dir.join("cgroup.events"), "populated") == Some(1),
        oom_kills: Cgroups::read_key(&dir.join("memory.events"), "oom_kill"),
    })
}
