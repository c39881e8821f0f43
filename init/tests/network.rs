//! The declared network, applied at boot and reconciled live on reload, with
//! moonlit as PID 1 of fresh namespaces (root; results read with iproute2).

mod common;

use std::process::Command;
use std::time::Duration;

use common::Sandbox;
use serde_json::Value;

/// `ip -j ARGS` inside the sandbox's network namespace.
fn ip(sb: &Sandbox, args: &[&str]) -> Value {
    let out = Command::new("nsenter")
        .arg("-t")
        .arg(sb.init_pid().to_string())
        .arg("-n")
        .arg("ip")
        .arg("-j")
        .args(args)
        .output()
        .expect("nsenter + ip (util-linux, iproute2) must be installed");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn addrs(sb: &Sandbox, dev: &str) -> Vec<String> {
    let v = ip(sb, &["-4", "addr", "show", "dev", dev]);
    let mut out: Vec<String> = v[0]["addr_info"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap_or(""), a["prefixlen"]))
        .collect();
    out.sort();
    out
}

fn routes(sb: &Sandbox) -> Vec<String> {
    let v = ip(sb, &["-4", "route", "show", "proto", "static"]);
    let mut out: Vec<String> = v
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            format!(
                "{} via {}",
                r["dst"].as_str().unwrap_or(""),
                r["gateway"].as_str().unwrap_or("-")
            )
        })
        .collect();
    out.sort();
    out
}

const NET_V1: &str = r#"
network.interface "lo" { up = true }
network.veth "v0" { peer = "v0p", addresses = { "10.9.0.1/24", "10.9.0.4/24" } }
network.interface "v0p" { up = true, addresses = { "10.9.0.2/24" } }
network.dns { nameservers = { "10.9.0.53" }, search = { "example.test" } }
"#;

// Gains 10.9.0.3/24 and a route, loses 10.9.0.4/24; the rest stays.
const NET_V2: &str = r#"
network.interface "lo" { up = true }
network.veth "v0" {
  peer = "v0p",
  addresses = { "10.9.0.1/24", "10.9.0.3/24" },
  routes = { { to = "10.77.0.0/24", via = "10.9.0.2" } },
}
network.interface "v0p" { up = true, addresses = { "10.9.0.2/24" } }
network.dns { nameservers = { "10.9.0.53" }, search = { "example.test" } }
"#;

/// A TCP echo server and a client that sends a numbered line every 50 ms
/// over 10.9.0.1 and prints each echo: the connection must survive.
const SERVICES: &str = r#"
service "echo" {
  exec = { "python3", "-u", "-c", [[
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.9.0.1", 7000)); s.listen(1)
print("listening", flush=True)
c, _ = s.accept()
while True:
    d = c.recv(4096)
    if not d: break
    c.sendall(d)
print("connection closed", flush=True)
]] },
}
service "client" {
  after = { "echo" },
  exec = { "python3", "-u", "-c", [[
import socket, time
for _ in range(100):
    try:
        c = socket.create_connection(("10.9.0.1", 7000), timeout=5); break
    except OSError: time.sleep(0.05)
c.settimeout(5)
i = 0
while True:
    i += 1
    c.sendall(b"%d\n" % i)
    got = c.recv(100)
    print("echo", got.decode().strip(), flush=True)
    time.sleep(0.05)
]] },
}
"#;

