//! The loop's side of per-service cgroups: the setup report, the cgroup a
//! new process joins, `cgroup.events` changes and what `ctl status` shows.
//! The cgroup filesystem work itself is in `crate::cgroup`; the decisions
//! (a service ends when its cgroup is empty) are the supervisor's.

use super::{now_ms, Init, T_CGROUP};
use rustix::event::epoll::{self, EventData, EventFlags};
use serde_json::{json, Value};
use std::os::fd::OwnedFd;

impl Init {
    /// Logs what the cgroup setup found and watches `cgroup.events`.
    pub(super) fn report_cgroups(&mut self) {
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

    /// The cgroup a new process of `name` joins before exec, made now. A
    /// cgroup that cannot be made is logged and the service runs without
    /// one (nothing else may break because of cgroups).
    pub(super) fn cgroup_for_spawn(&mut self, name: &str) -> Option<OwnedFd> {
        if !self.cg.enabled() {
            return None;
        }
        match self.cg.prepare(name) {
            Ok(fd) => Some(fd),
            Err(e) => {
                self.log(&format!("{name}: running without its cgroup: {e}"));
                None
            }
        }
    }

    /// Some services' `cgroup.events` changed: tell the supervisor which are
    /// empty now; remove the cgroups of services no longer declared.
    pub(super) fn on_cgroup_events(&mut self) {
        let now = now_ms();
        for name in self.cg.changed() {
            let populated = self.cg.populated(&name);
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
        })
    }
}
