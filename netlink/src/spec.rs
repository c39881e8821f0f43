//! The declarative network: what `network.interface "eth0" {...}`,
//! `network.veth`, `network.bridge`, `network.vlan`, `network.macvlan`,
//! `network.dummy`, `network.bond` and `network.dns` declare, validated into a
//! typed [`NetworkSpec`] (types, unknown keys, duplicates; errors carry the
//! declaration's file:line and the key). Evaluation of the Lua files and the
//! collection of [`Decl`]s belong to the config crate; diffing lives in `plan`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use mlua::{Table, Value};
use serde::Serialize;

use crate::addr::IpNet;
use crate::consts::*;
use crate::link::{format_mac, parse_mac, valid_ifname};

/// One declaration as collected by the DSL: `network.<kind> "<name>" { body }`.
#[derive(Debug, Clone)]
pub struct Decl {
    /// "interface", "veth", "bridge", "vlan", "macvlan", "dummy", "bond", "dns"
    pub kind: String,
    /// The quoted name (None for `network.dns {...}`).
    pub name: Option<String>,
    /// The table literal.
    pub body: Table,
    /// "file:line" of the declaration.
    pub location: String,
}

/// A rejected declaration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: network.{kind}{}: {msg}", name.as_ref().map(|n| format!(" \"{n}\"")).unwrap_or_default())]
pub struct SpecError {
    /// file:line
    pub location: String,
    /// declaration kind
    pub kind: String,
    /// declaration name
    pub name: Option<String>,
    /// what is wrong, naming the key
    pub msg: String,
}

/// How a declared link comes to exist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum KindSpec {
    /// `network.interface`: a link that exists already (or is a veth peer); never
    /// created or deleted by the reconciler.
    Existing,
    /// `network.veth "v0" { peer = "v0p" }`
    Veth { peer: String },
    /// `network.bridge "br0" { ports = {...}, stp = false }`
    Bridge { stp: Option<bool> },
    /// `network.vlan "eth0.10" { link = "eth0", id = 10 }`
    Vlan { link: String, id: u16 },
    /// `network.macvlan "mv0" { link = "eth0", mode = "bridge" }`
    Macvlan { link: String, mode: Option<String> },
    /// `network.dummy "d0" {}`
    Dummy,
    /// `network.bond "bond0" { mode = "active-backup", ports = {...} }`
    Bond { mode: Option<String> },
}

impl KindSpec {
    /// IFLA_INFO_KIND of a created link (None for Existing).
    pub fn kind_name(&self) -> Option<&'static str> {
        match self {
            KindSpec::Existing => None,
            KindSpec::Veth { .. } => Some("veth"),
            KindSpec::Bridge { .. } => Some("bridge"),
            KindSpec::Vlan { .. } => Some("vlan"),
            KindSpec::Macvlan { .. } => Some("macvlan"),
            KindSpec::Dummy => Some("dummy"),
            KindSpec::Bond { .. } => Some("bond"),
        }
    }
}

/// A declared route; the device is the declaring link.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct RouteSpec {
    /// AF_INET / AF_INET6
    pub family: u8,
    /// destination network; None = default
    pub to: Option<IpNet>,
    /// gateway
    pub via: Option<IpAddr>,
    /// metric (None: kernel default)
    pub metric: Option<u32>,
    /// preferred source
    pub src: Option<IpAddr>,
    /// scope (None: automatic)
    pub scope: Option<u8>,
    /// table id (254 main)
    pub table: u32,
}

impl fmt::Display for RouteSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.to {
            None => f.write_str("default")?,
            Some(n) => write!(f, "{n}")?,
        }
        if let Some(v) = self.via {
            write!(f, " via {v}")?;
        }
        if let Some(m) = self.metric {
            write!(f, " metric {m}")?;
        }
        if let Some(s) = self.src {
            write!(f, " src {s}")?;
        }
        if self.table != RT_TABLE_MAIN {
            write!(f, " table {}", self.table)?;
        }
        Ok(())
    }
}

