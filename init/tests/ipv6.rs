//! IPv6 SLAAC of a declared interface: `ipv6 = { accept_ra = true }` sets
//! the link's accept_ra/autoconf sysctls before it goes up, the kernel
//! configures an address from a router advertisement's prefix, and
//! `net.wait_address(.., { family = "inet6", scope = "global" })` (a task
//! yielding to the loop, run here by `ctl eval`) returns it. The router is a
//! small python3 script in a second network namespace sending ICMPv6 router
//! advertisements with a prefix information option over a veth. Negative
//! control: `accept_ra = false` on a link that arrives with the kernel's
//! default (accept) gets no address from the same advertisements.
//!
//! Needs root, iproute2, nsenter and python3; fails loudly without them.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Sandbox;
use serde_json::Value;

const PREFIX: &str = "2001:db8:77::";

/// Sends an RA (router lifetime 0: not a default router; one prefix
/// 2001:db8:77::/64 with the on-link and autonomous flags) every 0.3 s.
const RA_SENDER: &str = r#"
import socket, struct, sys, time
ifname, prefix = sys.argv[1], sys.argv[2]
idx = socket.if_nametoindex(ifname)
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, idx)
ra = struct.pack('!BBHBBHII', 134, 0, 0, 64, 0, 0, 0, 0)
pio = struct.pack('!BBBBIII', 3, 4, 64, 0xC0, 600, 300, 0) + socket.inet_pton(socket.AF_INET6, prefix)
sent = 0
while True:
    try:
        s.sendto(ra + pio, ('ff02::1', 0, 0, idx))
        sent += 1
        if sent == 1:
            print('ra: first advertisement sent', flush=True)
    except OSError as e:
        pass  # the link-local source is not ready yet
    time.sleep(0.3)
"#;

struct Router {
    ns: String,
    sender: Option<Child>,
}

