//! Part of the reliability campaign (issue 14): what every process moonlit
//! starts inherits — no blocked or ignored signal, no descriptor beyond 0-2
//! — for services and `spawn{}` children, after restarts, a reload and a
//! re-exec. Needs root.

mod common;

use common::Sandbox;

/// The probe every process runs: its signal masks and open descriptors.
const PROBE: &str = r#"printf 'probe %s blk=%s ign=%s fds=%s\n' "$1" "$(awk '/^SigBlk/ {print $2}' /proc/self/status)" "$(awk '/^SigIgn/ {print $2}' /proc/self/status)" "$(ls /proc/self/fd | sort -n | tr '\n' ,)""#;

fn probes(sb: &Sandbox, tag: &str) -> Vec<String> {
    sb.console()
        .lines()
        .filter(|l| l.contains(&format!("probe {tag} ")))
        .map(str::to_string)
        .collect()
}

fn assert_clean(lines: &[String]) {
    assert!(!lines.is_empty());
    for l in lines {
        // ls itself holds one more fd (3) while it lists /proc/self/fd.
        assert!(
            l.trim_end()
                .ends_with("blk=0000000000000000 ign=0000000000000000 fds=0,1,2,3,"),
            "{l}"
        );
    }
}

#[test]
fn services_and_spawned_children_start_with_clean_signals_and_fds() {
    let svc = format!(
        r#"service "p" {{
  exec = {{ "/bin/sh", "-c", [[{PROBE}; exec sleep 3600]], "sh", "svc" }},
}}
"#
    );
    let init = format!(
        r#"
local p = assert(spawn({{ "/bin/sh", "-c", [[{PROBE}]], "sh", "spawn", stdout = "capture" }}))
local code, out = p:wait()
print(out)
"#
    );
    let mut sb = Sandbox::start("sigstate", &[("init.lua", &init), ("services/p.lua", &svc)]);
    sb.wait_line("probe spawn ", 20);
    sb.wait_line("probe svc ", 20);
    assert_clean(&probes(&sb, "spawn"));
    // Three restarts, a reload that restarts it, a re-exec and a restart
    // by the new image: every start inherits the same clean state.
    for i in 0..3 {
        assert!(sb.ctl(&["restart", "p"]).status.success());
        let want = i + 2;
        let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while probes(&sb, "svc").len() < want {
            assert!(std::time::Instant::now() < end, "restart {i}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    sb.write("services/p.lua", &svc.replace("\"svc\"", "\"svc\", \"v2\""));
    assert!(sb.ctl(&["reload"]).status.success());
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while probes(&sb, "svc").len() < 5 {
        assert!(std::time::Instant::now() < end, "after reload");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(sb.ctl(&["reexec"]).status.success());
    assert!(sb.ctl(&["restart", "p"]).status.success());
    let out = sb.ctl(&["eval", r#"local p = spawn({ "/bin/sh", "-c", [[PROBE]], "sh", "spawn", stdout = "capture" }); local c, o = p:wait(); print(o)"#.replace("PROBE", PROBE).as_str()]);
    assert!(out.status.success(), "{out:?}");
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while probes(&sb, "svc").len() < 6 || probes(&sb, "spawn").len() < 2 {
        assert!(
            std::time::Instant::now() < end,
            "after reexec: {}",
            sb.console()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_clean(&probes(&sb, "svc"));
    assert_clean(&probes(&sb, "spawn"));
    // The negative control: the probe does see an inherited descriptor.
    let leak = std::process::Command::new("sh")
        .args(["-c", &format!("exec 7</dev/null; {PROBE}"), "sh", "control"])
        .output()
        .expect("sh");
    let leak = String::from_utf8_lossy(&leak.stdout).to_string();
    assert!(leak.contains(",7,"), "{leak}");
    assert_eq!(sb.poweroff(&[]), 0);
}
