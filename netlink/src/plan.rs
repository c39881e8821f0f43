//! Reconciliation: the kernel's current state ([`KernelState`]), the pure diff
//! [`plan`] from desired [`NetworkSpec`] to a list of [`Change`]s, [`apply`] that
//! performs them through netlink, and the resolv.conf writer for `network.dns`.
//!
//! Rules (see docs/lua/net.md "Declarative network"):
//! - an address or route that is both declared and present is never touched;
//! - a declared link's `addresses` (when given) are exactly the declared ones;
//!   IPv6 link-local, loopback and non-permanent (SLAAC, temporary) addresses are
//!   never removed;
//! - a declared link's `routes` (when given) are exactly the declared ones among
//!   the routes moonlit manages (protocol `static`); kernel, boot (`ip route add`),
//!   DHCP and RA routes are never removed;
//! - links in `owned` (created by an earlier apply) that the spec no longer
//!   declares are deleted; links not owned are never created or deleted, only
//!   their declared attributes are changed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::addr::{AddrOpts, Address, IpNet};
use crate::consts::*;
use crate::error::NetError;
use crate::link::{parse_mac, Link, LinkChange, LinkKind, NewLink};
use crate::route::Route;
use crate::socket::Handle;
use crate::spec::{DnsSpec, KindSpec, LinkSpec, NetworkSpec, RouteSpec};

/// Links, addresses and routes (all tables) as the kernel has them now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelState {
    pub links: Vec<Link>,
    pub addresses: Vec<Address>,
    pub routes: Vec<Route>,
    /// Per-link IPv6 sysctls `ipv6 = {...}` manages, by "LINK/NAME"
    /// (`accept_ra`, `autoconf`); a link without IPv6 has none.
    #[serde(default)]
    pub sysctls: BTreeMap<String, String>,
}

/// The IPv6 sysctls of a link that `ipv6 = { ... }` may set.
pub const IPV6_SYSCTLS: &[&str] = &["accept_ra", "autoconf"];

fn sysctl_path(link: &str, key: &str) -> String {
    format!("/proc/sys/net/ipv6/conf/{link}/{key}")
}

impl KernelState {
    /// Three dumps (links, addresses, routes) and the IPv6 sysctls of each
    /// link (/proc/sys/net is the reading process's network namespace); no
    /// writes.
    pub fn read(h: &mut Handle) -> Result<KernelState, NetError> {
        let links = h.links()?;
        let mut sysctls = BTreeMap::new();
        for l in &links {
            for k in IPV6_SYSCTLS {
                if let Ok(v) = std::fs::read_to_string(sysctl_path(&l.name, k)) {
                    sysctls.insert(format!("{}/{k}", l.name), v.trim().to_string());
                }
            }
        }
        Ok(KernelState {
            links,
            addresses: h.addresses(None)?,
            routes: h.routes(None, None)?,
            sysctls,
        })
    }

    fn link(&self, name: &str) -> Option<&Link> {
        self.links.iter().find(|l| l.name == name)
    }

    fn name_of(&self, index: u32) -> Option<&str> {
        self.links
            .iter()
            .find(|l| l.index == index)
            .map(|l| l.name.as_str())
    }
}

/// What to create, with links referred to by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CreateKind {
    Veth { peer: String },
    Bridge { stp: Option<bool> },
    Vlan { link: String, id: u16 },
    Macvlan { link: String, mode: Option<String> },
    Dummy,
    Bond { mode: Option<String> },
}

