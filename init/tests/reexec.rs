//! Re-exec of PID 1 with its state, as PID 1 of fresh namespaces (root).

mod common;

use std::time::Duration;

use common::{Sandbox, BIN};
use rustix::process::Signal;

fn fds_of(pid: u32) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd dir")
        .flatten()
        .map(|e| {
            let target = std::fs::read_link(e.path())
                .map(|t| t.display().to_string())
                .unwrap_or_default();
            // pipe:[123] and socket:[456] differ by inode only: keep the kind.
            target.split(':').next().unwrap_or("").to_string()
        })
        .collect();
    v.sort();
    v
}

/// The descriptors once transient ones (a control client being closed) are
/// gone: the smallest of a few samples.
fn settled_fds(pid: u32) -> Vec<String> {
    let mut best = fds_of(pid);
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(20));
        let now = fds_of(pid);
        if now.len() < best.len() {
            best = now;
        }
    }
    best
}

/// The fd count once transient descriptors (a client being closed) are gone.
fn settled_fd_count(pid: u32) -> usize {
    let mut n = fds_of(pid).len();
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(20));
        n = n.min(fds_of(pid).len());
    }
    n
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("status")
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .expect("VmRSS")
}

const TICKER: &str = r#"service "ticker" {
  exec = { "python3", "-u", "-c", "import time\ni = 0\nwhile True:\n    i += 1\n    print(i, flush=True)\n    time.sleep(0.001)\n" },
  log_file = "@DIR@/ticker.log", console = false,
}
"#;

#[test]
fn reexec_keeps_every_service_and_pid_and_loses_no_line() {
    let mut sb = Sandbox::start(
        "reexec",
        &[
            ("services/ticker.lua", TICKER),
            (
                "services/a.lua",
                r#"service "a" { exec = { "/bin/sleep", "100000" } }"#,
            ),
            (
                "services/b.lua",
                r#"service "b" { exec = { "/bin/sleep", "100000" }, requires = { "a" } }"#,
            ),
            (
                "services/blip.lua",
                r#"service "blip" { exec = { "/bin/sh", "-c", "echo blip up; exec sleep 100000" } }"#,
            ),
        ],
    );
    sb.ready();
    let init = sb.init_pid();
    std::thread::sleep(Duration::from_millis(500));
    let before = sb.pids();
    let fds_before = settled_fds(init);
    assert_eq!(sb.status()["pid"], 1);

    // A wrapper in front of the new image kills `blip` while no image is
    // listening: the new one must reap it and restart it.
    let wrapper = sb.dir.join("moonlit-wrapper");
    std::fs::write(
        &wrapper,
        // Shell builtins only: an external command would make the shell wait(2)
        // and reap the killed service itself.
        format!(
            "#!/bin/sh\nif [ \"$1\" = --handover ]; then kill -KILL {}; i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; fi\nexec {BIN} \"$@\"\n",
            before["blip"]
        ),
    )
    .expect("wrapper");
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let out = sb.ctl(&[
        "--json",
        "reexec",
        "--binary",
        wrapper.to_str().expect("utf8"),
    ]);
    assert!(
        out.status.success(),
        "reexec: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        sb.console()
    );
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(reply["message"], "re-executed");
    assert_eq!(reply["status"]["pid"], 1);
    assert_eq!(reply["status"]["reexecs"], 1);
    assert_eq!(
        sb.init_pid(),
        init,
        "the same process, PID 1 of the namespace"
    );

    let st = sb.wait_status("blip restarted", 10, |s| {
        s["services"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|x| x["name"] == "blip" && x["state"] == "running" && x["restarts"] == 1)
    });
    let after = sb.pids();
    for n in ["ticker", "a", "b"] {
        assert_eq!(before[n], after[n], "{n} kept its pid");
    }
    assert_ne!(before["blip"], after["blip"]);
    assert!(st["services"]
        .as_array()
        .expect("s")
        .iter()
        .all(|s| s["state"] == "running"));

    // Still supervised: killed, `a` comes back.
    sb.kill(after["a"], Signal::KILL);
    sb.wait_status("a restarted", 10, |s| {
        s["services"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|x| x["name"] == "a" && x["restarts"] == 1 && x["state"] == "running")
    });

    // The ticker's lines: every number once, in order, across the re-exec.
    std::thread::sleep(Duration::from_millis(300));
    assert!(sb.ctl(&["stop", "ticker"]).status.success());
    sb.wait_status("ticker stopped", 10, |s| {
        s["services"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|x| x["name"] == "ticker" && x["state"] == "stopped")
    });
    let log = std::fs::read_to_string(sb.path("ticker.log")).expect("log");
    let nums: Vec<u64> = log.lines().map(|l| l.parse().expect("number")).collect();
    assert!(nums.len() > 200, "{} lines", nums.len());
    for (i, n) in nums.iter().enumerate() {
        assert_eq!(*n, i as u64 + 1, "line {} out of sequence", i + 1);
    }

    // Only the expected descriptors: the same kinds as before, no leftover memfd.
    sb.status();
    let fds_after = settled_fds(init);
    assert!(
        !fds_after.iter().any(|f| f.contains("memfd")),
        "{fds_after:?}"
    );
    assert_eq!(
        fds_before.len(),
        fds_after.len(),
        "before {fds_before:?}\nafter {fds_after:?}"
    );
    assert_eq!(sb.poweroff(&[]), 0);
}

