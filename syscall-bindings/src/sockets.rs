//! Socket calls of `sys`: unix and inet sockets, enough to serve or probe a port.
//!
//! Owns: socket/socketpair/bind/listen/connect/accept4/send/recv/shutdown,
//! integer socket options, and the address forms scripts write
//! (`"127.0.0.1:80"`, `"[::1]:80"`, `"/run/x.sock"`, `"@abstract"`, or a table
//! `{family=, addr=, port=, path=}`). Does not own: netlink (the `net` module).

use std::net::{IpAddr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::num::NonZeroU32;

use mlua::{Lua, Table, Value};
use rustix::net::{
    self as rn, AddressFamily, Protocol, RecvFlags, SendFlags, SocketAddrAny, SocketAddrUnix,
    SocketFlags, SocketType,
};

use crate::errors::{arg_error, OrSys, Res};
use crate::fd::{flag, opt_int, Fd, FdArg};
use crate::flags;
use crate::raw;
use crate::reg::add;

/// Upper bound of one recv.
const MAX_RECV: usize = 16 << 20;

fn unix_addr(path: &[u8]) -> Res<SocketAddrAny> {
    let a = if let Some(name) = path.strip_prefix(b"@") {
        SocketAddrUnix::new_abstract_name(name)
    } else {
        SocketAddrUnix::new(path)
    }
    .or_path("sockaddr", path)?;
    Ok(a.into())
}

fn ip_addr(host: &str, port: u16) -> Res<SocketAddrAny> {
    let ip: IpAddr = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .map_err(|_| arg_error(format!("bad IP address '{host}'")))?;
    Ok(SocketAddr::new(ip, port).into())
}

/// Parses an address argument (see the module doc); `port` is the optional
/// following argument (`bind(fd, "127.0.0.1", 80)`).
pub fn addr_arg(v: &Value, port: &Value) -> Res<SocketAddrAny> {
    match v {
        Value::String(s) => {
            let b = s.as_bytes();
            if b.starts_with(b"/") || b.starts_with(b"@") || b.starts_with(b".") {
                return unix_addr(&b);
            }
            let text = s.to_str()?;
            if let Some(p) = opt_int(port, "port")? {
                let p = u16::try_from(p).map_err(|_| arg_error(format!("bad port {p}")))?;
                return ip_addr(&text, p);
            }
            let sa: SocketAddr = text.parse().map_err(|_| {
                arg_error(format!(
                    "bad socket address '{}' (ip:port, [ip6]:port, /path or @name)",
                    &*text
                ))
            })?;
            Ok(sa.into())
        }
        Value::Table(t) => {
            if let Some(p) = t.get::<Option<mlua::LuaString>>("path")? {
                return unix_addr(&p.as_bytes());
            }
            if let Some(p) = t.get::<Option<mlua::LuaString>>("abstract")? {
                let mut b = b"@".to_vec();
                b.extend_from_slice(&p.as_bytes());
                return unix_addr(&b);
            }
            let port = t.get::<Option<i64>>("port")?.unwrap_or(0);
            let port = u16::try_from(port).map_err(|_| arg_error(format!("bad port {port}")))?;
            let host: String = match t.get::<Option<String>>("addr")? {
                Some(h) => h,
                None => match t.get::<Option<String>>("family")?.as_deref() {
                    Some("inet6") => "::".into(),
                    _ => "0.0.0.0".into(),
                },
            };
            ip_addr(&host, port)
        }
        other => Err(arg_error(format!(
            "bad socket address: string or table expected, got {}",
            other.type_name()
        ))),
    }
}

/// The Lua table of an address.
pub fn addr_table(lua: &Lua, a: &SocketAddrAny) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    let fam = a.address_family();
    if fam == AddressFamily::INET {
        if let Ok(v4) = SocketAddrV4::try_from(a.clone()) {
            t.raw_set("family", "inet")?;
            t.raw_set("addr", v4.ip().to_string())?;
            t.raw_set("port", v4.port())?;
        }
    } else if fam == AddressFamily::INET6 {
        if let Ok(v6) = SocketAddrV6::try_from(a.clone()) {
            t.raw_set("family", "inet6")?;
            t.raw_set("addr", v6.ip().to_string())?;
            t.raw_set("port", v6.port())?;
        }
    } else if fam == AddressFamily::UNIX {
        t.raw_set("family", "unix")?;
        if let Ok(u) = SocketAddrUnix::try_from(a.clone()) {
            if let Some(p) = u.path_bytes() {
                t.raw_set("path", lua.create_string(p)?)?;
            } else if let Some(n) = u.abstract_name() {
                t.raw_set("abstract", lua.create_string(n)?)?;
            }
        }
    } else {
        t.raw_set("family", i64::from(fam.as_raw()))?;
    }
    Ok(t)
}

fn domain_arg(v: &Value) -> Res<AddressFamily> {
    Ok(AddressFamily::from_raw(flag(&flags::AF, v, -1)? as u16))
}

fn type_arg(v: &Value) -> Res<(SocketType, SocketFlags)> {
    let bits = flag(&flags::SOCK, v, i64::from(nix::libc::SOCK_STREAM))? as u32;
    Ok((
        SocketType::from_raw(bits & 0xf),
        SocketFlags::from_bits_retain(bits & !0xf) | SocketFlags::CLOEXEC,
    ))
}

fn proto_arg(v: &Value) -> Res<Option<Protocol>> {
    let p = flag(&flags::IPPROTO, v, 0)? as u32;
    Ok(NonZeroU32::new(p).map(Protocol::from_raw))
}

