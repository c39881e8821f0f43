//! `sys.util`: helpers boot scripts want, built on the raw calls.
//!
//! Owns: `mounts()` (parsed /proc/self/mounts), `mkdir_p`, `readfile`,
//! `writefile`, `sysctl(name [, value])`, `ls(dir)`, `cmdline()` (parsed
//! /proc/cmdline, or a given string). Same conventions as the raw calls: values
//! on success, `nil, err` on OS failures, raises on bad arguments.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};

use mlua::{Lua, Table, Value};

use crate::errors::{arg_error, OrSys, Res};
use crate::fd::flag;
use crate::flags;
use crate::reg::add;

/// Largest file `readfile` reads (PID 1 must not be made to swallow gigabytes).
const MAX_READFILE: u64 = 64 << 20;

/// Undoes the octal escapes of /proc/self/mounts (`\040` is a space).
pub fn unescape_mount_field(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        // Three octal digits of a byte (at most \\377; anything else is
        // kept as it is: "\\777" overflowed a byte).
        if b[i] == b'\\'
            && i + 3 < b.len()
            && (b'0'..=b'3').contains(&b[i + 1])
            && b[i + 2..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One line of /proc/self/mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// Device or source.
    pub source: String,
    /// Mount point.
    pub target: String,
    /// File system type.
    pub fstype: String,
    /// Options as written ("rw,nosuid,relatime").
    pub options: String,
}

/// Parses the text of /proc/self/mounts.
pub fn parse_mounts(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|l| {
            // Fields are separated by single spaces; the kernel escapes
            // space, tab, newline and backslash in them, nothing else (a
            // Unicode space in a path is part of it).
            let mut w = l.split(' ').filter(|f| !f.is_empty());
            Some(MountEntry {
                source: unescape_mount_field(w.next()?),
                target: unescape_mount_field(w.next()?),
                fstype: unescape_mount_field(w.next()?),
                options: unescape_mount_field(w.next()?),
            })
        })
        .collect()
}

/// Splits a kernel command line: words, with double quotes grouping.
pub fn split_cmdline(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

fn sysctl_path(name: &str) -> Res<String> {
    if name.is_empty() || name.contains("..") {
        return Err(arg_error(format!("sysctl: bad name '{name}'")));
    }
    let rel = if name.contains('/') {
        name.trim_start_matches('/').to_string()
    } else {
        name.replace('.', "/")
    };
    Ok(format!("/proc/sys/{rel}"))
}

fn readfile(path: &[u8], call: &'static str) -> Res<Vec<u8>> {
    let p = os_path(path);
    let f = std::fs::File::open(p).or_path(call, path)?;
    let mut buf = Vec::new();
    f.take(MAX_READFILE)
        .read_to_end(&mut buf)
        .or_path(call, path)?;
    Ok(buf)
}

fn os_path(b: &[u8]) -> &std::path::Path {
    std::path::Path::new(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b))
}

fn writefile(path: &[u8], data: &[u8], mode: u32, call: &'static str, append: bool) -> Res<()> {
    let p = os_path(path);
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).mode(mode);
    if append {
        o.append(true);
    } else {
        o.truncate(true);
    }
    let mut f = o.open(p).or_path(call, path)?;
    f.write_all(data).or_path(call, path)?;
    Ok(())
}

fn list_dir(path: &[u8]) -> Res<Vec<Vec<u8>>> {
    use std::os::unix::ffi::OsStrExt;
    let p = os_path(path);
    let mut names = Vec::new();
    for e in std::fs::read_dir(p).or_path("ls", path)? {
        let e = e.or_path("ls", path)?;
        names.push(e.file_name().as_bytes().to_vec());
    }
    names.sort();
    Ok(names)
}

fn mkdir_p(path: &[u8], mode: u32) -> Res<()> {
    let p = os_path(path);
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(p)
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(
            crate::errors::SysError::new("mkdir_p", e.raw_os_error().unwrap_or(5))
                .path(path)
                .into(),
        ),
    }
}

