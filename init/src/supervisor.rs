//! The supervisor: a pure state machine over services.
//!
//! Owns: each service's current state and desired state (wanted or not), the
//! restart policy with exponential backoff and a burst limit, dependency
//! gating at start and reverse-dependency order at shutdown. It performs
//! nothing: it returns [`Action`]s (spawn, signal) that the event loop
//! carries out, and it is told of spawns and exits. Time is passed in as
//! milliseconds of a monotonic clock, so every rule is unit-testable.

use std::collections::{BTreeMap, VecDeque};

use moonlit_config::cgroup_limits::Setting;
use moonlit_config::plan::{OnChange, Plan, Readiness, RestartPolicy, ServiceSpec};
use moonlit_config::spawn::ExitStatus;

mod health;
pub use health::{Health, HealthState};

/// Milliseconds on the monotonic clock.
pub type Ms = u64;

/// Where a service is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum State {
    /// No process and none wanted yet (or stopped by hand / at shutdown).
    Stopped,
    /// Wanted, waiting for its dependencies.
    Waiting,
    /// Asked the loop to spawn it; no pid yet.
    Starting,
    Running {
        pid: u32,
        since: Ms,
    },
    /// Stop signal sent; SIGKILL at `deadline`.
    Stopping {
        pid: u32,
        deadline: Ms,
        killed: bool,
        then_start: bool,
    },
    /// Waiting out a restart delay.
    Backoff {
        until: Ms,
    },
    /// Ran and ended, not to be restarted (oneshot done, or policy says no).
    Exited {
        status: ExitStatus,
    },
    /// Gave up: crash loop, spawn failure loop, or a required service failed.
    Failed {
        reason: String,
    },
}

impl State {
    pub fn pid(&self) -> Option<u32> {
        match self {
            State::Running { pid, .. } | State::Stopping { pid, .. } => Some(*pid),
            _ => None,
        }
    }
    pub fn name(&self) -> &'static str {
        match self {
            State::Stopped => "stopped",
            State::Waiting => "waiting",
            State::Starting => "starting",
            State::Running { .. } => "running",
            State::Stopping { .. } => "stopping",
            State::Backoff { .. } => "backoff",
            State::Exited { .. } => "exited",
            State::Failed { .. } => "failed",
        }
    }
}

/// What the loop must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Spawn(String),
    /// Signal the service's process group (it leads its own session).
    Signal {
        service: String,
        pid: u32,
        sig: i32,
    },
    Log(String),
    /// The service ended (its cgroup, if it has one, is empty): run its
    /// `on_exit`. `reason` says why when the status does not ("oom").
    Ended {
        service: String,
        status: ExitStatus,
        reason: Option<String>,
    },
    /// Write these cgroup limits to the running service's cgroup (a reload
    /// changed them: same processes, new limits).
    CgroupLimits {
        service: String,
        settings: Vec<Setting>,
    },
    /// A `type = "forking"` service's process ended: find what it left (its
    /// `pid_file`, what is in its cgroup) and tell [`Supervisor::adopted`].
    Adopt {
        service: String,
        status: ExitStatus,
    },
}

/// One supervised service.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Service {
    pub spec: ServiceSpec,
    /// A spec to use from the next start on (`on_change = "defer"`).
    pub pending: Option<ServiceSpec>,
    pub state: State,
    /// Stopped by hand: never restarted until started by hand.
    pub manual_stop: bool,
    /// Restarts done by the supervisor since boot.
    pub restarts: u32,
    /// Consecutive failed runs, for the backoff.
    pub consecutive: u32,
    /// When recent restarts happened, for the burst limit.
    recent: VecDeque<Ms>,
    pub last_exit: Option<ExitStatus>,
    pub last_delay: Option<Ms>,
    /// No longer declared: stopped with its own stop procedure, then dropped.
    pub removing: bool,
    /// The running process said it is ready (or needs not say).
    pub ready: bool,
    /// Not ready by then: killed (a failed start).
    pub ready_deadline: Option<Ms>,
    /// Its last `STATUS=` line (sd_notify).
    pub status_text: Option<String>,
    /// Its health checks' record (see `health.rs`).
    pub health: HealthState,
    /// It runs in its own cgroup (told by the loop at each spawn).
    pub cgroup: bool,
    /// Its cgroup still holds a process (told by the loop).
    pub populated: bool,
    /// The first pid ended but the cgroup still holds processes: the end
    /// counts once the cgroup is empty, with this status.
    pub main_gone: Option<ExitStatus>,
    /// A forking service's starter exited 0: the service is the daemon.
    pub forked: bool,
    /// The loop saw an OOM kill in its cgroup during this run.
    pub oom: bool,
    /// Why the last run ended, when the status does not say ("oom").
    pub last_exit_reason: Option<String>,
    /// An on-demand service was triggered: the next step starts it.
    pub triggered: bool,
}

impl moonlit_net::json_decode::Decode for Service {
    fn decode(v: &moonlit_net::json_decode::Value) -> moonlit_net::json_decode::Result<Self> {
        let o = moonlit_net::json_decode::Obj::of(v, "a service")?;
        Ok(Service {
            spec: o.get("spec")?,
            pending: o.get("pending")?,
            state: o.get("state")?,
            manual_stop: o.get("manual_stop")?,
            restarts: o.get("restarts")?,
            consecutive: o.get("consecutive")?,
            recent: o.or_default("recent")?,
            last_exit: o.get("last_exit")?,
            last_delay: o.get("last_delay")?,
            removing: o.or_default("removing")?,
            ready: o.or_else("ready", || true)?,
            ready_deadline: o.get("ready_deadline")?,
            status_text: o.get("status_text")?,
            health: o.or_default("health")?,
            cgroup: o.or_default("cgroup")?,
            populated: o.or_default("populated")?,
            main_gone: o.get("main_gone")?,
            forked: o.or_default("forked")?,
            oom: o.or_default("oom")?,
            last_exit_reason: o.get("last_exit_reason")?,
            triggered: o.or_default("triggered")?,
        })
    }
}
moonlit_net::deserialize_by_decode!(Service);

/// What a reload did (or, dry, would do) to one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Same spec: nothing happens, same pid.
    Unchanged,
    /// Supervisor fields only, applied live (same pid); or a new spec for a
    /// service that is not running.
    Updated,
    /// Process-defining fields changed: stopped the old way, started anew.
    Restarted,
    /// Process-defining fields changed, `on_change = "reload"`: signalled.
    Reloaded,
    /// Process-defining fields changed, `on_change = "defer"`: next start.
    Deferred,
    Added,
    Removed,
}

impl Service {
    fn new(spec: ServiceSpec) -> Service {
        Service {
            spec,
            pending: None,
            state: State::Stopped,
            manual_stop: false,
            restarts: 0,
            consecutive: 0,
            recent: VecDeque::new(),
            last_exit: None,
            last_delay: None,
            removing: false,
            ready: true,
            ready_deadline: None,
            status_text: None,
            health: HealthState::default(),
            cgroup: false,
            populated: false,
            main_gone: None,
            forked: false,
            oom: false,
            last_exit_reason: None,
            triggered: false,
        }
    }
    /// Sends its (current spec's) stop signal and waits `stop_timeout` for
    /// `pid` to go; `then_start` starts it again afterwards.
    fn begin_stop(&mut self, name: &str, pid: u32, now: Ms, then_start: bool) -> Action {
        self.state = State::Stopping {
            pid,
            deadline: now + self.spec.stop_timeout.as_millis() as u64,
            killed: false,
            then_start,
        };
        Action::Signal {
            service: name.to_string(),
            pid,
            sig: self.spec.stop_signal,
        }
    }