fn level_opt(level: &Value, opt: &Value) -> Res<(i32, i32)> {
    let l = flag(&flags::SOL, level, -1)? as i32;
    let set = match l {
        nix::libc::SOL_TCP => &flags::TCP,
        _ => &flags::SO,
    };
    Ok((l, flag(set, opt, -1)? as i32))
}

/// Registers the socket calls into `t`.
pub fn register(lua: &Lua, t: &Table) -> mlua::Result<()> {
    add(lua, t, "socket", |_, (d, ty, p): (Value, Value, Value)| {
        let (ty, fl) = type_arg(&ty)?;
        Ok(Fd::new(
            rn::socket_with(domain_arg(&d)?, ty, fl, proto_arg(&p)?).or_sys("socket")?,
        ))
    })?;
    add(
        lua,
        t,
        "socketpair",
        |_, (d, ty, p): (Value, Value, Value)| {
            let (ty, fl) = type_arg(&ty)?;
            let (a, b) =
                rn::socketpair(domain_arg(&d)?, ty, fl, proto_arg(&p)?).or_sys("socketpair")?;
            Ok((Fd::new(a), Fd::new(b)))
        },
    )?;
    add(lua, t, "bind", |_, (fd, a, port): (FdArg, Value, Value)| {
        let addr = addr_arg(&a, &port)?;
        rn::bind(fd.get("bind")?, &addr).or_sys("bind")?;
        Ok(true)
    })?;
    add(
        lua,
        t,
        "listen",
        |_, (fd, backlog): (FdArg, Option<i32>)| {
            rn::listen(fd.get("listen")?, backlog.unwrap_or(128)).or_sys("listen")?;
            Ok(true)
        },
    )?;
    add(
        lua,
        t,
        "connect",
        |_, (fd, a, port): (FdArg, Value, Value)| {
            let addr = addr_arg(&a, &port)?;
            rn::connect(fd.get("connect")?, &addr).or_sys("connect")?;
            Ok(true)
        },
    )?;
    add(lua, t, "accept", |lua, (fd, fl): (FdArg, Value)| {
        let f = SocketFlags::from_bits_retain(flag(&flags::SOCK, &fl, 0)? as u32)
            | SocketFlags::CLOEXEC;
        let (c, addr) = rn::acceptfrom_with(fd.get("accept")?, f).or_sys("accept")?;
        let at = match addr {
            Some(a) => Value::Table(addr_table(lua, &a)?),
            None => Value::Nil,
        };
        Ok((Fd::new(c), at))
    })?;
    t.raw_set("accept4", t.raw_get::<mlua::Function>("accept")?)?;
    add(
        lua,
        t,
        "send",
        |_, (fd, data, fl): (FdArg, mlua::LuaString, Value)| {
            let f = SendFlags::from_bits_retain(flag(&flags::MSG, &fl, 0)? as u32)
                | SendFlags::NOSIGNAL;
            Ok(rn::send(fd.get("send")?, &data.as_bytes(), f).or_sys("send")? as i64)
        },
    )?;
    add(
        lua,
        t,
        "recv",
        |lua, (fd, count, fl): (FdArg, Option<i64>, Value)| {
            let n = count.unwrap_or(4096).max(0) as usize;
            if n > MAX_RECV {
                return Err(arg_error(format!("recv: count {n} above {MAX_RECV}")));
            }
            let f = RecvFlags::from_bits_retain(flag(&flags::MSG, &fl, 0)? as u32);
            let mut buf = vec![0u8; n];
            let (got, _) = rn::recv(fd.get("recv")?, &mut buf[..], f).or_sys("recv")?;
            buf.truncate(got);
            Ok(lua.create_string(&buf)?)
        },
    )?;
    add(lua, t, "shutdown", |_, (fd, how): (FdArg, Value)| {
        let h = match flag(&flags::SHUT, &how, i64::from(nix::libc::SHUT_RDWR))? as i32 {
            nix::libc::SHUT_RD => rn::Shutdown::Read,
            nix::libc::SHUT_WR => rn::Shutdown::Write,
            _ => rn::Shutdown::Both,
        };
        rn::shutdown(fd.get("shutdown")?, h).or_sys("shutdown")?;
        Ok(true)
    })?;
    add(
        lua,
        t,
        "setsockopt",
        |_, (fd, level, opt, v): (FdArg, Value, Value, Value)| {
            let (l, o) = level_opt(&level, &opt)?;
            let val = match v {
                Value::Boolean(b) => i32::from(b),
                other => opt_int(&other, "value")?
                    .ok_or_else(|| arg_error("setsockopt: value required"))?
                    as i32,
            };
            raw::setsockopt_int(fd.get("setsockopt")?, l, o, val).or_sys("setsockopt")?;
            Ok(true)
        },
    )?;
    add(
        lua,
        t,
        "getsockopt",
        |_, (fd, level, opt): (FdArg, Value, Value)| {
            let (l, o) = level_opt(&level, &opt)?;
            Ok(i64::from(
                raw::getsockopt_int(fd.get("getsockopt")?, l, o).or_sys("getsockopt")?,
            ))
        },
    )?;
    add(lua, t, "getsockname", |lua, fd: FdArg| {
        let a = rn::getsockname(fd.get("getsockname")?).or_sys("getsockname")?;
        Ok(addr_table(lua, &a)?)
    })?;
    add(lua, t, "getpeername", |lua, fd: FdArg| {
        let a = rn::getpeername(fd.get("getpeername")?).or_sys("getpeername")?;
        Ok(match a {
            Some(a) => Value::Table(addr_table(lua, &a)?),
            None => Value::Nil,
        })
    })?;
    Ok(())
}
