//! The only module of this crate with `unsafe`: borrowing fd numbers that Lua
//! hands us, and the few syscalls rustix has no (untyped enough) wrapper for
//! (mount with NULL arguments, swapon/swapoff, klogctl, integer ioctls and socket
//! options, setns/unshare with arbitrary flags, dup2/dup3 onto a plain number,
//! kill with any pid, truncate, reboot).
//!
//! Every wrapper here returns `rustix::io::Errno` on failure so the call sites
//! treat all errors alike. Does not own: argument parsing or Lua values.
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::os::fd::BorrowedFd;
use std::ptr;

use nix::libc;
use rustix::io::Errno;

fn last() -> Errno {
    Errno::from_raw_os_error(
        std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO),
    )
}

fn cvt(r: libc::c_int) -> Result<libc::c_int, Errno> {
    if r < 0 {
        Err(last())
    } else {
        Ok(r)
    }
}

fn opt_ptr(s: Option<&CStr>) -> *const libc::c_char {
    s.map_or(ptr::null(), CStr::as_ptr)
}

/// Borrows an fd number for one call. Returns EBADF for negative numbers.
///
/// The number comes from Lua and may not be open; the kernel then answers EBADF.
pub fn borrow<'a>(fd: i32) -> Result<BorrowedFd<'a>, Errno> {
    if fd < 0 {
        return Err(Errno::BADF);
    }
    // SAFETY: fd is not -1 (checked above). The borrow only lives for the syscall
    // the caller makes next on this single thread; a number that is not open
    // makes that syscall fail with EBADF, nothing else reads through it.
    Ok(unsafe { BorrowedFd::borrow_raw(fd) })
}

/// `close(fd)`, close(2).
pub fn close(fd: i32) -> Result<(), Errno> {
    // SAFETY: closing a number owned by the caller (an Fd object being closed, or
    // a plain number the script asked to close); no Rust object owns it.
    cvt(unsafe { libc::close(fd) }).map(drop)
}

/// `dup2(old, new)`, dup2(2).
pub fn dup2(old: i32, new: i32) -> Result<i32, Errno> {
    // SAFETY: plain integer syscall; the new number's previous owner (if any) is
    // the script's business, as with dup2 in C.
    cvt(unsafe { libc::dup2(old, new) })
}

/// `dup3(old, new, flags)`, dup3(2).
pub fn dup3(old: i32, new: i32, flags: i32) -> Result<i32, Errno> {
    // SAFETY: as dup2.
    cvt(unsafe { libc::dup3(old, new, flags) })
}

/// `mount(source, target, fstype, flags, data)`, mount(2), NULLs allowed.
pub fn mount(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: u64,
    data: Option<&CStr>,
) -> Result<(), Errno> {
    // SAFETY: all pointers are NUL-terminated strings or NULL, alive for the call.
    cvt(unsafe {
        libc::mount(
            opt_ptr(source),
            target.as_ptr(),
            opt_ptr(fstype),
            flags as libc::c_ulong,
            opt_ptr(data).cast(),
        )
    })
    .map(drop)
}

/// `swapon(path, flags)`, swapon(2).
pub fn swapon(path: &CStr, flags: i32) -> Result<(), Errno> {
    // SAFETY: path is a NUL-terminated string alive for the call.
    cvt(unsafe { libc::swapon(path.as_ptr(), flags) }).map(drop)
}

/// `swapoff(path)`, swapoff(2).
pub fn swapoff(path: &CStr) -> Result<(), Errno> {
    // SAFETY: path is a NUL-terminated string alive for the call.
    cvt(unsafe { libc::swapoff(path.as_ptr()) }).map(drop)
}

/// `klogctl(type, buf, len)`, syslog(2). `buf` is written up to its length.
pub fn klogctl(kind: i32, buf: Option<&mut [u8]>, arg: i32) -> Result<i32, Errno> {
    let (p, len) = match buf {
        Some(b) => (
            b.as_mut_ptr().cast::<libc::c_char>(),
            b.len() as libc::c_int,
        ),
        None => (ptr::null_mut(), arg),
    };
    // SAFETY: p is NULL or a buffer of exactly len bytes owned by the caller.
    cvt(unsafe { libc::klogctl(kind, p, len) })
}

/// `ioctl(fd, request, arg)` with an integer argument, ioctl(2).
pub fn ioctl_int(fd: BorrowedFd<'_>, request: u64, arg: u64) -> Result<i32, Errno> {
    use std::os::fd::AsRawFd;
    // SAFETY: only requests that take an integer by value are routed here by the
    // caller (TIOCSCTTY, TIOCNOTTY, FIONBIO-style, or a number the script chose).
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), request as _, arg as libc::c_ulong) })
}

