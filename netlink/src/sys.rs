//! The crate's only `unsafe`: lending neli's raw socket fd as a `BorrowedFd`
//! (neli 0.7.5 implements `AsRawFd` but not `AsFd`).
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, BorrowedFd};

/// Borrow the fd of a neli socket for as long as the socket is borrowed.
pub(crate) fn borrow_fd<S: AsRawFd>(sock: &S) -> BorrowedFd<'_> {
    // SAFETY: the fd belongs to `sock` (neli closes it only in `Drop`), and the
    // returned borrow cannot outlive the borrow of `sock`, so the fd stays open
    // and is not reused while the `BorrowedFd` exists.
    unsafe { BorrowedFd::borrow_raw(sock.as_raw_fd()) }
}
