//! File descriptor objects and argument conversion shared by every call.
//!
//! Owns: [`Fd`], the userdata a script holds for an fd it opened (closed on
//! garbage collection unless `:nogc()`, never auto-closing 0, 1 or 2, usable as a
//! `<close>` variable, `:close()` idempotent), and [`FdArg`]/[`DirArg`], which
//! accept an `Fd` or a plain number wherever a call takes an fd. Also the flag
//! argument helper [`flag`]. Method lookup goes through one table in the Lua
//! registry ([`FD_METHODS`]) filled by `lib.rs` with the fd-taking functions.
//! Does not own: the calls themselves.

use std::cell::Cell;
use std::os::fd::{BorrowedFd, IntoRawFd, OwnedFd};

use mlua::{FromLua, Lua, MetaMethod, UserData, UserDataFields, UserDataMethods, Value};

use crate::errors::{arg_error, Res, SysError};
use crate::flags::FlagSet;
use crate::raw;

/// Registry key of the fd method table.
pub const FD_METHODS: &str = "moonlit.sys.fd_methods";

/// An fd owned by a Lua script.
#[derive(Debug)]
pub struct Fd {
    fd: Cell<i32>,
    gc: Cell<bool>,
}

impl Fd {
    /// Takes ownership of an fd (closed on GC).
    pub fn new(fd: OwnedFd) -> Self {
        Fd::from_raw(fd.into_raw_fd())
    }

    /// Wraps a number the caller owns.
    pub fn from_raw(fd: i32) -> Self {
        Fd {
            fd: Cell::new(fd),
            gc: Cell::new(true),
        }
    }

    /// The number, or -1 once closed.
    pub fn raw(&self) -> i32 {
        self.fd.get()
    }

    /// Stops closing on GC.
    pub fn nogc(&self) {
        self.gc.set(false);
    }

    /// Closes now (idempotent: a closed Fd stays closed and reports success).
    pub fn close(&self) -> Result<(), rustix::io::Errno> {
        let fd = self.fd.replace(-1);
        if fd < 0 {
            return Ok(());
        }
        raw::close(fd)
    }
}

impl Drop for Fd {
    fn drop(&mut self) {
        let fd = self.fd.get();
        if fd > 2 && self.gc.get() {
            // A destructor must not fail: the error of a GC close has no one to go to.
            let _ = raw::close(fd);
        }
    }
}

impl UserData for Fd {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        fields.add_meta_field_with(MetaMethod::Index, |lua| {
            lua.named_registry_value::<mlua::Table>(FD_METHODS)
        });
        fields.add_meta_field("__name", "sys.fd");
    }

    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        // `local f <close> = sys.open(...)`: close, errors ignored (the scope is
        // being left; an explicit f:close() reports them).
        m.add_meta_method(MetaMethod::Close, |_, this, _: mlua::MultiValue| {
            let _ = this.close();
            Ok(())
        });
        m.add_meta_method(MetaMethod::ToString, |_, this, ()| {
            Ok(match this.raw() {
                n if n < 0 => "fd(closed)".to_string(),
                n => format!("fd({n})"),
            })
        });
        m.add_meta_function(MetaMethod::Eq, |_, (a, b): (FdArg, FdArg)| Ok(a.0 == b.0));
    }
}

/// An fd argument: an [`Fd`] object or a plain integer.
#[derive(Debug, Clone, Copy)]
pub struct FdArg(pub i32);

impl FromLua for FdArg {
    fn from_lua(v: Value, _: &Lua) -> mlua::Result<Self> {
        match v {
            Value::Integer(n) => i32::try_from(n)
                .map(FdArg)
                .map_err(|_| crate::errors::raise(format!("fd number {n} out of range"))),
            Value::Number(f) if f.fract() == 0.0 && f.abs() < 2e9 => Ok(FdArg(f as i32)),
            Value::UserData(ud) => match ud.borrow::<Fd>() {
                Ok(fd) => Ok(FdArg(fd.raw())),
                Err(_) => Err(type_error("fd", "userdata (not an fd)")),
            },
            other => Err(type_error("fd", other.type_name())),
        }
    }
}

impl FdArg {
    /// Borrows the fd for one call; a closed object or negative number is EBADF.
    pub fn get(&self, call: &'static str) -> Result<BorrowedFd<'static>, SysError> {
        raw::borrow(self.0).map_err(|e| SysError::new(call, e.raw_os_error()))
    }
}

/// A directory fd argument of the `*at` calls: an fd, or nil / "fdcwd" / AT_FDCWD.
#[derive(Debug, Clone, Copy)]
pub struct DirArg(pub i32);

impl FromLua for DirArg {
    fn from_lua(v: Value, lua: &Lua) -> mlua::Result<Self> {
        match v {
            Value::Nil => Ok(DirArg(nix::libc::AT_FDCWD)),
            Value::String(s) => {
                let s = s.to_str()?;
                if s.eq_ignore_ascii_case("fdcwd") || s.eq_ignore_ascii_case("cwd") {
                    Ok(DirArg(nix::libc::AT_FDCWD))
                } else {
                    Err(crate::errors::raise(format!(
                        "bad directory fd '{s}' (an fd, nil or \"fdcwd\")"
                    )))
                }
            }
            other => FdArg::from_lua(other, lua).map(|f| DirArg(f.0)),
        }
    }
}

impl DirArg {
    /// Borrows the fd for one call (AT_FDCWD as rustix's CWD).
    pub fn get(&self, call: &'static str) -> Result<BorrowedFd<'static>, SysError> {
        if self.0 == nix::libc::AT_FDCWD {
            Ok(rustix::fs::CWD)
        } else {
            FdArg(self.0).get(call)
        }
    }
}

/// A conversion error naming the expected type.
pub fn type_error(expected: &str, got: &str) -> mlua::Error {
    crate::errors::raise(format!("bad argument: {expected} expected, got {got}"))
}

/// Parses a flag argument: nil -> `default`, integer, or a flag string of `set`.
pub fn flag(set: &FlagSet, v: &Value, default: i64) -> Res<i64> {
    match v {
        Value::Nil => Ok(default),
        Value::Integer(n) => Ok(*n),
        Value::Number(f) if f.fract() == 0.0 => Ok(*f as i64),
        Value::Boolean(false) => Ok(0),
        Value::String(s) => {
            let s = s.to_str()?;
            Ok(set.parse_str(&s)?)
        }
        other => Err(arg_error(format!(
            "bad {} flags: string or integer expected, got {}",
            set.name,
            other.type_name()
        ))),
    }
}

/// An integer argument that may be omitted.
pub fn opt_int(v: &Value, what: &str) -> Res<Option<i64>> {
    match v {
        Value::Nil => Ok(None),
        Value::Integer(n) => Ok(Some(*n)),
        Value::Number(f) if f.fract() == 0.0 => Ok(Some(*f as i64)),
        other => Err(arg_error(format!(
            "bad argument {what}: integer expected, got {}",
            other.type_name()
        ))),
    }
}
