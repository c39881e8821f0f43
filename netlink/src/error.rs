//! The crate's error type: every failure names the operation and the object
//! (interface, address, route, path) it was about, and carries an errno so the Lua
//! layer can hand out `err.errno`, `err.sym` and `err.EXIST`-style booleans.

use std::fmt;

/// A failed netlink (or resolv.conf) operation.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The kernel answered with an error (NLMSG_ERROR with a negative code).
    #[error("{op} {target}: {} ({}){}", os_text(*errno), errno_sym(*errno).unwrap_or("?"), ext_text(ext))]
    Kernel {
        /// What was attempted ("add address", "set mtu", ...).
        op: &'static str,
        /// The object: interface name, "10.0.0.2/24 on eth0", ...
        target: String,
        /// Positive errno.
        errno: i32,
        /// The kernel's extended-ACK message, if it sent one.
        ext: Option<String>,
    },
    /// The socket itself failed (send/recv/socket/bind).
    #[error("{op} {target}: netlink socket: {source}")]
    Socket {
        /// What was attempted.
        op: &'static str,
        /// The object.
        target: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The reply could not be decoded.
    #[error("{op} {target}: malformed netlink reply: {msg}")]
    Decode {
        /// What was attempted.
        op: &'static str,
        /// The object.
        target: String,
        /// What was wrong.
        msg: String,
    },
    /// A wait ran out of time.
    #[error("{op} {target}: timed out after {secs}s")]
    Timeout {
        /// What was awaited.
        op: &'static str,
        /// The object.
        target: String,
        /// The timeout.
        secs: f64,
    },
    /// A file operation (resolv.conf, netns file) failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was attempted.
        op: &'static str,
        /// The file.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

fn os_text(errno: i32) -> String {
    let s = std::io::Error::from_raw_os_error(errno).to_string();
    // "File exists (os error 17)" -> "File exists"
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

fn ext_text(ext: &Option<String>) -> String {
    match ext {
        Some(m) if !m.is_empty() => format!(": {m}"),
        _ => String::new(),
    }
}

impl NetError {
    /// The errno this error stands for (ETIMEDOUT for a timeout, EPROTO for a
    /// malformed reply).
    pub fn errno(&self) -> i32 {
        match self {
            NetError::Kernel { errno, .. } => *errno,
            NetError::Socket { source, .. } | NetError::Io { source, .. } => source
                .raw_os_error()
                .unwrap_or(rustix::io::Errno::IO.raw_os_error()),
            NetError::Decode { .. } => rustix::io::Errno::PROTO.raw_os_error(),
            NetError::Timeout { .. } => rustix::io::Errno::TIMEDOUT.raw_os_error(),
        }
    }

    /// The errno's symbolic name without the leading `E` ("EXIST", "NODEV").
    pub fn sym(&self) -> &'static str {
        errno_sym(self.errno())
            .map(|s| &s[1..])
            .unwrap_or("UNKNOWN")
    }

    /// Same error about another object (used when a lower layer did not know the
    /// interface name).
    pub fn with_target(mut self, t: impl fmt::Display) -> Self {
        let new = t.to_string();
        match &mut self {
            NetError::Kernel { target, .. }
            | NetError::Socket { target, .. }
            | NetError::Decode { target, .. }
            | NetError::Timeout { target, .. } => *target = new,
            NetError::Io { path, .. } => *path = new,
        }
        self
    }

    /// A kernel-style error made up locally (e.g. ENODEV for an unknown name).
    pub fn errno_err(
        op: &'static str,
        target: impl fmt::Display,
        errno: rustix::io::Errno,
    ) -> Self {
        NetError::Kernel {
            op,
            target: target.to_string(),
            errno: errno.raw_os_error(),
            ext: None,
        }
    }
}

/// `E`-prefixed symbolic name of a Linux errno, for the errors netlink returns.
pub fn errno_sym(errno: i32) -> Option<&'static str> {
    use rustix::io::Errno as E;
    const TABLE: &[(E, &str)] = &[
        (E::PERM, "EPERM"),
        (E::NOENT, "ENOENT"),
        (E::SRCH, "ESRCH"),
        (E::INTR, "EINTR"),
        (E::IO, "EIO"),
        (E::NXIO, "ENXIO"),
        (E::TOOBIG, "E2BIG"),
        (E::BADF, "EBADF"),
        (E::AGAIN, "EAGAIN"),
        (E::NOMEM, "ENOMEM"),
        (E::ACCESS, "EACCES"),
        (E::FAULT, "EFAULT"),
        (E::BUSY, "EBUSY"),
        (E::EXIST, "EEXIST"),
        (E::XDEV, "EXDEV"),
        (E::NODEV, "ENODEV"),
        (E::NOTDIR, "ENOTDIR"),
        (E::ISDIR, "EISDIR"),
        (E::INVAL, "EINVAL"),
        (E::NFILE, "ENFILE"),
        (E::MFILE, "EMFILE"),
        (E::NOSPC, "ENOSPC"),
        (E::RANGE, "ERANGE"),
        (E::DEADLK, "EDEADLK"),
        (E::NAMETOOLONG, "ENAMETOOLONG"),
        (E::NOSYS, "ENOSYS"),
        (E::NOTEMPTY, "ENOTEMPTY"),
        (E::LOOP, "ELOOP"),
        (E::NODATA, "ENODATA"),
        (E::PROTO, "EPROTO"),
        (E::MSGSIZE, "EMSGSIZE"),
        (E::PROTONOSUPPORT, "EPROTONOSUPPORT"),
        (E::OPNOTSUPP, "EOPNOTSUPP"),
        (E::AFNOSUPPORT, "EAFNOSUPPORT"),
        (E::ADDRINUSE, "EADDRINUSE"),
        (E::ADDRNOTAVAIL, "EADDRNOTAVAIL"),
        (E::NETDOWN, "ENETDOWN"),
        (E::NETUNREACH, "ENETUNREACH"),
        (E::NOBUFS, "ENOBUFS"),
        (E::TIMEDOUT, "ETIMEDOUT"),
        (E::HOSTUNREACH, "EHOSTUNREACH"),
        (E::ALREADY, "EALREADY"),
        (E::INPROGRESS, "EINPROGRESS"),
        (E::NOTSUP, "ENOTSUP"),
        (E::NOLINK, "ENOLINK"),
    ];
    TABLE
        .iter()
        .find(|(e, _)| e.raw_os_error() == errno)
        .map(|(_, s)| *s)
}