/// One declared link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkSpec {
    pub name: String,
    pub kind: KindSpec,
    /// None: leave as is (created links default to up)
    pub up: Option<bool>,
    pub mtu: Option<u32>,
    /// normalized "aa:bb:cc:dd:ee:ff"
    pub mac: Option<String>,
    /// bridge/bond to be enslaved to (also set from the master's `ports`)
    pub master: Option<String>,
    /// None: addresses not managed; Some: exactly these (in declared order)
    pub addresses: Option<Vec<IpNet>>,
    /// None: routes not managed; Some: exactly these moonlit routes on this link
    pub routes: Option<Vec<RouteSpec>>,
    /// for bridges and bonds: declared ports (their `master` is set from this)
    pub ports: Vec<String>,
    /// `dhcp = true | { ... }`: a DHCPv4 client for this link
    pub dhcp: Option<crate::dhcp::DhcpConfig>,
    /// `ipv6 = { accept_ra = true }`: the kernel's SLAAC, via sysctl
    pub ipv6: Option<Ipv6Spec>,
    /// file:line of the declaration
    pub location: String,
}

/// `ipv6 = { accept_ra = ... }`: IPv6 settings of a link, written to
/// /proc/sys/net/ipv6/conf/LINK/ before the link is brought up.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Ipv6Spec {
    /// true: accept router advertisements and autoconfigure addresses from
    /// their prefixes (SLAAC: `accept_ra` = 1, `autoconf` = 1); false: neither
    /// (both 0); None: left as the kernel has them.
    pub accept_ra: Option<bool>,
}

impl Ipv6Spec {
    /// The sysctls (name under /proc/sys/net/ipv6/conf/LINK/, value) this asks for.
    pub fn sysctls(&self) -> Vec<(&'static str, &'static str)> {
        match self.accept_ra {
            Some(true) => vec![("accept_ra", "1"), ("autoconf", "1")],
            Some(false) => vec![("accept_ra", "0"), ("autoconf", "0")],
            None => vec![],
        }
    }
}

/// `network.dns { nameservers = {...}, search = {...}, options = {...} }`
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct DnsSpec {
    pub nameservers: Vec<IpAddr>,
    pub search: Vec<String>,
    pub options: Vec<String>,
    pub location: String,
}

/// The whole declared network, validated.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct NetworkSpec {
    /// by link name
    pub links: BTreeMap<String, LinkSpec>,
    pub dns: Option<DnsSpec>,
}

impl NetworkSpec {
    /// Names of the links this spec creates (what the init records as "owned"
    /// after a successful apply).
    pub fn created_links(&self) -> std::collections::BTreeSet<String> {
        self.links
            .values()
            .filter(|l| l.kind != KindSpec::Existing)
            .map(|l| l.name.clone())
            .collect()
    }

