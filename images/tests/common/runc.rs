//! A container run by runc in the background for the container tests
//! (`container`, `oci_layout`): start a bundle, read its output, signal it,
//! wait for it; killed and deleted when dropped. Plus the boot-and-stop
//! checks both tests make of moonlit as the container's PID 1.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Waits until the text at `path` contains `needle`; returns the text.
pub fn wait_text(path: &Path, needle: &str, timeout: Duration) -> String {
    let until = Instant::now() + timeout;
    loop {
        let t = std::fs::read_to_string(path).unwrap_or_default();
        if t.contains(needle) {
            return t;
        }
        if Instant::now() >= until {
            panic!("timed out after {timeout:?} waiting for '{needle}' in the container's output:\n{t}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The exit code in moonlit's "shutdown complete ...; exiting with code C".
pub fn reported_code(t: &str) -> i32 {
    t.lines()
        .find_map(|l| l.split("exiting with code ").nth(1))
        .and_then(|c| c.trim().parse::<i32>().ok())
        .unwrap_or_else(|| panic!("moonlit did not report its exit code:\n{t}"))
}

/// A `runc run` in the background.
pub struct Container {
    runc: PathBuf,
    state: PathBuf,
    pub id: String,
    pub out_path: PathBuf,
    child: std::process::Child,
}

impl Container {
    /// `runc run --bundle BUNDLE` with its state and output file in `dir`.
    pub fn start(bundle: &Path, dir: &Path, id: &str) -> Container {
        let runc = super::require_program("runc");
        let state = dir.join("runc-state");
        let id = format!("{id}-{}", std::process::id());
        let out_path = dir.join("output.log");
        let out = std::fs::File::create(&out_path).expect("output file");
        let err = out.try_clone().expect("dup");
        let child = Command::new(&runc)
            .arg("--root")
            .arg(&state)
            .args(["run", "--bundle"])
            .arg(bundle)
            .arg(&id)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start runc");
        Container {
            runc,
            state,
            id,
            out_path,
            child,
        }
    }

    pub fn runc(&self, args: &[&str]) -> Output {
        Command::new(&self.runc)
            .arg("--root")
            .arg(&self.state)
            .args(args)
            .output()
            .expect("run runc")
    }

    pub fn kill(&self, sig: &str) -> Output {
        self.runc(&["kill", &self.id, sig])
    }

    /// Waits for runc to exit; returns its status and the output.
    pub fn wait(&mut self, timeout: Duration) -> (std::process::ExitStatus, String) {
        let until = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().expect("wait runc") {
                return (
                    st,
                    std::fs::read_to_string(&self.out_path).unwrap_or_default(),
                );
            }
            if Instant::now() >= until {
                let _ = self.kill("KILL");
                let _ = self.child.wait();
                panic!(
                    "the container did not end within {timeout:?}:\n{}",
                    std::fs::read_to_string(&self.out_path).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The checks of the `container` configuration: READY, the boot script
    /// ran (seeing `hostname`), both services up, PID 1 is moonlit; then
    /// `runc kill TERM` stops "second" before "first" (it needs first) and
    /// runc exits with the code moonlit reports, which is returned.
    pub fn boot_and_stop(&mut self, hostname: &str) -> i32 {
        let t = wait_text(&self.out_path, "moonlit: READY", Duration::from_secs(60));
        assert!(
            t.contains(&format!("container: boot script ran, hostname {hostname}")),
            "the boot script did not run (or not with hostname {hostname}):\n{t}"
        );
        wait_text(&self.out_path, "second: up", Duration::from_secs(30));
        wait_text(&self.out_path, "first: up", Duration::from_secs(30));
        let ps = self.runc(&["exec", &self.id, "/bin/cat", "/proc/1/cmdline"]);
        assert!(
            String::from_utf8_lossy(&ps.stdout).starts_with("/sbin/init"),
            "PID 1 is not moonlit: {ps:?}"
        );
        let k = self.kill("TERM");
        assert!(k.status.success(), "runc kill TERM failed: {k:?}");
        let (status, t) = self.wait(Duration::from_secs(60));
        assert!(t.contains("received SIGTERM"), "{t}");
        let second = t
            .find("second: got TERM")
            .unwrap_or_else(|| panic!("second was not stopped with TERM:\n{t}"));
        let first = t
            .find("first: got TERM")
            .unwrap_or_else(|| panic!("first was not stopped with TERM:\n{t}"));
        assert!(
            second < first,
            "services were not stopped in reverse dependency order (second needs first):\n{t}"
        );
        let reported = reported_code(&t);
        assert_eq!(
            status.code(),
            Some(reported),
            "runc's exit status differs from moonlit's report:\n{t}"
        );
        reported
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.kill("KILL");
            let _ = self.child.wait();
        }
        let _ = self.runc(&["delete", "-f", &self.id]);
    }
}
