//! Per-service cgroups on this host: the sandbox's PID 1 gets a cgroup of
//! its own under the host's cgroup2 (here without controllers) and its own
//! cgroup namespace; each service gets a child cgroup. What a service is,
//! when it has stopped and what a kill reaches follow the cgroup, not the
//! first pid. Needs root and a writable cgroup2 on the host: fails loudly
//! without them.

mod common;

use common::Sandbox;
use std::time::{Duration, Instant};

/// The host's cgroup2 must be writable for these tests to mean anything.
fn require_cgroup2() {
    let mounts = std::fs::read_to_string("/proc/self/mounts").expect("mounts");
    assert!(
        mounts
            .lines()
            .any(|l| l.split_whitespace().nth(2) == Some("cgroup2")),
        "no cgroup2 is mounted on this host: the cgroup tests need one"
    );
}

/// Processes of the sandbox other than its PID 1, by command name.
fn others(sb: &Sandbox) -> Vec<String> {
    let init = sb.init_pid();
    sb.ns_processes()
        .into_iter()
        .filter(|(p, state, _)| *p != init && *state != 'Z')
        .map(|(_, _, c)| c)
        .collect()
}

/// The sandbox's cgroup on the host (`<our cgroup>/moonlit-sandbox-<pid>`).
fn host_cgroup(sb: &Sandbox) -> std::path::PathBuf {
    let mounts = std::fs::read_to_string("/proc/self/mounts").expect("mounts");
    let mnt = mounts
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&"cgroup2")).then(|| f[1].to_string())
        })
        .expect("cgroup2 mount");
    let own = std::fs::read_to_string("/proc/self/cgroup").expect("own cgroup");
    let rel = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("cgroup2 line")
        .trim_start_matches('/')
        .to_string();
    std::path::Path::new(&mnt).join(rel).join(format!(
        "moonlit-sandbox-{}",
        sb.child.as_ref().expect("running").id()
    ))
}

fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_double_forking_daemon_is_followed_and_stopped_with_nothing_left() {
    require_cgroup2();
    // The starter forks a subshell that forks the daemon and exits; then the
    // starter exits 0. One daemon writes its pid, the other does not.
    let daemon = r#"( sleep 3600 & echo $! > "$1" ) ; sleep 0.2; exit 0"#;
    let cfg = format!(
        r#"
service "pidfile" {{
  type = "forking",
  pid_file = "@DIR@/pf.pid",
  exec = {{ "/bin/sh", "-c", [[{daemon}]], "sh", "@DIR@/pf.pid" }},
}}
service "nopidfile" {{
  type = "forking",
  exec = {{ "/bin/sh", "-c", [[{daemon}]], "sh", "@DIR@/np.pid" }},
}}
service "after" {{
  after = {{ "pidfile", "nopidfile" }},
  exec = {{ "/bin/sleep", "3600" }},
}}
"#
    );
    let mut sb = Sandbox::start("cg-fork", &[("services/d.lua", &cfg)]);
    sb.wait_line("pidfile: ready (its starter exited 0)", 20);
    sb.wait_line("nopidfile: ready (its starter exited 0)", 20);
    // Dependents start once the starters have exited 0.
    let st = sb.wait_status("after running", 20, |v| {
        v["services"].as_array().is_some_and(|a| {
            a.iter()
                .any(|s| s["name"] == "after" && s["state"] == "running")
        })
    });
    assert_eq!(st["cgroups"]["enabled"], true, "{st}");
    for (name, file) in [("pidfile", "pf.pid"), ("nopidfile", "np.pid")] {
        let want: u64 = std::fs::read_to_string(sb.dir.join(file))
            .expect("daemon pid")
            .trim()
            .parse()
            .expect("pid");
        let s = sb.wait_status(&format!("{name} follows its daemon"), 10, |v| {
            v["services"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|s| s["name"] == name && s["pid"].as_u64() == Some(want))
            })
        });
        let svc = s["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap()
            .clone();
        assert_eq!(svc["state"], "running", "{svc}");
        assert_eq!(svc["cgroup"]["populated"], true, "{svc}");
        assert!(
            svc["cgroup"]["path"]
                .as_str()
                .is_some_and(|p| p.ends_with(&format!("/{name}.service"))),
            "{svc}"
        );
    }
    assert_eq!(
        others(&sb).iter().filter(|c| *c == "sleep").count(),
        3,
        "{:?}",
        others(&sb)
    );
    for name in ["pidfile", "nopidfile"] {
        let out = sb.ctl(&["stop", name]);
        assert!(out.status.success(), "{out:?}");
    }
    sb.wait_status("both stopped", 20, |v| {
        v["services"].as_array().is_some_and(|a| {
            a.iter()
                .filter(|s| s["name"] != "after")
                .all(|s| s["state"] == "stopped")
        })
    });
    for name in ["pidfile", "nopidfile"] {
        let s = sb.service(name);
        assert_eq!(s["cgroup"]["populated"], false, "{s}");
    }
    // Only the unrelated service's sleep is left.
    wait_until("only one sleep left", 5, || {
        others(&sb).iter().filter(|c| *c == "sleep").count() == 1
    });
    // On the host the sandbox's cgroup holds moonlit's leaf and the
    // services'; it is removed when the sandbox ends.
    let host = host_cgroup(&sb);
    for sub in ["init.scope", "after.service", "pidfile.service"] {
        assert!(
            host.join(sub).is_dir(),
            "{} missing",
            host.join(sub).display()
        );
    }
    assert_eq!(sb.poweroff(&[]), 0);
    assert!(!host.exists(), "{} left behind", host.display());
}

