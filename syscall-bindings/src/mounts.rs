//! Mount calls of `sys`: mount(2), umount2(2), pivot_root(2), chroot(2) and the
//! new mount API (fsopen, fsconfig, fsmount, move_mount, open_tree) where the
//! kernel has it. Does not own: /proc/self/mounts parsing (`util.rs`).

use mlua::{Lua, Table, Value};
use rustix::mount as rm;

use crate::errors::{arg_error, OrSys, Res};
use crate::fd::{flag, DirArg, Fd, FdArg};
use crate::flags;
use crate::raw;
use crate::reg::{add, cstring};

type LStr = mlua::LuaString;

fn opt_cstring(what: &str, v: &Value) -> Res<Option<std::ffi::CString>> {
    match v {
        Value::Nil => Ok(None),
        Value::String(s) => Ok(Some(cstring(what, s)?)),
        other => Err(arg_error(format!(
            "mount: {what} must be a string, got {}",
            other.type_name()
        ))),
    }
}

fn do_mount(source: &Value, target: &Value, fstype: &Value, fl: &Value, data: &Value) -> Res<bool> {
    let target = match target {
        Value::String(s) => cstring("target", s)?,
        other => {
            return Err(arg_error(format!(
                "mount: target must be a string, got {}",
                other.type_name()
            )))
        }
    };
    let source = opt_cstring("source", source)?;
    let fstype = opt_cstring("type", fstype)?;
    let data = opt_cstring("data", data)?;
    let fl = flag(&flags::MS, fl, 0)? as u64;
    raw::mount(
        source.as_deref(),
        &target,
        fstype.as_deref(),
        fl,
        data.as_deref(),
    )
    .or_path("mount", target.to_bytes())?;
    Ok(true)
}

