//! Readiness (sd_notify with systemd's own client, TCP and path probes,
//! timeouts),
//! with moonlit as PID 1 of fresh namespaces (root).

mod common;

use common::Sandbox;

fn pos(console: &str, pat: &str) -> usize {
    console
        .find(pat)
        .unwrap_or_else(|| panic!("{pat:?} missing:\n{console}"))
}

#[test]
fn dependents_wait_for_sd_notify_ready_from_systemd_notify() {
    assert!(
        std::path::Path::new("/usr/bin/systemd-notify").exists()
            || std::process::Command::new("systemd-notify")
                .arg("--help")
                .output()
                .is_ok(),
        "this test needs systemd-notify (Debian package systemd) as a real sd_notify client"
    );
    let sb = Sandbox::start(
        "notify",
        &[
            (
                "services/n.lua",
                r#"service "n" {
                     notify = true,
                     exec = { "/bin/sh", "-c", "echo n starting; sleep 0.4; systemd-notify --status='warming up'; sleep 0.6; echo n says ready; systemd-notify --ready; exec sleep 1000" },
                   }"#,
            ),
            (
                "services/app.lua",
                r#"service "app" { requires = { "n" }, exec = { "/bin/sh", "-c", "echo app up; exec sleep 1000" } }"#,
            ),
        ],
    );
    let st = sb.wait_status("n is starting with its status text", 10, |s| {
        s["services"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|x| x["name"] == "n" && x["status_text"] == "warming up")
    });
    let n = st["services"]
        .as_array()
        .expect("services")
        .iter()
        .find(|x| x["name"] == "n")
        .cloned()
        .expect("n");
    assert_eq!(n["state"], "starting");
    assert_eq!(n["ready"], false);
    assert_eq!(
        st["ready"], false,
        "the boot is not finished while n is starting"
    );
    sb.wait_line("app: app up", 10);
    sb.ready();
    let c = sb.console();
    assert!(pos(&c, "n: n says ready") < pos(&c, "moonlit: n: ready"));
    assert!(
        pos(&c, "moonlit: n: ready") < pos(&c, "app: app up"),
        "app started before n was ready:\n{c}"
    );
    assert_eq!(sb.service("n")["ready"], true);
}

#[test]
fn tcp_readiness_and_a_service_that_never_gets_ready() {
    // The path service's flag file, fresh for this run.
    let flag_dir = std::env::temp_dir().join(format!("moonlit-ready-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&flag_dir);
    let flag = flag_dir.join("sock.ready");
    let sock = format!(
        r#"service "sock" {{
             ready = {{ path = "{f}" }},
             exec = {{ "/bin/sh", "-c", "mkdir -p {d}; sleep 0.6; echo made the file; : > {f}; exec sleep 1000" }},
           }}"#,
        f = flag.display(),
        d = flag_dir.display()
    );
    let sb = Sandbox::start(
        "tcpready",
        &[
            ("init.lua", "assert(require('net').link('lo'):up())\n"),
            (
                "services/srv.lua",
                r#"service "srv" {
                     ready = { tcp = 7109 },
                     exec = { "python3", "-u", "-c", "import socket, time\ntime.sleep(0.5)\ns = socket.socket(); s.bind(('127.0.0.1', 7109)); s.listen(5)\nprint('listening')\nwhile True: s.accept()[0].close()\n" },
                   }"#,
            ),
            (
                "services/web.lua",
                r#"service "web" { after = { "srv" }, exec = { "/bin/sh", "-c", "echo web up; exec sleep 1000" } }"#,
            ),
            ("services/sock.lua", sock.as_str()),
            (
                "services/user.lua",
                r#"service "user" { requires = { "sock" }, exec = { "/bin/sh", "-c", "echo user up; exec sleep 1000" } }"#,
            ),
            (
                "services/mute.lua",
                r#"service "mute" { notify = true, ready_timeout = 0.5, burst = { count = 100, interval = 60 }, exec = { "/bin/sleep", "1000" } }"#,
            ),
        ],
    );
    sb.wait_line("web: web up", 15);
    let c = sb.console();
    assert!(
        pos(&c, "srv: listening") < pos(&c, "moonlit: srv: ready"),
        "{c}"
    );
    assert!(
        pos(&c, "moonlit: srv: ready") < pos(&c, "web: web up"),
        "{c}"
    );
    sb.wait_line("user: user up", 15);
    let c = sb.console();
    assert!(
        pos(&c, "sock: made the file") < pos(&c, "moonlit: sock: ready"),
        "{c}"
    );
    assert!(
        pos(&c, "moonlit: sock: ready") < pos(&c, "user: user up"),
        "user started before sock's file existed:\n{c}"
    );
    let _ = std::fs::remove_dir_all(&flag_dir);
    // Never ready: killed at the deadline, a failed start, restarted per policy.
    sb.wait_line("mute: not ready within 0.5 s, killing it", 10);
    sb.wait_status("mute restarted", 10, |s| {
        s["services"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|x| x["name"] == "mute" && x["restarts"].as_u64().unwrap_or(0) >= 1)
    });
    // A bad readiness declaration is a schema error with its location.
    sb.write(
        "services/bad.lua",
        "service \"b\" { exec = { \"/bin/true\" }, ready = { tcp = 99999 } }\n",
    );
    let out = sb.ctl(&["--json", "reload"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("services/bad.lua:1: service \\\"b\\\": ready.tcp must be a port number"));
    // A host name would mean a DNS lookup inside PID 1's loop: refused.
    sb.write(
        "services/bad.lua",
        "service \"b\" { exec = { \"/bin/true\" }, ready = { tcp = 80, host = \"example.test\" } }\n",
    );
    let out = sb.ctl(&["--json", "reload"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ready.host must be an IP address"));
    for (decl, msg) in [
        (
            "ready = { path = \"run/x\" }",
            "ready.path must be an absolute path",
        ),
        ("ready = { path = \"/x\", tcp = 80 }", "not both"),
        ("ready = { }", "ready needs tcp = PORT or path = FILE"),
    ] {
        sb.write(
            "services/bad.lua",
            &format!("service \"b\" {{ exec = {{ \"/bin/true\" }}, {decl} }}\n"),
        );
        let out = sb.ctl(&["--json", "reload"]);
        assert_eq!(out.status.code(), Some(1), "{decl}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(msg),
            "{decl}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}
