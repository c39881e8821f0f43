//! Timer-started services: the schedule of every service with `timer =
//! {...}`, triggering each when it is due (the supervisor never starts a
//! run twice), the last runs of persistent timers in the state directory,
//! and what `ctl status` shows. Calendar arithmetic is
//! `moonlit_config::timers`; the schedule is in Unix milliseconds and the
//! loop's deadline is derived from it at each turn (a clock step moves it).

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::time::Duration;

use moonlit_config::timers::{TimerSpec, Zone};
use serde::Serialize;
use serde_json::{json, Value};

use super::{now_ms, Init};
use crate::supervisor::Ms;

/// Unix time in milliseconds.
fn unix_ms() -> i64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
    t.tv_sec * 1000 + t.tv_nsec / 1_000_000
}

/// A random delay up to `max` (std's per-process random hash keys).
fn jitter(max: Duration) -> i64 {
    let ms = max.as_millis() as u64;
    if ms == 0 {
        return 0;
    }
    let r = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    (r % ms) as i64
}

/// One service's schedule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    pub spec: TimerSpec,
    /// When it is next due (Unix ms).
    pub next: Option<i64>,
    /// When it last triggered (Unix ms), across reboots if persistent.
    pub last: Option<i64>,
    /// The `on_boot` trigger has happened.
    pub boot_done: bool,
}

/// Every timer of the configuration.
#[derive(Debug, Default)]
pub struct Timers {
    zone: Zone,
    state_dir: PathBuf,
    /// Unix ms of this boot (on_boot counts from it).
    boot: i64,
    entries: BTreeMap<String, Entry>,
    /// Last runs read from the state file (for persistent timers).
    persisted: BTreeMap<String, i64>,
    /// The state file could not be written (said once).
    write_failed: bool,
    /// That, to be logged.
    error: Option<String>,
}

#[derive(Serialize)]
struct StateFile {
    version: u32,
    last: BTreeMap<String, i64>,
}

impl moonlit_net::json_decode::Decode for StateFile {
    fn decode(v: &moonlit_net::json_decode::Value) -> moonlit_net::json_decode::Result<Self> {
        let o = moonlit_net::json_decode::Obj::of(v, "the timers' state file")?;
        Ok(StateFile {
            version: o.get("version")?,
            last: o.get("last")?,
        })
    }
}

impl Timers {
    /// The state directory: `MOONLIT_STATE_DIR`, `moonlit.state=` on the
    /// kernel command line, else /var/lib/moonlit. `boot_mono` is the
    /// monotonic ms at which moonlit started.
    pub fn new(cmdline: &[(String, String)], boot_mono: Ms) -> Timers {
        let state_dir = std::env::var("MOONLIT_STATE_DIR")
            .ok()
            .or_else(|| {
                cmdline
                    .iter()
                    .find(|(k, _)| k == "moonlit.state")
                    .map(|(_, v)| v.clone())
            })
            .unwrap_or_else(|| "/var/lib/moonlit".into());
        let state_dir = PathBuf::from(state_dir);
        let persisted = std::fs::read(state_dir.join("timers.json"))
            .ok()
            .and_then(|b| moonlit_net::json_decode::from_slice::<StateFile>(&b).ok())
            .map(|s| s.last)
            .unwrap_or_default();
        Timers {
            zone: Zone::local(),
            state_dir,
            boot: unix_ms() - (now_ms().saturating_sub(boot_mono)) as i64,
            entries: BTreeMap::new(),
            persisted,
            write_failed: false,
            error: None,
        }
    }

    /// The next trigger of `e` after now.
    fn schedule(&self, e: &Entry, now: i64) -> Option<i64> {
        let s = &e.spec;
        let mut due: Vec<i64> = Vec::new();
        if let (Some(b), false) = (s.on_boot, e.boot_done) {
            due.push(self.boot + b.as_millis() as i64);
        }
        if let Some(every) = s.every {
            let base = e.last.unwrap_or(self.boot);
            if e.last.is_some() || s.on_boot.is_none() {
                due.push(base + every.as_millis() as i64 + jitter(s.randomized_delay));
            }
        }
        if !s.calendar.is_empty() {
            // A persistent timer that missed an elapse while off runs now.
            if let (true, Some(last)) = (s.persistent, e.last) {
                if let Some(n) = s.next_calendar(last.div_euclid(1000), &self.zone) {
                    if n * 1000 <= now {
                        due.push(now);
                    }
                }
            }
            if let Some(n) = s.next_calendar(now.div_euclid(1000), &self.zone) {
                due.push(n * 1000 + jitter(s.randomized_delay));
            }
        }
        due.into_iter().min()
    }