    fn wanted(&self, shutting_down: bool) -> bool {
        self.spec.enabled && !self.manual_stop && !shutting_down
    }
    /// Up for dependents: running (long-running) or finished well (oneshot).
    pub(crate) fn up(&self) -> bool {
        if self.activated() {
            return true;
        }
        match &self.state {
            State::Running { .. } => !self.spec.oneshot && self.ready,
            State::Exited { status } => self.spec.oneshot && status.success(),
            _ => false,
        }
    }
    /// Socket-activated and reachable: its sockets are bound by the init
    /// from boot on, so a dependent may start at once and connect (the
    /// connection waits in the backlog until the service accepts it), as
    /// with systemd. Not when it failed for good, or ran and ended without
    /// being activatable again (not lazy, not accept).
    fn activated(&self) -> bool {
        let a = &self.spec.activation;
        !a.sockets.is_empty()
            && self.spec.enabled
            && !self.manual_stop
            && match self.state {
                State::Failed { .. } => false,
                State::Exited { .. } => self.spec.on_demand,
                _ => true,
            }
    }
    /// Done starting, whichever way: `after` ordering only waits for this.
    fn settled(&self) -> bool {
        if self.activated() {
            return true;
        }
        match &self.state {
            State::Running { .. } => !self.spec.oneshot && self.ready,
            State::Exited { .. } | State::Failed { .. } => true,
            State::Stopped | State::Waiting => {
                !self.spec.enabled || self.manual_stop || (self.spec.on_demand && !self.triggered)
            }
            _ => false,
        }
    }
}

/// The restart delay after `n` consecutive failed runs: the first restart is
/// immediate, then `initial` doubling up to `max`.
pub fn backoff_delay(spec: &ServiceSpec, n: u32) -> Ms {
    if n <= 1 {
        return 0;
    }
    let initial = spec.backoff.initial.as_millis() as u64;
    let max = spec.backoff.max.as_millis() as u64;
    let shift = (n - 2).min(40);
    initial.saturating_mul(1u64 << shift).min(max)
}

/// All services.
#[derive(Debug, Default)]
pub struct Supervisor {
    pub services: BTreeMap<String, Service>,
    order: Vec<String>,
    pub shutting_down: bool,
    /// Set when a `main` service ended for good: the system should stop with this code.
    pub main_exit: Option<i32>,
    /// While true (boot script running), nothing is started.
    pub hold: bool,
}

impl Supervisor {
    pub fn new(plan: &Plan) -> Supervisor {
        let mut s = Supervisor::default();
        for (n, spec) in &plan.services {
            s.services.insert(n.clone(), Service::new(spec.clone()));
        }
        s.order = plan.start_order();
        s
    }

    /// Every service as it is (for a re-exec handover).
    pub fn snapshot(&self) -> Vec<Service> {
        self.services.values().cloned().collect()
    }

    /// Supervision taken over from a previous image: the services with
    /// their states and pids, in the order of `plan` (their old specs are
    /// compared with the re-read configuration by a following `apply`).
    pub fn restore(services: Vec<Service>, plan: &Plan) -> Supervisor {
        let mut s = Supervisor::default();
        for svc in services {
            s.services.insert(svc.spec.name.clone(), svc);
        }
        s.order = plan.start_order();
        for n in s.services.keys() {
            if !s.order.contains(n) {
                s.order.push(n.clone());
            }
        }
        s
    }

    /// Service names in dependency order.
    pub fn order(&self) -> &[String] {
        &self.order
    }

    pub fn by_pid(&self, pid: u32) -> Option<&str> {
        self.services
            .iter()
            .find(|(_, s)| s.state.pid() == Some(pid) && s.main_gone.is_none())
            .map(|(n, _)| n.as_str())
    }

    /// The earliest moment `tick` has something to do.
    pub fn next_deadline(&self) -> Option<Ms> {
        self.services
            .values()
            .filter_map(|s| match s.state {
                State::Backoff { until } => Some(until),
                State::Stopping { deadline, .. } => Some(deadline),
                State::Running { .. } if !s.ready => s.ready_deadline,
                _ => None,
            })
            .min()
    }

    /// Advances every service as far as it can go now.
    pub fn step(&mut self, now: Ms) -> Vec<Action> {
        let mut actions = Vec::new();
        let gone: Vec<String> = self
            .services
            .iter()
            .filter(|(_, s)| s.removing && s.state.pid().is_none() && s.state != State::Starting)
            .map(|(n, _)| n.clone())
            .collect();
        for n in gone {
            self.services.remove(&n);
            self.order.retain(|o| o != &n);
            actions.push(Action::Log(format!("{n}: removed")));
        }
        // Deadlines.
        for (name, s) in self.services.iter_mut() {
            match s.state.clone() {
                State::Backoff { until } if until <= now => s.state = State::Stopped,
                State::Running { pid, .. }
                    if !s.ready && s.ready_deadline.is_some_and(|d| d <= now) =>
                {
                    s.ready_deadline = None;
                    actions.push(Action::Log(format!(
                        "{name}: not ready within {} s, killing it (a failed start)",
                        s.spec.ready_timeout.as_secs_f64()
                    )));
                    actions.push(Action::Signal {
                        service: name.clone(),
                        pid,
                        sig: 9,
                    });
                }
                State::Stopping {
                    pid,
                    deadline,
                    killed,
                    then_start,
                } if deadline <= now && !killed => {
                    actions.push(Action::Log(format!(
                        "{name}: still running {} ms after its stop signal, sending KILL",
                        s.spec.stop_timeout.as_millis()
                    )));
                    actions.push(Action::Signal {
                        service: name.clone(),
                        pid,
                        sig: 9,
                    });
                    s.state = State::Stopping {
                        pid,
                        deadline: now + 5000,
                        killed: true,
                        then_start,
                    };
                }
                _ => {}
            }
        }
        if self.shutting_down {
            self.step_shutdown(now, &mut actions);
            return actions;
        }
        if self.hold {
            return actions;
        }
        // Starts, in dependency order, so one pass settles a chain of oneshots
        // only as far as their exits allow.
        for name in self.order.clone() {
            let Some(s) = self.services.get(&name) else {
                continue;
            };
            if !matches!(s.state, State::Stopped | State::Waiting) || !s.wanted(false) {
                continue;
            }
            // On demand: only once triggered (a timer, a connection).
            if s.spec.on_demand && !s.triggered {
                continue;
            }
            let mut blocked = None;
            let mut failed_dep = None;
            for d in &s.spec.requires {
                match self.services.get(d) {
                    Some(dep) if dep.up() => {}
                    Some(dep)
                        if matches!(dep.state, State::Failed { .. })
                            || (matches!(dep.state, State::Exited { .. }) && !dep.up()) =>
                    {
                        failed_dep = Some(d.clone())
                    }
                    _ => blocked = Some(d.clone()),
                }
            }
            for d in &s.spec.after {
                if !self.services.get(d).map(Service::settled).unwrap_or(true) {
                    blocked = Some(d.clone());
                }
            }
            let s = self.services.get_mut(&name).expect("listed");
            if let Some(d) = failed_dep {
                let reason = format!("required service \"{d}\" failed");
                actions.push(Action::Log(format!("{name}: not started: {reason}")));
                s.state = State::Failed { reason };
            } else if blocked.is_some() {
                s.state = State::Waiting;
            } else {
                if let Some(p) = s.pending.take() {
                    s.spec = p;
                }
                s.state = State::Starting;
                s.triggered = false;
                actions.push(Action::Spawn(name.clone()));
            }
        }
        actions
    }

