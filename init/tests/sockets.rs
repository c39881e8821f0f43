//! Socket activation (issue 11), as PID 1 of a sandbox, with clients and
//! servers nobody here wrote: systemd's own `systemd-socket-proxyd` (a
//! LISTEN_FDS consumer that checks LISTEN_PID), curl, busybox httpd, and
//! python3 reading the protocol by hand.
//!
//! Needs root (and those programs); fails loudly without them.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::Sandbox;
use serde_json::Value;

const LO_UP: &str = "assert(require(\"net\").link(\"lo\"):up())\n";

/// Where services find python3 (moonlit's default PATH).
const PYTHON3: &[&str] = &["/usr/bin/python3", "/bin/python3"];

/// The first of `paths` that exists, or a loud failure naming them.
fn need(paths: &[&str]) -> String {
    paths
        .iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or_else(|| {
            panic!(
                "this test needs one of {paths:?} (setup.sh installs them: the systemd, curl, busybox-static and python3 packages)"
            )
        })
        .to_string()
}

/// A Lua string literal of `s` (long brackets: no escapes needed).
fn lua_str(s: &str) -> String {
    assert!(!s.contains("]==]"));
    format!("[==[{s}]==]")
}

/// Connects to a unix socket (retrying a few times while it appears).
fn connect(path: &std::path::Path) -> UnixStream {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        match UnixStream::connect(path) {
            Ok(s) => {
                s.set_read_timeout(Some(Duration::from_secs(15)))
                    .expect("timeout");
                return s;
            }
            Err(e) if Instant::now() > end => panic!("connect {}: {e}", path.display()),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn read_line(s: &UnixStream) -> String {
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).expect("read reply");
    line.trim_end().to_string()
}

/// One service of a status reply.
fn svc<'a>(st: &'a Value, name: &str) -> &'a Value {
    st["services"]
        .as_array()
        .expect("services")
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {st}"))
}

fn sockets_of(sb: &Sandbox, name: &str) -> Value {
    sb.service(name)["sockets"].clone()
}

fn fds_of(sb: &Sandbox, name: &str) -> Vec<i64> {
    sockets_of(sb, name)["list"]
        .as_array()
        .unwrap_or_else(|| panic!("{name} has no sockets in status"))
        .iter()
        .map(|s| s["fd"].as_i64().expect("bound"))
        .collect()
}

/// A python3 server on the first passed socket (fd 3): each connection
/// gets "NAME pid PID" and is closed; it sleeps `delay` s before serving.
fn py_server(name: &str, delay: f64) -> String {
    format!(
        "import os, socket, time\ntime.sleep({delay})\ns = socket.socket(fileno=3)\nwhile True:\n    c, _ = s.accept()\n    c.sendall(b'{name} pid %d\\n' % os.getpid())\n    c.close()\n"
    )
}

#[test]
fn systemd_socket_proxyd_forwards_curl_through_an_activated_socket_to_busybox_httpd() {
    let proxyd = need(&[
        "/lib/systemd/systemd-socket-proxyd",
        "/usr/lib/systemd/systemd-socket-proxyd",
    ]);
    let curl = need(&["/usr/bin/curl", "/bin/curl"]);
    let busybox = need(&["/bin/busybox", "/usr/bin/busybox"]);
    let services = format!(
        r#"service "httpd" {{
  exec = {{ "{busybox}", "httpd", "-f", "-p", "127.0.0.1:8081", "-h", "@DIR@/config/www" }},
  ready = {{ tcp = 8081 }},
}}
service "proxy" {{
  exec = {{ "{proxyd}", "127.0.0.1:8081" }},
  sockets = {{ {{ listen = "127.0.0.1:8080" }} }},
  after = {{ "httpd" }},
}}
"#
    );
    let sb = Sandbox::start(
        "sock-proxyd",
        &[
            ("init.lua", LO_UP),
            ("services/web.lua", &services),
            (
                "www/index.html",
                "<h1>served through systemd-socket-proxyd</h1>\n",
            ),
        ],
    );
    sb.ready();
    let fds = fds_of(&sb, "proxy");
    assert_eq!(fds.len(), 1);
    let out = Command::new("nsenter")
        .arg(format!("--net=/proc/{}/ns/net", sb.init_pid()))
        .args([
            curl.as_str(),
            "-sS",
            "--max-time",
            "10",
            "http://127.0.0.1:8080/index.html",
        ])
        .output()
        .expect("nsenter curl");
    assert!(
        out.status.success(),
        "curl: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        sb.console()
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "<h1>served through systemd-socket-proxyd</h1>\n",
        "{}",
        sb.console()
    );
    // The proxy took the socket (it refuses a wrong LISTEN_PID) and runs.
    assert_eq!(sb.service("proxy")["state"], "running", "{}", sb.console());
    assert_eq!(sb.count("proxy: Didn't get any sockets"), 0);
}

