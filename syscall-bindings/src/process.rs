//! Process, namespace, system, time and kernel-module calls of `sys`.
//!
//! Owns: ids, credentials, sessions, kill, prctl, rlimits, priorities, affinity,
//! waitpid, unshare/setns, host name, uname/sysinfo, reboot (refused unless PID 1),
//! swap, kernel log, clock_gettime, finit_module/delete_module.
//! Does not own: process creation (the init's `spawn`), signal handlers (the
//! init's loop), sleeping (the loop's `sleep`), modprobe resolution (`kmod.rs`).

use std::io::Write;

use mlua::{Lua, Table, Value};
use nix::libc;
use rustix::process::{self as rp, Pid};

use crate::errors::{arg_error, OrSys, Res, SysError};
use crate::fd::{flag, opt_int, FdArg};
use crate::flags;
use crate::raw;
use crate::reg::{add, cstring};

type LStr = mlua::LuaString;

fn pid_opt(n: Option<i64>) -> Option<Pid> {
    n.and_then(|n| Pid::from_raw(n as i32))
}

/// The same argument for the calls that go through nix (0 or nil: the caller).
fn nix_pid_opt(n: Option<i64>) -> Option<nix::unistd::Pid> {
    pid_opt(n).map(|p| nix::unistd::Pid::from_raw(p.as_raw_nonzero().get()))
}

fn resource(v: &Value) -> Res<i32> {
    let n = flag(&flags::RLIMIT, v, -1)?;
    if !(0..=15).contains(&n) {
        return Err(arg_error(format!("unknown RLIMIT resource {v:?}")));
    }
    Ok(n as i32)
}

fn lim_value(v: u64) -> i64 {
    // RLIM_INFINITY (u64::MAX) reads as -1, sys.c.RLIM.INFINITY.
    v as i64
}

fn lim_arg(v: &Value, what: &str) -> Res<Option<u64>> {
    match v {
        Value::String(s) => {
            let s = s.to_str()?;
            match s.to_ascii_lowercase().as_str() {
                "infinity" | "unlimited" | "inf" => Ok(None),
                other => other
                    .parse::<u64>()
                    .map(Some)
                    .map_err(|_| arg_error(format!("bad rlimit {what} '{s}'"))),
            }
        }
        other => match opt_int(other, what)? {
            None | Some(-1) => Ok(None),
            Some(n) if n >= 0 => Ok(Some(n as u64)),
            Some(n) => Err(arg_error(format!("bad rlimit {what} {n}"))),
        },
    }
}

fn rlimit_table(lua: &Lua, (cur, max): (u64, u64)) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set("cur", lim_value(cur))?;
    t.raw_set("max", lim_value(max))?;
    t.raw_set("rlim_cur", lim_value(cur))?;
    t.raw_set("rlim_max", lim_value(max))?;
    Ok(t)
}

/// New limits from `(tbl)` or `(cur, max)`; a missing max keeps `cur`.
fn new_rlimit(a: &Value, b: &Value) -> Res<(u64, u64)> {
    let (cur, max) = match a {
        Value::Table(t) => {
            let cur: Value = match t.get::<Value>("cur")? {
                Value::Nil => t.get("rlim_cur")?,
                v => v,
            };
            let max: Value = match t.get::<Value>("max")? {
                Value::Nil => t.get("rlim_max")?,
                v => v,
            };
            (lim_arg(&cur, "cur")?, lim_arg(&max, "max")?)
        }
        other => {
            let cur = lim_arg(other, "cur")?;
            let max = if b.is_nil() { cur } else { lim_arg(b, "max")? };
            (cur, max)
        }
    };
    Ok((cur.unwrap_or(u64::MAX), max.unwrap_or(u64::MAX)))
}

