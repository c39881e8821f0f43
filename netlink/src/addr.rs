//! IP addresses on links: the `ip/prefix` type [`IpNet`], listing, adding,
//! replacing and deleting (RTM_NEWADDR/DELADDR/GETADDR), IPv4 and IPv6.

use std::fmt;
use std::io::Cursor;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use neli::{
    consts::{
        nl::NlmF,
        rtnl::{IfaF, RtAddrFamily, RtScope, Rtm},
    },
    rtnl::{Ifaddrmsg, IfaddrmsgBuilder},
    FromBytesWithInput,
};
use serde::{Deserialize, Serialize};

use crate::consts::*;
use crate::error::NetError;
use crate::socket::{c_str, ne_u32, Attrs, Handle, Reply};

/// An address with a prefix length: "10.0.2.15/24", "fd00::1/64".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct IpNet {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl IpNet {
    /// Build, checking the prefix against the family.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Self> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(IpNet { addr, prefix })
    }
    /// AF_INET or AF_INET6.
    pub fn family(&self) -> u8 {
        if self.addr.is_ipv4() {
            AF_INET
        } else {
            AF_INET6
        }
    }
    /// The network part (host bits cleared): 10.0.2.15/24 -> 10.0.2.0/24.
    pub fn network(&self) -> IpNet {
        match self.addr {
            IpAddr::V4(a) => {
                let m = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - self.prefix)
                };
                IpNet {
                    addr: IpAddr::V4(Ipv4Addr::from(u32::from(a) & m)),
                    prefix: self.prefix,
                }
            }
            IpAddr::V6(a) => {
                let m = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - self.prefix)
                };
                IpNet {
                    addr: IpAddr::V6(Ipv6Addr::from(u128::from(a) & m)),
                    prefix: self.prefix,
                }
            }
        }
    }
    /// IPv4 broadcast of this prefix (None for IPv6 and for /31, /32).
    pub fn broadcast(&self) -> Option<Ipv4Addr> {
        match self.addr {
            IpAddr::V4(a) if self.prefix <= 30 => {
                let host = if self.prefix == 0 {
                    u32::MAX
                } else {
                    u32::MAX >> self.prefix
                };
                Some(Ipv4Addr::from(u32::from(a) | host))
            }
            _ => None,
        }
    }
    /// IPv6 link-local (fe80::/10) or IPv4 169.254/16.
    pub fn is_link_local(&self) -> bool {
        match self.addr {
            IpAddr::V4(a) => a.is_link_local(),
            IpAddr::V6(a) => (a.segments()[0] & 0xffc0) == 0xfe80,
        }
    }
    /// 127.0.0.0/8 or ::1.
    pub fn is_loopback(&self) -> bool {
        self.addr.is_loopback()
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Why an `ip/prefix` string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad address {0:?}: expected \"ip/prefix\" like \"10.0.2.15/24\" or \"fd00::1/64\"")]
pub struct BadIpNet(pub String);

impl FromStr for IpNet {
    type Err = BadIpNet;
    /// "a.b.c.d/n", "x::y/n", or a bare address (host prefix /32, /128).
    fn from_str(s: &str) -> Result<Self, BadIpNet> {
        let bad = || BadIpNet(s.to_string());
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a.parse().map_err(|_| bad())?;
        let prefix = match p {
            Some(p) => {
                if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                p.parse::<u8>().map_err(|_| bad())?
            }
            None => {
                if addr.is_ipv4() {
                    32
                } else {
                    128
                }
            }
        };
        IpNet::new(addr, prefix).ok_or_else(bad)
    }
}

/// An address as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    /// ifindex of the link
    pub index: u32,
    /// address and prefix (IFA_LOCAL for IPv4, IFA_ADDRESS for IPv6)
    pub net: IpNet,
    /// IFA_BROADCAST
    pub broadcast: Option<Ipv4Addr>,
    /// IFA_ADDRESS when it differs from the local address (point-to-point peer)
    pub peer: Option<IpAddr>,
    /// ifa_scope
    pub scope: u8,
    /// IFA_F_* (from IFA_FLAGS when present)
    pub flags: u32,
    /// IFA_LABEL
    pub label: Option<String>,
}

impl Address {
    /// Still doing duplicate address detection (IPv6).
    pub fn tentative(&self) -> bool {
        self.flags & IFA_F_TENTATIVE != 0
    }
    /// Configured statically (not SLAAC/temporary).
    pub fn permanent(&self) -> bool {
        self.flags & IFA_F_PERMANENT != 0
    }
}

