//! Re-exec of PID 1 itself: the new binary is pre-flighted, the state goes
//! into a memfd (a versioned JSON document), exactly the descriptors to keep
//! (log pipes, control socket, the asking client, the memfd) lose
//! close-on-exec, then execve. The new image adopts the children, reaps what
//! died in between, re-reads the modules and reconciles as a reload. Any
//! failure before execve leaves the old image running.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use moonlit_config::error::ConfigError;
use moonlit_config::spawn::{self, SpawnSpec, StdioSpec};
use rustix::event::epoll::{self, EventData, EventFlags};
use serde::Serialize;
use serde_json::{json, Value};

use super::{now_ms, Init, Options, T_LOG};
use crate::analyze::record::BootRecord;
use crate::control::PROTOCOL_VERSION;
use crate::logs::ServiceLog;
use crate::mode::Mode;
use crate::supervisor::{Service, Supervisor};

/// The handover format this binary writes, and the newest it reads.
pub const FORMAT_VERSION: u32 = 4;

/// The format a handover of this state needs: the lowest that can express it,
/// so that a re-exec to an older binary works as long as nothing newer is in
/// use. Format 2 added `ready = { path = ... }` (a variant format-1 readers
/// cannot parse) and `limits` (a field they would drop). Format 3 added
/// health checks (and each service's health record) and log rotation and
/// timestamps (fields a format-2 reader would drop). Format 4 added socket
/// activation (the sockets' descriptors; a format-3 reader would close them).
pub(crate) fn needed_format(sup: &crate::supervisor::Supervisor) -> u32 {
    use moonlit_config::plan::{Readiness, ServiceSpec};
    let v4 = |s: &ServiceSpec| s.activation != Default::default();
    if sup
        .services
        .values()
        .any(|s| v4(&s.spec) || s.pending.as_ref().is_some_and(v4))
    {
        return 4;
    }
    let v3 = |s: &ServiceSpec| s.health.is_some() || s.log_rotate.is_some() || s.log_timestamps;
    if sup
        .services
        .values()
        .any(|s| v3(&s.spec) || s.pending.as_ref().is_some_and(v3))
    {
        return 3;
    }
    let v2 =
        |s: &ServiceSpec| matches!(s.readiness, Readiness::Path { .. }) || !s.limits.is_empty();
    let uses_v2 = sup
        .services
        .values()
        .any(|s| v2(&s.spec) || s.pending.as_ref().is_some_and(v2));
    if uses_v2 {
        2
    } else {
        1
    }
}

/// How long the pre-flight may take.
const PREFLIGHT_MS: u64 = 5000;

#[derive(Serialize)]
pub struct LogHandover {
    pub service: String,
    pub read_fd: RawFd,
    pub write_fd: RawFd,
    pub lines: Vec<String>,
    pub total: u64,
}

/// Everything a new image needs to carry on. A new field is read with a
/// default when missing (decode.rs), so a newer binary reads an older format.
#[derive(Serialize)]
pub struct Handover {
    pub format: u32,
    pub from_version: String,
    pub mode: String,
    pub config_dir: String,
    pub control_path: String,
    pub debug: bool,
    pub rescue: bool,
    pub watch: bool,
    pub cmdline: Vec<(String, String)>,
    pub generation: u64,
    pub transactions: u64,
    pub orphans: u64,
    pub t0: u64,
    pub control_fd: Option<RawFd>,
    pub reply_fd: Option<RawFd>,
    pub main_cmd: Option<crate::entry::MainCmd>,
    /// `moonlit.setenv`'s variables (init.lua does not run again).
    pub service_env: BTreeMap<String, String>,
    /// DHCP clients with their leases (renewals go on, nothing flaps).
    pub dhcp: Vec<(String, moonlit_net::dhcp::Client)>,
    pub services: Vec<Service>,
    pub logs: Vec<LogHandover>,
    pub states: Vec<(String, Value, i64)>,
    pub config_errors: Vec<ConfigError>,
    pub net_spec: moonlit_net::NetworkSpec,
    pub net_owned: BTreeSet<String>,
    pub net_active: bool,
    pub reexecs: u64,
    /// Timer-started services' schedule (next and last runs).
    pub timers: BTreeMap<String, crate::init::timers::Entry>,
    /// Socket activation: every bound socket (the descriptor and its
    /// declaration) and the `accept = true` instances still running.
    pub sockets: Vec<super::sockets::SocketHandover>,
    pub socket_instances: Vec<(u32, String)>,
    /// The first boot's record for `moonlit analyze`.
    pub boot: Option<crate::analyze::record::BootRecord>,
}

pub(crate) struct PendingReexec {
    pid: u32,
    /// The state format the new binary was asked about.
    format: u32,
    client: u64,
    binary: String,
    deadline: u64,
    output: OwnedFd,
}

fn mode_from(name: &str) -> Mode {
    match name {
        "system" => Mode::System,
        "container" => Mode::Container,
        "sandbox" => Mode::Sandbox,
        _ => Mode::User,
    }
}