/// `ioctl(fd, request, &int)`: requests that write one int (FIONREAD).
pub fn ioctl_get_int(fd: BorrowedFd<'_>, request: u64) -> Result<i32, Errno> {
    use std::os::fd::AsRawFd;
    let mut v: libc::c_int = 0;
    // SAFETY: v is a valid, writable int for the duration of the call.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), request as _, &mut v as *mut libc::c_int) })?;
    Ok(v)
}

/// `setsockopt(fd, level, name, &int, sizeof int)`.
pub fn setsockopt_int(fd: BorrowedFd<'_>, level: i32, name: i32, v: i32) -> Result<(), Errno> {
    use std::os::fd::AsRawFd;
    // SAFETY: the option value is a valid int of the length passed.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// `getsockopt(fd, level, name, &int, &len)`.
pub fn getsockopt_int(fd: BorrowedFd<'_>, level: i32, name: i32) -> Result<i32, Errno> {
    use std::os::fd::AsRawFd;
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: v and len are valid and writable; len says how much v can take.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    })?;
    Ok(v)
}

/// `setns(fd, nstype)`, setns(2).
pub fn setns(fd: BorrowedFd<'_>, nstype: i32) -> Result<(), Errno> {
    use std::os::fd::AsRawFd;
    // SAFETY: plain syscall on an fd; the Lua state runs on one thread.
    cvt(unsafe { libc::setns(fd.as_raw_fd(), nstype) }).map(drop)
}

/// `unshare(flags)`, unshare(2).
pub fn unshare(flags: i32) -> Result<(), Errno> {
    // SAFETY: moonlit runs Lua on one thread (no thread can observe an unshared
    // fd table, the hazard rustix marks unshare unsafe for).
    cvt(unsafe { libc::unshare(flags) }).map(drop)
}

/// `kill(pid, sig)`, kill(2), any pid (negative: a process group, -1: all).
pub fn kill(pid: i32, sig: i32) -> Result<(), Errno> {
    // SAFETY: plain integer syscall.
    cvt(unsafe { libc::kill(pid, sig) }).map(drop)
}

/// `truncate(path, len)`, truncate(2).
pub fn truncate(path: &CStr, len: i64) -> Result<(), Errno> {
    // SAFETY: path is a NUL-terminated string alive for the call.
    cvt(unsafe { libc::truncate(path.as_ptr(), len) }).map(drop)
}

/// `reboot(cmd)`, reboot(2). The caller checks it is PID 1.
pub fn reboot(cmd: i32) -> Result<(), Errno> {
    // SAFETY: plain integer syscall.
    cvt(unsafe { libc::reboot(cmd) }).map(drop)
}

/// A signal number as rustix's type (1..=64), for the calls that take one.
pub fn signal(n: i32) -> Option<rustix::process::Signal> {
    if (1..=64).contains(&n) {
        // SAFETY: n is a valid Linux signal number; the rustix type only wraps it.
        Some(unsafe { rustix::process::Signal::from_raw_unchecked(n) })
    } else {
        None
    }
}

/// `clock_gettime(clock)`, clock_gettime(2), any clock id.
pub fn clock_gettime(clock: i32) -> Result<(i64, i64), Errno> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid, writable timespec for the duration of the call.
    cvt(unsafe { libc::clock_gettime(clock, &mut ts) })?;
    Ok((ts.tv_sec, ts.tv_nsec))
}

/// `prlimit(pid, resource, new, &old)`, prlimit(2); pid 0 is the caller.
/// Limits are (soft, hard) with `u64::MAX` for RLIM_INFINITY.
pub fn prlimit(pid: i32, resource: i32, new: Option<(u64, u64)>) -> Result<(u64, u64), Errno> {
    let newl = new.map(|(c, m)| libc::rlimit64 {
        rlim_cur: c,
        rlim_max: m,
    });
    let mut old = libc::rlimit64 {
        rlim_cur: 0,
        rlim_max: 0,
    };
    let newp = newl
        .as_ref()
        .map_or(ptr::null(), |l| l as *const libc::rlimit64);
    // SAFETY: newp is NULL or points to a live rlimit64; old is writable.
    cvt(unsafe { libc::prlimit64(pid, resource as _, newp, &mut old) })?;
    Ok((old.rlim_cur, old.rlim_max))
}
