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
    sniffer: Option<Child>,
    sniffed: std::path::PathBuf,
}

/// Prints each DHCP message a client sends to the server's side of the
/// veth (AF_PACKET, what arrives on v0p): "DISCOVER xid=... requested=...".
const SNIFFER: &str = r#"
import socket, struct, sys
ETH_P_IP = 0x0800
s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
s.bind((sys.argv[1], ETH_P_IP))
names = {1: 'DISCOVER', 2: 'OFFER', 3: 'REQUEST', 4: 'DECLINE', 5: 'ACK', 6: 'NAK', 7: 'RELEASE', 8: 'INFORM'}
out = open(sys.argv[2], 'a', buffering=1)
out.write('sniffing\n')
while True:
    try:
        p, addr = s.recvfrom(4096)
    except OSError:
        continue  # ENETDOWN while the link is down
    if addr[2] == socket.PACKET_OUTGOING or len(p) < 28 or p[9] != 17:
        continue
    ihl = (p[0] & 15) * 4
    dport = struct.unpack('!H', p[ihl + 2:ihl + 4])[0]
    d = p[ihl + 8:]
    if dport != 67 or len(d) < 240 or d[236:240] != bytes([99, 130, 83, 99]):
        continue
    i, kind, req = 240, None, None
    while i + 1 < len(d) and d[i] != 255:
        if d[i] == 0:
            i += 1
            continue
        c, l = d[i], d[i + 1]
        v = d[i + 2:i + 2 + l]
        if c == 53 and l == 1:
            kind = v[0]
        if c == 50 and l == 4:
            req = socket.inet_ntoa(v)
        i += 2 + l
    out.write('%s xid=%s requested=%s\n' % (names.get(kind, kind), d[4:8].hex(), req))
"#;

impl ServerNs {
    fn new(tag: &str, dir: &std::path::Path) -> ServerNs {
        Self::new_with(tag, dir, "")
    }