/// One netlink change. `Display` gives the line shown by `reload --dry-run`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    CreateLink {
        name: String,
        kind: CreateKind,
        mtu: Option<u32>,
        mac: Option<String>,
    },
    DeleteLink {
        name: String,
    },
    SetUp {
        name: String,
        up: bool,
    },
    SetMtu {
        name: String,
        mtu: u32,
    },
    SetMac {
        name: String,
        mac: String,
    },
    /// `master: None` releases the link from its bridge/bond.
    SetMaster {
        name: String,
        master: Option<String>,
    },
    AddAddress {
        link: String,
        addr: IpNet,
    },
    DelAddress {
        link: String,
        addr: IpNet,
    },
    AddRoute {
        link: String,
        route: RouteSpec,
    },
    DelRoute {
        link: String,
        route: RouteSpec,
    },
    /// /proc/sys/net/ipv6/conf/LINK/KEY = VALUE (before the link goes up).
    SetIpv6Sysctl {
        link: String,
        key: String,
        value: String,
    },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::CreateLink {
                name,
                kind,
                mtu,
                mac,
            } => {
                match kind {
                    CreateKind::Veth { peer } => write!(f, "create veth {name} (peer {peer})")?,
                    CreateKind::Bridge { .. } => write!(f, "create bridge {name}")?,
                    CreateKind::Vlan { link, id } => {
                        write!(f, "create vlan {name} on {link} id {id}")?
                    }
                    CreateKind::Macvlan { link, mode } => {
                        write!(f, "create macvlan {name} on {link}")?;
                        if let Some(m) = mode {
                            write!(f, " mode {m}")?;
                        }
                    }
                    CreateKind::Dummy => write!(f, "create dummy {name}")?,
                    CreateKind::Bond { mode } => {
                        write!(f, "create bond {name}")?;
                        if let Some(m) = mode {
                            write!(f, " mode {m}")?;
                        }
                    }
                }
                if let Some(m) = mtu {
                    write!(f, " mtu {m}")?;
                }
                if let Some(m) = mac {
                    write!(f, " mac {m}")?;
                }
                Ok(())
            }
            Change::DeleteLink { name } => write!(f, "delete link {name}"),
            Change::SetUp { name, up } => {
                write!(f, "set {name} {}", if *up { "up" } else { "down" })
            }
            Change::SetMtu { name, mtu } => write!(f, "set mtu {mtu} on {name}"),
            Change::SetMac { name, mac } => write!(f, "set mac {mac} on {name}"),
            Change::SetMaster {
                name,
                master: Some(m),
            } => write!(f, "enslave {name} to {m}"),
            Change::SetMaster { name, master: None } => write!(f, "release {name} from its master"),
            Change::AddAddress { link, addr } => write!(f, "add address {addr} to {link}"),
            Change::DelAddress { link, addr } => write!(f, "remove address {addr} from {link}"),
            Change::AddRoute { link, route } => write!(f, "add route {route} dev {link}"),
            Change::DelRoute { link, route } => write!(f, "remove route {route} dev {link}"),
            Change::SetIpv6Sysctl { link, key, value } => {
                write!(f, "set net.ipv6.conf.{link}.{key} = {value}")
            }
        }
    }
}

fn create_rank(k: &KindSpec) -> u8 {
    match k {
        KindSpec::Veth { .. } | KindSpec::Dummy => 0,
        KindSpec::Bridge { .. } | KindSpec::Bond { .. } => 1,
        KindSpec::Vlan { .. } | KindSpec::Macvlan { .. } => 2,
        KindSpec::Existing => 3,
    }
}

fn route_matches(want: &RouteSpec, have: &Route) -> bool {
    let metric = want.metric.unwrap_or(if want.family == AF_INET6 {
        IP6_RT_PRIO_USER
    } else {
        0
    });
    have.family == want.family
        && have.kind == RTN_UNICAST
        && have.dst.filter(|d| d.prefix > 0) == want.to.filter(|d| d.prefix > 0)
        && have.gateway == want.via
        && have.table == want.table
        && have.metric.unwrap_or(0) == metric
        && (want.src.is_none() || have.prefsrc == want.src)
}

fn route_spec_of(r: &Route) -> RouteSpec {
    RouteSpec {
        family: r.family,
        to: r.dst.filter(|d| d.prefix > 0),
        via: r.gateway,
        metric: r.metric,
        src: r.prefsrc,
        scope: None,
        table: r.table,
    }
}