    /// Validate a list of declarations (in evaluation order).
    pub fn from_decls(decls: &[Decl]) -> Result<NetworkSpec, SpecError> {
        let mut spec = NetworkSpec::default();
        // name -> location of whoever claimed it (links and veth peers)
        let mut claimed: BTreeMap<String, String> = BTreeMap::new();
        let mut peers: BTreeMap<String, String> = BTreeMap::new();
        for d in decls {
            let cx = Cx { d };
            if d.kind == "dns" {
                if d.name.is_some() {
                    return Err(cx.err("takes no name: write network.dns { ... }".into()));
                }
                if let Some(prev) = &spec.dns {
                    return Err(cx.err(format!("declared twice (first at {})", prev.location)));
                }
                spec.dns = Some(parse_dns(&cx)?);
                continue;
            }
            if !LINK_KINDS.contains(&d.kind.as_str()) {
                return Err(cx.err(format!(
                    "unknown declaration kind '{}' (known: {}, dns)",
                    d.kind,
                    LINK_KINDS.join(", ")
                )));
            }
            let Some(name) = &d.name else {
                return Err(cx.err(format!(
                    "needs a name: network.{} \"NAME\" {{ ... }}",
                    d.kind
                )));
            };
            if !valid_ifname(name) {
                return Err(cx.err(
                    "invalid interface name (1-15 characters, no '/', ':' or spaces)".into(),
                ));
            }
            if let Some(prev) = claimed.get(name).cloned() {
                // One link may be created by its kind's declaration and
                // configured by `network.interface` (either order), the way
                // systemd-networkd splits a .netdev from a .network.
                let earlier = spec.links.get(name).expect("claimed links are declared");
                let creating_and_configuring =
                    (earlier.kind == KindSpec::Existing) != (d.kind == "interface");
                if !creating_and_configuring {
                    return Err(cx.err(format!("interface declared twice (first at {prev})")));
                }
                let l = parse_link(&cx, name)?;
                let merged = merge_links(earlier, &l).map_err(|m| cx.err(m))?;
                if let KindSpec::Veth { peer } = &l.kind {
                    if peer == name || claimed.contains_key(peer) || peers.contains_key(peer) {
                        return Err(cx.err(format!(
                            "key 'peer': \"{peer}\" is already declared or is this link"
                        )));
                    }
                    peers.insert(peer.clone(), d.location.clone());
                }
                spec.links.insert(name.clone(), merged);
                continue;
            }
            if d.kind != "interface" {
                if let Some(prev) = peers.get(name) {
                    return Err(cx.err(format!("name already used as a veth peer at {prev}")));
                }
            }
            let l = parse_link(&cx, name)?;
            if let KindSpec::Veth { peer } = &l.kind {
                if peer == name {
                    return Err(cx.err("key 'peer': must differ from the veth's own name".into()));
                }
                if let Some(prev) = claimed.get(peer).filter(|_| {
                    spec.links
                        .get(peer)
                        .is_some_and(|p| p.kind != KindSpec::Existing)
                }) {
                    return Err(cx.err(format!(
                        "key 'peer': \"{peer}\" is already declared at {prev}"
                    )));
                }
                if let Some(prev) = peers.get(peer) {
                    return Err(cx.err(format!(
                        "key 'peer': \"{peer}\" is already a peer at {prev}"
                    )));
                }
                peers.insert(peer.clone(), d.location.clone());
            }
            claimed.insert(name.clone(), d.location.clone());
            spec.links.insert(name.clone(), l);
        }
        // ports -> master of each port
        let masters: Vec<(String, String, String)> = spec
            .links
            .values()
            .flat_map(|l| {
                l.ports
                    .iter()
                    .map(move |p| (p.clone(), l.name.clone(), l.location.clone()))
            })
            .collect();
        for (port, master, loc) in masters {
            let mkind: String = spec
                .links
                .get(&master)
                .and_then(|m| m.kind.kind_name())
                .unwrap_or("bridge")
                .into();
            let perr = |msg: String| SpecError {
                location: loc.clone(),
                kind: mkind.clone(),
                name: Some(master.clone()),
                msg,
            };
            if port == master {
                return Err(perr(format!(
                    "key 'ports': \"{port}\" cannot be its own port"
                )));
            }
            match spec.links.get_mut(&port) {
                Some(p) => match &p.master {
                    Some(m) if *m != master => {
                        return Err(perr(format!(
                            "key 'ports': \"{port}\" already has master \"{m}\" ({})",
                            p.location
                        )))
                    }
                    _ => p.master = Some(master.clone()),
                },
                None => {
                    spec.links.insert(
                        port.clone(),
                        LinkSpec {
                            name: port.clone(),
                            kind: KindSpec::Existing,
                            up: None,
                            mtu: None,
                            mac: None,
                            master: Some(master.clone()),
                            addresses: None,
                            routes: None,
                            ports: vec![],
                            dhcp: None,
                            ipv6: None,
                            location: loc.clone(),
                        },
                    );
                }
            }
        }
        Ok(spec)
    }
}

