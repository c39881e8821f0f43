//! The Lua module `net` (and the ljsyscall-compatible `syscall.nl`): link handles
//! as userdata objects, address and route tables, the event socket, and the
//! scheduler-aware `wait_link` / `wait_address` (written in Lua, `net.lua`, so
//! they can yield). Conventions: wrong argument types raise; OS failures return
//! `nil, err` where `err.errno`, `err.sym` ("EXIST"), `err.EXIST` (true) and
//! `tostring(err)` (naming the interface) are available.

use std::net::IpAddr;
use std::time::Duration;

use mlua::{
    AnyUserData, IntoLua, IntoLuaMulti, Lua, MetaMethod, MultiValue, Table, UserData,
    UserDataFields, UserDataMethods, Value,
};

use crate::addr::{AddrOpts, Address, IpNet};
use crate::consts::*;
use crate::error::NetError;
use crate::events::{Event, EventSocket};
use crate::link::{parse_mac, valid_ifname, Link, LinkChange, LinkKind, LinkRef, Netns, NewLink};
use crate::route::Route;
use crate::socket::Handle;

const NET_LUA: &str = include_str!("net.lua");
const NL_LUA: &str = include_str!("nl.lua");

/// Install `package.preload["net"]` and `package.preload["syscall.nl"]`.
pub fn register(lua: &Lua) -> mlua::Result<()> {
    lua.set_app_data(NetState { h: None });
    let preload: Table = lua.globals().get::<Table>("package")?.get("preload")?;
    preload.set("net", lua.create_function(|lua, ()| build_net(lua))?)?;
    preload.set(
        "syscall.nl",
        lua.create_function(|lua, ()| {
            let net: Table = lua
                .globals()
                .get::<mlua::Function>("require")?
                .call("net")?;
            lua.load(NL_LUA).set_name("=syscall.nl").call::<Table>(net)
        })?,
    )?;
    Ok(())
}

struct NetState {
    h: Option<Handle>,
}

/// The Lua registry key of the DHCP leases the init holds: a table by
/// interface name of the tables [`lease_table`] makes (`net.lease` reads it;
/// outside the init it does not exist and `net.lease` returns nil).
pub const LEASES_KEY: &str = "moonlit.net.leases";

fn mono_ms() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1000 + t.tv_nsec as u64 / 1_000_000
}

/// A lease as Lua sees it: `address`, `prefix`, `cidr`, `server`,
/// `router` (the first), `routers`, `dns`, `search`, `hostname`, `mtu`,
/// `lease` / `t1` / `t2` (seconds from when it was obtained), and
/// `expires_in` / `t1_in` / `t2_in` (seconds from now, at least 0).
pub fn lease_table(lua: &Lua, l: &crate::dhcp::Lease) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("address", l.address.to_string())?;
    t.set("prefix", l.prefix)?;
    t.set("cidr", format!("{}/{}", l.address, l.prefix))?;
    t.set("server", l.server.to_string())?;
    if let Some(r) = l.routers.first() {
        t.set("router", r.to_string())?;
    }
    let list = |v: Vec<String>| lua.create_sequence_from(v);
    t.set(
        "routers",
        list(l.routers.iter().map(|x| x.to_string()).collect())?,
    )?;
    t.set("dns", list(l.dns.iter().map(|x| x.to_string()).collect())?)?;
    t.set("search", list(l.search.clone())?)?;
    if let Some(h) = &l.hostname {
        t.set("hostname", h.as_str())?;
    }
    if let Some(m) = l.mtu {
        t.set("mtu", m)?;
    }
    t.set("lease", l.lease_secs)?;
    t.set("t1", l.t1_secs)?;
    t.set("t2", l.t2_secs)?;
    t.set("_start_ms", l.start_ms)?;
    refresh_lease_times(&t)?;
    Ok(t)
}

/// Recomputes `expires_in`, `t1_in`, `t2_in` of a lease table for now.
fn refresh_lease_times(t: &Table) -> mlua::Result<()> {
    let start: u64 = t.get("_start_ms")?;
    let now = mono_ms();
    for (key, secs) in [("expires_in", "lease"), ("t1_in", "t1"), ("t2_in", "t2")] {
        let s: u64 = t.get(secs)?;
        let left = (start + s * 1000).saturating_sub(now);
        t.set(key, left as f64 / 1000.0)?;
    }
    Ok(())
}

/// Records (or with `None` forgets) the lease of `ifname` for `net.lease`.
pub fn publish_lease(
    lua: &Lua,
    ifname: &str,
    lease: Option<&crate::dhcp::Lease>,
) -> mlua::Result<()> {
    let all = match lua.named_registry_value::<Option<Table>>(LEASES_KEY)? {
        Some(t) => t,
        None => {
            let t = lua.create_table()?;
            lua.set_named_registry_value(LEASES_KEY, &t)?;
            t
        }
    };
    match lease {
        Some(l) => all.set(ifname, lease_table(lua, l)?),
        None => all.set(ifname, Value::Nil),
    }
}

fn with_handle<R>(
    lua: &Lua,
    f: impl FnOnce(&mut Handle) -> Result<R, NetError>,
) -> mlua::Result<Result<R, NetError>> {
    let mut st = match lua.try_app_data_mut::<NetState>() {
        Ok(Some(st)) => st,
        Ok(None) => {
            return Err(mlua::Error::runtime(
                "net: module state missing (net::register not called)",
            ))
        }
        Err(_) => return Err(mlua::Error::runtime("net: re-entrant call")),
    };
    if let Some(h) = st.h.as_mut() {
        return Ok(f(h));
    }
    let mut h = match Handle::new() {
        Ok(h) => h,
        Err(e) => return Ok(Err(e)),
    };
    let r = f(&mut h);
    st.h = Some(h);
    Ok(r)
}

