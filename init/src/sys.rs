//! The init's few calls that Rust cannot make safe: fork, and exec of a
//! rescue program. Everything else goes through rustix and nix's safe APIs.
#![allow(unsafe_code)]

use std::os::fd::RawFd;

use nix::unistd::{fork, ForkResult, Pid};

/// What `fork_process` returned in this process.
pub enum Forked {
    Parent(u32),
    Child,
}

/// fork(2). moonlit is single-threaded, which is what makes this sound.
pub fn fork_process() -> std::io::Result<Forked> {
    // SAFETY: moonlit never starts a thread (PID 1 is one thread, one loop),
    // so the child is a faithful copy with no lock held by a vanished thread;
    // callers only make system calls or exec in the child before `_exit`.
    match unsafe { fork() } {
        Ok(ForkResult::Parent { child }) => Ok(Forked::Parent(child.as_raw() as u32)),
        Ok(ForkResult::Child) => Ok(Forked::Child),
        Err(e) => Err(e.into()),
    }
}

/// Ends a forked child at once, without running the parent's destructors
/// or flushing its buffers.
pub fn exit_child(code: i32) -> ! {
    std::process::exit(code)
}

/// The pid as nix wants it.
pub fn nix_pid(pid: u32) -> Pid {
    Pid::from_raw(pid as i32)
}

/// Whether descriptor number `fd` is open.
pub fn fd_is_open(fd: std::os::fd::RawFd) -> bool {
    // SAFETY: the borrow only lives for one fcntl(F_GETFD), which fails with
    // EBADF if the number is not open; nothing is closed through it.
    let b = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    rustix::io::fcntl_getfd(b).is_ok()
}

/// A close-on-exec duplicate (numbered 3 or above) of descriptor number
/// `fd`, which Lua gave and may be closed or invalid (then EBADF).
pub fn dup_raw(fd: RawFd) -> rustix::io::Result<std::os::fd::OwnedFd> {
    // SAFETY: the borrow only lives for one fcntl(F_DUPFD_CLOEXEC), which
    // fails with EBADF if the number is not open; nothing is closed or read
    // through it.
    let b = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    rustix::io::fcntl_dupfd_cloexec(b, 3)
}

/// dup2(src, target): makes descriptor number `target` (0, 1 or 2 here) a
/// copy of `src`, without closing anything else.
pub fn dup_onto(src: &std::os::fd::OwnedFd, target: std::os::fd::RawFd) {
    use std::os::fd::FromRawFd;
    // SAFETY: dup2 needs the target as an OwnedFd; we build one for the
    // number, let dup2 replace what it refers to, and forget it so Rust never
    // closes the descriptor we just set up.
    let mut t = unsafe { std::os::fd::OwnedFd::from_raw_fd(target) };
    let _ = rustix::io::dup2(src, &mut t);
    std::mem::forget(t);
}

/// Replaces this process with `argv` (a rescue shell). Returns only on failure.
pub fn exec(argv: &[&str]) -> std::io::Error {
    let err = std::os::unix::process::CommandExt::exec(
        std::process::Command::new(argv[0]).args(&argv[1..]),
    );
    err
}

/// Takes ownership of a descriptor number handed over across a re-exec.
pub fn own_fd(fd: RawFd) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: the numbers come from the handover document written by the
    // previous image, which kept exactly these descriptors open across
    // execve; each is adopted once, so nothing else owns or closes it.
    unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }
}

/// The descriptor numbers open in this process (from /proc/self/fd; the
/// directory's own descriptor is in the list but closed by then).
fn open_fds() -> Vec<RawFd> {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
                .collect()
        })
        .unwrap_or_default()
}

/// Marks every descriptor >= 3 close-on-exec except `keep`, which lose the
/// flag. Returns (fd, had CLOEXEC) for every fd in `keep`, to undo.
pub fn set_cloexec_except(keep: &[RawFd]) -> Vec<(RawFd, bool)> {
    use rustix::io::FdFlags;
    let mut previous = Vec::new();
    let fds = open_fds();
    for fd in fds {
        if fd < 3 || !fd_is_open(fd) {
            continue;
        }
        // SAFETY: `fd` is open (checked just above; single-threaded) and
        // the borrow lives for one fcntl call.
        let b = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        if keep.contains(&fd) {
            let had = rustix::io::fcntl_getfd(b)
                .map(|f| f.contains(FdFlags::CLOEXEC))
                .unwrap_or(false);
            previous.push((fd, had));
            let _ = rustix::io::fcntl_setfd(b, FdFlags::empty());
        } else {
            let _ = rustix::io::fcntl_setfd(b, FdFlags::CLOEXEC);
        }
    }
    previous
}

