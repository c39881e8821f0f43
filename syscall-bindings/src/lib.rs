//! The `sys` Lua module of moonlit (alias `syscall`): raw Linux syscalls for
//! system configuration, with ljsyscall's conventions modernised for Lua 5.4.
//!
//! Owns: [`register`] (installs `package.preload["sys"]` and
//! `package.preload["syscall"]`), the module table, fd objects, error objects,
//! flag parsing and the LuaLS stubs ([`TYPE_STUBS`]). Does not own: process
//! creation (`spawn` in the init), signal handling (the init's loop), `sleep`
//! (the loop), netlink (`syscall.nl` comes from the netlink crate).
//!
//! Conventions: success returns the value (or `true`), an OS failure returns
//! `nil, err` ([`errors::SysError`]), a wrong argument raises. The reference is
//! docs/lua/sys.md.

use mlua::{Lua, Table};

pub mod alloc;
pub mod errors;
pub mod fd;
pub mod files;
pub mod flags;
pub mod kmod;
pub mod mounts;
pub mod process;
mod raw;
pub mod reg;
pub mod sockets;
mod tables;
pub mod util;

pub use errors::SysError;
pub use fd::Fd;

/// LuaLS `---@meta` stubs: (file name, content), written out by `moonlit types DIR`.
pub const TYPE_STUBS: &[(&str, &str)] = &[
    ("sys.lua", include_str!("../../docs/lua/types/sys.lua")),
    (
        "syscall.lua",
        include_str!("../../docs/lua/types/syscall.lua"),
    ),
];

const SYS_KEY: &str = "moonlit.sys.module";
const COMPAT_KEY: &str = "moonlit.sys.syscall";

/// The functions that are also methods of fd objects (`fd:read(10)` is
/// `sys.read(fd, 10)`).
const FD_METHOD_NAMES: &[&str] = &[
    "close",
    "read",
    "write",
    "pread",
    "pwrite",
    "lseek",
    "dup",
    "dup2",
    "dup3",
    "fcntl",
    "fsync",
    "fdatasync",
    "syncfs",
    "ftruncate",
    "ioctl",
    "fstat",
    "fstatfs",
    "fchmod",
    "fchown",
    "fchdir",
    "getdents",
    "bind",
    "listen",
    "connect",
    "accept",
    "accept4",
    "send",
    "recv",
    "shutdown",
    "setsockopt",
    "getsockopt",
    "getsockname",
    "getpeername",
    "setns",
    "finit_module",
    "grantpt",
    "unlockpt",
    "ptsname",
    "fsconfig",
    "fsmount",
];

fn constants(lua: &Lua) -> mlua::Result<Table> {
    let c = lua.create_table()?;
    for (key, set) in flags::ALL {
        let t = lua.create_table_with_capacity(0, set.entries.len())?;
        for (name, v) in set.entries {
            t.raw_set(*name, *v)?;
        }
        // Anything else a flag string may say, as ljsyscall's tables take
        // it: any case, with or without the prefix, and comma (or `|`)
        // lists with spaces: `c.O["creat, excl, rdwr"]`. Unknown: nil.
        let set: &'static flags::FlagSet = set;
        let mt = lua.create_table()?;
        mt.raw_set(
            "__index",
            lua.create_function(move |_, (_t, k): (Table, mlua::Value)| {
                Ok(match k {
                    mlua::Value::String(s) => match s.to_str() {
                        Ok(text) => set.parse_str(&text).ok(),
                        Err(_) => None,
                    },
                    _ => None,
                })
            })?,
        )?;
        t.set_metatable(Some(mt))?;
        c.raw_set(*key, t)?;
    }
    Ok(c)
}

/// The `sys` module table (built once per Lua state, then cached).
pub fn sys_table(lua: &Lua) -> mlua::Result<Table> {
    if let Ok(Some(t)) = lua.named_registry_value::<Option<Table>>(SYS_KEY) {
        return Ok(t);
    }
    let t = lua.create_table()?;
    files::register(lua, &t)?;
    mounts::register(lua, &t)?;
    process::register(lua, &t)?;
    sockets::register(lua, &t)?;
    kmod::register(lua, &t)?;
    t.raw_set("c", constants(lua)?)?;
    t.raw_set("util", util::table(lua)?)?;

    let m = lua.create_table()?;
    for name in FD_METHOD_NAMES {
        m.raw_set(*name, t.raw_get::<mlua::Value>(*name)?)?;
    }
    let getfd = lua.create_function(|_, fd: fd::FdArg| Ok(fd.0))?;
    m.raw_set("getfd", getfd.clone())?;
    m.raw_set("fileno", getfd)?;
    m.raw_set(
        "nogc",
        lua.create_function(|_, ud: mlua::AnyUserData| {
            ud.borrow::<Fd>()?.nogc();
            Ok(ud)
        })?,
    )?;
    m.raw_set("stat", t.raw_get::<mlua::Value>("fstat")?)?;
    m.raw_set("seek", t.raw_get::<mlua::Value>("lseek")?)?;
    lua.set_named_registry_value(fd::FD_METHODS, m)?;
    lua.set_named_registry_value(SYS_KEY, &t)?;
    Ok(t)
}

/// The `syscall` module table (ljsyscall names and shapes over `sys`).
pub fn syscall_table(lua: &Lua) -> mlua::Result<Table> {
    if let Ok(Some(t)) = lua.named_registry_value::<Option<Table>>(COMPAT_KEY) {
        return Ok(t);
    }
    let sys = sys_table(lua)?;
    let t: Table = lua
        .load(include_str!("compat.lua"))
        .set_name("=syscall")
        .call(sys)?;
    lua.set_named_registry_value(COMPAT_KEY, &t)?;
    Ok(t)
}

/// Installs `package.preload["sys"]` and `package.preload["syscall"]`.
pub fn register(lua: &Lua) -> mlua::Result<()> {
    lua.preload_module("sys", lua.create_function(|lua, ()| sys_table(lua))?)?;
    lua.preload_module(
        "syscall",
        lua.create_function(|lua, ()| syscall_table(lua))?,
    )?;
    Ok(())
}