/// Lua error object for OS/netlink failures.
#[derive(Debug, Clone)]
pub struct LuaNetError {
    pub errno: i32,
    pub sym: &'static str,
    pub msg: String,
}

impl From<&NetError> for LuaNetError {
    fn from(e: &NetError) -> Self {
        LuaNetError {
            errno: e.errno(),
            sym: e.sym(),
            msg: e.to_string(),
        }
    }
}

impl UserData for LuaNetError {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_meta_method(MetaMethod::ToString, |_, this, ()| Ok(this.msg.clone()));
        m.add_meta_method(
            MetaMethod::Index,
            |lua, this, key: String| -> mlua::Result<Value> {
                match key.as_str() {
                    "errno" => Ok(Value::Integer(this.errno as i64)),
                    "sym" => this.sym.into_lua(lua),
                    "msg" | "message" => this.msg.clone().into_lua(lua),
                    k if !k.is_empty()
                        && k.bytes()
                            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()) =>
                    {
                        Ok(Value::Boolean(
                            k == this.sym || (k.starts_with('E') && &k[1..] == this.sym),
                        ))
                    }
                    _ => Ok(Value::Nil),
                }
            },
        );
    }
}

fn fail(lua: &Lua, e: NetError) -> mlua::Result<MultiValue> {
    (Value::Nil, LuaNetError::from(&e)).into_lua_multi(lua)
}

fn ok_or_fail<T: IntoLua>(lua: &Lua, r: Result<T, NetError>) -> mlua::Result<MultiValue> {
    match r {
        Ok(v) => v.into_lua_multi(lua),
        Err(e) => fail(lua, e),
    }
}

fn bad_arg(msg: impl std::fmt::Display) -> mlua::Error {
    mlua::Error::runtime(format!("bad argument: {msg}"))
}

/// A link handle: the last snapshot of the link plus methods acting on it.
pub struct LuaLink(pub Link);

