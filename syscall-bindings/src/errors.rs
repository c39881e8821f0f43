//! Errors of the `sys` module.
//!
//! Owns: [`SysError`], the OS failure a call returns to Lua as `nil, err` (with
//! `err.errno`, `err.sym`, `err.NOENT`/`err.noent`, `tostring(err)`), the
//! [`Failure`] type the bindings use internally to tell an OS failure (returned)
//! from a programming error (raised), and [`Ret`], which turns the former into
//! `nil, err`. Does not own: which calls fail how (the call sites).

use std::fmt;

use mlua::{IntoLuaMulti, Lua, MetaMethod, MultiValue, UserData, UserDataMethods, Value};

use crate::flags::{self, FlagError};

/// An OS failure: the call, what it was applied to, the errno.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysError {
    /// The call that failed ("open", "mount", "modprobe").
    pub call: &'static str,
    /// The path, interface or object the call was applied to.
    pub path: Option<String>,
    /// The errno value.
    pub errno: i32,
    /// Extra explanation (why the binding refused, which module is missing).
    pub detail: Option<String>,
}

impl std::error::Error for SysError {}

impl SysError {
    /// A failure of `call` with `errno`.
    pub fn new(call: &'static str, errno: i32) -> Self {
        SysError {
            call,
            path: None,
            errno,
            detail: None,
        }
    }

    /// Adds the path (bytes, shown lossily).
    pub fn path(mut self, path: impl AsRef<[u8]>) -> Self {
        self.path = Some(String::from_utf8_lossy(path.as_ref()).into_owned());
        self
    }

    /// Adds an explanation.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// The errno name without the E ("NOENT"), if known.
    pub fn sym(&self) -> Option<&'static str> {
        flags::E.name_of(i64::from(self.errno))
    }

    /// The strerror text.
    pub fn message(&self) -> &'static str {
        nix::errno::Errno::from_raw(self.errno).desc()
    }

    /// Whether `name` (any case, E prefix optional) is this error. `None` when
    /// `name` is no errno name at all.
    pub fn is(&self, name: &str) -> Option<bool> {
        flags::E.lookup(name).map(|v| v == i64::from(self.errno))
    }
}

impl fmt::Display for SysError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.call)?;
        if let Some(p) = &self.path {
            write!(f, "({p})")?;
        }
        if let Some(d) = &self.detail {
            write!(f, ": {d}")?;
        }
        write!(f, ": {}", self.message())
    }
}

impl UserData for SysError {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_meta_method(MetaMethod::ToString, |_, this, ()| Ok(this.to_string()));
        m.add_meta_function(MetaMethod::Concat, |lua, (a, b): (Value, Value)| {
            let s = |v: Value| -> mlua::Result<String> {
                match v {
                    Value::UserData(ud) => Ok(ud.borrow::<SysError>()?.to_string()),
                    other => Ok(lua
                        .coerce_string(other)?
                        .map(|s| s.to_string_lossy())
                        .unwrap_or_default()),
                }
            };
            Ok(s(a)? + &s(b)?)
        });
        m.add_meta_method(MetaMethod::Eq, |_, this, other: mlua::AnyUserData| {
            Ok(other
                .borrow::<SysError>()
                .map(|o| o.errno == this.errno)
                .unwrap_or(false))
        });
        m.add_meta_method(MetaMethod::Index, |lua, this, key: mlua::LuaString| {
            let key = key.to_str()?;
            Ok(match &*key {
                "errno" => Value::Integer(i64::from(this.errno)),
                "sym" => match this.sym() {
                    Some(s) => Value::String(lua.create_string(s)?),
                    None => Value::Nil,
                },
                "call" => Value::String(lua.create_string(this.call)?),
                "path" => match &this.path {
                    Some(p) => Value::String(lua.create_string(p)?),
                    None => Value::Nil,
                },
                "detail" => match &this.detail {
                    Some(p) => Value::String(lua.create_string(p)?),
                    None => Value::Nil,
                },
                "msg" | "message" => Value::String(lua.create_string(this.message())?),
                name => match this.is(name) {
                    Some(b) => Value::Boolean(b),
                    None => return Err(raise(format!("unknown errno name '{name}' (err.{name})"))),
                },
            })
        });
    }
}

