//! The boot record PID 1 keeps for `moonlit analyze`: when each boot step
//! ran and when each service was first spawned and first became ready, in
//! ms after t0 (the instant PID 1 started its clock, right after exec).
//!
//! PID 1 only fills it in: [`BootRecord::step`] at each timed step,
//! [`BootRecord::observe`] once per turn of the loop until READY, where
//! [`BootRecord::finish`] freezes it. It is a small plain value: it goes
//! into `ctl status --json` (key `boot`) and into the re-exec handover, so
//! the record of the first boot outlives a re-exec; a reload never touches
//! it. Everything computed from it (blame, critical chain, the chart) is the
//! client's (`analyze.rs`).

use std::collections::HashMap;

use moonlit_config::plan::Readiness;
use serde::Serialize;

use crate::supervisor::{Ms, State, Supervisor};

impl moonlit_net::json_decode::Decode for BootRecord {
    fn decode(v: &moonlit_net::json_decode::Value) -> moonlit_net::json_decode::Result<Self> {
        let o = moonlit_net::json_decode::Obj::of(v, "a boot record")?;
        Ok(BootRecord {
            t0: o.get("t0")?,
            t0_boottime_ms: o.get("t0_boottime_ms")?,
            exec_ms: o.get("exec_ms")?,
            steps: o.get("steps")?,
            services: o.get("services")?,
            ready_ms: o.get("ready_ms")?,
            frozen: o.get("frozen")?,
            lost: o.or_default("lost")?,
            index: HashMap::new(),
        })
    }
}
moonlit_net::deserialize_by_decode!(BootRecord);

/// One timed step of the boot (stage 1, the Lua runtime, the modules,
/// init.lua, the network, the services).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    pub name: String,
    pub start_ms: Ms,
    pub end_ms: Ms,
}

/// One service's first start during the boot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ServiceTimes {
    /// Its first process was spawned.
    pub spawn_ms: Option<Ms>,
    /// It first counted as up for dependents: running and ready, or (a
    /// oneshot) exited 0.
    pub ready_ms: Option<Ms>,
    /// Its dependencies as declared when it was first spawned.
    pub after: Vec<String>,
    pub requires: Vec<String>,
    /// How its readiness was decided: started, notify, tcp, path, forking,
    /// oneshot.
    pub kind: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BootRecord {
    /// CLOCK_MONOTONIC at t0, in ms (what `now_ms` counts in).
    pub t0: Ms,
    /// CLOCK_BOOTTIME at t0, in ms: the kernel's time since boot then, and
    /// what the console's line stamps count in.
    pub t0_boottime_ms: Ms,
    /// From the process's start (`/proc/self/stat` starttime, 1/CLK_TCK
    /// resolution) to t0; none when /proc could not tell.
    pub exec_ms: Option<Ms>,
    pub steps: Vec<Step>,
    /// Services in the order of their first spawn.
    pub services: Vec<(String, ServiceTimes)>,
    /// The whole system's READY mark.
    pub ready_ms: Option<Ms>,
    /// No more changes: READY was reached, or this image took over by a
    /// re-exec (which does not go through READY again).
    pub frozen: bool,
    /// The record could not be carried over (a re-exec from a binary that
    /// kept none).
    pub lost: bool,
    /// Name -> position in `services`, while the boot goes on.
    #[serde(skip)]
    index: HashMap<String, usize>,
}

/// CLOCK_BOOTTIME minus CLOCK_MONOTONIC, in ms (time spent suspended).
fn boottime_offset() -> i64 {
    let ms = |id| {
        let t = rustix::time::clock_gettime(id);
        t.tv_sec * 1000 + t.tv_nsec / 1_000_000
    };
    let mono = ms(rustix::time::ClockId::Monotonic);
    ms(rustix::time::ClockId::Boottime) - mono
}

/// This process's start in ms since boot, from `/proc/self/stat`.
fn process_start_ms() -> Option<Ms> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces and parentheses: fields follow the
    // last ')'. starttime is field 22, the 20th after the name.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let ticks: u64 = rest.split_whitespace().nth(19)?.parse().ok()?;
    let hz = rustix::param::clock_ticks_per_second();
    (hz > 0).then(|| ticks * 1000 / hz)
}

fn kind(spec: &moonlit_config::plan::ServiceSpec) -> &'static str {
    if spec.oneshot {
        return "oneshot";
    }
    match spec.readiness {
        Readiness::Started if spec.forking => "forking",
        Readiness::Started => "started",
        Readiness::Notify => "notify",
        Readiness::Tcp { .. } => "tcp",
        Readiness::Path { .. } => "path",
    }
}

impl BootRecord {
    /// A record for a boot whose clock started at `t0` (monotonic ms),
    /// stage 1 having taken its first `stage1_ms`.
    pub fn new(t0: Ms, stage1_ms: Ms) -> BootRecord {
        let t0_boottime = (t0 as i64 + boottime_offset()).max(0) as Ms;
        BootRecord {
            t0,
            t0_boottime_ms: t0_boottime,
            exec_ms: process_start_ms().map(|s| t0_boottime.saturating_sub(s)),
            steps: vec![Step {
                name: "stage 1".into(),
                start_ms: 0,
                end_ms: stage1_ms,
            }],
            ..Default::default()
        }
    }

    /// The record a re-exec carried over: the new image does not boot
    /// again, so nothing is added (a boot not READY then stays so).
    pub fn adopted(mut self) -> BootRecord {
        self.frozen = true;
        self
    }

