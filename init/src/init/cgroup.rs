//! The loop's side of per-service cgroups: the setup report, the cgroup a
//! new process joins, `cgroup.events` changes and what `ctl status` shows.
//! The cgroup filesystem work itself is in `crate::cgroup`; the decisions
//! (a service ends when its cgroup is empty) are the supervisor's.

use super::{now_ms, Init, T_CGROUP};
use crate::supervisor::Action;
use moonlit_config::cgroup_limits::Setting;
use moonlit_config::spawn::ExitStatus;
use rustix::event::epoll::{self, EventData, EventFlags};
use serde_json::{json, Value};
use std::os::fd::OwnedFd;

impl Init {
    /// Logs what the cgroup setup found and watches `cgroup.events`.
    pub(super) fn report_cgroups(&mut self) {
        self.rt
            .set_stats_reader(std::rc::Rc::new(self.cg.stats_reader()));
        for n in std::mem::take(&mut self.cg.notes) {
            self.log(&format!("cgroups: {n}"));
        }
        if let Some(r) = &self.cg.off_reason {
            let m = format!("cgroups are off: {r}; services run without cgroups");
            self.log(&m);
            return;
        }
        if let Some(fd) = self.cg.watch_fd() {
            if let Err(e) = epoll::add(
                &self.epoll,
                fd,
                EventData::new_u64(T_CGROUP),
                EventFlags::IN,
            ) {
                self.log(&format!("cgroups: epoll: {e}"));
            }
        }
        if self.opts.debug {
            let m = format!(
                "cgroups: on, controllers: {}",
                self.cg.controllers.join(" ")
            );
            self.log(&m);
        }
    }

    /// The cgroup a new process of `name` joins before exec, made now with
    /// its limits written. A cgroup that cannot be made is logged and the
    /// service runs without one (nothing else may break because of
    /// cgroups); limits that cannot be applied (a controller missing) fail
    /// the start with the reason.
    pub(super) fn cgroup_for_spawn(
        &mut self,
        name: &str,
        spec: &moonlit_config::ServiceSpec,
    ) -> Result<Option<OwnedFd>, String> {
        if !self.cg.enabled() {
            if !spec.cgroup.is_empty() {
                self.log(&format!(
                    "{name}: cgroup limits ({}) not applied: cgroups are off",
                    spec.location
                ));
            }
            return Ok(None);
        }
        let fd = match self.cg.prepare(name) {
            Ok(fd) => fd,
            Err(e) => {
                self.log(&format!("{name}: running without its cgroup: {e}"));
                return Ok(None);
            }
        };
        self.cg
            .apply_limits(name, &spec.cgroup.settings())
            .map_err(|e| format!("{} ({})", e, spec.location))?;
        self.cg.oom_mark(name);
        Ok(Some(fd))
    }

    /// A reload changed the limits of a running service: written to its
    /// cgroup now (same processes).
    pub(super) fn apply_cgroup_limits(&mut self, name: &str, settings: &[Setting]) {
        match self.cg.apply_limits(name, settings) {
            Ok(()) => {
                let what: Vec<String> = settings
                    .iter()
                    .map(|s| format!("{}={}", s.file, s.value))
                    .collect();
                self.log(&format!("{name}: cgroup limits now {}", what.join(" ")));
            }
            Err(e) => self.log(&format!("{name}: cgroup limits not applied: {e}")),
        }
    }

    /// Counts an OOM kill in the service's cgroup into its end.
    fn check_oom(&mut self, name: &str) {
        if self.sup.services.get(name).is_some_and(|s| s.cgroup) && self.cg.oom_since_mark(name) {
            self.sup.note_oom(name);
        }
    }

    /// A process of a forking service ended: what is left to follow? Its
    /// `pid_file` if it names a live process, else the oldest process left
    /// in its cgroup; nothing left ends the service with `status`.
    pub(super) fn follow_daemon(&mut self, name: &str, status: ExitStatus) -> Vec<Action> {
        let Some((pid_file, in_cg)) = self
            .sup
            .services
            .get(name)
            .map(|s| (s.spec.pid_file.clone(), s.cgroup))
        else {
            return Vec::new();
        };
        let alive = |p: u32| {
            rustix::process::Pid::from_raw(p as i32)
                .is_some_and(|p| rustix::process::test_kill_process(p).is_ok())
        };
        let mut found = None;
        if let Some(f) = &pid_file {
            match std::fs::read_to_string(f) {
                Ok(t) => match t.trim().parse::<u32>() {
                    Ok(p) if p > 1 && alive(p) => found = Some(p),
                    _ => self.log(&format!(
                        "{name}: pid_file {f} holds \"{}\", not a live process",
                        t.trim()
                    )),
                },
                Err(e) => self.log(&format!("{name}: pid_file {f}: {e}")),
            }
        }
        if found.is_none() && in_cg {
            // The lowest pid is usually the oldest: the daemon, not a
            // helper it just forked.
            found = self
                .cg
                .pids(name)
                .into_iter()
                .filter(|p| *p > 0)
                .map(|p| p as u32)
                .filter(|p| alive(*p))
                .min();
        }
        if found.is_none() {
            self.check_oom(name);
        }
        self.sup.adopted(name, found, status, now_ms())
    }
    /// Some services' `cgroup.events` changed: tell the supervisor which are
    /// empty now; remove the cgroups of services no longer declared.
    pub(super) fn on_cgroup_events(&mut self) {
        let now = now_ms();
        for name in self.cg.changed() {
            let populated = self.cg.populated(&name);
            if !populated {
                self.check_oom(&name);
            }
            if !self.sup.services.contains_key(&name) {
                if !populated {
                    self.cg.remove(&name);
                }
                continue;
            }
            let actions = self.sup.cgroup_populated(&name, populated, now);
            self.perform(actions);
        }
    }

    /// A service's first pid was reaped: whether anything of it is left is
    /// read now (its `cgroup.events` change may not have been seen yet).
    pub(super) fn cgroup_after_exit(&mut self, name: &str) {
        if self.sup.services.get(name).is_some_and(|s| s.cgroup) {
            let populated = self.cg.populated(name);
            self.check_oom(name);
            let actions = self.sup.cgroup_populated(name, populated, now_ms());
            self.perform(actions);
        }
    }

    /// Removes the cgroups of services that are gone (removed by a reload)
    /// and empty.
    pub(super) fn prune_cgroups(&mut self) {
        for name in self.cg.managed() {
            if !self.sup.services.contains_key(&name) && !self.cg.populated(&name) {
                self.cg.remove(&name);
            }
        }
    }

    /// A service's cgroup figures for `ctl status`, read from its files.
    pub(super) fn cgroup_json(&self, name: &str) -> Value {
        let in_cg = self.sup.services.get(name).is_some_and(|s| s.cgroup);
        let Some(st) = in_cg.then(|| self.cg.stats(name)).flatten() else {
            return Value::Null;
        };
        json!({
            "path": self.cg.dir(name).map(|d| d.display().to_string()),
            "populated": st.populated,
            "memory_current": st.memory_current,
            "cpu_usage_usec": st.cpu_usage_usec,
            "pids_current": st.pids_current,
            "oom_kills": st.oom_kills,
        })
    }

    /// The top-level cgroup report of `ctl status`.
    pub(super) fn cgroups_json(&self) -> Value {
        json!({
            "enabled": self.cg.enabled(),
            "reason": self.cg.off_reason,
            "controllers": self.cg.controllers,
            "available": self.cg.available,
        })
    }
}
