//! Links: list, look up, create (veth, bridge, vlan, macvlan, dummy, bond), change
//! (up/down, mtu, mac, name, master, namespace) and delete, as methods on
//! [`Handle`]. Owns the encoding of RTM_NEWLINK/SETLINK/DELLINK and the decoding of
//! link dumps; knows nothing of Lua or of the declarative spec.

use std::fmt;
use std::io::Cursor;

use neli::{
    consts::{
        nl::NlmF,
        rtnl::{Iff, RtAddrFamily, Rtm},
    },
    rtnl::{Ifinfomsg, IfinfomsgBuilder},
    FromBytesWithInput,
};
use serde::{Deserialize, Serialize};

use crate::consts::*;
use crate::error::NetError;
use crate::socket::{c_str, ne_u32, parse_attrs, to_bytes, Attrs, Handle, Reply};

/// Traffic counters (`struct rtnl_link_stats64`, first eight fields).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkStats {
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
    pub rx_dropped: u64,
    pub tx_dropped: u64,
}

/// One network interface as the kernel reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// ifindex
    pub index: u32,
    /// IFLA_IFNAME
    pub name: String,
    /// raw `ifi_flags` (IFF_*)
    pub flags: u32,
    /// IFF_UP: administratively up
    pub up: bool,
    /// carrier (IFLA_CARRIER, else IFF_LOWER_UP)
    pub carrier: bool,
    /// IFLA_OPERSTATE (RFC 2863: 6 = up, 2 = down, 0 = unknown...)
    pub operstate: u8,
    /// IFLA_MTU
    pub mtu: u32,
    /// IFLA_ADDRESS as "aa:bb:cc:dd:ee:ff" (absent for e.g. ip tunnels)
    pub mac: Option<String>,
    /// IFLA_INFO_KIND ("veth", "bridge", ...), absent for plain devices
    pub kind: Option<String>,
    /// IFLA_MASTER: index of the bridge/bond this link is enslaved to
    pub master: Option<u32>,
    /// IFLA_LINK: parent index (vlan, macvlan, veth peer)
    pub parent: Option<u32>,
    /// IFLA_STATS64
    pub stats: Option<LinkStats>,
}

/// A link named by name or by index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkRef {
    Name(String),
    Index(u32),
}

impl fmt::Display for LinkRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkRef::Name(n) => f.write_str(n),
            LinkRef::Index(i) => write!(f, "ifindex {i}"),
        }
    }
}

/// A network namespace to move a link into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Netns {
    /// The namespace of this process (IFLA_NET_NS_PID).
    Pid(u32),
    /// An open `/proc/PID/ns/net` or `/run/netns/NAME` fd (IFLA_NET_NS_FD); it
    /// must stay open for the duration of the call.
    Fd(i32),
}

impl Netns {
    fn attr(&self, a: Attrs) -> Attrs {
        match *self {
            Netns::Pid(p) => a.u32(IFLA_NET_NS_PID, p),
            Netns::Fd(fd) => a.u32(IFLA_NET_NS_FD, fd as u32),
        }
    }
}

/// What to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkKind {
    /// A veth pair; the peer can go straight into another namespace.
    Veth {
        peer: String,
        peer_netns: Option<Netns>,
    },
    /// A Linux bridge (`stp` sets IFLA_BR_STP_STATE).
    Bridge { stp: Option<bool> },
    /// 802.1Q vlan on a parent link (needs the 8021q module).
    Vlan { parent: u32, id: u16 },
    /// macvlan on a parent link, mode by `ip link` name ("bridge", "vepa", ...).
    Macvlan { parent: u32, mode: Option<String> },
    /// A dummy device (needs the dummy module).
    Dummy,
    /// A bond, mode by `ip link` name ("active-backup", "802.3ad", ...).
    Bond { mode: Option<String> },
}

impl LinkKind {
    /// IFLA_INFO_KIND string.
    pub fn kind_name(&self) -> &'static str {
        match self {
            LinkKind::Veth { .. } => "veth",
            LinkKind::Bridge { .. } => "bridge",
            LinkKind::Vlan { .. } => "vlan",
            LinkKind::Macvlan { .. } => "macvlan",
            LinkKind::Dummy => "dummy",
            LinkKind::Bond { .. } => "bond",
        }
    }
}

/// A link to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLink {
    pub name: String,
    pub kind: LinkKind,
    pub mtu: Option<u32>,
    pub mac: Option<[u8; 6]>,
    pub up: bool,
    pub master: Option<u32>,
}

impl NewLink {
    /// A new link of `kind` named `name`, down, no other attributes.
    pub fn new(name: impl Into<String>, kind: LinkKind) -> Self {
        NewLink {
            name: name.into(),
            kind,
            mtu: None,
            mac: None,
            up: false,
            master: None,
        }
    }
}