/// Options for [`Handle::add_address`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AddrOpts {
    /// IPv4 broadcast: `None` computes it from the prefix (like `brd +`).
    pub broadcast: Option<Ipv4Addr>,
    /// Do not set any broadcast.
    pub no_broadcast: bool,
    /// IFA_F_NODAD for IPv6 (usable at once, no duplicate detection).
    pub nodad: bool,
    /// Explicit scope (default: host for loopback addresses, universe otherwise).
    pub scope: Option<u8>,
}

fn ip_bytes(a: &IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(v) => v.octets().to_vec(),
        IpAddr::V6(v) => v.octets().to_vec(),
    }
}

pub(crate) fn ip_from(family: u8, b: &[u8]) -> Option<IpAddr> {
    match family {
        AF_INET => Some(IpAddr::V4(Ipv4Addr::from(
            <[u8; 4]>::try_from(b.get(..4)?).ok()?,
        ))),
        AF_INET6 => Some(IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(b.get(..16)?).ok()?,
        ))),
        _ => None,
    }
}

pub(crate) fn ifaddrmsg(
    family: u8,
    prefix: u8,
    scope: u8,
    index: u32,
    attrs: &Attrs,
) -> Result<Ifaddrmsg, NetError> {
    IfaddrmsgBuilder::default()
        .ifa_family(RtAddrFamily::from(family))
        .ifa_prefixlen(prefix)
        .ifa_flags(IfaF::empty())
        .ifa_scope(RtScope::from(scope))
        .ifa_index(index)
        .rtattrs(attrs.rtbuffer()?)
        .build()
        .map_err(|e| NetError::Decode {
            op: "encode",
            target: "ifaddrmsg".into(),
            msg: e.to_string(),
        })
}

pub(crate) fn decode_addr(r: &Reply) -> Result<Option<Address>, String> {
    let msg = Ifaddrmsg::from_bytes_with_input(&mut Cursor::new(&r.payload), r.payload.len())
        .map_err(|e| e.to_string())?;
    let family = u8::from(*msg.ifa_family());
    if family != AF_INET && family != AF_INET6 {
        return Ok(None);
    }
    let mut local = None;
    let mut address = None;
    let mut a = Address {
        index: *msg.ifa_index(),
        net: IpNet {
            addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            prefix: *msg.ifa_prefixlen(),
        },
        broadcast: None,
        peer: None,
        scope: u8::from(*msg.ifa_scope()),
        flags: u32::from(u8::from(*msg.ifa_flags())),
        label: None,
    };
    for at in msg.rtattrs().iter() {
        let ty = u16::from(*at.rta_type()) & 0x3fff;
        let p = at.rta_payload().as_ref();
        match ty {
            IFA_LOCAL => local = ip_from(family, p),
            IFA_ADDRESS => address = ip_from(family, p),
            IFA_BROADCAST => {
                if let Some(IpAddr::V4(b)) = ip_from(family, p) {
                    a.broadcast = Some(b)
                }
            }
            IFA_LABEL => a.label = Some(c_str(p)),
            IFA_FLAGS => a.flags = ne_u32(p).unwrap_or(a.flags),
            _ => {}
        }
    }
    let Some(addr) = local.or(address) else {
        return Ok(None);
    };
    a.net.addr = addr;
    if local.is_some() && address.is_some() && address != local {
        a.peer = address;
    }
    Ok(Some(a))
}

/// "10.0.0.2/24 on eth0", formatted only when an error needs it.
struct On<'a>(&'a IpNet, &'a str);

impl fmt::Display for On<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on {}", self.0, self.1)
    }
}

impl Handle {
    /// All addresses (RTM_GETADDR dump), optionally of one family (AF_INET/AF_INET6).
    pub fn addresses(&mut self, family: Option<u8>) -> Result<Vec<Address>, NetError> {
        let rs = self.dump(
            Rtm::Getaddr,
            ifaddrmsg(family.unwrap_or(AF_UNSPEC), 0, 0, 0, &Attrs::new())?,
            "list addresses",
        )?;
        let mut out = Vec::new();
        for r in rs.iter().filter(|r| r.ty == u16::from(Rtm::Newaddr)) {
            match decode_addr(r) {
                Ok(Some(a)) if family.is_none_or(|f| a.net.family() == f) => out.push(a),
                Ok(_) => {}
                Err(msg) => {
                    return Err(NetError::Decode {
                        op: "list addresses",
                        target: "dump".into(),
                        msg,
                    })
                }
            }
        }
        Ok(out)
    }