impl UserData for LuaLink {
    fn add_fields<F: UserDataFields<Self>>(f: &mut F) {
        f.add_field_method_get("name", |_, t| Ok(t.0.name.clone()));
        f.add_field_method_get("index", |_, t| Ok(t.0.index));
        f.add_field_method_get("flags", |_, t| Ok(t.0.flags));
        f.add_field_method_get("is_up", |_, t| Ok(t.0.up));
        f.add_field_method_get("carrier", |_, t| Ok(t.0.carrier));
        f.add_field_method_get("running", |_, t| Ok(t.0.flags & IFF_RUNNING != 0));
        f.add_field_method_get("operstate", |_, t| Ok(operstate_name(t.0.operstate)));
        f.add_field_method_get("mtu", |_, t| Ok(t.0.mtu));
        f.add_field_method_get("mac", |_, t| Ok(t.0.mac.clone()));
        f.add_field_method_get("kind", |_, t| Ok(t.0.kind.clone()));
        f.add_field_method_get("master", |_, t| Ok(t.0.master));
        f.add_field_method_get("parent", |_, t| Ok(t.0.parent));
        f.add_field_method_get("stats", |lua, t| match &t.0.stats {
            None => Ok(Value::Nil),
            Some(s) => Ok(Value::Table(lua.create_table_from([
                ("rx_packets", s.rx_packets),
                ("tx_packets", s.tx_packets),
                ("rx_bytes", s.rx_bytes),
                ("tx_bytes", s.tx_bytes),
                ("rx_errors", s.rx_errors),
                ("tx_errors", s.tx_errors),
                ("rx_dropped", s.rx_dropped),
                ("tx_dropped", s.tx_dropped),
            ])?)),
        });
    }

    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_meta_method(MetaMethod::ToString, |_, t, ()| {
            Ok(format!(
                "link {} (index {}, {}, mtu {}{})",
                t.0.name,
                t.0.index,
                if t.0.up { "up" } else { "down" },
                t.0.mtu,
                t.0.kind
                    .as_ref()
                    .map(|k| format!(", {k}"))
                    .unwrap_or_default()
            ))
        });
        m.add_meta_method(MetaMethod::Eq, |_, a, b: AnyUserData| {
            Ok(b.borrow::<LuaLink>()
                .map(|b| b.0.index == a.0.index)
                .unwrap_or(false))
        });
        m.add_function("up", |lua, ud: AnyUserData| {
            set_and_refresh(
                lua,
                ud,
                LinkChange {
                    up: Some(true),
                    ..Default::default()
                },
            )
        });
        m.add_function("down", |lua, ud: AnyUserData| {
            set_and_refresh(
                lua,
                ud,
                LinkChange {
                    up: Some(false),
                    ..Default::default()
                },
            )
        });
        m.add_function("set_mtu", |lua, (ud, mtu): (AnyUserData, i64)| {
            let mtu = u32::try_from(mtu).map_err(|_| bad_arg(format!("mtu {mtu} out of range")))?;
            set_and_refresh(
                lua,
                ud,
                LinkChange {
                    mtu: Some(mtu),
                    ..Default::default()
                },
            )
        });
        m.add_function("set_mac", |lua, (ud, mac): (AnyUserData, String)| {
            let mac = parse_mac(&mac).ok_or_else(|| bad_arg(format!("bad MAC address {mac:?}")))?;
            set_and_refresh(
                lua,
                ud,
                LinkChange {
                    mac: Some(mac),
                    ..Default::default()
                },
            )
        });
        m.add_function("rename", |lua, (ud, name): (AnyUserData, String)| {
            check_name(&name)?;
            set_and_refresh(
                lua,
                ud,
                LinkChange {
                    name: Some(name),
                    ..Default::default()
                },
            )
        });
        m.add_function("set_master", |lua, (ud, master): (AnyUserData, Value)| {
            let master = match master {
                Value::Nil | Value::Boolean(false) => None,
                v => match link_ref_of(v)? {
                    LinkRef::Index(i) => Some(i),
                    r => match with_handle(lua, |h| h.link(&r).map(|l| l.index))? {
                        Ok(i) => Some(i),
                        Err(e) => return fail(lua, e),
                    },
                },
            };
            set_and_refresh(
                lua,
                ud,
                LinkChange {
                    master: Some(master),
                    ..Default::default()
                },
            )
        });
        m.add_function("set", |lua, (ud, t): (AnyUserData, Table)| {
            let mut c = LinkChange::default();
            check_keys(&t, &["up", "mtu", "mac", "name", "master", "netns"], "set")?;
            c.up = t.get::<Option<bool>>("up")?;
            if let Some(m) = t.get::<Option<i64>>("mtu")? {
                c.mtu =
                    Some(u32::try_from(m).map_err(|_| bad_arg(format!("mtu {m} out of range")))?);
            }
            if let Some(s) = t.get::<Option<String>>("mac")? {
                c.mac =
                    Some(parse_mac(&s).ok_or_else(|| bad_arg(format!("bad MAC address {s:?}")))?);
            }
            if let Some(n) = t.get::<Option<String>>("name")? {
                check_name(&n)?;
                c.name = Some(n);
            }
            match t.get::<Value>("master")? {
                Value::Nil => {}
                Value::Boolean(false) => c.master = Some(None),
                v => {
                    let r = link_ref_of(v)?;
                    match with_handle(lua, |h| h.link(&r).map(|l| l.index))? {
                        Ok(i) => c.master = Some(Some(i)),
                        Err(e) => return fail(lua, e),
                    }
                }
            }
            let ns = netns_of(t.get::<Value>("netns")?)?;
            let _keep;
            if let Some((ns, file)) = ns {
                c.netns = Some(ns);
                _keep = file;
            }
            set_and_refresh(lua, ud, c)
        });
        m.add_function("move_to", |lua, (ud, ns): (AnyUserData, Value)| {
            let Some((ns, _file)) = netns_of(ns)? else {
                return Err(bad_arg(
                    "move_to needs a pid or {pid=...}/{fd=...}/{path=...}",
                ));
            };
            let (idx, name) = {
                let l = ud.borrow::<LuaLink>()?;
                (l.0.index, l.0.name.clone())
            };
            let r = with_handle(lua, |h| {
                h.set_link(
                    idx,
                    &LinkChange {
                        netns: Some(ns),
                        ..Default::default()
                    },
                    &name,
                )
            })?;
            ok_or_fail(lua, r.map(|_| true))
        });
        m.add_function("delete", |lua, ud: AnyUserData| {
            let (idx, name) = {
                let l = ud.borrow::<LuaLink>()?;
                (l.0.index, l.0.name.clone())
            };
            let r = with_handle(lua, |h| h.delete_link(idx, &name))?;
            ok_or_fail(lua, r.map(|_| true))
        });
        m.add_function("refresh", |lua, ud: AnyUserData| {
            let idx = ud.borrow::<LuaLink>()?.0.index;
            match with_handle(lua, |h| h.link(&LinkRef::Index(idx)))? {
                Ok(l) => {
                    ud.borrow_mut::<LuaLink>()?.0 = l;
                    ud.into_lua_multi(lua)
                }
                Err(e) => fail(lua, e),
            }
        });
        m.add_function(
            "add_address",
            |lua, (ud, a, opts): (AnyUserData, String, Option<Table>)| {
                addr_op(lua, ud, &a, opts, AddrOp::Add)
            },
        );
        m.add_function(
            "replace_address",
            |lua, (ud, a, opts): (AnyUserData, String, Option<Table>)| {
                addr_op(lua, ud, &a, opts, AddrOp::Replace)
            },
        );
        m.add_function("del_address", |lua, (ud, a): (AnyUserData, String)| {
            addr_op(lua, ud, &a, None, AddrOp::Del)
        });
        m.add_function("addresses", |lua, (ud, fam): (AnyUserData, Value)| {
            let fam = family_of(fam)?;
            let (idx, name) = {
                let l = ud.borrow::<LuaLink>()?;
                (l.0.index, l.0.name.clone())
            };
            match with_handle(lua, |h| h.addresses(fam))? {
                Ok(list) => {
                    let t = lua.create_table()?;
                    for a in list.iter().filter(|a| a.index == idx) {
                        t.push(addr_table(lua, a, Some(&name))?)?;
                    }
                    t.into_lua_multi(lua)
                }
                Err(e) => fail(lua, e),
            }
        });
    }
}

fn operstate_name(s: u8) -> &'static str {
    match s {
        1 => "notpresent",
        2 => "down",
        3 => "lowerlayerdown",
        4 => "testing",
        5 => "dormant",
        6 => "up",
        _ => "unknown",
    }
}

fn check_name(n: &str) -> mlua::Result<()> {
    if valid_ifname(n) {
        Ok(())
    } else {
        Err(bad_arg(format!("invalid interface name {n:?}")))
    }
}

fn check_keys(t: &Table, allowed: &[&str], what: &str) -> mlua::Result<()> {
    for pair in t.pairs::<Value, Value>() {
        let (k, _) = pair?;
        let ok = match &k {
            Value::String(s) => allowed.contains(&s.to_string_lossy().as_str()),
            _ => false,
        };
        if !ok {
            return Err(bad_arg(format!(
                "{what}: unknown key {} (allowed: {})",
                match k {
                    Value::String(s) => format!("'{}'", s.to_string_lossy()),
                    other => format!("of type {}", other.type_name()),
                },
                allowed.join(", ")
            )));
        }
    }
    Ok(())
}

