//! File, stat, directory, link, permission, node and pty calls of `sys`.
//!
//! Owns the bindings of open(2) .. mknod(2) (see docs/lua/sys.md for the Lua
//! shapes) and the stat/statfs result tables. Does not own: mounts
//! (`mounts.rs`), sockets (`sockets.rs`), flag parsing (`flags.rs`).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};

use mlua::{Lua, Table, Value};
use nix::libc;
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};

use crate::errors::{arg_error, OrSys, Res, SysError};
use crate::fd::{flag, opt_int, DirArg, Fd, FdArg};
use crate::flags;
use crate::raw;
use crate::reg::add;

type LStr = mlua::LuaString;

const DEV_MT: &str = "moonlit.sys.dev_mt";

/// Default mode of created files and directories (the umask applies).
const DEFAULT_FILE_MODE: i64 = 0o666;
const DEFAULT_DIR_MODE: i64 = 0o777;

fn mode_arg(v: &Value, default: i64) -> Res<Mode> {
    Ok(Mode::from_raw_mode(flag(&flags::MODE, v, default)? as u32))
}

fn oflags(v: &Value) -> Res<OFlags> {
    Ok(OFlags::from_bits_retain(flag(&flags::O, v, 0)? as u32))
}

/// The numbers of a `struct stat` in the order src/stat.lua takes them.
pub type StatValues = (
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
);

/// The raw numbers of a `struct stat` (the table is built in Lua, src/stat.lua).
pub fn stat_values(st: &rfs::Stat) -> StatValues {
    (
        st.st_dev as i64,
        st.st_ino as i64,
        i64::from(st.st_mode),
        st.st_nlink as i64,
        i64::from(st.st_uid),
        i64::from(st.st_gid),
        st.st_rdev as i64,
        st.st_size,
        st.st_blksize,
        st.st_blocks,
        st.st_atime,
        st.st_atime_nsec as i64,
        st.st_mtime,
        st.st_mtime_nsec as i64,
        st.st_ctime,
        st.st_ctime_nsec as i64,
    )
}

fn statfs_table(lua: &Lua, s: &rfs::StatFs) -> mlua::Result<Table> {
    let t = lua.create_table_with_capacity(0, 10)?;
    t.raw_set("type", s.f_type)?;
    t.raw_set("bsize", s.f_bsize)?;
    t.raw_set("blocks", s.f_blocks as i64)?;
    t.raw_set("bfree", s.f_bfree as i64)?;
    t.raw_set("bavail", s.f_bavail as i64)?;
    t.raw_set("files", s.f_files as i64)?;
    t.raw_set("ffree", s.f_ffree as i64)?;
    t.raw_set("namelen", s.f_namelen)?;
    t.raw_set("frsize", s.f_frsize)?;
    t.raw_set("flags", s.f_flags)?;
    Ok(t)
}

/// `count` from `(fd, count)` or ljsyscall's `(fd, buf, count)` with `buf == nil`.
fn count_arg(a: &Value, b: &Value, default: usize) -> Res<usize> {
    let v = if a.is_nil() { b } else { a };
    match v {
        Value::Nil => Ok(default),
        Value::Integer(n) if *n >= 0 => Ok(*n as usize),
        Value::Number(f) if f.fract() == 0.0 && *f >= 0.0 => Ok(*f as usize),
        Value::String(_) | Value::UserData(_) => Err(arg_error(
            "read buffers are not supported: pass a count, the data is returned",
        )),
        other => Err(arg_error(format!(
            "bad count: non-negative integer expected, got {other:?}"
        ))),
    }
}

/// Upper bound of one read, so a script cannot make PID 1 allocate gigabytes.
const MAX_READ: usize = 64 << 20;
/// Reads up to this size go through the reused scratch buffer.
const SCRATCH_MAX: usize = 256 << 10;