/// Changes to an existing link; `None` fields are left alone. One RTM_SETLINK.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkChange {
    pub up: Option<bool>,
    pub mtu: Option<u32>,
    pub mac: Option<[u8; 6]>,
    pub name: Option<String>,
    /// `Some(Some(i))` enslave to ifindex i, `Some(None)` release.
    pub master: Option<Option<u32>>,
    pub netns: Option<Netns>,
}

impl LinkChange {
    /// True if nothing would change.
    pub fn is_empty(&self) -> bool {
        *self == LinkChange::default()
    }
}

/// Parse "aa:bb:cc:dd:ee:ff" (also '-' separated).
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    if parts.len() != 6 {
        return None;
    }
    let mut mac = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        if p.is_empty() || p.len() > 2 {
            return None;
        }
        mac[i] = u8::from_str_radix(p, 16).ok()?;
    }
    Some(mac)
}

/// Format a hardware address as lower-case colon-separated hex.
pub fn format_mac(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Check an interface name the way the kernel will (1..15 bytes, no '/', no
/// whitespace, not "." or ".."), so bad names raise before any syscall.
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 16
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0)
}

pub(crate) fn ifinfomsg(
    index: u32,
    flags: u32,
    change: u32,
    attrs: &Attrs,
) -> Result<Ifinfomsg, NetError> {
    IfinfomsgBuilder::default()
        .ifi_family(RtAddrFamily::Unspecified)
        .ifi_index(index as i32)
        .ifi_flags(Iff::from(flags))
        .ifi_change(Iff::from(change))
        .rtattrs(attrs.rtbuffer()?)
        .build()
        .map_err(|e| NetError::Decode {
            op: "encode",
            target: "ifinfomsg".into(),
            msg: e.to_string(),
        })
}

