//! moonlit as PID 1 of a real OCI container: runc (Debian's package) runs
//! the bundle made by `moonlit_images::oci`; the configuration's services
//! start; `runc kill ID TERM` makes moonlit stop them in reverse dependency
//! order, and runc's exit status is the code moonlit reports (the main
//! service's exit code).
//!
//! Needs root and runc (images/setup.sh).

mod common;

use std::time::Duration;

use common::runc::{reported_code, Container};
use common::*;
use moonlit_images::{oci, rootfs};

/// Builds the bundle of `config` and starts it with `runc run`.
fn run_container(name: &str, config: &str) -> Container {
    require_root();
    let dir = scratch(name);
    let mut s = spec("sbin/init", &configs().join(config), true);
    s.module_tree = None;
    let tree = rootfs::build(&s).unwrap_or_else(|e| panic!("rootfs: {e}"));
    let bundle = dir.join("bundle");
    oci::make_bundle(&tree.archive, &bundle, &oci::BundleOptions::default())
        .unwrap_or_else(|e| panic!("bundle: {e}"));
    Container::start(&bundle, &dir, "moonlit-test")
}

#[test]
fn runc_runs_moonlit_as_pid1_and_sigterm_stops_services_in_order() {
    let mut c = run_container("container", "container");
    c.boot_and_stop("moonlit");
}

/// The main service ends by itself with code 7: moonlit stops the others
/// and exits with 7, which runc passes on (so the equality above is not
/// merely 0 == 0).
#[test]
fn the_main_services_exit_code_is_the_containers() {
    let mut c = run_container("container-exit", "container-exit");
    let (status, t) = c.wait(Duration::from_secs(60));
    assert!(t.contains("job: done"), "{t}");
    assert!(t.contains("first: got TERM"), "first was not stopped:\n{t}");
    assert_eq!(reported_code(&t), 7, "{t}");
    assert_eq!(
        status.code(),
        Some(7),
        "runc's exit status is not the main service's code:\n{t}"
    );
}