/// The table of a wait status (ljsyscall's names plus plain ones).
pub fn status_table(lua: &Lua, raw_status: i32) -> mlua::Result<Table> {
    let s = Status(raw_status);
    let t = lua.create_table()?;
    t.raw_set("status", raw_status)?;
    t.raw_set("WIFEXITED", s.exited())?;
    t.raw_set("WIFSIGNALED", s.signaled())?;
    t.raw_set("WIFSTOPPED", s.stopped())?;
    t.raw_set("WIFCONTINUED", s.continued())?;
    t.raw_set("WCOREDUMP", s.signaled() && (raw_status & 0x80) != 0)?;
    t.raw_set("EXITSTATUS", s.exit_status())?;
    t.raw_set("TERMSIG", s.term_signal())?;
    t.raw_set("STOPSIG", s.stop_signal())?;
    t.raw_set("exited", s.exited())?;
    t.raw_set("code", s.exit_status())?;
    t.raw_set("signal", s.term_signal())?;
    Ok(t)
}

/// A raw wait(2) status decoded as the W* macros do.
#[derive(Debug, Clone, Copy)]
pub struct Status(pub i32);

impl Status {
    /// WIFEXITED
    pub fn exited(self) -> bool {
        self.0 & 0x7f == 0
    }
    /// WIFSIGNALED
    pub fn signaled(self) -> bool {
        let t = self.0 & 0x7f;
        t != 0 && t != 0x7f
    }
    /// WIFSTOPPED
    pub fn stopped(self) -> bool {
        self.0 & 0xff == 0x7f
    }
    /// WIFCONTINUED
    pub fn continued(self) -> bool {
        self.0 == 0xffff
    }
    /// WEXITSTATUS when exited.
    pub fn exit_status(self) -> Option<i32> {
        self.exited().then_some((self.0 >> 8) & 0xff)
    }
    /// WTERMSIG when signaled.
    pub fn term_signal(self) -> Option<i32> {
        self.signaled().then_some(self.0 & 0x7f)
    }
    /// WSTOPSIG when stopped.
    pub fn stop_signal(self) -> Option<i32> {
        self.stopped().then_some((self.0 >> 8) & 0xff)
    }
}

fn sig_arg(v: &Value) -> Res<i32> {
    Ok(flag(&flags::SIG, v, i64::from(libc::SIGTERM))? as i32)
}

fn bool_arg(v: &Value) -> Res<bool> {
    Ok(match v {
        Value::Nil => true,
        Value::Boolean(b) => *b,
        other => opt_int(other, "flag")?.unwrap_or(0) != 0,
    })
}

fn prctl(lua: &Lua, opt: Value, arg: Value) -> Res<Value> {
    let o = flag(&flags::PR, &opt, -1)? as i32;
    let t = |r: Result<(), rustix::io::Errno>| -> Res<Value> {
        r.or_sys("prctl")?;
        Ok(Value::Boolean(true))
    };
    match o {
        libc::PR_SET_CHILD_SUBREAPER => {
            let on = bool_arg(&arg)?;
            t(rp::set_child_subreaper(if on {
                Some(rp::getpid())
            } else {
                None
            }))
        }
        libc::PR_GET_CHILD_SUBREAPER => Ok(Value::Boolean(
            rp::child_subreaper().or_sys("prctl")?.is_some(),
        )),
        libc::PR_SET_NO_NEW_PRIVS => t(rustix::thread::set_no_new_privs(bool_arg(&arg)?)),
        libc::PR_GET_NO_NEW_PRIVS => Ok(Value::Boolean(
            rustix::thread::no_new_privs().or_sys("prctl")?,
        )),
        libc::PR_SET_NAME => {
            let name = match &arg {
                Value::String(s) => {
                    let mut b = s.as_bytes().to_vec();
                    b.truncate(15);
                    std::ffi::CString::new(b)
                        .map_err(|_| arg_error("prctl: name contains a NUL byte"))?
                }
                other => {
                    return Err(arg_error(format!(
                        "prctl set_name: string expected, got {}",
                        other.type_name()
                    )))
                }
            };
            t(rustix::thread::set_name(&name))
        }
        libc::PR_GET_NAME => {
            let n = rustix::thread::name().or_sys("prctl")?;
            Ok(Value::String(lua.create_string(n.as_bytes())?))
        }
        libc::PR_SET_PDEATHSIG => {
            let s = match &arg {
                Value::Nil => None,
                other => match flag(&flags::SIG, other, 0)? as i32 {
                    0 => None,
                    n => Some(raw::signal(n).ok_or_else(|| arg_error(format!("bad signal {n}")))?),
                },
            };
            t(rp::set_parent_process_death_signal(s))
        }
        libc::PR_GET_PDEATHSIG => Ok(Value::Integer(i64::from(
            rp::parent_process_death_signal()
                .or_sys("prctl")?
                .map_or(0, |s| s.as_raw()),
        ))),
        _ => Err(arg_error(format!(
            "prctl: unsupported option {opt:?} (subreaper, no_new_privs, name, pdeathsig)"
        ))),
    }
}