/// `moonlit --handover-check VERSION`: can this binary read that format?
pub fn handover_check(arg: Option<&str>) -> i32 {
    match arg.and_then(|a| a.parse::<u32>().ok()) {
        Some(v) if v <= FORMAT_VERSION => 0,
        Some(v) => {
            eprintln!(
                "moonlit {}: cannot take over state format {v} (reads formats up to {FORMAT_VERSION})",
                env!("CARGO_PKG_VERSION")
            );
            1
        }
        None => {
            eprintln!("moonlit: --handover-check needs a format number");
            2
        }
    }
}

/// Reads and parses the handover document from descriptor `fd`.
pub fn read_handover(fd: RawFd) -> Result<Handover, String> {
    if fd < 0 || !crate::sys::fd_is_open(fd) {
        return Err(format!("handover descriptor {fd} is not open"));
    }
    let owned = crate::sys::own_fd(fd);
    let mut buf = Vec::new();
    let mut off = 0u64;
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        match rustix::io::pread(&owned, &mut chunk, off) {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                off += n as u64;
            }
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(format!("reading the handover: {e}")),
        }
    }
    let h: Handover = moonlit_net::json_decode::from_slice(&buf)
        .map_err(|e| format!("parsing the handover: {e}"))?;
    if h.format > FORMAT_VERSION {
        return Err(format!(
            "handover format {} is newer than this binary's {FORMAT_VERSION}",
            h.format
        ));
    }
    Ok(h)
}

impl Handover {
    /// Every descriptor number the document hands over, with what it is.
    fn descriptors(&self) -> Vec<(String, RawFd)> {
        let mut out = Vec::new();
        out.extend(
            self.control_fd
                .map(|fd| ("the control socket".to_string(), fd)),
        );
        out.extend(
            self.reply_fd
                .map(|fd| ("the asking client".to_string(), fd)),
        );
        for l in &self.logs {
            out.push((format!("{}'s log pipe (read end)", l.service), l.read_fd));
            out.push((format!("{}'s log pipe (write end)", l.service), l.write_fd));
        }
        for sk in &self.sockets {
            out.push((format!("{}'s socket", sk.service), sk.fd));
        }
        out
    }

    /// Checks, before anything is adopted, that the descriptors the
    /// document names are open, above stdio and each named once: taking
    /// ownership of another number would close what this image itself
    /// holds (or abort on a descriptor that is not there).
    pub fn check_descriptors(&self) -> Result<(), String> {
        let mut seen: BTreeMap<RawFd, String> = BTreeMap::new();
        for (what, fd) in self.descriptors() {
            if fd < 3 {
                return Err(format!("{what}: descriptor {fd} cannot be handed over"));
            }
            if let Some(prev) = seen.insert(fd, what.clone()) {
                return Err(format!(
                    "descriptor {fd} is handed over twice: {prev} and {what}"
                ));
            }
            if !crate::sys::fd_is_open(fd) {
                return Err(format!("{what}: descriptor {fd} is not open"));
            }
        }
        Ok(())
    }

    /// Checks the process ids the document names: none may be 1 (this
    /// image, or the host's init in user mode; signalled as a process
    /// group, -1 is every process) or beyond a pid's range.
    pub fn check_pids(&self) -> Result<(), String> {
        let services = self
            .services
            .iter()
            .filter_map(|s| s.state.pid().map(|p| (s.spec.name.as_str(), p)));
        let instances = self.socket_instances.iter().map(|(p, n)| (n.as_str(), *p));
        for (name, pid) in services.chain(instances) {
            if pid == 1 || pid > i32::MAX as u32 {
                return Err(format!("{name}: pid {pid} cannot be adopted"));
            }
        }
        Ok(())
    }

    /// Everything checked before adoption: descriptors and pids.
    pub fn check(&self) -> Result<(), String> {
        self.check_descriptors()?;
        self.check_pids()
    }

    pub fn options(&self) -> Options {
        Options {
            mode: mode_from(&self.mode),
            config_dir: self.config_dir.clone().into(),
            control_path: self.control_path.clone().into(),
            debug: self.debug,
            rescue: false,
            watch: self.watch,
            cmdline: self.cmdline.clone(),
            limits: Default::default(),
            inherited_control: self.control_fd,
            main_cmd: self.main_cmd.clone(),
            script: None,
        }
    }
}

impl Init {
    /// `ctl reexec`: checks, then starts the pre-flight. The reply comes
    /// from the new image, or from this one if anything fails.
    pub(crate) fn request_reexec(
        &mut self,
        client: u64,
        binary: Option<&str>,
    ) -> Result<(), String> {
        if self.reexec.is_some() {
            return Err("a re-exec is already in progress".into());
        }
        if self.shutdown.is_some() {
            return Err("the system is shutting down".into());
        }
        if self.rt.task_count() > 0 {
            return Err(format!(
                "{} Lua task(s) still running (boot script or hooks): try again when they are done",
                self.rt.task_count()
            ));
        }
        let binary = match binary {
            Some(b) => b.to_string(),
            None => std::fs::read_link("/proc/self/exe")
                .map(|p| {
                    p.to_string_lossy()
                        .trim_end_matches(" (deleted)")
                        .to_string()
                })
                .map_err(|e| format!("cannot find my own binary: {e}"))?,
        };
        if std::fs::metadata(&binary).is_err() {
            return Err(format!("{binary}: no such file"));
        }
        let output = rustix::fs::memfd_create("moonlit-preflight", rustix::fs::MemfdFlags::CLOEXEC)
            .map_err(|e| format!("memfd: {e}"))?;
        let format = needed_format(&self.sup);
        let mut s = SpawnSpec::new(vec![
            binary.clone(),
            "--handover-check".into(),
            format.to_string(),
        ]);
        s.stdout = StdioSpec::Fd(output.try_clone().map_err(|e| e.to_string())?);
        s.stderr = StdioSpec::Fd(output.try_clone().map_err(|e| e.to_string())?);
        let pid = spawn::spawn(s).map_err(|e| format!("pre-flight of {binary}: {e}"))?;
        self.log(&format!(
            "re-exec: pre-flight {binary} --handover-check {format} (pid {pid})"
        ));
        self.reexec = Some(PendingReexec {
            pid,
            format,
            client,
            binary,
            deadline: now_ms() + PREFLIGHT_MS,
            output,
        });
        Ok(())
    }