/// Puts back the close-on-exec flags `set_cloexec_except` changed on the kept fds.
pub fn restore_cloexec(previous: &[(RawFd, bool)]) {
    for (fd, had) in previous {
        if *had && fd_is_open(*fd) {
            // SAFETY: as in `set_cloexec_except`.
            let b = unsafe { std::os::fd::BorrowedFd::borrow_raw(*fd) };
            let _ = rustix::io::fcntl_setfd(b, rustix::io::FdFlags::CLOEXEC);
        }
    }
}

/// execv(2) without touching the signal mask or dispositions (the new image
/// blocks signals itself; pending ones wait for it). Returns only on failure.
pub fn execv(path: &str, argv: &[&str]) -> std::io::Error {
    let to_c = |s: &str| {
        std::ffi::CString::new(s)
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))
    };
    let p = match to_c(path) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let args: Result<Vec<std::ffi::CString>, _> = argv.iter().map(|a| to_c(a)).collect();
    match args {
        Ok(a) => match nix::unistd::execv(&p, &a) {
            Ok(never) => match never {},
            Err(e) => e.into(),
        },
        Err(e) => e,
    }
}

/// Closes every descriptor >= 3 this process inherited (a shell's or a
/// test runner's): an init holds only what it opened itself.
pub fn close_inherited_fds() {
    let fds = open_fds();
    for fd in fds {
        if fd >= 3 && fd_is_open(fd) {
            // Taking ownership closes it when dropped.
            drop(own_fd(fd));
        }
    }
}

/// For the command-line client: SIGPIPE back to its default, so
/// `moonlit ctl status | head` ends quietly like other tools.
pub fn default_sigpipe() {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: installs the default disposition (no handler code runs);
    // called once at the start of a client command, single-threaded.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}

/// Drops this process's page-table entries for its own binary's read-only
/// mappings (the code and constants, `r-xp` and `r--p` mappings of the
/// executable's inode in /proc/self/maps), as the kernel frees its
/// `__init` sections after boot: what the idle loop runs faults back in
/// from the page cache, the boot-only code does not. The linker places the
/// loop's functions together (init/link-order.txt), so that faulting back
/// is a few clusters, not all of `.text` (docs/footprint.md). Returns the
/// bytes of mappings dropped. Best effort: any failure leaves them mapped.
pub fn drop_binary_pages() -> usize {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let Ok(mut file) = std::fs::File::open("/proc/self/exe") else {
        return 0;
    };
    let Ok(exe) = file.metadata() else {
        return 0;
    };
    // Only a fixed-address executable (ELF e_type ET_EXEC = 2): in a
    // position-independent one the loader relocates the RELRO pages and
    // makes them read-only, and dropping those private copies would bring
    // back the file's unrelocated bytes.
    let mut head = [0u8; 18];
    let is_exec = file.read_exact(&mut head).is_ok()
        && head[..4] == *b"\x7fELF"
        && u16::from_le_bytes([head[16], head[17]]) == 2;
    if !is_exec {
        return 0;
    }
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return 0;
    };
    let mut dropped = 0;
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (Some(range), Some(perms), Some(_off), Some(_dev), Some(inode)) =
            (f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        if (perms != "r-xp" && perms != "r--p") || inode.parse::<u64>().ok() != Some(exe.ino()) {
            continue;
        }
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) else {
            continue;
        };
        if b <= a {
            continue;
        }
        // SAFETY: the range is one whole mapping of the kernel's own list,
        // read-only and backed by the executable's file, never written: the
        // binary is not position-independent (checked above; build-musl.sh
        // checks it is static), so nothing relocates it at start and no
        // page of it is a private copy. MADV_DONTNEED on such a mapping only unmaps pages;
        // the next access maps the same page-cache contents again, so no
        // Rust value and no code changes under anyone's feet.
        let r =
            unsafe { rustix::mm::madvise(a as *mut _, b - a, rustix::mm::Advice::LinuxDontNeed) };
        if r.is_ok() {
            dropped += b - a;
        }
    }
    dropped
}

#[cfg(test)]
mod tests {
    fn kb(field: &str) -> u64 {
        let s = std::fs::read_to_string("/proc/self/status").unwrap();
        s.lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
    }

    #[test]
    fn dropping_the_binary_pages_unmaps_them_and_the_code_still_runs() {
        // The test binary's own pages: file-backed (RssFile) or, on tmpfs,
        // shared memory (RssShmem).
        let before = kb("RssFile:") + kb("RssShmem:");
        let dropped = super::drop_binary_pages();
        let after = kb("RssFile:") + kb("RssShmem:");
        assert!(dropped > 0, "no mapping of /proc/self/exe found to drop");
        assert!(
            after < before,
            "resident file pages {before} kB before, {after} kB after dropping {dropped} bytes"
        );
        // The code faults back in: this still computes.
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(v.iter().sum::<u64>(), 5050);
    }
}