/// Why a binding did not produce its result: an OS failure (returned to Lua as
/// `nil, err`) or a programming error in the script (raised).
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The kernel (or the binding on its behalf) refused.
    #[error(transparent)]
    Sys(#[from] SysError),
    /// Bad argument or Lua-level failure: raised.
    #[error(transparent)]
    Lua(#[from] mlua::Error),
}

impl From<FlagError> for Failure {
    fn from(e: FlagError) -> Self {
        Failure::Lua(mlua::Error::external(e))
    }
}

/// A bad argument from a script (raised, never returned).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ArgError(pub String);

/// Result type of the binding implementations.
pub type Res<T> = Result<T, Failure>;

/// The Lua error raised for a bad argument.
pub fn raise(msg: impl Into<String>) -> mlua::Error {
    mlua::Error::external(ArgError(msg.into()))
}

/// A raised argument error with a message.
pub fn arg_error(msg: impl Into<String>) -> Failure {
    Failure::Lua(mlua::Error::external(ArgError(msg.into())))
}

/// `value` on success, `nil, err` on an OS failure.
pub enum Ret<T> {
    /// Success.
    Ok(T),
    /// OS failure.
    Err(SysError),
}

impl<T: IntoLuaMulti> IntoLuaMulti for Ret<T> {
    fn into_lua_multi(self, lua: &Lua) -> mlua::Result<MultiValue> {
        match self {
            Ret::Ok(v) => v.into_lua_multi(lua),
            Ret::Err(e) => (Value::Nil, e).into_lua_multi(lua),
        }
    }
}

/// Adapts an implementation returning [`Res`] to what a Lua function returns.
pub fn ret<T>(r: Res<T>) -> mlua::Result<Ret<T>> {
    match r {
        Ok(v) => Ok(Ret::Ok(v)),
        Err(Failure::Sys(e)) => Ok(Ret::Err(e)),
        Err(Failure::Lua(e)) => Err(e),
    }
}

/// Raw errno of the error types the bindings meet.
pub trait RawErrno {
    /// The errno number.
    fn raw(&self) -> i32;
}

impl RawErrno for rustix::io::Errno {
    fn raw(&self) -> i32 {
        self.raw_os_error()
    }
}

impl RawErrno for nix::errno::Errno {
    fn raw(&self) -> i32 {
        *self as i32
    }
}

impl RawErrno for std::io::Error {
    fn raw(&self) -> i32 {
        self.raw_os_error().unwrap_or(nix::libc::EIO)
    }
}

/// Attaches the call (and path) to a raw OS error.
pub trait OrSys<T> {
    /// Failure of `call`.
    fn or_sys(self, call: &'static str) -> Result<T, SysError>;
    /// Failure of `call` on `path`.
    fn or_path(self, call: &'static str, path: &[u8]) -> Result<T, SysError>;
}

impl<T, E: RawErrno> OrSys<T> for Result<T, E> {
    fn or_sys(self, call: &'static str) -> Result<T, SysError> {
        self.map_err(|e| SysError::new(call, e.raw()))
    }
    fn or_path(self, call: &'static str, path: &[u8]) -> Result<T, SysError> {
        self.map_err(|e| SysError::new(call, e.raw()).path(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_call_path_and_text() {
        let e = SysError::new("open", nix::libc::ENOENT).path("/nope");
        assert_eq!(e.to_string(), "open(/nope): No such file or directory");
        assert_eq!(e.sym(), Some("NOENT"));
        assert_eq!(e.is("noent"), Some(true));
        assert_eq!(e.is("EXIST"), Some(false));
        assert_eq!(e.is("NOTANERRNO"), None);
        let d = SysError::new("reboot", nix::libc::EPERM).detail("refused: not PID 1");
        assert_eq!(
            d.to_string(),
            "reboot: refused: not PID 1: Operation not permitted"
        );
    }
}
