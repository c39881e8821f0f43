//! moonlit as PID 1 of fresh pid/mount/uts/ipc/net namespaces (root).

mod common;

use std::time::{Duration, Instant};

use common::{read, Sandbox};

#[test]
fn reaps_a_thousand_orphaned_grandchildren() {
    let mut sb = Sandbox::start(
        "orphans",
        &[(
            "services/orphans.lua",
            r#"service "maker" {
                 oneshot = true,
                 exec = { "/bin/sh", "-c", "i=0; while [ $i -lt 1000 ]; do (sleep 0.3 &); i=$((i+1)); done; echo made" },
               }"#,
        )],
    );
    sb.ready();
    sb.wait_line("maker: made", 60);
    let st = sb.wait_status("1000 orphans reaped", 60, |s| {
        s["orphans_reaped"].as_u64().unwrap_or(0) >= 1000
    });
    assert!(st["orphans_reaped"].as_u64().unwrap_or(0) >= 1000);
    // Nothing in the namespace is left as a zombie.
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let procs = sb.ns_processes();
        let zombies: Vec<_> = procs.iter().filter(|p| p.1 == 'Z').collect();
        let sleepers = procs.iter().filter(|p| p.2 == "sleep").count();
        if zombies.is_empty() && sleepers == 0 {
            break;
        }
        assert!(
            Instant::now() < end,
            "zombies left: {zombies:?} ({sleepers} sleepers)"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(sb.poweroff(&[]), 0);
}

#[test]
fn crashing_service_backs_off_then_is_marked_failed() {
    let sb = Sandbox::start(
        "crash",
        &[(
            "services/crash.lua",
            r#"service "crash" {
                 exec = { "/bin/sh", "-c", "read up idle < /proc/uptime; echo run $up; exit 3" },
                 backoff = { initial = 0.1, max = 5 },
                 burst = { count = 5, interval = 60 },
               }"#,
        )],
    );
    sb.wait_line("crash: failed:", 30);
    let console = sb.console();
    // The announced delays grow: 0, then 0.1 doubling.
    let delays: Vec<f64> = console
        .lines()
        .filter(|l| l.contains("moonlit: crash: exited with code 3, restart #"))
        .map(|l| {
            l.rsplit(" in ")
                .next()
                .and_then(|d| d.trim_end_matches(" s").parse().ok())
                .expect("delay")
        })
        .collect();
    assert_eq!(delays, vec![0.0, 0.1, 0.2, 0.4, 0.8], "console:\n{console}");
    // And the runs really were spaced that way: each run reports its own
    // start (uptime, 10 ms resolution), so the loop's reading delays do not count.
    let runs: Vec<f64> = console
        .lines()
        .filter_map(|l| l.split("crash: run ").nth(1))
        .map(|t| t.trim().parse().expect("uptime"))
        .collect();
    assert_eq!(runs.len(), 6, "6 runs (first + 5 restarts):\n{console}");
    for (i, d) in delays.iter().enumerate().skip(1) {
        let gap = runs[i + 1] - runs[i];
        assert!(
            gap + 0.011 >= *d,
            "gap {gap} before run {} shorter than the delay {d}",
            i + 2
        );
    }
    let s = sb.service("crash");
    assert_eq!(s["state"], "failed");
    assert_eq!(s["restarts"], 5);
    // Failed stays failed.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(sb.count("crash: run "), 6);
}

