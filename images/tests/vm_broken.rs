//! A broken configuration in a VM: a service module with a syntax error
//! still gives a running PID 1 that reports the error (file:line) on the
//! console, keeps the good services, and powers off on request without a
//! kernel panic; with `moonlit.rescue` on the kernel command line it also
//! starts a shell on the console.
//!
//! Needs root, qemu-system-x86_64, linux-image-amd64, busybox-static, curl.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use moonlit_images::host;

/// The demo plus services/bad.lua, whose line 3 is not Lua.
fn broken_initramfs(dir: &Path) -> PathBuf {
    let cfg = dir.join("config");
    copy_dir(&examples().join("demo"), &cfg);
    std::fs::write(
        cfg.join("services/bad.lua"),
        "-- deliberately broken\nservice \"bad\" {\n  exec = { \"/bin/true\" \n  restart = = \"always\",\n}\n",
    )
    .expect("write bad.lua");
    write_initramfs(&spec("init", &cfg, true), &dir.join("broken.cpio"))
}

#[test]
fn syntax_error_is_reported_and_pid1_powers_off_on_request() {
    require_root();
    let _l = vm_lock();
    let dir = scratch("broken");
    let initrd = broken_initramfs(&dir);
    let port = host::free_port().expect("free port");
    let mut cfg = vm_config(&dir, &initrd, "");
    cfg.forwards.push((port, 80));
    let mut vm = start(&cfg);
    expect(
        &vm,
        "moonlit: config error: services/bad.lua:",
        BOOT_TIMEOUT,
    );
    expect(&vm, "moonlit: READY", BOOT_TIMEOUT);
    let c = vm.console();
    assert!(
        c.contains("1 errors") || c.contains("1 config errors"),
        "the error count is not reported:\n{c}"
    );
    // The good modules still run: the web service answers.
    let page =
        curl(port, "/", Duration::from_secs(60)).unwrap_or_else(|e| panic!("{e}\n{}", vm.tail(30)));
    assert!(page.contains("moonlit demo"), "{page}");
    curl(port, "/cgi-bin/poweroff", Duration::from_secs(30)).unwrap_or_else(|e| panic!("{e}"));
    expect_clean_poweroff(&mut vm);
}

#[test]
fn rescue_on_the_cmdline_gives_a_shell_on_the_console() {
    require_root();
    let _l = vm_lock();
    let dir = scratch("rescue");
    let initrd = broken_initramfs(&dir);
    let cfg = vm_config(&dir, &initrd, "moonlit.rescue");
    let mut vm = start(&cfg);
    expect(
        &vm,
        "moonlit: config error: services/bad.lua:",
        BOOT_TIMEOUT,
    );
    expect(&vm, "rescue shell started on", BOOT_TIMEOUT);
    // The shell reads the console: the product only appears if it ran.
    let mut seen = None;
    for _ in 0..20 {
        let from = vm.console_len();
        vm.send("echo RESCUE-$((6*7))\n")
            .expect("type on the console");
        if let Ok(at) = vm.wait_for_from(from, "RESCUE-42", Duration::from_secs(3)) {
            seen = Some(at);
            break;
        }
    }
    assert!(
        seen.is_some(),
        "the rescue shell did not run a typed command:\n{}",
        vm.tail(40)
    );
    // It has a controlling terminal (setsid + TIOCSCTTY on the real tty).
    let from = vm.console_len();
    vm.send("tty; echo TTY-$((1+1))-DONE\n").expect("type");
    // The typed line is echoed: wait for what only the shell prints.
    let at = vm
        .wait_for_from(from, "TTY-2-DONE", Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    let answer = vm.console_range(from, at);
    assert!(
        answer.contains("/dev/ttyS0"),
        "the rescue shell's tty is not the serial console:\n{answer}"
    );
    // Power off from the shell through moonlit's control socket.
    vm.send("/bin/moonlit ctl poweroff\n").expect("type");
    expect_clean_poweroff(&mut vm);
}

/// Negative control: without moonlit.rescue there is no shell on the console.
#[test]
fn without_rescue_no_shell_runs_typed_commands() {
    require_root();
    let _l = vm_lock();
    let dir = scratch("no-rescue");
    let initrd = broken_initramfs(&dir);
    let port = host::free_port().expect("free port");
    let mut cfg = vm_config(&dir, &initrd, "");
    cfg.forwards.push((port, 80));
    let mut vm = start(&cfg);
    expect(&vm, "moonlit: READY", BOOT_TIMEOUT);
    let from = vm.console_len();
    vm.send("echo RESCUE-$((6*7))\n")
        .expect("type on the console");
    assert!(
        vm.wait_for_from(from, "RESCUE-42", Duration::from_secs(5))
            .is_err(),
        "a shell answered without moonlit.rescue"
    );
    assert!(
        !vm.console().contains("rescue shell started"),
        "{}",
        vm.tail(20)
    );
    curl(port, "/cgi-bin/poweroff", Duration::from_secs(30)).unwrap_or_else(|e| panic!("{e}"));
    expect_clean_poweroff(&mut vm);
}
