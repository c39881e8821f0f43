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

fn mount_if_absent(path: &str, fstype: &str, flags: MountFlags, data: Option<&CStr>, out: &mut Vec<String>) -> Result<(), MountError> {
    if is_mountpoint(path) {
        return Ok(());
    }
    if let Err(e) = std::fs::create_dir_all(path) {
        return Err(MountError { what: "mkdir", path: path.into(), source: e });
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
        ("/dev/pts", "devpts", nosuid | noexec, Some(c"gid=5,mode=0620,ptmxmode=0666")),
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
    if let Err(e) = rustix::mount::mount_change("/", MountPropagationFlags::REC | MountPropagationFlags::PRIVATE) {
        errors.push(MountError { what: "make private", path: "/".into(), source: e.into() });
    }
    let flags = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    for (path, fstype) in [("/proc", "proc"), ("/sys", "sysfs")] {
        match rustix::mount::mount(fstype, path, fstype, flags, None) {
            Ok(()) => done.push(format!("{path} ({fstype})")),
            Err(e) => errors.push(MountError { what: "mount", path: path.into(), source: e.into() }),
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
        let opened = rustix::fs::open("/dev/console", rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NOCTTY, rustix::fs::Mode::empty())
            .or_else(|_| rustix::fs::open("/dev/null", rustix::fs::OFlags::RDWR, rustix::fs::Mode::empty()));
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
