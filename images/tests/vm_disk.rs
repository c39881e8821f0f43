//! The ext4 disk variant: an initramfs (examples/switch-root) loads
//! virtio_blk and ext4, mounts root=/dev/vda and switches root to it; the
//! disk's moonlit runs a service that writes a file with known content
//! (no explicit sync) and exits, which powers the machine off. On the host,
//! `e2fsck -fn` must find the image clean and `debugfs` must find every
//! file written so far, with its content: five boots in a row.
//!
//! Needs root, qemu-system-x86_64, linux-image-amd64, busybox-static,
//! e2fsprogs (mkfs.ext4, e2fsck, debugfs).

mod common;

use std::path::{Path, PathBuf};

use common::*;
use moonlit_images::{disk, rootfs};

fn expected(token: &str) -> String {
    let mut s = format!("moonlit proof {token}\n");
    for i in 1..=2000 {
        s.push_str(&format!("{i}\n"));
    }
    s
}

fn build(dir: &Path) -> (PathBuf, PathBuf) {
    require_program("mkfs.ext4");
    require_program("e2fsck");
    require_program("debugfs");
    let initrd = write_initramfs(
        &spec("init", &examples().join("switch-root"), false),
        &dir.join("switch-root.cpio"),
    );
    let tree = rootfs::build(&spec("sbin/init", &configs().join("disk-root"), true))
        .unwrap_or_else(|e| panic!("disk tree: {e}"));
    let img = dir.join("root.img");
    disk::make_ext4(&tree.archive, &img, &disk::DiskOptions::default())
        .unwrap_or_else(|e| panic!("mkfs.ext4 -d: {e}"));
    disk::fsck(&img).unwrap_or_else(|e| panic!("the fresh image is not clean: {e}"));
    (initrd, img)
}

fn boot(dir: &Path, initrd: &Path, img: &Path, append: &str) -> moonlit_images::qemu::Vm {
    let mut cfg = vm_config(dir, initrd, &format!("root=/dev/vda {append}"));
    cfg.disk = Some(img.to_path_buf());
    cfg.nic = None;
    start(&cfg)
}

#[test]
fn five_boots_switch_root_write_power_off_and_leave_a_clean_fs() {
    require_root();
    let _l = vm_lock();
    let dir = scratch("disk");
    let (initrd, img) = build(&dir);
    let mut tokens = Vec::new();
    for n in 1..=5 {
        let tok = format!("{}-{n}", token());
        let mut vm = boot(&dir, &initrd, &img, &format!("proof={tok}"));
        expect(
            &vm,
            "switch-root: /dev/vda (ext4) mounted on /newroot",
            BOOT_TIMEOUT,
        );
        // The disk's own moonlit and configuration run after the switch.
        expect(
            &vm,
            "disk-root: running on / = /dev/vda ext4 rw",
            BOOT_TIMEOUT,
        );
        expect(
            &vm,
            &format!("proof: wrote /var/lib/proof/{tok}.txt"),
            BOOT_TIMEOUT,
        );
        expect_clean_poweroff(&mut vm);
        let _ = std::fs::copy(
            dir.join("console.log"),
            dir.join(format!("console-{n}.log")),
        );
        let report = disk::fsck(&img)
            .unwrap_or_else(|e| panic!("boot {n}: the image is not clean after power-off: {e}"));
        assert!(
            report.contains("Filesystem state:") && report.contains("clean"),
            "{report}"
        );
        tokens.push(tok);
        for t in &tokens {
            let got = disk::read_file(&img, &format!("/var/lib/proof/{t}.txt"))
                .unwrap_or_else(|e| panic!("boot {n}: {e}"));
            assert_eq!(
                String::from_utf8_lossy(&got),
                expected(t),
                "boot {n}: the file of {t} lost content"
            );
        }
    }
}

/// Negative control: the same write, but qemu is killed instead of powered
/// off. The checks above must notice (journal needing recovery, or the file
/// missing or short), else they could never fail.
#[test]
fn killing_the_vm_instead_is_noticed() {
    require_root();
    let _l = vm_lock();
    let dir = scratch("disk-killed");
    let (initrd, img) = build(&dir);
    let tok = token();
    let mut vm = boot(&dir, &initrd, &img, &format!("proof={tok} proof.hold"));
    expect(
        &vm,
        &format!("proof: wrote /var/lib/proof/{tok}.txt"),
        BOOT_TIMEOUT,
    );
    vm.kill();
    // The filesystem was mounted read-write with a journal when qemu died:
    // the check must call it unclean, every time.
    let r = disk::fsck(&img);
    assert!(
        r.is_err(),
        "a killed VM's filesystem passed the check: {r:?}"
    );
}
