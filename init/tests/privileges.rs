//! What a service may do and see (issue: capabilities, no_new_privs,
//! namespaces, private /tmp, read-only paths, chroot), each beside a
//! control service without the setting, as PID 1 of a sandbox. The
//! environment settings (env_inherit, env_file, moonlit.setenv) too.
//!
//! Needs root; fails loudly without it.

mod common;

use std::process::Command;

use common::Sandbox;

const PY_BIND80: &str = "import socket\ntry:\n  s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', 80)); s.listen()\nexcept OSError as e:\n  print('bind failed:', e.strerror, flush=True); raise SystemExit(3)\nprint('listening on 80', flush=True)\nwhile True:\n  c,_=s.accept(); c.send(b'cap-ok'); c.close()\n";

/// Connects to 127.0.0.1:80 inside the sandbox's network namespace from a
/// process of the test (not the service): what it reads.
fn fetch_80(init_pid: u32) -> String {
    let out = Command::new("nsenter")
        .arg(format!("--net=/proc/{init_pid}/ns/net"))
        .args([
            "python3",
            "-c",
            "import socket; s=socket.create_connection(('127.0.0.1', 80), 5); print(s.recv(100).decode())",
        ])
        .output()
        .expect("nsenter python3");
    assert!(
        out.status.success(),
        "connect from outside: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_non_root_service_with_net_bind_service_binds_port_80_and_without_it_cannot() {
    let py = PY_BIND80.replace('\n', "\\n").replace('\'', "\\'");
    let services = format!(
        r#"service "web" {{
  exec = {{ "python3", "-c", '{py}' }},
  user = "nobody",
  capabilities = {{ "net_bind_service" }},
}}
service "plain" {{
  exec = {{ "python3", "-c", '{py}' }},
  user = "nobody",
  restart = "never",
  after = {{ "web" }},
}}
service "caps" {{
  exec = {{ "/bin/sh", "-c", "grep -E '^Cap(Eff|Bnd|Amb)' /proc/self/status | tr '\\t\\n' ' '; echo; sleep 1000" }},
  user = "nobody",
  capabilities = {{ "net_bind_service" }},
}}
"#
    );
    let s = Sandbox::start(
        "caps",
        &[
            ("init.lua", "require('net').link('lo'):up()\n"),
            ("services/web.lua", &services),
        ],
    );
    s.wait_line("web: listening on 80", 20);
    assert_eq!(fetch_80(s.init_pid()), "cap-ok");
    s.wait_line("plain: bind failed: Permission denied", 20);
    // CAP_NET_BIND_SERVICE is bit 10: 0x400, in effective, bounding and ambient.
    let caps = s.wait_line("caps: CapEff", 20);
    for set in ["CapEff:", "CapBnd:", "CapAmb:"] {
        assert!(
            caps.contains(&format!("{set} 0000000000000400")),
            "{set} in {caps}"
        );
    }
}

#[test]
fn no_new_privs_namespaces_private_tmp_read_only_paths_and_root() {
    let s = Sandbox::start(
        "isolation",
        &[
            (
                "init.lua",
                "require('net').link('lo'):up()\nsh('ip link add v0 type veth peer name v1')\nsh('mkdir -p @DIR@/ro @DIR@/jail/bin; echo keep > @DIR@/ro/file; cp /bin/busybox @DIR@/jail/bin/busybox')\n",
            ),
            (
                "services/iso.lua",
                r#"
local report = function(name, script, extra)
  local s = { exec = { "/bin/sh", "-c", script .. "; sleep 1000" }, after = { } }
  for k, v in pairs(extra or {}) do s[k] = v end
  service(name)(s)
end
report("nnp", "echo nnp=$(grep NoNewPrivs /proc/self/status | tr -dc 0-9)", { no_new_privs = true })
report("nnp0", "echo nnp0=$(grep NoNewPrivs /proc/self/status | tr -dc 0-9)")
report("netns", "echo links=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort | tr '\n' ,)", { namespaces = { "net" } })
report("netns0", "echo links0=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort | tr '\n' ,)")
report("pidns", "echo mypid=$$ procs=$(ls -d /proc/[0-9]* | wc -l)", { namespaces = { "pid" }, stop_timeout = 1 })
report("tmp", "echo private > /tmp/moonlit-private-tmp-@PID@; echo tmp=$(cat /tmp/moonlit-private-tmp-@PID@)", { private_tmp = true })
report("ro", "echo x >> @DIR@/ro/file 2>/dev/null && echo ro=writable || echo ro=refused", { read_only_paths = { "@DIR@/ro" } })
report("ro0", "echo x >> @DIR@/ro/file 2>/dev/null && echo ro0=writable || echo ro0=refused")
service "jail" { exec = { "/bin/busybox", "sh", "-c", "echo jail=$(/bin/busybox ls / | /bin/busybox tr '\n' ,); /bin/busybox sleep 1000" }, root = "@DIR@/jail" }
"#
                .replace("@PID@", &std::process::id().to_string())
                .as_str(),
            ),
        ],
    );
    assert!(s.wait_line("nnp: nnp=", 20).ends_with("nnp=1"));
    assert!(s.wait_line("nnp0: nnp0=", 20).ends_with("nnp0=0"));
    assert!(
        s.wait_line("netns: links=", 20).ends_with("links=lo,"),
        "{}",
        s.console()
    );
    assert!(
        s.wait_line("netns0: links0=", 20)
            .ends_with("links0=lo,v0,v1,"),
        "{}",
        s.console()
    );
    let p = s.wait_line("pidns: mypid=", 20);
    assert!(p.contains("mypid=1 "), "{p}");
    assert!(s.wait_line("tmp: tmp=", 20).ends_with("tmp=private"));
    let marker = format!("/tmp/moonlit-private-tmp-{}", std::process::id());
    assert!(
        !std::path::Path::new(&marker).exists(),
        "private /tmp leaked to the host"
    );
    assert!(s.wait_line("ro: ro=", 20).ends_with("ro=refused"));
    assert!(s.wait_line("ro0: ro0=", 20).ends_with("ro0=writable"));
    assert!(
        s.wait_line("jail: jail=", 20).ends_with("jail=bin,"),
        "{}",
        s.console()
    );
}