const PY_FDS: &str = r#"import json, os, socket
n = int(os.environ.get("LISTEN_FDS", "0"))
socks = []
for fd in range(3, 3 + n):
    s = socket.socket(fileno=fd)
    socks.append([s.family.name, s.type.name])
    s.detach()
print("FDS " + json.dumps({"n": n, "names": os.environ.get("LISTEN_FDNAMES"),
    "listen_pid": os.environ.get("LISTEN_PID"), "pid": os.getpid(), "socks": socks}), flush=True)
u = socket.socket(fileno=4)
while True:
    c, _ = u.accept()
    c.sendall(b"hello from fd 4\n")
    c.close()
"#;

#[test]
fn a_python_server_sees_count_names_and_its_own_pid_for_tcp_unix_and_datagram_sockets() {
    need(PYTHON3);
    let services = format!(
        r#"service "py" {{
  exec = {{ "python3", "-c", {} }},
  sockets = {{
    {{ listen = "127.0.0.1:9001" }},
    {{ listen = "@DIR@/run/py.sock", mode = "0640", name = "ctl" }},
    {{ listen = "[::]:9002", type = "dgram", name = "dns" }},
  }},
}}
"#,
        lua_str(PY_FDS)
    );
    let sb = Sandbox::start(
        "sock-python",
        &[("init.lua", LO_UP), ("services/py.lua", &services)],
    );
    sb.ready();
    let line = sb.wait_line("py: FDS ", 20);
    let json = &line[line.find("FDS ").expect("marker") + 4..];
    let v: Value = serde_json::from_str(json).expect("python's json");
    assert_eq!(v["n"], 3, "{v}");
    assert_eq!(v["names"], "py:ctl:dns", "{v}");
    assert_eq!(
        v["listen_pid"].as_str().and_then(|p| p.parse::<u64>().ok()),
        v["pid"].as_u64(),
        "LISTEN_PID must be the server's own pid: {v}"
    );
    // Its pid as moonlit knows it, too.
    assert_eq!(sb.service("py")["pid"], v["pid"]);
    assert_eq!(
        v["socks"],
        serde_json::json!([
            ["AF_INET", "SOCK_STREAM"],
            ["AF_UNIX", "SOCK_STREAM"],
            ["AF_INET6", "SOCK_DGRAM"]
        ]),
        "{v}"
    );
    let path = sb.path("run/py.sock");
    let meta = std::fs::metadata(&path).expect("socket file");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
    let c = connect(&path);
    assert_eq!(read_line(&c), "hello from fd 4");
    let st = sockets_of(&sb, "py");
    assert_eq!(st["list"][1]["listen"], path.display().to_string());
    assert_eq!(st["list"][2]["type"], "dgram");
}