    fn step_shutdown(&mut self, now: Ms, actions: &mut Vec<Action>) {
        // A service stops only when nothing still running depends on it.
        let names: Vec<String> = self.order.iter().rev().cloned().collect();
        for name in names {
            let pid = match self.services.get(&name).map(|s| s.state.clone()) {
                Some(State::Running { pid, .. }) => pid,
                Some(State::Waiting | State::Backoff { .. }) => {
                    if let Some(s) = self.services.get_mut(&name) {
                        s.state = State::Stopped;
                    }
                    continue;
                }
                _ => continue,
            };
            let has_live_dependent = self.services.values().any(|o| {
                o.spec.deps().any(|d| d == &name)
                    && matches!(
                        o.state,
                        State::Running { .. } | State::Stopping { .. } | State::Starting
                    )
            });
            if has_live_dependent {
                continue;
            }
            let s = self.services.get_mut(&name).expect("listed");
            actions.push(s.begin_stop(&name, pid, now, false));
        }
    }

    /// Every service process has ended.
    pub fn all_down(&self) -> bool {
        self.services
            .values()
            .all(|s| s.state.pid().is_none() && s.state != State::Starting)
    }

    /// The loop spawned `name` (or failed to).
    /// A failure carries the exit status a shell would give (127, 126).
    pub fn spawned(
        &mut self,
        name: &str,
        result: Result<u32, (String, i32)>,
        now: Ms,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        let Some(s) = self.services.get_mut(name) else {
            return actions;
        };
        match result {
            Ok(pid) => {
                s.state = State::Running { pid, since: now };
                s.forked = false;
                s.oom = false;
                // A forking service is ready once its starter exits 0.
                s.ready = s.spec.readiness == Readiness::Started && !s.spec.forking;
                s.ready_deadline =
                    (!s.ready).then(|| now + s.spec.ready_timeout.as_millis() as u64);
                s.status_text = None;
                s.health.start_over(now);
            }
            Err((e, code)) => {
                actions.push(Action::Log(format!("{name}: cannot start: {e}")));
                s.state = State::Running { pid: 0, since: now };
                actions.extend(self.ended(name, ExitStatus::Exited(code), now));
            }
        }
        actions
    }

    /// A pid was reaped. Returns `None` if it belongs to no service.
    pub fn exited(&mut self, pid: u32, status: ExitStatus, now: Ms) -> Option<Vec<Action>> {
        let name = self.by_pid(pid)?.to_string();
        Some(self.ended(&name, status, now))
    }

    /// The loop placed the service's new process in its own cgroup (or not).
    pub fn in_cgroup(&mut self, name: &str, cgroup: bool) {
        if let Some(s) = self.services.get_mut(name) {
            s.cgroup = cgroup;
            s.populated = cgroup;
            s.main_gone = None;
            s.forked = false;
        }
    }

    /// The loop saw an OOM kill in the service's cgroup: its end is
    /// reported as one.
    pub fn note_oom(&mut self, name: &str) {
        if let Some(s) = self.services.get_mut(name) {
            s.oom = true;
        }
    }

    /// What the loop found after a forking service's process ended:
    /// `Some(pid)`, the daemon to follow (its `pid_file`, or a process
    /// still in its cgroup); `None`, nothing is left and the service ended
    /// with `status`.
    pub fn adopted(
        &mut self,
        name: &str,
        pid: Option<u32>,
        status: ExitStatus,
        now: Ms,
    ) -> Vec<Action> {
        let Some(s) = self.services.get_mut(name) else {
            return Vec::new();
        };
        match (pid, &mut s.state) {
            (Some(p), State::Running { pid, .. } | State::Stopping { pid, .. }) => {
                let first = *pid != p;
                *pid = p;
                if first {
                    return vec![Action::Log(format!("{name}: following pid {p}"))];
                }
                Vec::new()
            }
            (Some(_), _) => Vec::new(),
            (None, _) => {
                s.populated = false;
                self.finish(name, status, now)
            }
        }
    }

    /// The loop read the service's `cgroup.events`: `populated` or not. An
    /// emptied cgroup whose first pid already ended completes that end.
    pub fn cgroup_populated(&mut self, name: &str, populated: bool, now: Ms) -> Vec<Action> {
        let Some(s) = self.services.get_mut(name) else {
            return Vec::new();
        };
        s.populated = populated;
        if populated {
            return Vec::new();
        }
        match s.main_gone.take() {
            Some(status) => self.ended(name, status, now),
            None => Vec::new(),
        }
    }

    fn ended(&mut self, name: &str, status: ExitStatus, now: Ms) -> Vec<Action> {
        let mut actions = Vec::new();
        let Some(s) = self.services.get_mut(name) else {
            return actions;
        };
        let live =
            matches!(s.state, State::Running { pid, .. } | State::Stopping { pid, .. } if pid != 0);
        // A forking service: its starter exiting 0 means the daemon runs;
        // after that, a process of it ending is followed by looking for
        // what is left (the daemon's pid may change: a double fork).
        if s.spec.forking && live && (s.forked || status.success()) {
            if !s.forked {
                s.forked = true;
                if s.spec.readiness == Readiness::Started {
                    s.ready = true;
                    s.ready_deadline = None;
                    actions.push(Action::Log(format!("{name}: ready (its starter exited 0)")));
                }
            }
            actions.push(Action::Adopt {
                service: name.to_string(),
                status,
            });
            return actions;
        }
        // Its cgroup still holds processes: the service is what is in the
        // cgroup, so it has not ended yet. A stop goes on (the timeout
        // kills the whole cgroup); a service whose first pid ended on its
        // own has what it left behind killed.
        if s.cgroup && s.populated && s.main_gone.is_none() {
            if let State::Running { pid, .. } | State::Stopping { pid, .. } = s.state {
                s.main_gone = Some(status);
                if matches!(s.state, State::Running { .. }) {
                    actions.push(Action::Log(format!(
                        "{name}: main process {status}; killing what is left in its cgroup"
                    )));
                    actions.push(Action::Signal {
                        service: name.to_string(),
                        pid,
                        sig: 9,
                    });
                } else {
                    actions.push(Action::Log(format!(
                        "{name}: main process {status}; waiting for its cgroup to empty"
                    )));
                }
                return actions;
            }
        }
        self.finish(name, status, now)
    }

    /// The service has ended for good with `status` (nothing of it is
    /// left): stopped, exited, or restarted by its policy.
    fn finish(&mut self, name: &str, status: ExitStatus, now: Ms) -> Vec<Action> {
        let Some(s) = self.services.get_mut(name) else {
            return Vec::new();
        };
        s.forked = false;
        s.last_exit_reason = std::mem::take(&mut s.oom).then(|| "oom".to_string());
        let reason = s.last_exit_reason.clone();
        let shown = match &reason {
            Some(r) if r == "oom" => format!("{status} (OOM-killed: its cgroup hit memory_max)"),
            _ => status.to_string(),
        };
        let mut actions = self.settle_end(name, status, &shown, now);
        actions.push(Action::Ended {
            service: name.to_string(),
            status,
            reason,
        });
        actions
    }