#[test]
fn fifty_reexecs_leave_fds_and_memory_flat() {
    let sb = Sandbox::start(
        "reexec50",
        &[
            ("services/a.lua", r#"service "a" { exec = { "/bin/sh", "-c", "while :; do echo tick; sleep 0.1; done" } }"#),
            ("services/st.lua", "local s = state({ n = 0 })\nservice \"b\" { exec = { \"/bin/sleep\", \"100000\" } }\n"),
        ],
    );
    sb.ready();
    let init = sb.init_pid();
    let pids = sb.pids();
    sb.status();
    let mut fd_counts = vec![settled_fd_count(init)];
    let mut rss = Vec::new();
    for i in 0..50 {
        let out = sb.ctl(&["reexec"]);
        assert!(
            out.status.success(),
            "reexec #{i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // One more round trip: the re-exec's own connection is closed by then.
        sb.status();
        fd_counts.push(settled_fd_count(init));
        rss.push(rss_kb(init));
    }
    assert_eq!(sb.status()["reexecs"], 50);
    assert_eq!(sb.pids(), pids);
    assert!(
        fd_counts.iter().all(|c| *c == fd_counts[0]),
        "fd counts {fd_counts:?}"
    );
    // Flat: the last ten no higher than the first ten plus a small margin.
    let first = rss[..10].iter().max().copied().unwrap_or(0);
    let last = rss[40..].iter().max().copied().unwrap_or(0);
    assert!(last <= first + 512, "RSS grew: {rss:?}");
}

#[test]
fn a_failed_reexec_leaves_the_old_image_running() {
    let sb = Sandbox::start(
        "reexecfail",
        &[(
            "services/a.lua",
            r#"service "a" { exec = { "/bin/sleep", "100000" } }"#,
        )],
    );
    sb.ready();
    let pids = sb.pids();
    // A missing binary.
    let out = sb.ctl(&["reexec", "--binary", "/nonexistent/moonlit"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no such file"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A binary that fails the pre-flight (an older moonlit that cannot read our format).
    let old = sb.dir.join("old-moonlit");
    std::fs::write(
        &old,
        "#!/bin/sh\necho 'moonlit 0.0.1: cannot take over state format' >&2\nexit 1\n",
    )
    .expect("write");
    std::fs::set_permissions(&old, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let out = sb.ctl(&["reexec", "--binary", old.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("failed the pre-flight") && err.contains("cannot take over"),
        "{err}"
    );
    // A binary that passes the pre-flight but cannot be executed as init
    // would need a broken file: exec of a non-executable fails before the exec.
    assert_eq!(sb.pids(), pids);
    assert_eq!(sb.status()["reexecs"], 0);
    assert!(sb.ctl(&["status"]).status.success());
}

#[test]
fn handover_check_accepts_older_and_refuses_newer_formats() {
    let ok = std::process::Command::new(BIN)
        .args(["--handover-check", "1"])
        .output()
        .expect("run");
    assert!(ok.status.success());
    let newer = std::process::Command::new(BIN)
        .args(["--handover-check", "999"])
        .output()
        .expect("run");
    assert_eq!(newer.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&newer.stderr).contains("cannot take over state format 999"));
}
