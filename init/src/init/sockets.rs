//! Socket activation, the loop's half: moonlit binds each service's
//! `sockets` itself, holds them for the service's whole declared life
//! (restarts, reloads, re-execs), and passes them with systemd's protocol
//! (`spawn.rs` puts them on fds 3, 4, ... and writes `LISTEN_PID`).
//!
//! - Binding happens when a configuration is committed (boot, reload,
//!   re-exec), before any service starts, so clients can connect at once:
//!   a connection waits in the listen backlog until the service accepts
//!   it, also while the service restarts (moonlit never accepts on a
//!   service's behalf, except for `accept = true`). A socket that cannot be
//!   bound is retried at the next commit and at the service's start, which
//!   fails with the reason; other services are unaffected.
//! - A reload keeps every socket whose address and type are unchanged
//!   (same descriptor; a new backlog or mode is applied to it) and closes
//!   the others (a unix socket's file is removed) before binding new ones.
//! - `lazy = true`: while the service does not run, its sockets are in the
//!   loop's epoll; the first readable event triggers it
//!   ([`crate::supervisor::Supervisor::trigger`]) and the watch stops until
//!   it has ended again.
//! - `accept = true`: moonlit accepts each connection and runs one instance
//!   of the service with the connection on stdin and stdout (stderr to the
//!   service's log); instances are not supervised, are reaped by the loop's
//!   one reaper, and at most `max_connections` run at once (past that, new
//!   connections wait in the backlog).

use std::collections::{BTreeMap, HashMap};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use moonlit_config::sockets::{Listen, SocketKind, SocketSpec};
use moonlit_config::spawn::{self, ExitStatus, SpawnSpec, StdioSpec};
use rustix::event::epoll::{self, EventData, EventFlags};
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
use serde::Serialize;
use serde_json::{json, Value};

use super::{Init, T_MASK};
use crate::supervisor::State;

pub(crate) const T_SOCKET: u64 = 8 << 32;

/// One declared socket of a service.
struct Slot {
    spec: SocketSpec,
    fd: Option<OwnedFd>,
    /// Why it is not bound (kept until a bind succeeds).
    error: Option<String>,
    token: u32,
    /// In the loop's epoll now.
    watched: bool,
}

#[derive(Default)]
pub(crate) struct Sockets {
    services: BTreeMap<String, Vec<Slot>>,
    /// epoll token -> (service, index of the socket).
    tokens: HashMap<u32, (String, usize)>,
    next_token: u32,
    /// `accept = true` instances still running: pid -> service.
    instances: HashMap<u32, String>,
    /// Connections served per service (instances started).
    served: HashMap<String, u64>,
    /// Sockets carried over a re-exec, taken by the first sync.
    carried: Vec<(String, SocketSpec, OwnedFd)>,
}

/// One socket in the re-exec handover.
#[derive(Serialize)]
pub struct SocketHandover {
    pub service: String,
    pub spec: SocketSpec,
    pub fd: RawFd,
}

/// For each new declaration, the index of an old socket it can keep (same
/// address and type, still bound). Pure: the reconcile rule of a reload.
fn reuse_plan(old: &[(SocketSpec, bool)], new: &[SocketSpec]) -> Vec<Option<usize>> {
    let mut taken = vec![false; old.len()];
    new.iter()
        .map(|n| {
            let i = old
                .iter()
                .enumerate()
                .position(|(i, (o, bound))| *bound && !taken[i] && o.same_socket(n))?;
            taken[i] = true;
            Some(i)
        })
        .collect()
}

