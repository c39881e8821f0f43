//! Health checks, the pure half: when a service's next probe is due, what a
//! probe's result does (counting consecutive failures, the healthy /
//! unhealthy transitions, a restart through the normal stop procedure).
//!
//! The loop makes the probes (`init/src/init/health.rs`) and reports their
//! results here; nothing in this file performs a syscall.

use std::collections::VecDeque;

use moonlit_config::plan::{HealthAction, HealthCheck};
use serde::Serialize;

use super::{Action, Ms, Service, State, Supervisor};

/// Changes of health kept for `ctl status`.
const HISTORY: usize = 8;

/// Where a service's health stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Health {
    /// Not yet known: no probe has passed since this process started (or
    /// since the check changed), and fewer than `retries` failed.
    #[default]
    Starting,
    Healthy,
    Unhealthy,
}

impl Health {
    pub fn name(self) -> &'static str {
        match self {
            Health::Starting => "starting",
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
        }
    }
}

/// One service's health record (carried across reloads while its check is
/// unchanged, and across a re-exec).
#[derive(Debug, Clone, Default, Serialize)]
pub struct HealthState {
    pub status: Health,
    /// Failed probes in a row.
    pub failures: u32,
    /// What the last probe said (an exec probe's output, trimmed and
    /// capped; or why a tcp/path probe failed).
    pub last_output: Option<String>,
    pub last_ok: Option<bool>,
    /// When `status` last changed, and when the last probe ended.
    pub changed: Option<Ms>,
    pub checked: Option<Ms>,
    /// Probes made since boot.
    pub checks: u64,
    /// Times it became unhealthy since boot.
    pub unhealthy_count: u32,
    /// The latest changes, oldest first.
    pub history: VecDeque<(Ms, Health)>,
    /// When the next probe is due (`None`: not armed yet, or one runs).
    #[serde(skip)]
    next: Option<Ms>,
    /// A probe is running for the process with this pid.
    #[serde(skip)]
    in_flight: Option<u32>,
}

impl moonlit_net::json_decode::Decode for HealthState {
    fn decode(v: &moonlit_net::json_decode::Value) -> moonlit_net::json_decode::Result<Self> {
        let o = moonlit_net::json_decode::Obj::of(v, "a health record")?;
        Ok(HealthState {
            status: o.get("status")?,
            failures: o.get("failures")?,
            last_output: o.get("last_output")?,
            last_ok: o.get("last_ok")?,
            changed: o.get("changed")?,
            checked: o.get("checked")?,
            checks: o.get("checks")?,
            unhealthy_count: o.get("unhealthy_count")?,
            history: o.get("history")?,
            next: None,
            in_flight: None,
        })
    }
}
moonlit_net::deserialize_by_decode!(HealthState);

impl HealthState {
    fn set(&mut self, status: Health, now: Ms) {
        if self.status == status && self.changed.is_some() {
            return;
        }
        self.status = status;
        self.changed = Some(now);
        self.history.push_back((now, status));
        while self.history.len() > HISTORY {
            self.history.pop_front();
        }
    }

    /// A new process (or a new check): nothing known, probes start over.
    pub(super) fn start_over(&mut self, now: Ms) {
        self.failures = 0;
        self.next = None;
        self.in_flight = None;
        if self.changed.is_some() {
            self.set(Health::Starting, now);
        }
    }
}

impl Service {
    /// The check that applies now: running, ready, not on its way out.
    fn health_check(&self, shutting_down: bool) -> Option<(&HealthCheck, u32)> {
        let check = self.spec.health.as_ref()?;
        match self.state {
            State::Running { pid, .. } if pid != 0 && self.ready && !self.removing => {
                (!shutting_down).then_some((check, pid))
            }
            _ => None,
        }
    }
}

impl Supervisor {
    /// Probes due now: (service, the pid it checks, the check). Services
    /// that just became eligible (ready, or a new check) are armed for
    /// `every` from now. Each returned probe is in flight until
    /// [`Supervisor::health_result`] is told of it.
    pub fn health_due(&mut self, now: Ms) -> Vec<(String, u32, HealthCheck)> {
        let shutting_down = self.shutting_down;
        let mut due = Vec::new();
        for (name, s) in self.services.iter_mut() {
            let Some((check, pid)) = s.health_check(shutting_down).map(|(c, p)| (c.clone(), p))
            else {
                s.health.next = None;
                continue;
            };
            if s.health.in_flight.is_some() {
                continue;
            }
            if s.health.changed.is_none() {
                // First sight: it starts as "starting".
                s.health.set(Health::Starting, now);
            }
            match s.health.next {
                None => s.health.next = Some(now + check.every.as_millis() as u64),
                Some(t) if t <= now => {
                    s.health.next = None;
                    s.health.in_flight = Some(pid);
                    due.push((name.clone(), pid, check));
                }
                Some(_) => {}
            }
        }
        due
    }

