//! Every rtnetlink constant moonlit needs that neli 0.7.5 does not define, in one
//! place (values from the kernel's uapi headers: `linux/if_link.h`,
//! `linux/rtnetlink.h`, `linux/if_addr.h`, `linux/veth.h`). Nothing else in the
//! crate spells a raw netlink number.

// ---- address families (linux/socket.h)
/// `AF_UNSPEC`
pub const AF_UNSPEC: u8 = 0;
/// `AF_INET`
pub const AF_INET: u8 = 2;
/// `AF_INET6`
pub const AF_INET6: u8 = 10;

// ---- interface flags (linux/if.h)
/// `IFF_UP`
pub const IFF_UP: u32 = 0x1;
/// `IFF_RUNNING`
pub const IFF_RUNNING: u32 = 0x40;
/// `IFF_LOWER_UP`: the driver reports carrier.
pub const IFF_LOWER_UP: u32 = 0x1_0000;

// ---- link attributes (linux/if_link.h)
/// `IFLA_ADDRESS`
pub const IFLA_ADDRESS: u16 = 1;
/// `IFLA_IFNAME`
pub const IFLA_IFNAME: u16 = 3;
/// `IFLA_MTU`
pub const IFLA_MTU: u16 = 4;
/// `IFLA_LINK` (parent of a vlan/macvlan)
pub const IFLA_LINK: u16 = 5;
/// `IFLA_MASTER`
pub const IFLA_MASTER: u16 = 10;
/// `IFLA_OPERSTATE`
pub const IFLA_OPERSTATE: u16 = 16;
/// `IFLA_LINKINFO` (nested)
pub const IFLA_LINKINFO: u16 = 18;
/// `IFLA_NET_NS_PID`
pub const IFLA_NET_NS_PID: u16 = 19;
/// `IFLA_STATS64` (struct rtnl_link_stats64)
pub const IFLA_STATS64: u16 = 23;
/// `IFLA_NET_NS_FD`
pub const IFLA_NET_NS_FD: u16 = 28;
/// `IFLA_CARRIER`
pub const IFLA_CARRIER: u16 = 33;
/// `IFLA_INFO_KIND` (inside IFLA_LINKINFO)
pub const IFLA_INFO_KIND: u16 = 1;
/// `IFLA_INFO_DATA` (inside IFLA_LINKINFO)
pub const IFLA_INFO_DATA: u16 = 2;
/// `VETH_INFO_PEER` (inside IFLA_INFO_DATA of a veth): a `struct ifinfomsg`
/// followed by the peer's IFLA_* attributes. Missing from neli.
pub const VETH_INFO_PEER: u16 = 1;
/// `IFLA_VLAN_ID` (u16, inside IFLA_INFO_DATA of a vlan)
pub const IFLA_VLAN_ID: u16 = 1;
/// `IFLA_MACVLAN_MODE` (u32, inside IFLA_INFO_DATA of a macvlan)
pub const IFLA_MACVLAN_MODE: u16 = 1;
/// `IFLA_BOND_MODE` (u8, inside IFLA_INFO_DATA of a bond)
pub const IFLA_BOND_MODE: u16 = 1;
/// `IFLA_BR_STP_STATE` (u32, inside IFLA_INFO_DATA of a bridge). Missing from neli.
pub const IFLA_BR_STP_STATE: u16 = 5;
/// `IFLA_BR_VLAN_FILTERING` (u8, inside IFLA_INFO_DATA of a bridge).
pub const IFLA_BR_VLAN_FILTERING: u16 = 7;

/// macvlan modes (`enum macvlan_mode`), by the names `ip link` uses.
pub const MACVLAN_MODES: &[(&str, u32)] = &[
    ("private", 1),
    ("vepa", 2),
    ("bridge", 4),
    ("passthru", 8),
    ("source", 16),
];

/// bonding modes (`BOND_MODE_*`), by the names `ip link` uses.
pub const BOND_MODES: &[(&str, u8)] = &[
    ("balance-rr", 0),
    ("active-backup", 1),
    ("balance-xor", 2),
    ("broadcast", 3),
    ("802.3ad", 4),
    ("balance-tlb", 5),
    ("balance-alb", 6),
];