fn read_into(fd: FdArg, count: usize, offset: Option<u64>, call: &'static str) -> Res<Vec<u8>> {
    if count > MAX_READ {
        return Err(arg_error(format!("{call}: count {count} above {MAX_READ}")));
    }
    let b = fd.get(call)?;
    // One scratch buffer, grown once and reused: a fresh zeroed 64 KiB per
    // read (what a socket reader asks for) costs page faults, not bytes.
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    if count > SCRATCH_MAX {
        // Rare big reads do not keep their buffer for the process's life.
        let mut buf = vec![0u8; count];
        let n = match offset {
            None => rustix::io::read(b, &mut buf).or_sys(call)?,
            Some(o) => rustix::io::pread(b, &mut buf, o).or_sys(call)?,
        };
        buf.truncate(n);
        return Ok(buf);
    }
    SCRATCH.with(|s| {
        let mut buf = s.borrow_mut();
        if buf.len() < count {
            buf.resize(count, 0);
        }
        let n = match offset {
            None => rustix::io::read(b, &mut buf[..count]).or_sys(call)?,
            Some(o) => rustix::io::pread(b, &mut buf[..count], o).or_sys(call)?,
        };
        Ok(buf[..n].to_vec())
    })
}

fn data_arg<'a>(s: &'a [u8], count: &Value) -> Res<&'a [u8]> {
    match opt_int(count, "count")? {
        None => Ok(s),
        Some(n) if n >= 0 => Ok(&s[..(n as usize).min(s.len())]),
        Some(n) => Err(arg_error(format!("bad count {n}"))),
    }
}

fn dev_arg(v: &Value, minor: &Value) -> Res<u64> {
    match v {
        Value::Nil => Ok(0),
        Value::Table(t) => {
            if let Some(d) = t.get::<Option<i64>>("device")? {
                return Ok(d as u64);
            }
            let maj = t
                .get::<Option<u32>>("major")?
                .or(t.get::<Option<u32>>(1)?)
                .ok_or_else(|| arg_error("device table needs major/minor"))?;
            let min = t
                .get::<Option<u32>>("minor")?
                .or(t.get::<Option<u32>>(2)?)
                .unwrap_or(0);
            Ok(rfs::makedev(maj, min))
        }
        other => match (opt_int(other, "dev")?, opt_int(minor, "minor")?) {
            (Some(maj), Some(min)) => Ok(rfs::makedev(maj as u32, min as u32)),
            (Some(d), None) => Ok(d as u64),
            _ => Ok(0),
        },
    }
}

struct DirState {
    fd: DirFd,
    buf: Vec<MaybeUninit<u8>>,
    pending: VecDeque<(Vec<u8>, u64, FileType)>,
    done: bool,
}

enum DirFd {
    Owned(OwnedFd),
    Num(FdArg),
}

impl DirState {
    fn fill(&mut self) -> Result<(), SysError> {
        let b = match &self.fd {
            DirFd::Owned(o) => o.as_fd(),
            DirFd::Num(n) => n.get("getdents")?,
        };
        let mut dir = rfs::RawDir::new(b, &mut self.buf);
        let mut got = false;
        while let Some(e) = dir.next() {
            let e = e.or_sys("getdents")?;
            got = true;
            self.pending
                .push_back((e.file_name().to_bytes().to_vec(), e.ino(), e.file_type()));
            if dir.is_buffer_empty() {
                break;
            }
        }
        if !got {
            self.done = true;
        }
        Ok(())
    }
}

fn ftype_name(t: FileType) -> &'static str {
    match t {
        FileType::RegularFile => "reg",
        FileType::Directory => "dir",
        FileType::Symlink => "lnk",
        FileType::CharacterDevice => "chr",
        FileType::BlockDevice => "blk",
        FileType::Fifo => "fifo",
        FileType::Socket => "sock",
        _ => "unknown",
    }
}

fn dirent_table(lua: &Lua, name: &[u8], ino: u64, t: FileType) -> mlua::Result<Table> {
    let e = lua.create_table_with_capacity(0, 6)?;
    let tn = ftype_name(t);
    e.raw_set("name", lua.create_string(name)?)?;
    e.raw_set("ino", ino as i64)?;
    e.raw_set("type", tn)?;
    e.raw_set("isdir", tn == "dir")?;
    e.raw_set("isreg", tn == "reg")?;
    e.raw_set("islnk", tn == "lnk")?;
    // ljsyscall's type tests: ent.dir, ent.reg, ent.chr ... and the
    // upper-case ent.DIR, ent.REG of its older releases.
    e.raw_set(tn, true)?;
    e.raw_set(tn.to_ascii_uppercase(), true)?;
    Ok(e)
}