/// One link from a creating declaration and a `network.interface` one:
/// the kind of the first, every setting of either; a setting both give with
/// different values is an error naming both places.
fn merge_links(a: &LinkSpec, b: &LinkSpec) -> Result<LinkSpec, String> {
    let created = if a.kind == KindSpec::Existing { b } else { a };
    // `a` is the earlier declaration; the error is reported at `b`'s place.
    let at = a.location.as_str();
    fn pick<T: PartialEq + Clone + fmt::Debug>(
        key: &str,
        x: &Option<T>,
        y: &Option<T>,
        at: &str,
    ) -> Result<Option<T>, String> {
        match (x, y) {
            (Some(p), Some(q)) if p != q => Err(format!(
                "key '{key}': {q:?} here conflicts with {p:?} at {at} (one link: give it once)"
            )),
            (Some(p), _) => Ok(Some(p.clone())),
            (None, q) => Ok(q.clone()),
        }
    }
    let ports = match (a.ports.is_empty(), b.ports.is_empty()) {
        (false, false) if a.ports != b.ports => {
            return Err(format!(
                "key 'ports': {:?} here conflicts with {:?} at {at}",
                b.ports, a.ports
            ))
        }
        (false, _) => a.ports.clone(),
        (true, _) => b.ports.clone(),
    };
    Ok(LinkSpec {
        name: created.name.clone(),
        kind: created.kind.clone(),
        up: pick("up", &a.up, &b.up, at)?,
        mtu: pick("mtu", &a.mtu, &b.mtu, at)?,
        mac: pick("mac", &a.mac, &b.mac, at)?,
        master: pick("master", &a.master, &b.master, at)?,
        addresses: pick("addresses", &a.addresses, &b.addresses, at)?,
        routes: pick("routes", &a.routes, &b.routes, at)?,
        dhcp: pick("dhcp", &a.dhcp, &b.dhcp, at)?,
        ipv6: pick("ipv6", &a.ipv6, &b.ipv6, at)?,
        ports,
        location: created.location.clone(),
    })
}

const LINK_KINDS: &[&str] = &[
    "interface",
    "veth",
    "bridge",
    "vlan",
    "macvlan",
    "dummy",
    "bond",
];
const COMMON_KEYS: &[&str] = &[
    "up",
    "mtu",
    "mac",
    "master",
    "addresses",
    "routes",
    "dhcp",
    "ipv6",
];
const DHCP_KEYS: &[&str] = &[
    "hostname",
    "client_id",
    "use_dns",
    "use_routes",
    "use_hostname",
    "probe",
    "release",
    "on_lease",
];
const ROUTE_KEYS: &[&str] = &["to", "via", "metric", "src", "scope", "table", "family"];

struct Cx<'a> {
    d: &'a Decl,
}

