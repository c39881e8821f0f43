//! Fault storms at the limits, against moonlit as PID 1 of fresh namespaces
//! (root): a control client that never reads while a service streams, no
//! pids left to fork, and a full /run under the control socket.
//! `MOONLIT_STORM_SCALE=long` selects the long sizes (see `storms.rs`).

mod common;
mod storm_util;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Sandbox;
use rustix::process::Signal;
use storm_util::*;

fn follow(sb: &Sandbox, name: &str) -> UnixStream {
    let mut s = UnixStream::connect(&sb.sock).expect("connect");
    let req =
        format!("{{\"v\":1,\"cmd\":\"logs\",\"name\":\"{name}\",\"follow\":true,\"lines\":0}}\n");
    s.write_all(req.as_bytes()).expect("request");
    s
}

fn file_lines(p: &Path) -> usize {
    std::fs::read_to_string(p)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

#[test]
fn a_follower_that_never_reads_is_dropped_and_pid1_stays_bounded() {
    let big_n = 10_000;
    // 600-byte lines: 10,000 of them are about 6.5 MB of JSON, more than the
    // 4 MiB a follower may have queued (MAX_OUT in init/src/control.rs).
    let big = format!(
        r#"service "big" {{
  exec = {{ "python3", "-c", "import os, sys, time\nwhile not os.path.exists('@DIR@/go'): time.sleep(0.02)\nfor i in range(1, {big_n} + 1):\n    sys.stdout.write('%05d %s\\n' % (i, 'x' * 600))\nsys.stdout.flush()\ntime.sleep(100000)\n" }},
  log_file = "@DIR@/big.log", console = false,
}}
"#
    );
    // 1,000 short lines: well under the limit, so its idle follower is held
    // (queued for), not dropped.
    let small = r#"service "small" {
  exec = { "python3", "-c", "import os, sys, time\nwhile not os.path.exists('@DIR@/go'): time.sleep(0.02)\nfor i in range(1, 1001):\n    print('small', i)\nsys.stdout.flush()\ntime.sleep(100000)\n" },
  console = false,
}
"#;
    let sb = Sandbox::start(
        "storm-follow",
        &[("services/big.lua", &big), ("services/small.lua", small)],
    );
    sb.ready();
    let init = sb.init_pid();
    sb.status();
    let fds0 = settled_fd_count(init);
    let rss0 = rss_kb(init);
    let stuck_big = follow(&sb, "big");
    let stuck_small = follow(&sb, "small");
    // Both followers are registered once they are extra descriptors.
    let end = Instant::now() + Duration::from_secs(10);
    while fd_count(init) < fds0 + 2 {
        assert!(Instant::now() < end, "followers never connected");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Sample PID 1's RSS and ask for status from another client meanwhile.
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut peak = 0u64;
            while !stop.load(Ordering::Relaxed) {
                peak = peak.max(rss_kb(init));
                std::thread::sleep(Duration::from_millis(5));
            }
            peak
        })
    };
    std::fs::write(sb.path("go"), "").expect("go");
    let mut answered = 0;
    let mut slowest = Duration::ZERO;
    let end = Instant::now() + Duration::from_secs(60);
    while file_lines(&sb.path("big.log")) < big_n {
        assert!(Instant::now() < end, "the stream never completed");
        let t = Instant::now();
        let out = sb.ctl(&["status"]);
        assert!(out.status.success(), "status during the stream failed");
        slowest = slowest.max(t.elapsed());
        answered += 1;
    }
    // The last batch is queued (or the follower dropped) by now.
    for _ in 0..10 {
        assert!(sb.ctl(&["status"]).status.success());
        answered += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let peak = sampler.join().expect("sampler");

    // The big follower was dropped: reading gets a prefix of the stream in
    // order, then end of file.
    stuck_big
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut got = Vec::new();
    let mut r = BufReader::new(&stuck_big);
    let mut line = String::new();
    loop {
        line.clear();
        match r.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => got.push(line.trim_end().to_string()),
            Err(e) => panic!("the stuck follower was neither dropped nor served: {e}"),
        }
    }
    let reply: serde_json::Value = serde_json::from_str(&got[0]).expect("reply");
    assert_eq!(reply["ok"], true, "{}", got[0]);
    let nums: Vec<usize> = got[1..]
        .iter()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            v["log"].as_str()?.get(..5)?.parse().ok()
        })
        .collect();
    assert_eq!(nums.len(), got.len() - 1, "only log lines after the reply");
    assert_eq!(
        nums,
        (1..=nums.len()).collect::<Vec<_>>(),
        "a prefix, in order"
    );
    assert!(nums.len() < big_n, "it was dropped before the end");
    // The small follower was held: everything queued is delivered, in order,
    // and it is still connected.
    stuck_small
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut r = BufReader::new(&stuck_small);
    let mut small_lines = Vec::new();
    line.clear();
    r.read_line(&mut line).expect("reply");
    while small_lines.len() < 1000 {
        line.clear();
        let n = r.read_line(&mut line).expect("a queued line");
        assert!(
            n > 0,
            "the small follower was closed after {} lines",
            small_lines.len()
        );
        let v: serde_json::Value = serde_json::from_str(line.trim_end()).expect("json");
        small_lines.push(v["log"].as_str().unwrap_or("").to_string());
    }
    let want: Vec<String> = (1..=1000).map(|i| format!("small {i}")).collect();
    assert_eq!(small_lines, want);
    // Dropped: PID 1 holds exactly one more descriptor than before (the
    // small follower) and its memory went back.
    sb.status();
    assert_eq!(settled_fd_count(init), fds0 + 1);
    drop(r);
    drop(stuck_small);
    let end = Instant::now() + Duration::from_secs(5);
    while settled_fd_count(init) != fds0 {
        assert!(Instant::now() < end, "the departed follower's fd stayed");
    }
    let rss1 = rss_kb(init);
    // Nothing was lost where it is promised: the log file has every line.
    assert_eq!(file_lines(&sb.path("big.log")), big_n);
    eprintln!(
        "storm figures: follower lines={big_n} (~{} KB of JSON) delivered_to_stuck_follower={} (dropped) held_follower_got=1000/1000 status_answers_during={answered} slowest_status={:?} rss_kb before={rss0} peak={peak} after={rss1}",
        big_n * 630 / 1000,
        nums.len(),
        slowest
    );
    // Bounded: at most the 4 MiB backlog, plus half of it while the queue's
    // buffer doubles to its last size (both alive during the copy), plus
    // 2 MiB for the loop's read buffers and the allocator's spans.
    assert!(
        peak <= rss0 + 8 * 1024,
        "RSS peaked at {peak} KiB from {rss0}"
    );
    assert!(rss1 <= rss0 + 1024, "RSS stayed at {rss1} KiB from {rss0}");
    assert_eq!(sb.service("big")["state"], "running");
}

