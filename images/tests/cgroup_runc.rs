//! moonlit under runc with a cgroup namespace and a cgroup2 mount (what a
//! container runtime gives on a cgroup2 host): it finds its cgroup, moves
//! itself into a leaf (`init.scope`) and puts each service in a cgroup of
//! its own below. (On this hybrid host runc also gives the container a
//! cgroup in the cgroup2 hierarchy, which the namespace is rooted at.)
//!
//! Needs root, runc and a writable cgroup2 on the host.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::runc::{wait_text, Container};
use common::*;
use moonlit_images::{oci, rootfs};

/// The host's cgroup2 mount point.
fn cgroup2_mount() -> PathBuf {
    let mounts = std::fs::read_to_string("/proc/self/mounts").expect("mounts");
    mounts
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
        })
        .expect("no cgroup2 mounted on this host: the test needs one")
}

#[test]
fn in_runc_moonlit_takes_its_cgroup_and_services_get_sub_cgroups() {
    require_root();
    let dir = scratch("cgroup-runc");
    let mut s = spec("sbin/init", &configs().join("cgroup-runc"), true);
    s.module_tree = None;
    s.scan_modules = false;
    let tree = rootfs::build(&s).unwrap_or_else(|e| panic!("rootfs: {e}"));
    let bundle = dir.join("bundle");
    let opts = oci::BundleOptions {
        cgroupns: true,
        ..Default::default()
    };
    oci::make_bundle(&tree.archive, &bundle, &opts).unwrap_or_else(|e| panic!("bundle: {e}"));
    let mut c = Container::start(&bundle, &dir, "cgroup-runc");
    // While it runs: on the host, the leaf and the services' cgroups are
    // below the cgroup runc gave the container.
    wait_text(&c.out_path, "a-procs:", Duration::from_secs(60));
    let state = c.runc(&["state", &c.id]);
    let state: serde_json::Value =
        serde_json::from_slice(&state.stdout).unwrap_or_else(|e| panic!("runc state: {e}"));
    let pid = state["pid"].as_u64().expect("container pid");
    let host_path = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .expect("container's cgroup")
        .lines()
        .find_map(|l| l.strip_prefix("0::").map(str::to_string))
        .expect("a cgroup2 line");
    let leaf = cgroup2_mount().join(host_path.trim_start_matches('/'));
    assert!(leaf.ends_with("init.scope"), "{}", leaf.display());
    let container_cg = leaf.parent().expect("parent").to_path_buf();
    for sub in ["a.service", "b.service"] {
        let procs = std::fs::read_to_string(container_cg.join(sub).join("cgroup.procs"))
            .unwrap_or_else(|e| panic!("{sub} on the host under {}: {e}", container_cg.display()));
        assert!(!procs.trim().is_empty(), "{sub} is empty");
    }
    let (st, t) = c.wait(Duration::from_secs(60));
    assert_eq!(st.code(), Some(0), "{t}");
    // The container's cgroup is the namespace's root; moonlit is in its leaf.
    assert!(t.contains("init-cgroup: 0::/init.scope"), "{t}");
    assert!(t.contains("a-cgroup: 0::/a.service"), "{t}");
    assert!(t.contains("b-cgroup: 0::/b.service"), "{t}");
    let line = |p: &str| {
        t.lines()
            .find_map(|l| l.split_once(p).map(|(_, r)| r.trim().to_string()))
            .unwrap_or_else(|| panic!("no {p} in {t}"))
    };
    // No process left in the (inner) root: the no-internal-processes rule.
    assert_eq!(line("root-procs:"), "", "{t}");
    assert_eq!(line("scope-procs:"), "1", "{t}");
    assert!(!line("a-procs:").is_empty(), "{t}");
    assert!(t.contains("\"enabled\":true"), "{t}");
}