    fn preflight_output(p: &PendingReexec) -> String {
        let mut buf = vec![0u8; 4096];
        let n = rustix::io::pread(&p.output, &mut buf, 0).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).trim().to_string()
    }

    fn reexec_failed(&mut self, client: u64, msg: String) {
        self.log(&format!("re-exec failed, carrying on: {msg}"));
        if let Some(c) = self.control.as_mut() {
            c.send(
                client,
                &json!({"v": PROTOCOL_VERSION, "ok": false, "error": msg}),
                true,
            );
        }
    }

    /// The pre-flight ended (`Some(code)`) or ran out of time (`None`).
    pub(crate) fn preflight_done(&mut self, code: Option<i32>) {
        let Some(p) = self.reexec.take() else { return };
        match code {
            Some(0) => {
                let err = self.exec_new_image(p.client, &p.binary, p.format);
                self.reexec_failed(p.client, err);
            }
            Some(c) => {
                let out = Self::preflight_output(&p);
                self.reexec_failed(
                    p.client,
                    format!("{} failed the pre-flight (exit {c}): {out}", p.binary),
                );
            }
            None => {
                if let Some(pid) = rustix::process::Pid::from_raw(p.pid as i32) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
                self.reexec_failed(
                    p.client,
                    format!(
                        "{}: the pre-flight did not answer within {PREFLIGHT_MS} ms",
                        p.binary
                    ),
                );
            }
        }
    }

    pub(crate) fn reexec_pid(&self) -> Option<u32> {
        self.reexec.as_ref().map(|p| p.pid)
    }

    pub(crate) fn reexec_deadline(&self) -> Option<u64> {
        self.reexec.as_ref().map(|p| p.deadline)
    }

    /// Serialises the state, keeps exactly the fds to keep, execs. Returns
    /// only on failure, with everything as it was.
    fn exec_new_image(&mut self, client: u64, binary: &str, checked: u32) -> String {
        let format = needed_format(&self.sup);
        if format > checked {
            return format!(
                "the configuration changed during the pre-flight and now needs state format {format}; {binary} was only asked about {checked}: try again"
            );
        }
        let ids: Vec<u32> = self.logs.keys().copied().collect();
        for id in ids {
            self.on_log(id);
        }
        let (h, mut keep) = self.handover(format, Some(client), true);
        let doc = match serde_json::to_vec(&h) {
            Ok(d) => d,
            Err(e) => return format!("serialising the state: {e}"),
        };
        let memfd =
            match rustix::fs::memfd_create("moonlit-handover", rustix::fs::MemfdFlags::empty()) {
                Ok(fd) => fd,
                Err(e) => return format!("memfd_create: {e}"),
            };
        let mut f = std::fs::File::from(memfd);
        if let Err(e) = f.write_all(&doc) {
            return format!("writing the state: {e}");
        }
        let memfd = OwnedFd::from(f);
        keep.push(memfd.as_raw_fd());
        // Exactly these survive the exec; everything else is close-on-exec.
        let previous = crate::sys::set_cloexec_except(&keep);
        self.log(&format!(
            "re-executing {binary} (state format {format}, {} bytes, {} services)",
            doc.len(),
            self.sup.services.len()
        ));
        self.console.borrow_mut().drain(500);
        let fdarg = memfd.as_raw_fd().to_string();
        let err = crate::sys::execv(binary, &[binary, "--handover", &fdarg]);
        crate::sys::restore_cloexec(&previous);
        drop(memfd);
        format!("exec {binary}: {err}")
    }

    /// The state to hand over and the descriptors it names (to keep across
    /// the exec): for a re-exec (`reply` is the asking client, log lines
    /// included) and for the panic checkpoint (no client, no lines).
    pub(crate) fn handover(
        &self,
        format: u32,
        reply: Option<u64>,
        lines: bool,
    ) -> (Handover, Vec<RawFd>) {
        let mut keep: Vec<RawFd> = Vec::new();
        let mut logs = Vec::new();
        for (name, id) in &self.log_ids {
            let Some(l) = self.logs.get(id) else { continue };
            let (r, w) = l.fds();
            keep.push(r.as_raw_fd());
            keep.push(w.as_raw_fd());
            logs.push(LogHandover {
                service: name.clone(),
                read_fd: r.as_raw_fd(),
                write_fd: w.as_raw_fd(),
                lines: if lines { l.ring.all() } else { Vec::new() },
                total: l.ring.total,
            });
        }
        let control_fd = self.control.as_ref().map(|c| c.listener().as_raw_fd());
        let reply_fd = self
            .control
            .as_ref()
            .and_then(|c| c.clients.get(&reply?))
            .map(|c| c.fd().as_raw_fd());
        keep.extend(control_fd);
        keep.extend(reply_fd);
        let (sockets, socket_instances) = self.sockets_handover(&mut keep);
        let h = Handover {
            format,
            from_version: env!("CARGO_PKG_VERSION").into(),
            mode: self.opts.mode.name().into(),
            config_dir: self.opts.config_dir.display().to_string(),
            control_path: self.opts.control_path.display().to_string(),
            debug: self.opts.debug,
            rescue: self.opts.rescue,
            watch: self.opts.watch,
            cmdline: self.opts.cmdline.clone(),
            generation: self.generation,
            transactions: self.transactions,
            orphans: self.orphans,
            t0: self.t0,
            main_cmd: self.opts.main_cmd.clone(),
            service_env: self.rt.service_env(),
            dhcp: self.dhcp_clients(),
            timers: self.timers.export(),
            control_fd,
            reply_fd,
            services: self.sup.snapshot(),
            logs,
            states: self.rt.live_states(),
            config_errors: self.config_errors.clone(),
            net_spec: self.net.spec.clone(),
            net_owned: self.net.owned.clone(),
            net_active: self.net.active,
            reexecs: self.reexecs + 1,
            sockets,
            socket_instances,
            boot: Some(self.boot.clone()),
        };
        (h, keep)
    }

    /// In the new image: takes over what the old one handed over.
    pub fn adopt(&mut self, h: Handover) {
        let t = now_ms();
        self.generation = h.generation;
        self.transactions = h.transactions;
        self.orphans = h.orphans;
        self.t0 = h.t0;
        self.boot = h
            .boot
            .clone()
            .map_or_else(BootRecord::lost, BootRecord::adopted);
        self.reexecs = h.reexecs;
        self.rt.set_service_env(h.service_env.clone());
        for (m, j, v) in &h.states {
            if let Err(e) = self.rt.seed_state(m, j, *v) {
                self.log(&format!("{m}: state: {e}"));
            }
        }
        self.net.spec = h.net_spec.clone();
        self.net.owned = h.net_owned.clone();
        self.net.active = h.net_active;
        self.dhcp_adopt(h.dhcp.clone());
        let caps: BTreeMap<String, usize> = h
            .services
            .iter()
            .map(|s| (s.spec.name.clone(), s.spec.log_buffer))
            .collect();
        for lh in h.logs {
            let read = crate::sys::own_fd(lh.read_fd);
            let write = crate::sys::own_fd(lh.write_fd);
            for fd in [&read, &write] {
                let _ = rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC);
            }
            let cap = caps.get(&lh.service).copied().unwrap_or(65536);
            let log = ServiceLog::adopt(&lh.service, read, write, lh.lines, lh.total, cap);
            let id = self.next_log;
            self.next_log += 1;
            if let Err(e) = epoll::add(
                &self.epoll,
                log.read_fd(),
                EventData::new_u64(T_LOG | u64::from(id)),
                EventFlags::IN,
            ) {
                self.log(&format!("{}: log pipe: epoll: {e}", lh.service));
            }
            self.logs.insert(id, log);
            self.log_ids.insert(lh.service, id);
        }
        self.sockets_adopt(h.sockets, h.socket_instances);
        // Re-read the configuration and reconcile it with what runs.
        let c = self.evaluate(None, true);
        for e in &c.errors {
            self.log(&format!("config error: {e}"));
        }
        self.config_errors = if c.errors.is_empty() {
            Vec::new()
        } else {
            c.errors.clone()
        };
        self.sup = Supervisor::restore(h.services, &c.plan);
        // Their cgroups are where they were: watch them again.
        let in_cg: Vec<String> = self
            .sup
            .services
            .iter()
            .filter(|(_, s)| s.cgroup)
            .map(|(n, _)| n.clone())
            .collect();
        for n in in_cg {
            self.cg.watch(&n);
            // OOM kills from here on are new (one seen before is in the
            // service's carried `oom` flag).
            self.cg.oom_mark(&n);
            let populated = self.cg.populated(&n);
            let actions = self
                .sup
                .cgroup_populated(&n, populated, crate::init::now_ms());
            self.perform(actions);
        }
        // The schedule goes on where the old image left it.
        self.timers.import(h.timers.clone());
        let outcomes = self.commit(c);
        // Log files and console echo as the (re-read) specs say.
        let specs: Vec<(String, moonlit_config::ServiceSpec)> = self
            .sup
            .services
            .iter()
            .map(|(n, s)| (n.clone(), s.spec.clone()))
            .collect();
        for (name, spec) in specs {
            if let Some(l) = self.log_ids.get(&name).and_then(|id| self.logs.get_mut(id)) {
                l.console = spec.console;
                l.ring.set_cap(spec.log_buffer);
                l.set_file_options(spec.log_rotate, spec.log_timestamps);
                if let Err(e) = l.set_file(spec.log_file.as_deref()) {
                    self.log(&format!("{name}: {e}"));
                }
            }
        }
        // Services still starting get their notify sockets back (same path).
        for (name, how) in self.sup.not_ready() {
            if how == moonlit_config::plan::Readiness::Notify {
                let uid = self
                    .sup
                    .services
                    .get(&name)
                    .and_then(|s| s.spec.user.clone())
                    .and_then(|u| moonlit_config::spawn::resolve_user(&u).ok())
                    .map(|u| u.uid);
                if let Err(e) = self.notify_socket(&name, uid) {
                    self.log(&format!("{name}: {e}"));
                }
            }
        }
        self.boot_script_done = true;
        self.ready = true;
        if self.net.active {
            let spec = self.net.spec.clone();
            self.net_apply(&spec);
            self.start_netlink_events();
        }
        // Children that ended while no image was listening.
        self.reap();
        let running = self
            .sup
            .services
            .values()
            .filter(|s| s.state.pid().is_some())
            .count();
        let changed: Vec<String> = outcomes
            .iter()
            .filter(|(_, o)| **o != crate::supervisor::Outcome::Unchanged)
            .map(|(n, _)| n.clone())
            .collect();
        self.log(&format!(
            "re-executed: moonlit {} took over from {} in {} ms; {} services, {running} running{}",
            env!("CARGO_PKG_VERSION"),
            h.from_version,
            now_ms().saturating_sub(t),
            self.sup.services.len(),
            if changed.is_empty() {
                String::new()
            } else {
                format!("; reconciled: {}", changed.join(", "))
            }
        ));
        if let Some(fd) = h.reply_fd {
            let now = now_ms();
            let status = self.status_json();
            if let Some(c) = self.control.as_mut() {
                let id = c.adopt_client(crate::sys::own_fd(fd), now);
                let mut reply = json!({"v": PROTOCOL_VERSION, "ok": true, "message": "re-executed", "services": outcomes});
                if let (Some(o), Value::Object(st)) = (reply.as_object_mut(), status) {
                    o.insert("status".into(), Value::Object(st));
                }
                c.send(id, &reply, true);
                let fd = c.clients.get(&id).map(|cl| cl.fd().try_clone_to_owned());
                if let Some(Ok(fd)) = fd {
                    let _ = epoll::add(
                        &self.epoll,
                        &fd,
                        EventData::new_u64(super::T_CLIENT | id),
                        EventFlags::OUT | EventFlags::ET,
                    );
                }
            }
        }
        let _ = AsFd::as_fd(&self.epoll);
        // The adoption ran once; the idle loop faults its own code back.
        self.pages.settled();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::IntoRawFd;

    /// A document as the first format-1 writer produced it (captured from a
    /// real re-exec, paths and kernel command line made neutral), without
    /// the fields added since. Every later binary must keep reading it.
    const OLDEST_V1: &str = include_str!("../../tests/fixtures/handover-v1-oldest.json");

    fn memfd_with(text: &str) -> RawFd {
        let fd = rustix::fs::memfd_create("test-handover", rustix::fs::MemfdFlags::CLOEXEC)
            .expect("memfd");
        rustix::io::write(&fd, text.as_bytes()).expect("write");
        fd.into_raw_fd()
    }

    #[test]
    fn the_format_written_is_the_lowest_that_can_hold_the_state() {
        let h = read_handover(memfd_with(OLDEST_V1)).expect("readable");
        let mut sup = crate::supervisor::Supervisor::default();
        for s in h.services {
            sup.services.insert(s.spec.name.clone(), s);
        }
        assert_eq!(needed_format(&sup), 1, "nothing of format 2 in use");
        let web = sup.services.get_mut("web").expect("web");
        let mut next = web.spec.clone();
        next.readiness = moonlit_config::plan::Readiness::Path {
            path: "/run/w".into(),
        };
        web.pending = Some(next);
        assert_eq!(
            needed_format(&sup),
            2,
            "a deferred spec with path readiness"
        );
        let text = serde_json::to_string(&sup.services["web"]).expect("json");
        assert!(
            text.contains(r#""readiness":{"path":{"path":"/run/w"}}"#),
            "{text}"
        );
        let web = sup.services.get_mut("web").expect("web");
        web.pending = None;
        web.spec.limits.insert(
            "nofile".into(),
            moonlit_config::plan::Limit {
                soft: Some(10),
                hard: None,
            },
        );
        assert_eq!(needed_format(&sup), 2, "resource limits");
        let web = sup.services.get_mut("web").expect("web");
        web.spec.log_rotate = Some(moonlit_config::plan::LogRotate {
            max_size: 1 << 20,
            keep: 3,
        });
        assert_eq!(needed_format(&sup), 3, "log rotation");
        let text = serde_json::to_string(&sup.services["web"]).expect("json");
        let back: crate::supervisor::Service = serde_json::from_str(&text).expect("round trip");
        assert_eq!(back.spec.log_rotate, sup.services["web"].spec.log_rotate);
        assert_eq!(back.health.status.name(), "starting");
        let web = sup.services.get_mut("web").expect("web");
        web.spec.activation.lazy = true;
        web.spec.activation.sockets = vec![moonlit_config::sockets::SocketSpec {
            listen: moonlit_config::sockets::parse_listen("/run/web.sock").expect("path"),
            kind: Default::default(),
            name: "web".into(),
            backlog: 16,
            mode: Some(0o660),
            owner: None,
            group: None,
        }];
        assert_eq!(needed_format(&sup), 4, "socket activation");
        let text = serde_json::to_string(&sup.services["web"]).expect("json");
        let back: crate::supervisor::Service = serde_json::from_str(&text).expect("round trip");
        assert_eq!(back.spec.activation, sup.services["web"].spec.activation);
        // A handover without the sockets fields (any older writer) loads.
        let h = read_handover(memfd_with(OLDEST_V1)).expect("readable");
        assert!(h.sockets.is_empty() && h.socket_instances.is_empty());
    }

    #[test]
    fn a_newer_binary_reads_the_oldest_format() {
        let h = read_handover(memfd_with(OLDEST_V1)).expect("format 1 is readable");
        assert_eq!(h.format, 1);
        assert_eq!(h.mode, "sandbox");
        assert_eq!(h.generation, 1);
        let names: Vec<&str> = h.services.iter().map(|s| s.spec.name.as_str()).collect();
        assert_eq!(names, ["job", "web"]);
        let web = &h.services[1];
        assert_eq!(web.state.pid(), Some(4), "the running pid is adopted");
        assert_eq!(web.restarts, 2);
        assert_eq!(web.spec.stop_signal, 10, "the old stop signal is kept");
        // Fields the oldest writer did not have take their defaults.
        assert!(
            web.ready,
            "a running service of an old image counts as ready"
        );
        assert_eq!(web.spec.readiness, moonlit_config::plan::Readiness::Started);
        assert_eq!(web.spec.ready_timeout, std::time::Duration::from_secs(30));
        assert_eq!(h.reexecs, 0);
        assert!(!h.net_active && h.net_owned.is_empty());
        // It kept no boot record: `moonlit analyze` says it was lost.
        let boot = h
            .boot
            .clone()
            .map_or_else(BootRecord::lost, BootRecord::adopted);
        assert!(boot.lost && boot.frozen);
        // Module state and logs come across.
        assert_eq!(h.states.len(), 1);
        assert_eq!(h.states[0].1["hits"], 3);
        let web_log = h.logs.iter().find(|l| l.service == "web").expect("web log");
        assert_eq!(web_log.lines, ["web: listening", "web: ok"]);
        let o = h.options();
        assert_eq!(o.config_dir, std::path::PathBuf::from("/etc/moonlit"));
    }

    #[test]
    fn a_newer_format_or_garbage_is_refused_with_a_reason() {
        let next = FORMAT_VERSION + 1;
        let newer = OLDEST_V1.replacen("\"format\": 1", &format!("\"format\": {next}"), 1);
        assert_ne!(newer, OLDEST_V1);
        let e = read_handover(memfd_with(&newer)).err().expect("refused");
        assert!(e.contains(&format!("format {next} is newer")), "{e}");
        assert_eq!(handover_check(Some(&next.to_string())), 1);
        assert_eq!(handover_check(Some("1")), 0);
        assert_eq!(handover_check(Some(&FORMAT_VERSION.to_string())), 0);
        let e = read_handover(memfd_with("{\"format\": 1"))
            .err()
            .expect("refused");
        assert!(e.contains("parsing the handover"), "{e}");
    }
}