/// The changes that turn `actual` into `desired`. Pure: reads nothing, writes
/// nothing. `owned` are the links created by earlier applies of this config.
pub fn plan(desired: &NetworkSpec, actual: &KernelState, owned: &BTreeSet<String>) -> Vec<Change> {
    let mut deletes = Vec::new();
    let mut route_dels = Vec::new();
    let mut addr_dels = Vec::new();
    let mut creates: Vec<(u8, Change)> = Vec::new();
    let mut releases = Vec::new();
    let mut attrs = Vec::new();
    let mut ups = Vec::new();
    let mut addr_adds = Vec::new();
    let mut route_adds: Vec<(bool, Change)> = Vec::new();
    // Links that will be (re)created: the actual state says nothing about them.
    let mut fresh: BTreeSet<&str> = BTreeSet::new();

    // 1. owned links no longer declared
    for name in owned {
        let declared = desired
            .links
            .get(name)
            .is_some_and(|l| l.kind != KindSpec::Existing);
        if !declared && actual.link(name).is_some() {
            deletes.push(Change::DeleteLink { name: name.clone() });
        }
    }

    let mut specs: Vec<&LinkSpec> = desired.links.values().collect();
    specs.sort_by_key(|l| (create_rank(&l.kind), l.name.clone()));
    for l in specs {
        let mut cur = actual.link(&l.name);
        // 2. creation (or re-creation of an owned link whose kind changed)
        if let Some(kname) = l.kind.kind_name() {
            let mismatch = cur.is_some_and(|c| {
                c.kind.as_deref() != Some(kname)
                    || match &l.kind {
                        KindSpec::Veth { peer } => c
                            .parent
                            .and_then(|p| actual.name_of(p))
                            .is_some_and(|pn| pn != peer),
                        _ => false,
                    }
            });
            if mismatch && owned.contains(&l.name) {
                deletes.push(Change::DeleteLink {
                    name: l.name.clone(),
                });
                cur = None;
            }
            if cur.is_none() {
                let kind = match &l.kind {
                    KindSpec::Veth { peer } => CreateKind::Veth { peer: peer.clone() },
                    KindSpec::Bridge { stp } => CreateKind::Bridge { stp: *stp },
                    KindSpec::Vlan { link, id } => CreateKind::Vlan {
                        link: link.clone(),
                        id: *id,
                    },
                    KindSpec::Macvlan { link, mode } => CreateKind::Macvlan {
                        link: link.clone(),
                        mode: mode.clone(),
                    },
                    KindSpec::Dummy => CreateKind::Dummy,
                    KindSpec::Bond { mode } => CreateKind::Bond { mode: mode.clone() },
                    KindSpec::Existing => CreateKind::Dummy, // unreachable: kind_name() is None
                };
                creates.push((
                    create_rank(&l.kind),
                    Change::CreateLink {
                        name: l.name.clone(),
                        kind,
                        mtu: l.mtu,
                        mac: l.mac.clone(),
                    },
                ));
                fresh.insert(l.name.as_str());
                if let KindSpec::Veth { peer } = &l.kind {
                    fresh.insert(peer.as_str());
                }
            }
        }
    }

    for l in desired.links.values() {
        let is_fresh = fresh.contains(l.name.as_str());
        let cur = if is_fresh { None } else { actual.link(&l.name) };
        let created_now = is_fresh && l.kind != KindSpec::Existing;
        // 3. attributes
        if !created_now {
            if let Some(m) = l.mtu {
                if cur.is_none_or(|c| c.mtu != m) {
                    attrs.push(Change::SetMtu {
                        name: l.name.clone(),
                        mtu: m,
                    });
                }
            }
            if let Some(mac) = &l.mac {
                if cur.is_none_or(|c| c.mac.as_deref() != Some(mac.as_str())) {
                    attrs.push(Change::SetMac {
                        name: l.name.clone(),
                        mac: mac.clone(),
                    });
                }
            }
        }
        // IPv6 sysctls: after creation, before the link goes up (SLAAC
        // starts at up, with the router solicitation).
        if let Some(v6) = l.ipv6.as_ref().filter(|_| is_fresh || cur.is_some()) {
            for (k, v) in v6.sysctls() {
                let have = actual.sysctls.get(&format!("{}/{k}", l.name));
                if is_fresh || have.map(String::as_str) != Some(v) {
                    attrs.push(Change::SetIpv6Sysctl {
                        link: l.name.clone(),
                        key: k.to_string(),
                        value: v.to_string(),
                    });
                }
            }
        }
        if let Some(m) = &l.master {
            let cur_master = cur.and_then(|c| c.master).and_then(|i| actual.name_of(i));
            if is_fresh || fresh.contains(m.as_str()) || cur_master != Some(m.as_str()) {
                attrs.push(Change::SetMaster {
                    name: l.name.clone(),
                    master: Some(m.clone()),
                });
            }
        }
        if let Some(up) = l.up {
            if cur.is_none_or(|c| c.up != up) && (up || !is_fresh) {
                ups.push(Change::SetUp {
                    name: l.name.clone(),
                    up,
                });
            }
        }
        // ports that left a declared bridge/bond
        if matches!(l.kind, KindSpec::Bridge { .. } | KindSpec::Bond { .. }) && !is_fresh {
            if let Some(c) = cur {
                for port in actual.links.iter().filter(|p| p.master == Some(c.index)) {
                    let still = desired
                        .links
                        .get(&port.name)
                        .and_then(|p| p.master.as_deref())
                        == Some(l.name.as_str());
                    if !still && !fresh.contains(port.name.as_str()) {
                        releases.push(Change::SetMaster {
                            name: port.name.clone(),
                            master: None,
                        });
                    }
                }
            }
        }
        // 4. addresses
        if let Some(want) = &l.addresses {
            let have: Vec<&Address> = match cur {
                Some(c) => actual
                    .addresses
                    .iter()
                    .filter(|a| a.index == c.index)
                    .collect(),
                None => vec![],
            };
            for a in &have {
                let managed = a.permanent() && !a.net.is_link_local() && !a.net.is_loopback();
                if managed && !want.contains(&a.net) {
                    addr_dels.push(Change::DelAddress {
                        link: l.name.clone(),
                        addr: a.net,
                    });
                }
            }
            for w in want {
                if !have.iter().any(|a| a.net == *w) {
                    addr_adds.push(Change::AddAddress {
                        link: l.name.clone(),
                        addr: *w,
                    });
                }
            }
        }
        // 5. routes
        if let Some(want) = &l.routes {
            let have: Vec<&Route> = match cur {
                Some(c) => actual
                    .routes
                    .iter()
                    .filter(|r| r.oif == Some(c.index))
                    .collect(),
                None => vec![],
            };
            for r in &have {
                let ours = r.protocol == RTPROT_STATIC && r.kind == RTN_UNICAST;
                if ours && !want.iter().any(|w| route_matches(w, r)) {
                    route_dels.push(Change::DelRoute {
                        link: l.name.clone(),
                        route: route_spec_of(r),
                    });
                }
            }
            for w in want {
                if !have.iter().any(|r| route_matches(w, r)) {
                    route_adds.push((
                        w.to.is_none(),
                        Change::AddRoute {
                            link: l.name.clone(),
                            route: w.clone(),
                        },
                    ));
                }
            }
        }
    }

    creates.sort_by_key(|(rank, _)| *rank);
    route_adds.sort_by_key(|(is_default, _)| *is_default);
    let mut out = deletes;
    out.extend(route_dels);
    out.extend(addr_dels);
    out.extend(creates.into_iter().map(|(_, c)| c));
    out.extend(releases);
    out.extend(attrs);
    out.extend(ups);
    out.extend(addr_adds);
    out.extend(route_adds.into_iter().map(|(_, c)| c));
    out
}