fn getdents(lua: &Lua, what: Value) -> Res<mlua::Function> {
    let fd = match &what {
        Value::String(p) => {
            let p = p.as_bytes();
            DirFd::Owned(
                rfs::open(
                    &*p,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .or_path("getdents", &p)?,
            )
        }
        other => DirFd::Num(mlua::FromLua::from_lua(other.clone(), lua)?),
    };
    let mut st = DirState {
        fd,
        buf: vec![MaybeUninit::uninit(); 16 * 1024],
        pending: VecDeque::new(),
        done: false,
    };
    st.fill()?;
    // Keep an Fd object alive while iterating over it.
    let keep = what;
    let st = RefCell::new(st);
    Ok(lua.create_function(move |lua, ()| {
        let _ = &keep;
        let mut st = st.borrow_mut();
        if st.pending.is_empty() && !st.done {
            st.fill().map_err(mlua::Error::external)?;
        }
        match st.pending.pop_front() {
            Some((name, ino, t)) => {
                // ljsyscall's shape: `for d in fd:getdents() do d.name`;
                // the name comes second for `for d, name in`.
                let ent = dirent_table(lua, &name, ino, t)?;
                Ok((Value::Table(ent), Value::String(lua.create_string(&name)?)))
            }
            None => Ok((Value::Nil, Value::Nil)),
        }
    })?)
}

/// Registers the file calls into `t` (the `sys` table).
pub fn register(lua: &Lua, t: &Table) -> mlua::Result<()> {
    let mt = lua.create_table()?;
    mt.set(
        "__eq",
        lua.create_function(|_, (a, b): (Table, Table)| {
            Ok(a.raw_get::<i64>("device")? == b.raw_get::<i64>("device")?)
        })?,
    )?;
    mt.set(
        "__tostring",
        lua.create_function(|_, a: Table| {
            Ok(format!(
                "{}:{}",
                a.raw_get::<i64>("major")?,
                a.raw_get::<i64>("minor")?
            ))
        })?,
    )?;
    lua.set_named_registry_value(DEV_MT, mt)?;

    // --- files
    add(lua, t, "open", |_, (p, fl, m): (LStr, Value, Value)| {
        let p = p.as_bytes();
        let fd = rfs::open(
            &*p,
            oflags(&fl)? | OFlags::CLOEXEC,
            mode_arg(&m, DEFAULT_FILE_MODE)?,
        )
        .or_path("open", &p)?;
        Ok(Fd::new(fd))
    })?;
    add(
        lua,
        t,
        "openat",
        |_, (d, p, fl, m): (DirArg, LStr, Value, Value)| {
            let p = p.as_bytes();
            let fd = rfs::openat(
                d.get("openat")?,
                &*p,
                oflags(&fl)? | OFlags::CLOEXEC,
                mode_arg(&m, DEFAULT_FILE_MODE)?,
            )
            .or_path("openat", &p)?;
            Ok(Fd::new(fd))
        },
    )?;
    add(lua, t, "close", |lua, v: Value| {
        if let Value::UserData(ud) = &v {
            if let Ok(fd) = ud.borrow::<Fd>() {
                fd.close().or_sys("close")?;
                return Ok(true);
            }
        }
        let FdArg(n) = mlua::FromLua::from_lua(v, lua)?;
        raw::close(n).or_sys("close")?;
        Ok(true)
    })?;
    add(lua, t, "read", |lua, (fd, a, b): (FdArg, Value, Value)| {
        let data = read_into(fd, count_arg(&a, &b, 4096)?, None, "read")?;
        Ok(lua.create_string(&data)?)
    })?;
    add(
        lua,
        t,
        "pread",
        |lua, (fd, a, b, c): (FdArg, Value, Value, Value)| {
            // (fd, count, offset) or ljsyscall's (fd, buf, count, offset).
            let (count, off) = if a.is_nil() && !c.is_nil() {
                (&b, &c)
            } else {
                (&a, &b)
            };
            let off = opt_int(off, "offset")?.ok_or_else(|| arg_error("pread: offset required"))?;
            let data = read_into(
                fd,
                count_arg(count, &Value::Nil, 4096)?,
                Some(off as u64),
                "pread",
            )?;
            Ok(lua.create_string(&data)?)
        },
    )?;
    add(
        lua,
        t,
        "write",
        |_, (fd, s, count): (FdArg, LStr, Value)| {
            let s = s.as_bytes();
            let data = data_arg(&s, &count)?;
            Ok(rustix::io::write(fd.get("write")?, data).or_sys("write")? as i64)
        },
    )?;
    add(
        lua,
        t,
        "pwrite",
        |_, (fd, s, a, b): (FdArg, LStr, Value, Value)| {
            // (fd, data, offset) or ljsyscall's (fd, data, count, offset).
            let s = s.as_bytes();
            let (data, off) = if b.is_nil() {
                (&s[..], &a)
            } else {
                (data_arg(&s, &a)?, &b)
            };
            let off =
                opt_int(off, "offset")?.ok_or_else(|| arg_error("pwrite: offset required"))?;
            Ok(rustix::io::pwrite(fd.get("pwrite")?, data, off as u64).or_sys("pwrite")? as i64)
        },
    )?;
    add(
        lua,
        t,
        "lseek",
        |_, (fd, off, whence): (FdArg, Option<i64>, Value)| {
            let off = off.unwrap_or(0);
            let w = flag(&flags::SEEK, &whence, i64::from(libc::SEEK_SET))? as i32;
            let pos = match w {
                libc::SEEK_SET => rustix::fs::SeekFrom::Start(off as u64),
                libc::SEEK_CUR => rustix::fs::SeekFrom::Current(off),
                libc::SEEK_END => rustix::fs::SeekFrom::End(off),
                libc::SEEK_DATA => rustix::fs::SeekFrom::Data(off as u64),
                libc::SEEK_HOLE => rustix::fs::SeekFrom::Hole(off as u64),
                _ => return Err(arg_error(format!("lseek: bad whence {w}"))),
            };
            Ok(rfs::seek(fd.get("lseek")?, pos).or_sys("lseek")? as i64)
        },
    )?;
    add(lua, t, "dup", |_, fd: FdArg| {
        Ok(Fd::new(
            rustix::io::fcntl_dupfd_cloexec(fd.get("dup")?, 0).or_sys("dup")?,
        ))
    })?;
    add(lua, t, "dup2", |_, (old, new): (FdArg, FdArg)| {
        let n = raw::dup2(old.0, new.0).or_sys("dup2")?;
        Ok(Fd::from_raw(n))
    })?;
    add(
        lua,
        t,
        "dup3",
        |_, (old, new, fl): (FdArg, FdArg, Value)| {
            let n = raw::dup3(old.0, new.0, flag(&flags::O, &fl, 0)? as i32).or_sys("dup3")?;
            Ok(Fd::from_raw(n))
        },
    )?;
    add(lua, t, "pipe", |_, fl: Value| {
        let fl = rustix::pipe::PipeFlags::from_bits_retain(flag(&flags::O, &fl, 0)? as u32)
            | rustix::pipe::PipeFlags::CLOEXEC;
        let (r, w) = rustix::pipe::pipe_with(fl).or_sys("pipe")?;
        Ok((Fd::new(r), Fd::new(w)))
    })?;
    t.set("pipe2", t.get::<mlua::Function>("pipe")?)?;
    add(
        lua,
        t,
        "fcntl",
        |lua, (fd, cmd, arg): (FdArg, Value, Value)| {
            let cmd = flag(&flags::F, &cmd, -1)? as i32;
            let b = fd.get("fcntl")?;
            Ok(match cmd {
                libc::F_GETFD => Value::Integer(i64::from(
                    rustix::io::fcntl_getfd(b).or_sys("fcntl")?.bits(),
                )),
                libc::F_SETFD => {
                    let v = flag(&flags::FD, &arg, 0)? as u32;
                    rustix::io::fcntl_setfd(b, rustix::io::FdFlags::from_bits_retain(v))
                        .or_sys("fcntl")?;
                    Value::Boolean(true)
                }
                libc::F_GETFL => {
                    Value::Integer(i64::from(rfs::fcntl_getfl(b).or_sys("fcntl")?.bits()))
                }
                libc::F_SETFL => {
                    rfs::fcntl_setfl(
                        b,
                        OFlags::from_bits_retain(flag(&flags::O, &arg, 0)? as u32),
                    )
                    .or_sys("fcntl")?;
                    Value::Boolean(true)
                }
                libc::F_DUPFD | libc::F_DUPFD_CLOEXEC => {
                    let min = opt_int(&arg, "min fd")?.unwrap_or(0) as i32;
                    let o = rustix::io::fcntl_dupfd_cloexec(b, min).or_sys("fcntl")?;
                    if cmd == libc::F_DUPFD {
                        rustix::io::fcntl_setfd(&o, rustix::io::FdFlags::empty())
                            .or_sys("fcntl")?;
                    }
                    Value::UserData(lua.create_userdata(Fd::new(o))?)
                }
                _ => return Err(arg_error(format!("fcntl: unsupported command {cmd}"))),
            })
        },
    )?;
    add(lua, t, "fsync", |_, fd: FdArg| {
        rfs::fsync(fd.get("fsync")?).or_sys("fsync")?;
        Ok(true)
    })?;
    add(lua, t, "fdatasync", |_, fd: FdArg| {
        rfs::fdatasync(fd.get("fdatasync")?).or_sys("fdatasync")?;
        Ok(true)
    })?;
    add(lua, t, "sync", |_, ()| {
        rfs::sync();
        Ok(true)
    })?;
    add(lua, t, "syncfs", |_, fd: FdArg| {
        rfs::syncfs(fd.get("syncfs")?).or_sys("syncfs")?;
        Ok(true)
    })?;
    add(lua, t, "truncate", |_, (p, len): (LStr, i64)| {
        let c = p.as_bytes_with_nul();
        let cs = std::ffi::CStr::from_bytes_with_nul(&c)
            .map_err(|_| arg_error("truncate: path contains a NUL byte"))?;
        raw::truncate(cs, len).or_path("truncate", &p.as_bytes())?;
        Ok(true)
    })?;
    add(lua, t, "ftruncate", |_, (fd, len): (FdArg, i64)| {
        rfs::ftruncate(fd.get("ftruncate")?, len as u64).or_sys("ftruncate")?;
        Ok(true)
    })?;
    add(
        lua,
        t,
        "ioctl",
        |_, (fd, req, arg): (FdArg, Value, Value)| {
            let req = flag(&flags::IOCTL, &req, -1)?;
            if req < 0 {
                return Err(arg_error("ioctl: request required"));
            }
            let b = fd.get("ioctl")?;
            if req == libc::FIONREAD as i64 {
                return Ok(Value::Integer(i64::from(
                    raw::ioctl_get_int(b, req as u64).or_sys("ioctl")?,
                )));
            }
            let a = match arg {
                Value::Boolean(x) => i64::from(x),
                other => opt_int(&other, "ioctl arg")?.unwrap_or(0),
            };
            let r = raw::ioctl_int(b, req as u64, a as u64).or_sys("ioctl")?;
            Ok(normalise_ioctl(Value::Integer(i64::from(r))))
        },
    )?;

    // --- pty (for TIOCSCTTY on a real terminal)
    add(lua, t, "openpt", |_, fl: Value| {
        let f = rustix::pty::OpenptFlags::from_bits_retain(flag(
            &flags::O,
            &fl,
            libc::O_RDWR as i64 | libc::O_NOCTTY as i64,
        )? as u32);
        Ok(Fd::new(
            rustix::pty::openpt(f | rustix::pty::OpenptFlags::CLOEXEC).or_sys("openpt")?,
        ))
    })?;
    add(lua, t, "grantpt", |_, fd: FdArg| {
        rustix::pty::grantpt(fd.get("grantpt")?).or_sys("grantpt")?;
        Ok(true)
    })?;
    add(lua, t, "unlockpt", |_, fd: FdArg| {
        rustix::pty::unlockpt(fd.get("unlockpt")?).or_sys("unlockpt")?;
        Ok(true)
    })?;
    add(lua, t, "ptsname", |_, fd: FdArg| {
        let n = rustix::pty::ptsname(fd.get("ptsname")?, Vec::new()).or_sys("ptsname")?;
        Ok(n.to_string_lossy().into_owned())
    })?;

    // --- stat
    let rawt = lua.create_table()?;
    add(lua, &rawt, "stat", |_, p: LStr| {
        let p = p.as_bytes();
        Ok(stat_values(&rfs::stat(&*p).or_path("stat", &p)?))
    })?;
    add(lua, &rawt, "lstat", |_, p: LStr| {
        let p = p.as_bytes();
        Ok(stat_values(&rfs::lstat(&*p).or_path("lstat", &p)?))
    })?;
    add(lua, &rawt, "fstat", |_, fd: FdArg| {
        Ok(stat_values(&rfs::fstat(fd.get("fstat")?).or_sys("fstat")?))
    })?;
    add(
        lua,
        &rawt,
        "fstatat",
        |_, (d, p, fl): (DirArg, LStr, Value)| {
            let p = p.as_bytes();
            let fl = AtFlags::from_bits_retain(flag(&flags::AT, &fl, 0)? as u32);
            Ok(stat_values(
                &rfs::statat(d.get("fstatat")?, &*p, fl).or_path("fstatat", &p)?,
            ))
        },
    )?;
    lua.load(include_str!("stat.lua"))
        .set_name("=sys.stat")
        .call::<()>((t.clone(), rawt, lua.named_registry_value::<Table>(DEV_MT)?))?;
    add(lua, t, "statfs", |lua, p: LStr| {
        let p = p.as_bytes();
        let st = rfs::statfs(&*p).or_path("statfs", &p)?;
        Ok(statfs_table(lua, &st)?)
    })?;
    add(lua, t, "fstatfs", |lua, fd: FdArg| {
        let st = rfs::fstatfs(fd.get("fstatfs")?).or_sys("fstatfs")?;
        Ok(statfs_table(lua, &st)?)
    })?;
    add(lua, t, "access", |_, (p, m): (LStr, Value)| {
        let bits = match &m {
            Value::String(s)
                if s.to_str()?.chars().all(|c| "rwxfRWXF".contains(c))
                    && !s.to_str()?.is_empty()
                    && s.to_str()?.len() <= 4 =>
            {
                let s = s.to_str()?;
                let mut b = 0;
                for c in s.chars() {
                    b |= match c.to_ascii_lowercase() {
                        'r' => libc::R_OK,
                        'w' => libc::W_OK,
                        'x' => libc::X_OK,
                        _ => libc::F_OK,
                    };
                }
                b as i64
            }
            other => flag(&flags::OK, other, 0)?,
        };
        let p = p.as_bytes();
        rfs::access(&*p, rfs::Access::from_bits_retain(bits as u32)).or_path("access", &p)?;
        Ok(true)
    })?;

    // --- directories
    add(lua, t, "mkdir", |_, (p, m): (LStr, Value)| {
        let p = p.as_bytes();
        rfs::mkdir(&*p, mode_arg(&m, DEFAULT_DIR_MODE)?).or_path("mkdir", &p)?;
        Ok(true)
    })?;
    add(lua, t, "mkdirat", |_, (d, p, m): (DirArg, LStr, Value)| {
        let p = p.as_bytes();
        rfs::mkdirat(d.get("mkdirat")?, &*p, mode_arg(&m, DEFAULT_DIR_MODE)?)
            .or_path("mkdirat", &p)?;
        Ok(true)
    })?;
    add(lua, t, "rmdir", |_, p: LStr| {
        let p = p.as_bytes();
        rfs::rmdir(&*p).or_path("rmdir", &p)?;
        Ok(true)
    })?;
    add(lua, t, "chdir", |_, p: LStr| {
        let p = p.as_bytes();
        rustix::process::chdir(&*p).or_path("chdir", &p)?;
        Ok(true)
    })?;
    add(lua, t, "fchdir", |_, fd: FdArg| {
        rustix::process::fchdir(fd.get("fchdir")?).or_sys("fchdir")?;
        Ok(true)
    })?;
    add(lua, t, "getcwd", |lua, ()| {
        let c = rustix::process::getcwd(Vec::new()).or_sys("getcwd")?;
        Ok(lua.create_string(c.as_bytes())?)
    })?;
    add(lua, t, "getdents", getdents)?;

    // --- links
    add(lua, t, "unlink", |_, p: LStr| {
        let p = p.as_bytes();
        rfs::unlink(&*p).or_path("unlink", &p)?;
        Ok(true)
    })?;
    add(
        lua,
        t,
        "unlinkat",
        |_, (d, p, fl): (DirArg, LStr, Value)| {
            let p = p.as_bytes();
            let fl = AtFlags::from_bits_retain(flag(&flags::AT, &fl, 0)? as u32);
            rfs::unlinkat(d.get("unlinkat")?, &*p, fl).or_path("unlinkat", &p)?;
            Ok(true)
        },
    )?;
    add(lua, t, "rename", |_, (a, b): (LStr, LStr)| {
        let (a, b) = (a.as_bytes(), b.as_bytes());
        rfs::rename(&*a, &*b).or_path("rename", &a)?;
        Ok(true)
    })?;
    add(lua, t, "link", |_, (a, b): (LStr, LStr)| {
        let (a, b) = (a.as_bytes(), b.as_bytes());
        rfs::link(&*a, &*b).or_path("link", &b)?;
        Ok(true)
    })?;
    add(lua, t, "symlink", |_, (target, linkpath): (LStr, LStr)| {
        let (a, b) = (target.as_bytes(), linkpath.as_bytes());
        rfs::symlink(&*a, &*b).or_path("symlink", &b)?;
        Ok(true)
    })?;
    add(lua, t, "readlink", |lua, p: LStr| {
        let p = p.as_bytes();
        let c = rfs::readlink(&*p, Vec::new()).or_path("readlink", &p)?;
        Ok(lua.create_string(c.as_bytes())?)
    })?;

    // --- permissions
    add(lua, t, "chmod", |_, (p, m): (LStr, Value)| {
        let p = p.as_bytes();
        rfs::chmod(&*p, mode_arg(&m, 0)?).or_path("chmod", &p)?;
        Ok(true)
    })?;
    add(lua, t, "fchmod", |_, (fd, m): (FdArg, Value)| {
        rfs::fchmod(fd.get("fchmod")?, mode_arg(&m, 0)?).or_sys("fchmod")?;
        Ok(true)
    })?;
    add(lua, t, "chown", |_, (p, u, g): (LStr, Value, Value)| {
        let p = p.as_bytes();
        let (u, g) = (uid_arg(&u)?, gid_arg(&g)?);
        rfs::chown(&*p, u, g).or_path("chown", &p)?;
        Ok(true)
    })?;
    add(lua, t, "lchown", |_, (p, u, g): (LStr, Value, Value)| {
        let p = p.as_bytes();
        let (u, g) = (uid_arg(&u)?, gid_arg(&g)?);
        rfs::chownat(rfs::CWD, &*p, u, g, AtFlags::SYMLINK_NOFOLLOW).or_path("lchown", &p)?;
        Ok(true)
    })?;
    add(lua, t, "fchown", |_, (fd, u, g): (FdArg, Value, Value)| {
        rfs::fchown(fd.get("fchown")?, uid_arg(&u)?, gid_arg(&g)?).or_sys("fchown")?;
        Ok(true)
    })?;
    add(lua, t, "umask", |_, m: Value| {
        let old = rustix::process::umask(mode_arg(&m, 0o022)?);
        Ok(i64::from(old.bits()))
    })?;

    // --- nodes
    add(
        lua,
        t,
        "mknod",
        |_, (p, m, dev, minor): (LStr, Value, Value, Value)| {
            let p = p.as_bytes();
            let mode = flag(&flags::MODE, &m, 0)? as u32;
            let dev = dev_arg(&dev, &minor)?;
            rfs::mknodat(
                rfs::CWD,
                &*p,
                FileType::from_raw_mode(mode),
                Mode::from_raw_mode(mode & 0o7777),
                dev,
            )
            .or_path("mknod", &p)?;
            Ok(true)
        },
    )?;
    add(lua, t, "mkfifo", |_, (p, m): (LStr, Value)| {
        let p = p.as_bytes();
        rfs::mkfifoat(rfs::CWD, &*p, mode_arg(&m, DEFAULT_FILE_MODE)?).or_path("mkfifo", &p)?;
        Ok(true)
    })?;
    add(lua, t, "makedev", |_, (maj, min): (u32, u32)| {
        Ok(rfs::makedev(maj, min) as i64)
    })?;
    add(lua, t, "major", |_, d: i64| {
        Ok(i64::from(rfs::major(d as u64)))
    })?;
    add(lua, t, "minor", |_, d: i64| {
        Ok(i64::from(rfs::minor(d as u64)))
    })?;
    Ok(())
}

fn normalise_ioctl(v: Value) -> Value {
    // ioctls that only succeed or fail return `true` (TIOCSCTTY, TIOCNOTTY, ...).
    match v {
        Value::Integer(0) => Value::Boolean(true),
        other => other,
    }
}

fn uid_arg(v: &Value) -> Res<Option<rustix::process::Uid>> {
    Ok(match opt_int(v, "uid")? {
        None | Some(-1) => None,
        Some(n) => Some(rustix::process::Uid::from_raw(n as u32)),
    })
}

fn gid_arg(v: &Value) -> Res<Option<rustix::process::Gid>> {
    Ok(match opt_int(v, "gid")? {
        None | Some(-1) => None,
        Some(n) => Some(rustix::process::Gid::from_raw(n as u32)),
    })
}
