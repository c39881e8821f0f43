//! Pure tests (no root): spec validation from Lua declarations, and plan() on
//! synthetic kernel states.

use std::collections::BTreeSet;

use mlua::{Lua, Table};
use moonlit_net::plan::{synthetic_addr, synthetic_link};
use moonlit_net::{plan, Change, Decl, KernelState, NetworkSpec, Route};

/// Evaluate `code` with a tiny `network` DSL and return the declarations.
fn decls(code: &str) -> (Lua, Vec<Decl>) {
    let lua = Lua::new();
    let line = lua
        .create_function(|lua, ()| {
            Ok(lua
                .inspect_stack(2, |d| d.current_line().unwrap_or(0))
                .unwrap_or(0))
        })
        .unwrap();
    lua.globals().set("__line", line).unwrap();
    lua.load(
        r#"
        DECLS = {}
        network = setmetatable({}, { __index = function(_, kind)
          return function(a)
            local line = __line()
            if type(a) == "table" then
              DECLS[#DECLS + 1] = { kind = kind, body = a, line = line }
              return
            end
            return function(body) DECLS[#DECLS + 1] = { kind = kind, name = a, body = body, line = line } end
          end
        end })
        "#,
    )
    .exec()
    .unwrap();
    lua.load(code).set_name("=net.lua").exec().unwrap();
    let list: Table = lua.globals().get("DECLS").unwrap();
    let v = list
        .sequence_values::<Table>()
        .map(|t| {
            let t = t.unwrap();
            Decl {
                kind: t.get("kind").unwrap(),
                name: t.get("name").unwrap(),
                body: t.get("body").unwrap(),
                location: format!("net.lua:{}", t.get::<i64>("line").unwrap()),
            }
        })
        .collect();
    (lua, v)
}

fn spec(code: &str) -> NetworkSpec {
    NetworkSpec::from_decls(&decls(code).1).unwrap_or_else(|e| panic!("spec rejected: {e}"))
}

fn spec_err(code: &str) -> String {
    let (_lua, d) = decls(code);
    match NetworkSpec::from_decls(&d) {
        Ok(s) => panic!("spec unexpectedly accepted: {s:?}"),
        Err(e) => e.to_string(),
    }
}

fn lines(ch: &[Change]) -> Vec<String> {
    ch.iter().map(|c| c.to_string()).collect()
}

fn owned(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

const ISSUE_EXAMPLE: &str = r#"
network.interface "eth0" {
  up = true, mtu = 1500,
  addresses = { "10.0.2.15/24", "fd00::15/64" },
  routes = { { to = "default", via = "10.0.2.2" } },
}
network.veth "v0" { peer = "v0p" }
network.bridge "br0" { ports = { "v0" }, addresses = { "192.168.50.1/24" } }
network.dns { nameservers = { "10.0.2.3" }, search = { "example.test" } }
"#;

#[test]
fn issue_example_parses() {
    let s = spec(ISSUE_EXAMPLE);
    assert_eq!(s.links.len(), 3);
    assert_eq!(
        s.links["v0"].master.as_deref(),
        Some("br0"),
        "bridge ports set the port's master"
    );
    assert_eq!(s.links["eth0"].addresses.as_ref().unwrap().len(), 2);
    assert_eq!(s.links["br0"].up, Some(true), "created links default to up");
    assert_eq!(s.links["eth0"].location, "net.lua:2");
    let dns = s.dns.as_ref().unwrap();
    assert_eq!(dns.nameservers.len(), 1);
    assert_eq!(s.created_links(), owned(&["br0", "v0"]));
    // serde round trip (the init stores the spec across re-exec)
    let j = serde_json::to_string(&s).unwrap();
    let back: NetworkSpec = serde_json::from_str(&j).unwrap();
    assert_eq!(back, s);
    assert!(moonlit_net::resolv_conf(dns).contains("nameserver 10.0.2.3\n"));
    assert!(moonlit_net::resolv_conf(dns).contains("search example.test\n"));
}

#[test]
fn spec_errors_name_location_and_key() {
    let e = spec_err("network.interface \"eth0\" { mtu = \"big\" }");
    assert!(
        e.contains("net.lua:1") && e.contains("'mtu'") && e.contains("eth0"),
        "{e}"
    );
    let e = spec_err("\n\nnetwork.interface \"eth0\" { mtuu = 1400 }");
    assert!(
        e.contains("net.lua:3") && e.contains("unknown key 'mtuu'"),
        "{e}"
    );
    let e = spec_err("network.interface \"eth0\" {}\nnetwork.interface \"eth0\" {}");
    assert!(
        e.contains("net.lua:2") && e.contains("declared twice") && e.contains("net.lua:1"),
        "{e}"
    );
    let e = spec_err("network.interface \"eth0\" { addresses = { \"10.0.0.1/33\" } }");
    assert!(
        e.contains("'addresses'") && e.contains("10.0.0.1/33"),
        "{e}"
    );
    let e = spec_err("network.interface \"eth0\" { routes = { { via = \"10.0.0.1\" } } }");
    assert!(e.contains("routes[1]") && e.contains("missing 'to'"), "{e}");
    let e = spec_err("network.interface \"eth0\" { routes = { { to = \"default\", via = \"fd00::1\", src = \"10.0.0.1\" } } }");
    assert!(e.contains("routes[1]"), "{e}");
    let e = spec_err("network.veth \"v0\" {}");
    assert!(e.contains("'peer'") && e.contains("required"), "{e}");
    let e = spec_err("network.veth \"v0\" { peer = \"v1\" }\nnetwork.bridge \"v1\" {}");
    assert!(e.contains("veth peer"), "{e}");
    let e = spec_err("network.vlan \"e.5\" { link = \"eth0\", id = 5000 }");
    assert!(e.contains("'id'") && e.contains("out of range"), "{e}");
    let e = spec_err("network.tunnel \"t0\" {}");
    assert!(e.contains("unknown declaration kind"), "{e}");
    let e = spec_err("network.dns { nameservers = { \"not-an-ip\" } }");
    assert!(e.contains("'nameservers'"), "{e}");
    let e = spec_err("network.dns {}\nnetwork.dns {}");
    assert!(e.contains("declared twice"), "{e}");
    let e = spec_err("network.interface \"this-name-is-too-long\" {}");
    assert!(e.contains("invalid interface name"), "{e}");
    let e = spec_err("network.interface \"eth0\" { up = 1 }");
    assert!(e.contains("'up'") && e.contains("boolean"), "{e}");
    let e = spec_err("network.interface \"eth0\" { \"positional\" }");
    assert!(e.contains("positional"), "{e}");
    let e = spec_err("network.bridge \"br0\" { ports = { \"a\" } }\nnetwork.bridge \"br1\" { ports = { \"a\" } }");
    assert!(e.contains("already has master"), "{e}");
    let e =
        spec_err("network.interface \"eth0\" { addresses = { \"10.0.0.1/24\", \"10.0.0.1/16\" } }");
    assert!(e.contains("listed twice"), "{e}");
    // negative control: the same keys with the right types are accepted
    spec("network.interface \"eth0\" { mtu = 1400, up = true, addresses = { \"10.0.0.1/24\" } }");
}

fn state_eth0() -> KernelState {
    let mut eth0 = synthetic_link(2, "eth0", None, true);
    eth0.mtu = 1500;
    let mut st = KernelState {
        links: vec![synthetic_link(1, "lo", None, true), eth0],
        addresses: vec![
            synthetic_addr(1, "127.0.0.1/8"),
            synthetic_addr(2, "10.0.2.15/24"),
            synthetic_addr(2, "fd00::15/64"),
        ],
        routes: vec![],
        sysctls: Default::default(),
    };
    let mut ll = synthetic_addr(2, "fe80::1/64");
    ll.scope = 253;
    st.addresses.push(ll);
    let mut def = Route::new(2, None);
    def.gateway = Some("10.0.2.2".parse().unwrap());
    def.oif = Some(2);
    def.metric = None;
    st.routes.push(def);
    let mut kern = Route::new(2, Some("10.0.2.0/24".parse().unwrap()));
    kern.oif = Some(2);
    kern.protocol = 2;
    st.routes.push(kern);
    st
}

#[test]
fn converged_state_plans_nothing() {
    let s = spec(
        r#"network.interface "eth0" { up = true, mtu = 1500,
             addresses = { "10.0.2.15/24", "fd00::15/64" },
             routes = { { to = "default", via = "10.0.2.2" } } }"#,
    );
    let ch = plan(&s, &state_eth0(), &owned(&[]));
    assert!(ch.is_empty(), "{:?}", lines(&ch));
}

#[test]
fn address_and_route_diff_touches_only_the_difference() {
    let s = spec(
        r#"network.interface "eth0" {
             addresses = { "10.0.2.15/24", "10.0.2.16/24" },
             routes = { { to = "default", via = "10.0.2.2" }, { to = "10.9.0.0/16", via = "10.0.2.1", metric = 5 } } }"#,
    );
    let ch = lines(&plan(&s, &state_eth0(), &owned(&[])));
    assert_eq!(
        ch,
        vec![
            "remove address fd00::15/64 from eth0",
            "add address 10.0.2.16/24 to eth0",
            "add route 10.9.0.0/16 via 10.0.2.1 metric 5 dev eth0",
        ],
        "link-local fe80::1, the kernel prefix route and the kept default route must not appear"
    );
}

#[test]
fn removed_route_of_ours_is_deleted_but_kernel_and_boot_routes_are_not() {
    let mut st = state_eth0();
    let mut boot = Route::new(2, Some("10.50.0.0/16".parse().unwrap()));
    boot.oif = Some(2);
    boot.gateway = Some("10.0.2.9".parse().unwrap());
    boot.protocol = 3; // made by `ip route add`
    st.routes.push(boot);
    let s = spec(r#"network.interface "eth0" { routes = {} }"#);
    let ch = lines(&plan(&s, &st, &owned(&[])));
    assert_eq!(ch, vec!["remove route default via 10.0.2.2 dev eth0"]);
}

#[test]
fn undeclared_keys_are_left_alone() {
    // mtu, up and addresses not declared: nothing about them changes
    let s = spec(r#"network.interface "eth0" {}"#);
    let mut st = state_eth0();
    st.links[1].mtu = 9000;
    st.links[1].up = false;
    assert!(plan(&s, &st, &owned(&[])).is_empty());
    // declared ones do
    let s = spec(r#"network.interface "eth0" { up = true, mtu = 1400 }"#);
    assert_eq!(
        lines(&plan(&s, &st, &owned(&[]))),
        vec!["set mtu 1400 on eth0", "set eth0 up"]
    );
}

#[test]
fn creation_order_and_fresh_links() {
    let s = spec(ISSUE_EXAMPLE);
    let ch = lines(&plan(&s, &state_eth0(), &owned(&[])));
    assert_eq!(
        ch,
        vec![
            "create veth v0 (peer v0p)",
            "create bridge br0",
            "enslave v0 to br0",
            "set br0 up",
            "set v0 up",
            "add address 192.168.50.1/24 to br0",
        ],
        "eth0 already matches; links are created before being enslaved, brought up, addressed"
    );
}

#[test]
fn owned_links_are_deleted_when_undeclared_and_unowned_never() {
    let mut st = state_eth0();
    st.links.push(synthetic_link(5, "v9", Some("veth"), true));
    st.links
        .push(synthetic_link(6, "br-foreign", Some("bridge"), true));
    let s = spec(r#"network.interface "eth0" {}"#);
    let ch = lines(&plan(&s, &st, &owned(&["v9", "gone-already"])));
    assert_eq!(ch, vec!["delete link v9"]);
    // not owned: untouched
    assert!(plan(&s, &st, &owned(&[])).is_empty());
}

#[test]
fn existing_created_link_is_not_recreated_and_kind_change_recreates_owned() {
    let mut st = state_eth0();
    st.links
        .push(synthetic_link(7, "br0", Some("bridge"), true));
    let s = spec(r#"network.bridge "br0" {}"#);
    assert!(plan(&s, &st, &owned(&["br0"])).is_empty());
    // owned br0 is now declared as a veth: delete + create
    let s = spec(r#"network.veth "br0" { peer = "brp" }"#);
    let ch = lines(&plan(&s, &st, &owned(&["br0"])));
    assert_eq!(
        ch,
        vec![
            "delete link br0",
            "create veth br0 (peer brp)",
            "set br0 up"
        ]
    );
    // not owned: never deleted
    let ch = lines(&plan(&s, &st, &owned(&[])));
    assert!(!ch.iter().any(|l| l.starts_with("delete")), "{ch:?}");
}

#[test]
fn port_leaving_a_bridge_is_released() {
    let mut st = state_eth0();
    st.links
        .push(synthetic_link(7, "br0", Some("bridge"), true));
    let mut p = synthetic_link(8, "v0", Some("veth"), true);
    p.master = Some(7);
    st.links.push(p);
    let s = spec(r#"network.bridge "br0" { ports = {} }"#);
    assert_eq!(
        lines(&plan(&s, &st, &owned(&["br0"]))),
        vec!["release v0 from its master"]
    );
    let s = spec(r#"network.bridge "br0" { ports = { "v0" } }"#);
    assert!(plan(&s, &st, &owned(&["br0"])).is_empty());
}

#[test]
fn ipv6_route_metric_default_matches_kernel_1024() {
    let mut st = state_eth0();
    let mut r6 = Route::new(10, None);
    r6.gateway = Some("fd00::1".parse().unwrap());
    r6.oif = Some(2);
    r6.metric = Some(1024);
    st.routes.push(r6);
    let s = spec(
        r#"network.interface "eth0" { routes = { { to = "default", via = "10.0.2.2" }, { to = "default", via = "fd00::1" } } }"#,
    );
    assert!(plan(&s, &st, &owned(&[])).is_empty());
    // a different gateway is a change: remove old, add new
    let s = spec(
        r#"network.interface "eth0" { routes = { { to = "default", via = "10.0.2.2" }, { to = "default", via = "fd00::2" } } }"#,
    );
    assert_eq!(
        lines(&plan(&s, &st, &owned(&[]))),
        vec![
            "remove route default via fd00::1 metric 1024 dev eth0",
            "add route default via fd00::2 dev eth0"
        ]
    );
}

#[test]
fn prefix_change_is_remove_plus_add() {
    let s = spec(r#"network.interface "eth0" { addresses = { "10.0.2.15/16", "fd00::15/64" } }"#);
    assert_eq!(
        lines(&plan(&s, &state_eth0(), &owned(&[]))),
        vec![
            "remove address 10.0.2.15/24 from eth0",
            "add address 10.0.2.15/16 to eth0"
        ]
    );
}

#[test]
fn resolv_conf_written_only_when_different() {
    let s = spec("network.dns { nameservers = { \"10.0.2.3\", \"fd00::3\" }, search = { \"a.test\", \"b.test\" }, options = { \"ndots:2\" } }");
    let dir = std::env::temp_dir().join(format!("moonlit-net-resolv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("resolv.conf");
    let dns = s.dns.unwrap();
    assert!(moonlit_net::write_resolv_conf(&path, &dns).unwrap());
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        text,
        "# generated by moonlit from network.dns\nsearch a.test b.test\nnameserver 10.0.2.3\nnameserver fd00::3\noptions ndots:2\n"
    );
    assert!(
        !moonlit_net::write_resolv_conf(&path, &dns).unwrap(),
        "same content: no write"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A link created by its kind's declaration and configured by
/// `network.interface` (either order; the veth's peer too) is one link with
/// the settings of both; a setting given twice differently names both places.
#[test]
fn interface_configures_a_declared_veth_and_its_peer() {
    let s = spec(
        "network.veth \"v0\" { peer = \"v0p\", mtu = 1400 }\n\
         network.interface \"v0\" { addresses = { \"10.9.0.1/24\" } }\n\
         network.interface \"v0p\" { addresses = { \"10.9.0.2/24\" }, up = true }",
    );
    let v0 = &s.links["v0"];
    assert_eq!(
        v0.kind,
        moonlit_net::spec::KindSpec::Veth { peer: "v0p".into() }
    );
    assert_eq!(v0.mtu, Some(1400));
    assert_eq!(v0.addresses.as_ref().unwrap()[0].to_string(), "10.9.0.1/24");
    assert_eq!(v0.location, "net.lua:1");
    assert_eq!(
        s.links["v0p"].addresses.as_ref().unwrap()[0].to_string(),
        "10.9.0.2/24"
    );
    assert_eq!(s.created_links(), owned(&["v0"]));
    // The other order: configured first, created after.
    let s = spec("network.interface \"d0\" { mtu = 1280 }\nnetwork.dummy \"d0\" {}");
    assert_eq!(s.links["d0"].kind, moonlit_net::spec::KindSpec::Dummy);
    assert_eq!(s.links["d0"].mtu, Some(1280));
    // Conflicts name both places.
    let e = spec_err("network.veth \"v0\" { peer = \"v0p\", mtu = 1400 }\nnetwork.interface \"v0\" { mtu = 1500 }");
    assert!(
        e.contains("net.lua:2") && e.contains("net.lua:1") && e.contains("'mtu'"),
        "{e}"
    );
    // Two creating declarations are still one too many.
    let e = spec_err("network.dummy \"d0\" {}\nnetwork.bridge \"d0\" {}");
    assert!(e.contains("declared twice"), "{e}");
}

#[test]
fn ipv6_accept_ra_is_set_before_the_link_goes_up_and_only_when_different() {
    let s = spec(r#"network.interface "eth0" { up = true, ipv6 = { accept_ra = true } }"#);
    let mut st = state_eth0();
    st.links[1].up = false;
    let l = lines(&plan(&s, &st, &owned(&[])));
    let ra = l
        .iter()
        .position(|x| x == "set net.ipv6.conf.eth0.accept_ra = 1")
        .unwrap_or_else(|| panic!("{l:?}"));
    let auto = l
        .iter()
        .position(|x| x == "set net.ipv6.conf.eth0.autoconf = 1")
        .unwrap_or_else(|| panic!("{l:?}"));
    let up = l
        .iter()
        .position(|x| x == "set eth0 up")
        .unwrap_or_else(|| panic!("{l:?}"));
    assert!(ra < up && auto < up, "{l:?}");
    // already so: nothing
    st.sysctls.insert("eth0/accept_ra".into(), "1".into());
    st.sysctls.insert("eth0/autoconf".into(), "1".into());
    st.links[1].up = true;
    assert!(plan(&s, &st, &owned(&[])).is_empty());
    // false turns both off
    let off = spec(r#"network.interface "eth0" { ipv6 = { accept_ra = false } }"#);
    let l = lines(&plan(&off, &st, &owned(&[])));
    assert_eq!(
        l,
        [
            "set net.ipv6.conf.eth0.accept_ra = 0",
            "set net.ipv6.conf.eth0.autoconf = 0"
        ]
    );
    // a created veth: after its creation, before up
    let v = spec(r#"network.veth "v0" { peer = "v0p", ipv6 = { accept_ra = true } }"#);
    let l = lines(&plan(&v, &state_eth0(), &owned(&[])));
    let c = l
        .iter()
        .position(|x| x.starts_with("create veth v0"))
        .unwrap();
    let ra = l
        .iter()
        .position(|x| x == "set net.ipv6.conf.v0.accept_ra = 1")
        .unwrap();
    let up = l.iter().position(|x| x == "set v0 up").unwrap();
    assert!(c < ra && ra < up, "{l:?}");
    let e = spec_err(r#"network.interface "eth0" { ipv6 = { accept_ra = 1 } }"#);
    assert!(e.contains("accept_ra") && e.contains("boolean"), "{e}");
    let e = spec_err(r#"network.interface "eth0" { ipv6 = { acept_ra = true } }"#);
    assert!(e.contains("ipv6") && e.contains("acept_ra"), "{e}");
}