fn link_ref_of(v: Value) -> mlua::Result<LinkRef> {
    match v {
        Value::String(s) => {
            let s = s.to_str()?.to_string();
            check_name(&s)?;
            Ok(LinkRef::Name(s))
        }
        Value::Integer(i) if i > 0 && i <= u32::MAX as i64 => Ok(LinkRef::Index(i as u32)),
        Value::UserData(ud) => Ok(LinkRef::Index(ud.borrow::<LuaLink>()?.0.index)),
        v => Err(bad_arg(format!(
            "expected an interface name, index or link, got {}",
            v.type_name()
        ))),
    }
}

/// A namespace argument: pid number, `{pid=}`, `{fd=}` or `{path=}` (opened here,
/// kept open by the returned file for the duration of the call).
fn netns_of(v: Value) -> mlua::Result<Option<(Netns, Option<std::fs::File>)>> {
    use std::os::fd::AsRawFd;
    match v {
        Value::Nil => Ok(None),
        Value::Integer(p) if p > 0 && p <= u32::MAX as i64 => {
            Ok(Some((Netns::Pid(p as u32), None)))
        }
        Value::Table(t) => {
            check_keys(&t, &["pid", "fd", "path"], "netns")?;
            if let Some(p) = t.get::<Option<u32>>("pid")? {
                return Ok(Some((Netns::Pid(p), None)));
            }
            if let Some(fd) = t.get::<Option<i32>>("fd")? {
                if fd < 0 {
                    return Err(bad_arg("netns fd must be >= 0"));
                }
                return Ok(Some((Netns::Fd(fd), None)));
            }
            if let Some(path) = t.get::<Option<String>>("path")? {
                let f = std::fs::File::open(&path)
                    .map_err(|e| mlua::Error::runtime(format!("open netns {path}: {e}")))?;
                return Ok(Some((Netns::Fd(f.as_raw_fd()), Some(f))));
            }
            Err(bad_arg("netns table needs pid, fd or path"))
        }
        v => Err(bad_arg(format!(
            "expected a pid or a netns table, got {}",
            v.type_name()
        ))),
    }
}

fn family_of(v: Value) -> mlua::Result<Option<u8>> {
    match v {
        Value::Nil => Ok(None),
        Value::Integer(4) => Ok(Some(AF_INET)),
        Value::Integer(6) => Ok(Some(AF_INET6)),
        Value::String(s) => match s.to_string_lossy().as_str() {
            "inet" | "inet4" | "ipv4" => Ok(Some(AF_INET)),
            "inet6" | "ipv6" => Ok(Some(AF_INET6)),
            "any" | "all" => Ok(None),
            o => Err(bad_arg(format!(
                "unknown address family {o:?} (inet, inet6)"
            ))),
        },
        v => Err(bad_arg(format!(
            "expected an address family, got {}",
            v.type_name()
        ))),
    }
}

fn family_name(f: u8) -> &'static str {
    if f == AF_INET6 {
        "inet6"
    } else {
        "inet"
    }
}

fn scope_value(lua: &Lua, s: u8) -> mlua::Result<Value> {
    match s {
        RT_SCOPE_UNIVERSE => "global".into_lua(lua),
        200 => "site".into_lua(lua),
        RT_SCOPE_LINK => "link".into_lua(lua),
        RT_SCOPE_HOST => "host".into_lua(lua),
        255 => "nowhere".into_lua(lua),
        n => Ok(Value::Integer(n as i64)),
    }
}

fn parse_scope(v: Value) -> mlua::Result<Option<u8>> {
    match v {
        Value::Nil => Ok(None),
        Value::String(s) => match s.to_string_lossy().as_str() {
            "global" | "universe" => Ok(Some(RT_SCOPE_UNIVERSE)),
            "site" => Ok(Some(200)),
            "link" => Ok(Some(RT_SCOPE_LINK)),
            "host" => Ok(Some(RT_SCOPE_HOST)),
            o => Err(bad_arg(format!(
                "unknown scope {o:?} (global, site, link, host)"
            ))),
        },
        Value::Integer(n) if (0..=255).contains(&n) => Ok(Some(n as u8)),
        v => Err(bad_arg(format!("expected a scope, got {}", v.type_name()))),
    }
}

fn addr_table(lua: &Lua, a: &Address, link: Option<&str>) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("address", a.net.addr.to_string())?;
    t.set("prefix", a.net.prefix)?;
    t.set("cidr", a.net.to_string())?;
    t.set("family", family_name(a.net.family()))?;
    t.set("index", a.index)?;
    if let Some(l) = link {
        t.set("link", l)?;
    }
    if let Some(b) = a.broadcast {
        t.set("broadcast", b.to_string())?;
    }
    if let Some(p) = a.peer {
        t.set("peer", p.to_string())?;
    }
    t.set("scope", scope_value(lua, a.scope)?)?;
    t.set("flags", a.flags)?;
    t.set("permanent", a.permanent())?;
    t.set("tentative", a.tentative())?;
    if let Some(l) = &a.label {
        t.set("label", l.as_str())?;
    }
    Ok(t)
}

enum AddrOp {
    Add,
    Replace,
    Del,
}

fn parse_ipnet(s: &str) -> mlua::Result<IpNet> {
    s.parse::<IpNet>().map_err(bad_arg)
}