#[test]
fn what_a_service_leaves_behind_is_killed_when_it_ends() {
    require_cgroup2();
    // The main process puts a child in a new session (out of reach of a
    // process-group kill) and exits.
    let cfg = r#"
service "leaver" {
  restart = "never",
  exec = { "/bin/sh", "-c", "setsid sleep 3600 & sleep 0.3; exit 4" },
}
"#;
    let mut sb = Sandbox::start("cg-leave", &[("services/l.lua", cfg)]);
    sb.wait_line(
        "leaver: main process exited with code 4; killing what is left",
        20,
    );
    let s = sb.wait_status("leaver exited", 10, |v| {
        v["services"][0]["state"] == "exited"
    });
    assert_eq!(s["services"][0]["last_exit_code"], 4, "{s}");
    assert!(others(&sb).is_empty(), "{:?}", others(&sb));
    assert_eq!(sb.poweroff(&[]), 0);
}

/// A service's cgroup emptied through cgroup.kill takes its restart. On
/// kernels with cgroup.kill's kill_seq (seen on 6.18) every child created
/// straight into such a cgroup with clone3's CLONE_INTO_CGROUP is killed at
/// birth; spawn notices that the child never ran and starts it the other
/// way. Without that, each restart here dies of KILL until the service is
/// given up.
#[test]
fn a_service_restarts_into_a_cgroup_that_cgroup_kill_emptied() {
    require_cgroup2();
    let cfg = r#"
service "again" {
  restart = "always",
  backoff = { initial = 0.05 },
  exec = { "/bin/sh", "-c", "echo run >> @DIR@/runs; setsid sleep 3600 & sleep 0.3; exit 3" },
}
"#;
    let mut sb = Sandbox::start("cg-again", &[("services/a.lua", cfg)]);
    let runs = sb.path("runs");
    wait_until("three runs of the service", 20, || {
        std::fs::read_to_string(&runs).is_ok_and(|t| t.lines().count() >= 3)
    });
    let console = sb.console();
    assert!(
        console.contains("again: main process exited with code 3; killing what is left"),
        "{console}"
    );
    assert!(!console.contains("killed by signal KILL"), "{console}");
    assert_eq!(sb.poweroff(&[]), 0);
}

