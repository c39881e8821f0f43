//! The loop's side of Lua tasks beyond `sleep` and `wait`: `task()`
//! starting a task beside the caller, `park` (a task waiting for another,
//! `join`), waits on descriptors (`wait_readable`, and the sys fd methods
//! that wait instead of blocking), their timeouts, and `:cancel()`.
//!
//! A wait on a descriptor registers a duplicate of it with epoll
//! (one-shot, for that wait only), so two tasks may wait on the same fd and
//! Lua closing its fd meanwhile cannot leave a stale registration behind.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use moonlit_config::runtime::{Request, TaskId, MAX_TASKS};
use rustix::event::epoll::{self, EventData, EventFlags};
use serde_json::{json, Value};

use super::{now_ms, Init, T_MASK};
use crate::supervisor::Ms;

/// epoll token of a task's descriptor wait: `T_LUAFD | task id`.
pub(super) const T_LUAFD: u64 = 7 << 32;

/// What a task waiting here is resumed with.
#[derive(Debug)]
enum Answer {
    /// Woken / ready (true) or timed out (false).
    Bool(bool),
    /// `task()` started this task.
    Started(TaskId),
    /// `task()` refused: nil and the reason.
    Refused(String),
}

/// Tasks waiting on Lua or on descriptors.
#[derive(Debug, Default)]
pub(super) struct LuaWaits {
    parked: HashMap<i64, Vec<TaskId>>,
    fds: HashMap<TaskId, OwnedFd>,
    deadlines: BTreeMap<(Ms, u64), TaskId>,
    deadline_of: HashMap<TaskId, (Ms, u64)>,
    ready: VecDeque<(TaskId, Answer)>,
    seq: u64,
}

impl LuaWaits {
    pub(super) fn next_deadline(&self) -> Option<Ms> {
        if !self.ready.is_empty() {
            return Some(now_ms());
        }
        self.deadlines.keys().next().map(|k| k.0)
    }

    fn set_deadline(&mut self, id: TaskId, timeout: Option<Duration>) {
        if let Some(t) = timeout {
            self.seq += 1;
            let k = (now_ms() + t.as_millis() as u64, self.seq);
            self.deadlines.insert(k, id);
            self.deadline_of.insert(id, k);
        }
    }

    /// Forgets what `id` waits on (its fd leaves epoll).
    fn clear(&mut self, epfd: &OwnedFd, id: TaskId) {
        if let Some(k) = self.deadline_of.remove(&id) {
            self.deadlines.remove(&k);
        }
        if let Some(fd) = self.fds.remove(&id) {
            let _ = epoll::delete(epfd, fd.as_fd());
        }
        for v in self.parked.values_mut() {
            v.retain(|t| *t != id);
        }
        self.parked.retain(|_, v| !v.is_empty());
    }
}

impl Init {
    /// A task asked for one of the waits this module serves.
    pub(super) fn lua_wait(&mut self, id: TaskId, req: Request) {
        match req {
            Request::Task { body, name } => {
                if self.rt.task_count() >= MAX_TASKS {
                    let m = format!("task: too many tasks (the limit is {MAX_TASKS})");
                    self.waits.ready.push_back((id, Answer::Refused(m)));
                    return;
                }
                let (nid, step) = self.rt.start_task(&name, body, ());
                self.task_names.insert(nid, name);
                self.handle_step(nid, step);
                self.waits.ready.push_back((id, Answer::Started(nid)));
            }
            Request::Park { key, timeout } => {
                self.waits.parked.entry(key).or_default().push(id);
                self.waits.set_deadline(id, timeout);
            }
            Request::Fd { fd, write, timeout } => {
                let Ok(dup) = crate::sys::dup_raw(fd) else {
                    // A bad descriptor: let the call that follows report it.
                    self.waits.ready.push_back((id, Answer::Bool(true)));
                    return;
                };
                let ev = if write {
                    EventFlags::OUT
                } else {
                    EventFlags::IN | EventFlags::RDHUP
                } | EventFlags::ONESHOT;
                match epoll::add(&self.epoll, &dup, EventData::new_u64(T_LUAFD | id), ev) {
                    Ok(()) => {
                        self.waits.fds.insert(id, dup);
                        self.waits.set_deadline(id, timeout);
                    }
                    // A regular file (EPERM) is always ready.
                    Err(_) => self.waits.ready.push_back((id, Answer::Bool(true))),
                }
            }
            _ => {}
        }
    }

