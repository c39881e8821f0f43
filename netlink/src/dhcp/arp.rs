//! ARP for address conflict detection (RFC 5227): the probe a DHCP client
//! sends for an offered address before using it, and the test of what it
//! hears. The packets are the ARP payload of an AF_PACKET SOCK_DGRAM socket
//! (the kernel adds the Ethernet header): [`socket`] opens one on an
//! interface, [`send_broadcast`] sends on it; the init's loop owns it.

use std::net::Ipv4Addr;
use std::os::fd::{AsFd, OwnedFd};

use crate::sys::PacketAddr;

/// A nonblocking, close-on-exec AF_PACKET datagram socket receiving the
/// ARP packets of interface `ifindex` (and seeing its own outgoing ones).
pub fn socket(ifindex: u32) -> std::io::Result<OwnedFd> {
    use rustix::net::{AddressFamily, Protocol, SocketFlags, SocketType};
    let proto = std::num::NonZeroU32::new(u32::from(ETH_P_ARP.to_be())).map(Protocol::from_raw);
    let s = rustix::net::socket_with(
        AddressFamily::PACKET,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        proto,
    )?;
    rustix::net::bind(&s, &PacketAddr::new(ifindex, ETH_P_ARP, [0; 6]))?;
    Ok(s)
}

/// Sends `pkt` to the link's broadcast address.
pub fn send_broadcast(s: impl AsFd, ifindex: u32, pkt: &[u8]) -> std::io::Result<()> {
    rustix::net::sendto(
        s,
        pkt,
        rustix::net::SendFlags::empty(),
        &PacketAddr::new(ifindex, ETH_P_ARP, [0xff; 6]),
    )?;
    Ok(())
}

/// EtherType of ARP.
pub const ETH_P_ARP: u16 = 0x0806;
/// An ARP packet for Ethernet and IPv4.
pub const LEN: usize = 28;

pub const OP_REQUEST: u16 = 1;
pub const OP_REPLY: u16 = 2;

/// A decoded Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arp {
    pub op: u16,
    pub sender_mac: [u8; 6],
    pub sender_ip: Ipv4Addr,
    pub target_mac: [u8; 6],
    pub target_ip: Ipv4Addr,
}

impl Arp {
    /// An ARP probe (RFC 5227 2.1.1): a request for `target` from sender
    /// address 0.0.0.0, so that no host updates its cache from it.
    pub fn probe(mac: [u8; 6], target: Ipv4Addr) -> Arp {
        Arp {
            op: OP_REQUEST,
            sender_mac: mac,
            sender_ip: Ipv4Addr::UNSPECIFIED,
            target_mac: [0; 6],
            target_ip: target,
        }
    }

    /// An ARP announcement (RFC 5227 2.3): a request with sender and target
    /// both the address now in use.
    pub fn announce(mac: [u8; 6], ip: Ipv4Addr) -> Arp {
        Arp {
            op: OP_REQUEST,
            sender_mac: mac,
            sender_ip: ip,
            target_mac: [0; 6],
            target_ip: ip,
        }
    }

    pub fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0..2].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
        b[2..4].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4
        b[4] = 6;
        b[5] = 4;
        b[6..8].copy_from_slice(&self.op.to_be_bytes());
        b[8..14].copy_from_slice(&self.sender_mac);
        b[14..18].copy_from_slice(&self.sender_ip.octets());
        b[18..24].copy_from_slice(&self.target_mac);
        b[24..28].copy_from_slice(&self.target_ip.octets());
        b
    }

    /// None for anything but an Ethernet/IPv4 request or reply.
    pub fn decode(b: &[u8]) -> Option<Arp> {
        if b.len() < LEN || b[0..2] != [0, 1] || b[2..4] != [8, 0] || b[4] != 6 || b[5] != 4 {
            return None;
        }
        let op = u16::from_be_bytes([b[6], b[7]]);
        if op != OP_REQUEST && op != OP_REPLY {
            return None;
        }
        let mac = |i: usize| {
            let mut m = [0u8; 6];
            m.copy_from_slice(&b[i..i + 6]);
            m
        };
        let ip = |i: usize| Ipv4Addr::new(b[i], b[i + 1], b[i + 2], b[i + 3]);
        Some(Arp {
            op,
            sender_mac: mac(8),
            sender_ip: ip(14),
            target_mac: mac(18),
            target_ip: ip(24),
        })
    }

    /// Whether this packet, heard while probing `probed` from `own_mac`,
    /// shows that another host uses (or is probing for) the address: any
    /// ARP packet from it as sender, or another host's probe for it (RFC
    /// 5227 2.1.1). Our own packets (as an AF_PACKET socket sees outgoing
    /// ones too) never conflict.
    pub fn conflicts(&self, own_mac: [u8; 6], probed: Ipv4Addr) -> bool {
        if self.sender_mac == own_mac {
            return false;
        }
        self.sender_ip == probed
            || (self.op == OP_REQUEST
                && self.sender_ip.is_unspecified()
                && self.target_ip == probed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const OTHER: [u8; 6] = [2, 0, 0, 0, 0, 2];
    const IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);

    #[test]
    fn probe_round_trips_and_has_the_rfc_5227_shape() {
        let p = Arp::probe(ME, IP).encode();
        assert_eq!(
            &p[..8],
            &[0, 1, 8, 0, 6, 4, 0, 1],
            "Ethernet, IPv4, request"
        );
        assert_eq!(&p[14..18], &[0, 0, 0, 0], "sender address 0.0.0.0");
        assert_eq!(&p[18..24], &[0; 6], "target MAC zero");
        assert_eq!(Arp::decode(&p), Some(Arp::probe(ME, IP)));
        assert_eq!(Arp::decode(&p[..20]), None);
        let mut rarp = p;
        rarp[7] = 3;
        assert_eq!(Arp::decode(&rarp), None);
    }

    #[test]
    fn what_conflicts() {
        // another host answers for the address, or announces it
        let reply = Arp {
            op: OP_REPLY,
            sender_mac: OTHER,
            sender_ip: IP,
            target_mac: ME,
            target_ip: Ipv4Addr::UNSPECIFIED,
        };
        assert!(reply.conflicts(ME, IP));
        assert!(Arp::announce(OTHER, IP).conflicts(ME, IP));
        // another host probes for it at the same time
        assert!(Arp::probe(OTHER, IP).conflicts(ME, IP));
        // our own probe, seen going out; other addresses; others' requests
        // for it from a real address (they merely ask who has it)
        assert!(!Arp::probe(ME, IP).conflicts(ME, IP));
        assert!(!Arp::announce(OTHER, Ipv4Addr::new(10, 0, 2, 16)).conflicts(ME, IP));
        let ask = Arp {
            op: OP_REQUEST,
            sender_mac: OTHER,
            sender_ip: Ipv4Addr::new(10, 0, 2, 2),
            target_mac: [0; 6],
            target_ip: IP,
        };
        assert!(!ask.conflicts(ME, IP));
    }
}
