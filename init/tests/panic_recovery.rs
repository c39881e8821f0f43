//! PID 1 survives a panic of its own (issue 13): an injected fault panics
//! inside the loop; the panic hook re-executes moonlit on its last
//! checkpoint, and every service keeps its pid. Needs root.

mod common;

use std::time::{Duration, Instant};

use common::Sandbox;

const SERVICES: &[(&str, &str)] = &[
    ("init.lua", ""),
    (
        "services/a.lua",
        r#"service "a" { exec = { "/bin/sleep", "3600" } }"#,
    ),
    (
        "services/b.lua",
        r#"service "b" { exec = { "/bin/sleep", "3600" }, after = { "a" } }"#,
    ),
    // Output written across the recovery must arrive: the log pipe is kept.
    (
        "services/ticker.lua",
        r#"service "ticker" { exec = { "/bin/sh", "-c", "i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.05; done" } }"#,
    ),
];

fn faulty(name: &str) -> Sandbox {
    Sandbox::start_wrapped(name, SERVICES, &[], &["env", "MOONLIT_FAULTS=1"])
}

fn wait_count(sb: &Sandbox, pat: &str, n: usize, secs: u64) {
    let end = Instant::now() + Duration::from_secs(secs);
    while sb.count(pat) < n {
        assert!(
            Instant::now() < end,
            "fewer than {n} lines with {pat:?}; console:\n{}",
            sb.console()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ticks(sb: &Sandbox) -> Vec<u64> {
    sb.console()
        .lines()
        .filter_map(|l| l.split("tick ").nth(1)?.trim().parse().ok())
        .collect()
}

#[test]
fn an_injected_panic_reexecutes_and_keeps_every_service() {
    let mut sb = faulty("panic-recover");
    sb.ready();
    let before = sb.pids();
    assert_eq!(before.len(), 3, "{before:?}");
    let init = sb.init_pid();
    let reexecs = sb.status()["reexecs"].as_u64().expect("reexecs");

    let out = sb.ctl(&["fault", "panic"]);
    // The request never gets a reply: PID 1 re-executed under it.
    assert!(!out.status.success());
    sb.wait_line("recovered from an internal error by re-executing", 20);
    assert!(sb.console().contains("injected fault (ctl fault panic)"));
    assert_eq!(sb.init_pid(), init, "PID 1 is the same process");
    let st = sb.status();
    assert_eq!(st["reexecs"].as_u64(), Some(reexecs + 1));
    assert_eq!(sb.pids(), before, "every service kept its pid");

    // Output went on through the recovery, nothing lost or reordered.
    let n = ticks(&sb).len();
    wait_count(&sb, "tick ", n + 10, 20);
    let t = ticks(&sb);
    let first = t[0];
    assert_eq!(t, (first..first + t.len() as u64).collect::<Vec<_>>());

    // Still supervising: a killed service comes back.
    sb.kill(before["a"], rustix::process::Signal::KILL);
    sb.wait_status("a restarted", 20, |s| {
        s["services"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|x| x["name"] == "a" && x["pid"].as_u64().is_some_and(|p| p != before["a"]))
    });
    // A second recovery works as the first, from a checkpoint that has
    // the restarted service's new pid.
    let after = sb.pids();
    assert!(!sb.ctl(&["fault", "panic"]).status.success());
    wait_count(
        &sb,
        "recovered from an internal error by re-executing",
        2,
        20,
    );
    assert_eq!(sb.pids(), after);
    assert_eq!(sb.poweroff(&[]), 0);
}

#[test]
fn a_panic_storm_ends_in_the_fatal_path_not_a_loop() {
    let mut sb = faulty("panic-storm");
    sb.ready();
    // Five recoveries within a minute are allowed; the sixth gives up.
    for i in 1..=5 {
        assert!(!sb.ctl(&["fault", "panic"]).status.success());
        wait_count(
            &sb,
            "recovered from an internal error by re-executing",
            i,
            20,
        );
    }
    let _ = sb.ctl(&["fault", "panic"]);
    assert_eq!(sb.wait_exit(20), 70);
    assert!(
        sb.console().contains("6 internal errors within 60 s"),
        "{}",
        sb.console()
    );
}

#[test]
fn without_the_fault_switch_the_request_is_refused() {
    let mut sb = Sandbox::start("panic-off", SERVICES);
    sb.ready();
    let before = sb.pids();
    let out = sb.ctl(&["fault", "panic"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("fault injection is off"), "{err}");
    let out = sb.ctl(&["fault"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("fault takes one argument"));
    assert_eq!(sb.pids(), before);
    assert!(!sb.console().contains("recovered from an internal error"));
    assert_eq!(sb.poweroff(&[]), 0);
}

/// A change that does not make the supervisor act (`moonlit.setenv` from
/// `ctl eval`) reaches the checkpoint within a second; the control case
/// shows that a panic right after it loses it (so the test can fail).
#[test]
fn a_change_outside_the_supervisor_reaches_the_checkpoint_within_a_second() {
    let mut sb = faulty("panic-lazy");
    sb.ready();
    let eval = |sb: &Sandbox, code: &str| {
        let out = sb.ctl(&["eval", code]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    // Back to back: the checkpoint taken for the first request is under a
    // second old when the panic comes.
    eval(&sb, "return 1");
    eval(&sb, r#"moonlit.setenv("EARLY", "1")"#);
    assert!(!sb.ctl(&["fault", "panic"]).status.success());
    wait_count(
        &sb,
        "recovered from an internal error by re-executing",
        1,
        20,
    );
    assert_eq!(
        eval(&sb, r#"return tostring(moonlit.getenv("EARLY"))"#),
        "nil"
    );

    eval(&sb, r#"moonlit.setenv("LATE", "1")"#);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!sb.ctl(&["fault", "panic"]).status.success());
    wait_count(
        &sb,
        "recovered from an internal error by re-executing",
        2,
        20,
    );
    assert_eq!(eval(&sb, r#"return tostring(moonlit.getenv("LATE"))"#), "1");
    assert_eq!(sb.poweroff(&[]), 0);
}