#[test]
fn hand_stopped_service_stays_stopped() {
    let sb = Sandbox::start(
        "manual",
        &[(
            "services/s.lua",
            r#"service "svc" { exec = { "/bin/sleep", "1000" }, restart = "always" }"#,
        )],
    );
    sb.ready();
    let first = sb.wait_status("svc running", 10, |s| {
        s["services"][0]["state"] == "running"
    })["services"][0]["pid"]
        .clone();
    let out = sb.ctl(&["stop", "svc"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    sb.wait_status("svc stopped", 10, |s| {
        s["services"][0]["state"] == "stopped"
    });
    std::thread::sleep(Duration::from_millis(1500));
    let s = sb.service("svc");
    assert_eq!(s["state"], "stopped");
    assert_eq!(s["manual_stop"], true);
    assert_eq!(s["restarts"], 0);
    assert!(
        sb.ns_processes().iter().all(|p| p.2 != "sleep"),
        "the process is gone"
    );
    // Started by hand, it runs again under a new pid.
    assert!(sb.ctl(&["start", "svc"]).status.success());
    let again = sb.wait_status("svc running again", 10, |s| {
        s["services"][0]["state"] == "running"
    })["services"][0]["pid"]
        .clone();
    assert_ne!(first, again);
}

#[test]
fn hundred_thousand_lines_are_captured_in_order() {
    let sb = Sandbox::start(
        "lines",
        &[(
            "services/seq.lua",
            r#"service "seq" { exec = { "seq", "1", "100000" }, oneshot = true, log_file = "@DIR@/seq.log" }"#,
        )],
    );
    sb.wait_status("seq exited", 60, |s| s["services"][0]["state"] == "exited");
    let log = read(&sb.path("seq.log"));
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 100_000);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(
            l.parse::<usize>().ok(),
            Some(i + 1),
            "line {} is {l:?}",
            i + 1
        );
    }
    // The ring buffer has the newest ones, in order.
    let out = sb.ctl(&["logs", "seq", "-n", "3"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "99998\n99999\n100000\n"
    );
    // The console saw them all too, unless the console reader fell behind
    // (then moonlit says how many lines it dropped rather than blocking).
    let dropped = sb.status()["console_dropped"].as_u64().unwrap_or(0);
    if dropped == 0 {
        let end = Instant::now() + Duration::from_secs(10);
        while sb.count("seq: ") < 100_000 && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(50));
        }
        let got: Vec<usize> = sb
            .lines
            .lock()
            .expect("lock")
            .iter()
            .filter_map(|l| l.split("] seq: ").nth(1).and_then(|n| n.parse().ok()))
            .collect();
        assert_eq!(got, (1..=100_000).collect::<Vec<_>>());
    }
}

#[test]
fn shutdown_stops_services_in_reverse_dependency_order() {
    let svc = |name: &str, deps: &str| {
        format!(
            r#"service "{name}" {{ {deps} exec = {{ "/bin/sh", "-c", "trap 'echo {name} got TERM; sleep 0.3; echo {name} done; exit 0' TERM; echo {name} up; while :; do sleep 0.05; done" }} }}"#
        )
    };
    let files = [
        ("services/db.lua".to_string(), svc("db", "")),
        (
            "services/app.lua".to_string(),
            svc("app", r#"requires = { "db" },"#),
        ),
        (
            "services/web.lua".to_string(),
            svc("web", r#"after = { "app" }, requires = { "db" },"#),
        ),
    ];
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let mut sb = Sandbox::start("order", &files);
    sb.ready();
    sb.wait_line("web: web up", 10);
    // Start order: db, app, web. The services' own "up" lines race (`after`
    // orders starts, not first output); pids in a fresh pid namespace are
    // handed out in order, so they show the order moonlit started them in.
    let pid = |n: &str| sb.service(n)["pid"].as_u64().expect("pid");
    assert!(pid("db") < pid("app") && pid("app") < pid("web"));
    assert_eq!(sb.poweroff(&["--code", "7"]), 7);
    let console = sb.console();
    let pos = |pat: &str| {
        console
            .find(pat)
            .unwrap_or_else(|| panic!("{pat:?} missing:\n{console}"))
    };
    // web stops before app (after = app), both before db (they require it);
    // each is done before the next one is even signalled.
    assert!(pos("web done") < pos("app got TERM"), "{console}");
    assert!(pos("app done") < pos("db got TERM"), "{console}");
    assert!(console.contains("exiting with code 7"));
}

#[test]
fn main_service_exit_code_becomes_the_exit_code() {
    let mut sb = Sandbox::start(
        "main",
        &[(
            "services/app.lua",
            r#"service "app" { main = true, restart = "never", exec = { "/bin/sh", "-c", "sleep 0.3; exit 42" } }"#,
        )],
    );
    assert_eq!(sb.wait_exit(30), 42);
    assert!(sb.console().contains("main service ended with code 42"));
}

#[test]
fn sigterm_to_the_sandbox_powers_off_cleanly() {
    let mut sb = Sandbox::start(
        "term",
        &[(
            "services/s.lua",
            r#"service "s" { exec = { "/bin/sleep", "1000" } }"#,
        )],
    );
    sb.ready();
    let pid = sb.child.as_ref().expect("child").id();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).expect("pid"),
        rustix::process::Signal::TERM,
    )
    .expect("kill");
    assert_eq!(sb.wait_exit(20), 0);
    let c = sb.console();
    assert!(c.contains("received SIGTERM: power off"), "{c}");
    assert!(c.contains("s: stopped (killed by signal TERM)"), "{c}");
}

