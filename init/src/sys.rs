//! The init's few calls that Rust cannot make safe: fork, and exec of a
//! rescue program. Everything else goes through rustix and nix's safe APIs.
#![allow(unsafe_code)]

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