fn addr_op(
    lua: &Lua,
    ud: AnyUserData,
    a: &str,
    opts: Option<Table>,
    op: AddrOp,
) -> mlua::Result<MultiValue> {
    let net = parse_ipnet(a)?;
    let mut o = AddrOpts::default();
    if let Some(t) = opts {
        check_keys(&t, &["broadcast", "nodad", "scope"], "address options")?;
        match t.get::<Value>("broadcast")? {
            Value::Nil | Value::Boolean(true) => {}
            Value::Boolean(false) => o.no_broadcast = true,
            Value::String(s) => {
                o.broadcast = Some(
                    s.to_str()?
                        .parse()
                        .map_err(|_| bad_arg("broadcast: expected an IPv4 address"))?,
                )
            }
            v => {
                return Err(bad_arg(format!(
                    "broadcast: expected string or boolean, got {}",
                    v.type_name()
                )))
            }
        }
        o.nodad = t.get::<Option<bool>>("nodad")?.unwrap_or(false);
        o.scope = parse_scope(t.get::<Value>("scope")?)?;
    }
    let (idx, name) = {
        let l = ud.borrow::<LuaLink>()?;
        (l.0.index, l.0.name.clone())
    };
    let r = with_handle(lua, |h| match op {
        AddrOp::Add => h.add_address(idx, &net, &o, &name),
        AddrOp::Replace => h.replace_address(idx, &net, &o, &name),
        AddrOp::Del => h.del_address(idx, &net, &name),
    })?;
    match r {
        Ok(()) => ud.into_lua_multi(lua),
        Err(e) => fail(lua, e),
    }
}

fn set_and_refresh(lua: &Lua, ud: AnyUserData, c: LinkChange) -> mlua::Result<MultiValue> {
    let (idx, name) = {
        let l = ud.borrow::<LuaLink>()?;
        (l.0.index, l.0.name.clone())
    };
    let leaving = c.netns.is_some();
    let r = with_handle(lua, |h| {
        h.set_link(idx, &c, &name)?;
        if leaving {
            return Ok(None);
        }
        h.link(&LinkRef::Index(idx)).map(Some)
    })?;
    match r {
        Ok(Some(l)) => {
            ud.borrow_mut::<LuaLink>()?.0 = l;
            ud.into_lua_multi(lua)
        }
        Ok(None) => ud.into_lua_multi(lua),
        Err(e) => fail(lua, e),
    }
}

fn route_table(lua: &Lua, r: &Route, names: &[Link]) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("to", r.dst_text())?;
    t.set("family", family_name(r.family))?;
    if let Some(d) = &r.dst {
        t.set("dst_len", d.prefix)?;
    } else {
        t.set("dst_len", 0)?;
    }
    if let Some(g) = r.gateway {
        t.set("via", g.to_string())?;
    }
    if let Some(o) = r.oif {
        t.set("oif", o)?;
        if let Some(l) = names.iter().find(|l| l.index == o) {
            t.set("dev", l.name.as_str())?;
        }
    }
    if let Some(m) = r.metric {
        t.set("metric", m)?;
    }
    if let Some(s) = r.prefsrc {
        t.set("src", s.to_string())?;
    }
    t.set("scope", scope_value(lua, r.scope.unwrap_or(0))?)?;
    t.set("table", r.table)?;
    let proto: Value = match r.protocol {
        RTPROT_KERNEL => "kernel".into_lua(lua)?,
        RTPROT_BOOT => "boot".into_lua(lua)?,
        RTPROT_STATIC => "static".into_lua(lua)?,
        16 => "dhcp".into_lua(lua)?,
        9 => "ra".into_lua(lua)?,
        n => Value::Integer(n as i64),
    };
    t.set("protocol", proto)?;
    let kind: Value = match r.kind {
        1 => "unicast".into_lua(lua)?,
        2 => "local".into_lua(lua)?,
        3 => "broadcast".into_lua(lua)?,
        4 => "anycast".into_lua(lua)?,
        5 => "multicast".into_lua(lua)?,
        6 => "blackhole".into_lua(lua)?,
        7 => "unreachable".into_lua(lua)?,
        8 => "prohibit".into_lua(lua)?,
        n => Value::Integer(n as i64),
    };
    t.set("type", kind)?;
    Ok(t)
}

fn parse_table_id(v: Value, all_ok: bool) -> mlua::Result<Option<u32>> {
    match v {
        Value::Nil => Ok(Some(RT_TABLE_MAIN)),
        Value::String(s) => match s.to_string_lossy().as_str() {
            "main" => Ok(Some(RT_TABLE_MAIN)),
            "local" => Ok(Some(RT_TABLE_LOCAL)),
            "default" => Ok(Some(253)),
            "all" if all_ok => Ok(None),
            o => Err(bad_arg(format!("unknown routing table {o:?}"))),
        },
        Value::Integer(n) if n > 0 && n <= u32::MAX as i64 => Ok(Some(n as u32)),
        v => Err(bad_arg(format!(
            "expected a table id, got {}",
            v.type_name()
        ))),
    }
}