/// A `pids` cgroup under the test's own (on a hybrid host, such as this
/// project's CI, the pids controller is bound to cgroup v1 and the cgroup2
/// hierarchy has none: then the v1 one is used), removed on drop.
struct PidsCgroup {
    dir: PathBuf,
}

impl PidsCgroup {
    fn new(name: &str) -> PidsCgroup {
        // The pids hierarchy the test itself is in.
        let own = std::fs::read_to_string("/proc/self/cgroup").expect("/proc/self/cgroup");
        let rel = own.lines().find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctl, path) = (f.next()?, f.next()?, f.next()?);
            (ctl.split(',').any(|c| c == "pids")).then(|| path.to_string())
        });
        let (root, rel) = match rel {
            Some(r) => (PathBuf::from("/sys/fs/cgroup/pids"), r),
            None => {
                // A pure cgroup2 host: the pids controller is there.
                let l = own
                    .lines()
                    .find(|l| l.starts_with("0::"))
                    .expect("cgroup line");
                (PathBuf::from("/sys/fs/cgroup"), l[3..].to_string())
            }
        };
        let parent = root.join(rel.trim_start_matches('/'));
        assert!(
            parent.join("pids.max").exists() || parent.join("cgroup.procs").exists(),
            "no pids cgroup controller at {}: this test needs one",
            parent.display()
        );
        let dir = parent.join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir(&dir);
        std::fs::create_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot create the cgroup {}: {e}", dir.display()));
        assert!(
            dir.join("pids.max").exists(),
            "{} has no pids.max: the pids controller is not enabled there",
            dir.display()
        );
        PidsCgroup { dir }
    }

    fn set_max(&self, v: &str) {
        std::fs::write(self.dir.join("pids.max"), v).expect("pids.max");
    }

    fn read(&self, f: &str) -> String {
        std::fs::read_to_string(self.dir.join(f)).unwrap_or_default()
    }
}