    /// As `new`, with more udhcpd configuration lines.
    fn new_with(tag: &str, dir: &std::path::Path, extra: &str) -> ServerNs {
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
                 option staticroutes 0.0.0.0/0 10.77.0.1, 10.88.0.0/16 10.77.0.9\n{extra}",
                leases.display()
            ),
        )
        .unwrap();
        let mut s = ServerNs {
            name,
            udhcpd: None,
            conf,
            log: dir.join("udhcpd.log"),
            sniffer: None,
            sniffed: dir.join("sniffed.log"),
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

    /// Starts recording what clients send (see SNIFFER); waits until it listens.
    fn sniff(&mut self) {
        let c = Command::new("ip")
            .args(["netns", "exec", &self.name, "python3", "-c", SNIFFER, "v0p"])
            .arg(&self.sniffed)
            .spawn()
            .expect("python3 must be installed");
        self.sniffer = Some(c);
        let end = Instant::now() + Duration::from_secs(10);
        while self.sniffed().is_empty() {
            assert!(Instant::now() < end, "the sniffer did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The messages sniffed so far ("DISCOVER xid=... requested=...").
    fn sniffed(&self) -> Vec<String> {
        std::fs::read_to_string(&self.sniffed)
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    fn count(&self, kind: &str) -> usize {
        self.sniffed()
            .iter()
            .filter(|l| l.starts_with(&format!("{kind} ")))
            .count()
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
        if let Some(mut c) = self.sniffer.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
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

/// Moves the server namespace's v0 into the sandbox (a NIC appearing after boot).
fn give_v0(srv: &ServerNs, sb: &Sandbox) {
    let st = Command::new("ip")
        .args(["-n", &srv.name, "link", "set", "v0", "netns"])
        .arg(sb.init_pid().to_string())
        .status()
        .unwrap();
    assert!(st.success(), "moving v0 into the sandbox");
}

/// `ctl eval CODE`: its output, or a panic with the error and the console.
fn eval(sb: &Sandbox, code: &str) -> String {
    let out = sb.ctl(&["eval", code]);
    assert!(
        out.status.success(),
        "eval {code}: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        sb.console()
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

const HOOKED: &str = r#"
network.interface "v0" { dhcp = { use_hostname = true,
  on_lease = function(ifname, lease, event)
    if lease then
      print(string.format("on_lease %s %s %s router %s dns %s server %s lease %d",
        ifname, event, lease.cidr, lease.router, table.concat(lease.dns, ","),
        lease.server, lease.lease))
    else
      print(string.format("on_lease %s %s %s", ifname, event, tostring(lease)))
    end
    sleep(0.2) -- a hook is a task: it may block
    print("on_lease " .. event .. " done, net.lease: " ..
      tostring(require("net").lease(ifname) and require("net").lease(ifname).address))
  end } }
"#;

#[test]
fn lease_in_lua_hook_hostname_and_carrier_loss_against_udhcpd() {
    let dir = scratch("dhcp-lua-server");
    let mut srv = ServerNs::new_with("dhcp-lua", &dir, "option hostname moonvm\n");
    srv.sniff();
    let sb = Sandbox::start("dhcp-lua", &[("network.lua", HOOKED)]);
    sb.ready();
    assert_eq!(eval(&sb, "tostring(require('net').lease('v0'))"), "nil");
    // wait_address blocks a task until DHCP gives the address (family inet
    // by default); PID 1 answers meanwhile.
    let waiter = {
        let bin = common::BIN.to_string();
        let sock = sb.sock.clone();
        std::thread::spawn(move || {
            Command::new(bin)
                .args(["ctl", "--socket"])
                .arg(sock)
                .args([
                    "eval",
                    "local a, l = require('net').wait_address('v0', { timeout = 40 })\n\
                     return a and (a.cidr .. ' ' .. a.family .. ' ' .. l.name) or tostring(l)",
                ])
                .output()
                .expect("ctl eval")
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    assert!(sb.ctl(&["status"]).status.success());
    give_v0(&srv, &sb);
    let out = waiter.join().expect("waiter");
    let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        said.starts_with("10.77.0.") && said.ends_with("/24 inet v0"),
        "wait_address said {said:?} ({})\n{}",
        String::from_utf8_lossy(&out.stderr),
        sb.console()
    );
    let cidr = said.split(' ').next().unwrap().to_string();
    let addr = cidr.split('/').next().unwrap().to_string();
    // net.lease
    let l = eval(
        &sb,
        "local l = require('net').lease('v0'); return string.format('%s %d %s %s %s %s %d %d %d %s', \
         l.address, l.prefix, l.router, l.dns[1], l.server, l.search[1], l.lease, l.t1, l.t2, \
         tostring(l.expires_in > 0 and l.expires_in <= 20 and l.t1_in <= l.t2_in and l.t2_in <= l.expires_in))",
    );
    assert_eq!(
        l,
        format!("{addr} 24 10.77.0.1 10.77.0.53 10.77.0.1 lab.test 20 10 17 true")
    );
    // The hook: once, as a task, after the address is on the link.
    let line = sb.wait_line("on_lease v0 bound", 10);
    assert!(
        line.ends_with(&format!(
            "on_lease v0 bound {cidr} router 10.77.0.1 dns 10.77.0.53 server 10.77.0.1 lease 20"
        )),
        "{line}"
    );
    sb.wait_line(&format!("on_lease bound done, net.lease: {addr}"), 10);
    // The hostname from option 12, in the sandbox's UTS namespace.
    sb.wait_line("dhcp v0: hostname set to moonvm (from the lease)", 10);
    let h = Command::new("nsenter")
        .arg(format!("--uts=/proc/{}/ns/uts", sb.init_pid()))
        .arg("hostname")
        .output()
        .expect("nsenter hostname");
    assert_eq!(String::from_utf8_lossy(&h.stdout).trim(), "moonvm");
    assert_eq!(eval(&sb, "require('sys').gethostname()"), "moonvm");
    // The lease, as Lua sees it, survives a re-exec of PID 1.
    let out = sb.ctl(&["reexec"]);
    assert!(
        out.status.success(),
        "reexec: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(eval(&sb, "require('net').lease('v0').cidr"), cidr);

    // A renewal with the same lease (T1 = 10 s) calls no hook.
    let requests = srv.count("REQUEST");
    wait("a renewal", 20, &sb, || {
        (srv.count("REQUEST") > requests).then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(sb.count("on_lease v0 bound"), 1, "{}", sb.console());

    // Carrier loss: the server's end of the veth goes down, v0 loses its
    // carrier; back up, the client asks again at once (a new DISCOVER with
    // the address it had) and is bound again.
    let discovers = srv.count("DISCOVER");
    let st = Command::new("ip")
        .args(["-n", &srv.name, "link", "set", "v0p", "down"])
        .status()
        .unwrap();
    assert!(st.success());
    wait("v0 to lose its carrier", 10, &sb, || {
        let v = ip_json(&sb, &["link", "show", "dev", "v0"]);
        v[0]["flags"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == "NO-CARRIER"))
            .then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    let st = Command::new("ip")
        .args(["-n", &srv.name, "link", "set", "v0p", "up"])
        .status()
        .unwrap();
    assert!(st.success());
    sb.wait_line("dhcp v0: carrier back: asking for the lease again", 15);
    wait("a DISCOVER after the carrier came back", 15, &sb, || {
        (srv.count("DISCOVER") > discovers).then_some(())
    });
    let again: Vec<String> = srv
        .sniffed()
        .into_iter()
        .filter(|l| l.starts_with("DISCOVER "))
        .collect();
    assert!(
        again
            .last()
            .is_some_and(|l| l.ends_with(&format!("requested={addr}"))),
        "{again:?}"
    );
    let requests = srv.count("REQUEST");
    wait("the REQUEST after it", 15, &sb, || {
        (srv.count("REQUEST") > requests).then_some(())
    });
    sb.wait_status("bound again", 15, |st| {
        st["network"]["dhcp"]["v0"]["state"] == "bound"
            && st["network"]["dhcp"]["v0"]["lease"]["expires_in_ms"]
                .as_u64()
                .is_some_and(|e| e > 15_000)
    });
    assert!(v0_addrs(&sb).contains(&cidr), "{:?}", v0_addrs(&sb));

    // The lease lost (server gone, expiry): the hook with nil, net.lease nil.
    srv.stop_server();
    sb.wait_line("on_lease v0 lost nil", 40);
    sb.wait_line("on_lease lost done, net.lease: nil", 10);
    assert_eq!(eval(&sb, "tostring(require('net').lease('v0'))"), "nil");
}

#[test]
fn a_non_function_on_lease_is_refused() {
    let sb = Sandbox::start(
        "dhcp-bad-hook",
        &[(
            "network.lua",
            "network.interface \"v0\" {\n dhcp = { on_lease = \"print\" } }\n",
        )],
    );
    sb.ready();
    let e = sb.status()["errors"].to_string();
    assert!(
        e.contains("network.lua:1") && e.contains("on_lease must be a function"),
        "{e}"
    );
}

/// busybox udhcpd's first choice for `mac` in a pool of two addresses
/// (with FEATURE_UDHCPD_BASE_IP_ON_MAC, the SDBM hash of the MAC modulo the
/// pool size; without it, the first address).
fn udhcpd_first_choice_is_the_start(mac: [u8; 6]) -> bool {
    let mut h: u32 = 0;
    for b in mac {
        h = u32::from(b).wrapping_add(h << 6).wrapping_add(h << 16);
    }
    h.is_multiple_of(2)
}

#[test]
fn an_offered_address_in_use_is_declined_and_another_one_bound() {
    let dir = scratch("dhcp-arp-server");
    // A pool of two; the first is already used by a host on the link (the
    // server's namespace answers ARP for it), which udhcpd's own ARP check
    // does not see (its probe goes out through the veth, not to itself).
    let mut srv = ServerNs::new_with("dhcp-arp", &dir, "end 10.77.0.51\n");
    let mac = [2, 0, 0, 0, 0x77, 2];
    assert!(udhcpd_first_choice_is_the_start(mac));
    let n = srv.name.clone();
    for args in [
        vec!["-n", &n, "addr", "add", "10.77.0.50/32", "dev", "lo"],
        vec![
            "-n",
            &n,
            "link",
            "set",
            "v0",
            "address",
            "02:00:00:00:77:02",
        ],
    ] {
        assert!(Command::new("ip").args(&args).status().unwrap().success());
    }
    srv.sniff();
    let sb = Sandbox::start(
        "dhcp-arp",
        &[("network.lua", "network.interface \"v0\" { dhcp = true }\n")],
    );
    sb.ready();
    give_v0(&srv, &sb);
    let line = sb.wait_line("is in use by", 40);
    assert!(
        line.contains("dhcp v0: 10.77.0.50 is in use by")
            && line.contains(": declined, asking again in 10 s"),
        "{line}"
    );
    // The server got the DECLINE for it.
    wait("the DECLINE at the server", 10, &sb, || {
        srv.sniffed()
            .iter()
            .any(|l| l.starts_with("DECLINE ") && l.ends_with("requested=10.77.0.50"))
            .then_some(())
    });
    // 10.77.0.50 was never configured; after the wait the other address is.
    assert!(!v0_addrs(&sb).iter().any(|a| a.starts_with("10.77.0.50/")));
    let addr = wait("the other address", 40, &sb, || {
        v0_addrs(&sb)
            .into_iter()
            .find(|a| a.starts_with("10.77.0.5"))
    });
    assert_eq!(addr, "10.77.0.51/24", "{}", sb.console());
    let st = sb.status();
    assert_eq!(st["network"]["dhcp"]["v0"]["state"], "bound");
    assert_eq!(
        st["network"]["dhcp"]["v0"]["lease"]["address"],
        "10.77.0.51/24"
    );
    // Order at the server: DECLINE of .50, then a new DISCOVER and the
    // REQUEST for .51 (the DISCOVER does not ask for the declined address).
    let msgs = srv.sniffed();
    let d = msgs.iter().position(|l| l.starts_with("DECLINE ")).unwrap();
    assert!(
        msgs[d + 1..]
            .iter()
            .any(|l| l.starts_with("DISCOVER ") && l.ends_with("requested=None")),
        "{msgs:?}"
    );
    assert!(
        msgs[d + 1..]
            .iter()
            .any(|l| l.starts_with("REQUEST ") && l.ends_with("requested=10.77.0.51")),
        "{msgs:?}"
    );
    assert!(
        !sb.console().contains("add address 10.77.0.50"),
        "{}",
        sb.console()
    );
}