impl Cx<'_> {
    fn err(&self, msg: String) -> SpecError {
        SpecError {
            location: self.d.location.clone(),
            kind: self.d.kind.clone(),
            name: self.d.name.clone(),
            msg,
        }
    }
    fn key_err(&self, key: &str, msg: impl fmt::Display) -> SpecError {
        self.err(format!("key '{key}': {msg}"))
    }
    /// Check that every key is a known string key.
    fn check_keys(&self, t: &Table, allowed: &[&str]) -> Result<(), SpecError> {
        for pair in t.pairs::<Value, Value>() {
            let (k, _) = pair.map_err(|e| self.err(e.to_string()))?;
            match k {
                Value::String(s) => {
                    let s = s.to_string_lossy();
                    if !allowed.contains(&s.as_str()) {
                        return Err(self.err(format!(
                            "unknown key '{s}' (allowed: {})",
                            allowed.join(", ")
                        )));
                    }
                }
                other => {
                    return Err(self.err(format!(
                        "unexpected positional value ({}); use key = value",
                        other.type_name()
                    )))
                }
            }
        }
        Ok(())
    }
    fn get(&self, t: &Table, key: &str) -> Result<Value, SpecError> {
        t.raw_get::<Value>(key).map_err(|e| self.key_err(key, e))
    }
    fn opt_bool(&self, t: &Table, key: &str) -> Result<Option<bool>, SpecError> {
        match self.get(t, key)? {
            Value::Nil => Ok(None),
            Value::Boolean(b) => Ok(Some(b)),
            v => Err(self.key_err(key, format!("expected boolean, got {}", v.type_name()))),
        }
    }
    fn opt_int(&self, t: &Table, key: &str, min: i64, max: i64) -> Result<Option<i64>, SpecError> {
        let v = self.get(t, key)?;
        let n = match v {
            Value::Nil => return Ok(None),
            Value::Integer(i) => i,
            Value::Number(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => f as i64,
            v => return Err(self.key_err(key, format!("expected integer, got {}", v.type_name()))),
        };
        if n < min || n > max {
            return Err(self.key_err(key, format!("{n} out of range {min}..{max}")));
        }
        Ok(Some(n))
    }
    fn opt_str(&self, t: &Table, key: &str) -> Result<Option<String>, SpecError> {
        match self.get(t, key)? {
            Value::Nil => Ok(None),
            Value::String(s) => Ok(Some(
                s.to_str()
                    .map_err(|_| self.key_err(key, "not UTF-8"))?
                    .to_string(),
            )),
            v => Err(self.key_err(key, format!("expected string, got {}", v.type_name()))),
        }
    }
    fn opt_list(&self, t: &Table, key: &str) -> Result<Option<Vec<Value>>, SpecError> {
        match self.get(t, key)? {
            Value::Nil => Ok(None),
            Value::Table(l) => {
                let n = l.raw_len();
                let mut out = Vec::with_capacity(n);
                for i in 1..=n {
                    out.push(l.raw_get::<Value>(i).map_err(|e| self.key_err(key, e))?);
                }
                let count = l.pairs::<Value, Value>().count();
                if count != n {
                    return Err(
                        self.key_err(key, "expected a list { ... } without named keys or holes")
                    );
                }
                Ok(Some(out))
            }
            v => Err(self.key_err(key, format!("expected a list, got {}", v.type_name()))),
        }
    }
    fn opt_str_list(&self, t: &Table, key: &str) -> Result<Option<Vec<String>>, SpecError> {
        let Some(l) = self.opt_list(t, key)? else {
            return Ok(None);
        };
        let mut out = Vec::new();
        for (i, v) in l.into_iter().enumerate() {
            match v {
                Value::String(s) => out.push(s.to_string_lossy()),
                v => {
                    return Err(self.key_err(
                        key,
                        format!("item {}: expected string, got {}", i + 1, v.type_name()),
                    ))
                }
            }
        }
        Ok(Some(out))
    }
    fn ifname(&self, key: &str, s: String) -> Result<String, SpecError> {
        if valid_ifname(&s) {
            Ok(s)
        } else {
            Err(self.key_err(key, format!("invalid interface name \"{s}\"")))
        }
    }
}

fn parse_ip(cx: &Cx, key: &str, s: &str) -> Result<IpAddr, SpecError> {
    s.parse()
        .map_err(|_| cx.key_err(key, format!("bad IP address \"{s}\"")))
}

fn parse_scope(cx: &Cx, v: Value) -> Result<Option<u8>, SpecError> {
    match v {
        Value::Nil => Ok(None),
        Value::String(s) => match s.to_string_lossy().as_str() {
            "global" | "universe" => Ok(Some(RT_SCOPE_UNIVERSE)),
            "link" => Ok(Some(RT_SCOPE_LINK)),
            "host" => Ok(Some(RT_SCOPE_HOST)),
            "site" => Ok(Some(200)),
            o => Err(cx.key_err(
                "scope",
                format!("unknown scope \"{o}\" (global, link, host, site)"),
            )),
        },
        Value::Integer(i) if (0..=255).contains(&i) => Ok(Some(i as u8)),
        v => Err(cx.key_err(
            "scope",
            format!("expected scope name or 0..255, got {}", v.type_name()),
        )),
    }
}