fn to_route(
    h: &mut Handle,
    link: &str,
    r: &RouteSpec,
    with_proto: bool,
) -> Result<Route, NetError> {
    let idx = h.index_of(link)?;
    let mut rt = Route::new(r.family, r.to);
    rt.gateway = r.via;
    rt.oif = Some(idx);
    rt.metric = r.metric;
    rt.prefsrc = r.src;
    rt.scope = r.scope;
    rt.table = r.table;
    if with_proto {
        rt.protocol = RTPROT_STATIC;
    }
    Ok(rt)
}

fn apply_one(h: &mut Handle, c: &Change) -> Result<(), NetError> {
    match c {
        Change::CreateLink {
            name,
            kind,
            mtu,
            mac,
        } => {
            let kind = match kind {
                CreateKind::Veth { peer } => LinkKind::Veth {
                    peer: peer.clone(),
                    peer_netns: None,
                },
                CreateKind::Bridge { stp } => LinkKind::Bridge { stp: *stp },
                CreateKind::Vlan { link, id } => LinkKind::Vlan {
                    parent: h.index_of(link)?,
                    id: *id,
                },
                CreateKind::Macvlan { link, mode } => LinkKind::Macvlan {
                    parent: h.index_of(link)?,
                    mode: mode.clone(),
                },
                CreateKind::Dummy => LinkKind::Dummy,
                CreateKind::Bond { mode } => LinkKind::Bond { mode: mode.clone() },
            };
            let mut nl = NewLink::new(name.clone(), kind);
            nl.mtu = *mtu;
            nl.mac = mac.as_deref().and_then(parse_mac);
            h.create_link(&nl)
        }
        Change::DeleteLink { name } => {
            let i = h.index_of(name)?;
            h.delete_link(i, name)
        }
        Change::SetUp { name, up } => {
            let i = h.index_of(name)?;
            h.set_link(
                i,
                &LinkChange {
                    up: Some(*up),
                    ..Default::default()
                },
                name,
            )
        }
        Change::SetMtu { name, mtu } => {
            let i = h.index_of(name)?;
            h.set_link(
                i,
                &LinkChange {
                    mtu: Some(*mtu),
                    ..Default::default()
                },
                name,
            )
        }
        Change::SetMac { name, mac } => {
            let i = h.index_of(name)?;
            h.set_link(
                i,
                &LinkChange {
                    mac: parse_mac(mac),
                    ..Default::default()
                },
                name,
            )
        }
        Change::SetMaster { name, master } => {
            let i = h.index_of(name)?;
            let m = match master {
                Some(m) => Some(h.index_of(m)?),
                None => None,
            };
            h.set_link(
                i,
                &LinkChange {
                    master: Some(m),
                    ..Default::default()
                },
                name,
            )
        }
        Change::AddAddress { link, addr } => {
            let i = h.index_of(link)?;
            h.add_address(i, addr, &AddrOpts::default(), link)
        }
        Change::DelAddress { link, addr } => {
            let i = h.index_of(link)?;
            h.del_address(i, addr, link)
        }
        Change::AddRoute { link, route } => {
            let rt = to_route(h, link, route, true)?;
            h.add_route(&rt, &format!("{route} dev {link}"))
        }
        Change::DelRoute { link, route } => {
            let rt = to_route(h, link, route, false)?;
            h.del_route(&rt, &format!("{route} dev {link}"))
        }
        Change::SetIpv6Sysctl { link, key, value } => {
            let path = sysctl_path(link, key);
            std::fs::write(&path, format!("{value}\n")).map_err(|source| NetError::Io {
                op: "set IPv6 sysctl",
                path,
                source,
            })
        }
    }
}