    /// Takes the timers of the services now declared: an unchanged timer
    /// keeps its schedule; a new or changed one is scheduled afresh.
    pub fn sync<'a>(&mut self, specs: impl Iterator<Item = (&'a String, &'a Option<TimerSpec>)>) {
        let now = unix_ms();
        let mut next = BTreeMap::new();
        for (name, spec) in specs {
            let Some(spec) = spec else { continue };
            let e = match self.entries.remove(name) {
                Some(e) if e.spec == *spec => e,
                old => {
                    let mut e = Entry {
                        spec: spec.clone(),
                        next: None,
                        last: old
                            .and_then(|o| o.last)
                            .or_else(|| self.persisted.get(name).copied()),
                        boot_done: false,
                    };
                    e.next = self.schedule(&e, now);
                    e
                }
            };
            next.insert(name.clone(), e);
        }
        self.entries = next;
    }

    /// The services whose timers are due; their next times are set.
    pub fn take_due(&mut self) -> Vec<String> {
        let now = unix_ms();
        let names: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| e.next.is_some_and(|n| n <= now))
            .map(|(n, _)| n.clone())
            .collect();
        let mut persist = false;
        for n in &names {
            let Some(mut e) = self.entries.remove(n) else {
                continue;
            };
            e.last = Some(now);
            if e.spec.on_boot.is_some() {
                e.boot_done = true;
            }
            e.next = self.schedule(&e, now);
            persist |= e.spec.persistent;
            if e.spec.persistent {
                self.persisted.insert(n.clone(), now);
            }
            self.entries.insert(n.clone(), e);
        }
        if persist {
            self.error = self.save();
        }
        names
    }

    fn save(&mut self) -> Option<String> {
        let doc = StateFile {
            version: 1,
            last: self.persisted.clone(),
        };
        let path = self.state_dir.join("timers.json");
        let tmp = self.state_dir.join("timers.json.tmp");
        let r = std::fs::create_dir_all(&self.state_dir)
            .and_then(|()| std::fs::write(&tmp, serde_json::to_vec(&doc).unwrap_or_default()))
            .and_then(|()| std::fs::rename(&tmp, &path));
        match r {
            Ok(()) => {
                self.write_failed = false;
                None
            }
            Err(e) if !self.write_failed => {
                self.write_failed = true;
                Some(format!("timers: cannot write {}: {e}", path.display()))
            }
            Err(_) => None,
        }
    }

    /// The loop's deadline (monotonic ms) for the next trigger.
    pub fn next_deadline(&self) -> Option<Ms> {
        let next = self.entries.values().filter_map(|e| e.next).min()?;
        let wait = (next - unix_ms()).max(0) as u64;
        // A clock step is noticed within a minute.
        Some(now_ms() + wait.min(60_000))
    }

    /// What `ctl status` shows of `name`'s timer.
    pub fn json(&self, name: &str) -> Value {
        let Some(e) = self.entries.get(name) else {
            return Value::Null;
        };
        let now = unix_ms();
        json!({
            "next": e.next.map(|n| n as f64 / 1000.0),
            "next_local": e.next.map(|n| self.zone.format(n.div_euclid(1000))),
            "next_in_s": e.next.map(|n| ((n - now).max(0)) as f64 / 1000.0),
            "last": e.last.map(|n| n as f64 / 1000.0),
            "calendar": e.spec.calendar,
            "persistent": e.spec.persistent,
        })
    }

    /// For a re-exec: the schedule as it is.
    pub fn export(&self) -> BTreeMap<String, Entry> {
        self.entries.clone()
    }

    /// After a re-exec: the schedule the old image had.
    pub fn import(&mut self, entries: BTreeMap<String, Entry>) {
        self.entries = entries;
    }
}

impl Init {
    /// The plan in force changed: its timers are synced.
    pub(super) fn sync_timers(&mut self) {
        let specs: Vec<(String, Option<TimerSpec>)> = self
            .plan
            .services
            .iter()
            .map(|(n, s)| (n.clone(), s.timer.clone()))
            .collect();
        self.timers.sync(specs.iter().map(|(n, t)| (n, t)));
    }

    /// Triggers the services whose timers are due. True if any was.
    pub(super) fn fire_timers(&mut self) -> bool {
        if !self.boot_script_done || self.sup.shutting_down {
            return false;
        }
        let due = self.timers.take_due();
        if let Some(e) = self.timers.save_error() {
            self.log(&e);
        }
        for name in &due {
            match self.sup.trigger(name) {
                Ok("starting") | Ok("waiting for its dependencies") => {
                    self.log(&format!("{name}: timer elapsed, starting"))
                }
                Ok(why) => self.log(&format!("{name}: timer elapsed, not started: {why}")),
                Err(e) => self.log(&format!("{name}: timer: {e}")),
            }
        }
        !due.is_empty()
    }
}

impl Timers {
    /// A state-file error to log (once), from the last save.
    pub fn save_error(&mut self) -> Option<String> {
        self.error.take()
    }
}
