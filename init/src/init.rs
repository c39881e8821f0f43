//! The init proper: one thread, one epoll loop.
//!
//! Owns the loop and everything registered in it: the signalfd (all async
//! signals arrive here), the reaper, the Lua tasks and their timers, the
//! supervisor's actions, the service log pipes, the console and the control
//! socket; and the shutdown sequence. Decides nothing about services itself:
//! the [`Supervisor`] does, this module carries its actions out.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use moonlit_config::error::ConfigError;
use moonlit_config::plan::Plan;
use moonlit_config::runtime::{
    BootInfo, HostRequest, Limits, Registrar, Request, Runtime, Step, TaskId,
};
use moonlit_config::spawn::{self, signal_name, ExitStatus, SpawnSpec, StdioSpec};
use nix::sys::signal::{SigSet, Signal as NixSignal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use rustix::event::epoll::{self, EventData, EventFlags};
use rustix::io::Errno;
use rustix::process::{Pid, Signal, WaitOptions};
use serde_json::{json, Value};

use crate::console::{uptime, Console};
use crate::control::{Control, Incoming, PROTOCOL_VERSION};
use crate::logs::ServiceLog;
use crate::mode::Mode;
use crate::shutdown::{self, Power};
use crate::supervisor::{Action, Ms, State, Supervisor};

mod cgroup;
mod dhcp;
mod health;
mod network;
mod ready;
pub(crate) mod recover;
pub mod reexec;
mod reload;
mod script;
pub mod sockets;
mod tasks;
pub(crate) mod timers;
use network::Net;
use reload::Module;

const T_SIGNAL: u64 = 1;
const T_CONTROL: u64 = 2;
const T_CONSOLE: u64 = 3;
const T_WATCH: u64 = 4;
const T_NETLINK: u64 = 5;
const T_CGROUP: u64 = 6;
/// Quiet period of the configuration watch.
const WATCH_QUIET_MS: Ms = 300;
const T_LOG: u64 = 1 << 32;
const T_CLIENT: u64 = 2 << 32;
const T_MASK: u64 = 0xffff_ffff;

/// Grace between TERM to everything and KILL to everything at shutdown.
const GRACE_MS: Ms = 3000;

/// Milliseconds on the monotonic clock.
pub fn now_ms() -> Ms {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1000 + t.tv_nsec as u64 / 1_000_000
}

/// How this init was started.
#[derive(Debug, Clone)]
pub struct Options {
    pub mode: Mode,
    pub config_dir: PathBuf,
    pub control_path: PathBuf,
    pub debug: bool,
    pub rescue: bool,
    /// Reload when the configuration directory changes (inotify, debounced).
    pub watch: bool,
    pub cmdline: Vec<(String, String)>,
    pub limits: Limits,
    /// The control socket kept open across a re-exec.
    pub inherited_control: Option<std::os::fd::RawFd>,
    /// Entrypoint mode with a configuration: the command that runs as the
    /// `main` service after the configured ones.
    pub main_cmd: Option<crate::entry::MainCmd>,
    /// `moonlit lua SCRIPT ARGS...`: run the script on the loop, then exit.
    pub script: Option<(PathBuf, Vec<String>)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Services,
    Term { until: Ms },
    Kill { until: Ms },
    Done,
}

struct Shutdown {
    power: Power,
    phase: Phase,
    /// An exit code asked for (`ctl poweroff --code`, a main service's end).
    code: Option<i32>,
    started: Ms,
}

/// The signals that mean something to moonlit (kernel numbering for the
/// real-time ones, as systemd uses them: RTMIN = 34).
fn signal_action(signo: i32) -> Option<Power> {
    match signo {
        15 | 30 | 12 | 38 => Some(Power::Poweroff), // TERM, PWR, USR2, RTMIN+4
        2 | 39 => Some(Power::Reboot),              // INT (ctrl-alt-del), RTMIN+5
        10 | 37 => Some(Power::Halt),               // USR1, RTMIN+3
        _ => None,
    }
}

pub struct Init {
    opts: Options,
    epoll: OwnedFd,
    sigfd: SignalFd,
    console: Rc<std::cell::RefCell<Console>>,
    control: Option<Control>,
    rt: Runtime,
    sup: Supervisor,
    logs: BTreeMap<u32, ServiceLog>,
    log_ids: HashMap<String, u32>,
    next_log: u32,
    sleepers: BTreeMap<(Ms, u64), (TaskId, bool)>,
    seq: u64,
    pid_waiters: HashMap<u32, TaskId>,
    net_waiters: Vec<(TaskId, Option<Ms>)>,
    yielders: Vec<TaskId>,
    /// Tasks waiting on other tasks or on descriptors (tasks.rs).
    waits: tasks::LuaWaits,
    /// Timer-started services' schedule (timers.rs).
    timers: timers::Timers,
    boot_task: Option<TaskId>,
    boot_script_done: bool,
    config_errors: Vec<ConfigError>,
    lua_errors: VecDeque<String>,
    orphans: u64,
    shutdown: Option<Shutdown>,
    t0: Ms,
    timings: Vec<(String, Ms)>,
    /// When each boot step ran and each service started (`moonlit analyze`).
    boot: crate::analyze::record::BootRecord,
    ready: bool,
    generation: u64,
    children_left: bool,
    /// The environment variable names each service was last started with
    /// (beside the clean defaults), for `ctl status NAME`.
    env_names: BTreeMap<String, Vec<String>>,
    /// The exit status a shell would give for the last failed spawn
    /// (127 not found, 126 not executable).
    spawn_code: i32,
    boot_started: Ms,
    services_started: Ms,
    rescue_pid: Option<u32>,
    /// The modules and plan of the generation in force.
    modules: BTreeMap<String, Module>,
    plan: Plan,
    /// Committed reload transactions.
    transactions: u64,
    last_reload: Option<Value>,
    /// inotify on the configuration directories, and the debounce deadline.
    watch: Option<OwnedFd>,
    watch_due: Option<Ms>,
    /// When the binary's pages are given back (after rare work).
    pages: crate::idle_pages::IdlePages,
    net: Net,
    dhcp: dhcp::Dhcp,
    reexec: Option<reexec::PendingReexec>,
    /// Re-execs since boot.
    reexecs: u64,
    /// Lua callbacks of services (`on_start`, `on_exit`) of the generation in force.
    callbacks: HashMap<String, Callbacks>,
    /// Names of running tasks, for their error messages.
    task_names: HashMap<TaskId, String>,
    /// `ctl eval` tasks still running -> the client waiting for the result.
    evals: HashMap<TaskId, u64>,
    readiness: ready::Ready,
    /// Health probes in progress.
    health: health::Probes,
    /// Socket activation: bound sockets, watches, accept instances.
    sockets: sockets::Sockets,
    /// The services' cgroups (or why there are none).
    cg: crate::cgroup::Cgroups,
}

/// A service's Lua callbacks.
#[derive(Default)]
struct Callbacks {
    on_start: Option<mlua::Function>,
    on_exit: Option<mlua::Function>,
    on_health: Option<mlua::Function>,
}

fn log_line(console: &Rc<std::cell::RefCell<Console>>, msg: &str) {
    if let Ok(mut c) = console.try_borrow_mut() {
        c.line(msg);
    }
}

impl Init {
    /// Sets up the loop. Signals must already be blocked (`mask`).
    pub fn new(
        opts: Options,
        mask: &SigSet,
        console: Console,
        stage1_ms: Ms,
        t0: Ms,
    ) -> Result<Init, String> {
        let epoll =
            epoll::create(epoll::CreateFlags::CLOEXEC).map_err(|e| format!("epoll_create: {e}"))?;
        let sigfd = SignalFd::with_flags(mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(|e| format!("signalfd: {e}"))?;
        epoll::add(
            &epoll,
            sigfd.as_fd(),
            EventData::new_u64(T_SIGNAL),
            EventFlags::IN,
        )
        .map_err(|e| format!("epoll_ctl(signalfd): {e}"))?;
        let console = Rc::new(std::cell::RefCell::new(console));
        {
            let mut c = console.borrow_mut();
            if epoll::add(
                &epoll,
                c.fd(),
                EventData::new_u64(T_CONSOLE),
                EventFlags::OUT | EventFlags::ET,
            )
            .is_err()
            {
                c.pollable = false;
            }
        }
        let info = BootInfo {
            mode: opts.mode.name().into(),
            config_dir: opts.config_dir.display().to_string(),
            debug: opts.debug,
            cmdline: opts.cmdline.clone(),
        };
        let lc = console.clone();
        let log: moonlit_config::runtime::LogFn = if opts.script.is_some() {
            Rc::new(script::print_line)
        } else {
            Rc::new(move |m: &str| log_line(&lc, &format!("lua: {m}")))
        };
        let modules: [Registrar; 2] = [moonlit_sys::register, moonlit_net::register];
        let rt = Runtime::new(opts.limits, &info, log, &modules)
            .map_err(|e| format!("Lua runtime: {e}"))?;

        let uid = rustix::process::getuid().as_raw();
        let cg = crate::cgroup::Cgroups::setup(opts.mode);
        let timers = timers::Timers::new(&opts.cmdline, t0);
        let mut init = Init {
            opts,
            epoll,
            sigfd,
            console,
            control: None,
            rt,
            sup: Supervisor::default(),
            logs: BTreeMap::new(),
            log_ids: HashMap::new(),
            next_log: 1,
            sleepers: BTreeMap::new(),
            seq: 0,
            pid_waiters: HashMap::new(),
            net_waiters: Vec::new(),
            yielders: Vec::new(),
            waits: Default::default(),
            timers,
            boot_task: None,
            boot_script_done: false,
            config_errors: Vec::new(),
            lua_errors: VecDeque::new(),
            orphans: 0,
            shutdown: None,
            t0,
            timings: vec![("stage 1".into(), stage1_ms)],
            boot: crate::analyze::record::BootRecord::new(t0, stage1_ms),
            ready: false,
            generation: 1,
            children_left: true,
            env_names: BTreeMap::new(),
            spawn_code: 127,
            boot_started: now_ms(),
            services_started: now_ms(),
            rescue_pid: None,
            modules: BTreeMap::new(),
            plan: Plan::default(),
            transactions: 0,
            last_reload: None,
            watch: None,
            watch_due: None,
            pages: Default::default(),
            net: Net::default(),
            dhcp: dhcp::Dhcp::default(),
            reexec: None,
            reexecs: 0,
            callbacks: HashMap::new(),
            task_names: HashMap::new(),
            evals: HashMap::new(),
            readiness: ready::Ready::default(),
            health: health::Probes::default(),
            sockets: sockets::Sockets::default(),
            cg,
        };
        if init.opts.script.is_some() {
            return Ok(init);
        }
        init.report_cgroups();
        let control = match init.opts.inherited_control {
            Some(fd) => Ok(Control::adopt(
                crate::sys::own_fd(fd),
                &init.opts.control_path,
                uid,
            )),
            None => Control::bind(&init.opts.control_path, uid),
        };
        match control {
            Ok(c) => {
                if let Err(e) = epoll::add(
                    &init.epoll,
                    c.listener(),
                    EventData::new_u64(T_CONTROL),
                    EventFlags::IN,
                ) {
                    init.log(&format!("control socket: epoll: {e}"));
                }
                init.control = Some(c);
            }
            Err(e) => init.log(&format!("{e} (running without a control socket)")),
        }
        // The boot line counts it from t0 (bench/images reads it so); the
        // record has it from the end of stage 1.
        let now = now_ms();
        init.timings
            .push(("lua runtime".into(), now.saturating_sub(t0)));
        init.boot.step("lua runtime", t0 + stage1_ms, now);
        Ok(init)
    }

    fn log(&self, msg: &str) {
        log_line(&self.console, &format!("moonlit: {msg}"));
    }

    fn mark(&mut self, step: &str, since: Ms) {
        let now = now_ms();
        self.timings
            .push((step.to_string(), now.saturating_sub(since)));
        self.boot.step(step, since, now);
    }

    /// Evaluates the configuration and starts the boot script.
    pub fn boot(&mut self) {
        let t = now_ms();
        if self.opts.rescue {
            self.start_rescue_shell();
        }
        let dir = self.opts.config_dir.clone();
        let c = self.evaluate(None, true);
        for e in &c.errors {
            self.log(&format!("config error: {e}"));
        }
        self.config_errors = c.errors.clone();
        self.sup = Supervisor::new(&c.plan);
        self.sup.hold = true;
        self.log(&format!(
            "configuration {}: {} modules, {} services, {} errors",
            dir.display(),
            c.modules.len()
                + c.errors
                    .iter()
                    .filter(|e| e.kind == moonlit_config::ErrorKind::Syntax
                        || e.kind == moonlit_config::ErrorKind::Runtime
                        || e.kind == moonlit_config::ErrorKind::Limit)
                    .count(),
            c.plan.services.len(),
            self.config_errors.len()
        ));
        self.commit(c);
        if self.opts.watch {
            self.start_watch();
        }
        self.mark("modules", t);

        let script = dir.join("init.lua");
        match std::fs::read(&script) {
            Ok(src) => match self.rt.load_script("init.lua", &src) {
                Ok(f) => {
                    // Timed from before its first slice, which runs right here.
                    self.boot_started = now_ms();
                    let (id, step) = self.rt.start_task("init.lua", f, ());
                    self.boot_task = Some(id);
                    self.handle_step(id, step);
                }
                Err(e) => {
                    self.log(&format!("boot script: {e}"));
                    self.push_lua_error(e.to_string());
                    self.boot_script_finished();
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => self.boot_script_finished(),
            Err(e) => {
                self.log(&format!("boot script {}: {e}", script.display()));
                self.boot_script_finished();
            }
        }
    }

    fn push_lua_error(&mut self, e: String) {
        self.lua_errors.push_back(e);
        while self.lua_errors.len() > 20 {
            self.lua_errors.pop_front();
        }
    }

    fn boot_script_finished(&mut self) {
        if self.boot_script_done {
            return;
        }
        self.boot_script_done = true;
        if self.boot_task.is_some() {
            let since = self.boot_started;
            self.mark("init.lua", since);
        }
        if self.net.active {
            let t = now_ms();
            let spec = self.net.spec.clone();
            self.net_apply(&spec);
            self.start_netlink_events();
            self.mark("network", t);
        }
        self.sync_sockets();
        self.sup.hold = false;
        self.services_started = now_ms();
    }

    /// Runs the loop forever (or, in an exiting mode, until shutdown ends).
    /// `panics`: the recent panics an earlier image recovered from.
    pub fn run(mut self, panics: Vec<u64>) -> ! {
        // Whatever boot (or a re-exec's adoption) left to do happens now, not
        // after the first event: nothing else may come (a console on a
        // regular file never reports "writable").
        self.process();
        let script = self.opts.script.is_some();
        if !script {
            self.arm_recovery(panics);
        }
        loop {
            self.script_exit_if_done();
            self.turn();
            if !script {
                self.checkpoint();
            }
            if matches!(
                self.shutdown,
                Some(Shutdown {
                    phase: Phase::Done,
                    ..
                })
            ) {
                self.finish();
            }
            self.script_exit_if_done();
        }
    }

    fn next_deadline(&self) -> Option<Ms> {
        let mut d = [
            self.sleepers.keys().next().map(|k| k.0),
            self.sup.next_deadline(),
            self.control.as_ref().and_then(Control::next_deadline),
            self.net_waiters.iter().filter_map(|w| w.1).min(),
            self.waits.next_deadline(),
            self.timers.next_deadline(),
            self.watch_due,
            self.pages.next_deadline(),
            self.dhcp_deadline(),
            self.reexec_deadline(),
            self.readiness.next_probe,
            self.sup.health_next(),
            self.health.next_deadline(),
            recover::due(),
            match self.shutdown.as_ref().map(|s| s.phase) {
                Some(Phase::Term { until }) | Some(Phase::Kill { until }) => Some(until),
                _ => None,
            },
        ]
        .into_iter()
        .flatten()
        .min();
        if !self.yielders.is_empty()
            || self.console.borrow().pending() && !self.console.borrow().pollable
        {
            d = Some(now_ms());
        }
        if self.net.again {
            d = Some(now_ms());
        }
        d
    }

    fn turn(&mut self) {
        let now = now_ms();
        let timeout = self.next_deadline().map(|d| {
            let ms = d.saturating_sub(now);
            rustix::time::Timespec {
                tv_sec: (ms / 1000) as i64,
                tv_nsec: ((ms % 1000) * 1_000_000) as i64,
            }
        });
        let mut events = Vec::with_capacity(64);
        match epoll::wait(
            &self.epoll,
            rustix::buffer::spare_capacity(&mut events),
            timeout.as_ref(),
        ) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) => {
                self.log(&format!("epoll_wait: {e}"));
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        for ev in events {
            let data = ev.data.u64();
            let flags = ev.flags;
            match data {
                T_SIGNAL => self.on_signals(),
                T_CONTROL => self.on_accept(),
                T_CONSOLE => self.console.borrow_mut().flush(),
                T_WATCH => self.on_watch(),
                T_NETLINK => self.on_netlink(),
                T_CGROUP => self.on_cgroup_events(),
                d if d & !T_MASK == T_LOG => self.on_log((d & T_MASK) as u32),
                d if d & !T_MASK == T_CLIENT => self.on_client(d & T_MASK, flags),
                d if d & !T_MASK == ready::T_NOTIFY => self.on_notify(d),
                d if d & !T_MASK == dhcp::T_DHCP => self.on_dhcp((d & T_MASK) as u32),
                d if d & !T_MASK == health::T_HEALTH => self.on_health_event(d),
                d if d & !T_MASK == tasks::T_LUAFD => self.on_lua_fd(d),
                d if d & !T_MASK == sockets::T_SOCKET => self.on_socket_event(d),
                _ => {}
            }
        }
        self.process();
    }

    /// Everything that follows events: due timers, task resumption, the
    /// supervisor's step, requests from Lua, shutdown progress.
    fn process(&mut self) {
        // Readiness probes (TCP connects to loopback), at most every 100 ms.
        self.probe_ready();
        self.dhcp_timers();
        self.probe_health();
        self.boot.observe(&self.sup, now_ms());
        for _ in 0..100 {
            let now = now_ms();
            let mut progressed = false;
            // Tasks.
            let due: Vec<(Ms, u64)> = self
                .sleepers
                .range(..=(now, u64::MAX))
                .map(|(k, _)| *k)
                .collect();
            for k in due {
                if let Some((id, netlink)) = self.sleepers.remove(&k) {
                    let step = if netlink {
                        self.rt.resume(id, true)
                    } else {
                        self.rt.resume(id, ())
                    };
                    self.handle_step(id, step);
                    progressed = true;
                }
            }
            // Netlink waiters: woken by events (on_netlink); here only their
            // timeouts, or a 50 ms re-check when no event socket could be had.
            let polling = self.net.events.is_none();
            let waiters = std::mem::take(&mut self.net_waiters);
            for (id, deadline) in waiters {
                let timed_out = deadline.is_some_and(|d| d <= now);
                if timed_out || polling {
                    self.seq += 1;
                    let at = if timed_out {
                        now
                    } else {
                        deadline.map_or(now + 50, |d| d.min(now + 50))
                    };
                    self.sleepers.insert((at, self.seq), (id, !timed_out));
                    progressed |= timed_out;
                } else {
                    self.net_waiters.push((id, deadline));
                }
            }
            for id in std::mem::take(&mut self.yielders) {
                let step = self.rt.resume(id, ());
                self.handle_step(id, step);
                progressed = true;
            }
            progressed |= self.lua_waits_due();
            progressed |= self.fire_timers();
            for req in self.rt.take_host_requests() {
                self.host_request(req);
                progressed = true;
            }
            // Supervisor.
            let actions = self.sup.step(now);
            if !actions.is_empty() {
                progressed = true;
                self.perform(actions);
                self.prune_cgroups();
                self.pages.touched(now);
            }
            if let Some(code) = self.sup.main_exit.take() {
                let code = match &self.opts.main_cmd {
                    Some(m) => crate::entry::remap(&m.remap, code),
                    None => code,
                };
                self.log(&format!(
                    "main service ended with code {code}: shutting down"
                ));
                self.begin_shutdown(Power::Poweroff, Some(code));
                progressed = true;
            }
            if !progressed {
                break;
            }
        }
        if self.reexec_deadline().is_some_and(|d| d <= now_ms()) {
            self.preflight_done(None);
        }
        if self.net.again {
            self.net.again = false;
            let spec = self.net.spec.clone();
            self.net_apply(&spec);
        }
        if self.watch_due.is_some_and(|d| d <= now_ms()) {
            self.watch_due = None;
            let r = self.reload(None, false, "watch");
            if r["message"] == "no changes" && self.opts.debug {
                self.log("watch: files touched, contents unchanged: no reload");
            }
            self.start_watch();
        }
        // Services that started in this turn get their first probe and a
        // wake-up for the next.
        self.probe_ready();
        self.probe_health();
        self.check_ready();
        self.watch_sockets();
        self.progress_shutdown();
        if let Some(c) = self.control.as_mut() {
            let done = c.finished(now_ms());
            for id in done {
                self.drop_client(id);
            }
        }
        self.console.borrow_mut().flush();
        self.pages.run_due(now_ms());
    }

    fn check_ready(&mut self) {
        self.boot.observe(&self.sup, now_ms());
        if self.ready
            || !self.boot_script_done
            || !self.sup.settled()
            || self.shutdown.is_some()
            || self.opts.script.is_some()
        {
            return;
        }
        self.ready = true;
        let since = self.services_started;
        self.mark("services", since);
        let now = now_ms();
        let total = now.saturating_sub(self.t0);
        let steps: Vec<String> = self
            .timings
            .iter()
            .map(|(n, ms)| format!("{n} {ms} ms"))
            .collect();
        let running = self
            .sup
            .services
            .values()
            .filter(|s| matches!(s.state, State::Running { .. }))
            .count();
        let failed = self
            .sup
            .services
            .values()
            .filter(|s| matches!(s.state, State::Failed { .. }))
            .count();
        self.log(&format!(
            "boot complete in {total} ms ({}); {running} services running, {failed} failed, {} config errors",
            steps.join(", "),
            self.config_errors.len()
        ));
        self.log("READY");
        self.boot.finish(now);
        self.pages.settled();
    }

    fn handle_step(&mut self, id: TaskId, step: Step) {
        let now = now_ms();
        match step {
            Step::Wait(Request::Sleep(d)) => {
                self.seq += 1;
                self.sleepers
                    .insert((now + d.as_millis() as u64, self.seq), (id, false));
            }
            Step::Wait(Request::WaitPid(pid)) => {
                self.pid_waiters.insert(pid, id);
            }
            Step::Wait(Request::Netlink(t)) => {
                self.net_waiters
                    .push((id, t.map(|d| now + d.as_millis() as u64)));
            }
            Step::Wait(Request::Yield) => self.yielders.push(id),
            Step::Wait(r @ (Request::Task { .. } | Request::Park { .. } | Request::Fd { .. })) => {
                self.lua_wait(id, r)
            }
            Step::Wait(Request::SwitchRoot { root, init }) => {
                let err = self.switch_root(&root, &init);
                self.log(&format!("switch_root: {err}"));
                let step = self.rt.resume(id, err);
                self.handle_step(id, step);
            }
            Step::Done => {
                self.task_names.remove(&id);
                if let Some(client) = self.evals.remove(&id) {
                    let results = self.rt.take_results();
                    if let Some(c) = self.control.as_mut() {
                        c.send(
                            client,
                            &json!({"v": PROTOCOL_VERSION, "ok": true, "results": results}),
                            true,
                        );
                    }
                }
                if self.boot_task == Some(id) {
                    self.boot_script_finished();
                }
            }
            Step::Failed(msg) => {
                let name = if self.boot_task == Some(id) {
                    "init.lua".to_string()
                } else {
                    self.task_names
                        .remove(&id)
                        .unwrap_or_else(|| "a task".into())
                };
                self.log(&format!("Lua error in {name}: {msg}"));
                if let Some(client) = self.evals.remove(&id) {
                    if let Some(c) = self.control.as_mut() {
                        c.send(
                            client,
                            &json!({"v": PROTOCOL_VERSION, "ok": false, "error": msg}),
                            true,
                        );
                    }
                    return;
                }
                self.push_lua_error(msg);
                if self.boot_task == Some(id) {
                    self.boot_script_finished();
                }
            }
        }
    }

    /// Hands PID 1 over to `init` on `root`. Returns only on failure.
    fn switch_root(&mut self, root: &str, init: &str) -> String {
        if self.opts.mode != Mode::System {
            return format!(
                "switch_root is only possible as PID 1 of a machine (this is {} mode)",
                self.opts.mode.name()
            );
        }
        if !self.sup.all_down() || self.sup.services.values().any(|s| s.state.pid().is_some()) {
            return "switch_root: services are running; call it from init.lua before they start"
                .into();
        }
        self.log(&format!("switching root to {root}, exec {init}"));
        self.console.borrow_mut().drain(1000);
        if let Err(e) = crate::stage1::switch_root(root, init) {
            return e;
        }
        // The new init gets a clean signal mask; everything moonlit holds is
        // close-on-exec and goes away with this image.
        let _ = nix::sys::signal::sigprocmask(
            nix::sys::signal::SigmaskHow::SIG_SETMASK,
            Some(&SigSet::empty()),
            None,
        );
        let e = crate::sys::exec(&[init]);
        let _ = nix::sys::signal::sigprocmask(
            nix::sys::signal::SigmaskHow::SIG_BLOCK,
            Some(&SigSet::all()),
            None,
        );
        // The root has moved: there is no way back.
        self.fatal(&format!("exec {init} after switch_root: {e}"))
    }

    /// Watches the configuration directories (inotify): any change arms a
    /// debounced reload. Idempotent (re-adds watches for new directories).
    fn start_watch(&mut self) {
        use rustix::fs::inotify;
        if self.watch.is_none() {
            match inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK) {
                Ok(fd) => {
                    if let Err(e) = epoll::add(
                        &self.epoll,
                        &fd,
                        EventData::new_u64(T_WATCH),
                        EventFlags::IN,
                    ) {
                        self.log(&format!("watch: epoll: {e}"));
                        return;
                    }
                    self.watch = Some(fd);
                }
                Err(e) => {
                    self.log(&format!("watch: inotify_init: {e}"));
                    return;
                }
            }
        }
        let Some(fd) = self.watch.as_ref() else {
            return;
        };
        let flags = inotify::WatchFlags::CLOSE_WRITE
            | inotify::WatchFlags::MOVED_TO
            | inotify::WatchFlags::MOVED_FROM
            | inotify::WatchFlags::CREATE
            | inotify::WatchFlags::DELETE
            | inotify::WatchFlags::ATTRIB;
        let dir = self.opts.config_dir.clone();
        for d in [dir.clone(), dir.join("services"), dir.join("lib")] {
            if d.is_dir() {
                let _ = inotify::add_watch(fd, &d, flags);
            }
        }
    }

    fn on_watch(&mut self) {
        let Some(fd) = self.watch.as_ref() else {
            return;
        };
        let mut buf = [0u8; 4096];
        let mut any = false;
        while let Ok(n) = rustix::io::read(fd, &mut buf) {
            if n == 0 {
                break;
            }
            any = true;
        }
        if any {
            self.watch_due = Some(now_ms() + WATCH_QUIET_MS);
        }
    }

    /// `moonlit.rescue`: a shell on the real console, beside the normal boot.
    fn start_rescue_shell(&mut self) {
        let Some(tty) = crate::stage1::console_tty() else {
            self.log("rescue: no console tty found in /sys/class/tty/console/active");
            return;
        };
        let argv: Vec<String> = if std::path::Path::new("/bin/sh").exists() {
            vec!["/bin/sh".into()]
        } else if std::path::Path::new("/bin/busybox").exists() {
            vec!["/bin/busybox".into(), "sh".into()]
        } else {
            self.log("rescue: no /bin/sh or /bin/busybox");
            return;
        };
        let open = || {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&tty)
                .map(OwnedFd::from)
        };
        let fds = (open(), open(), open());
        let (Ok(i), Ok(o), Ok(e)) = fds else {
            self.log(&format!("rescue: cannot open {tty}"));
            return;
        };
        let mut s = SpawnSpec::new(argv);
        s.env.insert("PS1".into(), "moonlit-rescue# ".into());
        s.env.insert("TERM".into(), "linux".into());
        s.stdin = StdioSpec::Fd(i);
        s.stdout = StdioSpec::Fd(o);
        s.stderr = StdioSpec::Fd(e);
        s.ctty = true;
        match spawn::spawn(s) {
            Ok(pid) => {
                self.rescue_pid = Some(pid);
                self.log(&format!("rescue shell started on {tty} (pid {pid})"));
            }
            Err(e) => self.log(&format!("rescue: {e}")),
        }
    }

    /// Runs a service's callback as a task: `f(name, value)`. The newest
    /// generation's function is used; one already running finishes as it began.
    fn callback(&mut self, service: &str, which: &str, value: mlua::Value) {
        self.callback_with(service, which, value, None);
    }

    /// A callback with a third argument (`on_exit`'s reason, `nil` if none).
    fn callback_with(
        &mut self,
        service: &str,
        which: &str,
        value: mlua::Value,
        extra: Option<String>,
    ) {
        let f = self.callbacks.get(service).and_then(|c| match which {
            "on_start" => c.on_start.clone(),
            "on_health" => c.on_health.clone(),
            _ => c.on_exit.clone(),
        });
        let Some(f) = f else { return };
        let label = format!("{service} {which}");
        let (id, step) = self
            .rt
            .start_task(&label, f, (service.to_string(), value, extra));
        self.task_names.insert(id, label);
        self.handle_step(id, step);
    }

    /// Takes the callbacks from the declarations of the generation in force.
    fn refresh_callbacks(&mut self) {
        let mut cbs = HashMap::new();
        for m in self.modules.values() {
            for d in &m.eval.decls {
                if d.kind != "service" {
                    continue;
                }
                let Some(name) = &d.name else { continue };
                // Only the declaration in force (not a rejected duplicate).
                if self.plan.services.get(name).map(|s| &s.location) != Some(&d.location) {
                    continue;
                }
                let get = |k: &str| match d.body.raw_get::<mlua::Value>(k) {
                    Ok(mlua::Value::Function(f)) => Some(f),
                    _ => None,
                };
                let c = Callbacks {
                    on_start: get("on_start"),
                    on_exit: get("on_exit"),
                    on_health: get("on_health"),
                };
                if c.on_start.is_some() || c.on_exit.is_some() || c.on_health.is_some() {
                    cbs.insert(name.clone(), c);
                }
            }
        }
        self.callbacks = cbs;
    }

    fn host_request(&mut self, req: HostRequest) {
        let now = now_ms();
        let res = match req {
            HostRequest::Poweroff => {
                self.begin_shutdown(Power::Poweroff, None);
                Ok(Vec::new())
            }
            HostRequest::Reboot => {
                self.begin_shutdown(Power::Reboot, None);
                Ok(Vec::new())
            }
            HostRequest::Halt => {
                self.begin_shutdown(Power::Halt, None);
                Ok(Vec::new())
            }
            HostRequest::Start(n) => self.sup.start(&n).map(|_| Vec::new()),
            HostRequest::Stop(n) => self.sup.stop(&n, now),
            HostRequest::Restart(n) => self.sup.restart(&n, now),
            HostRequest::Trigger(n) => self.sup.trigger(&n).map(|_| Vec::new()),
        };
        match res {
            Ok(actions) => self.perform(actions),
            Err(e) => self.log(&e),
        }
    }

    fn perform(&mut self, actions: Vec<Action>) {
        recover::changed();
        let mut queue: VecDeque<Action> = actions.into();
        while let Some(a) = queue.pop_front() {
            match a {
                Action::Log(m) => self.log(&m),
                Action::Spawn(name) => {
                    // Its run starts here, not after on_start's first slice.
                    let started = now_ms();
                    let res = self.spawn_service(&name);
                    let placed = res.as_ref().is_ok_and(|(_, c)| *c);
                    self.sup.in_cgroup(&name, placed);
                    let res = res.map(|(pid, _)| pid);
                    if let Ok(pid) = res {
                        if self.opts.debug {
                            self.log(&format!("{name}: started, pid {pid}"));
                        }
                        self.callback(&name, "on_start", mlua::Value::Integer(i64::from(pid)));
                    }
                    let res = res.map_err(|e| (e, std::mem::replace(&mut self.spawn_code, 127)));
                    queue.extend(self.sup.spawned(&name, res, started));
                }
                Action::Ended {
                    service,
                    status,
                    reason,
                } => self.callback_with(
                    &service,
                    "on_exit",
                    mlua::Value::Integer(i64::from(status.code())),
                    reason,
                ),
                Action::CgroupLimits { service, settings } => {
                    self.apply_cgroup_limits(&service, &settings)
                }
                Action::Adopt { service, status } => {
                    queue.extend(self.follow_daemon(&service, status))
                }
                Action::Signal { service, pid, sig } => {
                    let Some(p) = Pid::from_raw(pid as i32) else {
                        continue;
                    };
                    let Some(s) = Signal::from_named_raw(sig) else {
                        continue;
                    };
                    self.signal_service(&service, p, s);
                    // A stop signal is followed by CONT (as systemd's
                    // SendSIGCONT): a stopped (SIGSTOP, job control) process
                    // keeps a pending TERM without acting on it, so without
                    // CONT it would sit out its whole stop_timeout and be
                    // KILLed instead of ending gracefully.
                    let stopping = self
                        .sup
                        .services
                        .get(&service)
                        .is_some_and(|x| matches!(x.state, State::Stopping { .. }));
                    if stopping && s != Signal::KILL && s != Signal::CONT {
                        self.signal_service(&service, p, Signal::CONT);
                    }
                }
            }
        }
    }

    /// Delivers `s` to a service: every process of its cgroup if it has
    /// one (KILL: the whole cgroup at once), else its process group (it
    /// leads its own session), else the process alone.
    fn signal_service(&mut self, service: &str, p: Pid, s: Signal) {
        let in_cg = self.sup.services.get(service).is_some_and(|x| x.cgroup);
        if in_cg && self.cg.signal(service, s) {
            return;
        }
        if rustix::process::kill_process_group(p, s).is_err() {
            if let Err(e) = rustix::process::kill_process(p, s) {
                self.log(&format!(
                    "{service}: kill {} {}: {e}",
                    signal_name(s.as_raw()),
                    p.as_raw_nonzero()
                ));
            }
        }
    }

    fn log_for(&mut self, name: &str) -> Result<u32, String> {
        if let Some(id) = self.log_ids.get(name) {
            return Ok(*id);
        }
        let cap = self
            .sup
            .services
            .get(name)
            .map_or(65536, |s| s.spec.log_buffer);
        let log = ServiceLog::new(name, cap).map_err(|e| format!("log pipe: {e}"))?;
        let id = self.next_log;
        self.next_log += 1;
        epoll::add(
            &self.epoll,
            log.read_fd(),
            EventData::new_u64(T_LOG | u64::from(id)),
            EventFlags::IN,
        )
        .map_err(|e| format!("epoll_ctl(log pipe): {e}"))?;
        self.logs.insert(id, log);
        self.log_ids.insert(name.to_string(), id);
        Ok(id)
    }

    /// Starts a service's process: its pid, and whether it was placed in
    /// its own cgroup.
    fn spawn_service(&mut self, name: &str) -> Result<(u32, bool), String> {
        let spec = self
            .sup
            .services
            .get(name)
            .map(|s| s.spec.clone())
            .ok_or("unknown service")?;
        if spec.passthrough {
            let pid = crate::entry::spawn_main(&spec).map_err(|(e, code)| {
                self.spawn_code = code;
                e
            })?;
            return Ok((pid, false));
        }
        let id = self.log_for(name)?;
        let log = self.logs.get_mut(&id).ok_or("log pipe vanished")?;
        log.set_file(spec.log_file.as_deref())?;
        log.set_file_options(spec.log_rotate, spec.log_timestamps);
        log.console = spec.console;
        log.ring.set_cap(spec.log_buffer);
        let out = log.writer().map_err(|e| format!("log pipe: {e}"))?;
        let err = log.writer().map_err(|e| format!("log pipe: {e}"))?;
        let mut s = SpawnSpec::new(spec.exec.clone());
        s.env = crate::envset::service_env(&spec, &self.rt.service_env())?;
        s.env.insert("MOONLIT_SERVICE".into(), name.to_string());
        s.isolation = spec.sandbox.clone();
        s.cwd = spec.cwd.as_ref().map(PathBuf::from);
        s.user = spec.user.clone();
        s.group = spec.group.clone();
        s.umask = spec.umask;
        s.rlimits = spawn::rlimits_of(&spec.limits);
        s.stdout = StdioSpec::Fd(out);
        s.stderr = StdioSpec::Fd(err);
        if spec.readiness == moonlit_config::plan::Readiness::Notify {
            let uid = match &spec.user {
                Some(u) => Some(spawn::resolve_user(u).map_err(|e| e.to_string())?.uid),
                None => None,
            };
            let path = self.notify_socket(name, uid)?;
            s.env
                .insert("NOTIFY_SOCKET".into(), path.display().to_string());
        }
        self.env_names
            .insert(name.to_string(), s.env.keys().cloned().collect());
        (s.listen_fds, s.listen_names) = self.listen_fds(name)?;
        let cg_dir = self.cgroup_for_spawn(name, &spec)?;
        s.cgroup_fd = cg_dir.as_ref().map(std::os::fd::AsRawFd::as_raw_fd);
        let pid = spawn::spawn(s).map_err(|e| e.to_string())?;
        Ok((pid, cg_dir.is_some()))
    }

    fn on_log(&mut self, id: u32) {
        let Some(log) = self.logs.get_mut(&id) else {
            return;
        };
        let lines = log.read_lines(1 << 20);
        if let Some(e) = log.take_file_error() {
            let m = format!("{}: {e}", log.service);
            self.log(&m);
        }
        let Some(log) = self.logs.get_mut(&id) else {
            return;
        };
        if lines.is_empty() {
            return;
        }
        let name = log.service.clone();
        if log.console {
            let mut c = self.console.borrow_mut();
            for l in &lines {
                c.line(&format!("{name}: {l}"));
            }
        }
        self.send_to_followers(&name, &lines);
    }

    fn send_to_followers(&mut self, name: &str, lines: &[String]) {
        let Some(c) = self.control.as_mut() else {
            return;
        };
        let followers: Vec<u64> = c
            .clients
            .iter()
            .filter(|(_, cl)| cl.follow.as_deref() == Some(name))
            .map(|(id, _)| *id)
            .collect();
        for id in followers {
            for l in lines {
                c.send(
                    id,
                    &json!({"v": PROTOCOL_VERSION, "service": name, "log": l}),
                    false,
                );
            }
        }
    }

    fn on_signals(&mut self) {
        let mut reap = false;
        loop {
            match self.sigfd.read_signal() {
                Ok(Some(info)) => {
                    let signo = info.ssi_signo as i32;
                    if signo == NixSignal::SIGCHLD as i32 {
                        reap = true;
                    } else if signo == NixSignal::SIGHUP as i32 {
                        self.reload(None, false, "SIGHUP");
                    } else if let Some(power) = signal_action(signo) {
                        self.log(&format!(
                            "received SIG{}: {}",
                            signal_name(signo),
                            power.name()
                        ));
                        self.begin_shutdown(power, None);
                    } else if self.opts.debug {
                        self.log(&format!("ignoring SIG{}", signal_name(signo)));
                    }
                }
                Ok(None) => break,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    self.log(&format!("signalfd read: {e}"));
                    break;
                }
            }
        }
        if reap {
            self.reap();
        }
    }

    /// Reaps every exited child; routes each status to its service, its
    /// Lua waiter, or counts an orphan. Records whether children remain.
    fn reap(&mut self) {
        let now = now_ms();
        loop {
            match rustix::process::wait(WaitOptions::NOHANG) {
                Ok(Some((pid, st))) => {
                    let pid = pid.as_raw_nonzero().get() as u32;
                    let status = ExitStatus::from_wait(st);
                    self.route_exit(pid, status, now);
                }
                Ok(None) => {
                    self.children_left = true;
                    break;
                }
                Err(Errno::INTR) => continue,
                Err(_) => {
                    self.children_left = false;
                    break;
                }
            }
        }
    }

    fn route_exit(&mut self, pid: u32, status: ExitStatus, now: Ms) {
        if self.reexec_pid() == Some(pid) {
            self.preflight_done(Some(status.code()));
            return;
        }
        if self.rescue_pid == Some(pid) {
            self.rescue_pid = None;
            self.log(&format!("rescue shell {status}"));
            return;
        }
        if self.health_reaped(pid, status) || self.socket_instance_reaped(pid, status) {
            return;
        }
        if let Some(name) = self.sup.by_pid(pid).map(str::to_string) {
            self.cgroup_after_exit(&name);
            // What the service printed last is shown before its exit is.
            if let Some(id) = self.log_ids.get(&name).copied() {
                self.on_log(id);
            }
            if let Some(actions) = self.sup.exited(pid, status, now) {
                self.perform(actions);
            }
            return;
        }
        if self.rt.child_exited(pid, status) {
            if let Some(task) = self.pid_waiters.remove(&pid) {
                let step = self.rt.resume(task, status.code());
                self.handle_step(task, step);
            }
            return;
        }
        self.orphans += 1;
    }

    fn on_accept(&mut self) {
        let now = now_ms();
        let Some(c) = self.control.as_mut() else {
            return;
        };
        let ids = c.accept(now);
        for id in ids {
            let fd = self
                .control
                .as_ref()
                .and_then(|c| c.clients.get(&id))
                .map(|cl| cl.fd().try_clone_to_owned());
            if let Some(Ok(fd)) = fd {
                let _ = epoll::add(
                    &self.epoll,
                    &fd,
                    EventData::new_u64(T_CLIENT | id),
                    EventFlags::IN | EventFlags::OUT | EventFlags::RDHUP | EventFlags::ET,
                );
                // The duplicate only served registration; the epoll entry
                // follows the open file, which the client still holds.
                drop(fd);
            }
            self.on_client(id, EventFlags::IN);
        }
    }

    fn drop_client(&mut self, id: u64) {
        if let Some(c) = self.control.as_mut() {
            if let Some(cl) = c.remove(id) {
                let _ = epoll::delete(&self.epoll, cl.fd());
            }
        }
    }

    fn on_client(&mut self, id: u64, flags: EventFlags) {
        let Some(c) = self.control.as_mut() else {
            return;
        };
        if flags.contains(EventFlags::OUT) && !c.flush(id) {
            self.drop_client(id);
            return;
        }
        if !flags.intersects(EventFlags::IN | EventFlags::RDHUP | EventFlags::HUP) {
            return;
        }
        match c.read(id) {
            Incoming::Closed => self.drop_client(id),
            Incoming::Nothing => {}
            Incoming::Request(req) => {
                let (reply, keep) = self.answer(id, &req);
                // Null: the reply comes later (a re-exec answers from the new image).
                if !reply.is_null() {
                    let done = self.control.as_mut().is_some_and(|c| {
                        c.send(id, &reply, !keep);
                        !c.flush(id)
                    });
                    // Answered and written: close it now, not a turn later.
                    if done {
                        self.drop_client(id);
                    }
                }
            }
        }
    }

    /// Answers one control request. Returns the reply and whether the
    /// connection stays open (log following).
    fn answer(&mut self, id: u64, req: &Value) -> (Value, bool) {
        let cmd = req.get("cmd").and_then(Value::as_str).unwrap_or("");
        let name = req.get("name").and_then(Value::as_str);
        let ok = |extra: Value| {
            let mut v = json!({"v": PROTOCOL_VERSION, "ok": true});
            if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
                o.extend(e);
            }
            v
        };
        let err = |m: String| json!({"v": PROTOCOL_VERSION, "ok": false, "error": m});
        let need_name = || name.ok_or_else(|| format!("'{cmd}' needs a service name"));
        let now = now_ms();
        match cmd {
            "status" => (ok(self.status_json()), false),
            "start" => match need_name().and_then(|n| self.sup.start(n).map(|m| (n, m))) {
                Ok((n, m)) => {
                    self.process();
                    (ok(json!({"message": format!("{n}: {m}")})), false)
                }
                Err(e) => (err(e), false),
            },
            "stop" | "restart" => {
                let r = need_name().and_then(|n| {
                    if cmd == "stop" {
                        self.sup.stop(n, now)
                    } else {
                        self.sup.restart(n, now)
                    }
                    .map(|a| (n, a))
                });
                match r {
                    Ok((n, actions)) => {
                        self.perform(actions);
                        (
                            ok(json!({"message": format!("{n}: {cmd} requested")})),
                            false,
                        )
                    }
                    Err(e) => (err(e), false),
                }
            }
            "logs" => {
                let n = match need_name() {
                    Ok(n) => n.to_string(),
                    Err(e) => return (err(e), false),
                };
                if !self.sup.services.contains_key(&n) {
                    return (err(format!("no such service \"{n}\"")), false);
                }
                let count = req.get("lines").and_then(Value::as_u64).unwrap_or(100) as usize;
                let follow = req.get("follow").and_then(Value::as_bool).unwrap_or(false);
                let lines = self
                    .log_ids
                    .get(&n)
                    .and_then(|i| self.logs.get(i))
                    .map(|l| l.ring.tail(count))
                    .unwrap_or_default();
                if follow {
                    if let Some(c) = self.control.as_mut() {
                        if let Some(cl) = c.clients.get_mut(&id) {
                            cl.follow = Some(n.clone());
                        }
                    }
                }
                (ok(json!({"service": n, "lines": lines})), follow)
            }
            "poweroff" | "reboot" | "halt" => {
                let power = match cmd {
                    "poweroff" => Power::Poweroff,
                    "reboot" => Power::Reboot,
                    _ => Power::Halt,
                };
                let code = req.get("code").and_then(Value::as_i64).map(|c| c as i32);
                self.begin_shutdown(power, code);
                (
                    ok(json!({"message": format!("{} in progress", power.name())})),
                    false,
                )
            }
            "reload" => {
                let only: Option<Vec<String>> = req
                    .get("modules")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|m| m.as_str().map(str::to_string))
                            .collect()
                    })
                    .filter(|v: &Vec<String>| !v.is_empty());
                let dry = req.get("dry_run").and_then(Value::as_bool).unwrap_or(false);
                let mut r = self.reload(only.as_deref(), dry, "ctl");
                if let Some(o) = r.as_object_mut() {
                    o.insert("v".into(), json!(PROTOCOL_VERSION));
                }
                self.process();
                (r, false)
            }
            "eval" => {
                let Some(code) = req.get("code").and_then(Value::as_str) else {
                    return (err("'eval' needs \"code\"".into()), false);
                };
                match self.rt.load_eval(code) {
                    Ok(f) => {
                        let (tid, step) = self.rt.start_task("ctl eval", f, ());
                        self.task_names.insert(tid, "ctl eval".into());
                        self.evals.insert(tid, id);
                        self.handle_step(tid, step);
                        // The reply is sent when the task ends (it may block).
                        (Value::Null, true)
                    }
                    Err(e) => (err(e.message), false),
                }
            }
            "reexec" => {
                let binary = req.get("binary").and_then(Value::as_str);
                match self.request_reexec(id, binary) {
                    Ok(()) => (Value::Null, true),
                    Err(e) => (
                        err(format!("re-exec refused, this image carries on: {e}")),
                        false,
                    ),
                }
            }
            "fault" => match self.fault(req) {
                Ok(()) => (ok(json!({})), false),
                Err(e) => (err(e), false),
            },
            "" => (err("request has no \"cmd\"".into()), false),
            other => (err(format!("unknown command \"{other}\"")), false),
        }
    }

    fn status_json(&self) -> Value {
        let now = now_ms();
        let services: Vec<Value> = self
            .sup
            .order()
            .iter()
            .filter_map(|n| self.sup.services.get(n))
            .map(|s| {
                let (since, detail) = match &s.state {
                    State::Running { since, .. } => (Some(now.saturating_sub(*since)), None),
                    State::Backoff { until } => (
                        None,
                        Some(format!("restart in {} ms", until.saturating_sub(now))),
                    ),
                    State::Failed { reason } => (None, Some(reason.clone())),
                    _ => (None, None),
                };
                let starting = matches!(s.state, State::Running { .. }) && !s.ready;
                json!({
                    "name": s.spec.name,
                    "state": if starting { "starting" } else { s.state.name() },
                    "ready": s.ready && matches!(s.state, State::Running { .. }),
                    "status_text": s.status_text,
                    "pid": s.state.pid().filter(|p| *p != 0),
                    "restarts": s.restarts,
                    "manual_stop": s.manual_stop,
                    "enabled": s.spec.enabled,
                    "needs_restart": s.pending.is_some(),
                    "uptime_ms": since,
                    "detail": detail,
                    "last_exit": s.last_exit.map(|e| e.to_string()),
                    "last_exit_code": s.last_exit.map(|e| e.code()),
                    "last_exit_reason": s.last_exit_reason,
                    "location": s.spec.location,
                    "env": self.env_names.get(&s.spec.name),
                    "health": health::status(s, now),
                    "cgroup": self.cgroup_json(&s.spec.name),
                    "timer": self.timers.json(&s.spec.name),
                    "sockets": self.sockets_json(&s.spec.name),
                })
            })
            .collect();
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "mode": self.opts.mode.name(),
            "pid": rustix::process::getpid().as_raw_nonzero().get(),
            "generation": self.generation,
            "uptime_s": uptime(),
            "ready": self.ready,
            "shutting_down": self.shutdown.is_some(),
            "config_dir": self.opts.config_dir.display().to_string(),
            "services": services,
            "cgroups": self.cgroups_json(),
            "memory": {"binary_page_drops": self.pages.drops()},
            "errors": self.config_errors.iter().map(|e| e.message.clone()).collect::<Vec<_>>(),
            "lua_errors": self.lua_errors.iter().cloned().collect::<Vec<_>>(),
            "tasks": self.tasks_json(),
            "orphans_reaped": self.orphans,
            "network": {"declared": self.net.active, "owned_links": self.net.owned, "applied": self.net.applied, "dhcp": self.dhcp_status()},
            "transactions": self.transactions,
            "reexecs": self.reexecs,
            "states": self.rt.live_states().into_iter().map(|(m, j, v)| (m, json!({"version": v, "data": j}))).collect::<serde_json::Map<String, Value>>(),
            "last_reload": self.last_reload,
            "modules": self.modules.iter().map(|(n, m)| json!({"name": n, "hash": format!("{:016x}", m.hash)})).collect::<Vec<_>>(),
            "lua_memory": self.rt.used_memory(),
            "console_dropped": self.console.borrow().dropped,
            "boot": self.boot,
        })
    }

    fn begin_shutdown(&mut self, power: Power, code: Option<i32>) {
        if let Some(s) = self.shutdown.as_mut() {
            if code.is_some() {
                s.code = code;
            }
            return;
        }
        self.log(&format!("shutting down to {}", power.name()));
        self.dhcp_release_all();
        self.sup.begin_shutdown();
        self.shutdown = Some(Shutdown {
            power,
            phase: Phase::Services,
            code,
            started: now_ms(),
        });
    }

    fn progress_shutdown(&mut self) {
        // Each phase may complete at once (nothing left to wait for).
        for _ in 0..4 {
            let before = self.shutdown.as_ref().map(|s| s.phase);
            self.shutdown_phase();
            if self.shutdown.as_ref().map(|s| s.phase) == before {
                break;
            }
        }
    }

    fn shutdown_phase(&mut self) {
        let now = now_ms();
        let Some(phase) = self.shutdown.as_ref().map(|s| s.phase) else {
            return;
        };
        let next = match phase {
            Phase::Services if self.sup.all_down() => {
                self.log("all services stopped; sending TERM to remaining processes");
                self.reap();
                shutdown::signal_all(self.opts.mode, Signal::TERM);
                shutdown::signal_all(self.opts.mode, Signal::CONT);
                Phase::Term {
                    until: now + GRACE_MS,
                }
            }
            Phase::Term { until } => {
                self.reap();
                if !self.any_children() {
                    Phase::Done
                } else if now >= until {
                    self.log("sending KILL to remaining processes");
                    shutdown::signal_all(self.opts.mode, Signal::KILL);
                    Phase::Kill {
                        until: now + GRACE_MS,
                    }
                } else {
                    phase
                }
            }
            Phase::Kill { until } => {
                self.reap();
                if !self.any_children() || now >= until {
                    Phase::Done
                } else {
                    phase
                }
            }
            other => other,
        };
        if let Some(s) = self.shutdown.as_mut() {
            s.phase = next;
        }
    }

    fn any_children(&self) -> bool {
        if self.opts.mode == Mode::User {
            !shutdown::children().is_empty()
        } else {
            self.children_left
        }
    }

    /// The last steps: flush logs, sync, unmount, reboot(2) or exit.
    fn finish(&mut self) -> ! {
        let ids: Vec<u32> = self.logs.keys().copied().collect();
        for id in ids {
            self.on_log(id);
            if let Some(l) = self.logs.get_mut(&id) {
                if let Some(last) = l.finish() {
                    let name = l.service.clone();
                    log_line(&self.console, &format!("{name}: {last}"));
                }
            }
        }
        let (power, explicit, started) = self
            .shutdown
            .as_ref()
            .map_or((Power::Poweroff, None, now_ms()), |s| {
                (s.power, s.code, s.started)
            });
        // The exit code (container, sandbox, user modes): the one asked for,
        // else the main service's (tini and docker pass the main process's
        // status on), else 0.
        let main_code = self
            .sup
            .services
            .values()
            .find(|s| s.spec.main)
            .and_then(|s| s.last_exit)
            .map(|e| e.code());
        let code = explicit.or(main_code).unwrap_or(0);
        if let Some(c) = &self.control {
            let _ = std::fs::remove_file(&c.path);
        }
        rustix::fs::sync();
        if self.opts.mode.exits() {
            self.log(&format!(
                "shutdown complete in {} ms; exiting with code {code}",
                now_ms().saturating_sub(started)
            ));
            self.console.borrow_mut().drain(2000);
            std::process::exit(code);
        }
        for line in shutdown::unmount_all() {
            self.log(&line);
        }
        rustix::fs::sync();
        self.log(&format!(
            "shutdown complete in {} ms; {}",
            now_ms().saturating_sub(started),
            power.name()
        ));
        self.console.borrow_mut().drain(2000);
        let why = shutdown::reboot(power);
        self.log(&why);
        self.console.borrow_mut().drain(2000);
        // reboot(2) failed: PID 1 must not exit. Wait forever.
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }

    /// A state the loop cannot go on from: a rescue shell, else power off.
    fn fatal(&mut self, why: &str) -> ! {
        self.log(&format!("fatal: {why}"));
        self.console.borrow_mut().drain(1000);
        if self.opts.mode == Mode::System {
            crate::rescue(why);
        }
        rustix::fs::sync();
        std::process::exit(70)
    }
}