#[test]
fn bad_privilege_settings_are_refused_with_file_and_line() {
    let s = Sandbox::start(
        "privileges-bad",
        &[(
            "services/bad.lua",
            "service \"a\" {\n  exec = { \"/bin/true\" },\n  capabilities = { \"net_bind_servic\" },\n}\nservice \"b\" { exec = { \"/bin/true\" }, namespaces = { \"cgroupz\" } }\nservice \"c\" { exec = { \"/bin/true\" }, env_file = \"relative\" }\nservice \"d\" { exec = { \"/bin/sleep\", \"100\" } }\n",
        )],
    );
    s.ready();
    let st = s.status();
    let errors = st["errors"].to_string();
    assert!(
        errors.contains("services/bad.lua:1") && errors.contains("net_bind_servic"),
        "{errors}"
    );
    assert!(
        errors.contains("services/bad.lua:5") && errors.contains("cgroupz"),
        "{errors}"
    );
    assert!(
        errors.contains("services/bad.lua:6") && errors.contains("absolute"),
        "{errors}"
    );
    // The rest boots.
    assert_eq!(s.service("d")["state"], "running");
}

#[test]
fn environment_inherit_file_and_setenv() {
    let dir = common::scratch("env-files");
    let envf = dir.join("app.env");
    std::fs::write(
        &envf,
        "# app settings\nexport FROM_FILE=\"file value\"\nOVERRIDE=file\n",
    )
    .unwrap();
    let cfg = format!(
        r#"service "inherits" {{
  exec = {{ "/bin/sh", "-c", "echo inherits: [$MOONLIT_TEST_DB_URL] [$MOONLIT_TEST_OTHER] [$FROM_LUA]; sleep 1000" }},
  env_inherit = {{ "MOONLIT_TEST_DB_*" }},
  console = false,
}}
service "clean" {{
  exec = {{ "/bin/sh", "-c", "echo clean: [$MOONLIT_TEST_DB_URL] [$FROM_FILE] [$OVERRIDE]; sleep 1000" }},
  env = {{ OVERRIDE = "env" }},
  env_file = {{ "{f}", "-/nonexistent/optional.env" }},
  console = false,
}}
service "missing" {{
  exec = {{ "/bin/true" }},
  env_file = "/nonexistent/required.env",
  restart = "never",
}}
"#,
        f = envf.display()
    );
    // The sandbox's PID 1 inherits this test's environment.
    std::env::set_var("MOONLIT_TEST_DB_URL", "postgres://db/app");
    std::env::set_var("MOONLIT_TEST_OTHER", "not-inherited");
    let s = Sandbox::start(
        "env",
        &[
            ("init.lua", "moonlit.setenv('FROM_LUA', 'lua value')\n"),
            ("services/env.lua", &cfg),
        ],
    );
    s.ready();
    let logs = |n: &str| String::from_utf8_lossy(&s.ctl(&["logs", n]).stdout).to_string();
    let wait = |n: &str| {
        for _ in 0..200 {
            let l = logs(n);
            if !l.trim().is_empty() {
                return l;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("{n} wrote nothing: {}", s.console())
    };
    assert!(
        wait("inherits").contains("inherits: [postgres://db/app] [] [lua value]"),
        "{}",
        logs("inherits")
    );
    assert!(
        wait("clean").contains("clean: [] [file value] [file]"),
        "{}",
        logs("clean")
    );
    let missing = s.service("missing");
    assert!(
        s.console().contains("/nonexistent/required.env"),
        "{missing} {}",
        s.console()
    );
    // ctl status NAME lists the effective environment's names.
    let out = s.ctl(&["status", "clean"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let env_line = text
        .lines()
        .find(|l| l.starts_with("env "))
        .unwrap_or_default();
    for n in ["FROM_FILE", "OVERRIDE", "FROM_LUA", "MOONLIT_SERVICE"] {
        assert!(env_line.contains(n), "{n} not in {env_line:?}:\n{text}");
    }
    assert!(!env_line.contains("MOONLIT_TEST_DB_URL"), "{env_line}");
}