/// `{to=, via=, dev=, metric=, src=, scope=, table=, family=}` -> Route (+ label).
fn route_of(lua: &Lua, t: &Table) -> mlua::Result<Result<(Route, String), NetError>> {
    check_keys(
        t,
        &[
            "to", "via", "dev", "metric", "src", "scope", "table", "family", "type",
        ],
        "route",
    )?;
    let to: String = t
        .get::<Option<String>>("to")?
        .ok_or_else(|| bad_arg("route needs 'to' (\"default\" or \"net/prefix\")"))?;
    let dst = if to == "default" {
        None
    } else {
        Some(parse_ipnet(&to)?.network())
    };
    let ip = |k: &str| -> mlua::Result<Option<IpAddr>> {
        match t.get::<Option<String>>(k)? {
            None => Ok(None),
            Some(s) => {
                Ok(Some(s.parse().map_err(|_| {
                    bad_arg(format!("{k}: bad IP address {s:?}"))
                })?))
            }
        }
    };
    let via = ip("via")?;
    let src = ip("src")?;
    let fam_decl = family_of(t.get::<Value>("family")?)?;
    let fam = |a: &IpAddr| if a.is_ipv4() { AF_INET } else { AF_INET6 };
    let family = dst
        .map(|d| d.family())
        .or(via.as_ref().map(fam))
        .or(src.as_ref().map(fam))
        .or(fam_decl)
        .unwrap_or(AF_INET);
    if via.as_ref().is_some_and(|v| fam(v) != family)
        || src.as_ref().is_some_and(|v| fam(v) != family)
    {
        return Err(bad_arg("route: addresses of different families"));
    }
    let mut r = Route::new(family, dst);
    r.gateway = via;
    r.prefsrc = src;
    if let Some(m) = t.get::<Option<i64>>("metric")? {
        r.metric = Some(u32::try_from(m).map_err(|_| bad_arg(format!("metric {m} out of range")))?);
    }
    r.scope = parse_scope(t.get::<Value>("scope")?)?;
    r.table = parse_table_id(t.get::<Value>("table")?, false)?.unwrap_or(RT_TABLE_MAIN);
    if let Some(k) = t.get::<Option<String>>("type")? {
        r.kind = match k.as_str() {
            "unicast" => 1,
            "blackhole" => 6,
            "unreachable" => 7,
            "prohibit" => 8,
            o => return Err(bad_arg(format!("unsupported route type {o:?}"))),
        };
    }
    let mut label = r.dst_text();
    if let Some(g) = via {
        label.push_str(&format!(" via {g}"));
    }
    match t.get::<Value>("dev")? {
        Value::Nil => {}
        v => {
            let lr = link_ref_of(v)?;
            match with_handle(lua, |h| h.link(&lr))? {
                Ok(l) => {
                    r.oif = Some(l.index);
                    label.push_str(&format!(" dev {}", l.name));
                }
                Err(e) => return Ok(Err(e)),
            }
        }
    }
    Ok(Ok((r, label)))
}

/// The event socket as a Lua object.
pub struct LuaEvents(Option<EventSocket>);

fn event_table(lua: &Lua, e: &Event) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    match e {
        Event::NewLink(l) | Event::DelLink(l) => {
            t.set(
                "type",
                if matches!(e, Event::NewLink(_)) {
                    "newlink"
                } else {
                    "dellink"
                },
            )?;
            t.set("name", l.name.as_str())?;
            t.set("index", l.index)?;
            t.set("up", l.up)?;
            t.set("carrier", l.carrier)?;
        }
        Event::NewAddr(a) | Event::DelAddr(a) => {
            t.set(
                "type",
                if matches!(e, Event::NewAddr(_)) {
                    "newaddr"
                } else {
                    "deladdr"
                },
            )?;
            t.set("index", a.index)?;
            t.set("address", a.net.to_string())?;
            t.set("family", family_name(a.net.family()))?;
            t.set("tentative", a.tentative())?;
        }
        Event::Overrun => t.set("type", "overrun")?,
    }
    Ok(t)
}

impl UserData for LuaEvents {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_method("fd", |_, this, ()| {
            use std::os::fd::{AsFd, AsRawFd};
            Ok(this.0.as_ref().map(|s| s.as_fd().as_raw_fd()))
        });
        m.add_method("wait", |lua, this, timeout: Option<f64>| {
            let Some(s) = &this.0 else {
                return Err(mlua::Error::runtime("event socket is closed"));
            };
            let d = match timeout {
                None => None,
                Some(t) if t.is_finite() && t >= 0.0 => Some(Duration::from_secs_f64(t.min(1.0e9))),
                Some(t) => return Err(bad_arg(format!("timeout {t} must be >= 0"))),
            };
            ok_or_fail(lua, s.wait(d))
        });
        m.add_method_mut("read", |lua, this, ()| {
            let Some(s) = &mut this.0 else {
                return Err(mlua::Error::runtime("event socket is closed"));
            };
            match s.drain() {
                Ok(evs) => {
                    let t = lua.create_table()?;
                    for e in &evs {
                        t.push(event_table(lua, e)?)?;
                    }
                    t.into_lua_multi(lua)
                }
                Err(e) => fail(lua, e),
            }
        });
        m.add_method_mut("close", |_, this, ()| {
            this.0 = None;
            Ok(true)
        });
        m.add_meta_method_mut(MetaMethod::Close, |_, this, ()| {
            this.0 = None;
            Ok(())
        });
    }
}