    /// [`Self::finish`]'s decision: stopped, exited, restarted or failed.
    fn settle_end(&mut self, name: &str, status: ExitStatus, shown: &str, now: Ms) -> Vec<Action> {
        let mut actions = Vec::new();
        let shutting_down = self.shutting_down;
        let Some(s) = self.services.get_mut(name) else {
            return actions;
        };
        s.last_exit = Some(status);
        let state = s.state.clone();
        match state {
            State::Stopping { then_start, .. } => {
                actions.push(Action::Log(format!("{name}: stopped ({shown})")));
                s.state = State::Stopped;
                if then_start && !shutting_down {
                    s.manual_stop = false;
                }
            }
            State::Running { since, .. } => {
                let ran = now.saturating_sub(since);
                let again = !shutting_down
                    && s.wanted(false)
                    && match s.spec.restart {
                        RestartPolicy::Always => !(s.spec.oneshot && status.success()),
                        RestartPolicy::OnFailure => !status.success(),
                        RestartPolicy::Never => false,
                    };
                if !again {
                    actions.push(Action::Log(format!("{name}: {shown}")));
                    s.state = if shutting_down {
                        State::Stopped
                    } else {
                        State::Exited { status }
                    };
                    if s.spec.main && !shutting_down {
                        self.main_exit = Some(status.code());
                    }
                    return actions;
                }
                if ran >= s.spec.backoff.reset_after.as_millis() as u64 {
                    s.consecutive = 0;
                }
                s.consecutive += 1;
                let window = s.spec.burst.interval.as_millis() as u64;
                while s
                    .recent
                    .front()
                    .is_some_and(|t| now.saturating_sub(*t) > window)
                {
                    s.recent.pop_front();
                }
                if s.recent.len() as u32 >= s.spec.burst.count {
                    let reason = format!(
                        "restarted {} times within {} s, giving up ({shown})",
                        s.recent.len(),
                        s.spec.burst.interval.as_secs_f64()
                    );
                    actions.push(Action::Log(format!("{name}: failed: {reason}")));
                    s.state = State::Failed { reason };
                    if s.spec.main {
                        self.main_exit = Some(status.code());
                    }
                    return actions;
                }
                s.recent.push_back(now);
                s.restarts += 1;
                let delay = backoff_delay(&s.spec, s.consecutive);
                s.last_delay = Some(delay);
                actions.push(Action::Log(format!(
                    "{name}: {shown}, restart #{} in {:.3} s",
                    s.restarts,
                    delay as f64 / 1000.0
                )));
                // Its restart policy is a trigger of its own.
                s.triggered = s.spec.on_demand;
                s.state = if delay == 0 {
                    State::Stopped
                } else {
                    State::Backoff { until: now + delay }
                };
            }
            _ => {}
        }
        actions
    }

    /// The service said it is ready (or its probe succeeded).
    pub fn mark_ready(&mut self, name: &str) -> Option<Action> {
        let s = self.services.get_mut(name)?;
        if s.ready || !matches!(s.state, State::Running { .. }) {
            return None;
        }
        s.ready = true;
        s.ready_deadline = None;
        Some(Action::Log(format!("{name}: ready")))
    }

    /// Running services still waiting to become ready, with how.
    pub fn not_ready(&self) -> Vec<(String, Readiness)> {
        self.services
            .iter()
            .filter(|(_, s)| !s.ready && matches!(s.state, State::Running { pid, .. } if pid != 0))
            .map(|(n, s)| (n.clone(), s.spec.readiness.clone()))
            .collect()
    }