/// Builds the `sys.util` table.
pub fn table(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    add(lua, &t, "mounts", |lua, ()| {
        let text = readfile(b"/proc/self/mounts", "mounts")?;
        let list = lua.create_table()?;
        for m in parse_mounts(&String::from_utf8_lossy(&text)) {
            let e = lua.create_table()?;
            let ro = m.options.split(',').any(|o| o == "ro");
            e.raw_set("source", m.source)?;
            e.raw_set("target", m.target)?;
            e.raw_set("type", m.fstype)?;
            e.raw_set("options", m.options)?;
            e.raw_set("ro", ro)?;
            list.raw_push(e)?;
        }
        Ok(list)
    })?;
    add(lua, &t, "mkdir_p", |_, (p, m): (mlua::LuaString, Value)| {
        let mode = flag(&flags::MODE, &m, 0o755)? as u32;
        mkdir_p(&p.as_bytes(), mode)?;
        Ok(true)
    })?;
    add(lua, &t, "readfile", |lua, p: mlua::LuaString| {
        Ok(lua.create_string(readfile(&p.as_bytes(), "readfile")?)?)
    })?;
    add(
        lua,
        &t,
        "writefile",
        |_, (p, data, m, how): (mlua::LuaString, mlua::LuaString, Value, Option<String>)| {
            let mode = flag(&flags::MODE, &m, 0o644)? as u32;
            let append = match how.as_deref() {
                None | Some("w") | Some("truncate") => false,
                Some("a") | Some("append") => true,
                Some(o) => {
                    return Err(arg_error(format!(
                        "writefile: bad mode '{o}' (\"w\" or \"a\")"
                    )))
                }
            };
            writefile(&p.as_bytes(), &data.as_bytes(), mode, "writefile", append)?;
            Ok(true)
        },
    )?;
    add(lua, &t, "sysctl", |lua, (name, value): (String, Value)| {
        let path = sysctl_path(&name)?;
        let old = readfile(path.as_bytes(), "sysctl")?;
        let old = String::from_utf8_lossy(&old).trim_end().to_string();
        match value {
            Value::Nil => {}
            Value::String(s) => writefile(path.as_bytes(), &s.as_bytes(), 0o644, "sysctl", false)?,
            Value::Integer(n) => writefile(
                path.as_bytes(),
                n.to_string().as_bytes(),
                0o644,
                "sysctl",
                false,
            )?,
            Value::Boolean(b) => writefile(
                path.as_bytes(),
                if b { b"1" } else { b"0" },
                0o644,
                "sysctl",
                false,
            )?,
            other => {
                return Err(arg_error(format!(
                    "sysctl: value must be a string, integer or boolean, got {}",
                    other.type_name()
                )))
            }
        }
        Ok(lua.create_string(old)?)
    })?;
    add(lua, &t, "ls", |lua, p: mlua::LuaString| {
        let names = list_dir(&p.as_bytes())?;
        Ok(names
            .into_iter()
            .map(|n| lua.create_string(n))
            .collect::<mlua::Result<Vec<_>>>()?)
    })?;
    add(lua, &t, "cmdline", |lua, s: Option<mlua::LuaString>| {
        let text = match s {
            Some(s) => s.to_string_lossy(),
            None => String::from_utf8_lossy(&readfile(b"/proc/cmdline", "cmdline")?).into_owned(),
        };
        let t = lua.create_table()?;
        for w in split_cmdline(&text) {
            match w.split_once('=') {
                Some((k, v)) => t.raw_set(k.to_string(), v.to_string())?,
                None => t.raw_set(w.clone(), true)?,
            }
            t.raw_push(w)?;
        }
        Ok(t)
    })?;
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_unescape() {
        let m = parse_mounts("tmpfs /a\\040b tmpfs rw,nosuid 0 0\nproc /proc proc rw 0 0\n");
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].target, "/a b");
        assert_eq!(m[1].fstype, "proc");
    }

    #[test]
    fn cmdline_quotes() {
        assert_eq!(
            split_cmdline("root=/dev/vda ro  init=\"/bin/a b\" quiet\n"),
            vec!["root=/dev/vda", "ro", "init=/bin/a b", "quiet"]
        );
    }

    #[test]
    fn sysctl_names() {
        assert_eq!(
            sysctl_path("net.ipv4.ip_forward").unwrap(),
            "/proc/sys/net/ipv4/ip_forward"
        );
        assert_eq!(
            sysctl_path("kernel/hostname").unwrap(),
            "/proc/sys/kernel/hostname"
        );
        assert!(sysctl_path("../etc").is_err());
    }
}
