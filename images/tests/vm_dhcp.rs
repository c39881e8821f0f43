//! A VM on qemu's user network whose configuration has no address, only
//! `network.interface "eth0" { dhcp = true }`: moonlit gets 10.0.2.15/24,
//! the default route via 10.0.2.2 and DNS 10.0.2.3 from qemu's own DHCP
//! server, and the host reaches the VM's web server through the forwarded
//! port. The console also carries the figure for moonlit and for busybox
//! udhcpc in the same boot, both started one second after their links got
//! carrier, each on its own NIC and qemu user network (eth1 is udhcpc's);
//! bench/dhcp/run.sh collects it.
//!
//! Needs root, qemu-system-x86_64, linux-image-amd64, busybox-static, curl.

mod common;

use std::time::Duration;

use common::*;
use moonlit_images::host;

#[test]
fn a_vm_with_only_dhcp_true_gets_its_address_route_and_dns_from_qemu() {
    require_root();
    let _l = vm_lock();
    let dir = scratch("vm-dhcp");
    let initrd = write_initramfs(
        &spec("init", &configs().join("dhcp-vm"), true),
        &dir.join("dhcp.cpio"),
    );
    let port = host::free_port().expect("free port");
    let mut cfg = vm_config(&dir, &initrd, "moonlit.debug");
    cfg.forwards.push((port, 80));
    // eth1: busybox udhcpc's NIC for the figure, on a user network (and
    // DHCP server) of its own.
    cfg.extra
        .extend(["-nic".to_string(), "user,model=e1000".to_string()]);
    let mut vm = start(&cfg);
    expect(&vm, "moonlit: READY", BOOT_TIMEOUT);
    expect(
        &vm,
        "dhcp eth0: bound 10.0.2.15/24 from 10.0.2.2",
        Duration::from_secs(60),
    );
    let page =
        curl(port, "/", Duration::from_secs(60)).unwrap_or_else(|e| panic!("{e}\n{}", vm.tail(30)));
    assert!(page.contains("moonlit dhcp vm"), "{page}");
    let net = curl(port, "/cgi-bin/net", Duration::from_secs(30)).unwrap_or_else(|e| panic!("{e}"));
    assert!(net.contains("inet 10.0.2.15/24"), "{net}");
    assert!(net.contains("default via 10.0.2.2"), "{net}");
    assert!(net.contains("nameserver 10.0.2.3"), "{net}");
    let j = net
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no status json in {net}"));
    let v: serde_json::Value = serde_json::from_str(j).expect("status json");
    let lease = &v["network"]["dhcp"]["eth0"];
    assert_eq!(lease["state"], "bound", "{lease}");
    assert_eq!(lease["lease"]["address"], "10.0.2.15/24", "{lease}");
    assert_eq!(lease["lease"]["server"], "10.0.2.2", "{lease}");

    // The figure: moonlit's discovering -> ACK (the probe starts) and ->
    // bound, beside udhcpc's.
    let c = vm.console();
    let t = |pat: &str| moonlit_images::qemu::stamp_of(&c, pat);
    let start = t("dhcp eth0: discovering");
    if let (Some(a), Some(b)) = (start, t("dhcp eth0: ACK for 10.0.2.15")) {
        println!("figure: moonlit acked in {:.0} ms", (b - a) * 1000.0);
    }
    if let (Some(a), Some(b)) = (start, t("dhcp eth0: bound")) {
        println!("figure: moonlit bound in {:.0} ms", (b - a) * 1000.0);
    }
    if let (Some(a), Some(b)) = (t("figure: both links have had carrier"), start) {
        println!(
            "figure: carrier+1s to moonlit's DISCOVER {:.0} ms",
            (b - a) * 1000.0
        );
    }
    let udhcpc = expect_line(&vm, "figure: udhcpc");
    println!("{udhcpc}");
    assert!(
        udhcpc.contains("rc=0"),
        "udhcpc did not get a lease from the same server: {udhcpc}"
    );
    vm.kill();
}

fn expect_line(vm: &moonlit_images::qemu::Vm, pat: &str) -> String {
    expect(vm, pat, Duration::from_secs(60));
    vm.console()
        .lines()
        .find(|l| l.contains(pat))
        .unwrap_or_default()
        .to_string()
}
