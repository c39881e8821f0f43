//! Borrowing raw fd numbers that came from scripts.
#![allow(unsafe_code)]

use std::os::fd::BorrowedFd;

/// Borrows a descriptor number given by a script. The number may be invalid:
/// every use of the result is a system call that then fails with EBADF, and
/// the borrow is never used to close anything.
pub fn borrow(fd: i32) -> BorrowedFd<'static> {
    // SAFETY: BorrowedFd requires an open fd for its lifetime; an invalid or
    // closed number only makes the syscalls it is passed to fail with EBADF
    // (the kernel checks), and callers only dup or query it immediately.
    unsafe { BorrowedFd::borrow_raw(fd) }
}
