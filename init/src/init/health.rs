//! Health checks, the loop's half: making the probes the supervisor says
//! are due, without ever waiting on one.
//!
//! - `exec`: a child spawned like the service (user, group, cwd, env), its
//!   output into a memfd; its exit is reaped by the loop's reaper and routed
//!   here; past the timeout its process group gets KILL and the probe fails.
//! - `tcp`: a non-blocking connect registered in epoll (writable = done);
//!   past the timeout it is closed and fails.
//! - `path`: one stat(2).
//!
//! Results go to [`crate::supervisor::Supervisor::health_result`], whose
//! actions (a restart) are performed, and a change runs `on_health`.

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use moonlit_config::plan::{HealthCheck, HealthProbe};
use moonlit_config::spawn::{self, ExitStatus, SpawnSpec, StdioSpec};
use rustix::event::epoll::{self, EventData, EventFlags};

use super::{now_ms, Init, T_MASK};
use crate::supervisor::Ms;

pub(crate) const T_HEALTH: u64 = 6 << 32;
/// The most of a probe's output kept (its end), before trimming.
const OUTPUT_CAP: usize = 1024;

/// A probe in progress.
struct Run {
    /// The service's pid it checks.
    service_pid: u32,
    deadline: Ms,
    timeout: Ms,
    kind: RunKind,
}

enum RunKind {
    Exec {
        pid: u32,
        out: OwnedFd,
    },
    Tcp {
        fd: OwnedFd,
        token: u32,
        target: String,
    },
}

#[derive(Default)]
pub(crate) struct Probes {
    runs: HashMap<String, Run>,
    /// epoll token -> service, for TCP connects.
    tokens: HashMap<u32, String>,
    next_token: u32,
    /// Exec probes killed at their timeout and not yet reaped.
    killed: HashSet<u32>,
}

impl Probes {
    pub(crate) fn next_deadline(&self) -> Option<Ms> {
        self.runs.values().map(|r| r.deadline).min()
    }
}

/// The end of what a probe printed, trimmed, as text.
fn read_output(fd: &OwnedFd) -> String {
    let size = rustix::fs::fstat(fd).map_or(0, |st| st.st_size.max(0) as u64);
    let from = size.saturating_sub(OUTPUT_CAP as u64);
    let mut buf = vec![0u8; (size - from) as usize];
    let mut got = 0;
    while got < buf.len() {
        match rustix::io::pread(fd, &mut buf[got..], from + got as u64) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    buf.truncate(got);
    // A cut in the middle of a UTF-8 sequence: start at the next character.
    let start = if from > 0 {
        buf.iter()
            .position(|b| (*b & 0xc0) != 0x80)
            .unwrap_or(buf.len())
    } else {
        0
    };
    String::from_utf8_lossy(&buf[start..]).trim().to_string()
}

/// Starts a non-blocking connect: the socket, and the error if it failed at once.
fn connect(
    addr: std::net::SocketAddr,
) -> Result<(OwnedFd, Option<rustix::io::Errno>), rustix::io::Errno> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    let family = if addr.is_ipv4() {
        AddressFamily::INET
    } else {
        AddressFamily::INET6
    };
    let fd = rustix::net::socket_with(
        family,
        SocketType::STREAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )?;
    let failed = match rustix::net::connect(&fd, &addr) {
        Ok(()) | Err(rustix::io::Errno::INPROGRESS) | Err(rustix::io::Errno::INTR) => None,
        Err(e) => Some(e),
    };
    Ok((fd, failed))
}

/// How a pending connect stands, without waiting: `None` still pending,
/// else its outcome (SO_ERROR, read once: reading clears it).
fn connect_done(fd: &OwnedFd) -> Option<Result<(), rustix::io::Errno>> {
    let mut fds = [rustix::event::PollFd::new(
        fd,
        rustix::event::PollFlags::OUT,
    )];
    let zero = rustix::time::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    match rustix::event::poll(&mut fds, Some(&zero)) {
        Ok(0) => None,
        Ok(_) => Some(match rustix::net::sockopt::socket_error(fd) {
            Ok(r) => r,
            Err(e) => Err(e),
        }),
        Err(e) => Some(Err(e)),
    }
}

fn secs(ms: Ms) -> String {
    format!("{}", ms as f64 / 1000.0)
}

