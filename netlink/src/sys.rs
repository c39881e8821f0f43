//! The crate's only `unsafe`: lending neli's raw socket fd as a `BorrowedFd`
//! (neli 0.7.5 implements `AsRawFd` but not `AsFd`), and the AF_PACKET
//! socket address of the DHCP client's ARP probes (rustix has none).
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, BorrowedFd};

/// Borrow the fd of a neli socket for as long as the socket is borrowed.
pub(crate) fn borrow_fd<S: AsRawFd>(sock: &S) -> BorrowedFd<'_> {
    // SAFETY: the fd belongs to `sock` (neli closes it only in `Drop`), and the
    // returned borrow cannot outlive the borrow of `sock`, so the fd stays open
    // and is not reused while the `BorrowedFd` exists.
    unsafe { BorrowedFd::borrow_raw(sock.as_raw_fd()) }
}

/// `struct sockaddr_ll` (linux/if_packet.h), which rustix has no type for.
#[repr(C)]
#[derive(Clone, Copy)]
struct SockaddrLl {
    family: u16,
    /// Network byte order.
    protocol: u16,
    ifindex: i32,
    hatype: u16,
    pkttype: u8,
    halen: u8,
    addr: [u8; 8],
}

/// An AF_PACKET address: an interface, an EtherType and (for sending) the
/// destination MAC.
#[derive(Clone, Copy)]
pub struct PacketAddr(SockaddrLl);

impl PacketAddr {
    pub fn new(ifindex: u32, ethertype: u16, dest: [u8; 6]) -> PacketAddr {
        let mut addr = [0u8; 8];
        addr[..6].copy_from_slice(&dest);
        PacketAddr(SockaddrLl {
            family: rustix::net::AddressFamily::PACKET.as_raw(),
            protocol: ethertype.to_be(),
            ifindex: ifindex as i32,
            hatype: 0,
            pkttype: 0,
            halen: 6,
            addr,
        })
    }
}

// SAFETY: `with_sockaddr` passes a pointer to a live, fully initialized
// `SockaddrLl`, laid out as the kernel's `struct sockaddr_ll` (repr(C), same
// field types and order, 20 bytes), with its exact length and sll_family
// AF_PACKET; the pointer is used only during the call.
unsafe impl rustix::net::addr::SocketAddrArg for PacketAddr {
    unsafe fn with_sockaddr<R>(
        &self,
        f: impl FnOnce(
            *const rustix::net::addr::SocketAddrOpaque,
            rustix::net::addr::SocketAddrLen,
        ) -> R,
    ) -> R {
        f(
            (&self.0 as *const SockaddrLl).cast(),
            std::mem::size_of::<SockaddrLl>() as rustix::net::addr::SocketAddrLen,
        )
    }
}

const _: () = assert!(std::mem::size_of::<SockaddrLl>() == 20);
