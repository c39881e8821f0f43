//! Stage 1: the fixed, Rust-only start of a boot: API filesystems, device
//! nodes, the console. Runs before any Lua.

use std::ffi::CStr;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rustix::mount::{MountFlags, MountPropagationFlags};

/// A step that went wrong (logged; boot continues).
#[derive(Debug, thiserror::Error)]
#[error("{what} {path}: {source}")]
pub struct MountError {
    pub what: &'static str,
    pub path: String,
    #[source]
    pub source: std::io::Error,
}

/// Whether `path` is a mount point (its device differs from its parent's,
/// or it is the root of its mount).
pub fn is_mountpoint(path: &str) -> bool {
    let p = Path::new(path);
    let (Ok(me), Ok(parent)) = (std::fs::metadata(p), std::fs::metadata(p.join(".."))) else {
        return false;
    };
    me.dev() != parent.dev() || me.ino() == parent.ino()
}

fn mount_if_absent(
    path: &str,
    fstype: &str,
    flags: MountFlags,
    data: Option<&CStr>,
    out: &mut Vec<String>,
) -> Result<(), MountError> {
    if is_mountpoint(path) {
        return Ok(());
    }
    if let Err(e) = std::fs::create_dir_all(path) {
        return Err(MountError {
            what: "mkdir",
            path: path.into(),
            source: e,
        });
    }
    rustix::mount::mount(fstype, path, fstype, flags, data).map_err(|e| MountError {
        what: "mount",
        path: path.into(),
        source: e.into(),
    })?;
    out.push(format!("{path} ({fstype})"));
    Ok(())
}

fn ensure_char_dev(path: &str, major: u32, minor: u32) {
    if Path::new(path).exists() {
        return;
    }
    let _ = rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0o600),
        rustix::fs::makedev(major, minor),
    );
}

/// System boot (PID 1 of the machine, or of a container whose runtime
/// mounted part of this already): mounts what is missing.
pub fn system() -> (Vec<String>, Vec<MountError>) {
    let nosuid = MountFlags::NOSUID;
    let nodev = MountFlags::NODEV;
    let noexec = MountFlags::NOEXEC;
    let mut done = Vec::new();
    let mut errors = Vec::new();
    let steps: [(&str, &str, MountFlags, Option<&CStr>); 6] = [
        ("/proc", "proc", nosuid | nodev | noexec, None),
        ("/sys", "sysfs", nosuid | nodev | noexec, None),
        ("/dev", "devtmpfs", nosuid, Some(c"mode=0755")),
        (
            "/dev/pts",
            "devpts",
            nosuid | noexec,
            Some(c"gid=5,mode=0620,ptmxmode=0666"),
        ),
        ("/dev/shm", "tmpfs", nosuid | nodev, Some(c"mode=1777")),
        ("/run", "tmpfs", nosuid | nodev, Some(c"mode=0755")),
    ];
    for (path, fstype, flags, data) in steps {
        if path == "/dev/pts" {
            ensure_char_dev("/dev/console", 5, 1);
            ensure_char_dev("/dev/null", 1, 3);
        }
        if let Err(e) = mount_if_absent(path, fstype, flags, data, &mut done) {
            errors.push(e);
        }
    }
    let _ = std::fs::create_dir_all("/run/moonlit");
    (done, errors)
}

/// Sandbox boot (`moonlit run --sandbox`): a private copy of the host's
/// mounts with this pid namespace's /proc and this network namespace's /sys.
pub fn sandbox() -> (Vec<String>, Vec<MountError>) {
    let mut done = Vec::new();
    let mut errors = Vec::new();
    if let Err(e) = rustix::mount::mount_change(
        "/",
        MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
    ) {
        errors.push(MountError {
            what: "make private",
            path: "/".into(),
            source: e.into(),
        });
    }
    let flags = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    for (path, fstype) in [("/proc", "proc"), ("/sys", "sysfs")] {
        match rustix::mount::mount(fstype, path, fstype, flags, None) {
            Ok(()) => done.push(format!("{path} ({fstype})")),
            Err(e) => errors.push(MountError {
                what: "mount",
                path: path.into(),
                source: e.into(),
            }),
        }
    }
    (done, errors)
}

/// Makes sure fds 0, 1 and 2 are open (the kernel may start init without
/// them): /dev/console, else /dev/null.
pub fn ensure_stdio() {
    for fd in 0..3 {
        if crate::sys::fd_is_open(fd) {
            continue;
        }
        let opened = rustix::fs::open(
            "/dev/console",
            rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NOCTTY,
            rustix::fs::Mode::empty(),
        )
        .or_else(|_| {
            rustix::fs::open(
                "/dev/null",
                rustix::fs::OFlags::RDWR,
                rustix::fs::Mode::empty(),
            )
        });
        if let Ok(f) = opened {
            use std::os::fd::AsRawFd;
            if f.as_raw_fd() == fd {
                // It landed on the missing number itself: keep it open.
                std::mem::forget(f);
            } else {
                crate::sys::dup_onto(&f, fd);
            }
        }
    }
}

/// Moves the API filesystems into `root`, makes `root` the new `/` and
/// returns so the caller can exec the new init. `root` must be a mount
/// point (as switch_root(8) requires). On error nothing has moved if the
/// error names an earlier step than "move root".
pub fn switch_root(root: &str, init: &str) -> Result<(), String> {
    if !is_mountpoint(root) {
        return Err(format!("{root} is not a mount point"));
    }
    let init_in_root = format!(
        "{}/{}",
        root.trim_end_matches('/'),
        init.trim_start_matches('/')
    );
    if std::fs::metadata(&init_in_root).is_err() {
        // Follow a symlink inside the new root by hand would need a chroot;
        // accept a dangling-looking link (e.g. /sbin/init -> ../bin/moonlit).
        if std::fs::symlink_metadata(&init_in_root).is_err() {
            return Err(format!("{init} not found in {root}"));
        }
    }
    for dir in ["/dev", "/proc", "/sys", "/run"] {
        if !is_mountpoint(dir) {
            continue;
        }
        let target = format!("{}{dir}", root.trim_end_matches('/'));
        let _ = std::fs::create_dir_all(&target);
        if let Err(e) = rustix::mount::mount_move(dir, target.as_str()) {
            // Not fatal: the new init mounts what is missing.
            let _ = rustix::mount::unmount(dir, rustix::mount::UnmountFlags::DETACH);
            eprintln!("moonlit: switch_root: move {dir}: {e}");
        }
    }
    rustix::process::chdir(root).map_err(|e| format!("chdir {root}: {e}"))?;
    rustix::mount::mount_move(".", "/").map_err(|e| format!("move root {root} to /: {e}"))?;
    rustix::process::chroot(".").map_err(|e| format!("chroot: {e}"))?;
    rustix::process::chdir("/").map_err(|e| format!("chdir /: {e}"))?;
    Ok(())
}

/// The real console device (e.g. /dev/ttyS0), from
/// /sys/class/tty/console/active (its last entry is the preferred one).
pub fn console_tty() -> Option<String> {
    let active = std::fs::read_to_string("/sys/class/tty/console/active").ok()?;
    active
        .split_whitespace()
        .last()
        .map(|t| format!("/dev/{t}"))
}