#[test]
fn errors_in_lua_leave_pid1_running_and_answering() {
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        ("init-syntax", &[("init.lua", "print('a'\nlocal = 3\n")], "init.lua:2:"),
        ("init-runtime", &[("init.lua", "print('before')\nlocal x = nil\nx.y = 1\n")], "init.lua:3:"),
        ("init-loop", &[("init.lua", "print('spinning')\nwhile true do end\n")], "instruction limit exceeded"),
        ("init-pcall-loop", &[("init.lua", "while true do pcall(function() while true do end end) end\n")], "instruction limit exceeded"),
        ("init-memory", &[("init.lua", "local t = {}\nfor i = 1, 1e9 do t[i] = string.rep('x', 1024) .. i end\n")], "not enough memory"),
        ("init-exit", &[("init.lua", "os.exit(1)\n")], "init.lua:1:"),
        ("mod-syntax", &[("services/bad.lua", "service \"x\" {\n exec = {\"/bin/true\"\n")], "services/bad.lua:3:"),
        ("mod-runtime", &[("services/bad.lua", "local t = nil\nservice \"x\" { exec = { t.y } }\n")], "services/bad.lua:2:"),
        ("mod-schema", &[("services/bad.lua", "\n\nservice \"x\" { exce = { \"/bin/true\" } }\n")], "services/bad.lua:3: service \"x\": unknown key 'exce' (did you mean 'exec'?)"),
        ("mod-type", &[("services/bad.lua", "service \"x\" { exec = { \"/bin/true\" }, stop_timeout = \"soon\" }\n")], "stop_timeout must be a number"),
        ("mod-cycle", &[("services/bad.lua", "service \"x\" { exec = { \"/bin/true\" }, after = { \"y\" } }\nservice \"y\" { exec = { \"/bin/true\" }, requires = { \"x\" } }\n")], "dependency cycle"),
        ("mod-missing", &[("services/bad.lua", "service \"x\" { exec = { \"/bin/true\" }, requires = { \"nope\" } }\n")], "requires unknown service \"nope\""),
        ("mod-dup", &[("services/bad.lua", "service \"good\" { exec = { \"/bin/sleep\", \"1000\" } }\n")], "is already declared at services/bad.lua:1"),
    ];
    for (name, files, expect) in cases {
        let mut all: Vec<(&str, &str)> = files.to_vec();
        all.push((
            "services/good.lua",
            r#"service "good" { exec = { "/bin/sleep", "1000" } }"#,
        ));
        let mut sb = Sandbox::start(name, &all);
        sb.ready();
        let st = sb.wait_status("good running", 10, |s| {
            s["services"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|x| x["name"] == "good" && x["state"] == "running")
        });
        let errors: Vec<&str> = st["errors"]
            .as_array()
            .into_iter()
            .chain(st["lua_errors"].as_array())
            .flatten()
            .filter_map(|e| e.as_str())
            .collect();
        let errors = errors.join("\n");
        assert!(
            errors.contains(expect),
            "case {name}: expected {expect:?} in the reported errors, got {errors}\nconsole:\n{}",
            sb.console()
        );
        // Still answering, and a clean poweroff.
        assert!(sb.ctl(&["status"]).status.success());
        assert_eq!(sb.poweroff(&[]), 0, "case {name}");
    }
}