/// Registers the mount calls into `t`.
pub fn register(lua: &Lua, t: &Table) -> mlua::Result<()> {
    add(
        lua,
        t,
        "mount",
        |_, (a, b, c, d, e): (Value, Value, Value, Value, Value)| {
            if let Value::Table(o) = &a {
                // ljsyscall's table form: mount{source=, target=, type=, flags=, data=}
                let ty: Value = match o.get::<Value>("type")? {
                    Value::Nil => o.get("fstype")?,
                    v => v,
                };
                let fl: Value = match o.get::<Value>("flags")? {
                    Value::Nil => o.get("mountflags")?,
                    v => v,
                };
                return do_mount(
                    &o.get("source")?,
                    &o.get("target")?,
                    &ty,
                    &fl,
                    &o.get("data")?,
                );
            }
            do_mount(&a, &b, &c, &d, &e)
        },
    )?;
    add(lua, t, "umount", |_, (p, fl): (LStr, Value)| {
        let p = p.as_bytes();
        let fl = rm::UnmountFlags::from_bits_retain(flag(&flags::UMOUNT, &fl, 0)? as u32);
        rm::unmount(&*p, fl).or_path("umount", &p)?;
        Ok(true)
    })?;
    t.raw_set("umount2", t.raw_get::<mlua::Function>("umount")?)?;
    add(lua, t, "pivot_root", |_, (new, old): (LStr, LStr)| {
        let (n, o) = (new.as_bytes(), old.as_bytes());
        rustix::process::pivot_root(&*n, &*o).or_path("pivot_root", &n)?;
        Ok(true)
    })?;
    add(lua, t, "chroot", |_, p: LStr| {
        let p = p.as_bytes();
        rustix::process::chroot(&*p).or_path("chroot", &p)?;
        Ok(true)
    })?;

    // The new mount API (Linux 5.2+).
    add(lua, t, "fsopen", |_, (fs, fl): (LStr, Value)| {
        let f = rm::FsOpenFlags::from_bits_retain(flag(&flags::FSOPEN, &fl, 1)? as u32);
        let p = fs.as_bytes();
        Ok(Fd::new(
            rm::fsopen(&*p, f | rm::FsOpenFlags::FSOPEN_CLOEXEC).or_path("fsopen", &p)?,
        ))
    })?;
    add(
        lua,
        t,
        "fsconfig",
        |lua, (fd, cmd, key, value): (FdArg, Value, Option<LStr>, Value)| {
            let cmd = flag(&flags::FSCONFIG, &cmd, -1)?;
            let b = fd.get("fsconfig")?;
            let key_bytes = key
                .as_ref()
                .map(|k| k.as_bytes().to_vec())
                .unwrap_or_default();
            let need_key = || {
                if key.is_none() {
                    Err(arg_error("fsconfig: key required"))
                } else {
                    Ok(())
                }
            };
            match cmd {
                0 => {
                    need_key()?;
                    rm::fsconfig_set_flag(b, &key_bytes[..])
                }
                1 => {
                    need_key()?;
                    let v = match &value {
                        Value::String(s) => s.as_bytes().to_vec(),
                        Value::Integer(n) => n.to_string().into_bytes(),
                        other => {
                            return Err(arg_error(format!(
                                "fsconfig: value must be a string, got {}",
                                other.type_name()
                            )))
                        }
                    };
                    rm::fsconfig_set_string(b, &key_bytes[..], &v[..])
                }
                5 => {
                    need_key()?;
                    let aux: FdArg = match value {
                        Value::Nil => return Err(arg_error("fsconfig: fd value required")),
                        v => mlua::FromLua::from_lua(v, lua)?,
                    };
                    rm::fsconfig_set_fd(b, &key_bytes[..], aux.get("fsconfig")?)
                }
                6 => rm::fsconfig_create(b),
                7 => rm::fsconfig_reconfigure(b),
                8 => rm::fsconfig_create_exclusive(b),
                other => return Err(arg_error(format!("fsconfig: unsupported command {other}"))),
            }
            .or_path("fsconfig", &key_bytes)?;
            Ok(true)
        },
    )?;
    add(
        lua,
        t,
        "fsmount",
        |_, (fd, fl, attr): (FdArg, Value, Value)| {
            let f = rm::FsMountFlags::from_bits_retain(flag(&flags::FSMOUNT, &fl, 1)? as u32);
            let a =
                rm::MountAttrFlags::from_bits_retain(flag(&flags::MOUNT_ATTR, &attr, 0)? as u32);
            Ok(Fd::new(
                rm::fsmount(fd.get("fsmount")?, f | rm::FsMountFlags::FSMOUNT_CLOEXEC, a)
                    .or_sys("fsmount")?,
            ))
        },
    )?;
    add(
        lua,
        t,
        "move_mount",
        |_, (fd1, p1, fd2, p2, fl): (DirArg, Option<LStr>, DirArg, LStr, Value)| {
            let p1 = p1.map(|p| p.as_bytes().to_vec()).unwrap_or_default();
            let p2 = p2.as_bytes();
            let f = rm::MoveMountFlags::from_bits_retain(flag(&flags::MOVE_MOUNT, &fl, 0)? as u32);
            rm::move_mount(
                fd1.get("move_mount")?,
                &p1[..],
                fd2.get("move_mount")?,
                &*p2,
                f,
            )
            .or_path("move_mount", &p2)?;
            Ok(true)
        },
    )?;
    add(
        lua,
        t,
        "open_tree",
        |_, (d, p, fl): (DirArg, LStr, Value)| {
            let p = p.as_bytes();
            let f = rm::OpenTreeFlags::from_bits_retain(flag(&flags::OPEN_TREE, &fl, 0)? as u32);
            Ok(Fd::new(
                rm::open_tree(
                    d.get("open_tree")?,
                    &*p,
                    f | rm::OpenTreeFlags::OPEN_TREE_CLOEXEC,
                )
                .or_path("open_tree", &p)?,
            ))
        },
    )?;
    Ok(())
}
