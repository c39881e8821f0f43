//! The DHCPv4 client against a server nobody here wrote: busybox's udhcpd
//! in a network namespace of its own, joined to the sandbox by a veth pair.
//! moonlit is PID 1 of the sandbox with `network.interface "v0" { dhcp =
//! true }` and nothing else: the lease is obtained (address, option 121
//! routes, DNS into resolv.conf); with a 20 s lease a TCP connection stays
//! open across renewals and the address is never removed; the server stopped,
//! the client rebinds, then at expiry the address and routes go; the server
//! back, the address comes back.
//!
//! Needs root, iproute2 and busybox (setup.sh); fails loudly without them.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{scratch, Sandbox};
use serde_json::Value;

struct ServerNs {
    name: String,
    udhcpd: Option<Child>,
    conf: std::path::PathBuf,
    log: std::path::PathBuf,
}

impl ServerNs {
    fn new(tag: &str, dir: &std::path::Path) -> ServerNs {
        let name = format!("moonlit-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
        let run = |args: &[&str]| {
            let st = Command::new("ip")
                .args(args)
                .status()
                .expect("ip (iproute2) must be installed");
            assert!(st.success(), "ip {args:?}");
        };
        run(&["netns", "add", &name]);
        let n = name.as_str();
        run(&[
            "-n", n, "link", "add", "v0", "type", "veth", "peer", "name", "v0p",
        ]);
        run(&["-n", n, "addr", "add", "10.77.0.1/24", "dev", "v0p"]);
        run(&["-n", n, "link", "set", "v0p", "up"]);
        run(&["-n", n, "link", "set", "lo", "up"]);
        let conf = dir.join("udhcpd.conf");
        let leases = dir.join("udhcpd.leases");
        std::fs::write(&leases, "").unwrap();
        std::fs::write(
            &conf,
            format!(
                "start 10.77.0.50\nend 10.77.0.60\ninterface v0p\nlease_file {}\nmin_lease 10\n\
                 option subnet 255.255.255.0\noption router 10.77.0.1\noption dns 10.77.0.53\n\
                 option domain lab.test\noption lease 20\n\
                 option staticroutes 0.0.0.0/0 10.77.0.1, 10.88.0.0/16 10.77.0.9\n",
                leases.display()
            ),
        )
        .unwrap();
        let mut s = ServerNs {
            name,
            udhcpd: None,
            conf,
            log: dir.join("udhcpd.log"),
        };
        s.start_server();
        s
    }

    fn start_server(&mut self) {
        let c = Command::new("ip")
            .args(["netns", "exec", &self.name, "busybox", "udhcpd", "-f"])
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.log)
                    .expect("udhcpd log"),
            )
            .spawn()
            .expect("busybox udhcpd (busybox-static) must be installed");
        self.udhcpd = Some(c);
    }

    fn stop_server(&mut self) {
        if let Some(mut c) = self.udhcpd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for ServerNs {
    fn drop(&mut self) {
        self.stop_server();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn ip_json(sb: &Sandbox, args: &[&str]) -> Value {
    let out = Command::new("nsenter")
        .arg(format!("--net=/proc/{}/ns/net", sb.init_pid()))
        .arg("ip")
        .arg("-j")
        .args(args)
        .output()
        .expect("nsenter ip");
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// The IPv4 addresses of v0 in the sandbox.
fn v0_addrs(sb: &Sandbox) -> Vec<String> {
    ip_json(sb, &["-4", "addr", "show", "dev", "v0"])[0]["addr_info"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap_or(""), a["prefixlen"]))
        .collect()
}

fn routes(sb: &Sandbox) -> Vec<String> {
    ip_json(sb, &["-4", "route", "show"])
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
        .collect()
}

fn wait<T>(what: &str, secs: u64, sb: &Sandbox, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > end {
            panic!("{what}: not within {secs} s\n{}", sb.console());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn dhcp_lease_renewals_expiry_and_return_against_udhcpd() {
    let dir = scratch("dhcp-server");
    let mut srv = ServerNs::new("dhcp", &dir);
    let sb = Sandbox::start(
        "dhcp",
        &[("network.lua", "network.interface \"v0\" { dhcp = true }\n")],
    );
    sb.ready();
    // The link appears after boot (as a hotplugged NIC would).
    let st = Command::new("ip")
        .args([
            "-n",
            &srv.name,
            "link",
            "set",
            "v0",
            "netns",
            &sb.init_pid().to_string(),
        ])
        .status()
        .unwrap();
    assert!(st.success());
    let addr = wait("a lease", 40, &sb, || {
        v0_addrs(&sb)
            .into_iter()
            .find(|a| a.starts_with("10.77.0.5") || a.starts_with("10.77.0.60"))
    });
    assert!(addr.ends_with("/24"), "{addr}");
    // Option 121 wins over the router option (RFC 3442): both its routes.
    let r = wait("the classless routes", 10, &sb, || {
        let r = routes(&sb);
        (r.contains(&"default via 10.77.0.1".to_string())
            && r.contains(&"10.88.0.0/16 via 10.77.0.9".to_string()))
        .then_some(r)
    });
    assert!(!r.is_empty());
    let resolv = std::fs::read_to_string(sb.sock.with_file_name("resolv.conf")).unwrap_or_default();
    assert!(
        resolv.contains("nameserver 10.77.0.53") && resolv.contains("lab.test"),
        "{resolv}"
    );
    let lease = &sb.status()["network"]["dhcp"]["v0"];
    assert_eq!(lease["state"], "bound", "{lease}");
    assert_eq!(lease["lease"]["server"], "10.77.0.1", "{lease}");
    assert_eq!(lease["lease"]["lease_s"], 20, "{lease}");

    // A TCP connection across renewals: a server in the server's namespace,
    // a client in the sandbox's exchanging a byte every 0.5 s for 32 s while
    // the address is sampled; 20 s leases renew at 10, 20, 30 s.
    let echo = Command::new("ip")
        .args(["netns", "exec", &srv.name, "python3", "-c"])
        .arg("import socket\ns=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('10.77.0.1', 7000)); s.listen()\nc,_=s.accept()\nwhile True:\n  b=c.recv(1)\n  if not b: break\n  c.send(b)\n")
        .spawn()
        .expect("python3");
    std::thread::sleep(Duration::from_millis(300));
    let client = Command::new("nsenter")
        .arg(format!("--net=/proc/{}/ns/net", sb.init_pid()))
        .args(["python3", "-c"])
        .arg("import socket, time\ns=socket.create_connection(('10.77.0.1', 7000), 5)\nfor i in range(64):\n  s.send(b'x'); assert s.recv(1) == b'x'; time.sleep(0.5)\nprint('kept open')\n")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 client");
    let start = Instant::now();
    let mut samples = 0;
    let mut missing = Vec::new();
    let mut expiries = Vec::new();
    while start.elapsed() < Duration::from_secs(32) {
        if !v0_addrs(&sb).contains(&addr) {
            missing.push(start.elapsed());
        }
        if samples % 10 == 0 {
            expiries.push(
                sb.status()["network"]["dhcp"]["v0"]["lease"]["expires_in_ms"]
                    .as_u64()
                    .unwrap_or(0),
            );
        }
        samples += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = client.wait_with_output().unwrap();
    let mut echo = echo;
    let _ = echo.kill();
    let _ = echo.wait();
    assert!(missing.is_empty(), "the address was missing at {missing:?}");
    assert!(samples > 100, "{samples}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("kept open"),
        "the connection broke: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 32 s on a 20 s lease: only renewals keep it; the expiry never came near.
    assert!(expiries.iter().all(|e| *e > 5_000), "{expiries:?}");

    // Server gone: renewing, rebinding, then at expiry the address and the
    // routes are removed.
    srv.stop_server();
    let mut seen = std::collections::BTreeSet::new();
    wait("the expiry to remove the address", 30, &sb, || {
        if let Some(s) = sb.status()["network"]["dhcp"]["v0"]["state"].as_str() {
            seen.insert(s.to_string());
        }
        (!v0_addrs(&sb).contains(&addr)).then_some(())
    });
    assert!(seen.contains("rebinding"), "phases seen: {seen:?}");
    let r = routes(&sb);
    assert!(
        !r.iter()
            .any(|x| x.contains("10.77.0.1") || x.contains("10.88.0.0")),
        "{r:?}"
    );
    assert!(
        sb.console()
            .contains("dhcp v0: lease lost: the lease expired"),
        "{}",
        sb.console()
    );
    // Server back: the address comes back.
    srv.start_server();
    wait("the address after the server's return", 30, &sb, || {
        v0_addrs(&sb)
            .iter()
            .any(|a| a.starts_with("10.77.0."))
            .then_some(())
    });
}

#[test]
fn bad_dhcp_settings_are_refused_with_their_location() {
    let sb = Sandbox::start(
        "dhcp-bad",
        &[(
            "network.lua",
            "\nnetwork.interface \"v0\" { dhcp = { hostnme = \"x\" } }\n",
        )],
    );
    sb.ready();
    let e = sb.status()["errors"].to_string();
    assert!(
        e.contains("network.lua:2") && e.contains("hostnme") && e.contains("dhcp"),
        "{e}"
    );
}