    /// A descriptor a task waits on is ready.
    pub(super) fn on_lua_fd(&mut self, token: u64) {
        let id = token & T_MASK;
        if self.waits.fds.contains_key(&id) {
            self.waits.clear(&self.epoll, id);
            self.waits.ready.push_back((id, Answer::Bool(true)));
        }
    }

    /// Cancels, wakes and timeouts; then resumes what is ready. True if a
    /// task ran.
    pub(super) fn lua_waits_due(&mut self) -> bool {
        for id in self.rt.take_cancels() {
            self.cancel_task(id);
        }
        for key in self.rt.take_wakes() {
            if let Some(ids) = self.waits.parked.remove(&key) {
                for id in ids {
                    if let Some(k) = self.waits.deadline_of.remove(&id) {
                        self.waits.deadlines.remove(&k);
                    }
                    self.waits.ready.push_back((id, Answer::Bool(true)));
                }
            }
        }
        let now = now_ms();
        let due: Vec<TaskId> = self
            .waits
            .deadlines
            .range(..=(now, u64::MAX))
            .map(|(_, id)| *id)
            .collect();
        for id in due {
            self.waits.clear(&self.epoll, id);
            self.waits.ready.push_back((id, Answer::Bool(false)));
        }
        // Only what is ready now: tasks made ready by these run next turn.
        let n = self.waits.ready.len();
        for _ in 0..n {
            let Some((id, answer)) = self.waits.ready.pop_front() else {
                break;
            };
            let step = match answer {
                Answer::Bool(b) => self.rt.resume(id, b),
                Answer::Started(t) => self.rt.resume(id, t),
                Answer::Refused(m) => self.rt.resume(id, (mlua::Value::Nil, m)),
            };
            self.handle_step(id, step);
        }
        n > 0
    }

    /// Ends task `id` wherever it waits (`h:cancel()`).
    fn cancel_task(&mut self, id: TaskId) {
        self.sleepers.retain(|_, (t, _)| *t != id);
        self.pid_waiters.retain(|_, t| *t != id);
        self.net_waiters.retain(|(t, _)| *t != id);
        self.yielders.retain(|t| *t != id);
        self.waits.clear(&self.epoll, id);
        self.waits.ready.retain(|(t, _)| *t != id);
        if !self.rt.cancel(id) {
            return;
        }
        let name = self
            .task_names
            .remove(&id)
            .unwrap_or_else(|| "a task".into());
        if self.opts.debug {
            self.log(&format!("{name}: cancelled"));
        }
        if let Some(client) = self.evals.remove(&id) {
            if let Some(c) = self.control.as_mut() {
                c.send(
                    client,
                    &json!({"v": super::PROTOCOL_VERSION, "ok": false, "error": "cancelled"}),
                    true,
                );
            }
        }
        if self.boot_task == Some(id) {
            self.boot_script_finished();
        }
    }

    /// The live tasks for `ctl status`.
    pub(super) fn tasks_json(&self) -> Value {
        Value::Array(
            self.rt
                .task_list()
                .into_iter()
                .map(|(id, name)| {
                    let waits = if self.waits.fds.contains_key(&id) {
                        "fd"
                    } else if self.waits.parked.values().any(|v| v.contains(&id)) {
                        "task"
                    } else if self.sleepers.values().any(|(t, _)| *t == id) {
                        "sleep"
                    } else if self.pid_waiters.values().any(|t| *t == id) {
                        "process"
                    } else if self.net_waiters.iter().any(|(t, _)| *t == id) {
                        "netlink"
                    } else {
                        "turn"
                    };
                    json!({ "id": id, "name": name, "waits": waits })
                })
                .collect(),
        )
    }
}