    fn addr_msg(
        &self,
        index: u32,
        net: &IpNet,
        opts: &AddrOpts,
        with_extras: bool,
    ) -> Result<Ifaddrmsg, NetError> {
        let b = ip_bytes(&net.addr);
        let mut a = Attrs::new().bytes(IFA_LOCAL, &b).bytes(IFA_ADDRESS, &b);
        let mut scope = RT_SCOPE_UNIVERSE;
        if with_extras {
            if !opts.no_broadcast {
                if let Some(brd) = opts.broadcast.or_else(|| net.broadcast()) {
                    a = a.bytes(IFA_BROADCAST, &brd.octets());
                }
            }
            if opts.nodad && net.addr.is_ipv6() {
                a = a.u32(IFA_FLAGS, IFA_F_NODAD);
            }
            scope = opts.scope.unwrap_or(if net.is_loopback() {
                RT_SCOPE_HOST
            } else {
                RT_SCOPE_UNIVERSE
            });
        }
        ifaddrmsg(net.family(), net.prefix, scope, index, &a)
    }

    /// Add `net` to link `index` (RTM_NEWADDR, CREATE|EXCL): EEXIST if present.
    /// `target` names the link in errors.
    pub fn add_address(
        &mut self,
        index: u32,
        net: &IpNet,
        opts: &AddrOpts,
        target: &str,
    ) -> Result<(), NetError> {
        let msg = self.addr_msg(index, net, opts, true)?;
        self.write(
            Rtm::Newaddr,
            NlmF::CREATE | NlmF::EXCL,
            msg,
            "add address",
            &On(net, target),
        )
    }

    /// Add or update `net` on link `index` (RTM_NEWADDR, CREATE|REPLACE).
    pub fn replace_address(
        &mut self,
        index: u32,
        net: &IpNet,
        opts: &AddrOpts,
        target: &str,
    ) -> Result<(), NetError> {
        let msg = self.addr_msg(index, net, opts, true)?;
        self.write(
            Rtm::Newaddr,
            NlmF::CREATE | NlmF::REPLACE,
            msg,
            "replace address",
            &On(net, target),
        )
    }

    /// Remove `net` from link `index` (RTM_DELADDR): EADDRNOTAVAIL if absent.
    pub fn del_address(&mut self, index: u32, net: &IpNet, target: &str) -> Result<(), NetError> {
        let msg = self.addr_msg(index, net, &AddrOpts::default(), false)?;
        self.write(
            Rtm::Deladdr,
            NlmF::empty(),
            msg,
            "delete address",
            &On(net, target),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_ipnet() {
        let n: IpNet = "10.0.2.15/24".parse().unwrap();
        assert_eq!(n.to_string(), "10.0.2.15/24");
        assert_eq!(n.network().to_string(), "10.0.2.0/24");
        assert_eq!(n.broadcast(), Some(Ipv4Addr::new(10, 0, 2, 255)));
        let n: IpNet = "fd00::1/64".parse().unwrap();
        assert_eq!(n.family(), AF_INET6);
        assert_eq!(n.network().to_string(), "fd00::/64");
        assert_eq!(n.broadcast(), None);
        assert_eq!("10.1.2.3".parse::<IpNet>().unwrap().prefix, 32);
        assert_eq!("::1".parse::<IpNet>().unwrap().prefix, 128);
        assert!("10.0.0.1/33".parse::<IpNet>().is_err());
        assert!("fd00::1/129".parse::<IpNet>().is_err());
        assert!("10.0.0.1/".parse::<IpNet>().is_err());
        assert!("10.0.0.1/+4".parse::<IpNet>().is_err());
        assert!("eth0".parse::<IpNet>().is_err());
        assert!("10.0.0/24".parse::<IpNet>().is_err());
        assert!("fe80::1/64".parse::<IpNet>().unwrap().is_link_local());
        assert!(!"fd00::1/64".parse::<IpNet>().unwrap().is_link_local());
        assert_eq!("10.0.0.1/31".parse::<IpNet>().unwrap().broadcast(), None);
        assert_eq!(
            "10.0.0.1/0".parse::<IpNet>().unwrap().network().to_string(),
            "0.0.0.0/0"
        );
    }
}
