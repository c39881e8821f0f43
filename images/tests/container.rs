//! moonlit as PID 1 of a real OCI container: runc (Debian's package) runs
//! the bundle made by `moonlit_images::oci`; the configuration's services
//! start; `runc kill ID TERM` makes moonlit stop them in reverse dependency
//! order, and runc's exit status is the code moonlit reports (the main
//! service's exit code).
//!
//! Needs root and runc (images/setup.sh).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use moonlit_images::{oci, rootfs};

fn wait_text(path: &std::path::Path, needle: &str, timeout: Duration) -> String {
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

struct Container {
    runc: std::path::PathBuf,
    state: std::path::PathBuf,
    id: String,
    out_path: std::path::PathBuf,
    child: std::process::Child,
}

impl Container {
    fn runc(&self, args: &[&str]) -> std::process::Output {
        Command::new(&self.runc)
            .arg("--root")
            .arg(&self.state)
            .args(args)
            .output()
            .expect("run runc")
    }

    fn kill(&self, sig: &str) -> std::process::Output {
        self.runc(&["kill", &self.id, sig])
    }

    /// Waits for runc to exit; returns its status and the output.
    fn wait(&mut self, timeout: Duration) -> (std::process::ExitStatus, String) {
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

/// The exit code in moonlit's "shutdown complete ...; exiting with code C".
fn reported_code(t: &str) -> i32 {
    t.lines()
        .find_map(|l| l.split("exiting with code ").nth(1))
        .and_then(|c| c.trim().parse::<i32>().ok())
        .unwrap_or_else(|| panic!("moonlit did not report its exit code:\n{t}"))
}

/// Builds the bundle of `config` and starts it with `runc run`.
fn run_container(name: &str, config: &str) -> Container {
    require_root();
    let runc = require_program("runc");
    let dir = scratch(name);
    let mut s = spec("sbin/init", &configs().join(config), true);
    s.module_tree = None;
    let tree = rootfs::build(&s).unwrap_or_else(|e| panic!("rootfs: {e}"));
    let bundle = dir.join("bundle");
    oci::make_bundle(&tree.archive, &bundle, &oci::BundleOptions::default())
        .unwrap_or_else(|e| panic!("bundle: {e}"));
    let state = dir.join("runc-state");
    let id = format!("moonlit-test-{}", std::process::id());
    let out_path = dir.join("output.log");
    let out = std::fs::File::create(&out_path).expect("output file");
    let err = out.try_clone().expect("dup");
    let child = Command::new(&runc)
        .arg("--root")
        .arg(&state)
        .args(["run", "--bundle"])
        .arg(&bundle)
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

#[test]
fn runc_runs_moonlit_as_pid1_and_sigterm_stops_services_in_order() {
    let mut c = run_container("container", "container");
    let out_path = c.out_path.clone();

    let t = wait_text(&out_path, "moonlit: READY", Duration::from_secs(60));
    assert!(
        t.contains("container: boot script ran, hostname moonlit"),
        "{t}"
    );
    wait_text(&out_path, "second: up", Duration::from_secs(30));
    wait_text(&out_path, "first: up", Duration::from_secs(30));
    // PID 1 of the container is moonlit.
    let ps = c.runc(&["exec", &c.id, "/bin/cat", "/proc/1/cmdline"]);
    assert!(
        String::from_utf8_lossy(&ps.stdout).starts_with("/sbin/init"),
        "PID 1 is not moonlit: {ps:?}"
    );

    let k = c.kill("TERM");
    assert!(k.status.success(), "runc kill TERM failed: {k:?}");
    let (status, t) = c.wait(Duration::from_secs(60));
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
}

/// The main service ends by itself with code 7: moonlit stops the others
/// and exits with 7, which runc passes on (so the equality above is not
/// merely 0 == 0).
#[test]
fn the_main_services_exit_code_is_the_containers() {
    let mut c = run_container("container-exit", "container-exit");
    let (status, t) = c.wait(Duration::from_secs(60));
    assert!(t.contains("job: done"), "{t}");
    assert!(t.contains("first: got TERM"), "first was not stopped:\n{t}");
    assert_eq!(reported_code(&t), 7, "{t}");
    assert_eq!(
        status.code(),
        Some(7),
        "runc's exit status is not the main service's code:\n{t}"
    );
}