#[test]
fn children_start_with_a_clean_signal_state_and_fds() {
    let sb = Sandbox::start(
        "clean",
        &[
            ("services/status.lua", r#"service "st" { oneshot = true, exec = { "/bin/cat", "/proc/self/status" }, log_file = "@DIR@/status" }"#),
            ("services/fds.lua", r#"service "fds" { oneshot = true, exec = { "/bin/ls", "/proc/self/fd" }, log_file = "@DIR@/fds" }"#),
            ("services/stat.lua", r#"service "stat" { oneshot = true, exec = { "/bin/cat", "/proc/self/stat" }, log_file = "@DIR@/stat" }"#),
            // A Lua-spawned child gets the same treatment, even with an fd the script left open.
            ("init.lua", "local sys = require 'sys'\nlocal keep = sys.open('/dev/null', 'rdonly')\nif keep then keep:nogc() end\nlocal code, out = sh('cat /proc/self/status; ls /proc/self/fd')\nprint('LUA-CHILD ' .. out:gsub('\\n', ' '))\n"),
        ],
    );
    sb.wait_status("all three exited", 20, |s| {
        s["services"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|x| x["state"] == "exited")
    });
    let status = read(&sb.path("status"));
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} missing"))
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(
        field("SigBlk:"),
        "0000000000000000",
        "blocked mask must be empty"
    );
    assert_eq!(field("SigIgn:"), "0000000000000000", "no signal ignored");
    // stdin, stdout, stderr and ls's own directory fd: nothing else leaked.
    assert_eq!(
        read(&sb.path("fds")).split_whitespace().collect::<Vec<_>>(),
        vec!["0", "1", "2", "3"]
    );
    // Own session and process group: pid == pgrp == sid.
    let stat = read(&sb.path("stat"));
    let after = &stat[stat.rfind(')').expect(")") + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let pid: &str = stat.split_whitespace().next().expect("pid");
    assert_eq!(
        (f[2], f[3]),
        (pid, pid),
        "pgrp and session of {pid}: {stat}"
    );
    let lua = sb.wait_line("LUA-CHILD", 10);
    assert!(
        lua.contains("SigBlk:\t0000000000000000") && lua.contains("SigIgn:\t0000000000000000"),
        "{lua}"
    );
    assert!(lua.trim_end().ends_with("0 1 2 3"), "Lua child fds: {lua}");
}

#[test]
fn control_socket_refuses_non_root_clients() {
    use std::os::unix::fs::PermissionsExt;
    let sb = Sandbox::start(
        "cred",
        &[(
            "services/s.lua",
            r#"service "s" { exec = { "/bin/sleep", "1000" } }"#,
        )],
    );
    sb.ready();
    let mode = std::fs::metadata(&sb.sock)
        .expect("socket")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let as_nobody = |sb: &Sandbox| {
        std::process::Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                common::BIN,
                "ctl",
                "--socket",
            ])
            .arg(&sb.sock)
            .arg("status")
            .output()
            .expect("setpriv (util-linux) must be installed")
    };
    let out = as_nobody(&sb);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Even with the file mode opened up, the peer credentials are checked.
    std::fs::set_permissions(&sb.sock, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    std::fs::set_permissions(&sb.dir, std::fs::Permissions::from_mode(0o755)).expect("chmod dir");
    let out = as_nobody(&sb);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("permission denied: uid 65534"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        sb.service("s")["state"],
        "running",
        "nothing happened to the system"
    );
    assert!(sb.ctl(&["status"]).status.success());
}

#[test]
fn control_socket_survives_bad_and_stuck_clients() {
    let sb = Sandbox::start(
        "badctl",
        &[(
            "services/s.lua",
            r#"service "s" { exec = { "/bin/sleep", "1000" } }"#,
        )],
    );
    sb.ready();
    let pid_before = sb.service("s")["pid"].clone();
    // A client that connects and sends half a request, then stalls.
    let mut stuck = std::os::unix::net::UnixStream::connect(&sb.sock).expect("connect");
    std::io::Write::write_all(&mut stuck, b"{\"v\":1,\"cmd\":").expect("write");
    // Others are served meanwhile.
    let t = Instant::now();
    assert!(sb.ctl(&["status"]).status.success());
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "a stuck client blocked the loop"
    );
    let r = sb.raw(b"not json\n");
    assert!(
        r.contains("\"ok\":false") && r.contains("malformed request"),
        "{r}"
    );
    let r = sb.raw(&vec![b'x'; 100 * 1024]);
    assert!(r.contains("request too large"), "{r}");
    let r = sb.raw(b"{\"v\":99,\"cmd\":\"status\"}\n");
    assert!(r.contains("unsupported protocol version"), "{r}");
    let r = sb.raw(b"{\"v\":1,\"cmd\":\"frobnicate\"}\n");
    assert!(r.contains("unknown command"), "{r}");
    let r = sb.raw(b"[1,2,3]\n");
    assert!(r.contains("expected a JSON object"), "{r}");
    let r = sb.raw(b"{\"v\":1,\"cmd\":\"stop\"}\n");
    assert!(r.contains("needs a service name"), "{r}");
    let r = sb.raw(b"{\"v\":1,\"cmd\":\"stop\",\"name\":\"nope\"}\n");
    assert!(r.contains("no such service"), "{r}");
    // The stalled client is dropped after the request timeout.
    stuck
        .set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    let mut buf = Vec::new();
    let _ = std::io::Read::read_to_end(&mut stuck, &mut buf);
    assert!(
        buf.is_empty(),
        "stuck client got {:?}",
        String::from_utf8_lossy(&buf)
    );
    assert_eq!(sb.service("s")["pid"], pid_before, "nothing else happened");
}

#[test]
fn lua_blocking_calls_yield_to_the_loop() {
    let sb = Sandbox::start(
        "sched",
        &[(
            "init.lua",
            r#"
-- every call below yields to the event loop and comes back
print("A sleep start")
sleep(0.2)
local code, out = sh("echo out; echo err >&2; exit 4")
print("B sh", code, (out:gsub("\n", "|")))
local p = spawn{ "/bin/sh", "-c", "sleep 0.1; exit 5" }
print("C spawn", type(p.pid), p:wait())
local k = spawn{ "/bin/sleep", "10" }
k:kill("TERM")
print("D kill", k:wait())
-- a user's coroutine.wrap must not swallow the scheduler's yields
local gen = coroutine.wrap(function() for i = 1, 3 do sleep(0.01); coroutine.yield(i) end end)
print("E wrap", gen(), gen(), gen())
local co = coroutine.create(function(a) sleep(0.01); local b = coroutine.yield(a + 1); return b * 2 end)
local _, x = coroutine.resume(co, 1)
local _, y = coroutine.resume(co, 10)
print("F resume", x, y, coroutine.status(co))
print("G wait_path", wait_path("@DIR@/flag", 5))
print("H wait_path timeout", wait_path("@DIR@/never", 0.1))
print("I bad args", pcall(function() sleep("x") end))
print("J spawn missing", spawn{ "/nonexistent/prog" })
local l = spawn{ "/bin/sh", "-c", "echo $(ulimit -Sn)/$(ulimit -Hn)", limits = { nofile = { soft = 77, hard = 88 } }, stdout = "capture" }
print("K limits", (select(2, l:wait()):gsub("\n", "")))
print("L bad limit", pcall(spawn, { "/bin/true", limits = { nofile = "lots" } }))
sleep(1.5)
print("Z done")
"#,
        )],
    );
    sb.wait_line("A sleep start", 10);
    // While the boot script sleeps, PID 1 answers.
    let st = sb.status();
    assert_eq!(st["ready"], false);
    std::fs::write(sb.path("flag"), "x").expect("flag");
    sb.wait_line("Z done", 20);
    sb.ready();
    let c = sb.console();
    let has = |s: &str| assert!(c.contains(s), "missing {s:?} in:\n{c}");
    has("lua: B sh\t4\tout|err|");
    has("lua: C spawn\tnumber\t5");
    has("lua: D kill\t143");
    has("lua: E wrap\t1\t2\t3");
    has("lua: F resume\t2\t20\tdead");
    has("lua: G wait_path\ttrue");
    has("lua: H wait_path timeout\tnil\twait_path: timed out waiting for");
    has("lua: I bad args\tfalse\tinit.lua:21: sleep: argument #1 must be a non-negative number of seconds, got string");
    has("lua: J spawn missing\tnil\tcannot start /nonexistent/prog");
    has("lua: K limits\t77/88");
    has("lua: L bad limit\tfalse\tspawn: limits.nofile must be a non-negative integer or \"unlimited\"");
}

#[test]
fn check_and_types_commands() {
    let dir = common::scratch("check");
    std::fs::create_dir_all(dir.join("services")).expect("mkdir");
    std::fs::write(
        dir.join("services/ok.lua"),
        "service 'a' { exec = {'/bin/true'} }\n",
    )
    .expect("write");
    let out = std::process::Command::new(common::BIN)
        .arg("check")
        .arg(&dir)
        .output()
        .expect("check");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 services (a), 0 errors"));
    // Negative control: a broken module fails the check, naming file:line.
    std::fs::write(dir.join("services/bad.lua"), "service 'b' { exce = {} }\n").expect("write");
    let out = std::process::Command::new(common::BIN)
        .arg("check")
        .arg(&dir)
        .output()
        .expect("check");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("services/bad.lua:1: service \"b\": unknown key 'exce'"));
    let types = dir.join("types");
    let out = std::process::Command::new(common::BIN)
        .arg("types")
        .arg(&types)
        .output()
        .expect("types");
    assert!(out.status.success());
    for f in ["sys.lua", "syscall.lua", "net.lua", "moonlit.lua"] {
        let text = std::fs::read_to_string(types.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(text.starts_with("---@meta"), "{f} is a LuaLS meta file");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The examples of docs/configuration.md are a valid configuration.
#[test]
fn the_configuration_guide_examples_pass_check() {
    let guide = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md"),
    )
    .expect("docs/configuration.md");
    let blocks: Vec<&str> = guide
        .split("```lua\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap_or(""))
        .collect();
    // Whole files: init.lua, the services, the state module; the other
    // blocks are one-line settings, each checked inside a service of its own.
    let setting = |l: &str| {
        l.split_once(" = ").is_some_and(|(k, _)| {
            !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        })
    };
    let (fragments, whole): (Vec<&str>, Vec<&str>) = blocks
        .iter()
        .partition(|b| b.lines().filter(|l| !l.trim().is_empty()).all(setting));
    // Boot-script examples (neither services nor state) make one init.lua.
    let (decls, scripts): (Vec<&str>, Vec<&str>) = whole
        .iter()
        .partition(|b| b.contains("service \"") || b.contains("state("));
    assert_eq!(
        (scripts.len(), decls.len()),
        (2, 2),
        "init.lua (boot script, tasks), services and state examples: {whole:?}"
    );
    let boot_script = scripts.join("\n");
    assert!(
        !fragments.is_empty(),
        "the setting examples (log_file, health)"
    );
    let dir = common::scratch("guide");
    std::fs::create_dir_all(dir.join("services")).expect("mkdir");
    std::fs::write(dir.join("init.lua"), &boot_script).expect("write");
    std::fs::write(dir.join("services/app.lua"), decls[0]).expect("write");
    std::fs::write(dir.join("services/state.lua"), decls[1]).expect("write");
    let mut frag_services = String::new();
    let mut n = 0;
    for line in fragments.iter().flat_map(|b| b.lines()) {
        let setting = line.split("--").next().unwrap_or("").trim();
        if setting.is_empty() {
            continue;
        }
        n += 1;
        frag_services.push_str(&format!(
            "service \"frag{n}\" {{ exec = {{ \"/bin/true\" }}, {setting} }}\n"
        ));
    }
    std::fs::write(dir.join("services/fragments.lua"), &frag_services).expect("write");
    let out = std::process::Command::new(common::BIN)
        .arg("check")
        .arg(&dir)
        .output()
        .expect("check");
    assert!(
        out.status.success(),
        "{}{}\n{frag_services}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("{} services", 3 + n)) && stdout.contains(", 0 errors"),
        "{stdout}"
    );
    for s in ["db", "migrate", "web"] {
        assert!(stdout.contains(s), "{stdout}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn logs_follow_streams_new_lines_and_a_departed_follower_is_harmless() {
    use std::io::BufRead;
    let sb = Sandbox::start(
        "follow",
        &[(
            "services/t.lua",
            r#"service "t" { exec = { "/bin/sh", "-c", "i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.05; done" } }"#,
        )],
    );
    sb.ready();
    sb.wait_line("t: tick 3", 10);
    let mut child = std::process::Command::new(common::BIN)
        .args(["ctl", "--socket"])
        .arg(&sb.sock)
        .args(["logs", "t", "-f", "-n", "1"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("ctl logs -f");
    let mut r = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut got = Vec::new();
    for _ in 0..6 {
        let mut l = String::new();
        r.read_line(&mut l).expect("read");
        got.push(l.trim().to_string());
    }
    // The first is from the ring buffer, the rest arrive live, in order.
    let nums: Vec<u64> = got
        .iter()
        .map(|l| l.trim_start_matches("tick ").parse().expect("tick N"))
        .collect();
    assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "{got:?}");
    child.kill().expect("kill");
    let _ = child.wait();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(sb.service("t")["state"], "running");
    assert!(sb.ctl(&["status"]).status.success());
}

#[test]
fn services_run_as_their_user_in_their_directory_with_their_env() {
    let sb = Sandbox::start(
        "user",
        &[(
            "services/u.lua",
            r#"service "u" {
                 oneshot = true, user = "nobody", cwd = "/tmp", umask = "027",
                 env = { GREETING = "hi", N = 3 },
                 exec = { "/bin/sh", "-c", "echo id=$(id -u):$(id -g) pwd=$(pwd) umask=$(umask) greeting=$GREETING n=$N svc=$MOONLIT_SERVICE home=$HOME path=$PATH" },
               }"#,
        )],
    );
    let line = sb.wait_line("u: id=", 10);
    assert!(line.contains("id=65534:65534"), "{line}");
    assert!(
        line.contains("pwd=/tmp")
            && line.contains("umask=0027")
            && line.contains("greeting=hi n=3 svc=u"),
        "{line}"
    );
    assert!(
        line.contains("path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
        "{line}"
    );
    // Resource limits, as the service itself sees them.
    sb.write(
        "services/lim.lua",
        r#"service "lim" {
             oneshot = true,
             limits = { nofile = 200, core = 0, nproc = { soft = 50, hard = 100 }, stack = "unlimited" },
             exec = { "/bin/sh", "-c", "grep -E '^Max (open files|core file size|processes|stack size)' /proc/self/limits | tr -s ' '" },
           }"#,
    );
    assert_eq!(sb.ctl(&["reload"]).status.code(), Some(0));
    sb.wait_line("lim: Max stack size", 10);
    let c = sb.console();
    for want in [
        "lim: Max open files 200 200 files",
        "lim: Max core file size 0 0 bytes",
        "lim: Max processes 50 100 processes",
        "lim: Max stack size unlimited unlimited bytes",
    ] {
        assert!(c.contains(want), "{want:?} missing:\n{c}");
    }
    // A soft limit above the hard one it inherits fails the start, named.
    sb.write(
        "services/lim2.lua",
        r#"service "lim2" { restart = "never", limits = { nofile = { soft = 1048577 } }, exec = { "/bin/true" } }"#,
    );
    assert_eq!(sb.ctl(&["reload"]).status.code(), Some(0));
    sb.wait_line(
        "setting the resource limit nofile (soft 1048577, hard unchanged)",
        10,
    );
    // An unknown user is a start failure, reported, not a crash.
    sb.write(
        "services/v.lua",
        r#"service "v" { user = "no-such-user-here", exec = { "/bin/true" }, restart = "never" }"#,
    );
    let (code, _) = {
        let out = sb.ctl(&["--json", "reload"]);
        (out.status.code(), out)
    };
    assert_eq!(code, Some(0));
    sb.wait_line("v: cannot start: unknown user 'no-such-user-here'", 10);
    assert!(sb.ctl(&["status"]).status.success());
}

#[test]
fn boots_with_the_console_on_a_regular_file() {
    // A console that never reports "writable" (a file) must not stall the
    // first turn of the loop.
    common::require_root();
    let dir = common::scratch("filecons");
    std::fs::create_dir_all(dir.join("config/services")).expect("mkdir");
    std::fs::write(
        dir.join("config/services/s.lua"),
        r#"service "s" { exec = { "/bin/sleep", "1000" } }"#,
    )
    .expect("write");
    let log = std::fs::File::create(dir.join("console.log")).expect("log file");
    let sock = dir.join("control.sock");
    let mut child = std::process::Command::new(common::BIN)
        .args(["run", "--sandbox", "--control"])
        .arg(&sock)
        .arg(dir.join("config"))
        .stdout(log.try_clone().expect("dup"))
        .stderr(log)
        .spawn()
        .expect("spawn");
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(dir.join("console.log")).unwrap_or_default();
        if text.contains("moonlit: READY") {
            break;
        }
        assert!(
            Instant::now() < end,
            "never READY with the console on a file:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = std::process::Command::new(common::BIN)
        .args(["ctl", "--json", "--socket"])
        .arg(&sock)
        .arg("status")
        .output()
        .expect("ctl");
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(st["services"][0]["state"], "running", "{st}");
    let out = std::process::Command::new(common::BIN)
        .args(["ctl", "--socket"])
        .arg(&sock)
        .arg("poweroff")
        .output()
        .expect("ctl");
    assert!(out.status.success());
    assert_eq!(child.wait().expect("wait").code(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_stopped_main_service_passes_its_status_on() {
    // As tini and docker do: the main process's status is the exit code,
    // here 128 + TERM when the shutdown stopped it with its stop signal.
    let mut sb = Sandbox::start(
        "mainterm",
        &[(
            "services/app.lua",
            r#"service "app" { main = true, exec = { "/bin/sleep", "1000" } }"#,
        )],
    );
    sb.ready();
    assert_eq!(sb.poweroff(&[]), 143);
    assert!(sb.console().contains("exiting with code 143"));
}

#[test]
fn ctl_eval_runs_lua_inside_the_live_init() {
    let sb = Sandbox::start(
        "eval",
        &[(
            "services/s.lua",
            r#"service "s" { exec = { "/bin/sleep", "1000" } }"#,
        )],
    );
    sb.ready();
    let eval = |code: &str| {
        let out = sb.ctl(&["eval", code]);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    assert_eq!(eval("1 + 1").1, "2\n");
    assert_eq!(
        eval("moonlit.mode, require('sys').getpid()").1,
        "sandbox\n1\n"
    );
    // It may block: it yields to the loop like any task, and PID 1 answers meanwhile.
    let handle = {
        let bin = common::BIN.to_string();
        let sock = sb.sock.clone();
        std::thread::spawn(move || {
            std::process::Command::new(bin)
                .args(["ctl", "--socket"])
                .arg(sock)
                .args([
                    "eval",
                    "sleep(0.5); local c, out = sh('echo hi'); return out",
                ])
                .output()
                .expect("ctl eval")
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    assert!(sb.ctl(&["status"]).status.success());
    let out = handle.join().expect("thread");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n\n");
    // Errors come back as errors; PID 1 goes on.
    let (code, _, err) = eval("error('nope')");
    assert_eq!(code, Some(1));
    assert!(err.contains("ctl eval:1: nope"), "{err}");
    let (code, _, err) = eval("local = 1");
    assert_eq!(code, Some(1));
    assert!(err.contains("ctl eval"), "{err}");
    let (code, _, err) = eval("while true do end");
    assert_eq!(code, Some(1));
    assert!(err.contains("instruction limit exceeded"), "{err}");
    assert_eq!(sb.service("s")["state"], "running");
}