#[test]
fn network_changes_live_without_breaking_connections() {
    let sb = Sandbox::start(
        "net",
        &[("network.lua", NET_V1), ("services/tcp.lua", SERVICES)],
    );
    sb.ready();
    assert_eq!(addrs(&sb, "v0"), vec!["10.9.0.1/24", "10.9.0.4/24"]);
    assert_eq!(addrs(&sb, "v0p"), vec!["10.9.0.2/24"]);
    assert!(ip(&sb, &["link", "show", "v0"])[0]["flags"]
        .to_string()
        .contains("UP"));
    let resolv = std::fs::read_to_string(sb.dir.join("resolv.conf"))
        .expect("resolv.conf next to the control socket");
    assert!(
        resolv.contains("nameserver 10.9.0.53") && resolv.contains("search example.test"),
        "{resolv}"
    );
    sb.wait_line("client: echo 5", 20);

    // Dry run: the netlink changes, nothing done.
    sb.write("network.lua", NET_V2);
    let (code, v) = sb.reload(&["--dry-run"]);
    assert_eq!(code, 0, "{v}");
    let mut planned: Vec<String> = v["network"]
        .as_array()
        .expect("network")
        .iter()
        .filter_map(|c| c.as_str().map(str::to_string))
        .collect();
    planned.sort();
    assert_eq!(planned.len(), 3, "{planned:?}");
    assert!(
        planned
            .iter()
            .any(|c| c.contains("10.9.0.3/24") && c.contains("add")),
        "{planned:?}"
    );
    assert!(
        planned.iter().any(|c| c.contains("10.9.0.4/24")),
        "{planned:?}"
    );
    assert!(
        planned.iter().any(|c| c.contains("10.77.0.0/24")),
        "{planned:?}"
    );
    assert_eq!(
        addrs(&sb, "v0"),
        vec!["10.9.0.1/24", "10.9.0.4/24"],
        "a dry run changes nothing"
    );

    // The real thing.
    let before = sb.count("client: echo");
    let (code, v) = sb.reload(&[]);
    assert_eq!(code, 0, "{v}");
    let applied: Vec<&str> = v["network"]
        .as_array()
        .expect("network")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(applied.len(), 3, "exactly the three changes: {applied:?}");
    assert!(applied.iter().all(|c| c.starts_with("ok: ")), "{applied:?}");
    assert_eq!(v["services"]["echo"], "unchanged");
    assert_eq!(addrs(&sb, "v0"), vec!["10.9.0.1/24", "10.9.0.3/24"]);
    assert_eq!(routes(&sb), vec!["10.77.0.0/24 via 10.9.0.2"]);
    // The connection over the unchanged address kept working.
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while sb.count("client: echo") < before + 20 {
        assert!(
            std::time::Instant::now() < end,
            "the client stopped getting echoes:\n{}",
            sb.console()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(sb.count("connection closed"), 0);
    assert_eq!(sb.service("client")["restarts"], 0);

    // Reloading again without an edit: no transaction, no netlink write.
    let gen = sb.status()["generation"].clone();
    let applied_before = sb.status()["network"]["applied"].clone();
    let (code, v) = sb.reload(&[]);
    assert_eq!(code, 0);
    assert_eq!(v["message"], "no changes");
    let st = sb.status();
    assert_eq!(st["generation"], gen);
    assert_eq!(st["network"]["applied"], applied_before);

    // Dropping the veth deletes the link moonlit created; lo is not owned and stays.
    sb.write("network.lua", "network.interface \"lo\" { up = true }\n");
    sb.write("services/tcp.lua", "");
    let (code, v) = sb.reload(&[]);
    assert_eq!(code, 0, "{v}");
    assert!(ip(&sb, &["link", "show"])
        .as_array()
        .expect("links")
        .iter()
        .all(|l| l["ifname"] != "v0"));
    assert!(ip(&sb, &["link", "show", "lo"])[0]["flags"]
        .to_string()
        .contains("UP"));
}

#[test]
fn a_bad_network_declaration_is_rejected_with_its_location() {
    let sb = Sandbox::start("badnet", &[("network.lua", NET_V1)]);
    sb.ready();
    sb.write(
        "network.lua",
        "\nnetwork.veth \"v0\" { peer = \"v0p\", adresses = { \"10.9.0.1/24\" } }\n",
    );
    let (code, v) = sb.reload(&[]);
    assert_ne!(code, 0);
    let e = v["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(e.contains("network.lua:2") && e.contains("adresses"), "{e}");
    assert_eq!(
        addrs(&sb, "v0"),
        vec!["10.9.0.1/24", "10.9.0.4/24"],
        "nothing changed"
    );
}

#[test]
fn wait_link_returns_when_a_link_comes_up_from_outside() {
    let sb = Sandbox::start(
        "waitlink",
        &[(
            "init.lua",
            r#"
local net = require "net"
sh("ip link add w0 type veth peer name w0p")
print("waiting")
local l, e = net.wait_link("w0", { up = true, timeout = 20 })
print("wait_link returned", l and l.name, e)
local l2, e2 = net.wait_link("nope", { timeout = 0.2 })
print("timeout case", l2, e2 ~= nil)
"#,
        )],
    );
    sb.wait_line("lua: waiting", 20);
    // While the boot script waits, PID 1 answers.
    assert_eq!(sb.status()["ready"], false);
    std::thread::sleep(Duration::from_millis(300));
    let out = Command::new("nsenter")
        .args([
            "-t",
            &sb.init_pid().to_string(),
            "-n",
            "ip",
            "link",
            "set",
            "w0",
            "up",
        ])
        .output()
        .expect("nsenter");
    assert!(out.status.success());
    sb.wait_line("wait_link returned\tw0", 10);
    sb.wait_line("timeout case\tnil\ttrue", 10);
}

/// `network.veth` creates, `network.interface` configures the same link and
/// the veth's peer (as systemd-networkd's .netdev/.network split); a
/// conflicting value is rejected naming both places and changes nothing.
#[test]
fn interface_declarations_configure_a_declared_veth_and_its_peer() {
    let net = "network.veth \"v0\" { peer = \"v0p\" }\n\
               network.interface \"v0\" { addresses = { \"10.9.0.1/24\" }, mtu = 1400 }\n\
               network.interface \"v0p\" { addresses = { \"10.9.0.2/24\" }, up = true, mtu = 1400 }\n";
    let sb = Sandbox::start("veth-interface", &[("network.lua", net)]);
    sb.ready();
    assert_eq!(addrs(&sb, "v0"), vec!["10.9.0.1/24"]);
    assert_eq!(addrs(&sb, "v0p"), vec!["10.9.0.2/24"]);
    for dev in ["v0", "v0p"] {
        let l = ip(&sb, &["link", "show", "dev", dev]);
        assert_eq!(l[0]["mtu"], 1400, "{dev}: {l}");
        assert!(
            l[0]["flags"].to_string().contains("\"UP\""),
            "{dev} is not up: {l}"
        );
    }
    assert_eq!(
        ip(&sb, &["-d", "link", "show", "dev", "v0"])[0]["linkinfo"]["info_kind"],
        "veth"
    );
    sb.write(
        "network.lua",
        "network.veth \"v0\" { peer = \"v0p\", mtu = 1500 }\n\
         network.interface \"v0\" { addresses = { \"10.9.0.1/24\" }, mtu = 1400 }\n",
    );
    let (code, v) = sb.reload(&[]);
    assert_ne!(code, 0);
    let e = v["errors"].to_string();
    assert!(
        e.contains("network.lua:2") && e.contains("network.lua:1") && e.contains("mtu"),
        "{e}"
    );
    assert_eq!(
        ip(&sb, &["link", "show", "dev", "v0"])[0]["mtu"],
        1400,
        "a rejected reload changed the link"
    );
}