#[test]
fn a_connection_made_while_the_service_restarts_waits_in_the_backlog_and_is_served() {
    need(PYTHON3);
    let services = format!(
        r#"service "echo" {{
  exec = {{ "python3", "-c", {} }},
  sockets = {{ {{ listen = "@DIR@/echo.sock" }} }},
}}
"#,
        lua_str(&py_server("echo", 1.5))
    );
    let sb = Sandbox::start("sock-restart", &[("services/echo.lua", &services)]);
    sb.ready();
    let path = sb.path("echo.sock");
    let first = read_line(&connect(&path));
    let old = sb.service("echo")["pid"].as_u64().expect("pid");
    assert_eq!(first, format!("echo pid {old}"));
    let fd = fds_of(&sb, "echo");
    let out = sb.ctl(&["restart", "echo"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Once the old process is gone (a connection it took while dying would
    // be lost with it, for any init) and while the new one sleeps 1.5 s
    // before it accepts: nobody accepts meanwhile, the socket queues it.
    let st = sb.wait_status("the new echo", 10, |st| {
        st["services"][0]["pid"].as_u64().is_some_and(|p| p != old)
    });
    let new = st["services"][0]["pid"].as_u64().expect("pid");
    let during = connect(&path);
    during.set_nonblocking(true).expect("nonblocking");
    let mut b = [0u8; 1];
    assert!(
        matches!((&during).read(&mut b), Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "nothing answers during the restart"
    );
    during.set_nonblocking(false).expect("blocking");
    // The queued connection is served by the new process.
    assert_eq!(
        read_line(&during),
        format!("echo pid {new}"),
        "{}",
        sb.console()
    );
    assert_eq!(
        fds_of(&sb, "echo"),
        fd,
        "same listening socket across the restart"
    );
}

#[test]
fn accept_runs_one_instance_per_connection_fifty_times_and_leaves_no_zombie() {
    let services = r#"service "greet" {
  exec = { "/bin/sh", "-c", "read line; echo \"reply:$line:$MOONLIT_SERVICE:$LISTEN_FDS:$LISTEN_FDNAMES\"" },
  sockets = { { listen = "@DIR@/greet.sock" } },
  accept = true,
  max_connections = 8,
}
"#;
    let sb = Sandbox::start("sock-accept", &[("services/greet.lua", services)]);
    sb.ready();
    let path = sb.path("greet.sock");
    for i in 0..50 {
        let mut c = connect(&path);
        writeln!(c, "n{i}").expect("write");
        assert_eq!(
            read_line(&c),
            format!("reply:n{i}:greet:1:connection"),
            "{}",
            sb.console()
        );
    }
    let st = sb.wait_status("every instance reaped", 10, |st| {
        st["services"][0]["sockets"]["instances"] == 0
    });
    let k = &st["services"][0]["sockets"];
    assert_eq!(k["served"], 50, "{k}");
    assert_eq!(k["max_connections"], 8, "{k}");
    // The service itself is never started by the supervisor.
    assert_eq!(st["services"][0]["state"], "stopped");
    let zombies: Vec<_> = sb
        .ns_processes()
        .into_iter()
        .filter(|p| p.1 == 'Z')
        .collect();
    assert!(zombies.is_empty(), "zombies: {zombies:?}");
    assert_eq!(
        sb.status()["orphans_reaped"],
        0,
        "instances are not orphans"
    );
}

#[test]
fn a_lazy_service_is_started_by_its_first_connection_and_again_after_it_ended() {
    need(PYTHON3);
    // Serves one connection, then exits 0 (not restarted: on-failure).
    let py = "import os, socket\ns = socket.socket(fileno=3)\nc, _ = s.accept()\nc.sendall(b'lazy pid %d\\n' % os.getpid())\nc.close()\n";
    let services = format!(
        r#"service "lazy" {{
  exec = {{ "python3", "-c", {} }},
  sockets = {{ {{ listen = "@DIR@/lazy.sock" }} }},
  lazy = true,
  restart = "on-failure",
}}
service "user" {{
  exec = {{ "/bin/sh", "-c", "echo user-up; sleep 1000" }},
  requires = {{ "lazy" }},
}}
"#,
        lua_str(py)
    );
    let sb = Sandbox::start("sock-lazy", &[("services/lazy.lua", &services)]);
    sb.ready();
    // Booted: the dependent runs (the socket is bound), the lazy one not.
    sb.wait_line("user: user-up", 10);
    let s = sb.service("lazy");
    assert_eq!(s["state"], "stopped", "{s}");
    assert!(s["pid"].is_null());
    assert_eq!(s["sockets"]["list"][0]["watched"], true, "{s}");
    let text = sb.ctl(&["status"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("(starts on the first connection)"), "{text}");
    let path = sb.path("lazy.sock");
    let r = read_line(&connect(&path));
    assert!(r.starts_with("lazy pid "), "{r}\n{}", sb.console());
    sb.wait_line("lazy: activated by", 5);
    sb.wait_status("lazy ended", 10, |st| svc(st, "lazy")["state"] == "exited");
    // Watched again: the next client starts it again.
    let r2 = read_line(&connect(&path));
    assert!(
        r2.starts_with("lazy pid ") && r2 != r,
        "{r2}\n{}",
        sb.console()
    );
}

/// Reads a line from each connection (fd 3), then answers with its pid.
const PY_READ_FIRST: &str = "import os, socket\ns = socket.socket(fileno=3)\nwhile True:\n    c, _ = s.accept()\n    l = c.makefile().readline().strip()\n    c.sendall(b'keep pid %d got %s\\n' % (os.getpid(), l.encode()))\n    c.close()\n";

/// Sends `line` and reads the answer.
fn ask(path: &std::path::Path, line: &str) -> String {
    let mut c = connect(path);
    writeln!(c, "{line}").expect("write");
    read_line(&c)
}

#[test]
fn sockets_survive_reexec_and_a_reload_that_keeps_them_and_a_reload_that_moves_one() {
    need(PYTHON3);
    let module = |stop: u32, path: &str| {
        format!(
            r#"service "keep" {{
  exec = {{ "python3", "-c", {} }},
  sockets = {{ {{ listen = "@DIR@/{path}" }}, {{ listen = "127.0.0.1:9100" }} }},
  stop_timeout = {stop},
}}
"#,
            lua_str(PY_READ_FIRST)
        )
    };
    let sb = Sandbox::start(
        "sock-reexec",
        &[
            ("init.lua", LO_UP),
            ("services/keep.lua", &module(5, "keep.sock")),
        ],
    );
    sb.ready();
    let path = sb.path("keep.sock");
    let pid = sb.service("keep")["pid"].as_u64().expect("pid");
    assert_eq!(ask(&path, "a"), format!("keep pid {pid} got a"));
    let fds = fds_of(&sb, "keep");
    let inode =
        || std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&path).expect("socket file"));
    let ino = inode();
    // A client connected before the re-exec (the service has accepted it
    // and waits for its line) is answered after it.
    let mut before = connect(&path);
    // And one still in the listen backlog (the server is busy with the
    // first): the kernel's queue of the same socket survives too.
    let mut queued = connect(&path);
    writeln!(queued, "queued").expect("write");
    let out = sb.ctl(&["--json", "reexec"]);
    assert!(
        out.status.success(),
        "reexec: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        sb.console()
    );
    writeln!(before, "before").expect("write");
    assert_eq!(read_line(&before), format!("keep pid {pid} got before"));
    assert_eq!(read_line(&queued), format!("keep pid {pid} got queued"));
    assert_eq!(sb.status()["reexecs"], 1);
    assert_eq!(
        sb.service("keep")["pid"].as_u64(),
        Some(pid),
        "not restarted"
    );
    assert_eq!(
        fds_of(&sb, "keep"),
        fds,
        "same descriptors after the re-exec"
    );
    assert_eq!(inode(), ino, "the same socket file (not bound again)");
    assert_eq!(ask(&path, "after"), format!("keep pid {pid} got after"));
    // A reload that changes only a supervisor field: same sockets, same pid.
    sb.write("services/keep.lua", &module(7, "keep.sock"));
    let (code, reply) = sb.reload(&[]);
    assert_eq!(code, 0, "{reply}");
    assert_eq!(reply["services"]["keep"], "updated", "{reply}");
    assert_eq!(fds_of(&sb, "keep"), fds);
    assert_eq!(sb.service("keep")["pid"].as_u64(), Some(pid));
    assert_eq!(ask(&path, "after"), format!("keep pid {pid} got after"));
    // A reload that moves the unix socket: the old file goes, the new one
    // is bound, the TCP socket keeps its descriptor, the service restarts.
    sb.write("services/keep.lua", &module(7, "moved.sock"));
    let (code, reply) = sb.reload(&[]);
    assert_eq!(code, 0, "{reply}");
    assert_eq!(reply["services"]["keep"], "restarted", "{reply}");
    let st = sb.wait_status("keep restarted", 10, |st| {
        st["services"][0]["pid"].as_u64().is_some_and(|p| p != pid)
    });
    let new = st["services"][0]["pid"].as_u64().expect("pid");
    let now = fds_of(&sb, "keep");
    assert_eq!(
        now[1], fds[1],
        "the unchanged TCP socket is the same descriptor"
    );
    assert!(
        !path.exists(),
        "the old socket file is removed: {st:#}\n{}",
        sb.console()
    );
    assert_eq!(
        ask(&sb.path("moved.sock"), "moved"),
        format!("keep pid {new} got moved")
    );
}

