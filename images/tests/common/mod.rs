//! Shared harness of the image tests: the moonlit binary, the guest kernel,
//! image builders with the test configurations, a lock that runs one VM at
//! a time per test program, and host-side checks (curl, clean power-off).
//!
//! Every test needs root, qemu, the Debian kernel (or runc) and fails with a
//! clear message when one is missing: nothing here skips silently.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use moonlit_images::qemu::{self, Vm, VmConfig};

pub mod runc;
use moonlit_images::{host, rootfs};

/// How long one boot may take to reach READY under TCG (a loaded 2-core CI
/// machine boots in ~10-20 s; this is the hard limit, not an expectation).
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a power-off may take from the request to qemu's exit.
pub const POWEROFF_TIMEOUT: Duration = Duration::from_secs(60);

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

pub fn configs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/configs")
}

pub fn examples() -> PathBuf {
    workspace().join("examples")
}

pub fn require_root() {
    if !rustix_is_root() {
        panic!("this test needs root (it boots VMs / runs runc and builds images with device nodes); run it as root");
    }
}

fn rustix_is_root() -> bool {
    // No libc crate here: ask the kernel through /proc.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// The static moonlit: `$MOONLIT_BIN`, else built by `build-musl.sh` (once
/// per test program).
pub fn moonlit_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("MOONLIT_BIN") {
            let p = PathBuf::from(p);
            assert!(p.is_file(), "MOONLIT_BIN={} does not exist", p.display());
            return p;
        }
        let ws = workspace();
        // build-musl.sh prints the binary's path, relative to the workspace
        // unless CARGO_TARGET_DIR is absolute.
        let out = Command::new(ws.join("build-musl.sh"))
            .current_dir(&ws)
            .output()
            .expect("run build-musl.sh");
        assert!(
            out.status.success(),
            "build-musl.sh failed (set MOONLIT_BIN to a prebuilt static moonlit to skip the build):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().trim().to_string();
        let p = ws.join(line);
        assert!(p.is_file(), "build-musl.sh printed {}, which does not exist", p.display());
        p
    })
    .clone()
}

/// The Debian guest kernel and its module tree.
pub fn kernel() -> (PathBuf, PathBuf) {
    host::debian_kernel().unwrap_or_else(|e| panic!("the VM tests need the Debian kernel: {e}"))
}

pub fn busybox() -> PathBuf {
    host::static_busybox().unwrap_or_else(|e| panic!("this test needs busybox-static: {e}"))
}

pub fn require_program(name: &str) -> PathBuf {
    host::find_program(name).unwrap_or_else(|e| panic!("this test needs {name}: {e}"))
}

/// A fresh scratch directory for one test (emptied at the start, kept
/// afterwards so that the console logs of the last run can be read).
pub fn scratch(name: &str) -> PathBuf {
    let base = option_env!("CARGO_TARGET_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let d = base.join("moonlit-images").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create scratch dir");
    d
}

/// One VM at a time in a test program (2 cores shared by everyone).
pub fn vm_lock() -> MutexGuard<'static, ()> {
    static L: Mutex<()> = Mutex::new(());
    L.lock().unwrap_or_else(|p| p.into_inner())
}

/// Builds a root tree spec with the usual parts.
pub fn spec(init_path: &str, config: &Path, busybox: bool) -> rootfs::RootSpec {
    rootfs::RootSpec {
        moonlit: moonlit_bin(),
        init_path: init_path.into(),
        configs: vec![("etc/moonlit".into(), config.to_path_buf())],
        busybox: busybox.then(self::busybox),
        module_tree: Some(kernel().1),
        modules: Vec::new(),
        scan_modules: true,
        device_nodes: init_path == "init",
        extra_files: Vec::new(),
    }
}

/// Writes the initramfs of `spec` to `out`.
pub fn write_initramfs(spec: &rootfs::RootSpec, out: &Path) -> PathBuf {
    let c = rootfs::build(spec).unwrap_or_else(|e| panic!("building the initramfs: {e}"));
    std::fs::write(out, c.archive.to_bytes()).expect("write initramfs");
    out.to_path_buf()
}

/// A VM config with the kernel, the initramfs and a console log in `dir`.
pub fn vm_config(dir: &Path, initrd: &Path, append: &str) -> VmConfig {
    let mut c = VmConfig::new(kernel().0);
    c.initrd = Some(initrd.to_path_buf());
    c.append = append.into();
    c.console_log = Some(dir.join("console.log"));
    c
}

pub fn start(cfg: &VmConfig) -> Vm {
    require_program("qemu-system-x86_64");
    Vm::start(cfg).unwrap_or_else(|e| panic!("starting qemu: {e}"))
}

/// Waits for a console marker or panics with the console's tail.
pub fn expect(vm: &Vm, marker: &str, timeout: Duration) -> usize {
    vm.wait_for(marker, timeout)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Waits until qemu exits after a power-off: exit status 0, the kernel's
/// "reboot: Power down", and no panic or oops anywhere on the console.
pub fn expect_clean_poweroff(vm: &mut Vm) {
    let st = vm
        .wait_exit(POWEROFF_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    let console = vm.console();
    assert!(
        !qemu::shows_panic(&console),
        "the console shows a kernel panic or oops:\n{}",
        vm.tail(60)
    );
    assert!(st.success(), "qemu exited with {st}:\n{}", vm.tail(40));
    assert!(
        console.contains("reboot: Power down"),
        "qemu ended without the kernel's power-off message:\n{}",
        vm.tail(40)
    );
}

/// GET through the forwarded port with curl (a client nobody here wrote),
/// retrying until `deadline`; returns the body or the last error.
pub fn curl(port: u16, path: &str, deadline: Duration) -> Result<String, String> {
    let curl = require_program("curl");
    let until = Instant::now() + deadline;
    let url = format!("http://127.0.0.1:{port}{path}");
    loop {
        let out = Command::new(&curl)
            .args(["-sS", "-f", "--max-time", "10", &url])
            .output()
            .expect("run curl");
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        let err = format!(
            "curl {url}: {} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        if Instant::now() >= until {
            return Err(err);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A token unique to this run (for content that must come from this boot).
pub fn token() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("t{}x{}", std::process::id(), t.subsec_nanos())
}

/// Copies a directory tree (a configuration to modify in a test).
pub fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).expect("mkdir");
    for e in std::fs::read_dir(src).expect("read dir").flatten() {
        let p = e.path();
        let d = dst.join(e.file_name());
        if p.is_dir() {
            copy_dir(&p, &d);
        } else {
            std::fs::copy(&p, &d).expect("copy");
        }
    }
}
