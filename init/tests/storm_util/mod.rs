//! Helpers shared by the storm tests (`storms.rs`, `storms_limits.rs`).
#![allow(dead_code)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::Sandbox;

/// `MOONLIT_STORM_SCALE=long` selects the long sizes.
pub fn long() -> bool {
    std::env::var("MOONLIT_STORM_SCALE").is_ok_and(|v| v == "long")
}

/// `MOONLIT_STORM_SCALE=N`: an explicit round count.
pub fn scale_num() -> Option<usize> {
    std::env::var("MOONLIT_STORM_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
}

/// The CI size, the long size, or the explicit count.
pub fn scale(ci: usize, long_size: usize) -> usize {
    scale_num().unwrap_or(if long() { long_size } else { ci })
}

pub fn current_service(st: &Value, name: &str) -> Value {
    st["services"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["name"] == name)
        .cloned()
        .unwrap_or(Value::Null)
}

/// The pid of a service that is running (state running, a pid).
pub fn running_pid(st: &Value, name: &str) -> Option<u64> {
    let s = current_service(st, name);
    if s["state"] == "running" {
        s["pid"].as_u64()
    } else {
        None
    }
}

/// Namespace pid -> host pid of every process of the sandbox.
pub fn host_map(sb: &Sandbox) -> HashMap<u64, u32> {
    let mut m = HashMap::new();
    for (pid, _, _) in sb.ns_processes() {
        let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        if let Some(ns) = st
            .lines()
            .find(|l| l.starts_with("NSpid:"))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|n| n.parse().ok())
        {
            m.insert(ns, pid);
        }
    }
    m
}

pub fn map_pid(sb: &Sandbox, ns: u64) -> u32 {
    sb.host_pid(ns)
}

pub fn kill_host(pid: u32, sig: rustix::process::Signal) {
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).expect("pid"),
        sig,
    )
    .unwrap_or_else(|e| panic!("kill {pid}: {e}"));
}

/// The state letter of /proc/PID/stat.
pub fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let close = stat.rfind(')')?;
    stat[close + 2..].chars().next()
}

pub fn wait_proc_state(pid: u32, want: char, secs: u64) {
    let end = Instant::now() + Duration::from_secs(secs);
    while proc_state(pid) != Some(want) {
        assert!(
            Instant::now() < end,
            "process {pid} never reached state {want} (is {:?})",
            proc_state(pid)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub fn cmdline(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// Waits until the namespace holds no zombie; returns how many there were
/// at the first look. Panics if some stay.
pub fn wait_no_zombies(sb: &Sandbox, secs: u64) -> usize {
    let first = zombies(sb).len();
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        let z = zombies(sb);
        if z.is_empty() {
            return first;
        }
        assert!(
            Instant::now() < end,
            "zombies left in the namespace: {z:?}\nconsole:\n{}",
            sb.console()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn zombies(sb: &Sandbox) -> Vec<(u32, char, String)> {
    sb.ns_processes()
        .into_iter()
        .filter(|p| p.1 == 'Z')
        .collect()
}

pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// The fd count once transient descriptors (a client being closed) are gone.
pub fn settled_fd_count(pid: u32) -> usize {
    let mut n = fd_count(pid);
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(20));
        n = n.min(fd_count(pid));
    }
    n
}

pub fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("status")
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .expect("VmRSS")
}
