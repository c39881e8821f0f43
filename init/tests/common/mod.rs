//! Test harness: the real moonlit binary as PID 1 of fresh namespaces
//! (`moonlit run --sandbox`). Needs root; fails loudly without it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_moonlit");

pub fn require_root() {
    if !rustix::process::geteuid().is_root() {
        panic!("this test runs moonlit as PID 1 in new namespaces and needs root: run the suite as root");
    }
}

/// A fresh scratch directory.
pub fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("moonlit-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

pub struct Sandbox {
    pub child: Option<Child>,
    pub dir: PathBuf,
    pub sock: PathBuf,
    pub lines: Arc<Mutex<Vec<String>>>,
    done: Arc<Mutex<bool>>,
}

impl Sandbox {
    /// Writes the config files (path relative to the config dir, content)
    /// and boots moonlit on them in a sandbox.
    pub fn start(name: &str, files: &[(&str, &str)]) -> Sandbox {
        Self::start_with(name, files, &[])
    }

    /// As `start`, with extra arguments for `moonlit run` (e.g. --watch).
    pub fn start_with(name: &str, files: &[(&str, &str)], extra: &[&str]) -> Sandbox {
        Self::start_wrapped(name, files, extra, &[])
    }

    /// As `start_with`, with moonlit run under `wrapper` (a command that
    /// ends by running its arguments: `unshare -m sh -c '...; exec "$0" "$@"'`).
    pub fn start_wrapped(
        name: &str,
        files: &[(&str, &str)],
        extra: &[&str],
        wrapper: &[&str],
    ) -> Sandbox {
        require_root();
        let dir = scratch(name);
        let cfg = dir.join("config");
        for (p, content) in files {
            let path = cfg.join(p);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, content.replace("@DIR@", dir.to_str().expect("utf8")))
                .expect("write config");
        }
        std::fs::create_dir_all(&cfg).expect("cfg");
        let sock = dir.join("control.sock");
        let mut cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        let mut child = cmd
            .args(["run", "--sandbox"])
            .args(extra)
            .arg("--control")
            .arg(&sock)
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn moonlit");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let done = Arc::new(Mutex::new(false));
        for stream in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().expect("stderr")) as Box<dyn Read + Send>,
        ] {
            let l = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    match line {
                        Ok(s) => l.lock().expect("lock").push(s),
                        Err(_) => break,
                    }
                }
            });
        }
        let sb = Sandbox {
            child: Some(child),
            dir,
            sock,
            lines,
            done,
        };
        // The control socket appears once the init is up.
        let end = Instant::now() + Duration::from_secs(20);
        while !sb.sock.exists() {
            if Instant::now() > end {
                panic!("control socket never appeared; console:\n{}", sb.console());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        sb
    }

    pub fn console(&self) -> String {
        self.lines.lock().expect("lock").join("\n")
    }

    pub fn count(&self, pat: &str) -> usize {
        self.lines
            .lock()
            .expect("lock")
            .iter()
            .filter(|l| l.contains(pat))
            .count()
    }

    /// Waits for a console line containing `pat`; panics with the console on timeout.
    pub fn wait_line(&self, pat: &str, secs: u64) -> String {
        let end = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(l) = self
                .lines
                .lock()
                .expect("lock")
                .iter()
                .find(|l| l.contains(pat))
            {
                return l.clone();
            }
            if Instant::now() > end {
                panic!(
                    "no console line containing {pat:?} within {secs} s; console:\n{}",
                    self.console()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn ready(&self) {
        self.wait_line("moonlit: READY", 30);
    }

    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("ctl")
            .arg("--socket")
            .arg(&self.sock)
            .args(args)
            .output()
            .expect("run ctl")
    }

    pub fn status(&self) -> Value {
        let out = self.ctl(&["--json", "status"]);
        assert!(
            out.status.success(),
            "ctl status failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.console()
        );
        serde_json::from_slice(&out.stdout).expect("status json")
    }

    pub fn service(&self, name: &str) -> Value {
        service_in(&self.status(), name)
    }

    /// Polls `f` on the status until it holds.
    pub fn wait_status(&self, what: &str, secs: u64, f: impl Fn(&Value) -> bool) -> Value {
        let end = Instant::now() + Duration::from_secs(secs);
        loop {
            let st = self.status();
            if f(&st) {
                return st;
            }
            if Instant::now() > end {
                panic!(
                    "timed out waiting for {what}; last status: {st:#}\nconsole:\n{}",
                    self.console()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Raw request on the control socket; returns the reply lines.
    pub fn raw(&self, bytes: &[u8]) -> String {
        let mut s = UnixStream::connect(&self.sock).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let _ = s.write_all(bytes);
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    /// The host pid of the sandbox's PID 1.
    pub fn init_pid(&self) -> u32 {
        let parent = self.child.as_ref().expect("running").id();
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            let kids = std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"))
                .unwrap_or_default();
            if let Some(p) = kids.split_whitespace().next() {
                return p.parse().expect("pid");
            }
            assert!(Instant::now() < end, "sandbox PID 1 not found");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Every process of the sandbox's pid namespace: (host pid, state, comm).
    pub fn ns_processes(&self) -> Vec<(u32, char, String)> {
        let init = self.init_pid();
        let ns = std::fs::read_link(format!("/proc/{init}/ns/pid")).expect("ns link");
        let mut out = Vec::new();
        for e in std::fs::read_dir("/proc").expect("proc").flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if std::fs::read_link(format!("/proc/{pid}/ns/pid"))
                .ok()
                .as_ref()
                != Some(&ns)
            {
                continue;
            }
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
                continue;
            };
            let comm = stat[open + 1..close].to_string();
            let state = stat[close + 2..].chars().next().unwrap_or('?');
            out.push((pid, state, comm));
        }
        out
    }

    /// Powers off through the control socket and returns the exit code.
    pub fn poweroff(&mut self, extra: &[&str]) -> i32 {
        let mut args = vec!["poweroff"];
        args.extend_from_slice(extra);
        let out = self.ctl(&args);
        assert!(
            out.status.success(),
            "ctl poweroff: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.wait_exit(30)
    }

    pub fn wait_exit(&mut self, secs: u64) -> i32 {
        let mut child = self.child.take().expect("running");
        let end = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(st) = child.try_wait().expect("wait") {
                // Let the reader threads take the last lines.
                std::thread::sleep(Duration::from_millis(100));
                *self.done.lock().expect("lock") = true;
                return st.code().unwrap_or(-1);
            }
            if Instant::now() > end {
                let _ = child.kill();
                panic!(
                    "moonlit did not exit within {secs} s; console:\n{}",
                    self.console()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Writes a file of the configuration (path relative to the config dir).
    pub fn write(&self, rel: &str, content: &str) {
        let p = self.dir.join("config").join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(
            &p,
            content.replace("@DIR@", self.dir.to_str().expect("utf8")),
        )
        .expect("write");
    }

    /// `ctl reload ARGS` → (exit code, parsed JSON reply).
    pub fn reload(&self, args: &[&str]) -> (i32, Value) {
        let mut a = vec!["--json", "reload"];
        a.extend_from_slice(args);
        let out = self.ctl(&a);
        let v = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("reload reply: {}", String::from_utf8_lossy(&out.stdout)));
        (out.status.code().unwrap_or(-1), v)
    }

    /// Service name -> pid (ns pids) of every running service.
    pub fn pids(&self) -> std::collections::BTreeMap<String, u64> {
        self.status()["services"]
            .as_array()
            .expect("services")
            .iter()
            .filter_map(|s| Some((s["name"].as_str()?.to_string(), s["pid"].as_u64()?)))
            .collect()
    }

    /// The host pid of a process whose pid in the sandbox is `ns_pid`.
    pub fn host_pid(&self, ns_pid: u64) -> u32 {
        for (pid, _, _) in self.ns_processes() {
            let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            if let Some(l) = st.lines().find(|l| l.starts_with("NSpid:")) {
                if l.split_whitespace().last() == Some(&ns_pid.to_string()) {
                    return pid;
                }
            }
        }
        panic!("no process {ns_pid} in the sandbox");
    }

    pub fn kill(&self, ns_pid: u64, sig: rustix::process::Signal) {
        let p = self.host_pid(ns_pid);
        rustix::process::kill_process(rustix::process::Pid::from_raw(p as i32).expect("pid"), sig)
            .expect("kill");
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // moonlit run forwards TERM to the sandbox's PID 1.
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_raw(c.id() as i32).expect("pid"),
                rustix::process::Signal::TERM,
            );
            let end = Instant::now() + Duration::from_secs(15);
            while Instant::now() < end {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The service `name` of a status document (`ctl status --json`).
pub fn service_in(status: &Value, name: &str) -> Value {
    status["services"]
        .as_array()
        .expect("services")
        .iter()
        .find(|s| s["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no service {name} in status"))
}

pub fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// `moonlit check DIR`: validates a configuration without booting it.
pub fn check(dir: &Path) -> Output {
    Command::new(BIN)
        .arg("check")
        .arg(dir)
        .output()
        .expect("run moonlit check")
}
