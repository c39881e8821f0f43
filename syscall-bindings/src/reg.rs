//! Registration helper: turns an implementation returning [`Res`] into a Lua
//! function that returns the value, returns `nil, err` on an OS failure and
//! raises on a programming error. Owns nothing else.

use mlua::{FromLuaMulti, IntoLuaMulti, Lua, Table};

use crate::errors::{ret, Res};

/// Sets `t[name]` to the Lua function wrapping `f`.
pub fn add<A, R, F>(lua: &Lua, t: &Table, name: &str, f: F) -> mlua::Result<()>
where
    A: FromLuaMulti,
    R: IntoLuaMulti,
    F: Fn(&Lua, A) -> Res<R> + 'static,
{
    t.raw_set(name, lua.create_function(move |lua, a: A| ret(f(lua, a)))?)
}

/// A NUL-terminated copy of a Lua string for the C-string calls; a NUL byte
/// inside is an argument error.
pub fn cstring(what: &str, s: &mlua::LuaString) -> Res<std::ffi::CString> {
    std::ffi::CString::new(s.as_bytes().to_vec())
        .map_err(|_| crate::errors::arg_error(format!("{what} contains a NUL byte")))
}
