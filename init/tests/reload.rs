//! Hot swap: reload transactions with moonlit as PID 1 in namespaces (root).

mod common;

use std::time::Duration;

use common::Sandbox;
use rustix::process::Signal;

/// A small service: prints its pid, then numbered lines; `tag` marks the
/// version of its argv; traps show which signals it received.
fn svc(name: &str, tag: &str, extra: &str) -> String {
    format!(
        r#"service "{name}" {{
  exec = {{ "/bin/sh", "-c", "trap 'echo {name} got USR1; exit 0' USR1; trap 'echo {name} got HUP' HUP; trap 'echo {name} got TERM; exit 0' TERM; echo {name} {tag} pid $$; i=0; while :; do i=$((i+1)); echo {name} line $i; sleep 0.2; done" }},
  console = true,
  {extra}
}}
"#
    )
}

fn boot(name: &str, files: &[(&str, String)]) -> Sandbox {
    let f: Vec<(&str, &str)> = files.iter().map(|(a, b)| (*a, b.as_str())).collect();
    let sb = Sandbox::start(name, &f);
    sb.ready();
    sb
}

/// The error strings of a reply or status part, joined.
fn errs(v: &serde_json::Value) -> String {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

fn ok_reload(sb: &Sandbox, args: &[&str]) -> serde_json::Value {
    let (code, v) = sb.reload(args);
    assert_eq!(code, 0, "reload failed: {v:#}\n{}", sb.console());
    v
}

#[test]
fn editing_one_module_leaves_the_others_alone() {
    let sb = boot(
        "edit",
        &[
            ("services/web.lua", svc("web", "v1", "")),
            ("services/db.lua", svc("db", "v1", "")),
        ],
    );
    let before = sb.pids();
    sb.write("services/db.lua", &svc("db", "v2", ""));
    let v = ok_reload(&sb, &[]);
    assert_eq!(v["services"]["db"], "restarted");
    assert_eq!(v["services"]["web"], "unchanged");
    assert_eq!(v["changed"], serde_json::json!(["services/db.lua"]));
    sb.wait_line("db v2 pid", 10);
    let after = sb.pids();
    assert_eq!(before["web"], after["web"]);
    assert_ne!(before["db"], after["db"]);
    let generation = sb.status()["generation"].clone();

    // Whitespace and comments only: re-evaluated, nothing restarted.
    sb.write(
        "services/web.lua",
        &format!("-- a comment\n\n{}   \n", svc("web", "v1", "")),
    );
    let v = ok_reload(&sb, &[]);
    assert_eq!(v["changed"], serde_json::json!(["services/web.lua"]));
    assert!(
        v["services"]
            .as_object()
            .expect("services")
            .values()
            .all(|o| o == "unchanged"),
        "{v}"
    );
    assert_eq!(sb.pids(), after);

    // Identical bytes: no transaction at all.
    let gen_now = sb.status()["generation"].clone();
    assert_ne!(gen_now, generation, "the comment edit was a transaction");
    let txn = sb.status()["transactions"].clone();
    let same = std::fs::read_to_string(sb.dir.join("config/services/web.lua")).expect("read");
    sb.write("services/web.lua", &same);
    let v = ok_reload(&sb, &[]);
    assert_eq!(v["message"], "no changes");
    let st = sb.status();
    assert_eq!(st["generation"], gen_now);
    assert_eq!(st["transactions"], txn);
    assert_eq!(sb.pids(), after);
}

#[test]
fn supervisor_only_change_keeps_the_pid_and_applies_live() {
    let mut sb = boot(
        "policy",
        &[("services/a.lua", svc("a", "v1", r#"restart = "always","#))],
    );
    let pid = sb.pids()["a"];
    sb.write(
        "services/a.lua",
        &svc("a", "v1", r#"restart = "never", stop_timeout = 3,"#),
    );
    let v = ok_reload(&sb, &[]);
    assert_eq!(v["services"]["a"], "updated");
    assert_eq!(sb.pids()["a"], pid);
    // Killed now, it follows the new policy: not restarted.
    sb.kill(pid, Signal::KILL);
    sb.wait_status("a exited", 10, |s| s["services"][0]["state"] == "exited");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(sb.service("a")["state"], "exited");
    assert_eq!(sb.count("a v1 pid"), 1);
    assert_eq!(sb.poweroff(&[]), 0);
}

#[test]
fn argv_change_stops_with_the_old_signal_reload_and_defer() {
    let sb = boot(
        "argv",
        &[
            ("services/r.lua", svc("r", "v1", r#"stop_signal = "USR1","#)),
            ("services/h.lua", svc("h", "v1", r#"on_change = "reload","#)),
            ("services/d.lua", svc("d", "v1", r#"on_change = "defer","#)),
        ],
    );
    let before = sb.pids();
    sb.write(
        "services/r.lua",
        &svc("r", "v2", r#"stop_signal = "TERM","#),
    );
    sb.write(
        "services/h.lua",
        &svc("h", "v2", r#"on_change = "reload","#),
    );
    sb.write("services/d.lua", &svc("d", "v2", r#"on_change = "defer","#));
    let v = ok_reload(&sb, &[]);
    assert_eq!(v["services"]["r"], "restarted");
    assert_eq!(v["services"]["h"], "reloaded");
    assert_eq!(v["services"]["d"], "deferred");
    // r: the old process got the OLD stop signal, the new argv runs.
    sb.wait_line("r got USR1", 10);
    assert_eq!(sb.count("r got TERM"), 0);
    sb.wait_line("r v2 pid", 10);
    // h: same pid, got its reload signal.
    sb.wait_line("h got HUP", 10);
    let after = sb.pids();
    assert_eq!(after["h"], before["h"]);
    // d: same pid, marked, and `ctl restart` runs the new argv.
    assert_eq!(after["d"], before["d"]);
    assert_eq!(sb.service("d")["needs_restart"], true);
    assert!(sb.ctl(&["restart", "d"]).status.success());
    sb.wait_line("d v2 pid", 10);
    assert_eq!(sb.service("d")["needs_restart"], false);
}

#[test]
fn removing_and_adding_modules_stops_and_starts_services() {
    let sb = boot(
        "addrm",
        &[
            ("services/a.lua", svc("a", "v1", "")),
            ("services/b.lua", svc("b", "v1", "")),
        ],
    );
    let b_pid = sb.pids()["b"];
    std::fs::remove_file(sb.dir.join("config/services/a.lua")).expect("rm");
    sb.write("services/c.lua", &svc("c", "v1", ""));
    let v = ok_reload(&sb, &[]);
    assert_eq!(v["services"]["a"], "removed");
    assert_eq!(v["services"]["c"], "added");
    sb.wait_line("a got TERM", 10);
    sb.wait_line("c v1 pid", 10);
    let st = sb.wait_status("a gone", 10, |s| {
        s["services"]
            .as_array()
            .is_some_and(|a| a.iter().all(|x| x["name"] != "a"))
    });
    let names: Vec<&str> = st["services"]
        .as_array()
        .expect("services")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names.len(), 2);
    assert!(names.contains(&"b") && names.contains(&"c"));
    assert_eq!(sb.pids()["b"], b_pid);
    // Reaped: no zombie left in the namespace.
    assert!(
        sb.ns_processes().iter().all(|p| p.1 != 'Z'),
        "{:?}",
        sb.ns_processes()
    );
}

#[test]
fn broken_reloads_change_nothing() {
    let sb = boot(
        "broken",
        &[
            ("services/web.lua", svc("web", "v1", "")),
            ("services/db.lua", svc("db", "v1", "")),
        ],
    );
    let pids = sb.pids();
    let good_web = std::fs::read_to_string(sb.dir.join("config/services/web.lua")).expect("read");
    let gen0 = sb.status()["generation"].clone();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "syntax",
            "service \"web\" {\n exec = {\"/bin/true\"\n".into(),
            "services/web.lua:3:",
        ),
        (
            "runtime",
            "local x = nil\nx.y = 1\n".into(),
            "services/web.lua:2: attempt to index a nil value",
        ),
        (
            "schema",
            "\nservice \"web\" { exec = {\"/bin/true\"}, restart = \"maybe\" }\n".into(),
            "services/web.lua:2: service \"web\": restart must be",
        ),
        (
            "duplicate",
            svc("db", "v9", ""),
            "is already declared at services/db.lua:1",
        ),
        (
            "cycle",
            svc("web", "v2", r#"requires = { "db" }, after = { "web" },"#),
            "dependency cycle",
        ),
        (
            "unknown dep",
            svc("web", "v2", r#"requires = { "nothere" },"#),
            "requires unknown service \"nothere\"",
        ),
        (
            "loop",
            format!("{}\nwhile true do end\n", svc("web", "v2", "")),
            "instruction limit exceeded",
        ),
        (
            "memory",
            "local t = {}\nfor i = 1, 1e9 do t[i] = string.rep('m', 65536) .. i end\n".into(),
            "not enough memory",
        ),
    ];
    for (what, content, expect) in cases {
        sb.write("services/web.lua", &content);
        let (code, v) = sb.reload(&[]);
        assert_ne!(code, 0, "{what}: reload must fail: {v}");
        let errors = errs(&v["errors"]);
        assert!(
            errors.contains(expect),
            "{what}: expected {expect:?} in {errors}"
        );
        let st = sb.status();
        assert_eq!(
            st["generation"], gen0,
            "{what}: the old generation stays in force"
        );
        assert!(
            errs(&st["last_reload"]["errors"]).contains(expect),
            "{what}: status shows the error"
        );
        assert_eq!(sb.pids(), pids, "{what}: every pid unchanged");
    }
    // Two modules changed together, one valid and one broken: neither applies.
    sb.write("services/web.lua", &good_web);
    sb.write("services/db.lua", &svc("db", "v2", ""));
    sb.write("services/zz.lua", "service \"zz\" { exce = {} }\n");
    let (code, v) = sb.reload(&[]);
    assert_ne!(code, 0, "{v}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sb.pids(), pids);
    assert_eq!(sb.count("db v2 pid"), 0);
    // Fixed: it applies.
    std::fs::remove_file(sb.dir.join("config/services/zz.lua")).expect("rm");
    let v = ok_reload(&sb, &[]);
    assert_eq!(v["services"]["db"], "restarted");
    assert_eq!(v["services"]["web"], "unchanged");
}

#[test]
fn module_state_survives_reloads_and_migrate_runs_once_per_transaction() {
    let module = |version: u32, default: u32| {
        format!(
            r#"-- revision {version}
local s = state({{ counter = {default}, migrations = {{}} }}, {version})
function migrate(old, old_version)
  old.migrations[#old.migrations + 1] = old_version
  return old
end
function after_reload()
  s.counter = s.counter + 1
end
service "st" {{ exec = {{ "/bin/sleep", "1000" }} }}
"#
        )
    };
    let sb = boot("state", &[("services/st.lua", module(1, 0))]);
    let pid = sb.pids()["st"];
    for i in 2..=11 {
        // The default changes too: it must not reset the live value.
        sb.write("services/st.lua", &module(i, 100 + i));
        ok_reload(&sb, &[]);
    }
    let st = sb.status();
    let state = &st["states"]["services/st.lua"];
    assert_eq!(state["data"]["counter"], 10, "{state}");
    assert_eq!(
        state["data"]["migrations"],
        serde_json::json!([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    );
    assert_eq!(state["version"], 11);
    assert_eq!(
        sb.pids()["st"],
        pid,
        "comment and state edits never restart the service"
    );
    // A migrate that fails, or returns something that is not plain data, aborts.
    for (bad, expect) in [
        ("error('no way')", "no way"),
        ("return { f = function() end }", "not plain"),
    ] {
        sb.write(
            "services/st.lua",
            &format!("local s = state({{ counter = 0 }}, 12)\nfunction migrate(old) {bad} end\nservice \"st\" {{ exec = {{ \"/bin/sleep\", \"1000\" }} }}\n"),
        );
        let (code, v) = sb.reload(&[]);
        assert_ne!(code, 0);
        assert!(errs(&v["errors"]).contains(expect), "{v}");
        assert_eq!(
            sb.status()["states"]["services/st.lua"]["data"]["counter"],
            10
        );
    }
}

#[test]
fn sighup_and_dry_run_and_moving_a_service_between_files() {
    let mut sb = boot(
        "hup",
        &[(
            "services/one.lua",
            format!("{}{}", svc("a", "v1", ""), svc("b", "v1", "")),
        )],
    );
    let pids = sb.pids();
    // Move b to its own file, unchanged: same pid.
    sb.write("services/one.lua", &svc("a", "v1", ""));
    sb.write("services/two.lua", &svc("b", "v1", ""));
    // A dry run reports and changes nothing.
    let (code, v) = sb.reload(&["--dry-run"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["services"]["b"], "unchanged");
    let gen = sb.status()["generation"].clone();
    // SIGHUP (to the sandbox's PID 1) runs the transaction.
    let init = sb.init_pid();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(init as i32).expect("pid"),
        Signal::HUP,
    )
    .expect("hup");
    sb.wait_status("generation moves", 10, |s| s["generation"] != gen);
    assert_eq!(sb.pids(), pids);
    assert_eq!(sb.service("b")["location"], "services/two.lua:1");
    assert_eq!(sb.poweroff(&[]), 0);
}

#[test]
fn the_watch_debounces_edits_and_ignores_touches() {
    let f = [("services/w.lua", svc("w", "v1", ""))];
    let files: Vec<(&str, &str)> = f.iter().map(|(a, b)| (*a, b.as_str())).collect();
    let sb = Sandbox::start_with("watch", &files, &["--watch"]);
    sb.ready();
    let txn = |sb: &Sandbox| sb.status()["transactions"].as_u64().expect("transactions");
    let settle = || std::thread::sleep(Duration::from_millis(1200));
    // An editor's write-then-rename: one transaction.
    let dir = sb.dir.join("config/services");
    std::fs::write(dir.join(".w.lua.swp"), svc("w", "v2", "")).expect("write tmp");
    std::fs::rename(dir.join(".w.lua.swp"), dir.join("w.lua")).expect("rename");
    settle();
    assert_eq!(txn(&sb), 1);
    sb.wait_line("w v2 pid", 10);
    // Ten writes within the quiet period: one transaction.
    for i in 0..10 {
        sb.write("services/w.lua", &svc("w", &format!("v3-{i}"), ""));
        std::thread::sleep(Duration::from_millis(20));
    }
    settle();
    assert_eq!(txn(&sb), 2);
    sb.wait_line("w v3-9 pid", 10);
    assert_eq!(sb.count("w v3-"), 1, "only the last version ran");
    // A touch without a content change: no transaction.
    let gen = sb.status()["generation"].clone();
    let same = std::fs::read(dir.join("w.lua")).expect("read");
    std::fs::write(dir.join("w.lua"), same).expect("rewrite");
    settle();
    assert_eq!(txn(&sb), 2);
    assert_eq!(sb.status()["generation"], gen);
}

#[test]
fn callbacks_see_the_live_state_and_new_events_run_new_code() {
    let module = |tag: &str| {
        format!(
            r#"local s = state({{ starts = 0, exits = {{}} }})
service "c" {{
  exec = {{ "/bin/sh", "-c", "sleep 0.2; exit 5" }},
  backoff = {{ initial = 0.1 }}, burst = {{ count = 100, interval = 60 }},
  on_start = function(name, pid) s.starts = s.starts + 1 end,
  on_exit = function(name, code) s.exits[#s.exits + 1] = "{tag}:" .. code end,
}}
"#
        )
    };
    let sb = Sandbox::start("callbacks", &[("services/c.lua", &module("old"))]);
    sb.ready();
    let state = |sb: &Sandbox| sb.status()["states"]["services/c.lua"]["data"].clone();
    sb.wait_status("two exits", 20, |s| {
        s["states"]["services/c.lua"]["data"]["exits"]
            .as_array()
            .is_some_and(|a| a.len() >= 2)
    });
    // A supervisor-level change (the callback's code): applied live.
    sb.write("services/c.lua", &module("new"));
    let v = ok_reload(&sb, &[]);
    assert_eq!(
        v["services"]["c"], "unchanged",
        "callbacks are not part of the process"
    );
    let before = state(&sb)["exits"].as_array().expect("exits").len();
    sb.wait_status("an exit seen by the new code", 20, |s| {
        s["states"]["services/c.lua"]["data"]["exits"]
            .as_array()
            .is_some_and(|a| a.iter().any(|e| e == "new:5"))
    });
    let st = state(&sb);
    let exits: Vec<&str> = st["exits"]
        .as_array()
        .expect("exits")
        .iter()
        .filter_map(|e| e.as_str())
        .collect();
    assert!(exits[..before].iter().all(|e| *e == "old:5"), "{exits:?}");
    assert!(exits[before..].iter().all(|e| *e == "new:5"), "{exits:?}");
    // Every start counted, by the old code and the new, in one live table.
    assert!(
        st["starts"].as_u64().expect("starts") as usize >= exits.len(),
        "{st}"
    );
    // A callback that fails is reported with its service and name; PID 1 goes on.
    sb.write(
        "services/c.lua",
        "service \"c\" { exec = { \"/bin/sh\", \"-c\", \"sleep 0.2; exit 5\" }, on_exit = function() error('boom') end }\n",
    );
    ok_reload(&sb, &[]);
    sb.wait_line("Lua error in c on_exit: services/c.lua:1: boom", 20);
    assert!(sb.ctl(&["status"]).status.success());
}