impl Drop for PidsCgroup {
    fn drop(&mut self) {
        let _ = std::fs::write(self.dir.join("pids.max"), "max");
        for _ in 0..100 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn out_of_pids_pid1_answers_logs_the_fork_failure_and_recovers() {
    let cg = PidsCgroup::new("moonlit-storm-pids");
    cg.set_max("64");
    let procs = cg.dir.join("cgroup.procs");
    let wrapper = format!("echo $$ > {} && exec \"$0\" \"$@\"", procs.display());
    let retry = r#"restart = "always", backoff = { initial = 0.1, max = 0.5 }, burst = { count = 100000, interval = 10 }"#;
    let sb = Sandbox::start_wrapped(
        "storm-pids",
        &[
            (
                "services/a.lua",
                r#"service "a" { exec = { "/bin/sleep", "100000" } }"#,
            ),
            (
                "services/b.lua",
                r#"service "b" { exec = { "/bin/sleep", "100000" } }"#,
            ),
            (
                "services/phoenix.lua",
                &format!(r#"service "phoenix" {{ exec = {{ "/bin/sleep", "100000" }}, {retry} }}"#),
            ),
            (
                "services/crashloop.lua",
                &format!(
                    r#"service "crashloop" {{ exec = {{ "/bin/sh", "-c", "echo x >> @DIR@/crash.starts; exit 1" }}, {retry}, console = false }}"#
                ),
            ),
        ],
        &[],
        &["sh", "-c", &wrapper],
    );
    sb.ready();
    let st = sb.wait_status("sleepers running", 20, |s| {
        ["a", "b", "phoenix"]
            .iter()
            .all(|n| running_pid(s, n).is_some())
    });
    let (a, b) = (running_pid(&st, "a"), running_pid(&st, "b"));
    let phoenix = running_pid(&st, "phoenix").expect("phoenix");
    let init = sb.init_pid();
    assert!(
        cg.read("cgroup.procs")
            .lines()
            .any(|l| l.trim() == init.to_string()),
        "PID 1 is not in the test's pids cgroup"
    );
    // Out of pids: no fork can succeed any more (a limit below the usage
    // keeps what runs and refuses every new task).
    cg.set_max("1");
    let events0 = cg.read("pids.events");
    let starts0 = file_lines(&sb.path("crash.starts"));
    sb.kill(phoenix, Signal::KILL);
    // A while at the limit: the crash loop and phoenix keep trying.
    let mut answered = 0;
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end {
        let st = sb.status();
        assert_eq!(st["pid"], 1);
        answered += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    let console = sb.console();
    let failures: Vec<&str> = console
        .lines()
        .filter(|l| l.contains("phoenix: cannot start:"))
        .collect();
    assert!(!failures.is_empty(), "no fork failure logged:\n{console}");
    let msg = failures[0];
    assert!(
        msg.contains("Resource temporarily unavailable")
            || msg.contains("EAGAIN")
            || msg.contains("try again"),
        "the failure does not say why: {msg}"
    );
    let crash_during = file_lines(&sb.path("crash.starts")) - starts0;
    assert!(
        crash_during <= 1,
        "the crash loop ran {crash_during} times without pids"
    );
    assert_ne!(
        cg.read("pids.events"),
        events0,
        "the kernel saw no refused fork"
    );
    // A re-exec needs a pre-flight child: refused cleanly, old image runs.
    let out = sb.ctl(&["reexec"]);
    let reexec_msg = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(
        out.status.code(),
        Some(1),
        "reexec without pids: {reexec_msg}"
    );
    assert_eq!(sb.status()["reexecs"], 0);
    let st = sb.status();
    assert_eq!((running_pid(&st, "a"), running_pid(&st, "b")), (a, b));
    // Recovery once the limit is raised.
    cg.set_max("64");
    let st = sb.wait_status("phoenix back", 15, |s| running_pid(s, "phoenix").is_some());
    assert_ne!(running_pid(&st, "phoenix"), Some(phoenix));
    let end = Instant::now() + Duration::from_secs(15);
    while file_lines(&sb.path("crash.starts")) <= starts0 + crash_during {
        assert!(Instant::now() < end, "the crash loop never ran again");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!((running_pid(&st, "a"), running_pid(&st, "b")), (a, b));
    let out = sb.ctl(&["reexec"]);
    assert!(
        out.status.success(),
        "reexec after recovery: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_no_zombies(&sb, 10);
    eprintln!(
        "storm figures: pids: status answers at the limit={answered} fork failures logged={} first: {msg:?} crash-loop runs at the limit={crash_during} reexec at the limit: {:?} pids.events: {:?}",
        failures.len(),
        reexec_msg.trim(),
        cg.read("pids.events").trim()
    );
    drop(sb);
}

/// A tiny tmpfs mounted over a sandbox's scratch directory (in the host's
/// mount namespace, so the test reaches the control socket), unmounted on drop.
struct TinyRun {
    dir: PathBuf,
}

impl Drop for TinyRun {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.dir)
            .status();
    }
}

/// Fills a filesystem: blocks, then inodes. Returns (bytes, files) written.
fn fill(dir: &Path) -> (u64, usize) {
    let mut bytes = 0u64;
    let mut f = std::fs::File::create(dir.join("fill")).expect("fill file");
    let chunk = vec![0u8; 1024];
    while let Ok(n) = f.write(&chunk) {
        if n == 0 {
            break;
        }
        bytes += n as u64;
    }
    let _ = f.sync_all();
    let mut files = 0;
    while std::fs::File::create(dir.join(format!("i{files}"))).is_ok() {
        files += 1;
    }
    (bytes, files)
}

#[test]
fn a_full_run_directory_then_a_reexec_loses_nothing() {
    // The scratch dir is known before start: the harness names it.
    let dir =
        std::env::temp_dir().join(format!("moonlit-test-storm-runfull-{}", std::process::id()));
    let d = dir.display().to_string();
    let wrapper = format!(
        "set -e; cp -a {d}/config {d}.cfg; mount -t tmpfs -o size=128k,nr_inodes=64,mode=0755 tmpfs {d}; cp -a {d}.cfg {d}/config; rm -rf {d}.cfg; exec \"$0\" \"$@\""
    );
    let guard = TinyRun { dir: dir.clone() };
    let mut sb = Sandbox::start_wrapped(
        "storm-runfull",
        &[
            (
                "services/a.lua",
                r#"service "a" { exec = { "/bin/sleep", "100000" } }"#,
            ),
            (
                "services/n.lua",
                r#"service "n" { exec = { "/bin/sh", "-c", "systemd-notify --ready; exec sleep 100000" }, notify = true }"#,
            ),
            (
                "services/t.lua",
                r#"service "t" { exec = { "/bin/sh", "-c", "i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.02; done" }, console = false }"#,
            ),
        ],
        &[],
        &["sh", "-c", &wrapper],
    );
    sb.ready();
    let fs = rustix::fs::statfs(&dir).expect("statfs");
    assert_eq!(
        fs.f_type, 0x0102_1994,
        "the scratch dir is not on the tmpfs"
    );
    let st = sb.wait_status("n ready", 20, |s| current_service(s, "n")["ready"] == true);
    let before = sb.pids();
    assert_eq!(before.len(), 3, "{st:#}");
    // A service added by a reload after the fs is full (its notify socket
    // needs a new inode there): written now under another name, renamed in
    // once full (a rename takes no space).
    sb.write(
        "services/n2.lua.later",
        r#"service "n2" { exec = { "/bin/sh", "-c", "systemd-notify --ready; exec sleep 100000" }, notify = true }"#,
    );
    let (bytes, files) = fill(&dir);
    let free = rustix::fs::statvfs(&dir).expect("statvfs");
    assert!(
        free.f_bavail == 0 || free.f_favail == 0,
        "still room: {} blocks, {} inodes",
        free.f_bavail,
        free.f_favail
    );
    // Status answers on a full /run.
    assert!(sb.ctl(&["status"]).status.success());
    // The re-exec: it succeeds or fails cleanly with the old image running.
    let out = sb.ctl(&["--json", "reexec"]);
    let reexec_ok = out.status.success();
    let st = sb.status();
    assert_eq!(st["pid"], 1);
    assert_eq!(
        st["reexecs"].as_u64(),
        Some(u64::from(reexec_ok)),
        "reexec said {:?} / {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(sb.pids(), before, "every service kept its pid");
    // Still supervising: the notify service restarts and is ready again
    // (its socket is made anew next to the control socket, on the full fs).
    sb.kill(before["n"], Signal::KILL);
    let n_after = sb.wait_status("n back", 20, |s| {
        running_pid(s, "n").is_some_and(|p| p != before["n"])
            && current_service(s, "n")["ready"] == true
    });
    // The added service cannot get its socket: its start fails, clearly,
    // and nothing else is touched.
    std::fs::rename(
        dir.join("config/services/n2.lua.later"),
        dir.join("config/services/n2.lua"),
    )
    .expect("rename");
    assert!(sb.console().lines().all(|l| !l.contains("n2:")));
    let (code, reply) = sb.reload(&[]);
    assert_eq!(code, 0, "{reply:#}");
    let n2_err = sb.wait_line("n2: cannot start", 10);
    assert!(n2_err.contains("No space left on device"), "{n2_err}");
    let mut now = sb.pids();
    now.remove("n2");
    let mut want = before.clone();
    want.insert("n".into(), running_pid(&n_after, "n").expect("n"));
    assert_eq!(now, want, "the other services kept their pids");
    // Room again: it starts (by hand if its burst gave up meanwhile).
    for i in 0..files {
        let _ = std::fs::remove_file(dir.join(format!("i{i}")));
    }
    let _ = std::fs::remove_file(dir.join("fill"));
    if current_service(&sb.status(), "n2")["state"] == "failed" {
        assert!(sb.ctl(&["start", "n2"]).status.success());
    }
    sb.wait_status("n2 ready", 20, |s| {
        current_service(s, "n2")["ready"] == true
    });
    // The ticker's lines across the fill and the re-exec: none missing.
    let tick = sb.ctl(&["logs", "t", "-n", "100000"]);
    let ticks: Vec<u64> = String::from_utf8_lossy(&tick.stdout)
        .lines()
        .map(|l| l.trim_start_matches("tick ").parse().expect("tick N"))
        .collect();
    assert!(ticks.len() > 10, "{ticks:?}");
    assert!(
        ticks.windows(2).all(|w| w[1] == w[0] + 1),
        "ticks lost or reordered: {ticks:?}"
    );
    let console = sb.console();
    eprintln!(
        "storm figures: runfull: filled {bytes} bytes + {files} files; reexec ok={reexec_ok} ({}); n restarted ready={}; ticks {}..{} unbroken; added notify service on the full fs: {n2_err:?}; console tail: {:?}",
        String::from_utf8_lossy(&out.stderr).trim(),
        current_service(&n_after, "n")["ready"],
        ticks[0],
        ticks[ticks.len() - 1],
        console.lines().rev().take(5).collect::<Vec<_>>()
    );
    assert_eq!(sb.poweroff(&[]), 0);
    drop(sb);
    drop(guard);
}