    /// What a re-exec from a binary without a record leaves.
    pub fn lost() -> BootRecord {
        BootRecord {
            frozen: true,
            lost: true,
            ..Default::default()
        }
    }

    fn rel(&self, t: Ms) -> Ms {
        t.saturating_sub(self.t0)
    }

    /// A boot step ran from `since` to `now` (monotonic ms).
    pub fn step(&mut self, name: &str, since: Ms, now: Ms) {
        if self.frozen {
            return;
        }
        let (start_ms, end_ms) = (self.rel(since), self.rel(now));
        self.steps.push(Step {
            name: name.to_string(),
            start_ms,
            end_ms,
        });
    }

    /// Notes first spawns and first readiness the supervisor shows at
    /// `now` (called once per turn of the loop, so "ready" is the turn's).
    pub fn observe(&mut self, sup: &Supervisor, now: Ms) {
        if self.frozen {
            return;
        }
        for name in sup.order() {
            let Some(s) = sup.services.get(name) else {
                continue;
            };
            let since = match s.state {
                State::Running { pid, since } if pid != 0 => Some(since),
                _ => None,
            };
            let i = match self.index.get(name) {
                Some(i) => *i,
                None => {
                    let Some(since) = since else { continue };
                    self.services.push((
                        name.clone(),
                        ServiceTimes {
                            spawn_ms: Some(self.rel(since)),
                            ready_ms: None,
                            after: s.spec.after.clone(),
                            requires: s.spec.requires.clone(),
                            kind: kind(&s.spec).into(),
                        },
                    ));
                    self.index.insert(name.clone(), self.services.len() - 1);
                    self.services.len() - 1
                }
            };
            let t = &self.services[i].1;
            if t.ready_ms.is_some() || !s.up() {
                continue;
            }
            // Ready at its exec: the spawn's time, not the turn's end.
            let at = match since {
                Some(since) if t.kind == "started" => since,
                _ => now,
            };
            let at = self.rel(at);
            self.services[i].1.ready_ms = Some(at);
        }
    }

    /// The READY mark at `now`; nothing changes after it.
    pub fn finish(&mut self, now: Ms) {
        if self.frozen {
            return;
        }
        self.ready_ms = Some(self.rel(now));
        self.frozen = true;
        self.index = HashMap::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_start_is_before_now() {
        let start = process_start_ms().expect("/proc/self/stat starttime");
        let now = (crate::init::now_ms() as i64 + boottime_offset()) as Ms;
        assert!(start <= now, "{start} > {now}");
    }

    #[test]
    fn observe_takes_first_spawn_and_first_readiness_per_kind() {
        use crate::supervisor::tests::{spec, sup};
        use moonlit_config::spawn::ExitStatus;
        let mut base = spec("base");
        base.readiness = Readiness::Notify;
        let mut w = spec("w");
        w.after = vec!["base".into()];
        let mut o = spec("o");
        o.oneshot = true;
        let mut s = sup(vec![base, w, o]);
        let mut r = BootRecord {
            t0: 1000,
            ..Default::default()
        };
        s.step(1004);
        s.spawned("base", Ok(10), 1005);
        s.spawned("o", Ok(11), 1005);
        r.observe(&s, 1006);
        let t = |r: &BootRecord, n: &str| {
            r.services
                .iter()
                .find(|(name, _)| name == n)
                .map(|(_, t)| (t.spawn_ms, t.ready_ms, t.kind.clone()))
        };
        assert_eq!(t(&r, "base"), Some((Some(5), None, "notify".into())));
        assert_eq!(t(&r, "o"), Some((Some(5), None, "oneshot".into())));
        assert_eq!(t(&r, "w"), None, "not spawned yet");
        // The oneshot is up at its exit 0, base at READY=1.
        s.exited(11, ExitStatus::Exited(0), 1050);
        r.observe(&s, 1051);
        assert!(s.mark_ready("base").is_some());
        r.observe(&s, 1300);
        assert_eq!(t(&r, "o").and_then(|t| t.1), Some(51));
        assert_eq!(t(&r, "base").and_then(|t| t.1), Some(300));
        // A plain service is ready at its spawn, not at the turn's end.
        s.step(1301);
        s.spawned("w", Ok(12), 1301);
        r.observe(&s, 1320);
        assert_eq!(t(&r, "w"), Some((Some(301), Some(301), "started".into())));
        assert_eq!(r.services[2].1.after, vec!["base".to_string()]);
        // Frozen at READY: a restart later changes nothing.
        r.finish(1400);
        s.exited(12, ExitStatus::Exited(1), 1500);
        s.step(1500);
        s.spawned("w", Ok(13), 1501);
        r.observe(&s, 1502);
        assert_eq!(t(&r, "w"), Some((Some(301), Some(301), "started".into())));
        assert_eq!(r.ready_ms, Some(400));
    }

    #[test]
    fn frozen_record_ignores_steps() {
        let mut r = BootRecord {
            t0: 1000,
            ..Default::default()
        };
        r.step("modules", 1010, 1030);
        r.finish(1100);
        r.step("late", 1200, 1300);
        assert_eq!(
            r.steps,
            vec![Step {
                name: "modules".into(),
                start_ms: 10,
                end_ms: 30
            }]
        );
        assert_eq!(r.ready_ms, Some(100));
    }
}
