//! The event socket: a nonblocking NETLINK_ROUTE socket subscribed to
//! RTNLGRP_LINK, RTNLGRP_IPV4_IFADDR and RTNLGRP_IPV6_IFADDR. The init registers
//! [`EventSocket::as_fd`] in its epoll set and calls [`EventSocket::drain`] when it
//! is readable; standalone callers can block in [`EventSocket::wait`] (poll(2)).
//! It never blocks on its own and starts no thread.

use std::io::Cursor;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use neli::{
    consts::{
        rtnl::Rtm,
        socket::{Msg, NlFamily},
    },
    nl::NlPayload,
    socket::NlSocket,
    utils::Groups,
};

use crate::addr::{decode_addr, Address};
use crate::consts::*;
use crate::error::NetError;
use crate::link::{decode_link, Link};
use crate::socket::Reply;

/// One decoded notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// RTM_NEWLINK: a link appeared or changed (flags, carrier, name...).
    NewLink(Link),
    /// RTM_DELLINK: a link went away.
    DelLink(Link),
    /// RTM_NEWADDR (also sent when IPv6 DAD completes).
    NewAddr(Address),
    /// RTM_DELADDR
    DelAddr(Address),
    /// The kernel dropped notifications (ENOBUFS): re-read the state you track.
    Overrun,
}

/// Nonblocking rtnetlink multicast listener for link and address changes.
pub struct EventSocket {
    sock: NlSocket,
    buf: Vec<u8>,
}

fn io_err(op: &'static str, e: std::io::Error) -> NetError {
    NetError::Socket {
        op,
        target: "event socket".into(),
        source: e,
    }
}

impl EventSocket {
    /// `socket(AF_NETLINK, SOCK_RAW|SOCK_CLOEXEC, NETLINK_ROUTE)`, bind, join the
    /// link and address groups (NETLINK_ADD_MEMBERSHIP), set O_NONBLOCK.
    pub fn new() -> Result<Self, NetError> {
        let groups = Groups::new_groups(&[RTNLGRP_LINK, RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR]);
        let sock =
            NlSocket::connect(NlFamily::Route, None, groups).map_err(|e| io_err("open", e))?;
        sock.nonblock().map_err(|e| io_err("set nonblocking", e))?;
        // A bigger queue makes overruns (ENOBUFS) rarer during bursts; best effort.
        let _ = sock.set_recv_buffer_size(1 << 20);
        Ok(EventSocket {
            sock,
            buf: vec![0; 64 * 1024],
        })
    }

    /// Read and decode every pending notification; returns at once (possibly
    /// empty) when nothing is queued.
    pub fn drain(&mut self) -> Result<Vec<Event>, NetError> {
        let mut out = Vec::new();
        loop {
            let n = match self.sock.recv(&mut self.buf[..], Msg::empty()) {
                Ok((n, _)) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(out),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOBUFS.raw_os_error()) => {
                    out.push(Event::Overrun);
                    continue;
                }
                Err(e) => return Err(io_err("receive", e)),
            };
            if n == 0 {
                return Ok(out);
            }
            decode_datagram(&self.buf[..n], &mut out)?;
        }
    }

    /// poll(2) until readable or `timeout` (None: forever). True if readable.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<bool, NetError> {
        use rustix::event::{poll, PollFd, PollFlags, Timespec};
        let ts = timeout.map(|d| Timespec {
            tv_sec: d.as_secs() as i64,
            tv_nsec: d.subsec_nanos() as _,
        });
        let fd = self.as_fd();
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        loop {
            match poll(&mut fds, ts.as_ref()) {
                Ok(n) => return Ok(n > 0),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(io_err("poll", e.into())),
            }
        }
    }
}

impl AsFd for EventSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        crate::sys::borrow_fd(&self.sock)
    }
}

/// Decode one multicast datagram (several messages) into events.
pub(crate) fn decode_datagram(bytes: &[u8], out: &mut Vec<Event>) -> Result<(), NetError> {
    let bad = |msg: String| NetError::Decode {
        op: "decode event",
        target: "event socket".into(),
        msg,
    };
    let mut c = Cursor::new(bytes);
    while (c.position() as usize) < bytes.len() {
        let msg = crate::socket::next_message(&mut c).map_err(|m| bad(m.msg))?;
        let ty = u16::from(*msg.nl_type());
        if ty == NLMSG_OVERRUN {
            out.push(Event::Overrun);
            continue;
        }
        let NlPayload::Payload(p) = msg.nl_payload() else {
            continue;
        };
        let r = Reply {
            ty,
            payload: p.as_ref().to_vec(),
        };
        let ev = match Rtm::from(ty) {
            Rtm::Newlink => Some(Event::NewLink(decode_link(&r).map_err(bad)?)),
            Rtm::Dellink => Some(Event::DelLink(decode_link(&r).map_err(bad)?)),
            Rtm::Newaddr => decode_addr(&r).map_err(bad)?.map(Event::NewAddr),
            Rtm::Deladdr => decode_addr(&r).map_err(bad)?.map(Event::DelAddr),
            _ => None,
        };
        out.extend(ev);
    }
    Ok(())
}