/// Fuzzing the handover document: mutated real documents (the oldest
/// format-1 fixture, a format-4 document written by this binary's own
/// serializer) into `read_handover`, the descriptor check, the options,
/// a round trip and `Supervisor::restore`; random words into
/// `--handover-check`. The real adoption path (the binary as PID 1 with a
/// mutated document) is `init/tests/fuzz_handover.rs`.
///
/// Short pass: 2,000 documents. `MOONLIT_FUZZ_SCALE=N` multiplies;
/// `MOONLIT_FUZZ_SEED` replays.
#[cfg(test)]
pub(crate) mod fuzz {
    use super::*;
    use std::os::fd::IntoRawFd;

    fn env_u64(name: &str) -> Option<u64> {
        std::env::var(name).ok().and_then(|s| s.parse().ok())
    }

    fn memfd_with(bytes: &[u8]) -> RawFd {
        let fd = rustix::fs::memfd_create("fuzz-handover", rustix::fs::MemfdFlags::CLOEXEC)
            .expect("memfd");
        let mut off = 0;
        while off < bytes.len() {
            off += rustix::io::write(&fd, &bytes[off..]).expect("write");
        }
        fd.into_raw_fd()
    }

    /// The seeds: every document of the corpus directory, and a format-4
    /// document with what later formats added.
    pub(crate) fn seeds() -> Vec<String> {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/fuzz_handover");
        let mut out: Vec<String> = std::fs::read_dir(&dir)
            .expect("corpus dir")
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .map(|e| std::fs::read_to_string(e.path()).expect("seed"))
            .collect();
        out.sort();
        let mut h = read_handover(memfd_with(out[0].as_bytes())).expect("a readable seed");
        h.format = FORMAT_VERSION;
        h.reexecs = 3;
        h.service_env.insert("TZ".into(), "UTC".into());
        h.net_active = true;
        h.net_owned.insert("v0".into());
        h.socket_instances.push((42, "web".into()));
        h.sockets.push(super::super::sockets::SocketHandover {
            service: "web".into(),
            spec: moonlit_config::sockets::SocketSpec {
                listen: moonlit_config::sockets::parse_listen("/run/web.sock").expect("path"),
                kind: Default::default(),
                name: "web".into(),
                backlog: 16,
                mode: Some(0o660),
                owner: None,
                group: None,
            },
            fd: 9,
        });
        if let Some(web) = h.services.iter_mut().find(|s| s.spec.name == "web") {
            web.spec.readiness = moonlit_config::plan::Readiness::Path {
                path: "/run/w".into(),
            };
            web.spec.log_rotate = Some(moonlit_config::plan::LogRotate {
                max_size: 1 << 20,
                keep: 3,
            });
            web.spec.limits.insert(
                "nofile".into(),
                moonlit_config::plan::Limit {
                    soft: Some(10),
                    hard: None,
                },
            );
        }
        out.push(serde_json::to_string_pretty(&h).expect("serialize"));
        out
    }

