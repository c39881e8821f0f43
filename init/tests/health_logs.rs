//! Health checks after readiness and log files rotated by PID 1, with
//! moonlit as PID 1 of fresh namespaces (root).

mod common;

use std::time::{Duration, Instant};

use common::Sandbox;
use serde_json::Value;

fn svc(st: &Value, name: &str) -> Value {
    st["services"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["name"] == name)
        .cloned()
        .unwrap_or(Value::Null)
}

fn health_of(st: &Value, name: &str) -> String {
    svc(st, name)["health"]["state"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

fn history(sb: &Sandbox, name: &str) -> Vec<String> {
    sb.service(name)["health"]["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|h| h["state"].as_str().expect("state").to_string())
        .collect()
}

/// The `on_health` calls a module recorded in its state.
fn hooks(sb: &Sandbox, module: &str) -> Vec<String> {
    sb.status()["states"][module]["data"]["calls"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_failing_health_check_restarts_after_retries_and_mark_only_marks() {
    // Each service is healthy while its flag file exists.
    let module = r#"local s = state({ calls = {} })
local function hook(name, ok) s.calls[#s.calls + 1] = name .. "=" .. tostring(ok) end
service "r" {
  exec = { "/bin/sh", "-c", "echo r up; exec sleep 1000" },
  health = { exec = { "/bin/sh", "-c", "if test -e @DIR@/config/r-ok; then echo r fine; else echo r is sick >&2; exit 3; fi" },
             every = 0.2, timeout = 2, retries = 3, action = "restart" },
  on_health = hook,
}
service "m" {
  exec = { "/bin/sh", "-c", "echo m up; exec sleep 1000" },
  health = { exec = { "/bin/sh", "-c", "test -e @DIR@/config/m-ok || { echo m is sick; exit 1; }" },
             every = 0.2, timeout = 2, retries = 3, action = "mark" },
  on_health = hook,
}
service "t" {
  exec = { "/bin/sleep", "1000" },
  health = { tcp = 7199, every = 0.2, timeout = 1, retries = 2, action = "mark" },
}
service "tl" {
  exec = { "python3", "-u", "-c", "import socket\ns = socket.socket(); s.bind(('127.0.0.1', 7198)); s.listen(5)\nwhile True: s.accept()[0].close()\n" },
  ready = { tcp = 7198 },
  health = { tcp = 7198, every = 0.2, timeout = 1, retries = 2, action = "mark" },
}
service "slow" {
  exec = { "/bin/sleep", "1000" },
  health = { exec = { "/bin/sleep", "30" }, every = 0.2, timeout = 0.3, retries = 1, action = "mark" },
}
"#;
    let sb = Sandbox::start(
        "health",
        &[
            ("init.lua", "assert(require('net').link('lo'):up())\n"),
            ("services/h.lua", module),
            ("r-ok", ""),
            ("m-ok", ""),
        ],
    );
    sb.ready();
    let st = sb.wait_status("r and m healthy", 20, |s| {
        health_of(s, "r") == "healthy" && health_of(s, "m") == "healthy"
    });
    let r0 = svc(&st, "r");
    let r_pid = r0["pid"].as_u64().expect("r pid");
    assert_eq!(r0["restarts"], 0);
    assert_eq!(r0["health"]["failures"], 0);
    assert_eq!(r0["health"]["last_output"], "r fine");
    let m_pid = svc(&st, "m")["pid"].as_u64().expect("m pid");

    // r's check starts failing: after 3 failures in a row it is restarted.
    std::fs::remove_file(sb.path("config/r-ok")).expect("rm r-ok");
    // (The restart is counted when it is decided: wait for the new process
    // too, not the old one being stopped.)
    let st = sb.wait_status("r restarted by its health check", 20, |s| {
        let r = svc(s, "r");
        r["restarts"].as_u64() >= Some(1) && r["pid"].as_u64().is_some_and(|p| p != r_pid)
    });
    std::fs::write(sb.path("config/r-ok"), "").expect("r-ok again");
    sb.wait_line(
        "moonlit: r: health check failed (1/3): r is sick (check exited with code 3)",
        5,
    );
    sb.wait_line("moonlit: r: health check failed (2/3)", 5);
    let line = sb.wait_line(
        "moonlit: r: unhealthy (3 failed checks in a row): r is sick",
        5,
    );
    assert!(line.contains("restart #1"), "{line}");
    assert!(
        sb.count("moonlit: r: health check failed (3/3)") == 0,
        "the third failure is the transition:\n{}",
        sb.console()
    );
    let r1 = svc(&st, "r");
    assert_ne!(r1["pid"].as_u64(), Some(r_pid), "a new process: {r1:#}");
    assert!(r1["health"]["unhealthy_count"].as_u64() >= Some(1));
    // Healthy again with the file back, and no more restarts.
    let st = sb.wait_status("r healthy again", 20, |s| health_of(s, "r") == "healthy");
    let restarts = svc(&st, "r")["restarts"].as_u64().expect("restarts");
    let h = history(&sb, "r");
    // healthy -> unhealthy -> (the new process) starting -> ... -> healthy
    // (one more unhealthy and starting if the file came back late).
    assert_eq!(
        h[..4],
        ["starting", "healthy", "unhealthy", "starting"],
        "{h:?}"
    );
    assert_eq!(h.last().map(String::as_str), Some("healthy"), "{h:?}");
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(sb.service("r")["restarts"].as_u64(), Some(restarts));
    assert!(sb.count("r: r up") >= 2, "{}", sb.console());

    // m only gets marked: same pid, no restart, failures keep counting.
    std::fs::remove_file(sb.path("config/m-ok")).expect("rm m-ok");
    let st = sb.wait_status("m unhealthy", 20, |s| health_of(s, "m") == "unhealthy");
    let m = svc(&st, "m");
    assert_eq!(m["pid"].as_u64(), Some(m_pid));
    assert_eq!(m["restarts"], 0);
    assert_eq!(m["state"], "running");
    assert!(m["health"]["failures"].as_u64() >= Some(3), "{m:#}");
    assert_eq!(m["health"]["last_ok"], false);
    assert!(
        m["health"]["last_output"]
            .as_str()
            .is_some_and(|o| o.starts_with("m is sick")),
        "{m:#}"
    );
    sb.wait_status("m keeps being probed", 10, |s| {
        svc(s, "m")["health"]["failures"].as_u64() >= Some(6)
    });
    let text = sb.ctl(&["status"]);
    let text = String::from_utf8_lossy(&text.stdout);
    let mline = text
        .lines()
        .find(|l| l.starts_with("m "))
        .expect("m in ctl status");
    assert!(mline.contains("health unhealthy"), "{text}");
    assert!(mline.contains("m is sick"), "{text}");
    std::fs::write(sb.path("config/m-ok"), "").expect("m-ok again");
    let st = sb.wait_status("m healthy again", 20, |s| health_of(s, "m") == "healthy");
    assert_eq!(svc(&st, "m")["pid"].as_u64(), Some(m_pid));
    assert_eq!(svc(&st, "m")["restarts"], 0);
    assert_eq!(
        history(&sb, "m"),
        ["starting", "healthy", "unhealthy", "healthy"]
    );

    // The hook saw every change, in order.
    let calls = hooks(&sb, "services/h.lua");
    let of = |n: &str| -> Vec<String> {
        calls
            .iter()
            .filter(|c| c.starts_with(&format!("{n}=")))
            .cloned()
            .collect()
    };
    assert_eq!(of("m"), ["m=true", "m=false", "m=true"], "{calls:?}");
    // (More than one restart if the test was slow to put the file back.)
    let r = of("r");
    assert!(
        r.len() >= 3
            && r[..2] == ["r=true", "r=false"]
            && r.last().map(String::as_str) == Some("r=true"),
        "{calls:?}"
    );

    // A TCP check against a port nobody listens on: refused, unhealthy.
    let st = sb.wait_status("t unhealthy", 10, |s| health_of(s, "t") == "unhealthy");
    let out = svc(&st, "t")["health"]["last_output"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        out.contains("127.0.0.1:7199") && out.to_lowercase().contains("refused"),
        "{out}"
    );
    let st = sb.wait_status("tl healthy", 10, |s| health_of(s, "tl") == "healthy");
    assert_eq!(svc(&st, "tl")["health"]["failures"], 0);
    // A check that outlives its timeout is killed and counts as failed.
    let st = sb.wait_status("slow unhealthy", 10, |s| {
        health_of(s, "slow") == "unhealthy"
    });
    let out = svc(&st, "slow")["health"]["last_output"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(out.contains("timed out after 0.3 s"), "{out}");
    // Several of slow's checks have been killed by now: at most the one in
    // flight (and one being killed) is left.
    let checks = sb
        .ns_processes()
        .into_iter()
        .filter(|p| p.1 != 'Z')
        .filter(|p| {
            std::fs::read(format!("/proc/{}/cmdline", p.0)).unwrap_or_default()
                == b"/bin/sleep\x0030\x00"
        })
        .count();
    assert!(
        svc(&sb.status(), "slow")["health"]["checks"].as_u64() >= Some(3),
        "{:#}",
        sb.service("slow")
    );
    assert!(
        checks <= 2,
        "killed checks are gone: {checks} still running"
    );
    assert!(sb.ctl(&["status"]).status.success());
}

#[test]
fn a_reload_keeps_health_and_a_change_of_only_the_check_keeps_the_pid() {
    let module = |retries: u32, desc: &str| {
        format!(
            r#"service "w" {{
  description = "{desc}",
  exec = {{ "/bin/sleep", "1000" }},
  health = {{ path = "@DIR@/config/w-ok", every = 0.2, retries = {retries}, action = "restart" }},
}}
"#
        )
    };
    let sb = Sandbox::start(
        "healthreload",
        &[("services/w.lua", &module(3, "one")), ("w-ok", "")],
    );
    sb.ready();
    let st = sb.wait_status("w healthy", 20, |s| health_of(s, "w") == "healthy");
    let pid = svc(&st, "w")["pid"].as_u64().expect("pid");
    let checks = svc(&st, "w")["health"]["checks"].as_u64().expect("checks");
    assert_eq!(history(&sb, "w"), ["starting", "healthy"]);
    // A change elsewhere: the health record is kept as it was.
    sb.write("services/w.lua", &module(3, "two"));
    let (code, v) = sb.reload(&[]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["services"]["w"], "updated", "{v}");
    let w = sb.service("w");
    assert_eq!(w["pid"].as_u64(), Some(pid));
    assert_eq!(w["health"]["state"], "healthy");
    assert_eq!(history(&sb, "w"), ["starting", "healthy"], "{w:#}");
    assert!(
        w["health"]["checks"].as_u64() >= Some(checks),
        "the count goes on"
    );
    // Only the check changes: applied live, same pid, the record starts over.
    sb.write("services/w.lua", &module(5, "two"));
    let (code, v) = sb.reload(&[]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["services"]["w"], "updated", "{v}");
    let w = sb.service("w");
    assert_eq!(w["pid"].as_u64(), Some(pid));
    assert_eq!(w["health"]["retries"], 5);
    assert_eq!(w["health"]["failures"], 0);
    assert_eq!(
        history(&sb, "w")[..3],
        ["starting", "healthy", "starting"],
        "{w:#}"
    );
    sb.wait_status("w healthy under the new check", 20, |s| {
        health_of(s, "w") == "healthy"
    });
    assert_eq!(sb.service("w")["pid"].as_u64(), Some(pid));
    assert_eq!(sb.service("w")["restarts"], 0);
}

const LINES: usize = 200_000;
const MAX: u64 = 1 << 20;

#[test]
fn two_hundred_thousand_lines_through_a_rotating_log_file() {
    // 47 bytes a line, about 9 MB: rotated 8 or 9 times, the oldest dropped.
    let svc_src = format!(
        r#"service "seq" {{
  oneshot = true, console = false,
  exec = {{ "/bin/sh", "-c", "seq -w 1 {LINES} | sed 's/$/ abcdefghijklmnopqrstuvwxyz0123456789/'" }},
  log_file = {{ path = "@DIR@/logs/seq.log", max_size = "1M", keep = 3 }},
}}
service "ts" {{
  oneshot = true, console = false,
  exec = {{ "/bin/sh", "-c", "echo one; echo two" }},
  log_file = {{ path = "@DIR@/logs/ts.log", timestamps = true }},
}}
"#
    );
    let mut sb = Sandbox::start("rotate", &[("services/seq.lua", &svc_src)]);
    sb.ready();
    let base = sb.path("logs/seq.log");
    let last_line = format!("{LINES} abcdefghijklmnopqrstuvwxyz0123456789");
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let st = sb.status();
        let done = svc(&st, "seq")["state"] == "exited";
        let cur = std::fs::read_to_string(&base).unwrap_or_default();
        if done && cur.lines().last() == Some(last_line.as_str()) {
            break;
        }
        assert!(
            Instant::now() < end,
            "seq did not finish writing: {st:#}\n{}",
            sb.console()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(sb.service("seq")["last_exit_code"], 0);
    let name = |i: u32| {
        if i == 0 {
            base.clone()
        } else {
            sb.path(&format!("logs/seq.log.{i}"))
        }
    };
    assert!(!name(4).exists(), "keep = 3: no fourth old file");
    let mut all = String::new();
    for i in (0..=3).rev() {
        let text = common::read(&name(i));
        let size = text.len() as u64;
        assert!(
            size <= MAX,
            "{} is {size} bytes, over 1 MiB",
            name(i).display()
        );
        assert!(text.ends_with('\n'), "{} ends mid-line", name(i).display());
        if i > 0 {
            // A rotated file was full: the next line would not have fitted.
            assert!(
                size > MAX - 100,
                "{} rotated early: {size}",
                name(i).display()
            );
        }
        all.push_str(&text);
    }
    let nums: Vec<usize> = all
        .lines()
        .map(|l| {
            assert!(
                l.ends_with(" abcdefghijklmnopqrstuvwxyz0123456789"),
                "a damaged line: {l:?}"
            );
            l[..6]
                .parse()
                .unwrap_or_else(|_| panic!("not numbered: {l:?}"))
        })
        .collect();
    assert_eq!(nums.last(), Some(&LINES));
    for w in nums.windows(2) {
        assert_eq!(w[0] + 1, w[1], "a gap or a duplicate at {}", w[0]);
    }
    // Three full old files and the current one: more than 3 MiB of the newest lines.
    assert!(
        nums.len() * 47 > 3 * MAX as usize,
        "only {} lines kept",
        nums.len()
    );
    // `ctl logs` is unchanged: the newest lines, as the service wrote them.
    let out = sb.ctl(&["logs", "seq", "-n", "2"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let want = format!(
        "{:06} abcdefghijklmnopqrstuvwxyz0123456789\n{last_line}\n",
        LINES - 1
    );
    assert_eq!(text, want);
    // Timestamps: each line of that file starts with its RFC 3339 UTC time.
    sb.wait_status("ts done", 10, |s| svc(s, "ts")["state"] == "exited");
    let ts = common::read(&sb.path("logs/ts.log"));
    let lines: Vec<&str> = ts.lines().collect();
    assert_eq!(lines.len(), 2, "{ts}");
    for (l, want) in lines.iter().zip(["one", "two"]) {
        let (stamp, rest) = l.split_once(' ').expect("stamp and line");
        assert_eq!(rest, want);
        let out = std::process::Command::new("date")
            .args(["-u", "-d", stamp, "+%s"])
            .output()
            .expect("date");
        assert!(out.status.success(), "date(1) cannot read {stamp:?}");
        let t: u64 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("secs");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        assert!(t <= now && now - t < 120, "{stamp} is not about now");
        assert!(stamp.ends_with('Z') && stamp.len() == 24, "{stamp}");
    }
    let out = sb.ctl(&["logs", "ts"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text, "one\ntwo\n",
        "ctl logs shows the lines without stamps"
    );
    assert_eq!(sb.poweroff(&[]), 0);
}

#[test]
fn bad_log_and_health_settings_are_rejected_with_file_and_line() {
    let cases: &[(&str, &str)] = &[
        (
            r#"log_file = { path = "/tmp/x.log", max_size = "10Q" }"#,
            r#"log_file.max_size: bad size "10Q""#,
        ),
        (
            r#"log_file = { path = "/tmp/x.log", max_size = "1M", keep = 0 }"#,
            "log_file.keep must be a whole number from 1 to 100, got 0",
        ),
        (
            r#"log_file = { path = "x.log", max_size = "1M" }"#,
            r#"log_file.path must be an absolute path, got "x.log""#,
        ),
        (
            r#"log_file = { path = "/tmp/x.log", max_size = 100 }"#,
            "log_file.max_size must be at least 16 KiB",
        ),
        (r#"health = { every = 1 }"#, "health needs exec"),
        (
            r#"health = { tcp = 80, path = "/run/x" }"#,
            "health takes one of exec, tcp or path",
        ),
        (
            r#"health = { tcp = 80, action = "reboot" }"#,
            r#"health.action must be "restart" or "mark", got "reboot""#,
        ),
        (
            r#"health = { tcp = 80, retries = 0 }"#,
            "health.retries must be",
        ),
        (
            r#"health = { tcp = 80, intervall = 3 }"#,
            "health: unknown key 'intervall'",
        ),
    ];
    for (setting, want) in cases {
        let dir = common::scratch("hlcheck");
        std::fs::create_dir_all(dir.join("services")).expect("mkdir");
        std::fs::write(
            dir.join("services/bad.lua"),
            format!("-- a comment line\nservice \"bad\" {{\n  exec = {{ \"/bin/true\" }},\n  {setting},\n}}\n"),
        )
        .expect("write");
        let out = std::process::Command::new(common::BIN)
            .arg("check")
            .arg(&dir)
            .output()
            .expect("moonlit check");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{setting}: accepted:\n{text}");
        assert!(
            text.contains("services/bad.lua:2: service \"bad\": ") && text.contains(want),
            "{setting}: expected services/bad.lua:2 and {want:?} in:\n{text}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
    // The negative control: the good form of each passes.
    let dir = common::scratch("hlcheck-ok");
    std::fs::create_dir_all(dir.join("services")).expect("mkdir");
    std::fs::write(
        dir.join("services/good.lua"),
        r#"service "good" {
  exec = { "/bin/true" },
  log_file = { path = "/tmp/x.log", max_size = "512K", keep = 3, timestamps = true },
  health = { exec = { "/bin/true" }, every = 10, timeout = 2, retries = 3, action = "mark" },
}
service "plain" { exec = { "/bin/true" }, log_file = "/tmp/y.log", health = { tcp = 80, host = "::1" } }
"#,
    )
    .expect("write");
    let out = std::process::Command::new(common::BIN)
        .arg("check")
        .arg(&dir)
        .output()
        .expect("moonlit check");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_log_size_on_reload_is_rejected_and_pid_1_carries_on() {
    let sb = Sandbox::start(
        "badreload",
        &[(
            "services/a.lua",
            r#"service "a" { exec = { "/bin/sleep", "1000" } }"#,
        )],
    );
    sb.ready();
    let pid = sb.service("a")["pid"].as_u64();
    sb.write(
        "services/a.lua",
        "service \"a\" {\n  exec = { \"/bin/sleep\", \"1000\" },\n  log_file = { path = \"/tmp/a.log\", max_size = \"ten megs\" } }\n",
    );
    let (code, v) = sb.reload(&[]);
    assert_ne!(code, 0, "{v}");
    let e = v["error"].as_str().unwrap_or("");
    assert!(
        e.contains("services/a.lua:1: service \"a\": log_file.max_size: bad size \"ten megs\""),
        "{v}"
    );
    assert_eq!(sb.service("a")["pid"].as_u64(), pid);
    assert!(sb.ctl(&["status"]).status.success());
}

#[test]
fn health_records_and_rotation_survive_a_reexec() {
    let sb = Sandbox::start(
        "healthreexec",
        &[(
            "services/w.lua",
            r#"service "w" {
  exec = { "/bin/sh", "-c", "i=0; while :; do i=$((i+1)); echo tick $i xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; sleep 0.01; done" },
  console = false,
  log_file = { path = "@DIR@/logs/w.log", max_size = "16K", keep = 2 },
  health = { path = "@DIR@/config/w-ok", every = 0.2, retries = 2, action = "mark" },
}
"#,
        )],
    );
    sb.ready();
    // Unhealthy (no flag file yet), then healthy: a record worth keeping.
    sb.wait_status("w unhealthy", 20, |s| health_of(s, "w") == "unhealthy");
    std::fs::write(sb.path("config/w-ok"), "").expect("w-ok");
    let st = sb.wait_status("w healthy", 20, |s| health_of(s, "w") == "healthy");
    let pid = svc(&st, "w")["pid"].as_u64();
    let before = history(&sb, "w");
    assert_eq!(before, ["starting", "unhealthy", "healthy"]);
    let out = sb.ctl(&["reexec"]);
    assert!(
        out.status.success(),
        "reexec: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let w = sb.service("w");
    assert_eq!(w["pid"].as_u64(), pid);
    assert_eq!(history(&sb, "w"), before, "{w:#}");
    assert_eq!(w["health"]["unhealthy_count"], 1);
    // Probing goes on in the new image.
    let checks = w["health"]["checks"].as_u64().expect("checks");
    std::fs::remove_file(sb.path("config/w-ok")).expect("rm w-ok");
    sb.wait_status("w unhealthy again after the re-exec", 20, |s| {
        health_of(s, "w") == "unhealthy"
            && svc(s, "w")["health"]["checks"].as_u64() > Some(checks + 1)
    });
    // Rotation went on across it: the files hold consecutive ticks.
    let end = Instant::now() + Duration::from_secs(30);
    while !sb.path("logs/w.log.2").exists() {
        assert!(
            Instant::now() < end,
            "no second rotation:\n{}",
            sb.console()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut all = String::new();
    for f in ["logs/w.log.2", "logs/w.log.1", "logs/w.log"] {
        let t = common::read(&sb.path(f));
        assert!(t.len() <= 16 * 1024, "{f}: {} bytes", t.len());
        all.push_str(&t);
    }
    let n: Vec<u64> = all
        .lines()
        .map(|l| {
            let rest = l.strip_prefix("tick ").expect("tick");
            rest.split(' ').next().expect("n").parse().expect("n")
        })
        .collect();
    for w in n.windows(2) {
        assert_eq!(w[0] + 1, w[1], "a gap or a duplicate at {}", w[0]);
    }
}