/// Parse a route table: `{ to = "default", via = "10.0.2.2", metric = 100, ... }`.
fn parse_route(cx: &Cx, i: usize, t: &Table) -> Result<RouteSpec, SpecError> {
    let key = format!("routes[{i}]");
    let rcx = |msg: String| cx.key_err(&key, msg);
    cx.check_keys(t, ROUTE_KEYS).map_err(|e| rcx(e.msg))?;
    let to = match cx.opt_str(t, "to").map_err(|e| rcx(e.msg))? {
        None => return Err(rcx("missing 'to' (\"default\" or \"net/prefix\")".into())),
        Some(s) if s == "default" => None,
        Some(s) => Some(
            s.parse::<IpNet>()
                .map_err(|e| rcx(e.to_string()))?
                .network(),
        ),
    };
    let via = cx
        .opt_str(t, "via")
        .map_err(|e| rcx(e.msg))?
        .map(|s| parse_ip(cx, &key, &s))
        .transpose()?;
    let src = cx
        .opt_str(t, "src")
        .map_err(|e| rcx(e.msg))?
        .map(|s| parse_ip(cx, &key, &s))
        .transpose()?;
    let metric = cx
        .opt_int(t, "metric", 0, u32::MAX as i64)
        .map_err(|e| rcx(e.msg))?
        .map(|m| m as u32);
    let scope = parse_scope(cx, cx.get(t, "scope")?).map_err(|e| rcx(e.msg))?;
    let table = match cx.get(t, "table")? {
        Value::Nil => RT_TABLE_MAIN,
        Value::String(s) if s.to_string_lossy() == "main" => RT_TABLE_MAIN,
        Value::Integer(n) if (1..=u32::MAX as i64).contains(&n) && n != 255 => n as u32,
        v => {
            return Err(rcx(format!(
                "key 'table': expected \"main\" or a table id, got {v:?}"
            )))
        }
    };
    let fam_key = cx.opt_str(t, "family").map_err(|e| rcx(e.msg))?;
    let fam_decl = match fam_key.as_deref() {
        None => None,
        Some("inet") | Some("ipv4") => Some(AF_INET),
        Some("inet6") | Some("ipv6") => Some(AF_INET6),
        Some(o) => return Err(rcx(format!("key 'family': unknown \"{o}\" (inet, inet6)"))),
    };
    let fam_of = |a: &IpAddr| if a.is_ipv4() { AF_INET } else { AF_INET6 };
    let family = to
        .map(|n| n.family())
        .or(via.as_ref().map(fam_of))
        .or(src.as_ref().map(fam_of))
        .or(fam_decl)
        .unwrap_or(AF_INET);
    for (k, a) in [("via", via), ("src", src)] {
        if let Some(a) = a {
            if fam_of(&a) != family {
                return Err(rcx(format!(
                    "key '{k}': {a} is not of the route's address family"
                )));
            }
        }
    }
    if fam_decl.is_some_and(|f| f != family) {
        return Err(rcx("key 'family' contradicts the addresses".into()));
    }
    Ok(RouteSpec {
        family,
        to,
        via,
        metric,
        src,
        scope,
        table,
    })
}