/// Perform `changes` in order; every change is attempted and reported (a failure
/// does not stop the rest).
pub fn apply(h: &mut Handle, changes: &[Change]) -> Vec<(Change, Result<(), NetError>)> {
    changes
        .iter()
        .map(|c| (c.clone(), apply_one(h, c)))
        .collect()
}

/// resolv.conf text for `dns`.
pub fn resolv_conf(dns: &DnsSpec) -> String {
    let mut s = String::from("# generated by moonlit from network.dns\n");
    if !dns.search.is_empty() {
        s.push_str(&format!("search {}\n", dns.search.join(" ")));
    }
    for n in &dns.nameservers {
        s.push_str(&format!("nameserver {n}\n"));
    }
    if !dns.options.is_empty() {
        s.push_str(&format!("options {}\n", dns.options.join(" ")));
    }
    s
}

/// Write `dns` to `path` (atomically: temp file + rename) unless it already has
/// exactly that content. Returns whether it wrote.
pub fn write_resolv_conf(path: &Path, dns: &DnsSpec) -> Result<bool, NetError> {
    let want = resolv_conf(dns);
    if std::fs::read_to_string(path).ok().as_deref() == Some(want.as_str()) {
        return Ok(false);
    }
    let io = |op, e| NetError::Io {
        op,
        path: path.display().to_string(),
        source: e,
    };
    let tmp = path.with_extension("moonlit-tmp");
    std::fs::write(&tmp, &want).map_err(|e| io("write", e))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io("rename onto", e)
    })?;
    Ok(true)
}

/// Convenience for callers holding a map of names to indexes (unused fields
/// of `Link` filled with defaults). Used by tests building synthetic states.
pub fn synthetic_link(index: u32, name: &str, kind: Option<&str>, up: bool) -> Link {
    Link {
        index,
        name: name.into(),
        up,
        flags: if up { IFF_UP } else { 0 },
        mtu: 1500,
        kind: kind.map(str::to_string),
        ..Link::default()
    }
}

/// A permanent address for synthetic states.
pub fn synthetic_addr(index: u32, net: &str) -> Address {
    let net: IpNet = net.parse().unwrap_or(IpNet {
        addr: IpAddr::from([0, 0, 0, 0]),
        prefix: 0,
    });
    Address {
        index,
        net,
        broadcast: None,
        peer: None,
        scope: 0,
        flags: IFA_F_PERMANENT,
        label: None,
    }
}
