//! The end of a boot: kill what is left, unmount, sync, and the final
//! reboot(2) (from a child, as the kernel may end the caller) or, in a
//! container or user mode, an exit with a code.

use rustix::mount::{MountFlags, UnmountFlags};
use rustix::process::{Pid, Signal};

use crate::mode::Mode;

/// What the system does when it is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Power {
    Poweroff,
    Reboot,
    Halt,
}

impl Power {
    pub fn name(self) -> &'static str {
        match self {
            Power::Poweroff => "power off",
            Power::Reboot => "reboot",
            Power::Halt => "halt",
        }
    }
}

/// Signals every process but this one (or, in user mode, this one's
/// children: never the user's other processes).
pub fn signal_all(mode: Mode, sig: Signal) {
    if mode == Mode::User {
        for pid in children() {
            if let Some(p) = Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process(p, sig);
            }
        }
    } else {
        // kill(-1, sig): every process except init itself.
        let _ = rustix::process::kill_process_group(Pid::INIT, sig);
    }
}

/// Direct children of this process, from /proc.
pub fn children() -> Vec<u32> {
    let me = rustix::process::getpid().as_raw_nonzero().get() as u32;
    let mut out = Vec::new();
    if let Ok(text) = std::fs::read_to_string(format!("/proc/{me}/task/{me}/children")) {
        out.extend(
            text.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    out
}

const VIRTUAL_FS: &[&str] = &[
    "proc",
    "sysfs",
    "devtmpfs",
    "devpts",
    "cgroup",
    "cgroup2",
    "securityfs",
    "debugfs",
    "tracefs",
    "pstore",
    "bpf",
    "mqueue",
    "configfs",
    "fusectl",
    "efivarfs",
    "hugetlbfs",
    "binfmt_misc",
    "autofs",
    "rootfs",
    "ramfs",
    "tmpfs",
    "nsfs",
];

/// Unmounts real filesystems in reverse mount order; what stays busy is
/// remounted read-only, and so is the root. Returns what was done.
pub fn unmount_all() -> Vec<String> {
    let mut log = Vec::new();
    let Ok(text) = std::fs::read_to_string("/proc/self/mounts") else {
        return log;
    };
    let mounts: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| {
            let mut f = l.split(' ');
            let _src = f.next()?;
            let target = f.next()?.replace("\\040", " ");
            let fstype = f.next()?.to_string();
            Some((target, fstype))
        })
        .collect();
    for (target, fstype) in mounts.iter().rev() {
        if target == "/" || VIRTUAL_FS.contains(&fstype.as_str()) {
            continue;
        }
        match rustix::mount::unmount(target.as_str(), UnmountFlags::empty()) {
            Ok(()) => log.push(format!("unmounted {target}")),
            Err(e) => {
                let ro = rustix::mount::mount_remount(target.as_str(), MountFlags::RDONLY, "");
                log.push(format!(
                    "{target}: unmount failed ({e}), {}",
                    if ro.is_ok() {
                        "remounted read-only"
                    } else {
                        "could not remount read-only"
                    }
                ));
            }
        }
    }
    if let Some((_, fstype)) = mounts.iter().find(|(t, _)| t == "/") {
        if !VIRTUAL_FS.contains(&fstype.as_str()) {
            match rustix::mount::mount_remount("/", MountFlags::RDONLY, "") {
                Ok(()) => log.push("remounted / read-only".into()),
                Err(e) => log.push(format!("/: remount read-only failed: {e}")),
            }
        }
    }
    log
}

/// reboot(2) with `power`, made from a child process. Returns only if it failed.
pub fn reboot(power: Power) -> String {
    let cmd = match power {
        Power::Poweroff => rustix::system::RebootCommand::PowerOff,
        Power::Reboot => rustix::system::RebootCommand::Restart,
        Power::Halt => rustix::system::RebootCommand::Halt,
    };
    rustix::fs::sync();
    match crate::sys::fork_process() {
        Ok(crate::sys::Forked::Child) => {
            let code = match rustix::system::reboot(cmd) {
                Ok(()) => 0,
                Err(e) => e.raw_os_error(),
            };
            crate::sys::exit_child(code)
        }
        Ok(crate::sys::Forked::Parent(pid)) => {
            let st = nix::sys::wait::waitpid(crate::sys::nix_pid(pid), None);
            format!("reboot({}) returned: {st:?}", power.name())
        }
        Err(e) => format!("fork for reboot: {e}"),
    }
}