fn parse_link(cx: &Cx, name: &str) -> Result<LinkSpec, SpecError> {
    let t = &cx.d.body;
    let extra: &[&str] = match cx.d.kind.as_str() {
        "veth" => &["peer"],
        "bridge" => &["ports", "stp"],
        "vlan" => &["link", "id"],
        "macvlan" => &["link", "mode"],
        "bond" => &["mode", "ports"],
        _ => &[],
    };
    let allowed: Vec<&str> = COMMON_KEYS.iter().chain(extra.iter()).copied().collect();
    cx.check_keys(t, &allowed)?;
    let mut ports = Vec::new();
    let kind = match cx.d.kind.as_str() {
        "interface" => KindSpec::Existing,
        "veth" => {
            let peer = cx
                .opt_str(t, "peer")?
                .ok_or_else(|| cx.key_err("peer", "required (the peer's name)"))?;
            KindSpec::Veth {
                peer: cx.ifname("peer", peer)?,
            }
        }
        "bridge" | "bond" => {
            for p in cx.opt_str_list(t, "ports")?.unwrap_or_default() {
                let p = cx.ifname("ports", p)?;
                if ports.contains(&p) {
                    return Err(cx.key_err("ports", format!("\"{p}\" listed twice")));
                }
                ports.push(p);
            }
            if cx.d.kind == "bridge" {
                KindSpec::Bridge {
                    stp: cx.opt_bool(t, "stp")?,
                }
            } else {
                let mode = cx.opt_str(t, "mode")?;
                if let Some(m) = &mode {
                    if !BOND_MODES.iter().any(|(n, _)| n == m) {
                        let names: Vec<&str> = BOND_MODES.iter().map(|(n, _)| *n).collect();
                        return Err(cx.key_err(
                            "mode",
                            format!("unknown bond mode \"{m}\" ({})", names.join(", ")),
                        ));
                    }
                }
                KindSpec::Bond { mode }
            }
        }
        "vlan" => {
            let link = cx
                .opt_str(t, "link")?
                .ok_or_else(|| cx.key_err("link", "required (the parent link)"))?;
            let id = cx
                .opt_int(t, "id", 1, 4094)?
                .ok_or_else(|| cx.key_err("id", "required (1..4094)"))?;
            KindSpec::Vlan {
                link: cx.ifname("link", link)?,
                id: id as u16,
            }
        }
        "macvlan" => {
            let link = cx
                .opt_str(t, "link")?
                .ok_or_else(|| cx.key_err("link", "required (the parent link)"))?;
            let mode = cx.opt_str(t, "mode")?;
            if let Some(m) = &mode {
                if !MACVLAN_MODES.iter().any(|(n, _)| n == m) {
                    let names: Vec<&str> = MACVLAN_MODES.iter().map(|(n, _)| *n).collect();
                    return Err(cx.key_err(
                        "mode",
                        format!("unknown macvlan mode \"{m}\" ({})", names.join(", ")),
                    ));
                }
            }
            KindSpec::Macvlan {
                link: cx.ifname("link", link)?,
                mode,
            }
        }
        "dummy" => KindSpec::Dummy,
        other => return Err(cx.err(format!("unknown kind {other}"))),
    };
    let mut up = cx.opt_bool(t, "up")?;
    if up.is_none() && kind != KindSpec::Existing {
        up = Some(true);
    }
    let mtu = cx.opt_int(t, "mtu", 68, 65535)?.map(|m| m as u32);
    let mac = match cx.opt_str(t, "mac")? {
        None => None,
        Some(s) => {
            Some(format_mac(&parse_mac(&s).ok_or_else(|| {
                cx.key_err("mac", format!("bad MAC address \"{s}\""))
            })?))
        }
    };
    let master = cx
        .opt_str(t, "master")?
        .map(|m| cx.ifname("master", m))
        .transpose()?;
    if master.as_deref() == Some(name) {
        return Err(cx.key_err("master", "a link cannot be its own master"));
    }
    let addresses = match cx.opt_str_list(t, "addresses")? {
        None => None,
        Some(l) => {
            let mut out: Vec<IpNet> = Vec::new();
            for s in l {
                let n: IpNet = s
                    .parse()
                    .map_err(|e: crate::addr::BadIpNet| cx.key_err("addresses", e))?;
                if out.iter().any(|o| o.addr == n.addr) {
                    return Err(cx.key_err("addresses", format!("{} listed twice", n.addr)));
                }
                out.push(n);
            }
            Some(out)
        }
    };
    let routes = match cx.opt_list(t, "routes")? {
        None => None,
        Some(l) => {
            let mut out: Vec<RouteSpec> = Vec::new();
            for (i, v) in l.into_iter().enumerate() {
                let Value::Table(rt) = v else {
                    return Err(cx.key_err(
                        "routes",
                        format!("item {}: expected a table {{ to = ... }}", i + 1),
                    ));
                };
                let r = parse_route(cx, i + 1, &rt)?;
                if out.iter().any(|o| {
                    o.family == r.family
                        && o.to == r.to
                        && o.table == r.table
                        && o.metric == r.metric
                }) {
                    return Err(cx.key_err("routes", format!("route {r} declared twice")));
                }
                out.push(r);
            }
            Some(out)
        }
    };
    let dhcp = match cx.get(t, "dhcp")? {
        Value::Nil | Value::Boolean(false) => None,
        Value::Boolean(true) => Some(crate::dhcp::DhcpConfig {
            use_dns: true,
            use_routes: true,
            probe: true,
            ..Default::default()
        }),
        Value::Table(d) => {
            for pair in d.pairs::<Value, Value>() {
                let (k, _) = pair.map_err(|e| cx.key_err("dhcp", e))?;
                let k = match k {
                    Value::String(s) => s.to_string_lossy(),
                    other => {
                        return Err(cx.key_err(
                            "dhcp",
                            format!("unexpected key of type {}", other.type_name()),
                        ))
                    }
                };
                if !DHCP_KEYS.contains(&k.as_str()) {
                    return Err(cx.key_err(
                        "dhcp",
                        format!("unknown key '{k}' (known: {})", DHCP_KEYS.join(", ")),
                    ));
                }
            }
            let hostname = cx.opt_str(&d, "hostname")?;
            if hostname
                .as_ref()
                .is_some_and(|h| h.is_empty() || h.len() > 63)
            {
                return Err(cx.key_err("dhcp", "hostname must be 1 to 63 characters"));
            }
            // The hook itself stays in the declaration's table: the init
            // takes it from there (as it takes a service's callbacks).
            match cx.get(&d, "on_lease")? {
                Value::Nil | Value::Function(_) => {}
                other => {
                    return Err(cx.key_err(
                        "dhcp",
                        format!(
                            "on_lease must be a function (ifname, lease, event), got {}",
                            other.type_name()
                        ),
                    ))
                }
            }
            Some(crate::dhcp::DhcpConfig {
                hostname,
                client_id: cx.opt_str(&d, "client_id")?.map(String::into_bytes),
                use_dns: cx.opt_bool(&d, "use_dns")?.unwrap_or(true),
                use_routes: cx.opt_bool(&d, "use_routes")?.unwrap_or(true),
                use_hostname: cx.opt_bool(&d, "use_hostname")?.unwrap_or(false),
                probe: cx.opt_bool(&d, "probe")?.unwrap_or(true),
                release: cx.opt_bool(&d, "release")?.unwrap_or(false),
            })
        }
        other => {
            return Err(cx.key_err(
                "dhcp",
                format!(
                    "must be true or a table {{ hostname = ... }}, got {}",
                    other.type_name()
                ),
            ))
        }
    };
    let ipv6 = match cx.get(t, "ipv6")? {
        Value::Nil => None,
        Value::Table(v6) => {
            cx.check_keys(&v6, &["accept_ra"])
                .map_err(|e| cx.key_err("ipv6", e.msg))?;
            Some(Ipv6Spec {
                accept_ra: cx.opt_bool(&v6, "accept_ra")?,
            })
        }
        other => {
            return Err(cx.key_err(
                "ipv6",
                format!(
                    "must be a table {{ accept_ra = true }}, got {}",
                    other.type_name()
                ),
            ))
        }
    };
    Ok(LinkSpec {
        name: name.to_string(),
        kind,
        up,
        mtu,
        mac,
        master,
        addresses,
        routes,
        ports,
        dhcp,
        ipv6,
        location: cx.d.location.clone(),
    })
}

fn parse_dns(cx: &Cx) -> Result<DnsSpec, SpecError> {
    let t = &cx.d.body;
    cx.check_keys(t, &["nameservers", "search", "options"])?;
    let mut d = DnsSpec {
        location: cx.d.location.clone(),
        ..DnsSpec::default()
    };
    for s in cx.opt_str_list(t, "nameservers")?.unwrap_or_default() {
        d.nameservers.push(parse_ip(cx, "nameservers", &s)?);
    }
    for s in cx.opt_str_list(t, "search")?.unwrap_or_default() {
        if s.is_empty() || s.bytes().any(|b| b.is_ascii_whitespace()) {
            return Err(cx.key_err("search", format!("bad domain \"{s}\"")));
        }
        d.search.push(s);
    }
    for s in cx.opt_str_list(t, "options")?.unwrap_or_default() {
        if s.is_empty() || s.bytes().any(|b| b.is_ascii_whitespace()) {
            return Err(cx.key_err("options", format!("bad option \"{s}\"")));
        }
        d.options.push(s);
    }
    Ok(d)
}
