//! PID 1 survives a panic of its own in a VM (issue 13): the release binary
//! is built with `panic = "abort"`, so the panic cannot be caught; the
//! panic hook re-executes moonlit on its last checkpoint. A probe service
//! injects the panic (`ctl fault panic`, allowed by `moonlit.faults` on the
//! kernel command line) and records every service's pid before and after.
//! The negative control boots the same image without `moonlit.faults`.
//!
//! Needs root, qemu-system-x86_64, linux-image-amd64, busybox-static.

mod common;

use std::collections::BTreeMap;

use common::*;
use serde_json::Value;

fn pids_on(console: &str, tag: &str) -> BTreeMap<String, u64> {
    let line = console
        .lines()
        .find_map(|l| l.split(&format!("{tag} ")).nth(1))
        .unwrap_or_else(|| panic!("no {tag} line:\n{console}"));
    let v: Value = serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("{e}: {line}"));
    v["services"]
        .as_array()
        .expect("services")
        .iter()
        .filter(|s| s["name"] != "probe")
        .map(|s| {
            (
                s["name"].as_str().expect("name").into(),
                s["pid"].as_u64().expect("pid"),
            )
        })
        .collect()
}

fn boot(name: &str, append: &str) -> String {
    let dir = scratch(name);
    let initrd = write_initramfs(
        &spec("init", &configs().join("panic-vm"), true),
        &dir.join("panic.cpio"),
    );
    let mut vm = start(&vm_config(&dir, &initrd, append));
    expect(&vm, "panic-vm: boot script ran", BOOT_TIMEOUT);
    expect_clean_poweroff(&mut vm);
    vm.console()
}

#[test]
fn a_panic_in_pid1_reexecutes_and_every_service_keeps_its_pid() {
    require_root();
    let _l = vm_lock();
    let c = boot("vm-panic", "moonlit.faults");
    assert!(c.contains("moonlit: internal error: injected fault"), "{c}");
    assert!(
        c.contains("recovered from an internal error by re-executing"),
        "{c}"
    );
    let before = pids_on(&c, "BEFORE");
    let after = pids_on(&c, "AFTER");
    assert_eq!(before.len(), 2, "{before:?}");
    assert_eq!(before, after, "{c}");
    // The kernel never saw PID 1 die.
    assert!(!c.contains("Attempted to kill init"), "{c}");
}

#[test]
fn without_moonlit_faults_the_fault_is_refused() {
    require_root();
    let _l = vm_lock();
    let c = boot("vm-panic-off", "");
    assert!(c.contains("fault injection is off"), "{c}");
    assert!(!c.contains("internal error"), "{c}");
    assert_eq!(pids_on(&c, "BEFORE"), pids_on(&c, "AFTER"));
}