    pub(crate) struct Mutator {
        pub rng: fastrand::Rng,
    }

    impl Mutator {
        fn value(&mut self, depth: u32) -> Value {
            match self.rng.u8(0..if depth == 0 { 9 } else { 11 }) {
                0 => Value::Null,
                1 => json!(self.rng.bool()),
                2 => json!(-1),
                3 => json!(u64::MAX),
                4 => json!(i64::MIN),
                5 => json!(self.rng.i32(-5..200)),
                6 => json!(1e308),
                7 => json!("x".repeat(self.rng.usize(0..100))),
                8 => json!(
                    ["sandbox", "system", "user", "container", "", "\u{0}"][self.rng.usize(0..6)]
                ),
                9 => Value::Array(
                    (0..self.rng.usize(0..4))
                        .map(|_| self.value(depth - 1))
                        .collect(),
                ),
                _ => {
                    let mut m = serde_json::Map::new();
                    for _ in 0..self.rng.usize(0..4) {
                        m.insert(
                            ["secs", "nanos", "Exited", "Running", "pid", "name", "fd"]
                                [self.rng.usize(0..7)]
                            .into(),
                            self.value(depth - 1),
                        );
                    }
                    Value::Object(m)
                }
            }
        }

        /// One structural change at a random node of the document.
        fn mutate_tree(&mut self, v: &mut Value, depth: u32) {
            let descend = depth < 12 && self.rng.u8(0..3) != 0;
            match v {
                Value::Object(m) if !m.is_empty() && descend => {
                    let k = m
                        .keys()
                        .nth(self.rng.usize(0..m.len()))
                        .cloned()
                        .unwrap_or_default();
                    if let Some(c) = m.get_mut(&k) {
                        self.mutate_tree(c, depth + 1);
                    }
                }
                Value::Array(a) if !a.is_empty() && descend => {
                    let i = self.rng.usize(0..a.len());
                    self.mutate_tree(&mut a[i], depth + 1);
                }
                Value::Object(m) if !m.is_empty() && self.rng.bool() => {
                    let k = m
                        .keys()
                        .nth(self.rng.usize(0..m.len()))
                        .cloned()
                        .unwrap_or_default();
                    if self.rng.bool() {
                        m.remove(&k);
                    } else {
                        m.insert(format!("{k}_"), self.value(2));
                    }
                }
                Value::Array(a) if !a.is_empty() && self.rng.bool() => {
                    let i = self.rng.usize(0..a.len());
                    let c = a[i].clone();
                    if self.rng.bool() {
                        a.push(c);
                    } else {
                        a.remove(i);
                    }
                }
                _ => *v = self.value(2),
            }
        }

