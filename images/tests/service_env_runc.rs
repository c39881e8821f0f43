//! A container started with variables in its process environment (runc's
//! `env`, what `docker run -e` sets): a service with `env_inherit` sees
//! them, one without does not.
//!
//! Needs root and runc (setup.sh).

mod common;

use std::time::Duration;

use common::runc::Container;
use common::*;
use moonlit_images::{oci, rootfs};

#[test]
fn runc_process_env_reaches_only_services_that_inherit_it() {
    require_root();
    let dir = scratch("env-inherit");
    let mut s = spec("sbin/init", &configs().join("env-inherit"), true);
    s.module_tree = None;
    s.scan_modules = false;
    let tree = rootfs::build(&s).unwrap_or_else(|e| panic!("rootfs: {e}"));
    let bundle = dir.join("bundle");
    let opts = oci::BundleOptions {
        env: vec!["DB_URL=postgres://db/app".into(), "OTHER=x y".into()],
        ..Default::default()
    };
    oci::make_bundle(&tree.archive, &bundle, &opts).unwrap_or_else(|e| panic!("bundle: {e}"));
    let mut c = Container::start(&bundle, &dir, "env-inherit");
    let (st, t) = c.wait(Duration::from_secs(60));
    assert_eq!(st.code(), Some(0), "{t}");
    assert!(
        t.contains("inherits: DB_URL=[postgres://db/app] OTHER=[]"),
        "{t}"
    );
    assert!(t.contains("clean: DB_URL=[]"), "{t}");
    assert!(
        t.contains("all: DB_URL=[postgres://db/app] OTHER=[x y]"),
        "{t}"
    );
}
