//! PID 1 gives back its binary's pages after rare work (issue 13): at once
//! when the boot is complete, and 1 s after the loop went quiet following a
//! supervisor action or a reload; the idle loop (status requests) does not
//! trigger it. The memory figures themselves are bench/core's (RSS depends
//! on the link order of the release build); this checks the policy and
//! that PID 1 runs on normally. Needs root.

mod common;

use std::time::{Duration, Instant};

use common::Sandbox;

fn drops(sb: &Sandbox) -> u64 {
    sb.status()["memory"]["binary_page_drops"]
        .as_u64()
        .expect("memory.binary_page_drops in status")
}

/// Sum of the resident kB of PID 1's mappings of its own binary.
fn binary_rss_kb(pid: u32) -> u64 {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("exe link");
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).expect("smaps");
    let mut total = 0;
    let mut ours = false;
    for line in smaps.lines() {
        // A mapping's header line starts with its address range.
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            ours = line.ends_with(&*exe.to_string_lossy());
        } else if ours {
            if let Some(v) = line.strip_prefix("Rss:") {
                total += v
                    .trim()
                    .trim_end_matches(" kB")
                    .trim()
                    .parse::<u64>()
                    .unwrap_or(0);
            }
        }
    }
    total
}

#[test]
fn the_binary_pages_are_dropped_after_boot_and_after_rare_work_only() {
    let sb = Sandbox::start(
        "idle-pages",
        &[
            ("init.lua", ""),
            (
                "services/a.lua",
                r#"service "a" { exec = { "/bin/sleep", "3600" } }"#,
            ),
        ],
    );
    sb.ready();
    let init = sb.init_pid();
    let after_boot = drops(&sb);
    assert!(after_boot >= 1, "no drop when the boot completed");
    assert!(binary_rss_kb(init) > 0, "no mapping of the binary found");

    // Only idle work: status requests for 2.5 s (past the quiet period).
    let end = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < end {
        sb.status();
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(drops(&sb), after_boot, "status requests triggered a drop");

    // Rare work: a restart (a kill and a spawn). Its code is dropped again
    // once the loop has been quiet for a second.
    let pid = sb.service("a")["pid"].as_u64().expect("pid");
    let out = sb.ctl(&["restart", "a"]);
    assert!(out.status.success(), "{out:?}");
    let st = sb.wait_status("a drop after the restart", 10, |v| {
        v["memory"]["binary_page_drops"].as_u64() > Some(after_boot)
    });
    let a = common::service_in(&st, "a");
    assert_eq!(a["state"], "running", "{a}");
    assert_ne!(a["pid"].as_u64(), Some(pid), "not restarted: {a}");

    // A reload, even one that changes nothing, is rare work too.
    let before = drops(&sb);
    let (rc, _) = sb.reload(&[]);
    assert_eq!(rc, 0);
    sb.wait_status("a drop after the reload", 10, |v| {
        v["memory"]["binary_page_drops"].as_u64() > Some(before)
    });
    // And PID 1 goes on serving after each drop.
    assert_eq!(sb.service("a")["state"], "running");
}
