//! Fault storms against moonlit as PID 1 of fresh namespaces (root):
//! kill -9 of every service at once, SIGSTOP/SIGCONT during reloads, a
//! numbered log stream through a re-exec and restarts, and fd/RSS across
//! many re-execs and reloads. (Control clients, pids and a full /run are in
//! `storms_limits.rs`.)
//!
//! Sizes: the CI size by default; `MOONLIT_STORM_SCALE=long` selects the
//! long sizes (the numbers of issue 14): 100 kill rounds, 50 re-execs and
//! 1,000 reloads. A number (`MOONLIT_STORM_SCALE=40`) sets the round count
//! of every storm that has one.

mod common;
mod storm_util;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::Sandbox;
use rustix::process::Signal;
use storm_util::*;

const SLEEPERS: usize = 10;

fn sleeper(name: &str, rounds: usize) -> String {
    // Killed once per round after a run longer than reset_after: every restart
    // is immediate (backoff_delay(1) = 0) and the burst never trips.
    format!(
        r#"service "{name}" {{
  exec = {{ "/bin/sleep", "100000" }},
  restart = "always",
  backoff = {{ initial = 0.1, max = 1, reset_after = 0.3 }},
  burst = {{ count = {}, interval = 1000 }},
  console = false,
}}
"#,
        rounds + 1
    )
}

/// The restart delay of `backoff_delay` in `init/src/supervisor.rs`, for
/// `initial`/`max` in ms, after `n` consecutive failed runs.
fn expected_delay(initial: f64, max: f64, n: u32) -> f64 {
    if n <= 1 {
        0.0
    } else {
        (initial * f64::from(1u32 << (n - 2).min(20))).min(max)
    }
}

/// The sandbox's clock as the services read it (/proc/uptime, s).
fn uptime() -> f64 {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .expect("/proc/uptime")
}

/// Start times (uptime, s) a service wrote, one a line.
fn starts(sb: &Sandbox, file: &str) -> Vec<f64> {
    std::fs::read_to_string(sb.path(file))
        .unwrap_or_default()
        .lines()
        .map(|l| l.trim().parse().expect("uptime"))
        .collect()
}