fn build_net(lua: &Lua) -> mlua::Result<Table> {
    let m = lua.create_table()?;
    m.set(
        "link",
        lua.create_function(|lua, v: Value| {
            let r = link_ref_of(v)?;
            ok_or_fail(lua, with_handle(lua, |h| h.link(&r))?.map(LuaLink))
        })?,
    )?;
    m.set(
        "links",
        lua.create_function(|lua, ()| match with_handle(lua, |h| h.links())? {
            Ok(ls) => {
                let t = lua.create_table()?;
                for l in ls {
                    t.push(LuaLink(l))?;
                }
                t.into_lua_multi(lua)
            }
            Err(e) => fail(lua, e),
        })?,
    )?;
    m.set("create", lua.create_function(create)?)?;
    m.set(
        "addresses",
        lua.create_function(|lua, opts: Option<Table>| {
            let (fam, link) = match &opts {
                None => (None, None),
                Some(t) => {
                    check_keys(t, &["family", "link"], "addresses")?;
                    (
                        family_of(t.get::<Value>("family")?)?,
                        match t.get::<Value>("link")? {
                            Value::Nil => None,
                            v => Some(link_ref_of(v)?),
                        },
                    )
                }
            };
            let r = with_handle(lua, |h| {
                let links = h.links()?;
                let addrs = h.addresses(fam)?;
                Ok((links, addrs))
            })?;
            match r {
                Ok((links, addrs)) => {
                    let t = lua.create_table()?;
                    for a in &addrs {
                        let name = links
                            .iter()
                            .find(|l| l.index == a.index)
                            .map(|l| l.name.as_str());
                        let keep = match &link {
                            None => true,
                            Some(LinkRef::Index(i)) => a.index == *i,
                            Some(LinkRef::Name(n)) => name == Some(n.as_str()),
                        };
                        if keep {
                            t.push(addr_table(lua, a, name)?)?;
                        }
                    }
                    t.into_lua_multi(lua)
                }
                Err(e) => fail(lua, e),
            }
        })?,
    )?;
    m.set(
        "routes",
        lua.create_function(|lua, opts: Option<Table>| {
            let (fam, table, dev) = match &opts {
                None => (None, Some(RT_TABLE_MAIN), None),
                Some(t) => {
                    check_keys(t, &["family", "table", "dev"], "routes")?;
                    let dev = match t.get::<Value>("dev")? {
                        Value::Nil => None,
                        v => Some(link_ref_of(v)?),
                    };
                    (
                        family_of(t.get::<Value>("family")?)?,
                        parse_table_id(t.get::<Value>("table")?, true)?,
                        dev,
                    )
                }
            };
            let r = with_handle(lua, |h| Ok((h.links()?, h.routes(fam, table)?)))?;
            match r {
                Ok((links, routes)) => {
                    let dev_idx = match &dev {
                        None => None,
                        Some(LinkRef::Index(i)) => Some(*i),
                        Some(LinkRef::Name(n)) => Some(
                            links
                                .iter()
                                .find(|l| &l.name == n)
                                .map(|l| l.index)
                                .unwrap_or(0),
                        ),
                    };
                    let t = lua.create_table()?;
                    for r in routes
                        .iter()
                        .filter(|r| dev_idx.is_none() || r.oif == dev_idx)
                    {
                        t.push(route_table(lua, r, &links)?)?;
                    }
                    t.into_lua_multi(lua)
                }
                Err(e) => fail(lua, e),
            }
        })?,
    )?;
    for (name, op) in [("add_route", 0u8), ("replace_route", 1), ("del_route", 2)] {
        m.set(
            name,
            lua.create_function(move |lua, t: Table| {
                let (r, label) = match route_of(lua, &t)? {
                    Ok(x) => x,
                    Err(e) => return fail(lua, e),
                };
                let res = with_handle(lua, |h| match op {
                    0 => h.add_route(&r, &label),
                    1 => h.replace_route(&r, &label),
                    _ => h.del_route(&r, &label),
                })?;
                ok_or_fail(lua, res.map(|_| true))
            })?,
        )?;
    }
    m.set(
        "events",
        lua.create_function(|lua, ()| match EventSocket::new() {
            Ok(s) => LuaEvents(Some(s)).into_lua_multi(lua),
            Err(e) => fail(lua, e),
        })?,
    )?;
    // net.lease(name): a copy of the init's lease of `name`, its times
    // counted from now; nil without one.
    m.set(
        "lease",
        lua.create_function(|lua, name: String| {
            check_name(&name)?;
            let Some(all) = lua.named_registry_value::<Option<Table>>(LEASES_KEY)? else {
                return Ok(Value::Nil);
            };
            let Some(l) = all.get::<Option<Table>>(name)? else {
                return Ok(Value::Nil);
            };
            let t = lua.create_table()?;
            for pair in l.pairs::<Value, Value>() {
                let (k, v) = pair?;
                let v = match v {
                    Value::Table(list) => {
                        let c = lua.create_table()?;
                        for x in list.sequence_values::<Value>() {
                            c.push(x?)?;
                        }
                        Value::Table(c)
                    }
                    v => v,
                };
                t.set(k, v)?;
            }
            refresh_lease_times(&t)?;
            Ok(Value::Table(t))
        })?,
    )?;
    m.set(
        "_now",
        lua.create_function(|_, ()| {
            let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
            Ok(t.tv_sec as f64 + t.tv_nsec as f64 / 1e9)
        })?,
    )?;
    m.set(
        "_writes",
        lua.create_function(|lua, ()| Ok(with_handle(lua, |h| Ok(h.writes()))?.unwrap_or(0)))?,
    )?;
    m.set(
        "_timeout",
        lua.create_function(|lua, (op, target, secs): (String, String, f64)| {
            let op: &'static str = if op == "wait_link" {
                "wait_link"
            } else {
                "wait_address"
            };
            fail(lua, NetError::Timeout { op, target, secs })
        })?,
    )?;
    // check functions for the waiters: link | false | nil, err
    m.set(
        "_check_link",
        lua.create_function(|lua, (name, up, carrier): (String, bool, bool)| {
            check_name(&name)?;
            match with_handle(lua, |h| h.link(&LinkRef::Name(name.clone())))? {
                Ok(l) => {
                    if (!up || l.up) && (!carrier || l.carrier) {
                        LuaLink(l).into_lua_multi(lua)
                    } else {
                        false.into_lua_multi(lua)
                    }
                }
                Err(e) if e.errno() == rustix::io::Errno::NODEV.raw_os_error() => {
                    false.into_lua_multi(lua)
                }
                Err(e) => fail(lua, e),
            }
        })?,
    )?;
    // (name, want, tentative_ok, scope) -> address table, link | false | nil, err
    m.set(
        "_check_address",
        lua.create_function(
            |lua, (name, want, tentative_ok, scope): (String, Value, bool, Value)| {
                check_name(&name)?;
                enum Want {
                    Family(Option<u8>),
                    Addr(IpNet, bool),
                }
                let want = match &want {
                    Value::String(s) => {
                        let s = s.to_str()?.to_string();
                        match family_of(Value::String(lua.create_string(&s)?)) {
                            Ok(f) => Want::Family(f),
                            Err(_) => Want::Addr(parse_ipnet(&s)?, s.contains('/')),
                        }
                    }
                    Value::Nil => Want::Family(None),
                    v => Want::Family(family_of(v.clone())?),
                };
                let scope = parse_scope(scope)?;
                let r = with_handle(lua, |h| {
                    let l = h.link(&LinkRef::Name(name.clone()))?;
                    let addrs = h.addresses(None)?;
                    Ok((l, addrs))
                })?;
                match r {
                    Ok((l, addrs)) => {
                        let hit = addrs.iter().filter(|a| a.index == l.index).find(|a| {
                            (tentative_ok || !a.tentative())
                                && a.flags & IFA_F_DADFAILED == 0
                                && scope.is_none_or(|s| a.scope == s)
                                && match &want {
                                    Want::Family(f) => {
                                        f.is_none_or(|f| a.net.family() == f)
                                            && (scope.is_some() || !a.net.is_link_local())
                                    }
                                    Want::Addr(n, with_prefix) => {
                                        a.net.addr == n.addr
                                            && (!with_prefix || a.net.prefix == n.prefix)
                                    }
                                }
                        });
                        match hit {
                            Some(a) => {
                                let t = addr_table(lua, a, Some(&l.name))?;
                                (t, LuaLink(l)).into_lua_multi(lua)
                            }
                            None => false.into_lua_multi(lua),
                        }
                    }
                    Err(e) if e.errno() == rustix::io::Errno::NODEV.raw_os_error() => {
                        false.into_lua_multi(lua)
                    }
                    Err(e) => fail(lua, e),
                }
            },
        )?,
    )?;
    lua.load(NET_LUA).set_name("=net").call::<Table>(m)
}