    /// The earliest armed probe.
    pub fn health_next(&self) -> Option<Ms> {
        self.services.values().filter_map(|s| s.health.next).min()
    }

    /// The result of a probe of `name`'s process `pid`. Returns the actions
    /// and, when its health changed to healthy or unhealthy, which (for the
    /// `on_health` hook). A result for another process is ignored.
    pub fn health_result(
        &mut self,
        name: &str,
        pid: u32,
        ok: bool,
        output: Option<String>,
        now: Ms,
    ) -> (Vec<Action>, Option<bool>) {
        let mut actions = Vec::new();
        let Some(s) = self.services.get_mut(name) else {
            return (actions, None);
        };
        if s.health.in_flight != Some(pid) {
            return (actions, None);
        }
        s.health.in_flight = None;
        let Some((check, _)) = s
            .health_check(self.shutting_down)
            .map(|(c, p)| (c.clone(), p))
        else {
            return (actions, None);
        };
        let h = &mut s.health;
        h.checks += 1;
        h.checked = Some(now);
        h.last_ok = Some(ok);
        h.last_output = output;
        h.next = Some(now + check.every.as_millis() as u64);
        let said = h
            .last_output
            .as_deref()
            .filter(|o| !o.is_empty())
            .map(|o| format!(": {}", o.lines().next().unwrap_or("")))
            .unwrap_or_default();
        if ok {
            h.failures = 0;
            if h.status == Health::Healthy {
                return (actions, None);
            }
            h.set(Health::Healthy, now);
            actions.push(Action::Log(format!("{name}: healthy")));
            return (actions, Some(true));
        }
        h.failures += 1;
        if h.status == Health::Unhealthy {
            return (actions, None);
        }
        if h.failures < check.retries {
            actions.push(Action::Log(format!(
                "{name}: health check failed ({}/{}){said}",
                h.failures, check.retries
            )));
            return (actions, None);
        }
        h.set(Health::Unhealthy, now);
        h.unhealthy_count += 1;
        let failures = h.failures;
        match check.action {
            HealthAction::Mark => actions.push(Action::Log(format!(
                "{name}: unhealthy ({failures} failed checks in a row){said}"
            ))),
            HealthAction::Restart => {
                s.restarts += 1;
                actions.push(Action::Log(format!(
                    "{name}: unhealthy ({failures} failed checks in a row){said}: restart #{}",
                    s.restarts
                )));
                actions.push(s.begin_stop(name, pid, now, true));
            }
        }
        (actions, Some(false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use moonlit_config::plan::{HealthProbe, Plan, ServiceSpec};
    use std::time::Duration;

    fn sup(action: HealthAction) -> Supervisor {
        let mut spec = ServiceSpec::new("w", "services/w.lua:1");
        spec.exec = vec!["/bin/w".into()];
        spec.health = Some(HealthCheck {
            probe: HealthProbe::Path {
                path: "/run/w".into(),
            },
            every: Duration::from_millis(100),
            timeout: Duration::from_millis(50),
            retries: 2,
            action,
        });
        let mut plan = Plan::default();
        plan.services.insert("w".into(), spec);
        let mut s = Supervisor::new(&plan);
        assert_eq!(s.step(0), vec![Action::Spawn("w".into())]);
        s.spawned("w", Ok(42), 0);
        s
    }

    fn probe(s: &mut Supervisor, now: Ms, ok: bool) -> (Vec<Action>, Option<bool>) {
        let due = s.health_due(now);
        assert_eq!(due.len(), 1, "a probe is due at {now}");
        assert_eq!(due[0].1, 42);
        s.health_result(
            "w",
            42,
            ok,
            Some(if ok { "fine" } else { "sick" }.into()),
            now,
        )
    }

    #[test]
    fn first_probe_after_every_then_transitions_and_restart() {
        let mut s = sup(HealthAction::Restart);
        assert!(s.health_due(0).is_empty(), "armed, not due");
        assert_eq!(s.health_next(), Some(100));
        assert!(s.health_due(99).is_empty());
        assert_eq!(s.services["w"].health.status, Health::Starting);
        assert_eq!(probe(&mut s, 100, true).1, Some(true));
        assert!(s.health_due(150).is_empty(), "none while one is in flight");
        assert_eq!(s.health_next(), Some(200));
        assert_eq!(probe(&mut s, 200, true).1, None, "no change, no hook");
        let (a, change) = probe(&mut s, 300, false);
        assert_eq!(change, None, "one failure of two: still healthy");
        assert!(matches!(&a[..], [Action::Log(m)] if m.contains("failed (1/2): sick")));
        assert_eq!(s.services["w"].health.status, Health::Healthy);
        let (a, change) = probe(&mut s, 400, false);
        assert_eq!(change, Some(false));
        assert!(a.contains(&Action::Signal {
            service: "w".into(),
            pid: 42,
            sig: 15
        }));
        let w = &s.services["w"];
        assert_eq!(w.health.status, Health::Unhealthy);
        assert_eq!(w.restarts, 1, "a health restart counts as a restart");
        assert!(matches!(
            w.state,
            State::Stopping {
                then_start: true,
                ..
            }
        ));
        assert!(s.health_due(1000).is_empty(), "no probes while stopping");
        // The stop ends; it is started again and starts over.
        s.exited(42, moonlit_config::spawn::ExitStatus::Signaled(15), 450);
        assert_eq!(s.step(450), vec![Action::Spawn("w".into())]);
        s.spawned("w", Ok(43), 450);
        let w = &s.services["w"];
        assert_eq!(w.health.status, Health::Starting);
        assert_eq!(w.health.failures, 0);
        let seen: Vec<Health> = w.health.history.iter().map(|h| h.1).collect();
        assert_eq!(
            seen,
            [
                Health::Starting,
                Health::Healthy,
                Health::Unhealthy,
                Health::Starting
            ]
        );
        // A late result for the old process changes nothing.
        assert_eq!(s.health_result("w", 42, true, None, 460).1, None);
        assert_eq!(s.services["w"].health.status, Health::Starting);
    }

    #[test]
    fn mark_only_marks_and_recovers() {
        let mut s = sup(HealthAction::Mark);
        s.health_due(0);
        probe(&mut s, 100, false);
        let (a, change) = probe(&mut s, 200, false);
        assert_eq!(change, Some(false));
        assert!(
            !a.iter().any(|a| matches!(a, Action::Signal { .. })),
            "{a:?}"
        );
        let (a, change) = probe(&mut s, 300, false);
        assert!(a.is_empty() && change.is_none(), "no repeated logs");
        assert_eq!(s.services["w"].health.failures, 3);
        assert!(matches!(
            s.services["w"].state,
            State::Running { pid: 42, .. }
        ));
        assert_eq!(s.services["w"].restarts, 0);
        assert_eq!(probe(&mut s, 400, true).1, Some(true));
        assert_eq!(s.services["w"].health.failures, 0);
    }

    #[test]
    fn not_ready_means_no_probes() {
        let mut s = sup(HealthAction::Mark);
        s.services.get_mut("w").expect("w").ready = false;
        assert!(s.health_due(0).is_empty());
        assert_eq!(s.health_next(), None);
        assert!(s.health_due(10_000).is_empty());
        s.services.get_mut("w").expect("w").ready = true;
        assert!(s.health_due(10_000).is_empty(), "armed when ready");
        assert_eq!(s.health_next(), Some(10_100));
    }

    #[test]
    fn a_reload_keeps_the_state_unless_the_check_changed() {
        let mut s = sup(HealthAction::Mark);
        s.health_due(0);
        probe(&mut s, 100, true);
        let mut plan = Plan::default();
        let mut spec = s.services["w"].spec.clone();
        spec.description = Some("same check".into());
        plan.services.insert("w".into(), spec.clone());
        let (a, out) = s.apply(&plan, 150);
        assert!(a.is_empty());
        assert_eq!(out["w"], super::super::Outcome::Updated);
        assert_eq!(s.services["w"].health.status, Health::Healthy);
        // Only the check changes: same pid, the record starts over.
        if let Some(h) = spec.health.as_mut() {
            h.retries = 5;
        }
        plan.services.insert("w".into(), spec);
        let (a, out) = s.apply(&plan, 200);
        assert!(a.is_empty(), "{a:?}");
        assert_eq!(out["w"], super::super::Outcome::Updated);
        assert!(matches!(
            s.services["w"].state,
            State::Running { pid: 42, .. }
        ));
        assert_eq!(s.services["w"].health.status, Health::Starting);
        assert!(s.health_due(200).is_empty());
        assert_eq!(s.health_next(), Some(300));
    }
}