// ---- address attributes and flags (linux/if_addr.h)
/// `IFA_ADDRESS`
pub const IFA_ADDRESS: u16 = 1;
/// `IFA_LOCAL`
pub const IFA_LOCAL: u16 = 2;
/// `IFA_LABEL`
pub const IFA_LABEL: u16 = 3;
/// `IFA_BROADCAST`
pub const IFA_BROADCAST: u16 = 4;
/// `IFA_FLAGS` (u32, supersedes the u8 ifa_flags)
pub const IFA_FLAGS: u16 = 8;
/// `IFA_F_SECONDARY`
pub const IFA_F_SECONDARY: u32 = 0x01;
/// `IFA_F_NODAD`
pub const IFA_F_NODAD: u32 = 0x02;
/// `IFA_F_DADFAILED`
pub const IFA_F_DADFAILED: u32 = 0x08;
/// `IFA_F_TENTATIVE`
pub const IFA_F_TENTATIVE: u32 = 0x40;
/// `IFA_F_PERMANENT`
pub const IFA_F_PERMANENT: u32 = 0x80;

// ---- route attributes and values (linux/rtnetlink.h)
/// `RTA_DST`
pub const RTA_DST: u16 = 1;
/// `RTA_OIF`
pub const RTA_OIF: u16 = 4;
/// `RTA_GATEWAY`
pub const RTA_GATEWAY: u16 = 5;
/// `RTA_PRIORITY` (the metric)
pub const RTA_PRIORITY: u16 = 6;
/// `RTA_PREFSRC`
pub const RTA_PREFSRC: u16 = 7;
/// `RTA_TABLE` (u32; rtm_table only holds 8 bits)
pub const RTA_TABLE: u16 = 15;
/// `RT_TABLE_UNSPEC`
pub const RT_TABLE_UNSPEC: u32 = 0;
/// `RT_TABLE_MAIN`
pub const RT_TABLE_MAIN: u32 = 254;
/// `RT_TABLE_LOCAL`
pub const RT_TABLE_LOCAL: u32 = 255;
/// `RTPROT_KERNEL`
pub const RTPROT_KERNEL: u8 = 2;
/// `RTPROT_BOOT` (what `ip route add` uses)
pub const RTPROT_BOOT: u8 = 3;
/// `RTPROT_STATIC`: what moonlit marks its own routes with. The reconciler only
/// ever removes routes carrying this protocol.
pub const RTPROT_STATIC: u8 = 4;
/// `RT_SCOPE_UNIVERSE`
pub const RT_SCOPE_UNIVERSE: u8 = 0;
/// `RT_SCOPE_LINK`
pub const RT_SCOPE_LINK: u8 = 253;
/// `RT_SCOPE_HOST`
pub const RT_SCOPE_HOST: u8 = 254;
/// `RTN_UNICAST`
pub const RTN_UNICAST: u8 = 1;
/// `RTM_F_CLONED` (cache entries, never listed)
pub const RTM_F_CLONED: u32 = 0x200;
/// IPv6 routes without an explicit metric get this one from the kernel.
pub const IP6_RT_PRIO_USER: u32 = 1024;

// ---- multicast groups (enum rtnetlink_groups), for NETLINK_ADD_MEMBERSHIP
/// `RTNLGRP_LINK`
pub const RTNLGRP_LINK: u32 = 1;
/// `RTNLGRP_IPV4_IFADDR`
pub const RTNLGRP_IPV4_IFADDR: u32 = 5;
/// `RTNLGRP_IPV6_IFADDR`
pub const RTNLGRP_IPV6_IFADDR: u32 = 9;

// ---- netlink message header flags and types not worth importing (linux/netlink.h)
/// `NLMSG_ERROR`
pub const NLMSG_ERROR: u16 = 2;
/// `NLMSG_DONE`
pub const NLMSG_DONE: u16 = 3;
/// `NLMSG_OVERRUN`
pub const NLMSG_OVERRUN: u16 = 4;