#[test]
fn cgroup_kill_ends_a_fork_bomb_confined_to_its_service() {
    require_cgroup2();
    // Four loops that ignore TERM keep forking children in new sessions
    // (each ignoring TERM too) as fast as they can, bounded only by a short
    // sleep so the host survives without a pids limit.
    let bomb = r#"trap '' TERM
b() { while :; do setsid sleep 600 & setsid sh -c 'sleep 600' & sleep 0.005; done; }
b & b & b & b & wait"#;
    let cfg = format!(
        r#"
service "bomb" {{
  stop_timeout = 1,
  exec = {{ "/bin/sh", "-c", [[{bomb}]] }},
}}
service "bystander" {{
  exec = {{ "/bin/sleep", "3600" }},
}}
"#
    );
    let mut sb = Sandbox::start("cg-bomb", &[("services/b.lua", &cfg)]);
    sb.wait_status("bomb running", 20, |v| {
        v["services"]
            .as_array()
            .is_some_and(|a| a.iter().all(|s| s["state"] == "running"))
    });
    wait_until("the bomb to grow", 20, || others(&sb).len() > 200);
    let t = Instant::now();
    let out = sb.ctl(&["stop", "bomb"]);
    assert!(out.status.success(), "{out:?}");
    let s = sb.wait_status("bomb stopped", 20, |v| {
        v["services"].as_array().is_some_and(|a| {
            a.iter()
                .any(|s| s["name"] == "bomb" && s["state"] == "stopped")
        })
    });
    let took = t.elapsed();
    let bomb = common::service_in(&s, "bomb");
    assert_eq!(bomb["cgroup"]["populated"], false, "{bomb}");
    // TERM is ignored: only the kill after stop_timeout ended it.
    assert!(took >= Duration::from_millis(900), "stopped in {took:?}");
    sb.wait_line("bomb: stopped (killed by signal KILL)", 5);
    // Nothing of the bomb is left; the other service is untouched.
    wait_until("the bomb to be gone", 5, || {
        let o = others(&sb);
        o.len() == 1 && o[0] == "sleep"
    });
    assert_eq!(sb.service("bystander")["state"], "running");
    assert_eq!(sb.poweroff(&[]), 0);
}

#[test]
fn ctl_stop_reports_stopped_only_when_the_cgroup_is_empty() {
    require_cgroup2();
    // TERM ends the main process at once; its child (new session, TERM
    // ignored) lingers 3 s more.
    let cfg = r#"
service "lingers" {
  stop_timeout = 20,
  exec = { "/bin/sh", "-c", "setsid sh -c 'trap \"\" TERM; sleep 3; echo child-done' & exec sleep 3600" },
}
"#;
    let mut sb = Sandbox::start("cg-stop", &[("services/l.lua", cfg)]);
    sb.wait_status("running", 20, |v| v["services"][0]["state"] == "running");
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    let out = sb.ctl(&["stop", "lingers"]);
    assert!(out.status.success(), "{out:?}");
    sb.wait_line(
        "lingers: main process killed by signal TERM; waiting for its cgroup to empty",
        5,
    );
    let s = sb.service("lingers");
    assert_eq!(s["state"], "stopping", "{s}");
    assert_eq!(s["cgroup"]["populated"], true, "{s}");
    sb.wait_status("stopped", 20, |v| v["services"][0]["state"] == "stopped");
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(2000),
        "reported stopped after {took:?}, while its child still ran"
    );
    sb.wait_line("lingers: stopped (killed by signal TERM)", 5);
    assert_eq!(sb.service("lingers")["cgroup"]["populated"], false);
    assert!(others(&sb).is_empty(), "{:?}", others(&sb));
    assert_eq!(sb.poweroff(&[]), 0);
}

#[test]
fn a_limit_whose_controller_is_missing_fails_that_service_by_name() {
    require_cgroup2();
    // This host's cgroup2 offers no memory controller to the sandbox.
    let cfg = r#"
service "limited" {
  restart = "never",
  cgroup = { memory_max = "64M" },
  exec = { "/bin/sleep", "3600" },
}
service "free" {
  exec = { "/bin/sleep", "3600" },
}
"#;
    let mut sb = Sandbox::start("cg-noctl", &[("services/m.lua", cfg)]);
    let st = sb.wait_status("free running", 20, |v| {
        v["services"].as_array().is_some_and(|a| {
            a.iter()
                .any(|s| s["name"] == "free" && s["state"] == "running")
        })
    });
    let ctls: Vec<String> = st["cgroups"]["controllers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    if ctls.iter().any(|c| c == "memory") {
        panic!("this host gives the sandbox a memory controller ({ctls:?}): the negative control needs a host without one");
    }
    let line = sb.wait_line("limited: cannot start:", 10);
    assert!(
        line.contains("cgroup.memory_max needs the memory controller")
            && line.contains("services/m.lua:2"),
        "{line}"
    );
    assert_eq!(sb.poweroff(&[]), 0);
}