fn unlink_socket_file(path: &str) {
    if let Ok(st) = rustix::fs::lstat(path) {
        if rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Socket {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Mode and owner of a unix socket's file.
fn set_unix_perms(path: &str, spec: &SocketSpec) -> Result<(), String> {
    let mode = spec.mode.unwrap_or(0o666);
    rustix::fs::chmod(path, rustix::fs::Mode::from_raw_mode(mode))
        .map_err(|e| format!("chmod {mode:04o} {path}: {e}"))?;
    if spec.owner.is_some() || spec.group.is_some() {
        let uid = match &spec.owner {
            Some(u) => Some(spawn::resolve_user(u).map_err(|e| e.to_string())?.uid),
            None => None,
        };
        let gid = match &spec.group {
            Some(g) => Some(spawn::resolve_group(g).map_err(|e| e.to_string())?),
            None => None,
        };
        rustix::fs::chown(
            path,
            uid.map(rustix::fs::Uid::from_raw),
            gid.map(rustix::fs::Gid::from_raw),
        )
        .map_err(|e| format!("chown {path}: {e}"))?;
    }
    Ok(())
}

fn socket_type(k: SocketKind) -> SocketType {
    match k {
        SocketKind::Stream => SocketType::STREAM,
        SocketKind::Dgram => SocketType::DGRAM,
        SocketKind::Seqpacket => SocketType::SEQPACKET,
    }
}

/// Makes, binds and (stream, seqpacket) listens on one socket,
/// close-on-exec. The error names the socket and the failing step.
fn bind_socket(spec: &SocketSpec) -> Result<OwnedFd, String> {
    let what = format!("socket {} ({})", spec.listen, spec.kind.name());
    let fail = |step: &str, e: rustix::io::Errno| format!("{what}: {step}: {e}");
    let fd = match &spec.listen {
        Listen::Inet(addr) => {
            let family = if addr.is_ipv4() {
                AddressFamily::INET
            } else {
                AddressFamily::INET6
            };
            let fd = rustix::net::socket_with(
                family,
                socket_type(spec.kind),
                SocketFlags::CLOEXEC,
                None,
            )
            .map_err(|e| fail("socket", e))?;
            if spec.kind.connected() {
                rustix::net::sockopt::set_socket_reuseaddr(&fd, true)
                    .map_err(|e| fail("SO_REUSEADDR", e))?;
            }
            // As systemd's FreeBind=: an address not (yet) on an interface,
            // e.g. 127.0.0.1 before init.lua has brought `lo` up, binds.
            let _ = if addr.is_ipv4() {
                rustix::net::sockopt::set_ip_freebind(&fd, true)
            } else {
                rustix::net::sockopt::set_ipv6_freebind(&fd, true)
            };
            rustix::net::bind(&fd, addr).map_err(|e| fail("bind", e))?;
            fd
        }
        Listen::Unix(path) => {
            match rustix::fs::lstat(path.as_str()) {
                Ok(st)
                    if rustix::fs::FileType::from_raw_mode(st.st_mode)
                        == rustix::fs::FileType::Socket =>
                {
                    // A stale socket file (a previous boot's): replaced.
                    std::fs::remove_file(path)
                        .map_err(|e| format!("{what}: removing the old socket file: {e}"))?;
                }
                Ok(_) => return Err(format!("{what}: {path} exists and is not a socket")),
                Err(_) => {}
            }
            if let Some(dir) = Path::new(path).parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("{what}: creating {}: {e}", dir.display()))?;
            }
            let fd = rustix::net::socket_with(
                AddressFamily::UNIX,
                socket_type(spec.kind),
                SocketFlags::CLOEXEC,
                None,
            )
            .map_err(|e| fail("socket", e))?;
            let addr = SocketAddrUnix::new(path.as_str()).map_err(|e| fail("address", e))?;
            rustix::net::bind(&fd, &addr).map_err(|e| fail("bind", e))?;
            if let Err(e) = set_unix_perms(path, spec) {
                unlink_socket_file(path);
                return Err(format!("{what}: {e}"));
            }
            fd
        }
    };
    if spec.kind.connected() {
        rustix::net::listen(&fd, spec.backlog as i32).map_err(|e| fail("listen", e))?;
    }
    Ok(fd)
}

/// O_NONBLOCK on or off: only `accept = true` listeners are non-blocking
/// (moonlit accepts on them); the others are shared with the service,
/// which gets them blocking, as from systemd.
fn set_nonblocking(fd: &OwnedFd, on: bool) {
    if let Ok(fl) = rustix::fs::fcntl_getfl(fd) {
        let want = if on {
            fl | rustix::fs::OFlags::NONBLOCK
        } else {
            fl - rustix::fs::OFlags::NONBLOCK
        };
        if want != fl {
            let _ = rustix::fs::fcntl_setfl(fd, want);
        }
    }
}

impl Init {
    /// Makes the bound sockets match the declared ones (after a commit, at
    /// the end of the boot script, before a start): keeps unchanged ones,
    /// closes what is no longer declared, binds what is missing (a failure
    /// is logged once and kept as the socket's error).
    pub(crate) fn sync_sockets(&mut self) {
        let declared: BTreeMap<String, (Vec<SocketSpec>, bool)> = self
            .sup
            .services
            .iter()
            // The spec its next start uses (a reload's restart or defer
            // keeps the new one pending until then).
            // Disabled (`enabled = false`, until `ctl start`): not bound,
            // so clients are refused rather than left waiting.
            .map(|(n, s)| (n, s.pending.as_ref().unwrap_or(&s.spec), s.removing))
            .filter(|(_, spec, removing)| {
                !removing && spec.enabled && !spec.activation.sockets.is_empty()
            })
            .map(|(n, spec, _)| {
                (
                    n.clone(),
                    (spec.activation.sockets.clone(), spec.activation.accept),
                )
            })
            .collect();
        let old = std::mem::take(&mut self.sockets.services);
        // First close everything no longer wanted (its file too), so a
        // new socket may take the same path or address.
        let mut kept: BTreeMap<String, Vec<Option<Slot>>> = BTreeMap::new();
        for (name, slots) in old {
            let plan = match declared.get(&name) {
                Some((specs, _)) => {
                    let o: Vec<(SocketSpec, bool)> = slots
                        .iter()
                        .map(|s| (s.spec.clone(), s.fd.is_some()))
                        .collect();
                    reuse_plan(&o, specs)
                }
                None => Vec::new(),
            };
            let mut slots: Vec<Option<Slot>> = slots.into_iter().map(Some).collect();
            let reused: Vec<Option<Slot>> = plan
                .iter()
                .map(|i| i.and_then(|i| slots[i].take()))
                .collect();
            for slot in slots.into_iter().flatten() {
                self.close_slot(slot);
            }
            if declared.contains_key(&name) {
                kept.insert(name, reused);
            }
        }
        // Then every kept socket is in place before anything is bound (so
        // a bind sees every path another service holds), then the binds.
        let mut accepts = Vec::new();
        for (name, (specs, accept)) in declared {
            accepts.push((name.clone(), accept));
            let mut reused = kept.remove(&name).unwrap_or_default();
            reused.resize_with(specs.len(), || None);
            let mut slots = Vec::new();
            for (spec, prev) in specs.into_iter().zip(reused) {
                let slot = match prev {
                    Some(mut s) => {
                        if let Some(fd) = &s.fd {
                            if s.spec.backlog != spec.backlog && spec.kind.connected() {
                                let _ = rustix::net::listen(fd, spec.backlog as i32);
                            }
                            if let Listen::Unix(p) = &spec.listen {
                                if s.spec.mode != spec.mode
                                    || s.spec.owner != spec.owner
                                    || s.spec.group != spec.group
                                {
                                    if let Err(e) = set_unix_perms(p, &spec) {
                                        self.log(&format!("{name}: socket {p}: {e}"));
                                    }
                                }
                            }
                        }
                        s.spec = spec;
                        s
                    }
                    None => {
                        self.sockets.next_token += 1;
                        Slot {
                            spec,
                            fd: None,
                            error: None,
                            token: self.sockets.next_token,
                            watched: false,
                        }
                    }
                };
                slots.push(slot);
            }
            self.sockets.services.insert(name, slots);
        }
        for (name, accept) in accepts {
            let Some(mut slots) = self.sockets.services.remove(&name) else {
                continue;
            };
            for slot in slots.iter_mut() {
                if slot.fd.is_none() {
                    self.bind_slot(&name, slot);
                }
                if let Some(fd) = &slot.fd {
                    set_nonblocking(fd, accept);
                }
            }
            self.sockets.services.insert(name, slots);
        }
        // What a re-exec carried and nothing claimed is closed (its file
        // removed, unless a socket declared now uses that path).
        for (name, spec, fd) in std::mem::take(&mut self.sockets.carried) {
            self.log(&format!(
                "{name}: socket {} no longer declared, closed",
                spec.listen
            ));
            drop(fd);
            if let Listen::Unix(p) = &spec.listen {
                if self.unix_path_holder(p).is_none() {
                    unlink_socket_file(p);
                }
            }
        }
        self.sockets.tokens = self
            .sockets
            .services
            .iter()
            .flat_map(|(n, v)| {
                v.iter()
                    .enumerate()
                    .map(move |(i, s)| (s.token, (n.clone(), i)))
            })
            .collect();
    }

    fn bind_slot(&mut self, name: &str, slot: &mut Slot) {
        // Carried over a re-exec: the same socket, nothing to bind.
        if let Some(i) = self
            .sockets
            .carried
            .iter()
            .position(|(n, s, _)| n == name && s.same_socket(&slot.spec))
        {
            let (_, _, fd) = self.sockets.carried.swap_remove(i);
            slot.fd = Some(fd);
            slot.error = None;
            return;
        }
        // Another service's socket file: never taken over (binding would
        // remove its file and leave it unreachable).
        if let Listen::Unix(p) = &slot.spec.listen {
            if let Some(other) = self.unix_path_holder(p).filter(|o| o != name) {
                let e = format!("socket {p}: already bound by service \"{other}\"");
                if slot.error.as_deref() != Some(e.as_str()) {
                    self.log(&format!("{name}: {e}"));
                }
                slot.error = Some(e);
                return;
            }
        }
        match bind_socket(&slot.spec) {
            Ok(fd) => {
                if slot.error.take().is_some() || self.opts.debug {
                    self.log(&format!(
                        "{name}: listening on {} (fd {})",
                        slot.spec.listen,
                        fd.as_raw_fd()
                    ));
                }
                slot.fd = Some(fd);
            }
            Err(e) => {
                if slot.error.as_deref() != Some(e.as_str()) {
                    self.log(&format!("{name}: {e}"));
                }
                slot.error = Some(e);
            }
        }
    }

    /// The service holding a bound unix socket at `path`.
    fn unix_path_holder(&self, path: &str) -> Option<String> {
        self.sockets
            .services
            .iter()
            .find(|(_, v)| {
                v.iter()
                    .any(|s| s.fd.is_some() && s.spec.listen == Listen::Unix(path.to_string()))
            })
            .map(|(n, _)| n.clone())
    }

    fn close_slot(&mut self, slot: Slot) {
        if let Some(fd) = slot.fd {
            if slot.watched {
                let _ = epoll::delete(&self.epoll, &fd);
            }
            drop(fd);
            if let Listen::Unix(p) = &slot.spec.listen {
                unlink_socket_file(p);
            }
        }
    }

    /// The descriptors and names a start of `name` gets (binding what is
    /// not bound yet); an error names the socket that cannot be had.
    pub(crate) fn listen_fds(&mut self, name: &str) -> Result<(Vec<RawFd>, Vec<String>), String> {
        let declared = self
            .sup
            .services
            .get(name)
            .is_some_and(|s| !s.spec.activation.sockets.is_empty());
        if declared && !self.sockets.services.contains_key(name) {
            // Enabled since the last sync (`ctl start` of a disabled one).
            self.sync_sockets();
        }
        let Some(mut slots) = self.sockets.services.remove(name) else {
            return Ok((Vec::new(), Vec::new()));
        };
        for slot in slots.iter_mut().filter(|s| s.fd.is_none()) {
            self.bind_slot(name, slot);
        }
        let out = slots
            .iter()
            .map(|s| match &s.fd {
                Some(fd) => Ok((fd.as_raw_fd(), s.spec.name.clone())),
                None => Err(s
                    .error
                    .clone()
                    .unwrap_or_else(|| format!("socket {} is not bound", s.spec.listen))),
            })
            .collect::<Result<Vec<_>, _>>();
        self.sockets.services.insert(name.to_string(), slots);
        Ok(out?.into_iter().unzip())
    }

    /// Puts each service's sockets in or out of the epoll set, as its state
    /// wants: `lazy` ones while it does not run, `accept` ones while below
    /// `max_connections`; none during shutdown.
    pub(crate) fn watch_sockets(&mut self) {
        // Enabled since the last sync (`ctl start` of a disabled service).
        if self.sup.services.iter().any(|(n, s)| {
            s.spec.enabled
                && !s.removing
                && !s.spec.activation.sockets.is_empty()
                && !self.sockets.services.contains_key(n)
        }) {
            self.sync_sockets();
        }
        let mut changes: Vec<(String, usize, bool)> = Vec::new();
        for (name, slots) in &self.sockets.services {
            let want = match self.sup.services.get(name) {
                Some(s) if self.shutdown.is_none() && s.spec.enabled && !s.manual_stop => {
                    let a = &s.spec.activation;
                    if a.accept {
                        self.instance_count(name) < a.max_connections as usize
                    } else {
                        a.lazy
                            && !s.triggered
                            && matches!(s.state, State::Stopped | State::Exited { .. })
                    }
                }
                _ => false,
            };
            for (i, slot) in slots.iter().enumerate() {
                if slot.fd.is_some() && slot.watched != want {
                    changes.push((name.clone(), i, want));
                }
            }
        }
        for (name, i, want) in changes {
            let Some(slot) = self
                .sockets
                .services
                .get_mut(&name)
                .and_then(|v| v.get_mut(i))
            else {
                continue;
            };
            let Some(fd) = &slot.fd else { continue };
            let r = if want {
                epoll::add(
                    &self.epoll,
                    fd.as_fd(),
                    EventData::new_u64(T_SOCKET | u64::from(slot.token)),
                    EventFlags::IN,
                )
            } else {
                epoll::delete(&self.epoll, fd.as_fd())
            };
            match r {
                Ok(()) => slot.watched = want,
                Err(e) => {
                    let m = format!("{name}: socket {}: epoll: {e}", slot.spec.listen);
                    slot.watched = false;
                    self.log(&m);
                }
            }
        }
    }

    fn instance_count(&self, name: &str) -> usize {
        self.sockets
            .instances
            .values()
            .filter(|n| n.as_str() == name)
            .count()
    }

    /// A watched socket is readable: a lazy service's first client, or a
    /// connection for an `accept = true` service.
    pub(crate) fn on_socket_event(&mut self, token: u64) {
        let token = (token & T_MASK) as u32;
        let Some((name, i)) = self.sockets.tokens.get(&token).cloned() else {
            return;
        };
        let accept = self
            .sup
            .services
            .get(&name)
            .is_some_and(|s| s.spec.activation.accept);
        if accept {
            self.accept_connections(&name, i);
            return;
        }
        let listen = self
            .sockets
            .services
            .get(&name)
            .and_then(|v| v.get(i))
            .map(|s| s.spec.listen.to_string())
            .unwrap_or_default();
        match self.sup.trigger(&name) {
            Ok(what) => self.log(&format!("{name}: activated by {listen}: {what}")),
            Err(e) => self.log(&format!("{name}: activation by {listen}: {e}")),
        }
        // Not watched while it starts and runs (watch_sockets, after the
        // supervisor's step, sees it triggered).
        self.watch_sockets();
    }

    /// Accepts what is queued (up to the instance cap) and starts one
    /// instance per connection.
    fn accept_connections(&mut self, name: &str, i: usize) {
        let Some(spec) = self.sup.services.get(name).map(|s| s.spec.clone()) else {
            return;
        };
        let max = spec.activation.max_connections as usize;
        for _ in 0..64 {
            if self.instance_count(name) >= max {
                break;
            }
            let conn = {
                let Some(fd) = self
                    .sockets
                    .services
                    .get(name)
                    .and_then(|v| v.get(i))
                    .and_then(|s| s.fd.as_ref())
                else {
                    return;
                };
                match rustix::net::accept_with(fd, SocketFlags::CLOEXEC) {
                    Ok(c) => c,
                    Err(rustix::io::Errno::AGAIN) => break,
                    Err(rustix::io::Errno::INTR | rustix::io::Errno::CONNABORTED) => continue,
                    Err(e) => {
                        self.log(&format!("{name}: accept: {e}"));
                        break;
                    }
                }
            };
            match self.spawn_instance(name, &spec, conn) {
                Ok(pid) => {
                    self.sockets.instances.insert(pid, name.to_string());
                    *self.sockets.served.entry(name.to_string()).or_default() += 1;
                }
                Err(e) => self.log(&format!("{name}: connection instance: {e}")),
            }
        }
        self.watch_sockets();
    }

    /// One `accept = true` instance: the service's program, user, directory,
    /// environment and limits, with the connection on stdin and stdout.
    fn spawn_instance(
        &mut self,
        name: &str,
        spec: &moonlit_config::ServiceSpec,
        conn: OwnedFd,
    ) -> Result<u32, String> {
        let id = self.log_for(name)?;
        let log = self.logs.get_mut(&id).ok_or("log pipe vanished")?;
        let err = log.writer().map_err(|e| format!("log pipe: {e}"))?;
        let stdin = conn.try_clone().map_err(|e| format!("dup: {e}"))?;
        // And as fd 3 with LISTEN_FDS=1, LISTEN_FDNAMES=connection, as
        // systemd passes an Accept=yes connection (kept open until spawn
        // returns: spawn only borrows listen descriptors).
        let fd3 = conn.try_clone().map_err(|e| format!("dup: {e}"))?;
        let mut s = SpawnSpec::new(spec.exec.clone());
        s.env = crate::envset::service_env(spec, &self.rt.service_env())?;
        s.env.insert("MOONLIT_SERVICE".into(), name.to_string());
        if let Ok(Some(peer)) = rustix::net::getpeername(&conn) {
            if let Ok(a) = std::net::SocketAddr::try_from(peer) {
                s.env.insert("REMOTE_ADDR".into(), a.ip().to_string());
                s.env.insert("REMOTE_PORT".into(), a.port().to_string());
            }
        }
        s.isolation = spec.sandbox.clone();
        s.cwd = spec.cwd.as_ref().map(PathBuf::from);
        s.user = spec.user.clone();
        s.group = spec.group.clone();
        s.umask = spec.umask;
        s.rlimits = spawn::rlimits_of(&spec.limits);
        s.stdin = StdioSpec::Fd(stdin);
        s.stdout = StdioSpec::Fd(conn);
        s.stderr = StdioSpec::Fd(err);
        s.listen_fds = vec![fd3.as_raw_fd()];
        s.listen_names = vec!["connection".into()];
        let r = spawn::spawn(s).map_err(|e| e.to_string());
        drop(fd3);
        r
    }

    /// An `accept = true` instance ended (the reaper asks first).
    pub(crate) fn socket_instance_reaped(&mut self, pid: u32, status: ExitStatus) -> bool {
        let Some(name) = self.sockets.instances.remove(&pid) else {
            return false;
        };
        if !status.success() && self.opts.debug {
            self.log(&format!("{name}: connection instance {pid} {status}"));
        }
        true
    }

    /// `ctl status`: the sockets of one service (null without any).
    pub(crate) fn sockets_json(&self, name: &str) -> Value {
        let Some(slots) = self.sockets.services.get(name) else {
            return Value::Null;
        };
        let accept = self
            .sup
            .services
            .get(name)
            .map(|s| &s.spec.activation)
            .filter(|a| a.accept);
        let list: Vec<Value> = slots
            .iter()
            .map(|s| {
                json!({
                    "listen": s.spec.listen.to_string(),
                    "type": s.spec.kind.name(),
                    "name": s.spec.name,
                    "fd": s.fd.as_ref().map(AsRawFd::as_raw_fd),
                    "watched": s.watched,
                    "error": s.error,
                })
            })
            .collect();
        json!({
            "list": list,
            "accept": accept.is_some(),
            "instances": accept.map(|_| self.instance_count(name)),
            "max_connections": accept.map(|a| a.max_connections),
            "served": accept.map(|_| self.sockets.served.get(name).copied().unwrap_or(0)),
        })
    }

    /// For the re-exec: every bound socket (their fds go into `keep`) and
    /// the running instances.
    pub(crate) fn sockets_handover(
        &self,
        keep: &mut Vec<RawFd>,
    ) -> (Vec<SocketHandover>, Vec<(u32, String)>) {
        let mut out = Vec::new();
        for (name, slots) in &self.sockets.services {
            for s in slots {
                if let Some(fd) = &s.fd {
                    keep.push(fd.as_raw_fd());
                    out.push(SocketHandover {
                        service: name.clone(),
                        spec: s.spec.clone(),
                        fd: fd.as_raw_fd(),
                    });
                }
            }
        }
        let inst = self
            .sockets
            .instances
            .iter()
            .map(|(p, n)| (*p, n.clone()))
            .collect();
        (out, inst)
    }

    /// In the new image, before the first sync: the carried sockets (close-
    /// on-exec again) and instances.
    pub(crate) fn sockets_adopt(&mut self, carried: Vec<SocketHandover>, inst: Vec<(u32, String)>) {
        for h in carried {
            let fd = crate::sys::own_fd(h.fd);
            let _ = rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC);
            self.sockets.carried.push((h.service, h.spec, fd));
        }
        self.sockets.instances.extend(inst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use moonlit_config::sockets::parse_listen;

    fn sock(listen: &str, kind: SocketKind) -> SocketSpec {
        SocketSpec {
            listen: parse_listen(listen).unwrap(),
            kind,
            name: "x".into(),
            backlog: 10,
            mode: None,
            owner: None,
            group: None,
        }
    }

    #[test]
    fn a_reload_keeps_what_has_the_same_address_and_type() {
        let a = sock("0.0.0.0:80", SocketKind::Stream);
        let b = sock("/run/b.sock", SocketKind::Stream);
        let c = sock("[::]:53", SocketKind::Dgram);
        let old = vec![(a.clone(), true), (b.clone(), true), (c.clone(), false)];
        // Reordered, one renamed with a new backlog, one changed type, one
        // that was not bound: only the bound same-socket ones are kept.
        let mut a2 = a.clone();
        a2.name = "web".into();
        a2.backlog = 5;
        let b_dgram = sock("/run/b.sock", SocketKind::Dgram);
        let plan = reuse_plan(&old, &[c.clone(), b_dgram, a2]);
        assert_eq!(plan, vec![None, None, Some(0)]);
        assert_eq!(reuse_plan(&old, &[b.clone(), b]), vec![Some(1), None]);
    }
}
