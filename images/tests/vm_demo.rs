//! The demo configuration (examples/demo) in a VM, initramfs only: it boots
//! to READY, the host reaches the supervised busybox httpd through qemu's
//! forwarded port (curl), the crashing service's restarts show on the
//! console, and a power-off request from the host ends qemu with status 0
//! and no kernel panic.
//!
//! Needs root, qemu-system-x86_64, linux-image-amd64, busybox-static, curl.

mod common;

use std::time::Duration;

use common::*;
use moonlit_images::host;

#[test]
fn demo_serves_http_restarts_the_crasher_and_powers_off_on_request() {
    require_root();
    let _l = vm_lock();
    let dir = scratch("demo");
    let initrd = write_initramfs(
        &spec("init", &examples().join("demo"), true),
        &dir.join("demo.cpio"),
    );
    let port = host::free_port().expect("free port");
    let tok = token();
    let mut cfg = vm_config(
        &dir,
        &initrd,
        &format!("demo.token={tok} demo.hostname=moonlit-test"),
    );
    cfg.forwards.push((port, 80));
    let mut vm = start(&cfg);

    expect(&vm, "moonlit: READY", BOOT_TIMEOUT);
    let c = vm.console();
    assert!(c.contains("moonlit: boot complete in "), "{c}");
    for step in ["mounts", "hostname", "modules", "network", "www"] {
        assert!(
            c.lines().any(|l| l.contains("demo:   ")
                && l.contains(step)
                && l.trim_end().ends_with("ok")),
            "boot summary lacks a successful '{step}' step:\n{c}"
        );
    }

    // The page comes from this VM (it carries this run's token), through
    // the forwarded port on the host's loopback.
    let page =
        curl(port, "/", Duration::from_secs(60)).unwrap_or_else(|e| panic!("{e}\n{}", vm.tail(30)));
    assert!(page.contains("moonlit demo"), "{page}");
    assert!(page.contains(&format!("token: {tok}")), "{page}");
    assert!(page.contains("moonlit-test"), "{page}");
    // Negative control: a missing page is an HTTP error, which curl -f reports.
    assert!(
        curl(port, "/no-such-page", Duration::ZERO).is_err(),
        "a missing page did not fail"
    );

    // The crasher is restarted with backoff; the console shows it.
    expect(&vm, "flaky: up; crashing in 1 s", Duration::from_secs(60));
    expect(&vm, "restart #2", Duration::from_secs(90));

    // PID 1's view through the CGI: moonlit ctl status and its memory.
    let status =
        curl(port, "/cgi-bin/status", Duration::from_secs(30)).unwrap_or_else(|e| panic!("{e}"));
    assert!(status.contains("web"), "{status}");
    assert!(status.contains("VmRSS"), "{status}");

    // Power-off requested from the host.
    let from = vm.console_len();
    let answer =
        curl(port, "/cgi-bin/poweroff", Duration::from_secs(30)).unwrap_or_else(|e| panic!("{e}"));
    assert!(answer.contains("powering off"), "{answer}");
    vm.wait_for_from(from, "moonlit:", Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    expect_clean_poweroff(&mut vm);
}
