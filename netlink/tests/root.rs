//! Root tests: every operation runs in network namespaces created for the test
//! (`ip netns add mlt-<test>-<pid>`, deleted afterwards) through the `net-lua`
//! runner, and every result is checked independently with iproute2's JSON output
//! (`ip -n NS -j link/addr/route`). They FAIL (never skip) without root or
//! iproute2. The host's interfaces are never touched.

use std::process::Command;

use serde_json::Value;

const NET_LUA: &str = env!("CARGO_BIN_EXE_net-lua");

struct Ns(String);

impl Ns {
    fn new(tag: &str) -> Ns {
        assert!(
            rustix::process::geteuid().is_root(),
            "root tests need root (run cargo test as root)"
        );
        let name = format!("mlt-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .expect("iproute2 `ip` must be installed for the root tests");
        assert!(
            out.status.success(),
            "ip netns add {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ns = Ns(name);
        ns.sh("ip link set lo up");
        ns
    }

    /// Run a Lua script in the namespace; panics with its output on failure.
    fn lua(&self, script: &str, args: &[&str]) -> String {
        let path = std::env::temp_dir().join(format!("{}.lua", self.0));
        std::fs::write(&path, format!("local net = require 'net'\n{script}")).unwrap();
        let out = Command::new("ip")
            .args(["netns", "exec", &self.0, NET_LUA, path.to_str().unwrap()])
            .args(args)
            .output()
            .unwrap();
        let _ = std::fs::remove_file(&path);
        let so = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "lua script failed in {}:\nstdout:\n{so}\nstderr:\n{}",
            self.0,
            String::from_utf8_lossy(&out.stderr)
        );
        so
    }

    fn sh(&self, cmd: &str) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.0, "sh", "-c", cmd])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `ip -n NS -j <args>` parsed.
    fn ip(&self, args: &str) -> Value {
        let mut a = vec!["-n", &self.0, "-j"];
        a.extend(args.split_whitespace());
        let out = Command::new("ip").args(&a).output().unwrap();
        assert!(
            out.status.success(),
            "ip {args}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let s = String::from_utf8_lossy(&out.stdout);
        if s.trim().is_empty() {
            return Value::Array(vec![]);
        }
        serde_json::from_str(&s).unwrap_or_else(|e| panic!("ip -j {args}: {e}: {s}"))
    }

    fn link(&self, name: &str) -> Option<Value> {
        self.ip("link show")
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["ifname"] == name)
            .cloned()
    }

    fn addrs(&self, dev: &str) -> Vec<String> {
        let v = self.ip(&format!("addr show dev {dev}"));
        let mut out = vec![];
        for l in v.as_array().unwrap() {
            for a in l["addr_info"].as_array().unwrap() {
                out.push(format!(
                    "{}/{}",
                    a["local"].as_str().unwrap(),
                    a["prefixlen"]
                ));
            }
        }
        out
    }

    fn routes(&self, args: &str) -> Vec<Value> {
        self.ip(&format!("route show {args}"))
            .as_array()
            .unwrap()
            .clone()
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

fn has_flag(l: &Value, f: &str) -> bool {
    l["flags"].as_array().unwrap().iter().any(|x| x == f)
}

#[test]
fn link_create_up_mtu_mac_rename_delete() {
    let ns = Ns::new("link");
    let out = ns.lua(
        r#"
        local v = assert(net.create{kind = "veth", name = "v0", peer = "v0p"})
        assert(v.kind == "veth" and not v.is_up)
        assert(v:set{mtu = 1400, mac = "02:00:00:00:00:aa"})
        assert(v.mtu == 1400 and v.mac == "02:00:00:00:00:aa", "snapshot refreshed")
        assert(v:up())
        assert(v.is_up)
        local p = assert(net.link("v0p"))
        assert(p:set_mtu(1300))
        assert(p:rename("peer0"))
        assert(p.name == "peer0")
        local gone = assert(net.create{kind = "veth", name = "tmp0", peer = "tmp1"})
        assert(gone:delete())
        local byindex = assert(net.link(v.index))
        assert(byindex.name == "v0")
        local n = 0
        for _, l in ipairs(assert(net.links())) do n = n + 1 end
        print("links " .. n)
        "#,
        &[],
    );
    assert!(out.contains("links 3"), "{out}");
    let v0 = ns.link("v0").expect("v0 exists");
    assert_eq!(v0["mtu"], 1400);
    assert_eq!(v0["address"], "02:00:00:00:00:aa");
    assert!(has_flag(&v0, "UP"));
    let p = ns.link("peer0").expect("peer renamed");
    assert_eq!(p["mtu"], 1300);
    assert!(!has_flag(&p, "UP"));
    assert!(ns.link("v0p").is_none());
    assert!(
        ns.link("tmp0").is_none() && ns.link("tmp1").is_none(),
        "deleted veth pair is gone"
    );
    // negative control: the checker sees a difference when there is one
    ns.sh("ip link set v0 mtu 1450");
    assert_eq!(ns.link("v0").unwrap()["mtu"], 1450);
}

#[test]
fn veth_peer_into_second_namespace_and_move_link() {
    let a = Ns::new("vetha");
    let b = Ns::new("vethb");
    // a process living in namespace b, for the by-pid form
    let mut holder = Command::new("ip")
        .args(["netns", "exec", &b.0, "sleep", "60"])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let pid = holder.id().to_string();
    let path = format!("/run/netns/{}", b.0);
    a.lua(
        r#"
        local pid, path = tonumber(arg[1]), arg[2]
        assert(net.create{kind = "veth", name = "va0", peer = "vb0", peer_netns = { path = path }})
        assert(net.create{kind = "veth", name = "va1", peer = "vb1", peer_netns = pid})
        assert(net.link("vb0") == nil, "peer must not be here")
        local m = assert(net.create{kind = "veth", name = "mv0", peer = "mv1"})
        assert(m:move_to{ path = path })
        local m1 = assert(net.link("mv1"))
        assert(m1:set{ netns = { pid = pid } })
        local _, err = net.link("mv0")
        assert(err and err.NODEV, "moved link is gone from here")
        "#,
        &[&pid, &path],
    );
    let _ = holder.kill();
    let _ = holder.wait();
    for n in ["va0", "va1"] {
        assert!(a.link(n).is_some(), "{n} in a");
    }
    for n in ["vb0", "vb1", "mv0", "mv1"] {
        assert!(b.link(n).is_some(), "{n} must be in namespace b");
        assert!(a.link(n).is_none(), "{n} must not be in namespace a");
    }
}

#[test]
fn bridge_with_ports() {
    let ns = Ns::new("bridge");
    ns.lua(
        r#"
        local br = assert(net.create{kind = "bridge", name = "br0", up = true})
        assert(net.create{kind = "veth", name = "p0", peer = "p0x", master = "br0"})
        local p1 = assert(net.create{kind = "veth", name = "p1", peer = "p1x"})
        assert(p1:set_master(br))
        assert(p1.master == br.index)
        local p2 = assert(net.create{kind = "veth", name = "p2", peer = "p2x"})
        assert(p2:set{ master = "br0" })
        assert(p2:set_master(nil))
        assert(p2.master == nil)
        assert(br:add_address("192.168.50.1/24"))
        "#,
        &[],
    );
    assert_eq!(ns.link("p0").unwrap()["master"], "br0");
    assert_eq!(ns.link("p1").unwrap()["master"], "br0");
    assert!(
        ns.link("p2").unwrap().get("master").is_none(),
        "p2 released"
    );
    assert_eq!(
        ns.ip("-d link show br0")[0]["linkinfo"]["info_kind"],
        "bridge"
    );
    let a: Vec<String> = ns
        .addrs("br0")
        .into_iter()
        .filter(|a| !a.starts_with("fe80"))
        .collect();
    assert_eq!(a, vec!["192.168.50.1/24"]);
}

#[test]
fn addresses_v4_v6_add_replace_delete() {
    let ns = Ns::new("addr");
    let out = ns.lua(
        r#"
        local v = assert(net.create{kind = "veth", name = "v0", peer = "v0p", up = true})
        assert(v:add_address("10.0.0.2/24"))
        assert(v:add_address("10.0.0.3/24", { broadcast = false }))
        assert(v:add_address("10.1.0.2/16", { broadcast = "10.1.255.254" }))
        assert(v:add_address("fd00::2/64", { nodad = true }))
        assert(v:add_address("fd00::3/64"))
        assert(v:replace_address("fd00::3/64", { nodad = true }))
        assert(v:add_address("10.9.9.9/24"))
        assert(v:del_address("10.9.9.9/24"))
        local seen = {}
        for _, a in ipairs(assert(v:addresses())) do seen[a.cidr] = a end
        assert(seen["10.0.0.2/24"].broadcast == "10.0.0.255")
        assert(seen["fd00::2/64"].family == "inet6" and not seen["fd00::2/64"].tentative)
        local all = assert(net.addresses{ family = "inet6", link = "v0" })
        for _, a in ipairs(all) do assert(a.family == "inet6" and a.link == "v0") end
        print("ok")
        "#,
        &[],
    );
    assert!(out.contains("ok"));
    let v = ns.ip("addr show dev v0");
    let infos = v[0]["addr_info"].as_array().unwrap();
    let find = |l: &str| infos.iter().find(|a| a["local"] == l).cloned();
    assert_eq!(find("10.0.0.2").unwrap()["broadcast"], "10.0.0.255");
    assert_eq!(find("10.0.0.2").unwrap()["prefixlen"], 24);
    assert!(find("10.0.0.3").unwrap().get("broadcast").is_none());
    assert_eq!(find("10.1.0.2").unwrap()["broadcast"], "10.1.255.254");
    assert_eq!(find("fd00::2").unwrap()["prefixlen"], 64);
    assert!(find("fd00::3").is_some());
    assert!(find("10.9.9.9").is_none(), "deleted");
}

#[test]
fn routes_v4_v6_default_metric_src_table() {
    let ns = Ns::new("route");
    ns.lua(
        r#"
        local v = assert(net.create{kind = "veth", name = "v0", peer = "v0p", up = true})
        assert(net.link("v0p"):up())
        assert(v:add_address("10.0.0.2/24"))
        assert(v:add_address("fd00::2/64", { nodad = true }))
        assert(net.add_route{ to = "default", via = "10.0.0.1" })
        assert(net.add_route{ to = "10.9.0.0/16", via = "10.0.0.1", metric = 50, src = "10.0.0.2" })
        assert(net.add_route{ to = "10.8.0.0/16", dev = "v0", table = 100 })
        assert(net.add_route{ to = "default", via = "fd00::1", dev = v })
        assert(net.add_route{ to = "fd01::/64", via = "fd00::1", metric = 7 })
        assert(net.add_route{ to = "10.7.0.0/16", via = "10.0.0.1" })
        assert(net.replace_route{ to = "10.7.0.0/16", via = "10.0.0.3" })
        assert(net.add_route{ to = "10.6.0.0/16", via = "10.0.0.1" })
        assert(net.del_route{ to = "10.6.0.0/16" })
        local found = {}
        for _, r in ipairs(assert(net.routes{ table = "all" })) do if r.family == "inet" then found[r.to .. "@" .. r.table] = r end end
        assert(found["default@254"].via == "10.0.0.1" and found["default@254"].dev == "v0")
        assert(found["10.8.0.0/16@100"].scope == "link")
        assert(found["10.9.0.0/16@254"].metric == 50 and found["10.9.0.0/16@254"].src == "10.0.0.2")
        local n6 = 0
        for _, r in ipairs(assert(net.routes{ family = "inet6" })) do
          assert(r.family == "inet6"); n6 = n6 + 1
        end
        assert(n6 >= 3)
        "#,
        &[],
    );
    let r4 = ns.routes("");
    let find = |rs: &[Value], dst: &str| rs.iter().find(|r| r["dst"] == dst).cloned();
    let d = find(&r4, "default").expect("v4 default route");
    assert_eq!(d["gateway"], "10.0.0.1");
    assert_eq!(d["dev"], "v0");
    assert_eq!(d["protocol"], "static");
    let r9 = find(&r4, "10.9.0.0/16").unwrap();
    assert_eq!(r9["metric"], 50);
    assert_eq!(r9["prefsrc"], "10.0.0.2");
    assert_eq!(
        find(&r4, "10.7.0.0/16").unwrap()["gateway"],
        "10.0.0.3",
        "replaced"
    );
    assert!(find(&r4, "10.6.0.0/16").is_none(), "deleted");
    let t100 = ns.routes("table 100");
    assert_eq!(find(&t100, "10.8.0.0/16").unwrap()["scope"], "link");
    let r6 = ns.ip("-6 route show").as_array().unwrap().clone();
    let d6 = ns.ip("-6 route show");
    let d6 = d6.as_array().unwrap();
    let def6 = d6
        .iter()
        .find(|r| r["dst"] == "default")
        .expect("v6 default route");
    assert_eq!(def6["gateway"], "fd00::1");
    assert_eq!(find(&r6, "fd01::/64").unwrap()["metric"], 7);
}

#[test]
fn os_errors_are_nil_err_and_bad_arguments_raise() {
    let ns = Ns::new("errs");
    let out = ns.lua(
        r#"
        local v = assert(net.create{kind = "veth", name = "v0", peer = "v0p"})
        -- EEXIST
        local l, err = net.create{kind = "veth", name = "v0", peer = "v9"}
        assert(l == nil and err.EXIST and err.sym == "EXIST" and err.errno == 17, tostring(err))
        assert(not err.NODEV)
        assert(tostring(err):find("v0", 1, true), "message names the interface: " .. tostring(err))
        assert(v:add_address("10.0.0.2/24"))
        local ok, e2 = v:add_address("10.0.0.2/24")
        assert(ok == nil and e2.EXIST and tostring(e2):find("v0", 1, true))
        -- ENODEV
        local n, e3 = net.link("nosuch0")
        assert(n == nil and e3.NODEV and e3.errno == 19 and tostring(e3):find("nosuch0", 1, true), tostring(e3))
        -- deleting a link twice
        local w = assert(net.create{kind = "veth", name = "w0", peer = "w1"})
        assert(w:delete())
        local d, e4 = w:delete()
        assert(d == nil and e4.NODEV, tostring(e4))
        -- ESRCH for a missing route, EADDRNOTAVAIL for a missing address
        local r, e5 = net.del_route{ to = "10.99.0.0/16" }
        assert(r == nil and e5.SRCH, tostring(e5))
        local a, e6 = v:del_address("10.0.0.77/24")
        assert(a == nil and e6.ADDRNOTAVAIL, tostring(e6))
        -- kinds this kernel may lack come back as nil, err (EOPNOTSUPP), never raise
        for _, spec in ipairs{ { kind = "dummy", name = "d0" }, { kind = "vlan", name = "v0.5", link = "v0", id = 5 },
                               { kind = "bond", name = "bond0" } } do
          local x, ex = net.create(spec)
          print(spec.kind, x and "created" or ex.sym)
          assert(x or ex.OPNOTSUPP or ex.NOENT, tostring(ex))
        end
        local mv = assert(net.create{ kind = "macvlan", name = "mv0", link = "v0", mode = "bridge" })
        assert(mv.kind == "macvlan")
        -- bad arguments raise
        for i, f in ipairs{
          function() net.link({}) end,
          function() v:add_address("10.0.0.1/99") end,
          function() v:add_address(42) end,
          function() v:set{ mtu = "big" } end,
          function() v:set{ bogus = 1 } end,
          function() net.create{ kind = "tunnel", name = "t0" } end,
          function() net.create{ kind = "veth", name = "this-is-too-long-name", peer = "x" } end,
          function() net.add_route{ via = "10.0.0.1" } end,
          function() net.wait_link(42) end,
          function() net.wait_link("v0", { timeout = "soon" }) end,
          function() net.wait_address("v0", "not-an-address", { timeout = 0 }) end,
        } do
          local okp, msg = pcall(f)
          assert(not okp, "call " .. i .. " should raise")
          assert(tostring(msg):find("bad argument", 1, true) or tostring(msg):find("error converting", 1, true),
                 "call " .. i .. ": " .. tostring(msg))
        end
        -- negative control for the above: the same calls with good arguments do not raise
        assert(pcall(function() return v:set{ mtu = 1400 } end))
        print("done")
        "#,
        &[],
    );
    assert!(out.contains("done"), "{out}");
    assert_eq!(ns.addrs("v0"), vec!["10.0.0.2/24"]);
    assert_eq!(ns.link("mv0").unwrap()["link"], "v0");
}

#[test]
fn wait_link_returns_when_link_is_set_up_from_outside() {
    let ns = Ns::new("wait");
    let out = ns.lua(
        r#"
        assert(net.create{kind = "veth", name = "v0", peer = "v0p"})
        local before = assert(net.link("v0"))
        assert(not before.is_up and not before.carrier)
        -- negative control: nothing brings v1 up, so the wait times out
        assert(net.create{kind = "veth", name = "v1", peer = "v1p"})
        local t0 = net._now()
        local l, err = net.wait_link("v1", { up = true, timeout = 0.3 })
        assert(l == nil and err.TIMEDOUT and tostring(err):find("v1", 1, true), tostring(err))
        assert(net._now() - t0 >= 0.29)
        -- someone else sets v0 (and its peer, for carrier) up a bit later
        os.execute("(sleep 0.5; ip link set v0 up; ip link set v0p up) >/dev/null 2>&1 &")
        assert(not package.loaded["moonlit.sched"], "standalone mode")
        local got, werr = net.wait_link("v0", { up = true, carrier = true, timeout = 20 })
        assert(got, tostring(werr))
        assert(got.is_up and got.carrier and got.name == "v0")
        print("waited " .. tostring(net._now() - t0 >= 0.5))
        -- a link that does not exist yet
        os.execute("(sleep 0.3; ip link add late0 type veth peer name late1) >/dev/null 2>&1 &")
        assert(net.wait_link("late0", { timeout = 20 }))
        -- wait_address
        os.execute("(sleep 0.3; ip addr add 10.5.0.1/24 dev v0) >/dev/null 2>&1 &")
        assert(net.wait_address("v0", "10.5.0.1", { timeout = 20 }))
        assert(net.wait_address("v0", "inet", { timeout = 1 }))
        local n, e2 = net.wait_address("v0", "10.5.0.1/25", { timeout = 0.2 })
        assert(n == nil and e2.TIMEDOUT, "prefix must match when given")
        print("ok")
        "#,
        &[],
    );
    assert!(out.contains("waited true") && out.contains("ok"), "{out}");
}

#[test]
fn wait_link_uses_the_scheduler_when_present() {
    let ns = Ns::new("sched");
    let out = ns.lua(
        r#"
        assert(net.create{kind = "veth", name = "v0", peer = "v0p"})
        local calls = 0
        package.loaded["moonlit.sched"] = {
          wait_netlink = function(remaining)
            calls = calls + 1
            assert(remaining == nil or type(remaining) == "number")
            -- stand-in for "the loop ran and an event came in"
            if calls == 2 then os.execute("ip link set v0 up") end
          end,
        }
        local co = coroutine.wrap(function() return net.wait_link("v0", { up = true, timeout = 10 }) end)
        local l = co()
        assert(l and l.is_up)
        print("calls " .. calls)
        "#,
        &[],
    );
    assert!(out.contains("calls 2"), "{out}");
}

#[test]
fn declarative_apply_end_to_end_and_second_apply_writes_nothing() {
    let ns = Ns::new("apply");
    let resolv = std::env::temp_dir().join(format!("mlt-resolv-{}", std::process::id()));
    let out = ns.lua(
        r#"
        local resolv = arg[1]
        -- an "existing" interface, as the hardware would provide
        assert(net.create{kind = "veth", name = "eth0", peer = "eth0p"})
        assert(net.link("eth0p"):up())
        local function decl(extra)
          netplan.reset()
          network.interface "eth0" {
            up = true, mtu = 1500,
            addresses = extra and { "10.0.2.15/24", "10.0.2.16/24", "fd00::15/64" } or { "10.0.2.15/24", "10.0.2.99/24", "fd00::15/64" },
            routes = extra and { { to = "default", via = "10.0.2.2" }, { to = "10.9.0.0/16", via = "10.0.2.1" } }
                            or { { to = "default", via = "10.0.2.2" } },
          }
          network.veth "v0" { peer = "v0p" }
          network.bridge "br0" { ports = { "v0" }, addresses = { "192.168.50.1/24" } }
          network.dns { nameservers = { "10.0.2.3" }, search = { "example.test" } }
        end
        decl(false)
        local r1 = netplan.apply({}, resolv)
        for _, c in ipairs(r1.changes) do print("1: " .. c) end
        for _, e in ipairs(r1.errors) do print("ERR " .. e) end
        assert(#r1.errors == 0)
        assert(r1.dns_written == true)
        local owned = r1.owned
        decl(false)
        local r2 = netplan.apply(owned, resolv)
        print("second changes " .. #r2.changes .. " writes " .. r2.writes .. " dns " .. tostring(r2.dns_written))
        -- live change: gain an address and a route, lose an address
        decl(true)
        local dry = netplan.apply(owned, nil, true)
        for _, c in ipairs(dry.changes) do print("dry: " .. c) end
        assert(dry.writes == 0)
        local r3 = netplan.apply(owned, resolv)
        for _, c in ipairs(r3.changes) do print("3: " .. c) end
        assert(#r3.errors == 0, r3.errors[1])
        print("third writes " .. r3.writes)
        decl(true)
        local r4 = netplan.apply(owned, resolv)
        print("fourth changes " .. #r4.changes .. " writes " .. r4.writes)
        -- drop the veth and the bridge from the config: owned links go away
        netplan.reset()
        network.interface "eth0" { up = true }
        local r5 = netplan.apply(owned, resolv)
        for _, c in ipairs(r5.changes) do print("5: " .. c) end
        assert(#r5.errors == 0, r5.errors[1])
        "#,
        &[resolv.to_str().unwrap()],
    );
    let text = std::fs::read_to_string(&resolv).unwrap();
    let _ = std::fs::remove_file(&resolv);
    assert!(
        text.contains("nameserver 10.0.2.3") && text.contains("search example.test"),
        "{text}"
    );
    assert!(
        out.contains("second changes 0 writes 0 dns false"),
        "no-op reload must write nothing:\n{out}"
    );
    assert!(out.contains("fourth changes 0 writes 0"), "{out}");
    let dry: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("dry: "))
        .collect();
    assert_eq!(
        dry,
        vec![
            "remove address 10.0.2.99/24 from eth0",
            "add address 10.0.2.16/24 to eth0",
            "add route 10.9.0.0/16 via 10.0.2.1 dev eth0",
        ],
        "{out}"
    );
    let third: Vec<&str> = out.lines().filter_map(|l| l.strip_prefix("3: ")).collect();
    assert_eq!(third, dry);
    assert!(out.contains("third writes 3"), "{out}");
    let fifth: Vec<&str> = out.lines().filter_map(|l| l.strip_prefix("5: ")).collect();
    assert_eq!(fifth, vec!["delete link br0", "delete link v0"], "{out}");
    // independent check with ip -j
    let e = ns.link("eth0").unwrap();
    assert!(has_flag(&e, "UP"));
    let mut a = ns.addrs("eth0");
    a.retain(|x| !x.starts_with("fe80"));
    a.sort();
    assert_eq!(a, vec!["10.0.2.15/24", "10.0.2.16/24", "fd00::15/64"]);
    let r = ns.routes("");
    assert!(r
        .iter()
        .any(|x| x["dst"] == "default" && x["gateway"] == "10.0.2.2"));
    assert!(r
        .iter()
        .any(|x| x["dst"] == "10.9.0.0/16" && x["gateway"] == "10.0.2.1"));
    assert!(ns.link("br0").is_none() && ns.link("v0").is_none() && ns.link("v0p").is_none());
    assert!(
        ns.link("eth0p").is_some(),
        "links never owned are not touched"
    );
}

#[test]
fn syscall_nl_compat_subset() {
    let ns = Ns::new("nl");
    let out = ns.lua(
        r#"
        local nl = require "syscall.nl"
        assert(nl.create_interface{ name = "veth0", type = "veth", peer = { name = "veth1" } })
        assert(nl.create_interface{ name = "br9", type = "bridge" })
        local i = assert(nl.interfaces())
        assert(i.veth0 and i.veth1 and i.lo and #i >= 4)
        local v = i.veth0
        assert(v.flags.up == false and v.flags.broadcast and v.flags.multicast)
        assert(i.lo.flags.loopback and not v.flags.loopback and i.lo.flags.LOOPBACK)
        assert(not pcall(function() return v.flags.nosuchflag end), "unknown flag names are errors")
        assert(v:up())
        assert(v.flags.up and v.flags.value & 1 == 1 and tostring(v.flags):find("UP"))
        assert(v:setmtu(1280))
        assert(v.mtu == 1280)
        assert(v:address("10.3.0.2/24"))
        assert(v:address("10.4.0.2", 16))
        assert(v:address("fd03::2/64"))
        assert(#v.inet == 2 and #v.inet6 >= 1, "addresses refreshed")
        local a = v.inet[1]
        assert(tostring(a.addr) == "10.3.0.2" and a.prefixlen == 24, tostring(a.addr) .. "/" .. tostring(a.prefixlen))
        assert(tostring(v.inet6[1].addr):find(":") and v.inet6[1].prefixlen, "inet6 entries")
        assert(v:deladdress("10.4.0.2/16"))
        assert(#v.inet == 1)
        assert(nl.add_route{ to = "10.8.0.0/16", via = "10.3.0.1" })
        local rs = assert(nl.routes("inet"))
        local m = rs:match("10.8.0.0/16")
        assert(#m == 1 and m[1].gw == "10.3.0.1" and m[1].output == "veth0", tostring(m[1] and m[1].output))
        assert(nl.delete_route{ to = "10.8.0.0/16" })
        local w = assert(nl.interface("veth1"))
        assert(w:rename("peer9"))
        assert(w.name == "peer9")
        assert(i.br9:delete())
        local x, err = nl.interface("br9")
        assert(x == nil and err.NODEV)
        print("ok")
        "#,
        &[],
    );
    assert!(out.contains("ok"));
    let v = ns.link("veth0").unwrap();
    assert_eq!(v["mtu"], 1280);
    assert!(has_flag(&v, "UP"));
    assert!(ns.link("peer9").is_some() && ns.link("br9").is_none());
    assert_eq!(
        ns.addrs("veth0")
            .into_iter()
            .filter(|a| !a.starts_with("fe80"))
            .collect::<Vec<_>>(),
        vec!["10.3.0.2/24", "fd03::2/64"]
    );
    assert!(ns.routes("").iter().all(|r| r["dst"] != "10.8.0.0/16"));
}