impl Init {
    /// Starts the probes that are due and fails those past their timeout.
    pub(crate) fn probe_health(&mut self) {
        let now = now_ms();
        let late: Vec<String> = self
            .health
            .runs
            .iter()
            .filter(|(_, r)| r.deadline <= now)
            .map(|(n, _)| n.clone())
            .collect();
        for name in late {
            let Some(run) = self.health_take(&name) else {
                continue;
            };
            let mut msg = format!("timed out after {} s", secs(run.timeout));
            match run.kind {
                RunKind::Exec { pid, out } => {
                    if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
                        // It leads its own session: the whole group goes.
                        let k = rustix::process::Signal::KILL;
                        if rustix::process::kill_process_group(p, k).is_err() {
                            let _ = rustix::process::kill_process(p, k);
                        }
                    }
                    self.health.killed.insert(pid);
                    let out = read_output(&out);
                    if !out.is_empty() {
                        msg = format!("{msg}: {out}");
                    }
                }
                RunKind::Tcp { target, .. } => msg = format!("connect {target}: {msg}"),
            }
            self.health_done(&name, run.service_pid, false, msg);
        }
        for (name, pid, check) in self.sup.health_due(now) {
            // A probe left over from before (another process, a changed
            // check) gives way.
            if let Some(old) = self.health_take(&name) {
                if let RunKind::Exec { pid, .. } = old.kind {
                    if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
                        let _ =
                            rustix::process::kill_process_group(p, rustix::process::Signal::KILL);
                    }
                    self.health.killed.insert(pid);
                }
            }
            self.start_health_probe(&name, pid, &check, now);
        }
    }

    fn start_health_probe(&mut self, name: &str, service_pid: u32, check: &HealthCheck, now: Ms) {
        let timeout = check.timeout.as_millis() as Ms;
        let deadline = now + timeout;
        match &check.probe {
            HealthProbe::Path { path } => {
                let (ok, msg) = match rustix::fs::stat(path.as_str()) {
                    Ok(_) => (true, String::new()),
                    Err(e) => (false, format!("{path}: {e}")),
                };
                self.health_done(name, service_pid, ok, msg);
            }
            HealthProbe::Tcp { host, port } => {
                let target = format!("{host}:{port}");
                let Ok(ip) = host.parse::<std::net::IpAddr>() else {
                    self.health_done(name, service_pid, false, format!("bad address {host}"));
                    return;
                };
                // Even a connect that succeeds at once is taken from epoll.
                match connect(std::net::SocketAddr::new(ip, *port)) {
                    Ok((_, Some(e))) => {
                        self.health_done(name, service_pid, false, format!("connect {target}: {e}"))
                    }
                    Ok((fd, None)) => {
                        let token = self.health.next_token;
                        self.health.next_token = self.health.next_token.wrapping_add(1);
                        if let Err(e) = epoll::add(
                            &self.epoll,
                            fd.as_fd(),
                            EventData::new_u64(T_HEALTH | u64::from(token)),
                            EventFlags::OUT,
                        ) {
                            self.health_done(name, service_pid, false, format!("epoll: {e}"));
                            return;
                        }
                        self.health.tokens.insert(token, name.to_string());
                        self.health.runs.insert(
                            name.to_string(),
                            Run {
                                service_pid,
                                deadline,
                                timeout,
                                kind: RunKind::Tcp { fd, token, target },
                            },
                        );
                    }
                    Err(e) => self.health_done(name, service_pid, false, format!("socket: {e}")),
                }
            }
            HealthProbe::Exec { argv } => match self.spawn_health_exec(name, argv) {
                Ok((pid, out)) => {
                    self.health.runs.insert(
                        name.to_string(),
                        Run {
                            service_pid,
                            deadline,
                            timeout,
                            kind: RunKind::Exec { pid, out },
                        },
                    );
                }
                Err(e) => self.health_done(name, service_pid, false, e),
            },
        }
    }

    /// The exec probe: as the service is run (user, group, cwd, umask,
    /// limits, environment), output to a memfd, its own session.
    fn spawn_health_exec(&mut self, name: &str, argv: &[String]) -> Result<(u32, OwnedFd), String> {
        let spec = self
            .sup
            .services
            .get(name)
            .map(|s| s.spec.clone())
            .ok_or("unknown service")?;
        let out = rustix::fs::memfd_create("moonlit-health", rustix::fs::MemfdFlags::CLOEXEC)
            .map_err(|e| format!("memfd_create: {e}"))?;
        let dup = || out.try_clone().map_err(|e| format!("dup: {e}"));
        let mut s = SpawnSpec::new(argv.to_vec());
        // The service's environment, root and privileges. Not its private
        // namespaces: a clone would make new ones, not join the service's
        // (a probe of a `namespaces = { "net" }` service runs in PID 1's).
        s.env = crate::envset::service_env(&spec, &self.rt.service_env())?;
        s.env.insert("MOONLIT_SERVICE".into(), name.to_string());
        s.isolation = moonlit_config::spawn::Isolation {
            capabilities: spec.sandbox.capabilities,
            no_new_privs: spec.sandbox.no_new_privs,
            root: spec.sandbox.root.clone(),
            ..Default::default()
        };
        s.cwd = spec.cwd.as_ref().map(PathBuf::from);
        s.user = spec.user.clone();
        s.group = spec.group.clone();
        s.umask = spec.umask;
        s.rlimits = spawn::rlimits_of(&spec.limits);
        s.stdout = StdioSpec::Fd(dup()?);
        s.stderr = StdioSpec::Fd(dup()?);
        let pid = spawn::spawn(s).map_err(|e| format!("cannot run the check: {e}"))?;
        Ok((pid, out))
    }

    /// A reaped pid that was an exec probe: its result. False if it was not one.
    pub(crate) fn health_reaped(&mut self, pid: u32, status: ExitStatus) -> bool {
        if self.health.killed.remove(&pid) {
            return true;
        }
        let Some(name) = self
            .health
            .runs
            .iter()
            .find(|(_, r)| matches!(r.kind, RunKind::Exec { pid: p, .. } if p == pid))
            .map(|(n, _)| n.clone())
        else {
            return false;
        };
        if let Some(run) = self.health_take(&name) {
            if let RunKind::Exec { out, .. } = run.kind {
                let mut msg = read_output(&out);
                if !status.success() {
                    msg = if msg.is_empty() {
                        format!("check {status}")
                    } else {
                        format!("{msg} (check {status})")
                    };
                }
                self.health_done(&name, run.service_pid, status.success(), msg);
            }
        }
        true
    }

    /// A TCP health connect finished (its socket became writable).
    pub(crate) fn on_health_event(&mut self, token: u64) {
        let token = (token & T_MASK) as u32;
        let Some(name) = self.health.tokens.get(&token).cloned() else {
            return;
        };
        let state = match self.health.runs.get(&name) {
            Some(Run {
                kind: RunKind::Tcp { fd, .. },
                ..
            }) => connect_done(fd),
            _ => return,
        };
        let Some(result) = state else {
            return;
        };
        let Some(run) = self.health_take(&name) else {
            return;
        };
        if let RunKind::Tcp { target, .. } = run.kind {
            let (ok, msg) = match result {
                Ok(()) => (true, String::new()),
                Err(e) => (false, format!("connect {target}: {e}")),
            };
            self.health_done(&name, run.service_pid, ok, msg);
        }
    }

    /// Takes a run out of the tables (and a TCP socket out of epoll).
    fn health_take(&mut self, name: &str) -> Option<Run> {
        let run = self.health.runs.remove(name)?;
        if let RunKind::Tcp { fd, token, .. } = &run.kind {
            self.health.tokens.remove(token);
            let _ = epoll::delete(&self.epoll, fd);
        }
        Some(run)
    }

    /// A probe's result: to the supervisor; its actions performed; a change
    /// runs the service's `on_health(name, ok)`.
    fn health_done(&mut self, name: &str, service_pid: u32, ok: bool, output: String) {
        let output = (!output.is_empty()).then_some(output);
        let (actions, change) = self
            .sup
            .health_result(name, service_pid, ok, output, now_ms());
        self.perform(actions);
        if let Some(ok) = change {
            self.callback(name, "on_health", mlua::Value::Boolean(ok));
        }
    }
}

