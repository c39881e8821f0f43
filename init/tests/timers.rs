//! Timers as PID 1 of fresh namespaces: `every` in Lua, calendar timers of
//! services (next run in `ctl status`, fired once), persistent timers that
//! missed a run while the machine was off, no second run while one goes
//! on, and the schedule across re-exec and reload. Needs root.

mod common;

use common::Sandbox;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
}

/// HH:MM:SS of Unix time `t` in this machine's local time (as the sandbox,
/// which shares /etc/localtime, reads calendar times).
fn local_hms(t: i64) -> String {
    let out = std::process::Command::new("date")
        .args(["-d", &format!("@{t}"), "+%H:%M:%S"])
        .output()
        .expect("date");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn service(v: &serde_json::Value, name: &str) -> serde_json::Value {
    v["services"]
        .as_array()
        .expect("services")
        .iter()
        .find(|s| s["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no {name}"))
}

#[test]
fn every_fires_ten_times_in_about_two_seconds() {
    let init = r#"
local sys = require "sys"
local function now() return sys.clock_gettime("monotonic").time end
local t0, n = now(), 0
local h
h = every(0.2, function()
  n = n + 1
  print("tick " .. n)
  if n == 10 then
    print(string.format("ten ticks in %.2f s", now() - t0))
    h:cancel()
  end
end)
"#;
    let mut sb = Sandbox::start("timers-every", &[("init.lua", init)]);
    let line = sb.wait_line("ten ticks in", 20);
    let secs: f64 = line
        .split("ticks in ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!((1.9..2.6).contains(&secs), "{line}");
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(sb.count("tick 11"), 0, "cancelled, yet it ticked on");
    assert_eq!(sb.poweroff(&[]), 0);
}

#[test]
fn a_calendar_timer_shows_its_next_run_and_fires_once() {
    let due = unix_now().ceil() as i64 + 5;
    let hms = local_hms(due);
    let svc = format!(
        r#"service "cal" {{
  oneshot = true,
  exec = {{ "/bin/sh", "-c", "echo cal-ran" }},
  timer = {{ calendar = "*-*-* {hms}" }},
}}
"#
    );
    let mut sb = Sandbox::start("timers-cal", &[("services/cal.lua", &svc)]);
    sb.ready();
    let st = sb.status();
    let cal = service(&st, "cal");
    assert_eq!(cal["state"], "stopped", "not started at boot: {cal}");
    assert_eq!(cal["timer"]["next"].as_f64(), Some(due as f64), "{cal}");
    let text = String::from_utf8_lossy(&sb.ctl(&["status"]).stdout).to_string();
    assert!(text.contains("next run ") && text.contains(&hms), "{text}");
    sb.wait_line("cal: timer elapsed, starting", 15);
    sb.wait_line("cal-ran", 5);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(sb.count("cal-ran"), 1, "{}", sb.console());
    // Next: the same time tomorrow (or after a clock change, near it).
    let next = service(&sb.status(), "cal")["timer"]["next"]
        .as_f64()
        .expect("next");
    assert!((next - due as f64 - 86_400.0).abs() <= 3600.0, "{next}");
    assert_eq!(sb.poweroff(&[]), 0);
}

#[test]
fn a_persistent_timer_that_missed_its_run_fires_after_boot() {
    let dir = common::scratch("timers-state");
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let two_days_ago = ((unix_now() - 2.0 * 86_400.0) * 1000.0) as i64;
    std::fs::write(
        state.join("timers.json"),
        format!(r#"{{"version":1,"last":{{"p":{two_days_ago},"q":{two_days_ago}}}}}"#),
    )
    .unwrap();
    let svc = r#"
service "p" { oneshot = true, exec = { "/bin/sh", "-c", "echo p-ran" }, timer = { calendar = "daily", persistent = true } }
service "q" { oneshot = true, exec = { "/bin/sh", "-c", "echo q-ran" }, timer = { calendar = "daily" } }
"#;
    let env = format!("MOONLIT_STATE_DIR={}", state.display());
    let mut sb = Sandbox::start_wrapped(
        "timers-persist",
        &[("services/t.lua", svc)],
        &[],
        &["env", &env],
    );
    sb.wait_line("p: timer elapsed, starting", 20);
    sb.wait_line("p-ran", 5);
    std::thread::sleep(Duration::from_millis(800));
    // Not persistent: the missed run is not made up for.
    assert_eq!(sb.count("q-ran"), 0, "{}", sb.console());
    let saved = std::fs::read_to_string(state.join("timers.json")).expect("state file");
    let v: serde_json::Value = serde_json::from_str(&saved).expect("json");
    let last = v["last"]["p"].as_i64().expect("p's last run");
    assert!(last > two_days_ago + 86_400_000, "{saved}");
    assert_eq!(sb.poweroff(&[]), 0);
}

#[test]
fn a_run_still_going_is_not_started_twice_and_reexec_keeps_the_schedule() {
    let svc = r#"
service "slow" { oneshot = true, exec = { "/bin/sh", "-c", "echo slow-start; sleep 1" }, timer = { every = 0.3 } }
service "hourly" { oneshot = true, exec = { "/bin/true" }, timer = { every = 3600 } }
"#;
    let mut sb = Sandbox::start("timers-twice", &[("services/t.lua", svc)]);
    sb.wait_line("slow: timer elapsed, not started: already running", 10);
    sb.wait_line("slow-start", 5);
    let before = service(&sb.status(), "hourly")["timer"]["next"].clone();
    assert!(before.as_f64().is_some(), "{before}");
    let out = sb.ctl(&["reexec"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(service(&sb.status(), "hourly")["timer"]["next"], before);
    let out = sb.ctl(&["reload"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(service(&sb.status(), "hourly")["timer"]["next"], before);
    // Runs go on after the re-exec, one at a time.
    let n = sb.count("slow-start");
    std::thread::sleep(Duration::from_millis(2500));
    let more = sb.count("slow-start") - n;
    assert!((1..=3).contains(&more), "{more} runs in 2.5 s of a 1 s job");
    assert_eq!(sb.poweroff(&[]), 0);
}

#[test]
fn bad_timers_are_rejected_with_their_location() {
    let dir = common::scratch("timers-check");
    let cfg = dir.join("config");
    std::fs::create_dir_all(cfg.join("services")).unwrap();
    for (body, want) in [
        (r#"timer = { calendar = "*-*-* 25:00" }"#, "bad hour \"25\""),
        (
            r#"timer = { calender = "daily" }"#,
            "unknown key 'calender'",
        ),
        (
            r#"timer = { persistent = true, every = 60 }"#,
            "persistent goes with calendar",
        ),
        (r#"timer = "Funday""#, "unknown weekday"),
    ] {
        std::fs::write(
            cfg.join("services/x.lua"),
            format!("\nservice \"x\" {{ exec = {{ \"/bin/true\" }}, {body} }}\n"),
        )
        .unwrap();
        let out = common::check(&cfg);
        let err = String::from_utf8_lossy(&out.stderr).to_string()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{body} accepted");
        assert!(
            err.contains("services/x.lua:2") && err.contains(want),
            "{body}: {err}"
        );
    }
    std::fs::write(
        cfg.join("services/x.lua"),
        "service \"x\" { exec = { \"/bin/true\" }, oneshot = true, timer = { calendar = { \"Mon..Fri 09:00\", \"*-*-01 00:00\" }, on_boot = 60, every = 3600, persistent = true, randomized_delay = 30 } }\n",
    )
    .unwrap();
    let out = common::check(&cfg);
    assert!(out.status.success(), "{out:?}");
}