fn uname_table(lua: &Lua) -> mlua::Result<Table> {
    let u = rustix::system::uname();
    let t = lua.create_table()?;
    t.raw_set("sysname", lua.create_string(u.sysname().to_bytes())?)?;
    t.raw_set("nodename", lua.create_string(u.nodename().to_bytes())?)?;
    t.raw_set("release", lua.create_string(u.release().to_bytes())?)?;
    t.raw_set("version", lua.create_string(u.version().to_bytes())?)?;
    t.raw_set("machine", lua.create_string(u.machine().to_bytes())?)?;
    t.raw_set("domainname", lua.create_string(u.domainname().to_bytes())?)?;
    Ok(t)
}

/// Registers the process/system calls into `t`.
pub fn register(lua: &Lua, t: &Table) -> mlua::Result<()> {
    // Infallible getters go straight to create_function: no error path to wrap.
    t.raw_set(
        "getpid",
        lua.create_function(|_, ()| Ok(i64::from(rp::getpid().as_raw_nonzero().get())))?,
    )?;
    t.raw_set(
        "getppid",
        lua.create_function(|_, ()| {
            Ok(i64::from(
                rp::getppid().map_or(0, |p| p.as_raw_nonzero().get()),
            ))
        })?,
    )?;
    t.raw_set(
        "getuid",
        lua.create_function(|_, ()| Ok(i64::from(rp::getuid().as_raw())))?,
    )?;
    t.raw_set(
        "geteuid",
        lua.create_function(|_, ()| Ok(i64::from(rp::geteuid().as_raw())))?,
    )?;
    t.raw_set(
        "getgid",
        lua.create_function(|_, ()| Ok(i64::from(rp::getgid().as_raw())))?,
    )?;
    t.raw_set(
        "getegid",
        lua.create_function(|_, ()| Ok(i64::from(rp::getegid().as_raw())))?,
    )?;

    add(lua, t, "getgroups", |_, ()| {
        Ok(rp::getgroups()
            .or_sys("getgroups")?
            .into_iter()
            .map(|g| i64::from(g.as_raw()))
            .collect::<Vec<_>>())
    })?;
    add(lua, t, "setuid", |_, uid: u32| {
        nix::unistd::setuid(nix::unistd::Uid::from_raw(uid)).or_sys("setuid")?;
        Ok(true)
    })?;
    add(lua, t, "setgid", |_, gid: u32| {
        nix::unistd::setgid(nix::unistd::Gid::from_raw(gid)).or_sys("setgid")?;
        Ok(true)
    })?;
    add(lua, t, "setgroups", |_, gids: Vec<u32>| {
        let g: Vec<_> = gids.into_iter().map(nix::unistd::Gid::from_raw).collect();
        nix::unistd::setgroups(&g).or_sys("setgroups")?;
        Ok(true)
    })?;
    add(lua, t, "setsid", |_, ()| {
        Ok(i64::from(
            rp::setsid().or_sys("setsid")?.as_raw_nonzero().get(),
        ))
    })?;
    // getsid, getpgid and getpgrp return 0 when the session or group leader
    // lives in an ancestor pid namespace (a process started by `unshare
    // --pid --fork`, a container's PID 1). rustix treats 0 as impossible and
    // panics, so these three go through nix, which hands back the raw value.
    add(lua, t, "getsid", |_, pid: Option<i64>| {
        Ok(i64::from(
            nix::unistd::getsid(nix_pid_opt(pid))
                .or_sys("getsid")?
                .as_raw(),
        ))
    })?;
    add(
        lua,
        t,
        "setpgid",
        |_, (pid, pgid): (Option<i64>, Option<i64>)| {
            rp::setpgid(pid_opt(pid), pid_opt(pgid)).or_sys("setpgid")?;
            Ok(true)
        },
    )?;
    add(lua, t, "getpgid", |_, pid: Option<i64>| {
        Ok(i64::from(
            nix::unistd::getpgid(nix_pid_opt(pid))
                .or_sys("getpgid")?
                .as_raw(),
        ))
    })?;
    add(lua, t, "getpgrp", |_, ()| {
        Ok(i64::from(nix::unistd::getpgrp().as_raw()))
    })?;
    add(lua, t, "kill", |_, (pid, sig): (i32, Value)| {
        raw::kill(pid, sig_arg(&sig)?).or_sys("kill")?;
        Ok(true)
    })?;
    add(lua, t, "killpg", |_, (pgrp, sig): (i32, Value)| {
        if pgrp <= 0 {
            return Err(arg_error(format!("killpg: bad process group {pgrp}")));
        }
        raw::kill(-pgrp, sig_arg(&sig)?).or_sys("killpg")?;
        Ok(true)
    })?;
    add(lua, t, "prctl", |lua, (opt, arg): (Value, Value)| {
        prctl(lua, opt, arg)
    })?;
    add(lua, t, "getrlimit", |lua, r: Value| {
        let old = raw::prlimit(0, resource(&r)?, None).or_sys("getrlimit")?;
        Ok(rlimit_table(lua, old)?)
    })?;
    add(
        lua,
        t,
        "setrlimit",
        |_, (r, a, b): (Value, Value, Value)| {
            let res = resource(&r)?;
            raw::prlimit(0, res, Some(new_rlimit(&a, &b)?)).or_sys("setrlimit")?;
            Ok(true)
        },
    )?;
    add(
        lua,
        t,
        "prlimit",
        |lua, (pid, r, a, b): (Option<i64>, Value, Value, Value)| {
            let res = resource(&r)?;
            let new = if a.is_nil() {
                None
            } else {
                Some(new_rlimit(&a, &b)?)
            };
            let old = raw::prlimit(pid.unwrap_or(0) as i32, res, new).or_sys("prlimit")?;
            Ok(rlimit_table(lua, old)?)
        },
    )?;
    add(
        lua,
        t,
        "getpriority",
        |_, (which, who): (Value, Option<i64>)| {
            let w = flag(&flags::PRIO, &which, i64::from(libc::PRIO_PROCESS))? as i32;
            let who_raw = who.unwrap_or(0);
            let r = match w {
                libc::PRIO_PROCESS => rp::getpriority_process(pid_opt(Some(who_raw))),
                libc::PRIO_PGRP => rp::getpriority_pgrp(pid_opt(Some(who_raw))),
                libc::PRIO_USER => rp::getpriority_user(rp::Uid::from_raw(who_raw as u32)),
                _ => return Err(arg_error(format!("getpriority: bad which {which:?}"))),
            };
            Ok(i64::from(r.or_sys("getpriority")?))
        },
    )?;
    add(
        lua,
        t,
        "setpriority",
        |_, (which, who, prio): (Value, Option<i64>, i32)| {
            let w = flag(&flags::PRIO, &which, i64::from(libc::PRIO_PROCESS))? as i32;
            let who_raw = who.unwrap_or(0);
            match w {
                libc::PRIO_PROCESS => rp::setpriority_process(pid_opt(Some(who_raw)), prio),
                libc::PRIO_PGRP => rp::setpriority_pgrp(pid_opt(Some(who_raw)), prio),
                libc::PRIO_USER => rp::setpriority_user(rp::Uid::from_raw(who_raw as u32), prio),
                _ => return Err(arg_error(format!("setpriority: bad which {which:?}"))),
            }
            .or_sys("setpriority")?;
            Ok(true)
        },
    )?;
    add(lua, t, "sched_getaffinity", |_, pid: Option<i64>| {
        let set = rustix::thread::sched_getaffinity(pid_opt(pid)).or_sys("sched_getaffinity")?;
        Ok((0..rustix::thread::CpuSet::MAX_CPU)
            .filter(|&i| set.is_set(i))
            .map(|i| i as i64)
            .collect::<Vec<_>>())
    })?;
    add(
        lua,
        t,
        "waitpid",
        |lua, (pid, opts): (Option<i64>, Value)| {
            let o = rp::WaitOptions::from_bits_retain(flag(&flags::W, &opts, 0)? as u32);
            let pid = pid.unwrap_or(-1);
            let r = match pid {
                -1 => rp::wait(o),
                0 => rp::waitpid(None, o),
                p if p > 0 => rp::waitpid(pid_opt(Some(p)), o),
                p => match Pid::from_raw(-(p as i32)) {
                    Some(g) => rp::waitpgid(g, o),
                    None => return Err(arg_error(format!("waitpid: bad pid {p}"))),
                },
            }
            .or_sys("waitpid")?;
            Ok(match r {
                None => (0i64, Value::Nil),
                Some((p, st)) => (
                    i64::from(p.as_raw_nonzero().get()),
                    Value::Table(status_table(lua, st.as_raw())?),
                ),
            })
        },
    )?;

    // --- namespaces
    add(lua, t, "unshare", |_, fl: Value| {
        raw::unshare(flag(&flags::CLONE, &fl, 0)? as i32).or_sys("unshare")?;
        Ok(true)
    })?;
    add(lua, t, "setns", |_, (fd, nstype): (FdArg, Value)| {
        raw::setns(fd.get("setns")?, flag(&flags::CLONE, &nstype, 0)? as i32).or_sys("setns")?;
        Ok(true)
    })?;

    // --- system
    add(lua, t, "sethostname", |_, name: LStr| {
        let n = name.as_bytes();
        rustix::system::sethostname(&n).or_path("sethostname", &n)?;
        Ok(true)
    })?;
    add(lua, t, "setdomainname", |_, name: LStr| {
        let n = name.as_bytes();
        rustix::system::setdomainname(&n).or_path("setdomainname", &n)?;
        Ok(true)
    })?;
    add(lua, t, "gethostname", |lua, ()| {
        Ok(lua.create_string(rustix::system::uname().nodename().to_bytes())?)
    })?;
    add(lua, t, "uname", |lua, ()| Ok(uname_table(lua)?))?;
    add(lua, t, "sysinfo", |lua, ()| {
        let s = rustix::system::sysinfo();
        let t = lua.create_table()?;
        t.raw_set("uptime", s.uptime)?;
        t.raw_set(
            "loads",
            s.loads
                .iter()
                .map(|&l| l as f64 / 65536.0)
                .collect::<Vec<_>>(),
        )?;
        t.raw_set("totalram", s.totalram as i64)?;
        t.raw_set("freeram", s.freeram as i64)?;
        t.raw_set("sharedram", s.sharedram as i64)?;
        t.raw_set("bufferram", s.bufferram as i64)?;
        t.raw_set("totalswap", s.totalswap as i64)?;
        t.raw_set("freeswap", s.freeswap as i64)?;
        t.raw_set("procs", i64::from(s.procs))?;
        t.raw_set("totalhigh", s.totalhigh as i64)?;
        t.raw_set("freehigh", s.freehigh as i64)?;
        t.raw_set("mem_unit", i64::from(s.mem_unit))?;
        Ok(t)
    })?;
    add(lua, t, "reboot", |_, cmd: Value| {
        let c = flag(&flags::RB, &cmd, -1)?;
        if c == -1 {
            return Err(arg_error(
                "reboot: command required (restart, halt, power_off, cad_on, cad_off, ...)",
            ));
        }
        if rp::getpid() != Pid::INIT {
            return Err(SysError::new("reboot", libc::EPERM)
                .detail("refused: only PID 1 may call reboot")
                .into());
        }
        raw::reboot(c as i32).or_sys("reboot")?;
        Ok(true)
    })?;
    add(
        lua,
        t,
        "swapon",
        |_, (p, fl, prio): (LStr, Value, Option<i64>)| {
            let c = cstring("path", &p)?;
            let mut f = flag(&flags::SWAP, &fl, 0)? as i32;
            if let Some(pr) = prio {
                // SWAP_FLAG_PREFER | (prio & SWAP_FLAG_PRIO_MASK), linux/swap.h
                f |= 0x8000 | ((pr as i32) & 0x7fff);
            }
            raw::swapon(&c, f).or_path("swapon", c.to_bytes())?;
            Ok(true)
        },
    )?;
    add(lua, t, "swapoff", |_, p: LStr| {
        let c = cstring("path", &p)?;
        raw::swapoff(&c).or_path("swapoff", c.to_bytes())?;
        Ok(true)
    })?;
    add(
        lua,
        t,
        "klogctl",
        |lua, (kind, arg): (Value, Option<i64>)| {
            let k = flag(&flags::SYSLOG_ACTION, &kind, -1)? as i32;
            match k {
                2..=4 => {
                    let size = raw::klogctl(10, None, 0).or_sys("klogctl")?.max(0) as usize;
                    let want = arg.map_or(size, |a| (a.max(0) as usize).min(size));
                    let mut buf = vec![0u8; want];
                    let n = raw::klogctl(k, Some(&mut buf), 0).or_sys("klogctl")?.max(0) as usize;
                    buf.truncate(n);
                    Ok(Value::String(lua.create_string(&buf)?))
                }
                -1 => Err(arg_error("klogctl: type required")),
                _ => Ok(Value::Integer(i64::from(
                    raw::klogctl(k, None, arg.unwrap_or(0) as i32).or_sys("klogctl")?,
                ))),
            }
        },
    )?;
    add(lua, t, "kmsg", |_, (msg, level): (LStr, Option<i64>)| {
        let level = level.unwrap_or(6).clamp(0, 7);
        let mut line = format!("<{level}>").into_bytes();
        line.extend_from_slice(&msg.as_bytes());
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/kmsg")
            .or_path("kmsg", b"/dev/kmsg")?;
        f.write_all(&line).or_path("kmsg", b"/dev/kmsg")?;
        Ok(true)
    })?;

    // --- time
    add(lua, t, "clock_gettime", |lua, clk: Value| {
        let c = flag(&flags::CLOCK, &clk, i64::from(libc::CLOCK_REALTIME))? as i32;
        let (sec, nsec) = raw::clock_gettime(c).or_sys("clock_gettime")?;
        let t = lua.create_table_with_capacity(0, 5)?;
        t.raw_set("sec", sec)?;
        t.raw_set("nsec", nsec)?;
        t.raw_set("tv_sec", sec)?;
        t.raw_set("tv_nsec", nsec)?;
        t.raw_set("time", sec as f64 + nsec as f64 / 1e9)?;
        Ok(t)
    })?;

    // --- kernel modules
    add(
        lua,
        t,
        "finit_module",
        |_, (fd, params, fl): (FdArg, Option<LStr>, Value)| {
            let p = match &params {
                Some(s) => cstring("params", s)?,
                None => std::ffi::CString::default(),
            };
            let f = flag(&flags::MODULE_INIT, &fl, 0)? as i32;
            rustix::system::finit_module(fd.get("finit_module")?, &p, f).or_sys("finit_module")?;
            Ok(true)
        },
    )?;
    add(lua, t, "delete_module", |_, (name, fl): (LStr, Value)| {
        let n = cstring("name", &name)?;
        let f = flag(&flags::O, &fl, i64::from(libc::O_NONBLOCK))? as i32;
        rustix::system::delete_module(&n, f).or_path("delete_module", n.to_bytes())?;
        Ok(true)
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Status;

    #[test]
    fn wait_status_decoding() {
        let e = Status(3 << 8);
        assert!(e.exited() && !e.signaled());
        assert_eq!(e.exit_status(), Some(3));
        let k = Status(9);
        assert!(k.signaled() && !k.exited());
        assert_eq!(k.term_signal(), Some(9));
        let st = Status((19 << 8) | 0x7f);
        assert!(st.stopped() && !st.signaled());
        assert_eq!(st.stop_signal(), Some(19));
        assert!(Status(0xffff).continued());
    }
}