impl Router {
    fn new(tag: &str) -> Router {
        let ns = format!("moonlit-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        let run = |args: &[&str]| {
            let st = Command::new("ip")
                .args(args)
                .status()
                .expect("ip (iproute2) must be installed");
            assert!(st.success(), "ip {args:?}");
        };
        run(&["netns", "add", &ns]);
        let n = ns.as_str();
        run(&[
            "-n", n, "link", "add", "v0", "type", "veth", "peer", "name", "v0p",
        ]);
        // No duplicate address detection on the router's side: its
        // link-local source is usable at once.
        let st = Command::new("ip")
            .args(["netns", "exec", n, "sh", "-c"])
            .arg("echo 0 > /proc/sys/net/ipv6/conf/v0p/accept_dad")
            .status()
            .expect("sh");
        assert!(st.success());
        run(&["-n", n, "link", "set", "v0p", "up"]);
        let sender = Command::new("ip")
            .args([
                "netns", "exec", n, "python3", "-c", RA_SENDER, "v0p", PREFIX,
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("python3 must be installed");
        Router {
            ns,
            sender: Some(sender),
        }
    }

    /// Moves v0 into the sandbox (as a NIC that appears after boot).
    fn give_v0(&self, sb: &Sandbox) {
        let st = Command::new("ip")
            .args(["-n", &self.ns, "link", "set", "v0", "netns"])
            .arg(sb.init_pid().to_string())
            .status()
            .unwrap();
        assert!(st.success(), "moving v0 into the sandbox");
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        if let Some(mut c) = self.sender.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

fn in_sandbox(sb: &Sandbox, args: &[&str]) -> std::process::Output {
    Command::new("nsenter")
        .arg(format!("--net=/proc/{}/ns/net", sb.init_pid()))
        .args(args)
        .output()
        .expect("nsenter (util-linux) must be installed")
}

/// v0's global IPv6 addresses as `ip -j` shows them.
fn global6(sb: &Sandbox) -> Vec<String> {
    let out = in_sandbox(sb, &["ip", "-j", "-6", "addr", "show", "dev", "v0"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    v[0]["addr_info"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["scope"] == "global")
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap_or(""), a["prefixlen"]))
        .collect()
}

fn sysctl(sb: &Sandbox, path: &str) -> String {
    let out = in_sandbox(sb, &["cat", path]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn set_sysctl(sb: &Sandbox, path: &str, v: &str) {
    let out = in_sandbox(sb, &["sh", "-c", &format!("echo {v} > {path}")]);
    assert!(out.status.success(), "writing {path}");
}

#[test]
fn accept_ra_gets_a_slaac_address_and_wait_address_returns_it() {
    let router = Router::new("ra");
    let sb = Sandbox::start(
        "ipv6-ra",
        &[(
            "network.lua",
            "network.interface \"v0\" { ipv6 = { accept_ra = true } }\n",
        )],
    );
    sb.ready();
    // Links of this namespace start with SLAAC off: only moonlit's sysctl
    // writes can turn it on for v0.
    set_sysctl(&sb, "/proc/sys/net/ipv6/conf/default/accept_ra", "0");
    set_sysctl(&sb, "/proc/sys/net/ipv6/conf/default/autoconf", "0");
    // The waiter is started before the link exists: a task in the loop.
    let waiter = {
        let bin = common::BIN.to_string();
        let sock = sb.sock.clone();
        std::thread::spawn(move || {
            Command::new(bin)
                .args(["ctl", "--socket"])
                .arg(sock)
                .args([
                    "eval",
                    "local net = require 'net'\n\
                     local a, l = net.wait_address('v0', { family = 'inet6', scope = 'global', timeout = 40 })\n\
                     if not a then return 'failed: ' .. tostring(l) end\n\
                     return a.cidr .. ' ' .. a.family .. ' ' .. a.scope .. ' ' .. l.name",
                ])
                .output()
                .expect("ctl eval")
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    // PID 1 answers while the task waits.
    assert!(sb.ctl(&["status"]).status.success());
    router.give_v0(&sb);
    let out = waiter.join().expect("waiter");
    let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        said.starts_with("2001:db8:77:") && said.ends_with("/64 inet6 global v0"),
        "wait_address said {said:?} ({})\n{}",
        String::from_utf8_lossy(&out.stderr),
        sb.console()
    );
    let cidr = said.split(' ').next().unwrap().to_string();
    assert!(global6(&sb).contains(&cidr), "{:?} vs {cidr}", global6(&sb));
    assert_eq!(sysctl(&sb, "/proc/sys/net/ipv6/conf/v0/accept_ra"), "1");
    assert_eq!(sysctl(&sb, "/proc/sys/net/ipv6/conf/v0/autoconf"), "1");
    // An address that is already there: returned at once; the plain form
    // (family string) sees it too.
    let out = sb.ctl(&[
        "eval",
        "local a = require('net').wait_address('v0', 'inet6', { scope = 'global', timeout = 0 }); return a.address",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        cidr.split('/').next().unwrap()
    );
    // A typo raises instead of waiting.
    let out = sb.ctl(&[
        "eval",
        "return require('net').wait_address('v0', { family = 'inet6', scpoe = 'global' })",
    ]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown option 'scpoe'"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn accept_ra_false_gets_no_address_from_the_same_advertisements() {
    let router = Router::new("ra-off");
    let sb = Sandbox::start(
        "ipv6-ra-off",
        &[(
            "network.lua",
            "network.interface \"v0\" { up = true, ipv6 = { accept_ra = false } }\n",
        )],
    );
    sb.ready();
    // The namespace's default is the kernel's (accept, autoconf): v0 would
    // get an address if moonlit did not turn it off.
    assert_eq!(
        sysctl(&sb, "/proc/sys/net/ipv6/conf/default/accept_ra"),
        "1"
    );
    router.give_v0(&sb);
    let end = Instant::now() + Duration::from_secs(20);
    while sysctl(&sb, "/proc/sys/net/ipv6/conf/v0/accept_ra") != "0" {
        assert!(
            Instant::now() < end,
            "accept_ra never set to 0\n{}",
            sb.console()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(sysctl(&sb, "/proc/sys/net/ipv6/conf/v0/autoconf"), "0");
    // v0 is up (its link-local address is there) and hears advertisements
    // for 6 s: still no global address.
    let out = sb.ctl(&[
        "eval",
        "local a, e = require('net').wait_address('v0', { family = 'inet6', scope = 'link', timeout = 20 }); return a and a.cidr or tostring(e)",
    ]);
    let ll = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(ll.starts_with("fe80:"), "{ll}\n{}", sb.console());
    let out = sb.ctl(&[
        "eval",
        "local a, e = require('net').wait_address('v0', { family = 'inet6', scope = 'global', timeout = 6 }); return a and a.cidr or (e.TIMEDOUT and 'timed out' or tostring(e))",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "timed out",
        "{}",
        sb.console()
    );
    assert!(global6(&sb).is_empty(), "{:?}", global6(&sb));
}