#[test]
fn kill9_storm_every_service_comes_back_within_backoff_and_burst() {
    let rounds = scale(15, 100);
    let mut files: Vec<(String, String)> = (0..SLEEPERS)
        .map(|i| {
            (
                format!("services/s{i}.lua"),
                sleeper(&format!("s{i}"), rounds),
            )
        })
        .collect();
    // Killed each round too, but allowed only 5 restarts in a window longer
    // than the whole storm: the 6th kill must leave it failed.
    files.push((
        "services/tight.lua".into(),
        r#"service "tight" {
  exec = { "/bin/sh", "-c", "read up idle < /proc/uptime; echo $up >> @DIR@/tight.starts; exec sleep 100000" },
  restart = "always",
  backoff = { initial = 0.1, max = 1, reset_after = 0.3 },
  burst = { count = 5, interval = 3600 },
  console = false,
}
"#
        .into(),
    ));
    // Killed each round before reset_after (60 s) passes: every kill is one
    // more consecutive failure, so its restarts wait 0, 0.05, 0.1, 0.2, 0.2 ...
    files.push((
        "services/quick.lua".into(),
        format!(
            r#"service "quick" {{
  exec = {{ "/bin/sh", "-c", "read up idle < /proc/uptime; echo $up >> @DIR@/quick.starts; exec sleep 100000" }},
  restart = "always",
  backoff = {{ initial = 0.05, max = 0.2, reset_after = 60 }},
  burst = {{ count = {}, interval = 3600 }},
  console = false,
}}
"#,
            rounds + 1
        ),
    ));
    // Crash-loops on its own: restarted with growing delays, then held back.
    files.push((
        "services/crashy.lua".into(),
        r#"service "crashy" {
  exec = { "/bin/sh", "-c", "read up idle < /proc/uptime; echo $up >> @DIR@/crashy.starts; exit 1" },
  restart = "always",
  backoff = { initial = 0.2, max = 0.8 },
  burst = { count = 8, interval = 3600 },
  console = false,
}
"#
        .into(),
    ));
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let sb = Sandbox::start("storm-kill9", &refs);
    sb.ready();
    let mut names: Vec<String> = (0..SLEEPERS).map(|i| format!("s{i}")).collect();
    names.push("quick".into());
    let mut seen: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    let mut current = sb.wait_status("all sleepers running", 20, |s| {
        names.iter().all(|n| running_pid(s, n).is_some()) && running_pid(s, "tight").is_some()
    });
    let mut max_zombies_after = 0usize;
    let mut kill_times = Vec::new();
    let t0 = Instant::now();
    for round in 1..=rounds {
        // Past reset_after, so each restart is the immediate first one.
        std::thread::sleep(Duration::from_millis(350));
        let mut victims: Vec<u64> = names
            .iter()
            .map(|n| running_pid(&current, n).expect("running"))
            .collect();
        for (n, p) in names.iter().zip(&victims) {
            assert!(
                seen.entry(n.clone()).or_default().insert(*p),
                "{n} got pid {p} twice"
            );
        }
        if let Some(p) = running_pid(&current, "tight") {
            victims.push(p);
        }
        // Every service at once: resolve all host pids first, then KILL.
        let map = host_map(&sb);
        let hosts: Vec<u32> = victims.iter().map(|p| map[p]).collect();
        kill_times.push(uptime());
        for h in hosts {
            kill_host(h, Signal::KILL);
        }
        let old = current.clone();
        current = sb.wait_status(&format!("round {round}: all back"), 20, |s| {
            names
                .iter()
                .all(|n| running_pid(s, n).is_some_and(|p| Some(p) != running_pid(&old, n)))
        });
        let z = wait_no_zombies(&sb, 10);
        max_zombies_after = max_zombies_after.max(z);
        for n in &names {
            assert_eq!(
                current_service(&current, n)["restarts"],
                round as u64,
                "{n}: one restart per kill, no more"
            );
        }
    }
    let storm_s = t0.elapsed().as_secs_f64();
    // No late restart storm: two seconds later nothing moved.
    std::thread::sleep(Duration::from_secs(2));
    let after = sb.status();
    for n in &names {
        assert_eq!(
            running_pid(&after, n),
            running_pid(&current, n),
            "{n} moved"
        );
        assert_eq!(current_service(&after, n)["restarts"], rounds as u64);
    }
    // The announced delays: 0 for the sleepers (each run outlived
    // reset_after), growing for `quick`; and quick really waited them.
    let console = sb.console();
    for n in &names {
        let delays: Vec<f64> = console
            .lines()
            .filter_map(|l| {
                l.split(&format!("moonlit: {n}: killed by signal KILL, restart #"))
                    .nth(1)
            })
            .map(|t| {
                t.rsplit(" in ")
                    .next()
                    .and_then(|d| d.trim_end_matches(" s").parse().ok())
                    .expect("delay")
            })
            .collect();
        let want: Vec<f64> = (1..=rounds as u32)
            .map(|k| {
                if n == "quick" {
                    expected_delay(0.05, 0.2, k)
                } else {
                    0.0
                }
            })
            .collect();
        assert_eq!(delays, want, "{n}'s restart delays");
    }
    let qs = starts(&sb, "quick.starts");
    assert_eq!(qs.len(), rounds + 1, "{qs:?}");
    for (k, kill) in kill_times.iter().enumerate() {
        let want = expected_delay(0.05, 0.2, k as u32 + 1);
        assert!(
            qs[k + 1] + 0.011 >= kill + want,
            "quick restart #{} at {} after the kill at {kill}: backoff says {want} s",
            k + 1,
            qs[k + 1]
        );
    }
    // Burst: 5 restarts allowed in its window, the 6th kill left it failed.
    let tight = current_service(&after, "tight");
    let tight_starts = starts(&sb, "tight.starts");
    if rounds >= 6 {
        assert_eq!(tight["state"], "failed", "{tight:#}");
        assert_eq!(tight["restarts"], 5, "{tight:#}");
        assert_eq!(tight_starts.len(), 6, "1 start + 5 restarts");
        let detail = tight["detail"].as_str().unwrap_or("");
        assert!(detail.contains("restarted 5 times"), "{detail}");
    }
    // Crash loop: held back by the backoff, then failed after burst.count.
    let crashy = sb.wait_status("crashy failed", 30, |s| {
        current_service(s, "crashy")["state"] == "failed"
    });
    let crashy = current_service(&crashy, "crashy");
    assert_eq!(crashy["restarts"], 8, "{crashy:#}");
    let cs = starts(&sb, "crashy.starts");
    assert_eq!(cs.len(), 9, "1 start + 8 restarts: {cs:?}");
    for (i, w) in cs.windows(2).enumerate() {
        // Restart #i+1 follows the (i+1)-th consecutive failure.
        let want = expected_delay(0.2, 0.8, i as u32 + 1);
        // /proc/uptime has 10 ms resolution.
        assert!(
            w[1] - w[0] + 0.011 >= want,
            "crashy restart #{} after {:.3} s, backoff says {want} s: {cs:?}",
            i + 1,
            w[1] - w[0]
        );
    }
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(starts(&sb, "crashy.starts").len(), 9, "failed stays failed");
    assert_eq!(starts(&sb, "tight.starts").len(), tight_starts.len());
    wait_no_zombies(&sb, 10);
    // Exactly the surviving services' processes are left.
    let sleeps = sb.ns_processes().iter().filter(|p| p.2 == "sleep").count();
    assert_eq!(
        sleeps,
        SLEEPERS + 1,
        "s0..s9 and quick: {:?}",
        sb.ns_processes()
    );
    eprintln!(
        "storm figures: kill9 rounds={rounds} services={} storm={storm_s:.1}s restarts/service={rounds} (allowed {}) zombies_after_rounds_max={max_zombies_after} quick: starts={} gaps_after_kill={:?} tight: starts={} restarts={} state={} crashy: starts={} gaps={:?}",
        SLEEPERS + 3,
        rounds + 1,
        qs.len(),
        kill_times
            .iter()
            .zip(&qs[1..])
            .map(|(k, s)| ((s - k) * 100.0).round() / 100.0)
            .collect::<Vec<_>>(),
        tight_starts.len(),
        tight["restarts"],
        tight["state"],
        cs.len(),
        cs.windows(2).map(|w| ((w[1] - w[0]) * 100.0).round() / 100.0).collect::<Vec<_>>()
    );
    drop(sb);
}