fn check(name: &str, module: &str) -> (bool, String) {
    let dir = common::scratch(name);
    std::fs::create_dir_all(dir.join("services")).expect("mkdir");
    std::fs::write(dir.join("services/s.lua"), module).expect("write");
    let out = common::check(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn bad_socket_declarations_are_rejected_with_file_and_line() {
    let cases = [
        (
            r#"sockets = { { listen = "0.0.0.0:8080", lisen = "x" } }"#,
            "sockets[1]: unknown key 'lisen'",
        ),
        (
            r#"sockets = { { listen = "localhost:80" } }"#,
            r#"sockets[1]: listen: bad address "localhost:80""#,
        ),
        (
            r#"sockets = { { listen = "/run/x.sock", mode = "0999" } }"#,
            "sockets[1].mode must be an octal mode",
        ),
        (
            r#"sockets = { { listen = "/run/x.sock", type = "dgram" } }, accept = true"#,
            "accept = true needs stream (or seqpacket) sockets: sockets[1] (/run/x.sock) is dgram",
        ),
        (r#"lazy = true"#, "lazy = true needs sockets"),
        (
            r#"sockets = { { listen = "127.0.0.1:80", mode = "0600" } }"#,
            "sockets[1].mode applies to unix sockets",
        ),
    ];
    for (i, (keys, msg)) in cases.iter().enumerate() {
        let module =
            format!("-- a comment\nservice \"s\" {{\n  exec = {{ \"/bin/true\" }}, {keys},\n}}\n");
        let (ok, out) = check(&format!("sock-bad{i}"), &module);
        assert!(!ok, "{keys}: accepted\n{out}");
        assert!(
            out.contains(&format!("services/s.lua:2: service \"s\": {msg}")),
            "{keys}: expected {msg:?} at services/s.lua:2, got:\n{out}"
        );
    }
    // Negative control: the issue's own example passes.
    let (ok, out) = check(
        "sock-good",
        r#"service "web" {
  exec = { "/bin/true" },
  sockets = { { listen = "0.0.0.0:8080" }, { listen = "/run/web.sock", mode = "0660" }, { listen = "[::]:53", type = "dgram", name = "dns" } },
  lazy = true,
}
service "inetd" {
  exec = { "/bin/cat" },
  sockets = { { listen = "127.0.0.1:7", backlog = 16 } },
  accept = true,
  max_connections = 4,
}
"#,
    );
    assert!(ok, "a good declaration is accepted:\n{out}");
}

#[test]
fn a_socket_that_cannot_be_bound_fails_only_its_service_with_the_reason() {
    let services = r#"service "bad" {
  exec = { "/bin/sleep", "1000" },
  sockets = { { listen = "@DIR@/not-a-socket" } },
  burst = { count = 1, interval = 10 },
}
service "good" {
  exec = { "/usr/bin/env", "python3", "-c", "import socket\ns = socket.socket(fileno=3)\nprint('good-up', flush=True)\nwhile True:\n    c, _ = s.accept(); c.sendall(b'good\\n'); c.close()" },
  sockets = { { listen = "@DIR@/good.sock" } },
}
service "zdup" {
  exec = { "/bin/sleep", "1000" },
  sockets = { { listen = "@DIR@/good.sock" } },
  burst = { count = 1, interval = 10 },
}
"#;
    let sb = Sandbox::start(
        "sock-bindfail",
        &[
            ("services/s.lua", services),
            ("../not-a-socket", "plain file\n"),
        ],
    );
    sb.ready();
    sb.wait_line("good: good-up", 10);
    let st = sb.wait_status("bad failed", 15, |st| svc(st, "bad")["state"] == "failed");
    let bad = svc(&st, "bad");
    assert!(
        bad["sockets"]["list"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("exists and is not a socket")),
        "{bad}"
    );
    assert!(
        sb.console()
            .contains("not-a-socket exists and is not a socket"),
        "{}",
        sb.console()
    );
    assert_eq!(svc(&st, "good")["state"], "running");
    // The same unix path twice: the second is refused, the first unharmed.
    let st = sb.wait_status("zdup failed", 15, |st| svc(st, "zdup")["state"] == "failed");
    let zdup = svc(&st, "zdup");
    assert!(
        zdup["sockets"]["list"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("already bound by service \"good\"")),
        "{zdup}"
    );
    assert_eq!(read_line(&connect(&sb.path("good.sock"))), "good");
}

#[test]
fn accept_runs_at_most_max_connections_instances_and_the_rest_wait_in_the_backlog() {
    let services = r#"service "slow" {
  exec = { "/bin/sh", "-c", "read line; echo \"got:$line\"" },
  sockets = { { listen = "@DIR@/slow.sock" } },
  accept = true,
  max_connections = 2,
}
"#;
    let sb = Sandbox::start("sock-cap", &[("services/slow.lua", services)]);
    sb.ready();
    let path = sb.path("slow.sock");
    let mut c1 = connect(&path);
    let mut c2 = connect(&path);
    sb.wait_status("two instances", 10, |st| {
        svc(st, "slow")["sockets"]["instances"] == 2
    });
    let mut c3 = connect(&path);
    writeln!(c3, "three").expect("write");
    std::thread::sleep(Duration::from_millis(300));
    let st = sb.status();
    let k = &svc(&st, "slow")["sockets"];
    assert_eq!(k["instances"], 2, "{k}");
    assert_eq!(k["served"], 2, "the third waits in the backlog: {k}");
    assert_eq!(k["list"][0]["watched"], false, "{k}");
    c3.set_nonblocking(true).expect("nonblocking");
    let mut b = [0u8; 1];
    assert!(
        matches!(c3.read(&mut b), Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "no instance for the third yet"
    );
    c3.set_nonblocking(false).expect("blocking");
    writeln!(c1, "one").expect("write");
    assert_eq!(read_line(&c1), "got:one");
    // One ended: the third is accepted and answered.
    assert_eq!(read_line(&c3), "got:three", "{}", sb.console());
    writeln!(c2, "two").expect("write");
    assert_eq!(read_line(&c2), "got:two");
    let st = sb.wait_status("all reaped", 10, |st| {
        svc(st, "slow")["sockets"]["instances"] == 0
    });
    assert_eq!(svc(&st, "slow")["sockets"]["served"], 3);
    let text = sb.ctl(&["status"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(&format!("sockets {} fd ", path.display()))
            && text.contains("(0/2 instances, 3 served)"),
        "{text}"
    );
}

#[test]
fn a_disabled_service_binds_nothing_until_ctl_start_and_accept_is_never_started_whole() {
    let services = r#"service "off" {
  exec = { "/bin/sh", "-c", "read line; echo \"on:$line\"" },
  sockets = { { listen = "@DIR@/off.sock" } },
  accept = true,
  enabled = false,
}
"#;
    let sb = Sandbox::start("sock-disabled", &[("services/off.lua", services)]);
    sb.ready();
    let path = sb.path("off.sock");
    assert!(!path.exists(), "disabled: not bound");
    assert!(sb.service("off")["sockets"].is_null());
    let out = sb.ctl(&["start", "off"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut c = connect(&path);
    writeln!(c, "x").expect("write");
    assert_eq!(read_line(&c), "on:x", "{}", sb.console());
    let s = sb.service("off");
    assert_eq!(s["state"], "stopped", "{s}");
    assert!(s["pid"].is_null(), "{s}");
}