/// A service's health for `ctl status --json` (`null` without a check).
pub(crate) fn status(s: &crate::supervisor::Service, now: Ms) -> serde_json::Value {
    let Some(check) = s.spec.health.as_ref() else {
        return serde_json::Value::Null;
    };
    let h = &s.health;
    let wall = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
    let wall_ms = wall.tv_sec as i64 * 1000 + i64::from(wall.tv_nsec as u32 / 1_000_000);
    // Monotonic moments as Unix times (seconds), for people and tools.
    let unix = |t: Ms| (wall_ms - now.saturating_sub(t) as i64) as f64 / 1000.0;
    serde_json::json!({
        "state": h.status.name(),
        "failures": h.failures,
        "retries": check.retries,
        "action": match check.action {
            moonlit_config::plan::HealthAction::Restart => "restart",
            moonlit_config::plan::HealthAction::Mark => "mark",
        },
        "last_ok": h.last_ok,
        "last_output": h.last_output,
        "checks": h.checks,
        "unhealthy_count": h.unhealthy_count,
        "changed_at": h.changed.map(unix),
        "last_check_at": h.checked.map(unix),
        "history": h.history.iter().map(|(t, st)| serde_json::json!({"state": st.name(), "at": unix(*t)})).collect::<Vec<_>>(),
    })
}