        pub(crate) fn document(&mut self, seeds: &[String]) -> Vec<u8> {
            let seed = &seeds[self.rng.usize(0..seeds.len())];
            let mut v: Value = serde_json::from_str(seed).expect("seed json");
            for _ in 0..self.rng.usize(1..4) {
                self.mutate_tree(&mut v, 0);
            }
            let mut b = serde_json::to_vec(&v).expect("json");
            if self.rng.u8(0..5) == 0 {
                for _ in 0..self.rng.usize(1..4) {
                    if b.is_empty() {
                        break;
                    }
                    let i = self.rng.usize(0..b.len());
                    match self.rng.u8(0..4) {
                        0 => b[i] = self.rng.u8(..),
                        1 => {
                            b.remove(i);
                        }
                        2 => b.truncate(i),
                        _ => b.insert(i, b"{}[],:\"\\"[self.rng.usize(0..8)]),
                    }
                }
            }
            b
        }
    }

    /// What one document gives: refused with a reason, or a handover
    /// that survives everything done with it before adoption.
    fn check(doc: &[u8]) -> Result<&'static str, String> {
        match read_handover(memfd_with(doc)) {
            Err(e) => {
                if e.starts_with("parsing the handover")
                    || e.starts_with("handover format")
                    || e.starts_with("reading the handover")
                {
                    Ok("refused")
                } else {
                    Err(format!("unclear refusal: {e}"))
                }
            }
            Ok(h) => {
                if let Err(e) = h.check() {
                    if !e.contains("descriptor") && !e.contains("cannot be adopted") {
                        return Err(format!("unclear refusal before adoption: {e}"));
                    }
                }
                let _ = h.options();
                let text = serde_json::to_string(&h).map_err(|e| format!("re-serialize: {e}"))?;
                let back: Handover =
                    serde_json::from_str(&text).map_err(|e| format!("round trip: {e}"))?;
                let sup = crate::supervisor::Supervisor::restore(
                    back.services,
                    &moonlit_config::Plan::default(),
                );
                let _ = needed_format(&sup);
                let _ =
                    serde_json::to_string(&sup.services).map_err(|e| format!("services: {e}"))?;
                Ok("parsed")
            }
        }
    }

    #[test]
    fn mutated_handover_documents_are_refused_with_a_reason_or_parsed() {
        let seed = env_u64("MOONLIT_FUZZ_SEED").unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_nanos() as u64
        });
        let n = 2_000 * env_u64("MOONLIT_FUZZ_SCALE").unwrap_or(1);
        eprintln!("fuzz_handover (in-process): MOONLIT_FUZZ_SEED={seed}, {n} documents");
        let seeds = seeds();
        for s in &seeds {
            assert_eq!(check(s.as_bytes()), Ok("parsed"), "a seed must parse");
        }
        let mut m = Mutator {
            rng: fastrand::Rng::with_seed(seed),
        };
        let (mut refused, mut parsed) = (0u64, 0u64);
        for i in 0..n {
            let doc = m.document(&seeds);
            let r = std::panic::catch_unwind(|| check(&doc)).unwrap_or_else(|p| {
                Err(format!(
                    "panic: {}",
                    p.downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default()
                ))
            });
            match r {
                Ok("refused") => refused += 1,
                Ok(_) => parsed += 1,
                Err(e) => panic!(
                    "document {i} (seed {seed}): {e}\n{}",
                    String::from_utf8_lossy(&doc[..doc.len().min(4000)])
                ),
            }
        }
        eprintln!("fuzz_handover (in-process): {n} documents: {refused} refused, {parsed} parsed; 0 panics");
        assert!(
            refused > 0 && parsed > 0,
            "the mutations reach both outcomes"
        );
        // --handover-check: any word gives 0, 1 or 2, and 0 only for a format this binary reads.
        for _ in 0..200 {
            let w: String = (0..m.rng.usize(0..12)).map(|_| m.rng.char(..)).collect();
            let w = if m.rng.bool() {
                m.rng.u64(..).to_string()
            } else {
                w
            };
            let code = handover_check(Some(&w));
            let readable = w.parse::<u32>().is_ok_and(|v| v <= FORMAT_VERSION);
            assert_eq!(code == 0, readable, "--handover-check {w:?} gave {code}");
            assert!((0..=2).contains(&code));
        }
        assert_eq!(handover_check(None), 2);
    }

    /// Regressions: a negative or closed handover descriptor, and handed-over
    /// numbers that are stdio, repeated or closed, are refused with a reason
    /// (a negative number panicked in `OwnedFd::from_raw_fd`; stdio or a
    /// repeated number would have been closed by the adoption).
    #[test]
    fn bad_descriptor_numbers_are_refused() {
        let e = read_handover(-1).err().expect("refused");
        assert!(e.contains("descriptor -1 is not open"), "{e}");
        let e = read_handover(1 << 20).err().expect("refused");
        assert!(e.contains("is not open"), "{e}");
        let seeds = seeds();
        let mut h = read_handover(memfd_with(seeds[0].as_bytes())).expect("seed");
        h.control_fd = None;
        h.reply_fd = None;
        h.logs.clear();
        h.sockets.clear();
        assert_eq!(h.check_descriptors(), Ok(()));
        h.control_fd = Some(1);
        assert!(h
            .check_descriptors()
            .expect_err("stdio")
            .contains("descriptor 1 cannot be handed over"));
        let keep = memfd_with(b"x");
        h.control_fd = Some(keep);
        assert_eq!(h.check_descriptors(), Ok(()), "an open descriptor is fine");
        h.reply_fd = Some(keep);
        assert!(h
            .check_descriptors()
            .expect_err("twice")
            .contains("handed over twice"));
        h.reply_fd = None;
        // A service's pid of 1 (signalled as a group: every process) or
        // past a pid's range is refused too.
        h.reply_fd = None;
        let web = h
            .services
            .iter_mut()
            .find(|s| s.spec.name == "web")
            .expect("web");
        web.state = crate::supervisor::State::Running { pid: 1, since: 0 };
        assert!(h
            .check()
            .expect_err("pid 1")
            .contains("web: pid 1 cannot be adopted"));
        let web = h
            .services
            .iter_mut()
            .find(|s| s.spec.name == "web")
            .expect("web");
        web.state = crate::supervisor::State::Running {
            pid: u32::MAX,
            since: 0,
        };
        assert!(h.check().is_err());
        let web = h
            .services
            .iter_mut()
            .find(|s| s.spec.name == "web")
            .expect("web");
        web.state = crate::supervisor::State::Running { pid: 4, since: 0 };
        assert_eq!(h.check(), Ok(()));
        drop(crate::sys::own_fd(keep));
        assert!(h
            .check_descriptors()
            .expect_err("closed")
            .contains("is not open"));
    }
}