pub(crate) fn decode_link(r: &Reply) -> Result<Link, String> {
    let msg = Ifinfomsg::from_bytes_with_input(&mut Cursor::new(&r.payload), r.payload.len())
        .map_err(|e| e.to_string())?;
    let flags = u32::from(*msg.ifi_flags());
    let mut l = Link {
        index: *msg.ifi_index() as u32,
        flags,
        up: flags & IFF_UP != 0,
        carrier: flags & IFF_LOWER_UP != 0,
        ..Link::default()
    };
    for a in msg.rtattrs().iter() {
        let ty = u16::from(*a.rta_type()) & 0x3fff;
        let p = a.rta_payload().as_ref();
        match ty {
            IFLA_IFNAME => l.name = c_str(p),
            IFLA_MTU => l.mtu = ne_u32(p).unwrap_or(0),
            IFLA_ADDRESS if !p.is_empty() => l.mac = Some(format_mac(p)),
            IFLA_MASTER => l.master = ne_u32(p).filter(|&m| m != 0),
            IFLA_LINK => l.parent = ne_u32(p).filter(|&m| m != 0 && m != l.index),
            IFLA_CARRIER => l.carrier = p.first().copied().unwrap_or(0) != 0,
            IFLA_OPERSTATE => l.operstate = p.first().copied().unwrap_or(0),
            IFLA_LINKINFO => {
                for (ity, ip) in parse_attrs(p)? {
                    if ity == IFLA_INFO_KIND {
                        l.kind = Some(c_str(&ip));
                    }
                }
            }
            IFLA_STATS64 if p.len() >= 64 => {
                let f =
                    |i: usize| u64::from_ne_bytes(p[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
                l.stats = Some(LinkStats {
                    rx_packets: f(0),
                    tx_packets: f(1),
                    rx_bytes: f(2),
                    tx_bytes: f(3),
                    rx_errors: f(4),
                    tx_errors: f(5),
                    rx_dropped: f(6),
                    tx_dropped: f(7),
                });
            }
            _ => {}
        }
    }
    Ok(l)
}

fn decode_links(
    op: &'static str,
    target: &dyn fmt::Display,
    rs: &[Reply],
) -> Result<Vec<Link>, NetError> {
    rs.iter()
        .filter(|r| r.ty == u16::from(Rtm::Newlink))
        .map(|r| {
            decode_link(r).map_err(|msg| NetError::Decode {
                op,
                target: target.to_string(),
                msg,
            })
        })
        .collect()
}

impl Handle {
    /// All links (RTM_GETLINK dump), in ifindex order.
    pub fn links(&mut self) -> Result<Vec<Link>, NetError> {
        let rs = self.dump(
            Rtm::Getlink,
            ifinfomsg(0, 0, 0, &Attrs::new())?,
            "list links",
        )?;
        decode_links("list links", &"dump", &rs)
    }

    /// One link by name or index (RTM_GETLINK); ENODEV if there is none.
    pub fn link(&mut self, which: &LinkRef) -> Result<Link, NetError> {
        let msg = match which {
            LinkRef::Index(i) => ifinfomsg(*i, 0, 0, &Attrs::new())?,
            LinkRef::Name(n) => {
                if !valid_ifname(n) {
                    return Err(NetError::errno_err("get link", n, rustix::io::Errno::NODEV));
                }
                ifinfomsg(0, 0, 0, &Attrs::new().str(IFLA_IFNAME, n))?
            }
        };
        let rs = self.query(Rtm::Getlink, msg, "get link", which)?;
        decode_links("get link", which, &rs)?
            .into_iter()
            .next()
            .ok_or_else(|| NetError::errno_err("get link", which, rustix::io::Errno::NODEV))
    }

    /// Index of the link called `name`.
    pub fn index_of(&mut self, name: &str) -> Result<u32, NetError> {
        Ok(self.link(&LinkRef::Name(name.to_string()))?.index)
    }

    /// Apply `change` to link `index` in one RTM_SETLINK (`target` names it in errors).
    pub fn set_link(
        &mut self,
        index: u32,
        change: &LinkChange,
        target: &str,
    ) -> Result<(), NetError> {
        if change.is_empty() {
            return Ok(());
        }
        let mut a = Attrs::new();
        if let Some(m) = change.mtu {
            a = a.u32(IFLA_MTU, m);
        }
        if let Some(mac) = change.mac {
            a = a.bytes(IFLA_ADDRESS, &mac);
        }
        if let Some(n) = &change.name {
            a = a.str(IFLA_IFNAME, n);
        }
        if let Some(m) = change.master {
            a = a.u32(IFLA_MASTER, m.unwrap_or(0));
        }
        if let Some(ns) = &change.netns {
            a = ns.attr(a);
        }
        let (flags, mask) = match change.up {
            Some(true) => (IFF_UP, IFF_UP),
            Some(false) => (0, IFF_UP),
            None => (0, 0),
        };
        let op = match change {
            LinkChange {
                up: Some(true),
                mtu: None,
                mac: None,
                name: None,
                master: None,
                netns: None,
            } => "set up",
            LinkChange {
                up: Some(false),
                mtu: None,
                mac: None,
                name: None,
                master: None,
                netns: None,
            } => "set down",
            LinkChange {
                mtu: Some(_),
                up: None,
                mac: None,
                name: None,
                master: None,
                netns: None,
            } => "set mtu",
            LinkChange {
                mac: Some(_),
                up: None,
                mtu: None,
                name: None,
                master: None,
                netns: None,
            } => "set mac",
            LinkChange {
                name: Some(_),
                up: None,
                mtu: None,
                mac: None,
                master: None,
                netns: None,
            } => "rename",
            LinkChange {
                master: Some(_),
                up: None,
                mtu: None,
                mac: None,
                name: None,
                netns: None,
            } => "set master",
            LinkChange {
                netns: Some(_),
                up: None,
                mtu: None,
                mac: None,
                name: None,
                master: None,
            } => "move to netns",
            _ => "set link",
        };
        let msg = ifinfomsg(index, flags, mask, &a)?;
        self.write(Rtm::Setlink, NlmF::empty(), msg, op, &target)
    }

    /// Delete link `index` (RTM_DELLINK). Deleting one end of a veth deletes both.
    pub fn delete_link(&mut self, index: u32, target: &str) -> Result<(), NetError> {
        let msg = ifinfomsg(index, 0, 0, &Attrs::new())?;
        self.write(Rtm::Dellink, NlmF::empty(), msg, "delete link", &target)
    }

    /// Create a link (RTM_NEWLINK with CREATE|EXCL). An existing name gives
    /// EEXIST; a kind the kernel lacks gives EOPNOTSUPP.
    pub fn create_link(&mut self, nl: &NewLink) -> Result<(), NetError> {
        let mut a = Attrs::new().str(IFLA_IFNAME, &nl.name);
        if let Some(m) = nl.mtu {
            a = a.u32(IFLA_MTU, m);
        }
        if let Some(mac) = nl.mac {
            a = a.bytes(IFLA_ADDRESS, &mac);
        }
        if let Some(m) = nl.master {
            a = a.u32(IFLA_MASTER, m);
        }
        let mut info = Attrs::new().str(IFLA_INFO_KIND, nl.kind.kind_name());
        let mut data = Attrs::new();
        match &nl.kind {
            LinkKind::Veth { peer, peer_netns } => {
                let mut pa = Attrs::new().str(IFLA_IFNAME, peer);
                if let Some(ns) = peer_netns {
                    pa = ns.attr(pa);
                }
                if let Some(m) = nl.mtu {
                    pa = pa.u32(IFLA_MTU, m);
                }
                // VETH_INFO_PEER carries a whole ifinfomsg + the peer's attributes.
                let peer_msg = to_bytes(&ifinfomsg(0, 0, 0, &pa)?)?;
                data = data.bytes(VETH_INFO_PEER, &peer_msg);
            }
            LinkKind::Bridge { stp } => {
                if let Some(s) = stp {
                    data = data.u32(IFLA_BR_STP_STATE, u32::from(*s));
                }
            }
            LinkKind::Vlan { parent, id } => {
                a = a.u32(IFLA_LINK, *parent);
                data = data.u16(IFLA_VLAN_ID, *id);
            }
            LinkKind::Macvlan { parent, mode } => {
                a = a.u32(IFLA_LINK, *parent);
                if let Some(m) = mode {
                    let v = MACVLAN_MODES
                        .iter()
                        .find(|(n, _)| n == m)
                        .map(|(_, v)| *v)
                        .ok_or_else(|| {
                            NetError::errno_err(
                                "create macvlan",
                                &nl.name,
                                rustix::io::Errno::INVAL,
                            )
                        })?;
                    data = data.u32(IFLA_MACVLAN_MODE, v);
                }
            }
            LinkKind::Dummy => {}
            LinkKind::Bond { mode } => {
                if let Some(m) = mode {
                    let v = BOND_MODES
                        .iter()
                        .find(|(n, _)| n == m)
                        .map(|(_, v)| *v)
                        .ok_or_else(|| {
                            NetError::errno_err("create bond", &nl.name, rustix::io::Errno::INVAL)
                        })?;
                    data = data.u8(IFLA_BOND_MODE, v);
                }
            }
        }
        if !data.is_empty() {
            info = info.nested(IFLA_INFO_DATA, &data)?;
        }
        a = a.nested(IFLA_LINKINFO, &info)?;
        let (flags, mask) = if nl.up { (IFF_UP, IFF_UP) } else { (0, 0) };
        let msg = ifinfomsg(0, flags, mask, &a)?;
        let op = match nl.kind {
            LinkKind::Veth { .. } => "create veth",
            LinkKind::Bridge { .. } => "create bridge",
            LinkKind::Vlan { .. } => "create vlan",
            LinkKind::Macvlan { .. } => "create macvlan",
            LinkKind::Dummy => "create dummy",
            LinkKind::Bond { .. } => "create bond",
        };
        self.write(Rtm::Newlink, NlmF::CREATE | NlmF::EXCL, msg, op, &nl.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_parse_and_format() {
        assert_eq!(
            parse_mac("02:00:00:aa:BB:0c"),
            Some([2, 0, 0, 0xaa, 0xbb, 0x0c])
        );
        assert_eq!(
            parse_mac("02-00-00-aa-bb-0c"),
            Some([2, 0, 0, 0xaa, 0xbb, 0x0c])
        );
        assert_eq!(parse_mac("02:00:00:aa:bb"), None);
        assert_eq!(parse_mac("02:00:00:aa:bb:0c:11"), None);
        assert_eq!(parse_mac("zz:00:00:aa:bb:0c"), None);
        assert_eq!(parse_mac("002:00:00:aa:bb:0c"), None);
        assert_eq!(
            format_mac(&[2, 0, 0, 0xaa, 0xbb, 0x0c]),
            "02:00:00:aa:bb:0c"
        );
    }

    #[test]
    fn ifname_rules() {
        assert!(valid_ifname("eth0"));
        assert!(valid_ifname("a23456789012345"));
        assert!(!valid_ifname("a234567890123456"));
        assert!(!valid_ifname(""));
        assert!(!valid_ifname("a/b"));
        assert!(!valid_ifname("a b"));
        assert!(!valid_ifname(".."));
    }

    #[test]
    fn veth_request_nests_a_full_ifinfomsg_for_the_peer() {
        // Encode the peer part the way create_link does and check the layout:
        // 16-byte ifinfomsg then IFLA_IFNAME "p0\0".
        let pa = Attrs::new().str(IFLA_IFNAME, "p0");
        let b = to_bytes(&ifinfomsg(0, 0, 0, &pa).unwrap()).unwrap();
        assert_eq!(b.len(), 16 + 8);
        assert_eq!(&b[16..18], &7u16.to_ne_bytes()); // rta_len = 4 + 3
        assert_eq!(&b[18..20], &IFLA_IFNAME.to_ne_bytes());
        assert_eq!(&b[20..23], b"p0\0");
    }
}