fn write_flip(sb: &Sandbox, gen: usize) {
    sb.write(
        "services/flip.lua",
        &format!(
            r#"service "flip" {{
  exec = {{ "/bin/sleep", "{}" }},
  stop_timeout = 1,
  console = false,
}}
"#,
            100000 + gen
        ),
    );
}

fn write_other(sb: &Sandbox, gen: usize) {
    // A supervisor field only: applied live, same pid.
    sb.write(
        "services/other.lua",
        &format!(
            r#"service "other" {{
  exec = {{ "/bin/sleep", "100000" }},
  burst = {{ count = {}, interval = 10 }},
  console = false,
}}
"#,
            5 + gen
        ),
    );
}

#[test]
fn sigstop_sigcont_during_reloads_and_stops() {
    let rounds = scale(8, 40);
    let victim = r#"service "victim" {
  exec = { "/bin/sh", "-c", "trap 'echo got TERM; exit 0' TERM; while :; do sleep 0.05; done" },
  stop_timeout = 30,
}
"#;
    let sb = Sandbox::start(
        "storm-stop",
        &[
            ("services/victim.lua", victim),
            (
                "services/flip.lua",
                r#"service "flip" { exec = { "/bin/sleep", "100000" }, stop_timeout = 1, console = false }"#,
            ),
            (
                "services/other.lua",
                r#"service "other" { exec = { "/bin/sleep", "100000" }, console = false }"#,
            ),
        ],
    );
    sb.ready();
    let mut st = sb.wait_status("all running", 20, |s| {
        ["victim", "flip", "other"]
            .iter()
            .all(|n| running_pid(s, n).is_some())
    });
    let other_pid = running_pid(&st, "other").expect("other");
    let mut flip_ms = Vec::new();
    for round in 1..=rounds {
        let flip_pid = running_pid(&st, "flip").expect("flip");
        let map = host_map(&sb);
        for n in ["flip", "other", "victim"] {
            kill_host(map[&running_pid(&st, n).expect("pid")], Signal::STOP);
        }
        for n in ["flip", "other", "victim"] {
            wait_proc_state(map[&running_pid(&st, n).expect("pid")], 'T', 5);
        }
        // A reload that restarts the stopped `flip` (new argv): TERM stays
        // pending in a stopped process, so only the KILL at stop_timeout
        // (1 s) or a CONT ends it.
        write_flip(&sb, round);
        let t = Instant::now();
        let (code, reply) = sb.reload(&[]);
        assert_eq!(code, 0, "round {round}: {reply:#}\n{}", sb.console());
        st = sb.wait_status(&format!("round {round}: flip restarted"), 15, |s| {
            running_pid(s, "flip").is_some_and(|p| p != flip_pid)
        });
        flip_ms.push(t.elapsed().as_millis());
        let new_flip = map_pid(&sb, running_pid(&st, "flip").expect("flip"));
        // The vfork parent resumes once the child's exec has replaced its
        // memory, a moment before the kernel has set up the new argv.
        let end = Instant::now() + Duration::from_secs(5);
        while cmdline(new_flip).is_empty() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(
            cmdline(new_flip),
            vec!["/bin/sleep".to_string(), format!("{}", 100000 + round)],
            "round {round}: state {:?}, status {:#}\nconsole:\n{}",
            proc_state(new_flip),
            current_service(&sb.status(), "flip"),
            sb.console()
        );
        // An unrelated reload (a supervisor field) while `other` is stopped.
        write_other(&sb, round);
        let (code, reply) = sb.reload(&[]);
        assert_eq!(code, 0, "round {round}: {reply:#}");
        st = sb.status();
        assert_eq!(running_pid(&st, "other"), Some(other_pid), "same pid");
        assert_eq!(proc_state(map[&other_pid]), Some('T'), "still stopped");
        for n in ["other", "victim"] {
            kill_host(map[&running_pid(&st, n).expect("pid")], Signal::CONT);
        }
        wait_no_zombies(&sb, 10);
    }
    assert_eq!(
        sb.status()["transactions"].as_u64(),
        Some(2 * rounds as u64),
        "every reload committed"
    );
    // `ctl stop` of a SIGSTOPped service must still end it, well before
    // its 30 s stop_timeout: moonlit sends CONT after the stop signal, so
    // the TERM is acted upon (the service's trap exits 0).
    let vpid = running_pid(&sb.status(), "victim").expect("victim");
    let vhost = map_pid(&sb, vpid);
    kill_host(vhost, Signal::STOP);
    wait_proc_state(vhost, 'T', 5);
    let t = Instant::now();
    let out = sb.ctl(&["stop", "victim"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = sb.wait_status("victim stopped", 15, |s| {
        current_service(s, "victim")["state"] == "stopped"
    });
    let stop_s = t.elapsed().as_secs_f64();
    let v = current_service(&v, "victim");
    assert_eq!(v["last_exit_code"], 0, "ended by its TERM trap: {v:#}");
    sb.wait_line("victim: got TERM", 5);
    // The stubborn case: a stopped service that ignores TERM is killed at
    // its stop_timeout (escalation), and nothing is left behind.
    sb.write(
        "services/stubborn.lua",
        r#"service "stubborn" { exec = { "python3", "-c", "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nopen('@DIR@/stubborn.ready', 'w')\nwhile True: time.sleep(0.05)\n" }, stop_timeout = 1, ready = { path = "@DIR@/stubborn.ready" } }"#,
    );
    let (code, reply) = sb.reload(&[]);
    assert_eq!(code, 0, "{reply:#}");
    let sp = sb.wait_status("stubborn ready", 10, |s| {
        running_pid(s, "stubborn").is_some() && current_service(s, "stubborn")["ready"] == true
    });
    let sp = running_pid(&sp, "stubborn").expect("pid");
    let sh = map_pid(&sb, sp);
    kill_host(sh, Signal::STOP);
    wait_proc_state(sh, 'T', 5);
    assert!(sb.ctl(&["stop", "stubborn"]).status.success());
    let s = sb.wait_status("stubborn stopped", 15, |s| {
        current_service(s, "stubborn")["state"] == "stopped"
    });
    assert_eq!(
        current_service(&s, "stubborn")["last_exit_code"],
        128 + 9,
        "KILLed at the timeout"
    );
    assert!(sb
        .console()
        .contains("stubborn: still running 1000 ms after its stop signal, sending KILL"));
    wait_no_zombies(&sb, 10);
    // Nothing left: two sleeps (flip, other), no shell of victim or stubborn.
    let procs = sb.ns_processes();
    assert_eq!(
        procs.iter().filter(|p| p.2 == "sleep").count(),
        2,
        "{procs:?}"
    );
    assert_eq!(
        procs
            .iter()
            .filter(|p| p.2 == "sh" || p.2.starts_with("python"))
            .count(),
        0,
        "{procs:?}"
    );
    eprintln!(
        "storm figures: stop/cont rounds={rounds} reloads={} flip restart while stopped (ms): {flip_ms:?} stop of a stopped TERM-trapping service: {stop_s:.2}s",
        2 * rounds + 1
    );
}

#[test]
fn hundred_thousand_lines_through_a_reexec_and_twenty_restarts() {
    const N: usize = 100_000;
    const RUNS: usize = 21; // 20 restarts
    let per = N.div_ceil(RUNS);
    // Each run takes the next run number from a file, writes its share of
    // the numbered lines (a short pause every 20 lines, so the stream lasts
    // long enough for a re-exec to land in the middle) and ends; the last run
    // exits 0 and stays ended (on-failure), the others exit 1.
    let py = format!(
        "import os, sys, time\n\
         p = '@DIR@/run'\n\
         k = int(open(p).read()) if os.path.exists(p) else 0\n\
         open(p, 'w').write(str(k + 1))\n\
         lo, hi = k * {per} + 1, min((k + 1) * {per}, {N})\n\
         for i in range(lo, hi + 1):\n\
         \x20   sys.stdout.write('%d\\n' % i)\n\
         \x20   sys.stdout.flush()\n\
         \x20   if i % 20 == 0: time.sleep(0.001)\n\
         sys.exit(0 if hi >= {N} else 1)\n"
    );
    let decl = format!(
        r#"service "seq" {{
  exec = {{ "python3", "-c", [==[{py}]==] }},
  restart = "on-failure",
  backoff = {{ initial = 0.01, max = 0.02 }},
  burst = {{ count = 100, interval = 10 }},
  log_file = "@DIR@/seq.log",
  console = false,
}}
"#
    );
    let sb = Sandbox::start("storm-lines", &[("services/seq.lua", &decl)]);
    let count = || {
        std::fs::read_to_string(sb.path("seq.log"))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    };
    // Two re-execs, each in the middle of a run's share of lines.
    let mut at = Vec::new();
    for third in [1, 2] {
        let target = third * N / 3 + per / 2;
        let end = Instant::now() + Duration::from_secs(60);
        while count() < target {
            assert!(Instant::now() < end, "stream too slow: {} lines", count());
            std::thread::sleep(Duration::from_millis(5));
        }
        let before = count();
        let out = sb.ctl(&["reexec"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let right_after = count();
        assert!(
            right_after < N,
            "the stream ended before the re-exec was done: it did not cross it"
        );
        at.push((before, right_after));
    }
    let st = sb.wait_status("seq exited", 120, |s| {
        current_service(s, "seq")["state"] == "exited"
    });
    let seq = current_service(&st, "seq");
    assert_eq!(seq["last_exit_code"], 0, "{seq:#}");
    assert_eq!(seq["restarts"], (RUNS - 1) as u64);
    assert_eq!(st["reexecs"], 2);
    let log = common::read(&sb.path("seq.log"));
    let mut lost = 0usize;
    let mut reordered = 0usize;
    let mut last = 0usize;
    let mut got = BTreeSet::new();
    for l in log.lines() {
        let n: usize = l.parse().unwrap_or_else(|_| panic!("bad line {l:?}"));
        if n <= last {
            reordered += 1;
        }
        last = last.max(n);
        got.insert(n);
    }
    for i in 1..=N {
        if !got.contains(&i) {
            lost += 1;
        }
    }
    eprintln!(
        "storm figures: lines N={N} runs={RUNS} restarts={} reexecs at lines (before, after) {at:?}: lines_in_file={} lost={lost} reordered_or_duplicated={reordered}",
        seq["restarts"],
        log.lines().count()
    );
    assert_eq!((lost, reordered), (0, 0));
    assert_eq!(log.lines().count(), N);
    // The ring keeps only the newest, in order.
    let out = sb.ctl(&["logs", "seq", "-n", "2"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "99999\n100000\n");
}

#[test]
fn reexecs_and_reloads_leave_fds_and_rss_flat() {
    let (reexecs, reloads) = if long() { (50, 1000) } else { (8, 150) };
    let reexecs = scale_num().unwrap_or(reexecs);
    let reloads = scale_num().map_or(reloads, |n| n * 20);
    let svc = |gen: usize| {
        format!(
            "-- generation {gen}\nlocal s = state({{ n = 0 }})\ns.n = s.n + 1\nservice \"a\" {{ exec = {{ \"/bin/sleep\", \"{}\" }} }}\n",
            100000 + gen / 10
        )
    };
    let sb = Sandbox::start(
        "storm-flat",
        &[
            ("services/a.lua", &svc(0)),
            (
                "services/t.lua",
                r#"service "t" { exec = { "/bin/sh", "-c", "while :; do echo tick; sleep 0.1; done" }, console = false }"#,
            ),
        ],
    );
    sb.ready();
    let init = sb.init_pid();
    let t_pid = running_pid(&sb.status(), "t");
    let sample = |what: &str, v: &mut Vec<(usize, u64, u64)>, i: usize| {
        sb.status();
        let lua = sb.status()["lua_memory"].as_u64().unwrap_or(0);
        v.push((settled_fd_count(init), rss_kb(init), lua));
        let _ = what;
        let _ = i;
    };
    // Re-execs.
    let mut rx: Vec<(usize, u64, u64)> = Vec::new();
    for i in 0..reexecs {
        let out = sb.ctl(&["reexec"]);
        assert!(
            out.status.success(),
            "reexec #{i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        sample("reexec", &mut rx, i);
    }
    assert_eq!(sb.status()["reexecs"].as_u64(), Some(reexecs as u64));
    // Reloads: a comment change (a transaction that changes no service) and
    // every tenth one a new argv for `a` (a restart).
    let mut rl: Vec<(usize, u64, u64)> = Vec::new();
    for i in 1..=reloads {
        sb.write("services/a.lua", &svc(i));
        let (code, reply) = sb.reload(&[]);
        assert_eq!(code, 0, "reload #{i}: {reply:#}");
        if i % 10 == 0 {
            sb.wait_status("a running", 10, |s| running_pid(s, "a").is_some());
            sample("reload", &mut rl, i);
        }
    }
    let st = sb.status();
    assert_eq!(st["transactions"].as_u64(), Some(reloads as u64));
    assert_eq!(running_pid(&st, "t"), t_pid, "the ticker kept its pid");
    assert_eq!(
        st["states"]["services/a.lua"]["data"]["n"].as_u64(),
        // Evaluated at boot, at each re-exec's reconcile and each reload.
        Some((1 + reexecs + reloads) as u64),
        "the module state was carried through every evaluation: {:#}",
        st["states"]
    );
    eprintln!("storm figures: reexecs={reexecs} (fds, rss_kb, lua_bytes) {rx:?}");
    eprintln!("storm figures: reloads={reloads} every 10th (fds, rss_kb, lua_bytes) {rl:?}");
    for (what, v) in [("reexec", &rx), ("reload", &rl)] {
        // Warm-up: the first quarter (at least one sample).
        let warm = (v.len() / 4).max(1);
        let fds: Vec<usize> = v[warm..].iter().map(|x| x.0).collect();
        assert!(fds.iter().all(|f| *f == fds[0]), "{what}: fd counts {v:?}");
        assert_flat(what, &v[warm..]);
    }
    // The re-execs and reloads end with the same descriptors.
    assert_eq!(
        rx[rx.len() - 1].0,
        rl[rl.len() - 1].0,
        "fds after re-execs vs after reloads"
    );
}

/// No growth trend in RSS: the highest value in the last third of the
/// samples (after the warm-up) is at most 256 KiB above the highest of the
/// first third. Why 256 KiB: the allocator takes memory in 64 KiB spans per
/// size class and Lua's incremental collector lets garbage reach about
/// twice the live heap (100-190 KB here, `lua_memory`) before a cycle ends,
/// so RSS wobbles by a few spans (measured: under 64 KiB over 150 reloads);
/// a leak of 1 KiB per reload exceeds it within the long run's 1,000
/// reloads, and a leaked descriptor is caught exactly by the fd count.
fn assert_flat(what: &str, v: &[(usize, u64, u64)]) {
    let third = (v.len() / 3).max(1);
    let first = v[..third].iter().map(|x| x.1).max().unwrap_or(0);
    let last = v[v.len() - third..].iter().map(|x| x.1).max().unwrap_or(0);
    assert!(
        last <= first + 256,
        "{what}: RSS grew from {first} to {last} KiB: {v:?}"
    );
}