    /// `ctl start`: clears a manual stop or a failure and starts it (and what it requires).
    pub fn start(&mut self, name: &str) -> Result<&'static str, String> {
        if self.shutting_down {
            return Err("the system is shutting down".into());
        }
        let mut todo = vec![name.to_string()];
        let mut first = true;
        let mut outcome = "starting";
        while let Some(n) = todo.pop() {
            let s = self
                .services
                .get_mut(&n)
                .ok_or_else(|| format!("no such service \"{n}\""))?;
            s.manual_stop = false;
            // An `accept = true` service is never started as a whole: a
            // start only lets its sockets be watched again.
            s.triggered |= s.spec.on_demand && !s.spec.activation.accept;
            if first {
                s.spec.enabled = true;
            }
            match s.state {
                State::Running { .. } | State::Starting => {
                    if first {
                        outcome = "already running";
                    }
                }
                State::Stopping {
                    ref mut then_start, ..
                } => *then_start = true,
                State::Exited { .. } | State::Failed { .. } | State::Backoff { .. } => {
                    s.state = State::Stopped;
                    s.consecutive = 0;
                    s.recent.clear();
                }
                State::Stopped | State::Waiting => {}
            }
            todo.extend(s.spec.requires.iter().cloned());
            first = false;
        }
        Ok(outcome)
    }

    /// Something an on-demand service waits for happened (its timer, a
    /// connection): it starts at the next step unless it runs already (a
    /// run still going is not started twice).
    pub fn trigger(&mut self, name: &str) -> Result<&'static str, String> {
        if self.shutting_down {
            return Err("the system is shutting down".into());
        }
        let s = self
            .services
            .get_mut(name)
            .ok_or_else(|| format!("no such service \"{name}\""))?;
        if !s.wanted(false) {
            return Ok("not wanted (disabled or stopped by hand)");
        }
        match s.state {
            State::Running { .. } | State::Starting | State::Stopping { .. } => {
                Ok("already running")
            }
            State::Backoff { .. } => Ok("waiting to restart"),
            State::Waiting => {
                s.triggered = true;
                Ok("waiting for its dependencies")
            }
            State::Stopped | State::Exited { .. } | State::Failed { .. } => {
                s.state = State::Stopped;
                s.triggered = true;
                Ok("starting")
            }
        }
    }

    /// `ctl stop`: stops it and keeps it stopped; what requires it stops too.
    pub fn stop(&mut self, name: &str, now: Ms) -> Result<Vec<Action>, String> {
        if !self.services.contains_key(name) {
            return Err(format!("no such service \"{name}\""));
        }
        let mut actions = Vec::new();
        let dependents: Vec<String> = self
            .services
            .iter()
            .filter(|(_, s)| s.spec.requires.iter().any(|d| d == name))
            .map(|(n, _)| n.clone())
            .collect();
        for d in dependents {
            if self.services[&d].state.pid().is_some() {
                actions.extend(self.stop_one(&d, now, false));
                actions.push(Action::Log(format!(
                    "{d}: stopping because it requires \"{name}\""
                )));
            }
        }
        actions.extend(self.stop_one(name, now, true));
        Ok(actions)
    }

    fn stop_one(&mut self, name: &str, now: Ms, manual: bool) -> Vec<Action> {
        let mut actions = Vec::new();
        let Some(s) = self.services.get_mut(name) else {
            return actions;
        };
        if manual {
            s.manual_stop = true;
        }
        match s.state {
            State::Running { pid, .. } if pid != 0 => {
                actions.push(s.begin_stop(name, pid, now, false))
            }
            State::Stopping {
                ref mut then_start, ..
            } => *then_start = false,
            State::Backoff { .. }
            | State::Waiting
            | State::Failed { .. }
            | State::Exited { .. } => s.state = State::Stopped,
            _ => {}
        }
        actions
    }

    /// `ctl restart`: stop (if running) then start.
    pub fn restart(&mut self, name: &str, now: Ms) -> Result<Vec<Action>, String> {
        let s = self
            .services
            .get_mut(name)
            .ok_or_else(|| format!("no such service \"{name}\""))?;
        s.manual_stop = false;
        s.spec.enabled = true;
        match s.state {
            State::Running { pid, .. } if pid != 0 => Ok(vec![s.begin_stop(name, pid, now, true)]),
            _ => {
                self.start(name)?;
                Ok(Vec::new())
            }
        }
    }

    /// What applying `plan` would do to each service.
    pub fn diff(&self, plan: &Plan) -> BTreeMap<String, Outcome> {
        let mut out = BTreeMap::new();
        for (name, new) in &plan.services {
            let o = match self.services.get(name) {
                None => Outcome::Added,
                Some(s) => Self::classify(s, new),
            };
            out.insert(name.clone(), o);
        }
        for name in self.services.keys() {
            if !plan.services.contains_key(name) {
                out.insert(name.clone(), Outcome::Removed);
            }
        }
        out
    }

    fn classify(s: &Service, new: &ServiceSpec) -> Outcome {
        let current = s.pending.as_ref().unwrap_or(&s.spec);
        if current.same_as(new) && !s.removing {
            return Outcome::Unchanged;
        }
        let running = matches!(s.state, State::Running { pid, .. } if pid != 0);
        if !s.spec.process_differs(new) || !running {
            return Outcome::Updated;
        }
        match new.on_change {
            OnChange::Restart => Outcome::Restarted,
            OnChange::Reload => Outcome::Reloaded,
            OnChange::Defer => Outcome::Deferred,
        }
    }

    /// Adopts a new plan (a committed reload): see [`Outcome`] for what
    /// happens to each service. Manual stops, restart counters and pids of
    /// unchanged services survive.
    pub fn apply(&mut self, plan: &Plan, now: Ms) -> (Vec<Action>, BTreeMap<String, Outcome>) {
        let outcomes = self.diff(plan);
        let mut actions = Vec::new();
        for (name, outcome) in &outcomes {
            let new = plan.services.get(name);
            match (outcome, new) {
                (Outcome::Added, Some(new)) => {
                    self.services
                        .insert(name.clone(), Service::new(new.clone()));
                }
                (Outcome::Removed, _) => {
                    actions.extend(self.stop_one(name, now, true));
                    if let Some(s) = self.services.get_mut(name) {
                        s.removing = true;
                    }
                }
                (_, Some(new)) => {
                    let Some(s) = self.services.get_mut(name) else {
                        continue;
                    };
                    s.removing = false;
                    match outcome {
                        Outcome::Unchanged => {
                            // Possibly moved to another file: only the location changed.
                            s.spec.location.clone_from(&new.location);
                            if let Some(p) = s.pending.as_mut() {
                                p.location.clone_from(&new.location);
                            }
                        }
                        Outcome::Updated => {
                            if s.spec.health != new.health {
                                s.health.start_over(now);
                            }
                            // New limits go to the running cgroup at once.
                            if s.cgroup && s.state.pid().is_some() && s.spec.cgroup != new.cgroup {
                                actions.push(Action::CgroupLimits {
                                    service: name.clone(),
                                    settings: new.cgroup.changes_from(&s.spec.cgroup),
                                });
                            }
                            s.spec = new.clone();
                            s.pending = None;
                            if !s.spec.enabled && s.state.pid().is_some() {
                                actions.extend(self.stop_one(name, now, false));
                            }
                        }
                        Outcome::Restarted => {
                            s.pending = Some(new.clone());
                            // Stopped with the OLD stop signal and timeout, then
                            // started with the pending spec.
                            if let State::Running { pid, .. } = s.state {
                                actions.push(s.begin_stop(name, pid, now, true));
                            }
                        }
                        Outcome::Reloaded => {
                            if let State::Running { pid, .. } = s.state {
                                actions.push(Action::Signal {
                                    service: name.clone(),
                                    pid,
                                    sig: s.spec.reload_signal,
                                });
                            }
                            s.spec = new.clone();
                            s.pending = None;
                        }
                        Outcome::Deferred => s.pending = Some(new.clone()),
                        Outcome::Added | Outcome::Removed => {}
                    }
                }
                _ => {}
            }
        }
        let mut order = plan.start_order();
        for (n, s) in &self.services {
            if s.removing {
                order.push(n.clone());
            }
        }
        self.order = order;
        (actions, outcomes)
    }

    pub fn begin_shutdown(&mut self) {
        self.shutting_down = true;
    }

    /// Every service has been through its start attempt and a running one
    /// is ready (the boot is finished: READY).
    pub fn settled(&self) -> bool {
        !self.hold
            && self.services.values().all(|s| {
                matches!(
                    s.state,
                    State::Exited { .. } | State::Failed { .. } | State::Backoff { .. }
                ) || (s.ready && matches!(s.state, State::Running { .. }))
                    || (!s.wanted(self.shutting_down) && matches!(s.state, State::Stopped))
                    || (s.spec.on_demand
                        && !s.triggered
                        && matches!(s.state, State::Stopped | State::Waiting))
                    || (s.spec.oneshot && matches!(s.state, State::Running { .. }))
            })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use moonlit_config::plan::{Backoff, Burst, OnChange};
    use std::time::Duration;

    pub(crate) fn spec(name: &str) -> ServiceSpec {
        ServiceSpec {
            name: name.into(),
            location: format!("services/{name}.lua:1"),
            description: None,
            exec: vec!["/bin/true".into()],
            env: Default::default(),
            cwd: None,
            user: None,
            group: None,
            umask: None,
            limits: Default::default(),
            restart: RestartPolicy::Always,
            stop_signal: 15,
            stop_timeout: Duration::from_secs(2),
            reload_signal: 1,
            after: vec![],
            requires: vec![],
            oneshot: false,
            main: false,
            enabled: true,
            on_change: OnChange::Restart,
            backoff: Backoff {
                initial: Duration::from_millis(100),
                max: Duration::from_millis(1000),
                reset_after: Duration::from_secs(10),
            },
            burst: Burst {
                count: 5,
                interval: Duration::from_secs(10),
            },
            log_file: None,
            log_buffer: 1024,
            console: true,
            readiness: Readiness::Started,
            ready_timeout: Duration::from_secs(30),
            passthrough: false,
            env_inherit: Vec::new(),
            env_file: Vec::new(),
            sandbox: Default::default(),
            log_rotate: None,
            log_timestamps: false,
            health: None,
            forking: false,
            pid_file: None,
            cgroup: Default::default(),
            on_demand: false,
            timer: None,
            activation: Default::default(),
        }
    }

    pub(crate) fn sup(specs: Vec<ServiceSpec>) -> Supervisor {
        let mut plan = Plan::default();
        for s in specs {
            plan.services.insert(s.name.clone(), s);
        }
        Supervisor::new(&plan)
    }

    fn spawns(a: &[Action]) -> Vec<String> {
        a.iter()
            .filter_map(|a| {
                if let Action::Spawn(n) = a {
                    Some(n.clone())
                } else {
                    None
                }
            })
            .collect()
    }

    #[test]
    fn backoff_grows_and_caps() {
        let s = spec("a");
        let d: Vec<Ms> = (1..=7).map(|n| backoff_delay(&s, n)).collect();
        assert_eq!(d, vec![0, 100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn starts_in_dependency_order() {
        let mut db = spec("db");
        db.oneshot = false;
        let mut web = spec("web");
        web.requires = vec!["db".into()];
        let mut s = sup(vec![web, db]);
        let a = s.step(0);
        assert_eq!(spawns(&a), vec!["db"]);
        assert_eq!(s.services["web"].state, State::Waiting);
        s.spawned("db", Ok(10), 0);
        let a = s.step(1);
        assert_eq!(spawns(&a), vec!["web"]);
    }

    #[test]
    fn oneshot_gates_dependents_until_success() {
        let mut setup = spec("setup");
        setup.oneshot = true;
        setup.restart = RestartPolicy::Never;
        let mut app = spec("app");
        app.requires = vec!["setup".into()];
        let mut s = sup(vec![setup, app]);
        assert_eq!(spawns(&s.step(0)), vec!["setup"]);
        s.spawned("setup", Ok(5), 0);
        assert!(
            spawns(&s.step(1)).is_empty(),
            "app must wait while setup runs"
        );
        s.exited(5, ExitStatus::Exited(0), 2).expect("service pid");
        assert_eq!(spawns(&s.step(3)), vec!["app"]);
    }

    #[test]
    fn failed_requirement_fails_dependent() {
        let mut setup = spec("setup");
        setup.oneshot = true;
        setup.restart = RestartPolicy::Never;
        let mut app = spec("app");
        app.requires = vec!["setup".into()];
        let mut s = sup(vec![setup, app]);
        s.step(0);
        s.spawned("setup", Ok(5), 0);
        s.exited(5, ExitStatus::Exited(1), 2);
        s.step(3);
        assert!(matches!(s.services["app"].state, State::Failed { .. }));
    }

    #[test]
    fn crash_loop_backs_off_then_fails() {
        let mut s = sup(vec![spec("crash")]);
        let mut now = 0;
        let mut delays = Vec::new();
        let mut pid = 100;
        loop {
            let a = s.step(now);
            if spawns(&a) == vec!["crash"] {
                s.spawned("crash", Ok(pid), now);
                now += 10;
                s.exited(pid, ExitStatus::Exited(1), now);
                pid += 1;
                match s.services["crash"].state {
                    State::Backoff { until } => {
                        delays.push(until - now);
                        now = until;
                    }
                    State::Stopped => delays.push(0),
                    State::Failed { .. } => break,
                    ref other => panic!("unexpected {other:?}"),
                }
            } else {
                panic!("expected a spawn at {now}: {a:?}");
            }
        }
        assert_eq!(delays, vec![0, 100, 200, 400, 800]);
        assert_eq!(s.services["crash"].restarts, 5);
        // Failed stays failed.
        assert!(spawns(&s.step(now + 100_000)).is_empty());
    }

    #[test]
    fn stable_run_resets_backoff() {
        let mut s = sup(vec![spec("a")]);
        s.step(0);
        s.spawned("a", Ok(1), 0);
        s.exited(1, ExitStatus::Exited(1), 10);
        s.step(10);
        s.spawned("a", Ok(2), 10);
        s.exited(2, ExitStatus::Exited(1), 20);
        assert_eq!(s.services["a"].state, State::Backoff { until: 120 });
        s.step(120);
        s.spawned("a", Ok(3), 120);
        // Runs longer than reset_after: the next failure restarts at once.
        s.exited(3, ExitStatus::Exited(1), 20_000);
        assert_eq!(s.services["a"].state, State::Stopped);
    }

    #[test]
    fn manual_stop_is_never_restarted() {
        let mut s = sup(vec![spec("a")]);
        s.step(0);
        s.spawned("a", Ok(7), 0);
        let a = s.stop("a", 5).expect("known");
        assert_eq!(
            a,
            vec![Action::Signal {
                service: "a".into(),
                pid: 7,
                sig: 15
            }]
        );
        s.exited(7, ExitStatus::Signaled(15), 6);
        assert_eq!(s.services["a"].state, State::Stopped);
        assert!(spawns(&s.step(100_000)).is_empty());
        s.start("a").expect("known");
        assert_eq!(spawns(&s.step(100_001)), vec!["a"]);
    }

    #[test]
    fn stop_timeout_escalates_to_kill() {
        let mut s = sup(vec![spec("a")]);
        s.step(0);
        s.spawned("a", Ok(7), 0);
        s.stop("a", 0).expect("known");
        assert!(s
            .step(1999)
            .iter()
            .all(|a| !matches!(a, Action::Signal { sig: 9, .. })));
        assert!(s.step(2000).contains(&Action::Signal {
            service: "a".into(),
            pid: 7,
            sig: 9
        }));
    }

    #[test]
    fn policy_on_failure_and_never() {
        let mut a = spec("a");
        a.restart = RestartPolicy::OnFailure;
        let mut b = spec("b");
        b.restart = RestartPolicy::Never;
        let mut s = sup(vec![a, b]);
        s.step(0);
        s.spawned("a", Ok(1), 0);
        s.spawned("b", Ok(2), 0);
        s.exited(1, ExitStatus::Exited(0), 5);
        s.exited(2, ExitStatus::Exited(3), 5);
        assert!(matches!(s.services["a"].state, State::Exited { .. }));
        assert!(matches!(s.services["b"].state, State::Exited { .. }));
    }

    #[test]
    fn shutdown_goes_in_reverse_dependency_order() {
        let db = spec("db");
        let mut web = spec("web");
        web.after = vec!["db".into()];
        let mut s = sup(vec![db, web]);
        s.step(0);
        s.spawned("db", Ok(1), 0);
        s.step(1);
        s.spawned("web", Ok(2), 1);
        s.begin_shutdown();
        let a = s.step(10);
        assert_eq!(
            a,
            vec![Action::Signal {
                service: "web".into(),
                pid: 2,
                sig: 15
            }]
        );
        s.exited(2, ExitStatus::Signaled(15), 11);
        let a = s.step(12);
        assert_eq!(
            a,
            vec![Action::Signal {
                service: "db".into(),
                pid: 1,
                sig: 15
            }]
        );
        s.exited(1, ExitStatus::Signaled(15), 13);
        assert!(s.all_down());
    }

    #[test]
    fn main_service_exit_is_reported() {
        let mut m = spec("app");
        m.main = true;
        m.restart = RestartPolicy::Never;
        let mut s = sup(vec![m]);
        s.step(0);
        s.spawned("app", Ok(3), 0);
        s.exited(3, ExitStatus::Exited(42), 5);
        assert_eq!(s.main_exit, Some(42));
    }

    fn plan_of(specs: Vec<ServiceSpec>) -> Plan {
        let mut plan = Plan::default();
        for s in specs {
            plan.services.insert(s.name.clone(), s);
        }
        plan
    }

    #[test]
    fn reload_outcomes_per_kind_of_change() {
        let mut s = sup(vec![
            spec("same"),
            spec("policy"),
            spec("argv"),
            spec("rl"),
            spec("df"),
            spec("gone"),
        ]);
        s.step(0);
        for (i, n) in ["same", "policy", "argv", "rl", "df", "gone"]
            .iter()
            .enumerate()
        {
            s.spawned(n, Ok(10 + i as u32), 0);
        }
        let mut moved = spec("same");
        moved.location = "services/other.lua:9".into();
        let mut policy = spec("policy");
        policy.restart = RestartPolicy::Never;
        let mut argv = spec("argv");
        argv.exec = vec!["/bin/new".into()];
        argv.stop_signal = 2;
        let mut rl = spec("rl");
        rl.exec = vec!["/bin/new".into()];
        rl.on_change = OnChange::Reload;
        let mut df = spec("df");
        df.exec = vec!["/bin/new".into()];
        df.on_change = OnChange::Defer;
        let plan = plan_of(vec![moved, policy, argv, rl, df, spec("new")]);
        let (actions, out) = s.apply(&plan, 100);
        assert_eq!(out["same"], Outcome::Unchanged);
        assert_eq!(out["policy"], Outcome::Updated);
        assert_eq!(out["argv"], Outcome::Restarted);
        assert_eq!(out["rl"], Outcome::Reloaded);
        assert_eq!(out["df"], Outcome::Deferred);
        assert_eq!(out["gone"], Outcome::Removed);
        assert_eq!(out["new"], Outcome::Added);
        // The old stop signal (15) goes to argv, not the new one (2).
        assert!(actions.contains(&Action::Signal {
            service: "argv".into(),
            pid: 12,
            sig: 15
        }));
        assert!(actions.contains(&Action::Signal {
            service: "rl".into(),
            pid: 13,
            sig: 1
        }));
        assert!(actions.contains(&Action::Signal {
            service: "gone".into(),
            pid: 15,
            sig: 15
        }));
        assert_eq!(s.services["same"].state.pid(), Some(10));
        assert_eq!(s.services["same"].spec.location, "services/other.lua:9");
        assert_eq!(s.services["policy"].spec.restart, RestartPolicy::Never);
        assert_eq!(s.services["policy"].state.pid(), Some(11));
        assert!(s.services["df"].pending.is_some());
        // argv restarts with the new argv once the old process is gone.
        s.exited(12, ExitStatus::Signaled(15), 110);
        assert!(spawns(&s.step(111)).contains(&"argv".to_string()));
        assert_eq!(s.services["argv"].spec.exec, vec!["/bin/new"]);
        // gone is dropped once reaped.
        s.exited(15, ExitStatus::Signaled(15), 112);
        s.step(113);
        assert!(!s.services.contains_key("gone"));
        // A dry diff of the same plan again: nothing to do.
        let again = s.diff(&plan);
        assert!(
            again
                .iter()
                .all(|(n, o)| *o == Outcome::Unchanged || n == "df"),
            "{again:?}"
        );
    }

    #[test]
    fn manual_stop_and_counters_survive_a_reload() {
        let mut s = sup(vec![spec("a")]);
        s.step(0);
        s.spawned("a", Ok(1), 0);
        s.exited(1, ExitStatus::Exited(1), 5);
        s.step(5);
        s.spawned("a", Ok(2), 5);
        s.stop("a", 6).expect("known");
        s.exited(2, ExitStatus::Signaled(15), 7);
        let mut changed = spec("a");
        changed.exec = vec!["/bin/other".into()];
        let (_, out) = s.apply(&plan_of(vec![changed]), 10);
        assert_eq!(out["a"], Outcome::Updated);
        assert!(s.services["a"].manual_stop);
        assert_eq!(s.services["a"].restarts, 1);
        assert!(spawns(&s.step(20)).is_empty(), "still stopped by hand");
    }

    #[test]
    fn dependents_wait_for_readiness_and_a_silent_service_is_killed() {
        let mut n = spec("n");
        n.readiness = Readiness::Notify;
        n.ready_timeout = Duration::from_secs(2);
        let mut app = spec("app");
        app.requires = vec!["n".into()];
        let mut s = sup(vec![n, app]);
        s.step(0);
        s.spawned("n", Ok(5), 0);
        assert!(spawns(&s.step(10)).is_empty(), "app waits for n's READY");
        assert!(s.mark_ready("n").is_some());
        assert_eq!(spawns(&s.step(20)), vec!["app"]);
        // A second incarnation that never says READY is killed at the deadline.
        s.exited(5, ExitStatus::Exited(1), 30);
        s.step(30);
        s.spawned("n", Ok(6), 30);
        assert_eq!(s.next_deadline(), Some(2030));
        assert!(s.step(2030).contains(&Action::Signal {
            service: "n".into(),
            pid: 6,
            sig: 9
        }));
    }

    #[test]
    fn spawn_failure_counts_as_a_failed_run() {
        let mut s = sup(vec![spec("a")]);
        s.step(0);
        let a = s.spawned("a", Err(("no such file".into(), 127)), 0);
        assert!(a
            .iter()
            .any(|a| matches!(a, Action::Log(m) if m.contains("cannot start"))));
        assert_eq!(s.services["a"].restarts, 1);
    }

    fn ended_with(a: &[Action]) -> Option<(ExitStatus, Option<String>)> {
        a.iter().find_map(|a| match a {
            Action::Ended { status, reason, .. } => Some((*status, reason.clone())),
            _ => None,
        })
    }

    #[test]
    fn a_service_ends_when_its_cgroup_empties() {
        let mut s = sup(vec![spec("d")]);
        s.step(0);
        s.in_cgroup("d", true);
        s.spawned("d", Ok(40), 0);
        // The first pid ends, a child of it is still in the cgroup: killed,
        // and the end waits for the cgroup.
        let a = s.exited(40, ExitStatus::Exited(3), 10).unwrap();
        assert!(a.contains(&Action::Signal {
            service: "d".into(),
            pid: 40,
            sig: 9
        }));
        assert_eq!(ended_with(&a), None);
        assert_eq!(s.services["d"].state.name(), "running");
        let a = s.cgroup_populated("d", false, 20);
        assert_eq!(ended_with(&a), Some((ExitStatus::Exited(3), None)));
        assert!(a
            .iter()
            .any(|a| matches!(a, Action::Log(m) if m.contains("exited with code 3, restart #1"))));
    }

    #[test]
    fn a_forking_service_is_its_daemon() {
        let mut d = spec("d");
        d.forking = true;
        let mut s = sup(vec![d, {
            let mut w = spec("w");
            w.after = vec!["d".into()];
            w
        }]);
        assert_eq!(spawns(&s.step(0)), vec!["d"]);
        s.in_cgroup("d", true);
        s.spawned("d", Ok(40), 0);
        // Not ready while its starter runs: w waits.
        assert!(spawns(&s.step(5)).is_empty());
        // The starter exits 0: ready, and the loop looks for the daemon.
        let a = s.exited(40, ExitStatus::Exited(0), 10).unwrap();
        assert!(a.contains(&Action::Adopt {
            service: "d".into(),
            status: ExitStatus::Exited(0)
        }));
        assert_eq!(ended_with(&a), None);
        s.adopted("d", Some(41), ExitStatus::Exited(0), 10);
        assert_eq!(s.services["d"].state.pid(), Some(41));
        assert_eq!(spawns(&s.step(11)), vec!["w"]);
        // The daemon's helper (or the daemon) ends: looked for again.
        let a = s.exited(41, ExitStatus::Exited(0), 20).unwrap();
        assert!(matches!(&a[..], [Action::Adopt { .. }]));
        s.adopted("d", Some(42), ExitStatus::Exited(0), 20);
        // A stop signals the daemon; the end comes when nothing is left.
        let a = s.stop("d", 30).unwrap();
        assert!(a.contains(&Action::Signal {
            service: "d".into(),
            pid: 42,
            sig: 15
        }));
        let a = s.exited(42, ExitStatus::Signaled(15), 40).unwrap();
        assert!(matches!(&a[..], [Action::Adopt { .. }]));
        let a = s.adopted("d", None, ExitStatus::Signaled(15), 40);
        assert_eq!(ended_with(&a), Some((ExitStatus::Signaled(15), None)));
        assert_eq!(s.services["d"].state, State::Stopped);
    }

    #[test]
    fn a_forking_starter_that_fails_is_a_failed_start() {
        let mut d = spec("d");
        d.forking = true;
        d.restart = RestartPolicy::Never;
        let mut s = sup(vec![d]);
        s.step(0);
        s.spawned("d", Ok(40), 0);
        let a = s.exited(40, ExitStatus::Exited(1), 10).unwrap();
        assert_eq!(ended_with(&a), Some((ExitStatus::Exited(1), None)));
        assert_eq!(s.services["d"].state.name(), "exited");
    }

    #[test]
    fn an_oom_kill_is_the_reason_of_the_end() {
        let mut s = sup(vec![spec("m")]);
        s.step(0);
        s.in_cgroup("m", true);
        s.spawned("m", Ok(40), 0);
        s.cgroup_populated("m", false, 5);
        s.note_oom("m");
        let a = s.exited(40, ExitStatus::Signaled(9), 10).unwrap();
        assert_eq!(
            ended_with(&a),
            Some((ExitStatus::Signaled(9), Some("oom".into())))
        );
        assert!(a
            .iter()
            .any(|a| matches!(a, Action::Log(m) if m.contains("OOM-killed"))));
        assert_eq!(s.services["m"].last_exit_reason.as_deref(), Some("oom"));
        // The next run's end is its own.
        s.step(10_000);
        s.in_cgroup("m", true);
        s.spawned("m", Ok(50), 10_000);
        s.cgroup_populated("m", false, 10_001);
        let a = s.exited(50, ExitStatus::Exited(2), 10_002).unwrap();
        assert_eq!(ended_with(&a), Some((ExitStatus::Exited(2), None)));
    }

    #[test]
    fn new_cgroup_limits_apply_live() {
        let mut s = sup(vec![spec("c")]);
        s.step(0);
        s.in_cgroup("c", true);
        s.spawned("c", Ok(40), 0);
        let mut c = spec("c");
        c.cgroup.cpu_weight = Some(300);
        let (a, out) = s.apply(&plan_of(vec![c]), 10);
        assert_eq!(out["c"], Outcome::Updated);
        let [Action::CgroupLimits { service, settings }] = &a[..] else {
            panic!("{a:?}");
        };
        assert_eq!(service, "c");
        assert_eq!(
            settings
                .iter()
                .map(|s| (s.file, s.value.as_str()))
                .collect::<Vec<_>>(),
            vec![("cpu.weight", "300")]
        );
        assert_eq!(s.services["c"].state.pid(), Some(40));
    }

    #[test]
    fn a_socket_activated_service_is_up_for_dependents_while_its_sockets_are_bound() {
        use moonlit_config::sockets::{parse_listen, SocketKind, SocketSpec};
        let mut web = spec("web");
        web.activation.sockets = vec![SocketSpec {
            listen: parse_listen("/run/web.sock").unwrap(),
            kind: SocketKind::Stream,
            name: "web".into(),
            backlog: 10,
            mode: None,
            owner: None,
            group: None,
        }];
        web.activation.lazy = true;
        web.on_demand = true;
        let mut app = spec("app");
        app.requires = vec!["web".into()];
        let mut after = spec("late");
        after.after = vec!["web".into()];
        let mut s = sup(vec![web, app, after]);
        let a = s.step(0);
        // web is lazy: not started; app and late start at once.
        assert!(!a.contains(&Action::Spawn("web".into())), "{a:?}");
        assert!(a.contains(&Action::Spawn("app".into())), "{a:?}");
        assert!(a.contains(&Action::Spawn("late".into())), "{a:?}");
        assert!(s.settled() || s.services["app"].state == State::Starting);
        // Stopped by hand: no longer up.
        s.services.get_mut("web").unwrap().manual_stop = true;
        assert!(!s.services["web"].up());
        s.services.get_mut("web").unwrap().manual_stop = false;
        s.services.get_mut("web").unwrap().state = State::Failed { reason: "x".into() };
        assert!(!s.services["web"].up());
    }

    #[test]
    fn the_boot_is_not_settled_while_the_last_service_is_not_ready() {
        // Regression: a running service still waiting for its READY=1 (here
        // the last of the order, so nothing else was waiting for it) used
        // to count as settled, and the boot said READY before it was.
        let mut n = spec("n");
        n.readiness = Readiness::Notify;
        let mut s = sup(vec![n]);
        assert_eq!(spawns(&s.step(0)), vec!["n"]);
        s.spawned("n", Ok(10), 0);
        assert!(!s.settled(), "n is starting, not ready");
        assert!(s.mark_ready("n").is_some());
        assert!(s.settled());
    }

    #[test]
    fn an_on_demand_service_starts_only_when_triggered_and_never_twice() {
        let mut b = spec("b");
        b.on_demand = true;
        b.oneshot = true;
        b.restart = RestartPolicy::Never;
        let mut s = sup(vec![b, spec("w")]);
        // Not at boot; the boot still settles.
        assert_eq!(spawns(&s.step(0)), vec!["w"]);
        s.spawned("w", Ok(10), 0);
        assert!(s.settled());
        assert!(spawns(&s.step(5)).is_empty());
        assert_eq!(s.trigger("b"), Ok("starting"));
        assert_eq!(spawns(&s.step(10)), vec!["b"]);
        s.spawned("b", Ok(11), 10);
        // Due again while the run goes on: not started twice.
        assert_eq!(s.trigger("b"), Ok("already running"));
        assert!(spawns(&s.step(20)).is_empty());
        s.exited(11, ExitStatus::Exited(0), 30);
        assert!(spawns(&s.step(31)).is_empty());
        assert_eq!(s.trigger("b"), Ok("starting"));
        assert_eq!(spawns(&s.step(40)), vec!["b"]);
        assert!(s.trigger("nosuch").is_err());
    }

    #[test]
    fn ctl_start_never_starts_an_accept_service_as_a_whole() {
        let mut a = spec("inetd");
        a.on_demand = true;
        a.activation.accept = true;
        a.enabled = false;
        let mut s = sup(vec![a]);
        assert!(spawns(&s.step(0)).is_empty());
        assert!(s.start("inetd").is_ok());
        assert!(s.services["inetd"].spec.enabled);
        assert!(
            spawns(&s.step(1)).is_empty(),
            "instances only, per connection"
        );
    }
}