#[test]
fn lua_reads_service_stats() {
    require_cgroup2();
    let cfg = r#"
service "s" {
  exec = { "/bin/sleep", "3600" },
  on_start = function(name)
    sleep(0.2)
    local st, err = moonlit.service_stats(name)
    print("stats " .. name .. " populated=" .. tostring(st and st.populated))
    local none, why = moonlit.service_stats("nosuch")
    print("stats nosuch " .. tostring(none) .. " " .. tostring(why))
  end,
}
"#;
    let mut sb = Sandbox::start("cg-lua", &[("services/s.lua", cfg)]);
    sb.wait_line("stats s populated=true", 20);
    sb.wait_line("stats nosuch nil service \"nosuch\" has no cgroup", 5);
    assert_eq!(sb.poweroff(&[]), 0);
}

#[test]
fn without_a_writable_cgroup2_services_still_start_and_status_says_why() {
    require_cgroup2();
    // The host's cgroup2 read-only in this mount namespace only.
    let setup = r#"set -e
for m in $(awk '$3 == "cgroup2" { print $2 }' /proc/self/mounts); do
  mount -o remount,bind,ro "$m"
done
exec "$0" "$@""#;
    let cfg = r#"
service "plain" {
  exec = { "/bin/sh", "-c", "echo plain-up; exec sleep 3600" },
}
service "limited" {
  cgroup = { pids_max = 10 },
  exec = { "/bin/sh", "-c", "echo limited-up; exec sleep 3600" },
}
"#;
    let mut sb = Sandbox::start_wrapped(
        "cg-ro",
        &[("services/p.lua", cfg)],
        &[],
        &[
            "unshare",
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            setup,
        ],
    );
    sb.wait_line("plain-up", 20);
    sb.wait_line("limited-up", 20);
    sb.wait_line("cgroups are off:", 5);
    sb.wait_line(
        "limited: cgroup limits (services/p.lua:5) not applied: cgroups are off",
        5,
    );
    let st = sb.status();
    assert_eq!(st["cgroups"]["enabled"], false, "{st}");
    let reason = st["cgroups"]["reason"].as_str().unwrap_or("");
    assert!(reason.contains("read-only"), "{reason}");
    for s in st["services"].as_array().unwrap() {
        assert_eq!(s["state"], "running", "{s}");
        assert!(s["cgroup"].is_null(), "{s}");
    }
    let text = sb.ctl(&["status"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("cgroups: off: sandbox: the cgroup2 filesystem at")
            && text.contains("is mounted read-only"),
        "{text}"
    );
    // Stopping still works the old way (process group).
    assert!(sb.ctl(&["stop", "plain"]).status.success());
    sb.wait_status("plain stopped", 20, |v| {
        v["services"].as_array().is_some_and(|a| {
            a.iter()
                .any(|s| s["name"] == "plain" && s["state"] == "stopped")
        })
    });
    assert_eq!(sb.poweroff(&[]), 0);
}

#[test]
fn bad_cgroup_settings_are_rejected_with_their_location() {
    let dir = common::scratch("cg-check");
    let cfg = dir.join("config");
    std::fs::create_dir_all(cfg.join("services")).unwrap();
    for (body, want) in [
        (
            r#"cgroup = { memory_maxx = "1G" }"#,
            "unknown key 'memory_maxx' (known: memory_max",
        ),
        (
            r#"cgroup = { memory_max = "lots" }"#,
            "cgroup.memory_max: bad size \"lots\"",
        ),
        (
            r#"cgroup = { cpu_max = "fast" }"#,
            "cgroup.cpu_max: expected \"QUOTA PERIOD\"",
        ),
        (
            r#"cgroup = { pids_max = -1 }"#,
            "cgroup.pids_max: expected a number of processes",
        ),
        (
            r#"type = "forky""#,
            "type must be \"simple\", \"forking\", \"oneshot\" or \"notify\"",
        ),
        (
            r#"pid_file = "/run/x.pid""#,
            "pid_file goes with type = \"forking\"",
        ),
    ] {
        std::fs::write(
            cfg.join("services/x.lua"),
            format!("\nservice \"x\" {{ exec = {{ \"/bin/true\" }}, {body} }}\n"),
        )
        .unwrap();
        let out = common::check(&cfg);
        let err = String::from_utf8_lossy(&out.stderr).to_string()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{body} was accepted: {err}");
        assert!(
            err.contains("services/x.lua:2") && err.contains(want),
            "{body}: {err}"
        );
    }
    // The same file with good settings passes (the control).
    std::fs::write(
        cfg.join("services/x.lua"),
        "service \"x\" { exec = { \"/bin/true\" }, type = \"forking\", pid_file = \"/run/x.pid\", cgroup = { memory_max = \"64M\", cpu_max = \"50%\", pids_max = 64, cpu_weight = 200, io_weight = 50, swap_max = 0, memory_high = \"48M\" } }\n",
    )
    .unwrap();
    let out = common::check(&cfg);
    assert!(out.status.success(), "{out:?}");
}

/// Host pids in a cgroup directory, sorted.
fn procs(dir: &std::path::Path) -> Vec<u32> {
    let mut v: Vec<u32> = std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    v.sort_unstable();
    v
}

/// The pid a host process has in its innermost pid namespace.
fn ns_pid(host_pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{host_pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .and_then(|l| l.split_whitespace().last().map(str::to_string))
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
}

#[test]
fn reexec_and_reload_keep_cgroups_and_a_removed_service_loses_its_own() {
    require_cgroup2();
    let mut sb = Sandbox::start(
        "cg-keep",
        &[
            (
                "services/keep.lua",
                r#"service "keep" { exec = { "/bin/sh", "-c", "setsid sleep 3600 & exec sleep 3601" } }"#,
            ),
            (
                "services/gone.lua",
                r#"service "gone" { exec = { "/bin/sleep", "3600" } }"#,
            ),
        ],
    );
    sb.ready();
    let host = host_cgroup(&sb);
    let keep = host.join("keep.service");
    wait_until("keep's two processes", 10, || procs(&keep).len() == 2);
    let before = procs(&keep);
    let pid = sb.service("keep")["pid"].as_u64().expect("pid");
    let out = sb.ctl(&["reexec"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(sb.status()["reexecs"], 1);
    // The same processes in the same cgroup, still followed as a cgroup.
    let s = sb.service("keep");
    assert_eq!(s["pid"].as_u64(), Some(pid), "{s}");
    assert_eq!(s["cgroup"]["populated"], true, "{s}");
    assert_eq!(procs(&keep), before);
    let main = *before
        .iter()
        .find(|p| ns_pid(**p) == pid)
        .expect("the main process on the host");
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(main as i32).expect("pid"),
        rustix::process::Signal::TERM,
    )
    .expect("kill");
    sb.wait_line(
        "keep: main process killed by signal TERM; killing what is left in its cgroup",
        10,
    );
    // Restarted: two new processes, none of the old ones.
    wait_until("keep restarted", 10, || {
        let now = procs(&keep);
        now.len() == 2 && now.iter().all(|p| !before.contains(p))
    });
    // A reload without gone's file stops it and removes its cgroup.
    assert!(host.join("gone.service").is_dir());
    std::fs::remove_file(sb.dir.join("config/services/gone.lua")).expect("rm");
    let out = sb.ctl(&["reload"]);
    assert!(out.status.success(), "{out:?}");
    wait_until("gone's cgroup removed", 10, || {
        !host.join("gone.service").exists()
    });
    assert!(keep.is_dir());
    assert_eq!(sb.poweroff(&[]), 0);
}