/// `net.create{kind=, name=, ...}`
fn create(lua: &Lua, t: Table) -> mlua::Result<MultiValue> {
    check_keys(
        &t,
        &[
            "kind",
            "name",
            "peer",
            "peer_netns",
            "link",
            "id",
            "mode",
            "stp",
            "mtu",
            "mac",
            "up",
            "master",
        ],
        "create",
    )?;
    let kind: String = t
        .get::<Option<String>>("kind")?
        .ok_or_else(|| bad_arg("create needs kind"))?;
    let name: String = t
        .get::<Option<String>>("name")?
        .ok_or_else(|| bad_arg("create needs name"))?;
    check_name(&name)?;
    let parent = |lua: &Lua| -> mlua::Result<Result<u32, NetError>> {
        let v: Value = t.get("link")?;
        if v.is_nil() {
            return Err(bad_arg(format!("{kind} needs link (the parent interface)")));
        }
        let r = link_ref_of(v)?;
        with_handle(lua, |h| h.link(&r).map(|l| l.index))
    };
    let mut _ns_file = None;
    let lk = match kind.as_str() {
        "veth" => {
            let peer: String = t
                .get::<Option<String>>("peer")?
                .ok_or_else(|| bad_arg("veth needs peer (the peer's name)"))?;
            check_name(&peer)?;
            let ns = netns_of(t.get::<Value>("peer_netns")?)?.map(|(ns, f)| {
                _ns_file = f;
                ns
            });
            LinkKind::Veth {
                peer,
                peer_netns: ns,
            }
        }
        "bridge" => LinkKind::Bridge {
            stp: t.get::<Option<bool>>("stp")?,
        },
        "vlan" => {
            let id: i64 = t
                .get::<Option<i64>>("id")?
                .ok_or_else(|| bad_arg("vlan needs id"))?;
            if !(0..=4095).contains(&id) {
                return Err(bad_arg(format!("vlan id {id} out of range 0..4095")));
            }
            match parent(lua)? {
                Ok(p) => LinkKind::Vlan {
                    parent: p,
                    id: id as u16,
                },
                Err(e) => return fail(lua, e),
            }
        }
        "macvlan" => {
            let mode = t.get::<Option<String>>("mode")?;
            if let Some(m) = &mode {
                if !MACVLAN_MODES.iter().any(|(n, _)| n == m) {
                    return Err(bad_arg(format!("unknown macvlan mode {m:?}")));
                }
            }
            match parent(lua)? {
                Ok(p) => LinkKind::Macvlan { parent: p, mode },
                Err(e) => return fail(lua, e),
            }
        }
        "dummy" => LinkKind::Dummy,
        "bond" => {
            let mode = t.get::<Option<String>>("mode")?;
            if let Some(m) = &mode {
                if !BOND_MODES.iter().any(|(n, _)| n == m) {
                    return Err(bad_arg(format!("unknown bond mode {m:?}")));
                }
            }
            LinkKind::Bond { mode }
        }
        o => {
            return Err(bad_arg(format!(
                "unknown link kind {o:?} (veth, bridge, vlan, macvlan, dummy, bond)"
            )))
        }
    };
    let mut nl = NewLink::new(name.clone(), lk);
    if let Some(m) = t.get::<Option<i64>>("mtu")? {
        nl.mtu = Some(u32::try_from(m).map_err(|_| bad_arg(format!("mtu {m} out of range")))?);
    }
    if let Some(s) = t.get::<Option<String>>("mac")? {
        nl.mac = Some(parse_mac(&s).ok_or_else(|| bad_arg(format!("bad MAC address {s:?}")))?);
    }
    nl.up = t.get::<Option<bool>>("up")?.unwrap_or(false);
    let master = match t.get::<Value>("master")? {
        Value::Nil => None,
        v => Some(link_ref_of(v)?),
    };
    let r = with_handle(lua, |h| {
        if let Some(m) = &master {
            nl.master = Some(h.link(m)?.index);
        }
        h.create_link(&nl)?;
        h.link(&LinkRef::Name(name.clone()))
    })?;
    ok_or_fail(lua, r.map(LuaLink))
}
