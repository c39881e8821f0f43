//! The core issue's VM smoke test and the kernel command line checks: the
//! Debian kernel boots under qemu (TCG) with an initramfs whose /init is the
//! static moonlit (and nothing else: no busybox), the boot script runs, a
//! service starts, the configuration powers off and qemu ends cleanly.
//!
//! Needs root, qemu-system-x86_64 and linux-image-amd64 (images/setup.sh).

mod common;

use common::*;

/// Two configurations in one initramfs: /etc/moonlit (the default, which
/// must not run when moonlit.config= names the other one) and
/// /etc/moonlit-smoke.
fn smoke_initramfs(dir: &std::path::Path) -> std::path::PathBuf {
    let mut s = spec("init", &configs().join("wrong"), false);
    s.configs
        .push(("etc/moonlit-smoke".into(), configs().join("smoke")));
    write_initramfs(&s, &dir.join("smoke.cpio"))
}

#[test]
fn boots_runs_a_service_and_powers_off_cleanly_with_cmdline_values() {
    require_root();
    let _l = vm_lock();
    let dir = scratch("smoke");
    let initrd = smoke_initramfs(&dir);
    let cfg = vm_config(
        &dir,
        &initrd,
        "moonlit.config=/etc/moonlit-smoke moonlit.debug answer=42 greeting=\"hello world\" bareword",
    );
    let mut vm = start(&cfg);
    expect(&vm, "Run /init as init process", BOOT_TIMEOUT);
    expect(&vm, "smoke: boot script ran", BOOT_TIMEOUT);
    expect(&vm, "hello: moonlit ", BOOT_TIMEOUT);
    expect_clean_poweroff(&mut vm);
    let c = vm.console();
    // moonlit.config= chose the configuration; the default one never ran.
    assert!(c.contains("configuration /etc/moonlit-smoke"), "{c}");
    assert!(
        !c.contains("wrong-config"),
        "the default /etc/moonlit ran although moonlit.config= named another:\n{c}"
    );
    // moonlit.debug and arbitrary pairs are readable from Lua.
    assert!(c.contains("smoke: debug=true"), "{c}");
    assert!(c.contains("smoke: cmdline answer=[42]"), "{c}");
    assert!(c.contains("smoke: cmdline greeting=[hello world]"), "{c}");
    assert!(c.contains("smoke: cmdline bareword=[]"), "{c}");
    assert!(
        c.contains("smoke: cmdline moonlit.config=[/etc/moonlit-smoke]"),
        "{c}"
    );
    assert!(
        c.contains("moonlit: READY") || c.contains("moonlit: boot complete"),
        "{c}"
    );
}

/// Negative control for the above: without moonlit.config= the default
/// /etc/moonlit runs (it powers off from Lua with moonlit.poweroff()), and
/// without moonlit.debug the flag is false.
#[test]
fn without_cmdline_keys_the_default_config_runs() {
    require_root();
    let _l = vm_lock();
    let dir = scratch("smoke-default");
    let initrd = smoke_initramfs(&dir);
    let cfg = vm_config(&dir, &initrd, "");
    let mut vm = start(&cfg);
    expect(&vm, "wrong-config: this is /etc/moonlit", BOOT_TIMEOUT);
    expect_clean_poweroff(&mut vm);
    let c = vm.console();
    assert!(!c.contains("smoke: boot script ran"), "{c}");
}
