//! moonlit as a container's entrypoint under runc (Debian's package), the
//! way `ENTRYPOINT ["moonlit", "--"]` runs it: the OCI process is
//! `/sbin/init -- /bin/sh -c '...'`. Without a configuration the child's
//! exit code is the container's and `runc kill TERM` reaches the child;
//! with one, the services start first and stop in reverse order after
//! the command ends, by itself or by `runc kill`.
//!
//! Needs root and runc (setup.sh).

mod common;

use std::time::Duration;

use common::runc::{wait_text, Container};
use common::*;
use moonlit_images::{oci, rootfs};

fn container(name: &str, config: Option<&str>, script: &str) -> Container {
    require_root();
    let dir = scratch(name);
    let mut s = spec("sbin/init", &configs().join("container"), true);
    s.configs = match config {
        Some(c) => vec![("etc/moonlit".into(), configs().join(c))],
        None => Vec::new(),
    };
    s.module_tree = None;
    s.scan_modules = false;
    let tree = rootfs::build(&s).unwrap_or_else(|e| panic!("rootfs: {e}"));
    let bundle = dir.join("bundle");
    let opts = oci::BundleOptions {
        args: ["/sbin/init", "--", "/bin/sh", "-c", script]
            .map(String::from)
            .to_vec(),
        ..Default::default()
    };
    oci::make_bundle(&tree.archive, &bundle, &opts).unwrap_or_else(|e| panic!("bundle: {e}"));
    Container::start(&bundle, &dir, name)
}

fn pid1_is_moonlit(c: &Container) {
    let ps = c.runc(&["exec", &c.id, "/bin/cat", "/proc/1/cmdline"]);
    let cmdline = String::from_utf8_lossy(&ps.stdout).replace('\0', " ");
    assert!(
        cmdline.starts_with("/sbin/init -- /bin/sh"),
        "PID 1 is not moonlit in entrypoint mode: {cmdline:?} {ps:?}"
    );
}

#[test]
fn runc_entrypoint_exits_with_the_childs_code() {
    let mut c = container("entry-code", None, "echo child: up; sleep 0.5; exit 42");
    wait_text(&c.out_path, "child: up", Duration::from_secs(30));
    pid1_is_moonlit(&c);
    let (st, t) = c.wait(Duration::from_secs(30));
    assert_eq!(st.code(), Some(42), "{t}");
    // No Lua, no services: nothing of moonlit's own on the output.
    assert!(!t.contains("READY"), "{t}");
}

#[test]
fn runc_kill_term_reaches_the_child() {
    let mut c = container(
        "entry-term",
        None,
        "trap 'echo child: got TERM; exit 3' TERM; echo child: up; while :; do sleep 0.1; done",
    );
    wait_text(&c.out_path, "child: up", Duration::from_secs(30));
    pid1_is_moonlit(&c);
    let k = c.kill("TERM");
    assert!(k.status.success(), "runc kill: {k:?}");
    let (st, t) = c.wait(Duration::from_secs(30));
    assert!(t.contains("child: got TERM"), "{t}");
    assert_eq!(st.code(), Some(3), "{t}");
}

fn stopped_in_reverse(t: &str) {
    let second = t
        .find("second: got TERM")
        .unwrap_or_else(|| panic!("second not stopped:\n{t}"));
    let first = t
        .find("first: got TERM")
        .unwrap_or_else(|| panic!("first not stopped:\n{t}"));
    assert!(
        second < first,
        "not stopped in reverse dependency order:\n{t}"
    );
}

#[test]
fn runc_services_beside_the_command_stop_in_reverse_after_it_ends() {
    let mut c = container(
        "entry-svc-end",
        Some("entry-services"),
        "echo main >> /tmp/order; echo order: $(cat /tmp/order); sleep 1; echo main: done; exit 6",
    );
    let (st, t) = c.wait(Duration::from_secs(60));
    assert!(
        t.contains("order: first second main"),
        "services did not start before the command, in order:\n{t}"
    );
    stopped_in_reverse(&t);
    assert!(t.find("main: done") < t.find("second: got TERM"), "{t}");
    assert_eq!(st.code(), Some(6), "{t}");
}

#[test]
fn runc_kill_term_stops_the_command_first_then_the_services() {
    let mut c = container(
        "entry-svc-term",
        Some("entry-services"),
        "trap 'echo main: got TERM; exit 5' TERM; echo main: up; while :; do sleep 0.1; done",
    );
    wait_text(&c.out_path, "main: up", Duration::from_secs(60));
    pid1_is_moonlit(&c);
    let k = c.kill("TERM");
    assert!(k.status.success(), "runc kill: {k:?}");
    let (st, t) = c.wait(Duration::from_secs(60));
    let main = t
        .find("main: got TERM")
        .unwrap_or_else(|| panic!("main not stopped:\n{t}"));
    stopped_in_reverse(&t);
    assert!(
        main < t.find("second: got TERM").unwrap(),
        "the command was not stopped first:\n{t}"
    );
    assert_eq!(st.code(), Some(5), "{t}");
}
